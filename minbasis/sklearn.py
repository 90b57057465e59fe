"""scikit-learn estimators on minbasis descriptors: a transformer and a linear potential.

* :class:`Descriptor` — a transformer from structures (a list of ``ase.Atoms``) to per-atom
  features (``average=False``, rows = all atoms in input order) or per-structure features
  (``average=True``: mean over the atoms, ``average="sum"``: sum, which keeps extensive targets
  such as total energies linear in the features). It is stateless: ``fit`` only validates
  the parameters, so it works in :class:`~sklearn.pipeline.Pipeline`, ``clone`` and grid
  searches (``Pipeline([("B", Descriptor(basis=b, average=True)), ("ridge", Ridge())])``).
* :class:`LinearPotential` — a regressor wrapping :func:`minbasis.fit.fit_linear`: ``fit``
  on labelled structures (energies, forces, stress read from ``atoms.info``/``atoms.arrays``
  under configurable keys), ``predict`` returns total energies (eV), ``predict_forces`` the
  forces; ``score`` is the R² of the energies.

The basis is a :class:`minbasis.Basis` or the path of a basis file (``Basis.load``).
Descriptors follow Drautz, PRB 99, 014104 (2019) (ACE); see :func:`minbasis.describe`.
"""

from __future__ import annotations

import os

import numpy as np
from ase import Atoms
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .basis import Basis
from .describe import describe
from .errors import MinbasisError
from .kernels.neighbours import as_atoms_list

__all__ = ["Descriptor", "LinearPotential"]


def _resolve_basis(basis) -> Basis:
    if isinstance(basis, Basis):
        return basis
    if isinstance(basis, (str, os.PathLike)):
        return Basis.load(basis)
    raise MinbasisError("basis must be a minbasis.Basis or the path of a basis file, got "
                        f"{type(basis).__name__}; e.g. Descriptor(basis=mb.Basis.ace(['H', 'O'], 5.0, 6, 4, 3))")


def _structures(X) -> list[Atoms]:
    """A list of ase.Atoms from X (one Atoms, a list, or a 1-D object array of them)."""
    if isinstance(X, np.ndarray) and X.dtype == object:
        X = list(X.ravel())
    if not isinstance(X, Atoms):
        try:
            items = list(X)
        except TypeError:
            items = None
        if items is None or not items or not all(isinstance(a, Atoms) for a in items):
            raise MinbasisError("X must be an ase.Atoms or a sequence of ase.Atoms (structures), not a numeric "
                                f"array ({type(X).__name__}); read them with ase.io.read(path, index=':')")
    return as_atoms_list(X)


class Descriptor(TransformerMixin, BaseEstimator):
    """Structures → minbasis features, as a scikit-learn transformer.

    Parameters
    ----------
    basis : minbasis.Basis or str (path of a basis file)
    average : bool or {"mean", "sum"}, default False
        False: one row per atom (N_atoms, F), all structures concatenated in input order.
        True or "mean": one row per structure, the mean over its atoms (M, F).
        "sum": one row per structure, the sum over its atoms (M, F).
    per_species : bool, default False
        With averaging, pool each centre species separately and concatenate: (M, C·F), block c
        the mean (or sum) over the atoms of species ``basis.species[c]`` (zeros where a structure
        has none). With ``average="sum"`` these are the energy rows of a linear ACE fit
        E = Σ_i w_{s_i} · B_i. Ignored for per-atom output.

    Attributes (after ``fit``)
    ----------
    basis_ : the resolved :class:`minbasis.Basis`
    n_features_out_ : int, F (C·F with ``per_species`` and averaging)

    Raises
    ------
    MinbasisError
        A missing or invalid basis, an unknown ``average``, or X that is not a list of
        structures (transform); StructureError / SpeciesError as :func:`minbasis.describe`.
    """

    def __init__(self, basis=None, average=False, per_species=False):
        self.basis = basis
        self.average = average
        self.per_species = per_species

    def _mode(self) -> str:
        if self.average is False or self.average is None:
            return "atoms"
        if self.average is True or self.average == "mean":
            return "mean"
        if self.average == "sum":
            return "sum"
        raise MinbasisError(f"average must be False, True, 'mean' or 'sum', got {self.average!r}")

    def fit(self, X=None, y=None):
        """Validate the parameters (the descriptors have nothing to learn); returns self."""
        self._mode()
        self.basis_ = _resolve_basis(self.basis)
        F = self.basis_.n_features
        self.n_features_out_ = F * len(self.basis_.species) if (self.per_species and self._mode() != "atoms") else F
        if X is not None:
            _structures(X)
        return self

    def transform(self, X) -> np.ndarray:
        """Features of structures X: (N_atoms, F) or (M, F) float64 (see ``average``)."""
        check_is_fitted(self, "basis_")
        frames = _structures(X)
        B = describe(frames, self.basis_)
        mode = self._mode()
        if mode == "atoms":
            return B
        sizes = np.array([len(a) for a in frames])
        idx = np.repeat(np.arange(len(frames)), sizes)
        M, F = len(frames), B.shape[1]
        if not self.per_species:
            out = np.zeros((M, F))
            np.add.at(out, idx, B)
            return out / sizes[:, None] if mode == "mean" else out
        from .fit.atomic import species_channels

        ch = species_channels(self.basis_, frames)
        C = len(self.basis_.species)
        out = np.zeros((M, C, F))
        np.add.at(out, (idx, ch), B)
        if mode == "mean":
            counts = np.zeros((M, C))
            np.add.at(counts, (idx, ch), 1.0)
            out /= np.maximum(counts, 1.0)[:, :, None]
        return out.reshape(M, C * F)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Invariant labels of the basis (``basis.spec.invariants[k]["label"]``), as an object array (F,)
        (prefixed "species:" per block with ``per_species``)."""
        check_is_fitted(self, "basis_")
        names = [str(inv.get("label", f"B{k}")) if isinstance(inv, dict) else f"B{k}"
                 for k, inv in enumerate(self.basis_.spec.invariants)]
        if self.per_species and self._mode() != "atoms":
            names = [f"{sp}:{n}" for sp in self.basis_.species for n in names]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = False
        tags.non_deterministic = False
        return tags


class LinearPotential(RegressorMixin, BaseEstimator):
    """A linear ACE potential (:func:`minbasis.fit.fit_linear`) with the scikit-learn API.

    ``fit(frames)`` reads labels from the structures (``y`` may give the energies instead of
    ``energy_key``); ``predict(frames)`` returns total energies (M,) in eV. The fitted
    :class:`~minbasis.fit.LinearModel` is ``model_`` (forces, stress, ASE calculator, files).

    Parameters
    ----------
    basis : minbasis.Basis or str (path)
    energy_key, forces_key, stress_key : str or None (None skips the observable)
    energy_weight, forces_weight, stress_weight : float, row weights
    solver : "bayesian" (default, no tuning), "bayesian_sklearn", "ridge" or "ard"
    alpha : float, ridge strength for solver="ridge"

    Raises
    ------
    MinbasisError / LabelError
        Invalid basis or parameters, missing labels.
    """

    def __init__(self, basis=None, energy_key="energy", forces_key="forces", stress_key=None, energy_weight=30.0,
                 forces_weight=1.0, stress_weight=30.0, solver="bayesian", alpha=1e-8):
        self.basis = basis
        self.energy_key = energy_key
        self.forces_key = forces_key
        self.stress_key = stress_key
        self.energy_weight = energy_weight
        self.forces_weight = forces_weight
        self.stress_weight = stress_weight
        self.solver = solver
        self.alpha = alpha

    def fit(self, X, y=None):
        """Fit on structures X (list of ase.Atoms); ``y`` (M,) energies in eV override ``energy_key``."""
        from .fit import LinearFitConfig, fit_linear

        frames = _structures(X)
        basis = _resolve_basis(self.basis)
        energy_key = self.energy_key
        if y is not None:
            y = np.asarray(y, dtype=float).ravel()
            if len(y) != len(frames):
                raise MinbasisError(f"y has {len(y)} energies for {len(frames)} structures")
            frames = [a.copy() for a in frames]
            for a, e, src in zip(frames, y, _structures(X)):
                a.calc = src.calc
                a.info["_sklearn_energy"] = float(e)
            energy_key = "_sklearn_energy"
        cfg = LinearFitConfig(energy_weight=self.energy_weight, forces_weight=self.forces_weight,
                              stress_weight=self.stress_weight, solver=self.solver, alpha=self.alpha)
        self.model_ = fit_linear(basis, frames, energy_key=energy_key, forces_key=self.forces_key,
                                 stress_key=self.stress_key, config=cfg)
        self.basis_ = basis
        return self

    def predict(self, X) -> np.ndarray:
        """Total energies (M,) float64 in eV of structures X."""
        check_is_fitted(self, "model_")
        return self.model_.predict(_structures(X)).energy

    def predict_forces(self, X) -> list[np.ndarray]:
        """Forces, one (n_atoms, 3) float64 array in eV/Å per structure."""
        check_is_fitted(self, "model_")
        return self.model_.predict(_structures(X)).forces

    def score(self, X, y=None, sample_weight=None) -> float:
        """R² of the predicted energies against ``y`` or, when y is None, the ``energy_key`` labels."""
        if y is None:
            from .fit import get_labels

            y = get_labels(_structures(X), self.energy_key, None, None).energy
        return super().score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags
