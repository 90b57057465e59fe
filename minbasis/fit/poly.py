"""Linear fits on polynomial features of a basis (docs/theory/completeness.md, docs/theory/fitting.md;
the comparison of linear and nonlinear models on one descriptor follows Allen and Tkatchenko,
arXiv 2211.11680).

A linear model needs the linearly complete basis; the minimal, functionally independent basis
(:meth:`Basis.minimal`) is instead the input of nonlinear models — among them a *linear* model
on polynomial features of it. Here::

    E = Σ_i [ E0(Z_i) + c_{Z_i} · p(x_i) ],   x_i = (B_i − μ_{Z_i}) / σ_{Z_i}

with p(x) = (x_a; x_a x_b for a ≤ b; …) the monomials of the standardised features up to
``degree`` (scikit-learn's ``PolynomialFeatures`` without the constant, which E0 absorbs).
Products are formed among the first ``n_product_inputs`` features only (the basis order is
the cost order: low correlation order, low l first), which keeps the number of columns under
control: all pairs of 174 features would be 15 225 columns per species.

Forces follow by the product rule through the descriptor gradients,
∂(x_a x_b)/∂r = x_a ∂x_b/∂r + x_b ∂x_a/∂r, and virials through the strain gradients; the design
rows (energy per atom, 3 force rows per atom, 6 virial rows per periodic structure, weighted per
observable and config_type by :func:`minbasis.fit.assembly.weight_rows`, as every linear fit)
are accumulated chunk by chunk from :func:`minbasis.describe` gradients and solved by
:func:`minbasis.fit.linear.solve_equations` (Bayesian ridge by default, E0 unregularised).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..basis import Basis, require_basis
from ..errors import LabelError, MinbasisError
from ..kernels import as_atoms_list
from .assembly import NormalEquations, RawRows, weight_rows
from .atomic import AtomicEnergyModel, DescriptorSet, check_finite, fit_standardiser
from .data import Labels, get_labels, matrix_to_voigt
from .fileio import read_model_file, write_model_file
from .linear import LinearFitConfig, solve_equations

__all__ = ["PolynomialFeatures", "PolynomialModel", "fit_polynomial", "MAX_POLY_COLUMNS"]

#: Largest number of design-matrix columns (species × polynomial features) fit_polynomial accepts.
MAX_POLY_COLUMNS = 20000


class PolynomialFeatures:
    """Monomials of standardised features up to a degree, with their derivatives.

    p(x) = (x_0 … x_{F−1}; x_a x_b for a ≤ b < K; x_a x_b x_c for a ≤ b ≤ c < K; …), K =
    ``n_product_inputs`` (default: all F). Column order: the F linear terms, then degree 2 in
    lexicographic order of (a, b), then degree 3, …

    Parameters
    ----------
    n_inputs : int, F
    degree : int, ≥ 1 (1 gives the features themselves)
    n_product_inputs : int or None, K ≤ F

    Raises
    ------
    MinbasisError
        degree < 1, K outside 1..F.
    """

    def __init__(self, n_inputs: int, degree: int = 2, n_product_inputs: int | None = None):
        self.n_inputs = int(n_inputs)
        self.degree = int(degree)
        K = self.n_inputs if n_product_inputs is None else int(n_product_inputs)
        if self.degree < 1:
            raise MinbasisError(f"degree must be >= 1, got {degree}")
        if not 1 <= K <= self.n_inputs:
            raise MinbasisError(f"n_product_inputs must be in 1..{self.n_inputs} (the number of features), got {K}")
        self.n_product_inputs = K
        #: index arrays (P_d, d) of the monomials of each degree d = 2..degree
        self.monomials = [np.array(list(combinations_with_replacement(range(K), d)), dtype=np.int64).reshape(-1, d)
                          for d in range(2, self.degree + 1)]
        # E[d][t]: (P_d, F) one-hot of the t-th factor, for derivative contractions
        self._onehot = [[sp.csr_matrix((np.ones(len(m)), (np.arange(len(m)), m[:, t])), shape=(len(m), self.n_inputs))
                         for t in range(m.shape[1])] for m in self.monomials]

    @property
    def n_outputs(self) -> int:
        """Number of polynomial features P."""
        return self.n_inputs + sum(len(m) for m in self.monomials)

    def to_dict(self) -> dict:
        """Hyper-parameters as a JSON-serialisable dict."""
        return {"n_inputs": self.n_inputs, "degree": self.degree, "n_product_inputs": self.n_product_inputs}

    def names(self, feature_names: Sequence[str] | None = None) -> list[str]:
        """Readable column names, e.g. ``"B3*B7"``."""
        fn = list(feature_names) if feature_names is not None else [f"B{a}" for a in range(self.n_inputs)]
        out = list(fn)
        for m in self.monomials:
            out += ["*".join(fn[a] for a in row) for row in m]
        return out

    def _others(self, x: np.ndarray, m: np.ndarray, t: int) -> np.ndarray:
        """Π_{s≠t} x[:, m[:, s]] → (N, P_d)."""
        out = np.ones((x.shape[0], len(m)))
        for s in range(m.shape[1]):
            if s != t:
                out *= x[:, m[:, s]]
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """p(x): (N, F) → (N, P)."""
        x = np.asarray(x, dtype=np.float64)
        cols = [x]
        for m in self.monomials:
            cols.append(np.prod(x[:, m], axis=2) if m.shape[1] else np.ones((len(x), 0)))
        return np.concatenate(cols, axis=1)

    def jacobian_apply(self, x: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Chain rule: ∂p/∂θ = (∂p/∂x)(∂x/∂θ) for derivatives D = ∂x/∂θ.

        Parameters
        ----------
        x : (N, F) standardised features; D : (N, q, F) their derivatives along q directions

        Returns
        -------
        (N, q, P)
        """
        x = np.asarray(x, dtype=np.float64)
        out = [D]
        for m in self.monomials:
            acc = np.zeros(D.shape[:2] + (len(m),))
            for t in range(m.shape[1]):
                acc += D[:, :, m[:, t]] * self._others(x, m, t)[:, None, :]
            out.append(acc)
        return np.concatenate(out, axis=2)

    def gradient(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """∂(w · p(x))/∂x for one weight vector w (P,): (N, F) → (N, F)."""
        x = np.asarray(x, dtype=np.float64)
        g = np.broadcast_to(w[:self.n_inputs], x.shape).copy()
        k = self.n_inputs
        for m, E in zip(self.monomials, self._onehot):
            wd = w[k:k + len(m)]
            k += len(m)
            for t in range(m.shape[1]):
                g += np.asarray(E[t].T @ (self._others(x, m, t) * wd).T).T
        return g


@dataclass
class PolynomialModel(AtomicEnergyModel):
    """Linear potential on polynomial features of standardised descriptors (module docstring).

    Attributes
    ----------
    basis : Basis
    poly : PolynomialFeatures
    mean, std : (C, F) float64, per-species standardisation
    weights : (C, P) float64, eV per unit polynomial feature
    e0 : (C,) float64, eV
    info : dict, provenance of the fit
    """

    kind = "poly"  # model kind in files and in minbasis.fit.registry (a class attribute, not a field)
    basis: Basis
    poly: PolynomialFeatures
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    e0: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check shapes and values.

        Raises
        ------
        MinbasisError
            Shapes inconsistent with the basis and polynomial features, or non-finite values.
        """
        require_basis(self.basis)
        C, F = len(self.basis.species), self.basis.n_features
        if self.poly.n_inputs != F:
            raise MinbasisError(f"polynomial features on {self.poly.n_inputs} inputs, basis has {F} features")
        self.mean = np.ascontiguousarray(self.mean, dtype=np.float64)
        self.std = np.ascontiguousarray(self.std, dtype=np.float64)
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        self.e0 = np.ascontiguousarray(self.e0, dtype=np.float64)
        P = self.poly.n_outputs
        if self.mean.shape != (C, F) or self.std.shape != (C, F) or self.weights.shape != (C, P) or self.e0.shape != (C,):
            raise MinbasisError(f"expected mean/std ({C}, {F}), weights ({C}, {P}), e0 ({C},); got "
                                f"{self.mean.shape}, {self.std.shape}, {self.weights.shape}, {self.e0.shape}")
        check_finite("PolynomialModel", self.mean, self.std, self.weights, self.e0)
        if (self.std <= 0).any():
            raise MinbasisError("std must be positive")

    @property
    def n_features(self) -> int:
        """Polynomial features per species (columns of the fit per species)."""
        return self.poly.n_outputs

    def atomic_energies_and_gradients(self, X: np.ndarray, ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-atom energies (N,) eV and ∂E_i/∂B_i (N, F) for raw features X (N, F) of channels ch (N,)."""
        X = np.asarray(X, dtype=np.float64)
        E = np.empty(len(ch))
        g = np.zeros_like(X)
        for c in range(len(self.e0)):
            idx = np.flatnonzero(ch == c)
            if not len(idx):
                continue
            x = (X[idx] - self.mean[c]) / self.std[c]
            E[idx] = self.e0[c] + self.poly.transform(x) @ self.weights[c]
            g[idx] = self.poly.gradient(x, self.weights[c]) / self.std[c]
        return E, g

    def save(self, path: str | os.PathLike) -> None:
        """Write the model (basis included) as a versioned, hashed ``.npz`` (kind ``"poly"``), atomically."""
        write_model_file(path, "poly", self.basis, {"mean": self.mean, "std": self.std, "weights": self.weights,
                                                    "e0": self.e0}, {"poly": self.poly.to_dict()}, self.info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PolynomialModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileFormatError
            Missing or corrupt file, another format version or kind, or content hash mismatch.
        """
        from ..errors import FileFormatError

        basis, arrays, hyper, info = read_model_file(path, "poly", ["mean", "std", "weights", "e0"])
        try:
            poly = PolynomialFeatures(**hyper["poly"])
            return cls(basis=basis, poly=poly, info=info, **arrays)
        except (MinbasisError, KeyError, TypeError) as exc:
            raise FileFormatError(f"{path}: {exc}") from exc


def _poly_equations(data: DescriptorSet, labels, cfg: LinearFitConfig, poly: PolynomialFeatures, mean, std,
                    sample_block: int = 4096, max_rows: int | None = None) -> NormalEquations:
    """Normal equations of a linear fit on polynomial features, accumulated chunk by chunk.

    For every chunk of structures the raw rows (polynomial features summed per species, force
    rows by the chain rule through the descriptor gradients, virial rows through the strain
    gradients) are formed and weighted by :func:`minbasis.fit.assembly.weight_rows` (the same
    rows as every linear fit); force rows are built from blocks of ``sample_block`` (i, k)
    gradient samples, so intermediates stay small. ``max_rows`` is passed to
    :class:`~minbasis.fit.assembly.NormalEquations` (a large value keeps the rows, for tests).
    """
    C, P = data.n_channels, poly.n_outputs
    weights = cfg.weights()
    use_e = labels.energy is not None and cfg.energy_weight > 0
    use_f = labels.forces is not None and cfg.forces_weight > 0
    use_v = labels.stress is not None and cfg.stress_weight > 0 and data.strain
    if not (use_e or use_f or use_v):
        raise LabelError("nothing to fit: give energies, forces or stress with a weight > 0")
    if not (weights.factors(labels.config_type) > 0).any():
        raise LabelError("every structure has config_type weight 0: nothing to fit")
    e0_vec = None
    if cfg.e0 is not None:
        missing = [s for s in data.basis.species if s not in cfg.e0]
        if missing:
            raise LabelError(f"e0 lacks isolated-atom energies for {missing}")
        e0_vec = np.array([float(cfg.e0[s]) for s in data.basis.species])
    acc = NormalEquations(C * P, 0 if e0_vec is not None else C, max_rows)
    for chunk in data:
        n, m = chunk.n_atoms, chunk.n_structures
        x = (chunk.X - mean[chunk.ch]) / std[chunk.ch]
        nat = np.diff(chunk.atom_ptr)
        per_sc = sp.csr_matrix((np.ones(n), (chunk.struct * C + chunk.ch, np.arange(n))), shape=(m * C, n))
        XE = np.asarray(per_sc @ poly.transform(x)).reshape(m, C * P) if use_e else np.zeros((m, C * P))
        counts = np.asarray(per_sc.sum(axis=1)).reshape(m, C)
        XF = np.zeros((0, 3, C * P))
        if use_f:
            XFc = np.zeros((n * C, 3 * P))
            i, k = chunk.samples[:, 0], chunk.samples[:, 1]
            for s0 in range(0, len(i), sample_block):
                s1 = min(s0 + sample_block, len(i))
                ii = i[s0:s1]
                D = chunk.J[s0:s1] / std[chunk.ch[ii]][:, None, :]
                dP = poly.jacobian_apply(x[ii], D)  # (g, 3, P)
                inc = sp.csr_matrix((np.ones(s1 - s0), (k[s0:s1] * C + chunk.ch[ii], np.arange(s1 - s0))),
                                    shape=(n * C, s1 - s0))
                XFc -= inc @ dP.reshape(s1 - s0, 3 * P)
            XF = XFc.reshape(n, C, 3, P).transpose(0, 2, 1, 3).reshape(n, 3, C * P)
            del XFc
        XVv = None
        if use_v:
            D = chunk.S.reshape(n, 9, -1) / std[chunk.ch][:, None, :]
            dP = poly.jacobian_apply(x, D)  # (n, 9, P)
            XV = np.asarray(per_sc @ dP.reshape(n, 9 * P)).reshape(m, C, 3, 3, P)
            XV = XV.transpose(0, 2, 3, 1, 4).reshape(m, 3, 3, C * P)
            XVv = np.moveaxis(matrix_to_voigt(np.moveaxis(XV, -1, 0)), 0, -1)  # (m, 6, C·P)
        vol = np.where(np.isfinite(chunk.volume), chunk.volume, np.nan) if use_v else np.full(m, np.nan)
        raw = RawRows(XE=XE, XF=XF, XV=XVv, counts=counts, n_atoms=nat, atom_ptr=np.asarray(chunk.atom_ptr),
                      volume=vol)
        lb = labels if use_f else Labels(labels.energy, None, labels.stress, labels.config_type)
        if not use_e:
            lb = Labels(None, lb.forces, lb.stress, lb.config_type)
        acc.add(weight_rows(raw, lb, chunk.start, weights, e0_vec))
    return acc


def fit_polynomial(basis: Basis, atoms_or_list, *, degree: int = 2, n_product_inputs: int | None = None,
                   energy_key: str | None = "energy", forces_key: str | None = "forces", stress_key: str | None = None,
                   config: LinearFitConfig | None = None, progress: bool = False) -> PolynomialModel:
    """Fit a linear model on polynomial features of a basis (typically the minimal basis).

    Parameters
    ----------
    basis : Basis
    atoms_or_list : ase.Atoms or list, training structures with labels
    degree : int, largest monomial degree (≥ 1)
    n_product_inputs : int or None, products only among the first K features (None: all)
    energy_key, forces_key, stress_key : label keys (None skips one)
    config : LinearFitConfig, weights and solver (default: Bayesian ridge)
    progress : bool, tqdm bar while computing descriptor gradients

    Returns
    -------
    PolynomialModel

    Raises
    ------
    MinbasisError
        More than :data:`MAX_POLY_COLUMNS` columns (lower ``degree`` or ``n_product_inputs``).
    LabelError
        Missing or malformed labels. StructureError / SpeciesError for bad structures.
    """
    cfg = config or LinearFitConfig()
    t0 = time.perf_counter()
    poly = PolynomialFeatures(basis.n_features, degree, n_product_inputs)
    C = len(basis.species)
    if C * poly.n_outputs > MAX_POLY_COLUMNS:
        K = poly.n_product_inputs
        raise MinbasisError(f"degree {degree} on {K} product inputs gives {poly.n_outputs} features per species "
                            f"({C * poly.n_outputs} columns, limit {MAX_POLY_COLUMNS}); lower the degree or set "
                            f"n_product_inputs (CLI --poly-inputs), e.g. 40 gives {basis.n_features + 40 * 41 // 2} "
                            f"per species at degree 2")
    atoms_list = as_atoms_list(atoms_or_list)
    labels = get_labels(atoms_list, energy_key, forces_key, stress_key)
    use_v = labels.stress is not None and cfg.stress_weight > 0
    data = DescriptorSet(basis, atoms_list, strain=use_v, progress=progress)
    mean, std = fit_standardiser(data.features, data.channels, C)
    eq = _poly_equations(data, labels, cfg, poly, mean, std)
    del data
    coef, e0_fit, info = solve_equations(eq, cfg)
    info.pop("_posterior", None)
    if cfg.e0 is not None:
        e0 = np.array([float(cfg.e0[s]) for s in basis.species])
    else:
        e0 = e0_fit if len(e0_fit) else np.zeros(C)
    info.update(model="poly", poly=poly.to_dict(), n_structures=len(atoms_list), energy_key=energy_key,
                forces_key=forces_key, stress_key=stress_key,
                weights={"energy": cfg.energy_weight, "forces": cfg.forces_weight, "stress": cfg.stress_weight,
                         "config_type": dict(cfg.config_type_weights)},
                fit_seconds=time.perf_counter() - t0)
    return PolynomialModel(basis=basis, poly=poly, mean=mean, std=std, weights=coef.reshape(C, poly.n_outputs),
                           e0=e0, info=info)
