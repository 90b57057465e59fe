"""Fitted linear models: prediction, versioned files, ASE calculator."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ..basis import Basis
from ..describe import iter_batches
from ..errors import MinbasisError
from ..kernels import as_atoms_list, linear_energy_forces
from .data import matrix_to_voigt
from .fidelity import resolve_fidelity, single_fidelity_names
from .fileio import load_model_file, write_model_file

__all__ = ["LinearModel", "Prediction", "PredictionAccumulator", "MinbasisCalculator"]


@dataclass
class Prediction:
    """Predictions for M structures: energy (M,) eV, forces list of (n_atoms, 3) eV/Å,
    stress (M, 6) eV/Å³ Voigt (NaN rows for structures not periodic in all directions),
    per-atom energies list of (n_atoms,) eV."""

    energy: np.ndarray
    forces: list[np.ndarray]
    stress: np.ndarray
    atomic_energies: list[np.ndarray] = field(default_factory=list)


class PredictionAccumulator:
    """Splits batched per-atom results into per-structure ones and builds a :class:`Prediction`.

    ``add(chunk, batch, E, forces, virial)`` takes per-atom energies E (N,) eV, forces (N, 3) eV/Å
    and per-structure virials W (M, 3, 3) eV of one batch; stress is −W/V (Voigt, eV/Å³) for
    structures periodic in all directions, NaN otherwise.
    """

    def __init__(self) -> None:
        self.energies, self.forces, self.stresses, self.atomic = [], [], [], []

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

    def result(self) -> Prediction:
        return Prediction(energy=np.asarray(self.energies), forces=self.forces, stress=np.asarray(self.stresses),
                          atomic_energies=self.atomic)


@dataclass
class LinearModel:
    """Linear ACE potential E = Σ_i [e0[s_i] + weights[s_i] · B_i].

    Attributes
    ----------
    basis : Basis
    weights : (n_channels, n_features) float64, eV per feature unit, one row per centre species
    e0 : (n_channels,) float64, eV
    info : dict, provenance of the fit (solver, regularisation, keys, weights)
    """

    #: Model kind in files and in :mod:`minbasis.fit.registry`.
    kind: ClassVar[str] = "linear"

    basis: Basis
    weights: np.ndarray
    e0: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check shapes and finiteness here, so that no kernel ever reads out of bounds.

        Raises
        ------
        MinbasisError
            ``weights`` not (n_species, n_features), ``e0`` not (n_species,), or non-finite values.
        """
        if not isinstance(self.basis, Basis):
            raise TypeError(f"basis must be a minbasis.Basis, got {type(self.basis).__name__}")
        C, F = len(self.basis.species), self.basis.n_features
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        self.e0 = np.ascontiguousarray(self.e0, dtype=np.float64)
        if self.weights.shape != (C, F):
            raise MinbasisError(f"weights must have shape (n_species, n_features) = ({C}, {F}), got {self.weights.shape}")
        if self.e0.shape != (C,):
            raise MinbasisError(f"e0 must have shape (n_species,) = ({C},), got {self.e0.shape}")
        if not (np.isfinite(self.weights).all() and np.isfinite(self.e0).all()):
            raise MinbasisError("weights and e0 must be finite")

    @property
    def fidelities(self) -> list[str]:
        """``[info["fidelity"]]`` for a head of a multi-fidelity model, else ``[]`` (one unnamed fidelity)."""
        return single_fidelity_names(self.info)

    def predict(self, atoms_or_list: Atoms | Sequence[Atoms], fidelity: str | None = None, progress: bool = False,
                device: str = "cpu") -> Prediction:
        """Energies, forces and stress (back-propagated through the moments; no Jacobian).

        ``device="gpu"`` evaluates with CuPy on the current CUDA device, in float64
        (:func:`minbasis.kernels.gpu.xp_linear_energy_forces`); the :class:`Prediction` holds
        NumPy arrays either way.

        Raises
        ------
        StructureError / SpeciesError
            For invalid structures or species outside the basis.
        MinbasisError
            A ``fidelity`` other than None or the model's own (:func:`~minbasis.fit.fidelity.resolve_fidelity`);
            an unknown ``device``, or device="gpu" without CuPy or a usable CUDA device.
        """
        resolve_fidelity(self.fidelities, fidelity)
        xp = None
        if device != "cpu":
            from ..kernels.gpu import array_module, to_numpy, xp_linear_energy_forces

            xp = array_module(device)
        atoms_list = as_atoms_list(atoms_or_list)
        plan = self.basis.plan
        acc = PredictionAccumulator()
        for _, chunk, batch in iter_batches(atoms_list, self.basis, 256 * 1024**2, 64.0,
                                            "predict" if progress else None):
            if xp is None:
                E, Fo, W = linear_energy_forces(plan, batch, self.weights, self.e0)
            else:
                E, Fo, W = (to_numpy(a) for a in xp_linear_energy_forces(plan, batch, self.weights, self.e0, xp))
            acc.add(chunk, batch, E, Fo, W)
        return acc.result()

    def calculator(self, fidelity: str | None = None) -> "MinbasisCalculator":
        """An ASE calculator for this model.

        Raises
        ------
        MinbasisError
            A ``fidelity`` other than None or the model's own.
        """
        resolve_fidelity(self.fidelities, fidelity)
        return MinbasisCalculator(self)

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model (basis included) as a versioned, hashed .npz file, atomically
        (:func:`minbasis.fit.fileio.write_model_file`, kind ``"linear"``).

        Raises
        ------
        OSError
            The file cannot be written.
        """
        write_model_file(path, self.kind, self.basis, {"weights": self.weights, "e0": self.e0}, {}, self.info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LinearModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileFormatError
            Missing or corrupt file, another format version or model kind, wrong shapes, or a
            content-hash mismatch (edited file).
        """
        return load_model_file(path, cls.kind, ("weights", "e0"), lambda basis, a, _, info: cls(
            basis=basis, weights=a["weights"], e0=a["e0"], info=info))


class MinbasisCalculator(Calculator):
    """ASE calculator for a fitted minbasis model: energy, free_energy, forces, stress.

    ``model`` is any object with ``predict(atoms) -> Prediction`` (:class:`LinearModel`,
    :class:`~minbasis.fit.mlp.MLPModel`, :class:`~minbasis.fit.poly.PolynomialModel`).
    Stress (eV/Å³, Voigt, ASE sign convention) is available for structures periodic in all
    three directions.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, **kwargs):
        if not callable(getattr(model, "predict", None)):
            raise TypeError(f"model must have a predict(atoms) method, got {type(model).__name__}")
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pred = self.model.predict(self.atoms)
        self.results = {"energy": float(pred.energy[0]), "free_energy": float(pred.energy[0]),
                        "energies": pred.atomic_energies[0], "forces": pred.forces[0]}
        if self.atoms.pbc.all():
            self.results["stress"] = pred.stress[0]
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a structure periodic in all three directions")
