"""Fitted linear models: prediction, versioned files, ASE calculator.

A linear model fitted with the Bayesian solver carries a *committee*: K coefficient vectors drawn
from the Gaussian posterior of the fit, stored as deviations from the mean (posterior-sampling
committees, as in e.g. Imbalzano et al., J. Chem. Phys. 154, 074102 (2021)). Predictions then
report a predictive standard deviation per energy and force component:

    σ² = t² · [s² · (1/K) Σ_k δ_k² + σ_noise²],

with δ_k the prediction of member k minus that of the mean model, s a scale of the committee
spread (default 1: the posterior as it is), σ_noise the noise level of the observable (by
default the RMS training residual; or 1/√α of the evidence maximisation divided by the
observable's row weight, see :class:`~minbasis.fit.linear.LinearFitConfig`) and t an optional
factor chosen on a validation split of the training frames (default 1). For a linear
model with a Gaussian posterior this is the Gaussian predictive distribution (Bishop, Pattern
Recognition and Machine Learning, eq. 3.58), with the K-sample committee in place of the exact
parameter term. Members and mean are evaluated in one pass (:mod:`minbasis.kernels.committee`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ..basis import Basis, require_basis
from ..describe import iter_batches
from ..errors import MinbasisError
from ..kernels import as_atoms_list
from ..kernels.committee import linear_energy_forces_committee
from .data import matrix_to_voigt
from .fidelity import resolve_fidelity, single_fidelity_names
from .fileio import load_model_file, read_model_meta, write_model_file

__all__ = ["LinearModel", "Prediction", "PredictionAccumulator", "MinbasisCalculator", "energy_std"]


@dataclass
class Prediction:
    """Predictions for M structures: energy (M,) eV, forces list of (n_atoms, 3) eV/Å,
    stress (M, 6) eV/Å³ Voigt (NaN rows for structures not periodic in all directions),
    per-atom energies list of (n_atoms,) eV.

    For models with a committee (module docstring) also: ``energy_std`` (M,) eV,
    ``forces_std`` list of (n_atoms, 3) eV/Å and ``stress_std`` (M, 6) eV/Å³ (NaN rows where
    stress is NaN), the predictive standard deviations, and ``energy_committee`` (M, K) eV,
    the energies of the members; all None without a committee."""

    energy: np.ndarray
    forces: list[np.ndarray]
    stress: np.ndarray
    atomic_energies: list[np.ndarray] = field(default_factory=list)
    energy_std: np.ndarray | None = None
    forces_std: list[np.ndarray] | None = None
    stress_std: np.ndarray | None = None
    energy_committee: np.ndarray | None = None


class PredictionAccumulator:
    """Splits batched per-atom results into per-structure ones and builds a :class:`Prediction`.

    ``add(chunk, batch, E, forces, virial)`` takes per-atom energies E (N,) eV, forces (N, 3) eV/Å
    and per-structure virials W (M, 3, 3) eV of one batch; stress is −W/V (Voigt, eV/Å³) for
    structures periodic in all directions, NaN otherwise.
    """

    def __init__(self) -> None:
        self.energies, self.forces, self.stresses, self.atomic = [], [], [], []
        self.d_energies, self.d_forces, self.d_stresses, self.volumes = [], [], [], []

    def add(self, chunk: Sequence[Atoms], batch, E: np.ndarray, forces: np.ndarray, virial: np.ndarray) -> None:
        for m, atoms in enumerate(chunk):
            a0, a1 = batch.atom_ptr[m], batch.atom_ptr[m + 1]
            self.atomic.append(E[a0:a1])
            self.energies.append(E[a0:a1].sum())
            self.forces.append(forces[a0:a1])
            if atoms.pbc.all():
                self.stresses.append(matrix_to_voigt(-virial[m] / abs(atoms.get_volume())))
            else:
                self.stresses.append(np.full(6, np.nan))

    def add_committee(self, chunk: Sequence[Atoms], batch, dE: np.ndarray, dF: np.ndarray, dW: np.ndarray) -> None:
        """Committee deviations of one batch: per-atom energies dE (K, N) eV, forces dF (K, N, 3)
        eV/Å, virials dW (K, M, 3, 3) eV; stored per structure (energy (K,), forces (K, n, 3),
        stress (K, 6) eV/Å³ or NaN)."""
        for m, atoms in enumerate(chunk):
            a0, a1 = batch.atom_ptr[m], batch.atom_ptr[m + 1]
            self.d_energies.append(dE[:, a0:a1].sum(axis=1))
            self.d_forces.append(dF[:, a0:a1])
            if atoms.pbc.all():
                V = abs(atoms.get_volume())
                self.d_stresses.append(matrix_to_voigt(-dW[:, m] / V))  # (K, 6)
                self.volumes.append(V)
            else:
                self.d_stresses.append(np.full((dW.shape[0], 6), np.nan))
                self.volumes.append(np.nan)

    def result(self, uncertainty: dict | None = None) -> Prediction:
        """The :class:`Prediction`; with committee deviations added and ``uncertainty`` (the
        model's ``{"scale", "noise_energy_per_atom", "noise_forces", "noise_stress_per_atom"}``,
        eV/atom, eV/Å, eV/atom) also the predictive standard deviations (module docstring)."""
        pred = Prediction(energy=np.asarray(self.energies), forces=self.forces, stress=np.asarray(self.stresses),
                          atomic_energies=self.atomic)
        if not self.d_energies or uncertainty is None:
            return pred
        t = float(uncertainty.get("calibration", 1.0))  # forces, and the default of the others
        ts = float(uncertainty.get("calibration_stress", t))
        s2 = float(uncertainty.get("scale", 1.0)) ** 2
        nf = float(uncertainty.get("noise_forces", 0.0))
        ns = float(uncertainty.get("noise_stress_per_atom", 0.0))
        n_atoms = np.array([len(e) for e in self.atomic], dtype=float)
        dE = np.stack(self.d_energies)  # (M, K)
        pred.energy_committee = pred.energy[:, None] + dE
        pred.energy_std = energy_std(uncertainty, dE, n_atoms)
        pred.forces_std = [t * np.sqrt(s2 * np.mean(d**2, axis=0) + nf**2) for d in self.d_forces]
        dS = np.stack(self.d_stresses)  # (M, K, 6)
        noise_s = n_atoms * ns / np.asarray(self.volumes)  # NaN for non-periodic structures
        pred.stress_std = ts * np.sqrt(s2 * np.mean(dS**2, axis=1) + noise_s[:, None] ** 2)
        return pred


def energy_std(uncertainty: dict, d_energy: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
    """Predictive std of total energies (module docstring): t_E · sqrt(s² · mean_k δ_k² + (n · σ_E)²).

    Parameters
    ----------
    uncertainty : the model's ``uncertainty`` dict (``scale`` s, ``noise_energy_per_atom`` σ_E eV/atom,
        ``calibration_energy`` t_E, defaulting to ``calibration``)
    d_energy : (M, K) eV, members' total energies minus the mean model's
    n_atoms : (M,) atoms per structure

    Returns
    -------
    (M,) float64, eV
    """
    te, s2, ne = _energy_std_terms(uncertainty)
    d_energy = np.asarray(d_energy, dtype=np.float64)
    return te * np.sqrt(s2 * np.mean(d_energy**2, axis=1) + (np.asarray(n_atoms, dtype=float) * ne) ** 2)


def _energy_std_terms(uncertainty: dict) -> tuple[float, float, float]:
    """(t_E, s², σ_E) of an ``uncertainty`` dict (:func:`energy_std`)."""
    t = uncertainty.get("calibration", 1.0)
    return (float(uncertainty.get("calibration_energy", t)), float(uncertainty.get("scale", 1.0)) ** 2,
            float(uncertainty.get("noise_energy_per_atom", 0.0)))


def energy_std_one(uncertainty: dict, d_energy: np.ndarray, n_atoms: int) -> float:
    """:func:`energy_std` of one structure (``d_energy`` (K,) eV), as a float (eV), for the calculator."""
    te, s2, ne = _energy_std_terms(uncertainty)
    return te * math.sqrt(s2 * float(d_energy @ d_energy) / d_energy.shape[0] + (n_atoms * ne) ** 2)


@dataclass
class LinearModel:
    """Linear ACE potential E = Σ_i [e0[s_i] + weights[s_i] · B_i].

    Attributes
    ----------
    basis : Basis
    weights : (n_channels, n_features) float64, eV per feature unit, one row per centre species
    e0 : (n_channels,) float64, eV
    info : dict, provenance of the fit (solver, regularisation, keys, weights)
    repulsion : :class:`~minbasis.repulsion.ZBLCore` or None
        Optional fixed repulsive pair core added to the energy (zero beyond its inner cutoff;
        its species must be the basis species, in the same order).
    committee_weights : (K, n_channels, n_features) float64 or None, deviations of the K committee
        members' weights from ``weights`` (draws from the Bayesian posterior minus its mean)
    committee_e0 : (K, n_channels) float64 or None, the members' E0 deviations, eV
    uncertainty : dict, calibration of the predictive std (module docstring): ``scale`` s,
        ``noise_energy_per_atom`` (eV/atom), ``noise_forces`` (eV/Å), ``noise_stress_per_atom``
        (eV/atom, on V·σ/n), ``calibration`` t (a factor on the whole σ of the forces, and of
        the energies and stresses unless ``calibration_energy`` / ``calibration_stress`` are
        given; default 1, see ``LinearFitConfig.calibration_fraction``); empty without a committee
    """

    #: Model kind in files and in :mod:`minbasis.fit.registry`.
    kind: ClassVar[str] = "linear"

    basis: Basis
    weights: np.ndarray
    e0: np.ndarray
    info: dict = field(default_factory=dict)
    repulsion: object = None
    committee_weights: np.ndarray | None = None
    committee_e0: np.ndarray | None = None
    uncertainty: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check shapes and finiteness here, so that no kernel ever reads out of bounds.

        Raises
        ------
        MinbasisError
            ``weights`` not (n_species, n_features), ``e0`` not (n_species,), or non-finite values.
        """
        require_basis(self.basis)
        C, F = len(self.basis.species), self.basis.n_features
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        self.e0 = np.ascontiguousarray(self.e0, dtype=np.float64)
        if self.weights.shape != (C, F):
            raise MinbasisError(f"weights must have shape (n_species, n_features) = ({C}, {F}), got {self.weights.shape}")
        if self.e0.shape != (C,):
            raise MinbasisError(f"e0 must have shape (n_species,) = ({C},), got {self.e0.shape}")
        if not (np.isfinite(self.weights).all() and np.isfinite(self.e0).all()):
            raise MinbasisError("weights and e0 must be finite")
        if self.repulsion is not None:
            from ..repulsion import ZBLCore

            if not isinstance(self.repulsion, ZBLCore):
                raise MinbasisError(f"repulsion must be a minbasis.repulsion.ZBLCore, got {type(self.repulsion).__name__}")
            if tuple(self.repulsion.species) != tuple(self.basis.species):
                raise MinbasisError(f"repulsive core species {list(self.repulsion.species)} differ from the basis "
                                    f"species {list(self.basis.species)}")
            if self.repulsion.r_max > self.basis.r_cut:
                raise MinbasisError(f"repulsive core inner cutoff {self.repulsion.r_max:.3g} Å exceeds r_cut "
                                    f"{self.basis.r_cut} Å")
        if (self.committee_weights is None) != (self.committee_e0 is None):
            raise MinbasisError("committee_weights and committee_e0 must be given together")
        if self.committee_weights is not None:
            self.committee_weights = np.ascontiguousarray(self.committee_weights, dtype=np.float64)
            self.committee_e0 = np.ascontiguousarray(self.committee_e0, dtype=np.float64)
            K = self.committee_weights.shape[0] if self.committee_weights.ndim == 3 else -1
            if K < 1 or self.committee_weights.shape != (K, C, F) or self.committee_e0.shape != (K, C):
                raise MinbasisError(f"committee_weights must have shape (K, {C}, {F}) and committee_e0 (K, {C}) "
                                    f"with K >= 1, got {self.committee_weights.shape} and {self.committee_e0.shape}")
            if not (np.isfinite(self.committee_weights).all() and np.isfinite(self.committee_e0).all()):
                raise MinbasisError("committee weights and E0 must be finite")
            u = {"scale": 1.0, "noise_energy_per_atom": 0.0, "noise_forces": 0.0, "noise_stress_per_atom": 0.0,
                 "calibration": 1.0}
            u.update({k: float(v) for k, v in dict(self.uncertainty or {}).items()})
            if not all(np.isfinite(v) and v >= 0 for v in u.values()):
                raise MinbasisError(f"uncertainty parameters must be finite and >= 0, got {u}")
            self.uncertainty = u

        self._folded = None

    def folded_weights(self) -> np.ndarray:
        """The weights folded into the terms of the evaluation plan, wt[c, t] = weights[c, t_feat[t]]
        · t_coef[t], float64 (n_channels, n_terms), as :func:`~minbasis.kernels.ace.ace_linear` takes
        them. Computed once and cached; recomputed only if ``weights`` was changed (compared with
        the copy it was folded from, which costs O(n_channels · n_features), far less than the fold)."""
        cache = self._folded
        if cache is not None and cache[0].shape == self.weights.shape and np.array_equal(cache[0], self.weights):
            return cache[1]
        plan = self.basis.plan
        wt = np.ascontiguousarray(self.weights[:, plan.t_feat] * plan.t_coef[None, :])
        self._folded = (self.weights.copy(), wt)
        return wt

    @property
    def committee_size(self) -> int:
        """Number K of committee members (0 without a committee)."""
        return 0 if self.committee_weights is None else int(self.committee_weights.shape[0])

    @property
    def fidelities(self) -> list[str]:
        """``[info["fidelity"]]`` for a head of a multi-fidelity model, else ``[]`` (one unnamed fidelity)."""
        return single_fidelity_names(self.info)

    def predict(self, atoms_or_list: Atoms | Sequence[Atoms], fidelity: str | None = None, progress: bool = False,
                device: str = "cpu", committee: bool = True) -> Prediction:
        """Energies, forces and stress (back-propagated through the moments; no Jacobian).

        With a committee (and ``committee=True``, ``device="cpu"``) the :class:`Prediction` also
        holds ``energy_std``, ``forces_std``, ``stress_std`` and ``energy_committee`` (module
        docstring); the members are evaluated in the same pass as the mean
        (:func:`minbasis.kernels.committee.linear_energy_forces_committee`).

        ``device="gpu"`` evaluates with CuPy on the current CUDA device, in float64
        (:func:`minbasis.kernels.gpu.xp_linear_energy_forces`); the :class:`Prediction` holds
        NumPy arrays either way. A model with a repulsive core is evaluated on the CPU.

        Raises
        ------
        StructureError / SpeciesError
            For invalid structures or species outside the basis.
        MinbasisError
            A ``fidelity`` other than None or the model's own (:func:`~minbasis.fit.fidelity.resolve_fidelity`);
            an unknown ``device``, or device="gpu" without CuPy or a usable CUDA device.
        """
        from ..kernels.backend import get_backend

        resolve_fidelity(self.fidelities, fidelity)
        backend = get_backend(device)
        backend.require()
        atoms_list = as_atoms_list(atoms_or_list)
        plan = self.basis.plan
        acc = PredictionAccumulator()
        with_committee = (committee and self.committee_weights is not None
                          and "linear_energy_forces_committee" in backend.operations)
        if self.repulsion is None:
            bytes_per_pair = 64.0 + (24.0 * self.committee_size if with_committee else 0.0)
            batches = iter_batches(atoms_list, self.basis, 256 * 1024**2, bytes_per_pair, "predict" if progress else None)
        else:
            batches = self._batches_with_core(atoms_list)
        for _, chunk, batch in batches:
            if self.repulsion is not None:
                E, Fo, W = self._with_core(batch)
                if with_committee:  # the core is the same for every member: only the deviations are needed
                    *_, dE, dF, dW = linear_energy_forces_committee(plan, batch, self.weights, self.e0,
                                                                    self.committee_weights, self.committee_e0)
                    acc.add_committee(chunk, batch, dE, dF, dW)
            elif with_committee:
                E, Fo, W, dE, dF, dW = linear_energy_forces_committee(plan, batch, self.weights, self.e0,
                                                                      self.committee_weights, self.committee_e0)
                acc.add_committee(chunk, batch, dE, dF, dW)
            else:
                E, Fo, W = (backend.to_numpy(a) for a in backend.linear_energy_forces(
                    plan, batch, self.weights, self.e0, folded=self.folded_weights()))
            acc.add(chunk, batch, E, Fo, W)
        return acc.result(self.uncertainty if with_committee else None)

    def _batches_with_core(self, atoms_list: list[Atoms], chunk_atoms: int = 65536):
        """Batches as :func:`~minbasis.describe.iter_batches`, but overlapping atoms (closer than
        :data:`~minbasis.kernels.neighbours.MIN_DISTANCE`) give a warning instead of an error:
        the repulsive core keeps the energy finite and rising there."""
        import warnings

        from ..kernels import build_batch
        from ..kernels.neighbours import MIN_DISTANCE

        plan = self.basis.plan
        start = 0
        while start < len(atoms_list):
            stop, n = start, 0
            while stop < len(atoms_list) and (stop == start or n + len(atoms_list[stop]) <= chunk_atoms):
                n += len(atoms_list[stop])
                stop += 1
            chunk = atoms_list[start:stop]
            batch = build_batch(chunk, plan.species, plan.numbers, plan.r_cut, min_distance=0.0)
            if len(batch.pair_vec):
                d = np.sqrt(np.einsum("pa,pa->p", batch.pair_vec, batch.pair_vec))
                q = int(np.argmin(d))
                if d[q] < MIN_DISTANCE:
                    warnings.warn(f"structure {start + int(batch.pair_struct[q])}: atoms overlap (distance {d[q]:.3g} Å "
                                  f"< {MIN_DISTANCE} Å); the repulsive core keeps the energy finite", RuntimeWarning,
                                  stacklevel=3)
            yield start, chunk, batch
            start = stop

    def _with_core(self, batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(E (N,), forces (N, 3), virial (M, 3, 3)) of a batch with the repulsive core (CPU)."""
        from ..kernels.ace import n_chunks_for, scatter_pair_gradients

        E = np.zeros(batch.n_atoms)
        G = np.zeros((len(batch.pair_i), 3))
        _core_linear(self.basis.plan, self, batch, E, G, n_chunks_for(batch.n_atoms))
        forces = np.zeros((batch.n_atoms, 3))
        virial = np.zeros((batch.n_structures, 3, 3))
        scatter_pair_gradients(batch.pair_i, batch.pair_j, batch.pair_vec, batch.pair_struct, G, forces, virial)
        return E, forces, virial

    def calculator(self, fidelity: str | None = None, committee: bool | str | None = None,
                   **kwargs) -> "MinbasisCalculator":
        """An ASE calculator for this model on the fast molecular-dynamics path (keyword
        arguments: :class:`MinbasisCalculator`, e.g. ``skin``, ``fast``).

        ``committee=None`` (default): True when the model has a committee, else False.
        ``committee=True`` (a model with a committee) adds ``energy_std`` to every step's
        ``results`` at 10–20 % of the step's cost, and ``forces_std`` / ``stress_std``
        when asked for (``calc.get_property("forces_std", atoms)``); ``committee="all"`` computes
        all three on every step (with K = 32, 3–5 times the cost of a mean step; README
        "Uncertainty"); ``committee=False`` leaves the committee out.

        Raises
        ------
        MinbasisError
            A ``fidelity`` other than None or the model's own.
        ValueError
            ``committee`` not one of None, False, True, "all".
        """
        resolve_fidelity(self.fidelities, fidelity)
        return MinbasisCalculator(self, committee=committee, **kwargs)

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model (basis included) as a versioned, hashed .npz file, atomically
        (:func:`minbasis.fit.fileio.write_model_file`, kind ``"linear"``).

        Raises
        ------
        OSError
            The file cannot be written.
        """
        arrays = {"weights": self.weights, "e0": self.e0}
        hyper = {} if self.repulsion is None else {"repulsion": self.repulsion.to_dict()}
        if self.committee_weights is not None:
            arrays.update(committee_weights=self.committee_weights, committee_e0=self.committee_e0)
            hyper["uncertainty"] = dict(self.uncertainty)
        write_model_file(path, self.kind, self.basis, arrays, hyper, self.info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LinearModel":
        """Read a model written by :meth:`save`.

        Files without a committee (written before committees existed, or with ``committee=0``)
        load with ``committee_weights=None``.

        Raises
        ------
        FileFormatError
            Missing or corrupt file, another format version or model kind, wrong shapes, or a
            content-hash mismatch (edited file).
        """
        _, arrays = read_model_meta(path)
        names = ("weights", "e0") + (("committee_weights", "committee_e0") if "committee_weights" in arrays else ())

        def build(basis, a, hyper, info):
            core = None
            if hyper.get("repulsion") is not None:
                from ..repulsion import ZBLCore

                core = ZBLCore.from_dict(hyper["repulsion"])
            return cls(basis=basis, weights=a["weights"], e0=a["e0"], info=info, repulsion=core,
                       committee_weights=a.get("committee_weights"), committee_e0=a.get("committee_e0"),
                       uncertainty=hyper.get("uncertainty", {}))

        return load_model_file(path, cls.kind, names, build)


#: Structures with fewer atoms run the MD path's kernel on one thread.
SERIAL_BELOW_ATOMS = 64


def _core_linear(plan, model, batch, E: np.ndarray, G: np.ndarray, n_chunks: int, work: dict | None = None,
                 term_sums: np.ndarray | None = None) -> None:
    """E (N,) and pair gradients G (P, 3) of a linear model with its repulsive core (clamped ACE
    part, chain rule back to the true pair vectors, plus the ZBL pair term); ``work`` holds
    reusable buffers; ``term_sums`` (n_chunks, n_channels, T), when given, receives the per-species
    term sums of :func:`~minbasis.kernels.committee.ace_linear_term_sums` (on the clamped vectors)."""
    from ..kernels.ace import ace_linear
    from ..kernels.committee import ace_linear_term_sums

    core = model.repulsion
    P = len(batch.pair_i)
    work = {} if work is None else work
    if work.get("vec") is None or work["vec"].shape[0] < P:
        work["vec"] = np.empty((max(P, int(1.2 * P)), 3))
        work["fac"] = np.empty((max(P, int(1.2 * P)), 2))
    vec, fac = work["vec"][:P], work["fac"][:P]
    core.clamped_vectors(batch, vec, fac)
    args = (batch.centre_ptr, batch.centre_ch, vec, batch.pair_ch, plan.n_channels, plan.r_cut, plan.scale, plan.n_r,
            plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order, plan.t_idx, plan.o_ptr, plan.t_pack,
            model.folded_weights(), model.e0, n_chunks, E, G)
    if term_sums is None:
        ace_linear(*args)
    else:
        ace_linear_term_sums(*args, term_sums)
    core.unclamp_gradients(batch, fac, G)
    core.fade_many_body(batch, model.e0, E, G)
    core.add_to(batch, E, G)


class _LinearEngine:
    """The MD hot path of a :class:`LinearModel` on one structure: a neighbour list with a skin
    (:class:`~minbasis.kernels.skin.SkinNeighbourList`), the folded weights of the model, and
    buffers reused from step to step (reallocated only when the list is rebuilt larger).

    With ``committee`` (the model has one) every step also gives the members' energy deviations,
    from per-species term sums accumulated inside the mean model's contraction
    (:func:`~minbasis.kernels.committee.ace_linear_term_sums`); :meth:`member_stds` evaluates the
    members' forces and virials on the same neighbour list when they are asked for."""

    def __init__(self, model: LinearModel, skin: float, overlap: str, committee: bool = False):
        from ..kernels.skin import SkinNeighbourList

        plan = model.basis.plan
        self.model = model
        self.plan = plan
        self.committee = bool(committee) and model.committee_weights is not None
        self.nl = SkinNeighbourList(plan.species, plan.numbers, plan.r_cut, skin, overlap=overlap)
        self.batch = None
        self._G = np.zeros((0, 3))
        self._n_chunks = None
        self._work: dict = {}
        # committee buffers: term sums (nc, C, T), member deviations (C, F, K) and (C, K), feature sums (C, F)
        self._sums = self._dwT = self._de0T = self._X = None

    def compute(self, atoms: Atoms, members: bool = False) -> dict:
        """Results of ``atoms``: ``energy`` (float, eV), ``energies`` (N,) eV, ``forces`` (N, 3) eV/Å,
        ``virial`` (3, 3) eV; with the committee also ``energy_std`` (float, eV) and, with
        ``members``, ``forces_std`` (N, 3) eV/Å and (periodic cells) ``stress_std`` (6,) eV/Å³."""
        from ..kernels.ace import ace_linear, n_chunks_for, scatter_pair_gradients
        from ..kernels.committee import ace_linear_term_sums, member_energy_deviations

        batch = self.nl.update(atoms)
        self.batch = batch
        plan, model = self.plan, self.model
        if members and self.committee and model.repulsion is None:
            return self._with_members(atoms)  # one pass gives the mean as well
        P = len(batch.pair_i)
        N = batch.n_atoms
        if self._G.shape[0] < P:
            self._G = np.zeros((max(P, int(1.2 * P)), 3))
        G = self._G[:P]
        E = np.empty(N)
        if self._n_chunks is None or self._n_chunks[0] != N:
            self._n_chunks = (N, n_chunks_for(N))
        nc = self._n_chunks[1]
        sums = None
        if self.committee:
            # one term-sum buffer per chunk: as few chunks as threads (zeroing and summing the
            # buffers costs more than the load balance of many chunks gains)
            import numba

            nc = 1 if N < SERIAL_BELOW_ATOMS else max(1, min(N, numba.get_num_threads()))
            if self._sums is None or self._sums.shape[0] != nc:
                self._sums = np.empty((nc, plan.n_channels, len(plan.t_order)))
            sums = self._sums
        args = (batch.centre_ptr, batch.centre_ch, batch.pair_vec, batch.pair_ch, plan.n_channels, plan.r_cut,
                plan.scale, plan.n_r, plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order, plan.t_idx, plan.o_ptr,
                plan.t_pack, model.folded_weights(), model.e0, nc, E, G)
        if model.repulsion is not None:
            _serial_if_small(N, lambda: _core_linear(plan, model, batch, E, G, nc, self._work, sums))
        elif sums is not None:
            _serial_if_small(N, lambda: ace_linear_term_sums(*args, sums))
        else:
            _serial_if_small(N, lambda: ace_linear(*args))
        forces = np.zeros((N, 3))
        virial = np.zeros((1, 3, 3))
        scatter_pair_gradients(batch.pair_i, batch.pair_j, batch.pair_vec, batch.pair_struct, G, forces, virial)
        out = {"energy": float(E.sum()), "energies": E, "forces": forces, "virial": virial[0]}
        if sums is not None:
            if self._dwT is None:  # member index innermost
                self._dwT = np.ascontiguousarray(np.transpose(model.committee_weights, (1, 2, 0)))
                self._de0T = np.ascontiguousarray(model.committee_e0.T)
                self._X = np.empty((plan.n_channels, plan.n_features))
            d_energy = np.empty(model.committee_size)
            member_energy_deviations(plan.t_feat, plan.t_coef, sums, batch.centre_ch, self._dwT, self._de0T, self._X,
                                     d_energy)
            out["energy_std"] = energy_std_one(model.uncertainty, d_energy, N)
        if members and self.committee:
            out.update(self.member_stds(atoms))
        return out

    def _with_members(self, atoms: Atoms) -> dict:
        """:meth:`compute` with ``members``, all from one pass of the member kernel (no repulsive core)."""
        E, Fo, W, dE, dF, dW = self._members_pass()
        out = {"energy": float(E.sum()), "energies": E, "forces": Fo, "virial": W[0]}
        out.update(self._stds(atoms, E, Fo, W, dE, dF, dW))
        return out

    def _members_pass(self) -> tuple:
        """(E, forces, virial, dE, dF, dW) of the structure last passed to :meth:`compute` (its
        neighbour list): :func:`~minbasis.kernels.committee.linear_energy_forces_committee`."""
        model = self.model
        return _serial_if_small(self.batch.n_atoms, lambda: linear_energy_forces_committee(
            self.plan, self.batch, model.weights, model.e0, model.committee_weights, model.committee_e0))

    def _stds(self, atoms, E, Fo, W, dE, dF, dW) -> dict:
        """energy_std, forces_std, stress_std (periodic cells) of member deviations (the formula of
        :class:`PredictionAccumulator`)."""
        acc = PredictionAccumulator()
        acc.add([atoms], self.batch, E, Fo, W)
        acc.add_committee([atoms], self.batch, dE, dF, dW)
        pred = acc.result(self.model.uncertainty)
        out = {"energy_std": float(pred.energy_std[0]), "forces_std": pred.forces_std[0]}
        if atoms.pbc.all():
            out["stress_std"] = pred.stress_std[0]
        return out

    def member_stds(self, atoms: Atoms) -> dict:
        """``forces_std`` (N, 3) eV/Å and, for cells periodic in all directions, ``stress_std``
        (6,) eV/Å³ of the structure last passed to :meth:`compute`, from the members' forces and
        virials (:meth:`_members_pass`)."""
        out = self._stds(atoms, *self._members_pass())
        out.pop("energy_std")  # compute()'s value stays
        return out


def _serial_if_small(n_atoms: int, run):
    """``run()`` and its result; below :data:`SERIAL_BELOW_ATOMS` atoms with one Numba thread
    (starting the thread pool costs more than it saves, and on a loaded machine far more)."""
    if n_atoms >= SERIAL_BELOW_ATOMS:
        return run()
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return run()
    finally:
        numba.set_num_threads(threads)


class MinbasisCalculator(Calculator):
    """ASE calculator for a fitted minbasis model: energy, free_energy, energies, forces, stress.

    ``model`` is any object with ``predict(atoms) -> Prediction`` (:class:`LinearModel`,
    :class:`~minbasis.fit.mlp.MLPModel`, :class:`~minbasis.fit.poly.PolynomialModel`).
    Stress (eV/Å³, Voigt, ASE sign convention) is available for structures periodic in all
    three directions.

    For a :class:`LinearModel` (``fast=True``, the default) the calculator keeps its own
    evaluation state across calls, for molecular dynamics: the weights are folded into the
    contraction once per model, the neighbour list is built at r_cut + ``skin`` and reused
    until some atom has moved more than skin/2 (as LAMMPS' ``neighbor skin``), and the pair
    buffers are reused. Results equal ``model.predict`` (same pairs, same kernel; only the
    order of the pair list may differ, which changes sums at the 1e-15 relative level).
    ``fast=False`` calls ``model.predict`` on every step instead.

    Uncertainty (a :class:`LinearModel` with a committee; :class:`Prediction` has the formula):

    * ``committee=True``: every step also puts ``energy_std`` (eV) in ``results``, from the
      members' energies accumulated inside the mean model's own pass (10–20 % of a step);
      ``forces_std`` (n_atoms, 3) eV/Å and ``stress_std`` (6,) eV/Å³ (periodic cells) are
      computed when asked for (``calc.get_property("forces_std", atoms)``, or a ``calculate``
      whose ``properties`` name them) on the same neighbour list, because every member's forces
      need their own back-propagation over the pairs (README "Uncertainty" has the cost);
    * ``committee="all"``: all three stds on every step;
    * ``committee=False``: none;
    * ``committee=None`` (default): True for a model with a committee, else False.

    With ``fast=False`` and a committee (not ``committee=False``) ``model.predict`` gives all
    three stds on every step.

    Parameters
    ----------
    model : LinearModel, MLPModel, PolynomialModel, …
    skin : float
        Verlet skin in Å (default 1.0; 0 rebuilds the list every call).
    fast : bool
        Use the MD path for linear models (default True).
    committee : bool, "all" or None
        See above (models without a committee have no stds whatever it is).

    Raises
    ------
    TypeError
        ``model`` has no ``predict`` method.
    ValueError
        ``committee`` not one of None, False, True, "all".
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "energy_std", "forces_std",
                              "stress_std"]

    def __init__(self, model, *, skin: float = 1.0, fast: bool = True, committee: bool | str | None = None, **kwargs):
        if not callable(getattr(model, "predict", None)):
            raise TypeError(f"model must have a predict(atoms) method, got {type(model).__name__}")
        if committee not in (None, False, True, "all"):
            raise ValueError(f"committee must be None, False, True or 'all', got {committee!r}")
        if committee is None:
            committee = True
        super().__init__(**kwargs)
        self.model = model
        self.skin = float(skin)
        self.fast = bool(fast) and isinstance(model, LinearModel)
        self.committee = committee if getattr(model, "committee_weights", None) is not None else False
        self._engine = None

    @property
    def n_neighbour_builds(self) -> int:
        """How many times the fast path built its neighbour list (0 without the fast path)."""
        return 0 if self._engine is None else self._engine.nl.n_builds

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """Which of positions, numbers, cell, pbc changed since the last calculation (exact
        comparison; ASE's default compares every array with ``allclose``, which costs more than
        the whole force evaluation of a small molecule). With ``fast=False``, ASE's own check."""
        if not self.fast:
            return super().check_state(atoms, tol=tol)
        old = self.atoms
        if old is None or len(old) != len(atoms):
            return list(all_changes)
        changes = []
        if not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.numbers, atoms.numbers):
            changes.append("numbers")
        if not np.array_equal(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Compute energy, free_energy, per-atom energies, forces, (periodic cells) stress and,
        with a committee, the stds named above."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if self.fast:
            fresh = bool(system_changes) or "energy" not in self.results
            if (self._engine is None or self._engine.model is not self.model
                    or self._engine.committee != (bool(self.committee) and self.model.committee_weights is not None)):
                overlap = "warn" if self.model.repulsion is not None else "error"
                self._engine = _LinearEngine(self.model, self.skin, overlap, committee=bool(self.committee))
                fresh = True
            asked = bool({"forces_std", "stress_std"} & set(properties))
            members = bool(self.committee) and (self.committee == "all" or asked)
            if fresh:
                out = self._engine.compute(atoms, members=members)
                virial = out.pop("virial")
                out["free_energy"] = out["energy"]
                if atoms.pbc.all():
                    out["stress"] = matrix_to_voigt(-virial / abs(atoms.get_volume()))
                self.results = out
            elif members:
                self.results.update(self._engine.member_stds(atoms))
        else:
            if isinstance(self.model, LinearModel):
                pred = self.model.predict(atoms, committee=bool(self.committee))
            else:
                pred = self.model.predict(atoms)
            self.results = {"energy": float(pred.energy[0]), "free_energy": float(pred.energy[0]),
                            "energies": pred.atomic_energies[0], "forces": pred.forces[0]}
            if getattr(pred, "energy_std", None) is not None:
                self.results["energy_std"] = float(pred.energy_std[0])
                self.results["forces_std"] = pred.forces_std[0]
            if atoms.pbc.all():
                self.results["stress"] = pred.stress[0]
                if getattr(pred, "stress_std", None) is not None:
                    self.results["stress_std"] = pred.stress_std[0]
        if "stress" in properties and not atoms.pbc.all():
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a structure periodic in all three directions")
