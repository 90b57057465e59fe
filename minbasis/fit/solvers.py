"""Solvers of the linear least-squares problem, all with one interface.

Every solver takes a :class:`~minbasis.fit.assembly.LinearSystem` (Gram pieces AᵀA, Aᵀy, yᵀy,
or the rows themselves when there are fewer rows than columns) and returns a
:class:`SolveResult`: ``solver.solve(system) -> SolveResult(coef, info, posterior)``.
:func:`solve_system` first scales the columns to unit RMS (and drops columns that are zero on
the data), then maps the solution back.

* :class:`Ridge` — Tikhonov: c = (AᵀA + α I)⁻¹ Aᵀy on unit-RMS columns.
* :class:`BayesianRidge` — noise precision α and prior precision λ (c ~ N(0, λ⁻¹ I)) chosen
  by maximising the evidence with MacKay's fixed-point updates (MacKay, Neural Comput. 4, 415
  (1992); Tipping, JMLR 1, 211 (2001)) and the Gamma hyper-priors of scikit-learn's
  ``BayesianRidge``. Everything is evaluated in the eigen-coordinates of AᵀA (one
  eigendecomposition of AᵀA, or of the n × n matrix A Aᵀ when n < P): with β = Vᵀ Aᵀy and r = λ/α, the
  residual is ‖A c − y‖² = E⊥ + Σ_k β_k² r² / (g_k (g_k + r)²), where E⊥ (the part of y that no
  coefficient vector reaches) is computed once. This form has no cancellation, unlike
  yᵀy − 2 cᵀAᵀy + cᵀAᵀA c, which loses every digit on an ill-conditioned Gram matrix and sent
  the old iteration to overflow. Directions with g_k ≤ 10⁻¹² max g are treated as the null
  space (the prior alone sets them: coefficient 0). The posterior N(μ, (αAᵀA + λI)⁻¹) is
  returned for committees.
* :class:`ARD` — automatic relevance determination (one prior precision per column; Tipping
  2001), MacKay updates on the Gram matrix, columns whose precision exceeds a threshold are
  pruned. Cost O(P³) per iteration: for a few thousand columns at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MinbasisError
from .assembly import LinearSystem

__all__ = ["Spectrum", "spectrum", "Posterior", "SolveResult", "Ridge", "BayesianRidge", "ARD", "make_solver",
           "solve_system", "smoothness_weights", "solve_smoothness", "SMOOTHNESS_POWERS", "SOLVERS"]

SOLVERS = ("bayesian", "ridge", "ard")

#: Relative eigenvalue below which a direction of AᵀA counts as null (on unit-RMS columns).
NULL_TOL = 1e-12


@dataclass
class Spectrum:
    """Eigen-coordinates of a least-squares system (unit-RMS columns).

    Attributes
    ----------
    g : (k,) eigenvalues of AᵀA (all of them for the Gram form; the non-null squared singular
        values for the row form), ascending, ≥ 0
    V : (P, k) orthonormal eigenvectors
    beta : (k,) Vᵀ Aᵀy
    yy : float, yᵀy
    e_perp : float, ‖y‖² − Σ_{g > tol} β²/g evaluated stably (residual of the unregularised fit
        restricted to the non-null directions)
    n : int, effective number of rows; P : int, columns
    """

    g: np.ndarray
    V: np.ndarray
    beta: np.ndarray
    yy: float
    e_perp: float
    n: int
    P: int

    @property
    def kept(self) -> np.ndarray:
        """Mask of the non-null directions (g > NULL_TOL · max g)."""
        gmax = float(self.g.max()) if len(self.g) else 0.0
        return self.g > NULL_TOL * max(gmax, 1e-300)


def spectrum(system: LinearSystem) -> Spectrum:
    """Eigen-coordinates of ``system``: eigh of AᵀA (Gram form) or of A Aᵀ (row form, n < P).

    Raises
    ------
    MinbasisError
        Non-finite entries in the system (the message names the likely cause).
    """
    if system.form == "rows":
        A, y = system.A, system.y
        if not (np.isfinite(A).all() and np.isfinite(y).all()):
            raise MinbasisError("the design rows contain NaN or inf: check the descriptors (radial_scale, r_cut) "
                                "and the labels")
        # n < P: eigendecomposition of the small n × n matrix A Aᵀ = U diag(g) Uᵀ; the right singular
        # vectors of the non-null directions are V = Aᵀ U / √g (null ones are dropped: their
        # coefficients are 0, as the prior alone would set them)
        g, U = np.linalg.eigh(A @ A.T)
        g = np.clip(g, 0.0, None)
        keep = g > NULL_TOL * max(float(g.max()) if len(g) else 0.0, 1e-300)
        g, U = g[keep], U[:, keep]
        sv = np.sqrt(g)
        V = (A.T @ U) / sv
        uy = U.T @ y
        beta = sv * uy
        e_perp = float(np.sum((y - U @ uy) ** 2))
        return Spectrum(g=g, V=V, beta=beta, yy=float(y @ y), e_perp=e_perp, n=system.n_rows, P=system.P)
    G, b = system.G, system.b
    if not (np.isfinite(G).all() and np.isfinite(b).all() and np.isfinite(system.yy)):
        raise MinbasisError("the normal equations contain NaN or inf: check the descriptors (radial_scale, r_cut) "
                            "and the labels")
    import scipy.linalg

    # LAPACK dsyevr (MRRR): all eigenpairs, measured faster than numpy's dsyevd for P in the thousands
    g, V = scipy.linalg.eigh(G, driver="evr", check_finite=False)
    g = np.clip(g, 0.0, None)
    beta = V.T @ b
    spec = Spectrum(g=g, V=V, beta=beta, yy=float(system.yy), e_perp=0.0, n=system.n_rows, P=system.P)
    k = spec.kept
    spec.e_perp = max(float(system.yy) - float(np.sum(beta[k] ** 2 / g[k])), 0.0)
    return spec


@dataclass
class Posterior:
    """Gaussian posterior of the coefficients of a Bayesian linear fit (scaled coordinates).

    c_scaled ~ N(mean, V diag(1/(α g + λ)) Vᵀ + (I − V Vᵀ)/λ); the unscaled coefficients are
    c = c_scaled / scale on the ``active`` columns (0 elsewhere).

    Attributes
    ----------
    mean : (P_active,); V : (P_active, k); g : (k,); alpha : noise precision (1/weighted-row²);
    lam : prior precision; scale : (P,) column scales; active : (P,) bool
    """

    mean: np.ndarray
    V: np.ndarray
    g: np.ndarray
    alpha: float
    lam: float
    scale: np.ndarray
    active: np.ndarray

    def sample(self, n_samples: int, seed: int = 0) -> np.ndarray:
        """Draw coefficient vectors (n_samples, P) from the posterior (unscaled; 0 on inactive columns)."""
        rng = np.random.default_rng(seed)
        Pa = len(self.mean)
        xi = rng.standard_normal((n_samples, len(self.g)))
        z = self.mean + (xi / np.sqrt(self.alpha * self.g + self.lam)) @ self.V.T
        eta = rng.standard_normal((n_samples, Pa)) / np.sqrt(self.lam)
        z += eta - (eta @ self.V) @ self.V.T  # null-space part: prior only
        out = np.zeros((n_samples, len(self.scale)))
        out[:, self.active] = z / self.scale[self.active]
        return out


@dataclass
class SolveResult:
    """Coefficients (P,) in the system's (unscaled) columns, solver information, optional posterior."""

    coef: np.ndarray
    info: dict = field(default_factory=dict)
    posterior: Posterior | None = None


class Ridge:
    """Tikhonov-regularised least squares, c = (AᵀA + α I)⁻¹ Aᵀy on unit-RMS columns.

    Parameters
    ----------
    alpha : float ≥ 0, ridge strength (relative to AᵀA, whose diagonal is the number of rows)
    """

    name = "ridge"

    def __init__(self, alpha: float = 1e-8):
        if not (np.isfinite(alpha) and alpha >= 0):
            raise MinbasisError(f"ridge alpha must be a finite number >= 0, got {alpha}")
        self.alpha = float(alpha)

    def solve(self, system: LinearSystem) -> SolveResult:
        """Solve one (scaled) system; see the class docstring."""
        sp = spectrum(system)
        g = sp.g
        if self.alpha > 0:
            z = sp.beta / (g + self.alpha)
        else:
            k = sp.kept
            z = np.where(k, sp.beta / np.where(k, g, 1.0), 0.0)
        return SolveResult(sp.V @ z, {"alpha": self.alpha})


class BayesianRidge:
    """Bayesian ridge regression by evidence maximisation (module docstring).

    Parameters
    ----------
    max_iter : int, fixed-point iterations; tol : float, convergence on |Δc|₁ (scaled)
    alpha_1, alpha_2, lambda_1, lambda_2 : Gamma hyper-prior shape/rate of the noise (α) and
        prior (λ) precisions (scikit-learn's defaults 1e-6)
    """

    name = "bayesian"

    def __init__(self, max_iter: int = 300, tol: float = 1e-6, alpha_1: float = 1e-6, alpha_2: float = 1e-6,
                 lambda_1: float = 1e-6, lambda_2: float = 1e-6):
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.alpha_1, self.alpha_2, self.lambda_1, self.lambda_2 = alpha_1, alpha_2, lambda_1, lambda_2

    def solve_spectrum(self, sp: Spectrum) -> tuple[np.ndarray, dict, float, float]:
        """Evidence iteration on eigen-coordinates: (z (k,), info, α, λ)."""
        k = sp.kept
        g, beta = sp.g[k], sp.beta[k]
        n = sp.n
        alpha = 1.0 / (max(sp.yy / max(n, 1), 0.0) + np.finfo(float).eps)
        lam = 1.0
        z_old = None
        n_iter = 0
        gamma = 0.0
        for n_iter in range(1, self.max_iter + 1):
            r = lam / alpha
            z = beta / (g + r)
            rss = sp.e_perp + float(np.sum(beta**2 * r**2 / (g * (g + r) ** 2)))
            gamma = float(np.sum(alpha * g / (lam + alpha * g)))
            lam = (gamma + 2.0 * self.lambda_1) / (float(z @ z) + 2.0 * self.lambda_2)
            alpha = (n - gamma + 2.0 * self.alpha_1) / (rss + 2.0 * self.alpha_2)
            if not (np.isfinite(lam) and np.isfinite(alpha) and lam > 0 and alpha > 0):
                raise MinbasisError("solver 'bayesian': the evidence iteration diverged; use --solver ridge with "
                                    "--alpha 1e-6, or a smaller basis")
            if z_old is not None and np.sum(np.abs(z_old - z)) < self.tol:
                break
            z_old = z
        r = lam / alpha
        z = beta / (g + r)
        rss = sp.e_perp + float(np.sum(beta**2 * r**2 / (g * (g + r) ** 2)))
        logev = 0.5 * (float(np.sum(np.log(lam) - np.log(alpha * g + lam))) + n * np.log(alpha)
                       - alpha * rss - lam * float(z @ z) - n * np.log(2 * np.pi))
        zf = np.zeros(len(sp.g))
        zf[k] = z
        info = {"alpha_noise": float(alpha), "lambda_prior": float(lam), "effective_alpha": float(lam / alpha),
                "n_iter": n_iter, "effective_parameters": float(gamma), "log_evidence": float(logev),
                "null_directions": int((~k).sum())}
        return zf, info, float(alpha), float(lam)

    def solve(self, system: LinearSystem) -> SolveResult:
        """Solve one (scaled) system; see the class docstring."""
        sp = spectrum(system)
        z, info, alpha, lam = self.solve_spectrum(sp)
        mean = sp.V @ z
        k = sp.kept
        post = Posterior(mean=mean, V=sp.V[:, k], g=sp.g[k], alpha=alpha, lam=lam, scale=np.ones(system.P),
                         active=np.ones(system.P, dtype=bool))
        return SolveResult(mean, info, post)


class ARD:
    """Automatic relevance determination: one prior precision per column (Tipping, JMLR 1, 211, 2001).

    Parameters
    ----------
    max_iter : int; tol : float (|Δc|₁); threshold_lambda : float, columns with a larger prior
        precision are pruned (coefficient 0); alpha_1 … lambda_2 : Gamma hyper-priors as
        :class:`BayesianRidge`
    """

    name = "ard"

    def __init__(self, max_iter: int = 300, tol: float = 1e-4, threshold_lambda: float = 1e4, alpha_1: float = 1e-6,
                 alpha_2: float = 1e-6, lambda_1: float = 1e-6, lambda_2: float = 1e-6):
        self.max_iter, self.tol, self.threshold_lambda = int(max_iter), float(tol), float(threshold_lambda)
        self.alpha_1, self.alpha_2, self.lambda_1, self.lambda_2 = alpha_1, alpha_2, lambda_1, lambda_2

    def solve(self, system: LinearSystem) -> SolveResult:
        """Solve one (scaled) system; see the class docstring."""
        import scipy.linalg

        G, b, yy = system.gram()
        P, n = system.P, system.n_rows
        lam = np.ones(P)
        alpha = 1.0 / (yy / max(n, 1) + np.finfo(float).eps)
        keep = np.ones(P, dtype=bool)
        mu = np.zeros(P)
        n_iter = 0
        def posterior_mean(idx):
            Gk = G[np.ix_(idx, idx)]
            H = alpha * Gk + np.diag(lam[idx])
            try:
                cf = scipy.linalg.cho_factor(H, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                raise MinbasisError("solver 'ard': the posterior precision is not positive definite; use --solver "
                                    "bayesian") from None
            return Gk, cf, alpha * scipy.linalg.cho_solve(cf, b[idx], check_finite=False)

        for n_iter in range(1, self.max_iter + 1):
            idx = np.flatnonzero(keep)
            Gk, cf, m = posterior_mean(idx)
            Sdiag = np.diag(scipy.linalg.cho_solve(cf, np.eye(len(idx)), check_finite=False))
            rss = max(yy - 2.0 * float(m @ b[idx]) + float(m @ (Gk @ m)), 0.0)
            gamma = 1.0 - lam[idx] * Sdiag
            lam[idx] = (gamma + 2.0 * self.lambda_1) / (m**2 + 2.0 * self.lambda_2)
            alpha = (n - float(gamma.sum()) + 2.0 * self.alpha_1) / (rss + 2.0 * self.alpha_2)
            new = np.zeros(P)
            new[idx] = m
            done = np.sum(np.abs(new - mu)) < self.tol
            mu = new
            before = keep.copy()
            keep &= lam < self.threshold_lambda
            if not keep.any():
                keep[np.argmin(lam)] = True
            if done and (keep == before).all():
                break
        idx = np.flatnonzero(keep)
        mu = np.zeros(P)
        mu[idx] = posterior_mean(idx)[2]
        return SolveResult(mu, {"alpha_noise": float(alpha), "n_iter": n_iter, "n_relevant": int(keep.sum())})


def make_solver(name: str, alpha: float = 1e-8):
    """Solver object by name (``"bayesian"``, ``"ridge"``, ``"ard"``).

    Raises
    ------
    MinbasisError
        Unknown name.
    """
    if name == "bayesian":
        return BayesianRidge()
    if name == "ridge":
        return Ridge(alpha)
    if name == "ard":
        return ARD()
    raise MinbasisError(f"unknown solver {name!r}; choose one of {SOLVERS}")


def column_scale(system: LinearSystem) -> tuple[np.ndarray, np.ndarray]:
    """Unit-RMS column scales (P,) and the mask of columns that are not zero on the data."""
    scale = np.sqrt(np.maximum(system.diag(), 0.0) / max(system.n_rows, 1))
    active = scale > 1e-14 * max(float(scale.max()) if len(scale) else 0.0, 1e-300)
    return scale, active


#: Smoothness-prior kinds of :func:`smoothness_weights` and the powers tried by evidence for each.
SMOOTHNESS_POWERS = {"algebraic": (0.0, 1.0, 2.0, 4.0), "exponential": (0.0, 0.1, 0.2, 0.4)}


def smoothness_weights(degrees: np.ndarray, power: float, kind: str = "algebraic") -> np.ndarray:
    """Relative prior precisions of basis functions of total degree d_k (a smoothness prior).

    ``kind="algebraic"``: (1 + d_k)^p; ``"exponential"``: exp(p·d_k). Smoothness priors in the
    spirit of ACEpotentials (Witt et al., J. Chem. Phys. 159, 164101, 2023): coefficients of
    high-degree (rough) basis functions are damped more. p = 0 is the isotropic prior.

    Raises
    ------
    MinbasisError
        Unknown ``kind``, or a negative or non-finite power.
    """
    if kind not in SMOOTHNESS_POWERS:
        raise MinbasisError(f"unknown smoothness prior {kind!r}; choose one of {sorted(SMOOTHNESS_POWERS)}")
    if not (np.isfinite(power) and power >= 0):
        raise MinbasisError(f"smoothness power must be a finite number >= 0, got {power}")
    d = np.asarray(degrees, dtype=float)
    if kind == "exponential":
        return np.exp(float(power) * d)
    return (1.0 + d) ** float(power)


def solve_smoothness(system: LinearSystem, solver, degrees: np.ndarray, powers, kind: str = "algebraic"
                     ) -> tuple[float, "SolveResult", dict]:
    """Solve with the smoothness prior of every power and keep the one of largest evidence.

    Parameters
    ----------
    system : LinearSystem (P columns); solver : as :func:`solve_system`
    degrees : (P,) total degrees of the columns; powers : the powers p to try; kind : as
        :func:`smoothness_weights`

    Returns
    -------
    (p, SolveResult, {p: log evidence (None for solvers without evidence)}); the first of equal
    evidences wins, so a single power is simply solved

    Raises
    ------
    MinbasisError
        No power, or a solver failure (:func:`solve_system`).
    """
    if not len(powers):
        raise MinbasisError("solve_smoothness needs at least one power")
    best = None
    tried = {}
    for p in powers:
        res = solve_system(system, solver, prior_weights=smoothness_weights(degrees, p, kind))
        lev = res.info.get("log_evidence")
        tried[float(p)] = lev
        score = -np.inf if lev is None else lev
        if best is None or score > best[0]:
            best = (score, float(p), res)
    return best[1], best[2], tried


def solve_system(system: LinearSystem, solver, prior_weights: np.ndarray | None = None) -> SolveResult:
    """Scale columns to unit RMS, drop all-zero columns, solve, and map back.

    Parameters
    ----------
    system : LinearSystem (P columns)
    solver : an object with ``solve(LinearSystem) -> SolveResult`` (:class:`Ridge`,
        :class:`BayesianRidge`, :class:`ARD`), or a solver name
    prior_weights : optional (P,) relative prior precisions d_k > 0 (e.g.
        :func:`smoothness_weights`): the prior (or ridge) on the unit-RMS coefficient k is
        λ d_k instead of λ (implemented as a further column scaling by 1/√d_k)

    Returns
    -------
    SolveResult with ``coef`` (P,) in the original columns (0 on columns without data) and, for
    Bayesian solvers, the posterior

    Raises
    ------
    MinbasisError
        Non-finite system or solution (the message names the solver and a remedy).
    """
    if isinstance(solver, str):
        solver = make_solver(solver)
    scale, active = column_scale(system)
    if prior_weights is not None:
        d = np.asarray(prior_weights, dtype=float)
        if d.shape != (system.P,) or not (np.isfinite(d).all() and (d > 0).all()):
            raise MinbasisError(f"prior_weights must be {system.P} finite positive numbers")
        scale = scale * np.sqrt(d)
    res = solver.solve(system.restrict(active, scale))
    coef = np.zeros(system.P)
    coef[active] = res.coef / scale[active]
    if not np.isfinite(coef).all():
        raise MinbasisError(f"solver {solver.name!r} returned non-finite coefficients; use --solver ridge with a "
                            f"larger --alpha, or a smaller basis")
    info = {"solver": solver.name, "n_rows": int(system.n_rows), "n_columns": int(system.P),
            "n_active_columns": int(active.sum()), "route": system.form, **res.info}
    post = res.posterior
    if post is not None:
        post.scale, post.active = scale, active
    return SolveResult(coef, info, post)
