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
from ..kernels.committee import linear_energy_forces_committee
from .data import matrix_to_voigt
from .fidelity import resolve_fidelity, single_fidelity_names
from .fileio import load_model_file, read_model_meta, write_model_file

__all__ = ["LinearModel", "Prediction", "PredictionAccumulator", "MinbasisCalculator"]


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
                self.d_stresses.append(np.stack([matrix_to_voigt(-w / V) for w in dW[:, m]]))
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
        t = float(uncertainty.get("calibration", 1.0))
        s2 = float(uncertainty.get("scale", 1.0)) ** 2
        ne = t * float(uncertainty.get("noise_energy_per_atom", 0.0))
        nf = t * float(uncertainty.get("noise_forces", 0.0))
        ns = t * float(uncertainty.get("noise_stress_per_atom", 0.0))
        s2 *= t * t
        n_atoms = np.array([len(e) for e in self.atomic], dtype=float)
        dE = np.stack(self.d_energies)  # (M, K)
        pred.energy_committee = pred.energy[:, None] + dE
        pred.energy_std = np.sqrt(s2 * np.mean(dE**2, axis=1) + (n_atoms * ne) ** 2)
        pred.forces_std = [np.sqrt(s2 * np.mean(d**2, axis=0) + nf**2) for d in self.d_forces]
        dS = np.stack(self.d_stresses)  # (M, K, 6)
        noise_s = n_atoms * ns / np.asarray(self.volumes)  # NaN for non-periodic structures
        pred.stress_std = np.sqrt(s2 * np.mean(dS**2, axis=1) + noise_s[:, None] ** 2)
        return pred


@dataclass
class LinearModel:
    """Linear ACE potential E = Σ_i [e0[s_i] + weights[s_i] · B_i].

    Attributes
    ----------
    basis : Basis
    weights : (n_channels, n_features) float64, eV per feature unit, one row per centre species
    e0 : (n_channels,) float64, eV
    info : dict, provenance of the fit (solver, regularisation, keys, weights)
    committee_weights : (K, n_channels, n_features) float64 or None, deviations of the K committee
        members' weights from ``weights`` (draws from the Bayesian posterior minus its mean)
    committee_e0 : (K, n_channels) float64 or None, the members' E0 deviations, eV
    uncertainty : dict, calibration of the predictive std (module docstring): ``scale`` s,
        ``noise_energy_per_atom`` (eV/atom), ``noise_forces`` (eV/Å), ``noise_stress_per_atom``
        (eV/atom, on V·σ/n), ``calibration`` t (a factor on the whole σ, default 1, see
        ``LinearFitConfig.calibration_fraction``); empty without a committee
    """

    #: Model kind in files and in :mod:`minbasis.fit.registry`.
    kind: ClassVar[str] = "linear"

    basis: Basis
    weights: np.ndarray
    e0: np.ndarray
    info: dict = field(default_factory=dict)
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
        with_committee = committee and xp is None and self.committee_weights is not None
        bytes_per_pair = 64.0 + (24.0 * self.committee_size if with_committee else 0.0)
        for _, chunk, batch in iter_batches(atoms_list, self.basis, 256 * 1024**2, bytes_per_pair,
                                            "predict" if progress else None):
            if with_committee:
                E, Fo, W, dE, dF, dW = linear_energy_forces_committee(plan, batch, self.weights, self.e0,
                                                                      self.committee_weights, self.committee_e0)
                acc.add_committee(chunk, batch, dE, dF, dW)
            elif xp is None:
                E, Fo, W = linear_energy_forces(plan, batch, self.weights, self.e0)
            else:
                E, Fo, W = (to_numpy(a) for a in xp_linear_energy_forces(plan, batch, self.weights, self.e0, xp))
            acc.add(chunk, batch, E, Fo, W)
        return acc.result(self.uncertainty if with_committee else None)

    def calculator(self, fidelity: str | None = None, committee: bool = True) -> "MinbasisCalculator":
        """An ASE calculator for this model.

        With a committee and ``committee=True`` its ``results`` also hold ``energy_std`` and
        ``forces_std`` (:class:`MinbasisCalculator`); ``committee=False`` leaves the committee out
        (each member's forces cost about half a mean-model evaluation, see the README section
        "Uncertainty").

        Raises
        ------
        MinbasisError
            A ``fidelity`` other than None or the model's own.
        """
        resolve_fidelity(self.fidelities, fidelity)
        if not committee and self.committee_weights is not None:
            import dataclasses

            return MinbasisCalculator(dataclasses.replace(self, committee_weights=None, committee_e0=None,
                                                          uncertainty={}))
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
        arrays = {"weights": self.weights, "e0": self.e0}
        hyper = {}
        if self.committee_weights is not None:
            arrays.update(committee_weights=self.committee_weights, committee_e0=self.committee_e0)
            hyper = {"uncertainty": dict(self.uncertainty)}
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
        return load_model_file(path, cls.kind, names, lambda basis, a, hyper, info: cls(
            basis=basis, weights=a["weights"], e0=a["e0"], info=info, committee_weights=a.get("committee_weights"),
            committee_e0=a.get("committee_e0"), uncertainty=hyper.get("uncertainty", {})))


class MinbasisCalculator(Calculator):
    """ASE calculator for a fitted minbasis model: energy, free_energy, forces, stress.

    ``model`` is any object with ``predict(atoms) -> Prediction`` (:class:`LinearModel`,
    :class:`~minbasis.fit.mlp.MLPModel`, :class:`~minbasis.fit.poly.PolynomialModel`).
    Stress (eV/Å³, Voigt, ASE sign convention) is available for structures periodic in all
    three directions. For a model with a committee, ``results`` also holds ``energy_std`` (eV)
    and ``forces_std`` (n_atoms, 3) eV/Å (and ``stress_std`` for periodic cells), the predictive
    standard deviations of :class:`Prediction`.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "energy_std", "forces_std"]

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
        if pred.energy_std is not None:
            self.results["energy_std"] = float(pred.energy_std[0])
            self.results["forces_std"] = pred.forces_std[0]
        if self.atoms.pbc.all():
            self.results["stress"] = pred.stress[0]
            if pred.stress_std is not None:
                self.results["stress_std"] = pred.stress_std[0]
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a structure periodic in all three directions")
