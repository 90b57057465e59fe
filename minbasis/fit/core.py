"""Linear fits with a repulsive core as a fixed baseline (:mod:`minbasis.repulsion`).

The core's energies, forces and stress are subtracted from the labels, the ACE part is fitted to
the rest by :func:`~minbasis.fit.fit_linear`, and the returned model adds the core back.
"""

from __future__ import annotations

import numpy as np

from ..errors import MinbasisError

from ..repulsion import ZBLCore

__all__ = ["core_predictions", "fit_linear_with_core"]


def core_predictions(core: ZBLCore, basis, atoms_list) -> tuple[np.ndarray, list, np.ndarray]:
    """Energies (M,) eV, forces [(n_atoms, 3)] eV/Å and stress (M, 6) eV/Å³ (NaN rows where not
    periodic) of the core alone on a list of structures (a zero-weight linear model on ``basis``)."""
    from .model import LinearModel

    C = len(basis.species)
    zero = LinearModel(basis=basis, weights=np.zeros((C, basis.n_features)), e0=np.zeros(C), repulsion=core)
    p = zero.predict(atoms_list)
    return p.energy, p.forces, p.stress


def fit_linear_with_core(basis, atoms_list, core: ZBLCore | None = None, *, energy_key: str | None = "energy",
                         forces_key: str | None = "forces", stress_key: str | None = None, config=None,
                         progress: bool = False):
    """Fit a linear ACE model on top of a fixed repulsive core (a baseline), and attach the core.

    The core's energies, forces and stress are subtracted from the labels before
    :func:`~minbasis.fit.fit_linear` fits the rest; the returned model adds them back. With the
    core inside the data's shortest distances (r_in ≤ the shortest distance of each pair) the
    core is exactly zero on every training structure, so the fitted weights equal those of a plain fit; with the defaults of :meth:`ZBLCore.from_data`
    (r_in at 1.1 × the shortest distance) it touches the closest training pairs, and the fit
    learns the rest. The fade of the many-body part starts above every training atom's
    core-neighbour count, so it never changes a training structure.

    Parameters
    ----------
    basis : Basis
    atoms_list : list of ase.Atoms, labelled as for :func:`~minbasis.fit.fit_linear`
    core : ZBLCore, optional (default: :meth:`ZBLCore.from_data` on ``atoms_list``)
    energy_key, forces_key, stress_key, config, progress : as :func:`~minbasis.fit.fit_linear`

    Returns
    -------
    LinearModel with ``repulsion`` set; ``info["repulsion"]`` records whether labels were shifted.

    Raises
    ------
    LabelError, StructureError, SpeciesError, MinbasisError
        As :func:`~minbasis.fit.fit_linear`; a core whose species differ from the basis'.
    """
    from .linear import fit_linear

    def fit(frames, ek, fk, sk):
        return fit_linear(basis, frames, energy_key=ek, forces_key=fk, stress_key=sk, config=config, progress=progress)

    return fit_with_core(fit, basis.species, atoms_list, core, energy_key=energy_key, forces_key=forces_key,
                         stress_key=stress_key, probe_basis=basis)


def fit_with_core(fit, species, atoms_list, core: ZBLCore | None = None, *, energy_key: str | None = "energy",
                  forces_key: str | None = "forces", stress_key: str | None = None, probe_basis=None):
    """Run any linear fit ``fit(frames, energy_key, forces_key, stress_key) -> LinearModel`` on the
    labels minus a fixed repulsive core, and attach the core to the result (see
    :func:`fit_linear_with_core`; :func:`minbasis.fit.auto.fit_auto` uses it too).

    Parameters
    ----------
    fit : callable returning a LinearModel whose basis has ``species`` in this order
    species : chemical symbols of the model, in the basis' order
    atoms_list : labelled structures; core : ZBLCore or None (default :meth:`ZBLCore.from_data`)
    energy_key, forces_key, stress_key : label keys
    probe_basis : a Basis with these species used to evaluate the core (default: a tiny one)

    Raises
    ------
    MinbasisError
        The fitted model's species differ from ``species``; errors of ``fit``.
    """
    from ..basis import Basis
    from ..kernels import as_atoms_list
    from .data import get_labels

    atoms_list = as_atoms_list(atoms_list)
    species = list(species)
    if core is None:
        core = ZBLCore.from_data(species, atoms_list)
    probe = probe_basis if probe_basis is not None else Basis.ace(species, 5.0, 1, 0, 1)
    Ec, Fc, Sc = core_predictions(core, probe, atoms_list)
    touched = bool(np.abs(Ec).max() > 0 or max(np.abs(f).max() for f in Fc) > 0)
    if not touched:
        model = fit(atoms_list, energy_key, forces_key, stress_key)
    else:
        labels = get_labels(atoms_list, energy_key, forces_key, stress_key)
        shifted = []
        for k, atoms in enumerate(atoms_list):
            a = atoms.copy()
            a.calc = None
            if energy_key:
                a.info["_minbasis_energy"] = float(labels.energy[k] - Ec[k])
            if forces_key:
                a.arrays["_minbasis_forces"] = labels.forces[k] - Fc[k]
            if stress_key and np.isfinite(labels.stress[k]).all():
                a.info["_minbasis_stress"] = labels.stress[k] - Sc[k]
            shifted.append(a)
        model = fit(shifted, "_minbasis_energy" if energy_key else None, "_minbasis_forces" if forces_key else None,
                    "_minbasis_stress" if stress_key else None)
        model.info.update(energy_key=energy_key, forces_key=forces_key, stress_key=stress_key)
    if list(model.basis.species) != species:
        raise MinbasisError(f"the fitted model's species {list(model.basis.species)} differ from the core's {species}")
    model.repulsion = core
    model.info["repulsion"] = {"type": "zbl", "baseline_subtracted": touched,
                               "r_in_min": float(core.r_in.min()), "r_in_max": core.r_max}
    model.__post_init__()
    return model
