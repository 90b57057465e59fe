"""Reading structures and their labels (energies, forces, stress) with configurable keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

from ..errors import LabelError, StructureError

__all__ = ["DEFAULT_WEIGHTS", "read_structures", "Labels", "get_labels", "voigt_to_matrix", "matrix_to_voigt", "check_config_type_weights",
           "MAX_CONFIG_TYPE_WEIGHT"]

#: Default observable weights of every fit: energy per atom 1/(eV/atom), forces Å/eV, virial per
#: atom 1/(eV/atom) (docs/theory/fitting.md). The one source of these numbers: the fit configs,
#: the assembly core and the multi-fidelity data read them from here.
DEFAULT_WEIGHTS = {"energy": 30.0, "forces": 1.0, "stress": 30.0}


def read_structures(path: str | os.PathLike, index: str = ":") -> list[Atoms]:
    """Read structures with :func:`ase.io.read` (extxyz and every format ASE knows).

    Raises
    ------
    StructureError
        If the file is missing, unreadable or holds no structures.
    """
    import ase.io

    if not os.path.exists(path):
        raise StructureError(f"no such file: {path}")
    try:
        frames = ase.io.read(path, index=index)
    except Exception as exc:  # ASE raises many exception types for malformed files
        raise StructureError(f"cannot read structures from {path}: {type(exc).__name__}: {exc}") from exc
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise StructureError(f"{path} holds no structures")
    return frames


def voigt_to_matrix(v: np.ndarray) -> np.ndarray:
    """(…, 6) Voigt (xx, yy, zz, yz, xz, xy) → (…, 3, 3) symmetric matrices."""
    v = np.asarray(v, dtype=float)
    m = np.empty(v.shape[:-1] + (3, 3))
    m[..., 0, 0], m[..., 1, 1], m[..., 2, 2] = v[..., 0], v[..., 1], v[..., 2]
    m[..., 1, 2] = m[..., 2, 1] = v[..., 3]
    m[..., 0, 2] = m[..., 2, 0] = v[..., 4]
    m[..., 0, 1] = m[..., 1, 0] = v[..., 5]
    return m


def matrix_to_voigt(m: np.ndarray) -> np.ndarray:
    """(…, 3, 3) → (…, 6) Voigt order (xx, yy, zz, yz, xz, xy), symmetrised."""
    m = np.asarray(m, dtype=float)
    return np.stack([m[..., 0, 0], m[..., 1, 1], m[..., 2, 2], 0.5 * (m[..., 1, 2] + m[..., 2, 1]),
                     0.5 * (m[..., 0, 2] + m[..., 2, 0]), 0.5 * (m[..., 0, 1] + m[..., 1, 0])], axis=-1)


@dataclass
class Labels:
    """Labels of M structures (None where not requested).

    energy : (M,) eV; forces : list of (n_atoms, 3) eV/Å; stress : (M, 6) eV/Å³ Voigt, NaN rows
    for structures without stress; config_type : (M,) str (``"default"`` when absent).
    """

    energy: np.ndarray | None
    forces: list[np.ndarray] | None
    stress: np.ndarray | None
    config_type: np.ndarray

    def take(self, index) -> "Labels":
        """The labels of a subset of the structures: ``index`` is a slice or an integer array."""
        if isinstance(index, slice):
            pick = lambda v: v[index]  # noqa: E731
            forces = None if self.forces is None else self.forces[index]
        else:
            index = np.asarray(index, dtype=int)
            pick = lambda v: v[index]  # noqa: E731
            forces = None if self.forces is None else [self.forces[i] for i in index]
        return Labels(energy=None if self.energy is None else pick(self.energy), forces=forces,
                      stress=None if self.stress is None else pick(self.stress), config_type=pick(self.config_type))


def _calc_value(atoms: Atoms, name: str):
    calc = atoms.calc
    if calc is None:
        return None
    results = getattr(calc, "results", {})
    return results.get(name)


#: Largest magnitude of a label (eV, eV/Å, eV/Å³): beyond it squares overflow in the solvers.
MAX_LABEL = 1e12


def _real_array(k: int, what: str, key: str, value) -> np.ndarray:
    """A label as a float array; strings, booleans, objects and complex numbers are refused."""
    if isinstance(value, (str, bytes)):
        raise LabelError(f"structure {k}: {what} {key!r} is the text {value!r}, not a number")
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        raise LabelError(f"structure {k}: {what} {key!r} is a boolean ({value!r}), not a number in eV units; "
                         "check the file (in extxyz, T/F are read as booleans)")
    if arr.dtype.kind not in "iuf":
        raise LabelError(f"structure {k}: {what} {key!r} must be real numbers, got {arr.dtype} values")
    return arr.astype(float)


def _energy(k: int, atoms: Atoms, key: str) -> float:
    value = atoms.info.get(key)
    if value is None and key in ("energy", "free_energy"):
        value = _calc_value(atoms, key)
    if value is None:
        raise LabelError(f"structure {k}: no energy under key {key!r} (info keys: {sorted(atoms.info)})")
    arr = _real_array(k, "energy", key, value)
    if arr.ndim != 0 and arr.shape != (1,):
        raise LabelError(f"structure {k}: energy {key!r} must be one number (eV), got an array of shape {arr.shape}")
    value = float(arr.reshape(()))
    if not np.isfinite(value):
        raise LabelError(f"structure {k}: energy {key!r} is not finite")
    if abs(value) > MAX_LABEL:
        raise LabelError(f"structure {k}: energy {key!r} = {value:.3g} eV is beyond ±{MAX_LABEL:g}; check the units")
    return value


def _forces(k: int, atoms: Atoms, key: str) -> np.ndarray:
    value = atoms.arrays.get(key)
    if value is None and key == "forces":
        value = _calc_value(atoms, "forces")
    if value is None:
        raise LabelError(f"structure {k}: no forces under key {key!r} (array keys: {sorted(atoms.arrays)})")
    value = _real_array(k, "forces", key, value)
    if value.shape != (len(atoms), 3) or not np.isfinite(value).all():
        raise LabelError(f"structure {k}: forces {key!r} must be finite with shape ({len(atoms)}, 3), got {value.shape}")
    if np.abs(value).max() > MAX_LABEL:
        raise LabelError(f"structure {k}: forces {key!r} beyond ±{MAX_LABEL:g} eV/Å; check the units")
    return value


def _stress(k: int, atoms: Atoms, key: str) -> np.ndarray:
    value = atoms.info.get(key)
    if value is None and key == "stress":
        value = _calc_value(atoms, "stress")
    if value is None:
        return np.full(6, np.nan)
    value = _real_array(k, "stress", key, value)
    if value.shape == (9,):
        value = value.reshape(3, 3)
    if value.shape == (3, 3):
        value = matrix_to_voigt(value)
    if value.shape != (6,) or not np.isfinite(value).all():
        raise LabelError(f"structure {k}: stress {key!r} must be 6 Voigt or 3×3 finite values, got shape {value.shape}")
    if np.abs(value).max() > MAX_LABEL:
        raise LabelError(f"structure {k}: stress {key!r} beyond ±{MAX_LABEL:g} eV/Å³; check the units")
    if not atoms.pbc.all():
        raise LabelError(f"structure {k}: stress {key!r} given for a structure that is not periodic in all directions")
    return value


#: Largest config_type weight; larger ones overflow the squared weights of the solvers.
MAX_CONFIG_TYPE_WEIGHT = 1e150


def check_config_type_weights(weights, config_types: Sequence[str] | None = None) -> dict[str, float]:
    """Validated per-config_type weights {name: w} with 0 ≤ w ≤ :data:`MAX_CONFIG_TYPE_WEIGHT`.

    Parameters
    ----------
    weights : dict str → number (or None for no weights)
    config_types : sequence of str, optional
        The config_type of every training structure (M,); when given, at least one structure
        must keep a weight > 0.

    Returns
    -------
    dict str → float.

    Raises
    ------
    LabelError
        A weight that is not a finite number in [0, 1e150], keys that are not strings, or every
        structure weighted 0 (nothing left to fit).
    """
    import numbers

    if weights is None:
        weights = {}
    if not isinstance(weights, dict):
        raise LabelError(f"config_type weights must be a mapping such as {{'surface': 2.0}}, got "
                         f"{type(weights).__name__}")
    out = {}
    for name, w in weights.items():
        if not isinstance(name, str):
            raise LabelError(f"config_type weight keys must be config_type names (strings), got {name!r}")
        if isinstance(w, bool) or not isinstance(w, (numbers.Real, np.floating, np.integer)):
            raise LabelError(f"config_type weight of {name!r} must be a number, got {w!r}")
        w = float(w)
        if not (np.isfinite(w) and 0.0 <= w <= MAX_CONFIG_TYPE_WEIGHT):
            raise LabelError(f"config_type weight of {name!r} must be a finite number between 0 and "
                             f"{MAX_CONFIG_TYPE_WEIGHT:g}, got {w:g}")
        out[name] = w
    if config_types is not None and len(config_types):
        if all(out.get(str(ct), 1.0) == 0.0 for ct in config_types):
            raise LabelError(f"every training structure has config_type weight 0 (config_types "
                             f"{sorted(set(map(str, config_types)))[:10]}); nothing is left to fit")
    return out


def get_labels(atoms_list: Sequence[Atoms], energy_key: str | None = "energy", forces_key: str | None = "forces",
               stress_key: str | None = None) -> Labels:
    """Collect labels; a key of None skips that observable.

    Keys are looked up in ``atoms.info`` (energy, stress) and ``atoms.arrays`` (forces); the
    standard names ``energy``, ``forces``, ``stress`` fall back to an attached calculator
    (as ASE stores labels read from extxyz). Stress is optional per structure (NaN when absent)
    but must exist for at least one structure when ``stress_key`` is given.

    Raises
    ------
    LabelError
        A requested energy or forces label is missing, malformed (text, booleans such as
        extxyz's ``T``, arrays where one number is expected, wrong shape) or not finite; or no
        structure carries the requested stress.
    """
    energy = np.array([_energy(k, a, energy_key) for k, a in enumerate(atoms_list)]) if energy_key else None
    forces = [_forces(k, a, forces_key) for k, a in enumerate(atoms_list)] if forces_key else None
    stress = None
    if stress_key:
        stress = np.array([_stress(k, a, stress_key) if a.pbc.all() else np.full(6, np.nan)
                           for k, a in enumerate(atoms_list)])
        if np.isnan(stress).all():
            raise LabelError(f"no structure carries stress under key {stress_key!r}")
    config_type = np.array([str(a.info.get("config_type", "default")) for a in atoms_list])
    return Labels(energy=energy, forces=forces, stress=stress, config_type=config_type)
