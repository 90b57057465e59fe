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
from .data import DEFAULT_WEIGHTS, Labels, check_config_type_weights, get_labels
from .solvers import SMOOTHNESS_POWERS, SOLVERS, BayesianRidge, make_solver, solve_smoothness, solve_system

#: Noise terms of the committee's predictive std (LinearFitConfig.uncertainty_noise).
NOISE_MODELS = ("residuals", "evidence", "none")

__all__ = ["LinearFitConfig", "COMMITTEE_SIZE", "bayesian_ridge", "linear_equations", "solve_equations", "fit_linear",
           "committee_from_posterior", "committee_with_noise", "residual_noise", "calibration_factor", "calibration_factors", "calibration_scale", "basis_degrees", "NOISE_MODELS"]


#: Committee members drawn from the posterior when ``LinearFitConfig.committee`` is None and the solver is Bayesian.
COMMITTEE_SIZE = 32


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
    committee : int or None
        Committee members drawn from the posterior of the Bayesian solver (stored with the model
        for uncertainties, :mod:`minbasis.fit.model`); 0 disables; None means :data:`COMMITTEE_SIZE` (32) with the
        Bayesian solver (other solvers have no posterior: no committee).
    committee_seed : int
        Seed of the posterior draws.
    uncertainty_scale : float
        Calibration scale s of the committee spread (σ² = s² · committee variance + noise²);
        1 uses the posterior as it is.
    uncertainty_noise : str
        Noise term of the predictive std: ``"residuals"`` (default) the RMS training residual of
        each observable (energy per atom, force components, virial per atom) of the mean model;
        ``"evidence"`` 1/√α of the evidence maximisation divided by each observable's row weight
        (one noise level for all weighted rows); ``"none"`` the committee spread alone.
    calibration_fraction : float in [0, 1)
        0 (default): no recalibration. Otherwise a seeded, per-config_type stratified fraction
        of the training frames is held out, a model is fitted on the rest, and the factor t on
        the whole predictive std is chosen on the held-out force errors (energy errors without
        forces) by the mean CRPS (:func:`calibration_scale`); the final model is fitted on all frames and
        stores t (``uncertainty["calibration"]``; energies and stresses get their own factors,
        ``calibration_energy`` and ``calibration_stress``, where labelled: :func:`calibration_factors`).
        Doubles the fitting time.
    smoothness_prior : str
        ``"none"`` (default): one prior precision for every (unit-RMS) coefficient.
        ``"algebraic"`` or ``"exponential"``: the prior precision of a coefficient grows with the
        total degree d = Σ_t (n_t + 1 + l_t) of its basis function, as (1 + d)^p or exp(p·d)
        (:func:`~minbasis.fit.solvers.smoothness_weights`; ACEpotentials' smoothness priors,
        Witt et al., J. Chem. Phys. 159, 164101 (2023)).
    smoothness_power : float or None
        p of the smoothness prior; None (default) chooses it by the Bayesian evidence among
        :data:`~minbasis.fit.solvers.SMOOTHNESS_POWERS` (0 included), which needs the Bayesian solver.
    """

    energy_weight: float = DEFAULT_WEIGHTS["energy"]
    forces_weight: float = DEFAULT_WEIGHTS["forces"]
    stress_weight: float = DEFAULT_WEIGHTS["stress"]
    config_type_weights: dict = field(default_factory=dict)
    solver: str = "bayesian"
    alpha: float = 1e-8
    e0: dict | None = None
    committee: int | None = None
    committee_seed: int = 0
    uncertainty_scale: float = 1.0
    uncertainty_noise: str = "residuals"
    calibration_fraction: float = 0.0
    smoothness_prior: str = "none"
    smoothness_power: float | None = None

    def weights(self) -> RowWeights:
        """The observable and config_type weights as :class:`~minbasis.fit.assembly.RowWeights`."""
        return RowWeights(self.energy_weight, self.forces_weight, self.stress_weight, dict(self.config_type_weights))

    def __post_init__(self) -> None:
        if self.solver == "bayesian_sklearn":  # removed solver name of version 0.x: the same model
            self.solver = "bayesian"
        if self.solver not in SOLVERS:
            raise MinbasisError(f"unknown solver {self.solver!r}; choose one of {SOLVERS}")
        if not (np.isfinite(self.calibration_fraction) and 0.0 <= self.calibration_fraction < 1.0):
            raise MinbasisError(f"calibration_fraction must be in [0, 1), got {self.calibration_fraction}")
        if self.smoothness_prior not in ("none", *SMOOTHNESS_POWERS):
            raise MinbasisError(f"smoothness_prior must be 'none' or one of {sorted(SMOOTHNESS_POWERS)}, "
                                f"got {self.smoothness_prior!r}")
        if self.smoothness_power is not None and not (np.isfinite(self.smoothness_power) and self.smoothness_power >= 0):
            raise MinbasisError(f"smoothness_power must be a finite number >= 0, got {self.smoothness_power}")
        if self.smoothness_prior != "none" and self.smoothness_power is None and self.solver != "bayesian":
            raise MinbasisError(f"a smoothness power chosen by evidence needs solver 'bayesian', not {self.solver!r}; "
                                f"give --smoothness-power")
        if self.uncertainty_noise not in NOISE_MODELS:
            raise MinbasisError(f"uncertainty_noise must be one of {NOISE_MODELS}, got {self.uncertainty_noise!r}")
        if self.committee is not None and (int(self.committee) != self.committee or self.committee < 0):
            raise MinbasisError(f"committee must be an integer >= 0, got {self.committee}")
        if self.committee is not None and self.committee > 0 and self.solver != "bayesian":
            raise MinbasisError(f"a committee needs the posterior of solver 'bayesian', not {self.solver!r}; "
                                f"use --solver bayesian or --committee 0")
        for name in ("energy_weight", "forces_weight", "stress_weight", "alpha", "uncertainty_scale"):
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


def basis_degrees(basis: Basis) -> np.ndarray:
    """Total degree Σ_t (n_t + 1 + l_t) of every coefficient column (P = C·F,), channel-major."""
    deg = np.array([sum(f[1] + 1 + f[2] for f in inv["factors"]) for inv in basis.spec.invariants], dtype=float)
    return np.tile(deg, len(basis.species))


def solve_equations(eq: NormalEquations, cfg: LinearFitConfig, degrees: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Solve accumulated normal equations: (coefficients (P,), E0 (C,) fitted or empty, info).

    ``degrees`` (P,): total degrees of the columns (:func:`basis_degrees`), needed by a
    smoothness prior (``cfg.smoothness_prior``); with ``cfg.smoothness_power`` None every power
    of :data:`~minbasis.fit.solvers.SMOOTHNESS_POWERS` is solved and the one of largest
    evidence kept (``info["smoothness_power"]``, ``info["smoothness_log_evidence"]``).

    Raises
    ------
    MinbasisError
        A solver failure (the message names the solver and the remedy); a smoothness prior
        without ``degrees``.
    LabelError
        No rows.
    """
    system = eq.system()
    solver = make_solver(cfg.solver, cfg.alpha)
    if cfg.smoothness_prior == "none":
        res = solve_system(system, solver)
        smooth = {}
    else:
        if degrees is None:
            raise MinbasisError("a smoothness prior needs the degrees of the basis functions (linear ACE fits only)")
        powers = [cfg.smoothness_power] if cfg.smoothness_power is not None else SMOOTHNESS_POWERS[cfg.smoothness_prior]
        power, res, tried = solve_smoothness(system, solver, degrees, powers, cfg.smoothness_prior)
        smooth = {"smoothness_prior": cfg.smoothness_prior, "smoothness_power": power,
                  "smoothness_log_evidence": tried}
    coef = res.coef
    e0 = eq.e0(coef)
    info = dict(res.info, **smooth)
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
    t_cal = None
    if cfg.calibration_fraction > 0 and (cfg.committee is None or cfg.committee > 0) and cfg.solver == "bayesian":
        t_cal = calibration_factor(basis, atoms_list, labels, (energy_key, forces_key, stress_key), cfg)
    src = (source_file, (energy_key, forces_key, stress_key)) if source_file is not None else None
    eq = linear_equations(basis, atoms_list, labels, cfg, progress=progress, dask=dask, source_file=src)
    coef, e0_fit, info = solve_equations(eq, cfg, basis_degrees(basis) if cfg.smoothness_prior != "none" else None)
    posterior = info.pop("_posterior", None)
    C, F = basis.plan.n_channels, basis.n_features
    if cfg.e0 is not None:
        e0 = np.array([float(cfg.e0[s]) for s in basis.species])
    else:
        e0 = e0_fit if len(e0_fit) else np.zeros(C)
    committee = committee_with_noise(eq, cfg, basis, coef, e0, posterior, info, atoms_list, labels)
    if committee and t_cal is not None:
        committee["uncertainty"].update(t_cal)
        info["committee"].update(t_cal, calibration_fraction=cfg.calibration_fraction)
    info.update(n_structures=len(atoms_list), energy_key=energy_key, forces_key=forces_key,
                stress_key=stress_key, weights={"energy": cfg.energy_weight, "forces": cfg.forces_weight,
                                                 "stress": cfg.stress_weight,
                                                 "config_type": dict(cfg.config_type_weights)})
    return LinearModel(basis=basis, weights=coef.reshape(C, F), e0=e0, info=info, **committee)


def committee_from_posterior(eq: NormalEquations, cfg: LinearFitConfig, coef: np.ndarray, e0: np.ndarray, posterior,
                             info: dict, C: int, F: int) -> dict:
    """Committee of a Bayesian linear fit: K posterior draws as deviations from the mean.

    Each member's coefficients c_k are drawn from the posterior N(μ, (α AᵀA + λ I)⁻¹)
    (:meth:`~minbasis.fit.solvers.Posterior.sample`); its E0 is the least-squares E0 for c_k
    (``eq.e0(c_k)``, when E0 is fitted). The noise levels of the predictive distribution are
    1/√α divided by the row weight of each observable (α = ``info["alpha_noise"]`` is in
    weighted-row units).

    Returns
    -------
    dict of LinearModel keyword arguments: ``committee_weights`` (K, C, F), ``committee_e0``
    (K, C) eV and ``uncertainty`` (noise levels from the evidence for
    ``uncertainty_noise="evidence"``, else 0 — :func:`residual_noise` fills them for
    ``"residuals"``); empty when there is no posterior or the committee is 0.
    """
    K = cfg.committee if cfg.committee is not None else (COMMITTEE_SIZE if cfg.solver == "bayesian" else 0)
    if posterior is None or K <= 0:
        return {}
    draws = posterior.sample(int(K), seed=cfg.committee_seed)  # (K, P)
    dw = (draws - coef[None, :]).reshape(K, C, F)
    if cfg.e0 is None and len(eq.e0(coef)):
        de0 = np.stack([eq.e0(c) for c in draws]) - eq.e0(coef)[None, :]
    else:
        de0 = np.zeros((K, C))
    sig = 1.0 / np.sqrt(float(info["alpha_noise"])) if cfg.uncertainty_noise == "evidence" else 0.0
    unc = {"scale": float(cfg.uncertainty_scale),
           "noise_energy_per_atom": sig / cfg.energy_weight if cfg.energy_weight > 0 else 0.0,
           "noise_forces": sig / cfg.forces_weight if cfg.forces_weight > 0 else 0.0,
           "noise_stress_per_atom": sig / cfg.stress_weight if cfg.stress_weight > 0 else 0.0}
    info["committee"] = {"size": int(K), "seed": int(cfg.committee_seed), "noise_model": cfg.uncertainty_noise,
                         **unc}
    return {"committee_weights": dw, "committee_e0": de0, "uncertainty": unc}


def committee_with_noise(eq: NormalEquations, cfg: LinearFitConfig, basis: Basis, coef: np.ndarray, e0: np.ndarray,
                         posterior, info: dict, atoms_list: Sequence[Atoms], labels: Labels) -> dict:
    """:func:`committee_from_posterior` with, for ``cfg.uncertainty_noise="residuals"``, the noise
    levels of :func:`residual_noise` of the mean model (``coef`` (P,), ``e0`` (C,) eV) on the
    frames it was fitted to, in the committee's ``uncertainty`` and in ``info["committee"]``.

    Returns
    -------
    dict of LinearModel keyword arguments (empty without a posterior or with committee 0)
    """
    from .model import LinearModel

    C, F = basis.plan.n_channels, basis.n_features
    committee = committee_from_posterior(eq, cfg, coef, e0, posterior, info, C, F)
    if committee and cfg.uncertainty_noise == "residuals":
        mean_model = LinearModel(basis=basis, weights=coef.reshape(C, F), e0=e0)
        noise = residual_noise(atoms_list, labels, mean_model.predict(atoms_list))
        committee["uncertainty"].update(noise)
        info["committee"].update(noise)
    return committee


def residual_noise(atoms_list: Sequence[Atoms], labels: Labels, pred) -> dict:
    """Per-observable noise levels: RMS training residuals of a model's prediction.

    Returns
    -------
    dict ``noise_energy_per_atom`` (eV/atom), ``noise_forces`` (eV/Å, over Cartesian
    components), ``noise_stress_per_atom`` (eV/atom, residual of V·σ/n over Voigt components);
    0 for observables without labels.
    """
    n_atoms = np.array([len(a) for a in atoms_list], dtype=float)
    out = {"noise_energy_per_atom": 0.0, "noise_forces": 0.0, "noise_stress_per_atom": 0.0}
    if labels.energy is not None:
        out["noise_energy_per_atom"] = float(np.sqrt(np.mean(((pred.energy - labels.energy) / n_atoms) ** 2)))
    if labels.forces is not None:
        dF = np.concatenate([(pred.forces[k] - labels.forces[k]).ravel() for k in range(len(atoms_list))])
        out["noise_forces"] = float(np.sqrt(np.mean(dF**2)))
    if labels.stress is not None:
        has = [k for k in range(len(atoms_list)) if np.isfinite(labels.stress[k]).all() and
               np.isfinite(pred.stress[k]).all()]
        if has:
            v = np.array([abs(atoms_list[k].get_volume()) / n_atoms[k] for k in has])
            dS = (pred.stress[has] - labels.stress[has]) * v[:, None]
            out["noise_stress_per_atom"] = float(np.sqrt(np.mean(dS**2)))
    return out


def calibration_factors(pred, labels: Labels) -> dict:
    """Per-observable factors on σ (:func:`calibration_scale`) from held-out predictions:
    ``calibration`` (forces, or energies without force labels; the default for the others),
    ``calibration_energy`` and ``calibration_stress`` where those are labelled (eV, eV/Å³ σ alike).

    Raises
    ------
    MinbasisError
        Neither force nor energy labels, or a prediction without standard deviations.
    """
    out = {"calibration": calibration_scale(pred, labels)}
    if labels.energy is not None and labels.forces is not None:
        out["calibration_energy"] = calibration_scale(pred, labels, "energy")
    if labels.stress is not None and np.isfinite(labels.stress).any() and pred.stress_std is not None \
            and np.isfinite(pred.stress_std).any():
        out["calibration_stress"] = calibration_scale(pred, labels, "stress")
    return out


def calibration_factor(basis: Basis, atoms_list: Sequence[Atoms], labels: Labels, keys: tuple, cfg: LinearFitConfig
                       ) -> dict:
    """Factors t on the predictive std chosen on a validation split inside the training frames.

    Holds out ``cfg.calibration_fraction`` of the frames (stratified by config_type, seed
    ``cfg.committee_seed``; :func:`~minbasis.fit.metrics.stratified_holdout`), fits on the rest
    with the same settings and returns the factors of :func:`calibration_factors` on the
    held-out errors (one per observable, each minimising the mean CRPS, :func:`calibration_scale`).

    Raises
    ------
    MinbasisError
        Too few frames to hold any out, or no labelled errors to calibrate on.
    """
    import dataclasses

    from .metrics import stratified_holdout

    val, fit = stratified_holdout(labels.config_type, cfg.calibration_fraction, cfg.committee_seed)
    if not len(val):
        raise MinbasisError(f"calibration_fraction {cfg.calibration_fraction} holds out no frames; use a larger "
                            f"fraction or 0")
    sub = fit_linear(basis, [atoms_list[i] for i in fit], energy_key=keys[0], forces_key=keys[1],
                     stress_key=keys[2], config=dataclasses.replace(cfg, calibration_fraction=0.0))
    return calibration_factors(sub.predict([atoms_list[i] for i in val]), labels.take(val))


def calibration_scale(pred, labels: Labels, observable: str | None = None) -> float:
    """Factor t on σ that minimises the mean CRPS of the held-out errors.

    Over the force components (``observable="forces"``; the default, or the energies when there
    are no forces), the energies (``"energy"``) or the labelled stress components (``"stress"``),
    t minimises the mean continuous ranked probability score of the Gaussian predictive
    distributions N(prediction, (tσ)²) at the labels,

        CRPS = tσ · [u (2Φ(u) − 1) + 2φ(u) − 1/√π],   u = |prediction − label| / (tσ)

    (Gneiting & Raftery, J. Am. Stat. Assoc. 102, 359 (2007), eq. 21). CRPS is a proper scoring
    rule: for Gaussian errors it recovers their true scale, and it grows only linearly with the
    error, so the heavy tails of force errors (hot MD frames, defects) neither dominate t, as
    they do the log-likelihood's t² = mean(u²), nor are ignored, as by matching the 68 %
    quantile alone, which leaves well under 95 % of the errors within 2σ. It is convex in t
    (a perspective of a convex function), so the bounded 1-D minimisation finds the optimum.
    Recalibration on held-out data as in Kuleshov et al., ICML 2018. ``pred``: a
    :class:`~minbasis.fit.model.Prediction` with standard deviations of the same structures as
    ``labels``.

    Raises
    ------
    MinbasisError
        No labels of the observable, or a prediction without standard deviations.
    """
    from scipy.optimize import minimize_scalar
    from scipy.stats import norm

    if observable is None:
        observable = "forces" if labels.forces is not None else "energy"
    if observable == "forces" and pred.forces_std is not None and labels.forces is not None:
        err = np.concatenate([np.abs(pred.forces[k] - labels.forces[k]).ravel() for k in range(len(labels.forces))])
        sig = np.concatenate([np.asarray(pred.forces_std[k]).ravel() for k in range(len(labels.forces))])
    elif observable == "energy" and pred.energy_std is not None and labels.energy is not None:
        err, sig = np.abs(pred.energy - labels.energy), np.asarray(pred.energy_std)
    elif observable == "stress" and pred.stress_std is not None and labels.stress is not None:
        err, sig = np.abs(pred.stress - labels.stress).ravel(), np.asarray(pred.stress_std).ravel()
    else:
        raise MinbasisError(f"calibration of {observable} needs its labels and a committee")
    ok = np.isfinite(err) & np.isfinite(sig) & (sig > 0)
    err, sig = err[ok], sig[ok]
    if not len(err):
        raise MinbasisError(f"calibration of {observable}: no finite held-out errors")

    def crps(log_t: float) -> float:
        s = np.exp(log_t) * sig
        u = err / s
        return float(np.mean(s * (u * (2.0 * norm.cdf(u) - 1.0) + 2.0 * norm.pdf(u) - 1.0 / np.sqrt(np.pi))))

    res = minimize_scalar(crps, bounds=(np.log(1e-3), np.log(1e3)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))
