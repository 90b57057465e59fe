"""Linear ACE fits: design matrix, weights, E0 and solvers (design.md 4, "Linear").

Model: E = Σ_i [E0(Z_i) + Σ_k c_{Z_i,k} B_{i,k}]. Rows of the least-squares problem:

* energy rows: (E − Σ_i E0(Z_i)) / n_atoms, weight ``energy_weight`` (1 / (eV/atom));
* force rows: 3 per atom, F = −∂E/∂r, weight ``forces_weight`` (1 / (eV/Å));
* virial rows: 6 per structure with stress, V·σ / n_atoms (Voigt), weight ``stress_weight``
  (1 / (eV/atom)); σ in eV/Å³ as ASE (σ = (1/V) ∂E/∂ε).

Each row is further multiplied by the weight of its structure's ``config_type``. E0 is either
given (isolated-atom energies) or fitted without regularisation: it only enters energy
rows, so it is eliminated exactly by projecting those rows onto the complement of the
composition columns, and recovered afterwards by least squares.

Solvers (columns are scaled to unit RMS first; the solution is scaled back):

* ``"bayesian"`` (default): Bayesian ridge — noise and prior precisions chosen by maximising
  the evidence (MacKay 1992), so no tuning is needed; :func:`bayesian_ridge` runs the updates
  of :class:`sklearn.linear_model.BayesianRidge` on the eigenvalues of AᵀA (faster for tall
  matrices); ``"bayesian_sklearn"`` calls scikit-learn itself;
* ``"ridge"``: Tikhonov-regularised least squares solved by :func:`scipy.linalg.lstsq`
  on the augmented matrix [A; √α I] (QR-based, no normal equations), α = ``alpha``;
* ``"ard"``: :class:`sklearn.linear_model.ARDRegression` (slow for > 1000 columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..describe import iter_batches
from ..errors import LabelError, MinbasisError
from ..kernels import as_atoms_list, design_blocks
from .data import Labels, check_config_type_weights, get_labels, matrix_to_voigt

__all__ = ["LinearFitConfig", "DesignMatrix", "build_design", "bayesian_ridge", "solve", "fit_linear"]

SOLVERS = ("bayesian", "bayesian_sklearn", "ridge", "ard")


@dataclass
class LinearFitConfig:
    """Weights and solver of a linear fit (see module docstring for the row definitions).

    Attributes
    ----------
    energy_weight, forces_weight, stress_weight : float
        Per-observable weights (0 drops the observable).
    config_type_weights : dict str → float
        Extra factor per ``atoms.info["config_type"]`` (default 1).
    solver : str
        ``"bayesian"``, ``"bayesian_sklearn"``, ``"ridge"`` or ``"ard"``.
    alpha : float
        Ridge strength for ``solver="ridge"`` (on unit-RMS columns).
    e0 : dict str → float or None
        Isolated-atom energies in eV; None fits E0 by least squares.
    """

    energy_weight: float = 30.0
    forces_weight: float = 1.0
    stress_weight: float = 30.0
    config_type_weights: dict = field(default_factory=dict)
    solver: str = "bayesian"
    alpha: float = 1e-8
    e0: dict | None = None

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise MinbasisError(f"unknown solver {self.solver!r}; choose one of {SOLVERS}")
        for name in ("energy_weight", "forces_weight", "stress_weight", "alpha"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise MinbasisError(f"{name} must be a finite number >= 0, got {v}")


@dataclass
class DesignMatrix:
    """Weighted least-squares problem A c ≈ y for the per-channel coefficients c (C·F,).

    ``counts`` (n_energy_rows, C) are the weighted per-atom composition columns of the energy
    rows (for fitting E0); ``kind`` labels each row ``"E"``, ``"F"`` or ``"V"``.
    """

    A: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    counts: np.ndarray
    n_energy: int


def _ct_weight(cfg: LinearFitConfig, ct: str) -> float:
    return float(cfg.config_type_weights.get(ct, 1.0))


def build_design(basis: Basis, atoms_list: Sequence[Atoms], labels: Labels, cfg: LinearFitConfig,
                 progress: bool = False) -> DesignMatrix:
    """Assemble the weighted design matrix of a linear fit.

    Raises
    ------
    LabelError
        If labels and structures disagree in number.
    """
    plan = basis.plan
    C, F = plan.n_channels, plan.n_features
    M = len(atoms_list)
    use_e = labels.energy is not None and cfg.energy_weight > 0
    use_f = labels.forces is not None and cfg.forces_weight > 0
    use_v = labels.stress is not None and cfg.stress_weight > 0
    if not (use_e or use_f or use_v):
        raise LabelError("nothing to fit: give energies, forces or stress with a weight > 0")
    check_config_type_weights(cfg.config_type_weights, labels.config_type)  # finite, ≤ 1e6, not all 0
    if labels.energy is not None and len(labels.energy) != M:
        raise LabelError(f"{len(labels.energy)} energies for {M} structures")
    e0_given = cfg.e0 is not None
    if e0_given:
        missing = [s for s in plan.species if s not in cfg.e0]
        if missing:
            raise LabelError(f"e0 lacks isolated-atom energies for {missing}")
        e0_vec = np.array([float(cfg.e0[s]) for s in plan.species])
    rowsE, yE, cntE, rowsF, yF, rowsV, yV = [], [], [], [], [], [], []
    bytes_per_pair = 3 * F * C * 8 + 3 * F * 8 * 2
    for start, chunk, batch in iter_batches(list(atoms_list), basis, 768 * 1024**2, bytes_per_pair,
                                            "design matrix" if progress else None):
        XE, XF, XV = design_blocks(plan, batch, with_virial=use_v)
        for m, atoms in enumerate(chunk):
            g = start + m
            n = len(atoms)
            w_ct = _ct_weight(cfg, labels.config_type[g])
            if use_e:
                w = cfg.energy_weight * w_ct
                counts = np.bincount(batch.centre_ch[batch.atom_ptr[m]:batch.atom_ptr[m + 1]], minlength=C) / n
                target = labels.energy[g] / n - (counts @ e0_vec if e0_given else 0.0)
                rowsE.append(w * XE[m] / n)
                yE.append(w * target)
                cntE.append(w * counts)
            if use_f:
                w = cfg.forces_weight * w_ct
                a0, a1 = batch.atom_ptr[m], batch.atom_ptr[m + 1]
                rowsF.append(w * XF[a0:a1].reshape(-1, C * F))
                yF.append(w * labels.forces[g].reshape(-1))
            if use_v and np.isfinite(labels.stress[g]).all():
                w = cfg.stress_weight * w_ct / n
                vol = abs(atoms.get_volume())
                rowsV.append(w * np.moveaxis(matrix_to_voigt(np.moveaxis(XV[m], -1, 0)), 0, -1))
                yV.append(w * vol * labels.stress[g])
    A = np.vstack([np.asarray(rowsE).reshape(-1, C * F)] +
                  ([np.vstack(rowsF)] if rowsF else []) + ([np.vstack(rowsV)] if rowsV else []))
    y = np.concatenate([np.asarray(yE, dtype=float)] + ([np.concatenate(yF)] if yF else []) +
                       ([np.concatenate(yV)] if yV else []))
    kind = np.array(["E"] * len(yE) + ["F"] * sum(len(v) for v in yF) + ["V"] * sum(len(v) for v in yV))
    counts = np.asarray(cntE, dtype=float).reshape(-1, C)
    return DesignMatrix(A=A, y=y, kind=kind, counts=counts if not e0_given else np.zeros((len(yE), 0)),
                        n_energy=len(yE))


def bayesian_ridge(A: np.ndarray, y: np.ndarray, max_iter: int = 300, tol: float = 1e-6,
                   alpha_1: float = 1e-6, alpha_2: float = 1e-6, lambda_1: float = 1e-6,
                   lambda_2: float = 1e-6) -> tuple[np.ndarray, dict]:
    """Bayesian ridge regression by evidence maximisation on the eigenvalues of AᵀA.

    Model y = A c + noise with noise precision α and prior c ~ N(0, λ⁻¹ I), Gamma hyper-priors
    (shape/rate α₁, α₂, λ₁, λ₂ as in scikit-learn). MacKay's fixed-point updates (MacKay,
    Neural Comput. 4, 415, 1992; Tipping, JMLR 1, 211, 2001) are the ones of
    :class:`sklearn.linear_model.BayesianRidge`, but they are run on the eigendecomposition of
    the Gram matrix AᵀA (cost n·p² + p³) instead of an SVD of A, which is several times cheaper
    for the tall design matrices of force fitting (n ≫ p). The result agrees with scikit-learn
    to its convergence tolerance (tested).

    Parameters
    ----------
    A : (n, p) float64; y : (n,) float64

    Returns
    -------
    coef : (p,) posterior mean
    info : dict with ``alpha_noise``, ``lambda_prior``, ``effective_alpha`` = λ/α (the ridge
        strength), ``n_iter``, ``effective_parameters`` γ
    """
    n, p = A.shape
    gram = A.T @ A
    Aty = A.T @ y
    yy = float(y @ y)
    evals, V = np.linalg.eigh(gram)
    evals = np.clip(evals, 0.0, None)
    Vty = V.T @ Aty
    alpha = 1.0 / (np.var(y) + np.finfo(float).eps)
    lam = 1.0
    coef_old = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        z = Vty / (evals + lam / alpha)  # coefficients in the eigenbasis
        rss = max(yy - 2.0 * float(z @ Vty) + float(z @ (evals * z)), 0.0)
        gamma = float(np.sum(alpha * evals / (lam + alpha * evals)))
        lam = (gamma + 2.0 * lambda_1) / (float(z @ z) + 2.0 * lambda_2)
        alpha = (n - gamma + 2.0 * alpha_1) / (rss + 2.0 * alpha_2)
        if coef_old is not None and np.sum(np.abs(coef_old - z)) < tol:
            break
        coef_old = z
    z = Vty / (evals + lam / alpha)
    return V @ z, {"alpha_noise": float(alpha), "lambda_prior": float(lam), "effective_alpha": float(lam / alpha),
                   "n_iter": n_iter, "effective_parameters": gamma}


def solve(dm: DesignMatrix, cfg: LinearFitConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Solve the weighted problem; returns (coefficients (C·F,), fitted E0 (C,) or empty, info)."""
    A, y = dm.A, dm.y.copy()
    A = A.copy()
    # eliminate the unregularised E0 columns exactly: project energy rows off the composition span
    nE = dm.n_energy
    Pc = None
    if dm.counts.shape[1] and nE:
        Cm = dm.counts
        Q, s, _ = np.linalg.svd(Cm, full_matrices=False)
        Q = Q[:, s > 1e-10 * s.max()]
        A[:nE] -= Q @ (Q.T @ A[:nE])
        y[:nE] -= Q @ (Q.T @ y[:nE])
        Pc = Q
    scale = np.sqrt(np.mean(A**2, axis=0))
    active = scale > 1e-14 * max(scale.max(), 1e-300)
    As = A[:, active] / scale[active]
    info: dict = {"solver": cfg.solver, "n_rows": int(A.shape[0]), "n_columns": int(A.shape[1]),
                  "n_active_columns": int(active.sum())}
    if cfg.solver == "ridge":
        import scipy.linalg

        k = As.shape[1]
        aug = np.vstack([As, np.sqrt(cfg.alpha) * np.eye(k)])
        coef_s = scipy.linalg.lstsq(aug, np.concatenate([y, np.zeros(k)]), lapack_driver="gelsy")[0]
        info["alpha"] = cfg.alpha
    elif cfg.solver == "bayesian":
        coef_s, ev = bayesian_ridge(As, y)
        info.update(ev)
    elif cfg.solver == "bayesian_sklearn":
        from sklearn.linear_model import BayesianRidge

        reg = BayesianRidge(fit_intercept=False, max_iter=300, tol=1e-6)
        reg.fit(As, y)
        coef_s = reg.coef_
        info.update(alpha_noise=float(reg.alpha_), lambda_prior=float(reg.lambda_),
                    effective_alpha=float(reg.lambda_ / reg.alpha_), n_iter=int(getattr(reg, "n_iter_", -1)))
    else:
        from sklearn.linear_model import ARDRegression

        reg = ARDRegression(fit_intercept=False, max_iter=100)
        reg.fit(As, y)
        coef_s = reg.coef_
    coef = np.zeros(A.shape[1])
    coef[active] = coef_s / scale[active]
    e0 = np.zeros(0)
    if Pc is not None:
        resid = dm.y[:nE] - dm.A[:nE] @ coef
        e0 = np.linalg.lstsq(dm.counts, resid, rcond=None)[0]
    fitted = dm.A @ coef
    if len(e0):
        fitted[:nE] += dm.counts @ e0
    info["train_rmse_weighted"] = float(np.sqrt(np.mean((fitted - dm.y) ** 2)))
    return coef, e0, info


def fit_linear(basis: Basis, atoms_or_list, *, energy_key: str | None = "energy", forces_key: str | None = "forces",
               stress_key: str | None = None, config: LinearFitConfig | None = None, progress: bool = False):
    """Fit a linear ACE model; returns a :class:`~minbasis.fit.model.LinearModel`.

    Raises
    ------
    LabelError
        Missing or malformed labels. StructureError / SpeciesError for bad structures.
    """
    from .model import LinearModel

    cfg = config or LinearFitConfig()
    atoms_list = as_atoms_list(atoms_or_list)
    labels = get_labels(atoms_list, energy_key, forces_key, stress_key)
    dm = build_design(basis, atoms_list, labels, cfg, progress=progress)
    coef, e0_fit, info = solve(dm, cfg)
    C, F = basis.plan.n_channels, basis.n_features
    if cfg.e0 is not None:
        e0 = np.array([float(cfg.e0[s]) for s in basis.species])
    else:
        e0 = e0_fit if len(e0_fit) else np.zeros(C)
    info.update(n_structures=len(atoms_list), energy_key=energy_key, forces_key=forces_key,
                stress_key=stress_key, weights={"energy": cfg.energy_weight, "forces": cfg.forces_weight,
                                                 "stress": cfg.stress_weight,
                                                 "config_type": dict(cfg.config_type_weights)})
    return LinearModel(basis=basis, weights=coef.reshape(C, F), e0=e0, info=info)
