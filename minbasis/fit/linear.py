"""Linear ACE fits: E = Σ_i [E0(Z_i) + Σ_k c_{Z_i,k} B_{i,k}] (Drautz, PRB 99, 014104, 2019).

The weighted rows (energy per atom, forces, virials per atom; per observable and per
``config_type`` weights; E0 unregularised and eliminated exactly) are built by the one
assembly core :mod:`minbasis.fit.assembly`, which streams structures in batches into the
normal-equation pieces, so the memory of a fit does not grow with the number of structures.
The solvers (:mod:`minbasis.fit.solvers`) are interchangeable objects:

* ``"bayesian"`` (default): Bayesian ridge, noise and prior precisions chosen by maximising the
  evidence (MacKay 1992) on the eigen-coordinates of AᵀA, residual evaluated without
  cancellation; no tuning needed;
* ``"ridge"``: Tikhonov-regularised least squares with strength ``alpha`` (unit-RMS columns);
* ``"ard"``: automatic relevance determination (for a few thousand columns at most).

With fewer rows than columns (energy-only fits) the rows themselves are kept and solved by a
n × n eigendecomposition of A Aᵀ (the cheaper route). With ``dask=`` the assembly runs on a Dask cluster
(:mod:`minbasis.fit.distributed`): every worker accumulates its shard and the pieces are
tree-summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..errors import LabelError, MinbasisError
from ..kernels import as_atoms_list
from .assembly import NormalEquations, RowWeights, accumulate, LinearSystem
from .data import Labels, check_config_type_weights, get_labels
from .solvers import SOLVERS, BayesianRidge, make_solver, solve_system

__all__ = ["LinearFitConfig", "bayesian_ridge", "linear_equations", "solve_equations", "fit_linear"]


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
        ``"bayesian"``, ``"ridge"`` or ``"ard"`` (:mod:`minbasis.fit.solvers`).
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

    def weights(self) -> RowWeights:
        """The observable and config_type weights as :class:`~minbasis.fit.assembly.RowWeights`."""
        return RowWeights(self.energy_weight, self.forces_weight, self.stress_weight, dict(self.config_type_weights))

    def __post_init__(self) -> None:
        if self.solver == "bayesian_sklearn":  # removed solver name of version 0.x: the same model
            self.solver = "bayesian"
        if self.solver not in SOLVERS:
            raise MinbasisError(f"unknown solver {self.solver!r}; choose one of {SOLVERS}")
        for name in ("energy_weight", "forces_weight", "stress_weight", "alpha"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise MinbasisError(f"{name} must be a finite number >= 0, got {v}")


def linear_equations(basis: Basis, atoms_list: Sequence[Atoms], labels: Labels, cfg: LinearFitConfig,
                     progress: bool = False, dask=None, source_file: tuple | None = None) -> NormalEquations:
    """Accumulate the normal equations of a linear fit (serially, or on Dask with ``dask=``).

    Parameters
    ----------
    basis : Basis; atoms_list : M structures; labels : their Labels; cfg : LinearFitConfig
    progress : tqdm bar over structures
    dask : None, a ``distributed.Client``, or a spec string (``"local:N"``, ``"tcp://host:port"``)
    source_file : with ``dask``, optional (path, (energy_key, forces_key, stress_key)) from which
        every worker reads its own shard of ``atoms_list``

    Raises
    ------
    LabelError
        Labels missing or malformed, E0 incomplete, nothing to fit.
    """
    e0 = _e0_vector(basis, cfg)
    if dask is not None:
        from .distributed import distributed_equations

        return distributed_equations(basis, atoms_list, labels, cfg.weights(), e0, dask, source_file=source_file)
    return accumulate(basis, atoms_list, labels, cfg.weights(), e0, progress="design rows" if progress else None)


def _e0_vector(basis: Basis, cfg: LinearFitConfig) -> np.ndarray | None:
    if cfg.e0 is None:
        return None
    missing = [s for s in basis.species if s not in cfg.e0]
    if missing:
        raise LabelError(f"e0 lacks isolated-atom energies for {missing}")
    return np.array([float(cfg.e0[s]) for s in basis.species])


def solve_equations(eq: NormalEquations, cfg: LinearFitConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Solve accumulated normal equations: (coefficients (P,), E0 (C,) fitted or empty, info).

    Raises
    ------
    MinbasisError
        A solver failure (the message names the solver and the remedy).
    LabelError
        No rows.
    """
    system = eq.system()
    res = solve_system(system, make_solver(cfg.solver, cfg.alpha))
    coef = res.coef
    e0 = eq.e0(coef)
    info = dict(res.info)
    G, b, yy = (system.G, system.b, system.yy) if system.form == "gram" else (None, None, None)
    if system.form == "rows":
        rss = float(np.sum((system.A @ coef - system.y) ** 2))
    else:
        rss = max(yy - 2.0 * float(coef @ b) + float(coef @ (G @ coef)), 0.0)
    info["train_rmse_weighted"] = float(np.sqrt(rss / max(eq.total_rows, 1)))
    info["rows"] = dict(eq.n_rows)
    if not (np.isfinite(coef).all() and np.isfinite(e0).all()):
        raise MinbasisError(f"solver {cfg.solver!r} produced non-finite weights or E0; use --solver ridge with "
                            f"--alpha 1e-6, or a smaller basis")
    info["_posterior"] = res.posterior
    return coef, e0, info


def bayesian_ridge(A: np.ndarray, y: np.ndarray, max_iter: int = 300, tol: float = 1e-6) -> tuple[np.ndarray, dict]:
    """Bayesian ridge regression of y ≈ A c (no column scaling, no E0), as :class:`~minbasis.fit.solvers.BayesianRidge`.

    Parameters
    ----------
    A : (n, p) float64; y : (n,) float64

    Returns
    -------
    coef : (p,) posterior mean; info : dict (``alpha_noise``, ``lambda_prior``, ``effective_alpha``,
        ``n_iter``, ``effective_parameters``, ``log_evidence``)
    """
    A = np.asarray(A, dtype=float)
    y = np.asarray(y, dtype=float)
    n, p = A.shape
    if n < p:
        system = LinearSystem("rows", p, n, A=A, y=y)
    else:
        system = LinearSystem("gram", p, n, G=A.T @ A, b=A.T @ y, yy=float(y @ y))
    res = BayesianRidge(max_iter=max_iter, tol=tol).solve(system)
    return res.coef, res.info


def fit_linear(basis: Basis, atoms_or_list, *, energy_key: str | None = "energy", forces_key: str | None = "forces",
               stress_key: str | None = None, config: LinearFitConfig | None = None, progress: bool = False,
               dask=None, source_file: str | None = None):
    """Fit a linear ACE model; returns a :class:`~minbasis.fit.model.LinearModel`.

    Parameters
    ----------
    basis : Basis; atoms_or_list : ase.Atoms or list with labels
    energy_key, forces_key, stress_key : label keys (None skips an observable)
    config : LinearFitConfig (weights, solver, E0)
    progress : tqdm bar while assembling
    dask : None (one process), a ``distributed.Client`` or ``"local:N"`` / ``"tcp://host:port"``
    source_file : with ``dask``, the file ``atoms_or_list`` was read from (all of it, in order):
        workers then read their own shards from it instead of receiving structures

    Raises
    ------
    LabelError
        Missing or malformed labels. StructureError / SpeciesError for bad structures.
    MinbasisError
        Solver failure (names the solver and the remedy).
    """
    from .model import LinearModel

    cfg = config or LinearFitConfig()
    check_config_type_weights(cfg.config_type_weights)  # a mapping of finite numbers in [0, 1e150]
    atoms_list = as_atoms_list(atoms_or_list)
    labels = get_labels(atoms_list, energy_key, forces_key, stress_key)
    src = (source_file, (energy_key, forces_key, stress_key)) if source_file is not None else None
    eq = linear_equations(basis, atoms_list, labels, cfg, progress=progress, dask=dask, source_file=src)
    coef, e0_fit, info = solve_equations(eq, cfg)
    info.pop("_posterior", None)
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
