"""Multi-fidelity linear ACE fits: Δ-coupling, uncoupled control, PIWSL rows, prior-mean meta-learning.

Model (one linear ACE potential per fidelity f, docs/theory/fitting.md#multi-fidelity)::

    E_f = Σ_i [ E0_f(Z_i) + c_{f,Z_i} · B_i ],      c_f = c_ref + d_f

**Δ-coupling** (``coupling="delta"``; Messerly et al., arXiv 2505.01590, adapted to a fixed
descriptor). The unknowns are the columns [c_ref | d_1 | … | d_K] of one block design matrix
whose rows for fidelity f are [A_f | 0 … A_f … 0] (A_f = the weighted energy-per-atom, force
and virial rows of :mod:`minbasis.fit.linear` for that fidelity's labels). Ridge penalties
r_c |c_ref|² and r_d Σ_f |d_f|² (on unit-RMS columns) make the fidelities share c_ref while
each keeps a small, strongly damped correction d_f. Each fidelity has its own E0_f, eliminated
exactly by projecting that fidelity's energy rows off its composition columns (as in
:func:`minbasis.fit.linear.solve`) and recovered afterwards by least squares.

The block system is never formed: the d_f are eliminated analytically (Schur complement,
Woodbury) so the cost is one eigendecomposition of each fidelity's Gram matrix G_f = A_fᵀA_f
and one (C·F)² Cholesky factorisation per hyper-parameter pair::

    S c_ref = Σ_f (b_f − G_f (G_f + r_d)⁻¹ b_f),   S = r_c I + Σ_f G_f r_d (G_f + r_d)⁻¹
    d_f = (G_f + r_d)⁻¹ (b_f − G_f c_ref),         b_f = A_fᵀ y_f

**Regularisation and noise levels are chosen automatically by Bayesian evidence** (MacKay
1992): with noise precision β_f = ω_f β for the rows of fidelity f and Gaussian priors
c_ref ~ N(0, (β r_c)⁻¹), d_f ~ N(0, (β r_d)⁻¹), the log marginal likelihood with β at its
optimum is ½ log|R| − ½ log|N| − (n/2) log E(θ̂) + Σ_f (n_f/2) log ω_f (R = prior
precision/β, N = Σ_f ω_f B_fᵀB_f + R, E = ω-weighted residual + penalty, n_f rows of fidelity
f); log|N| = Σ_f log|ω_f G_f + r_d I| + log|S|. ω of the first fidelity is 1 (only ratios are
identifiable); ``noise="per_fidelity"`` (default) chooses the other ω_f, so a noisy or badly
learnable fidelity is down-weighted instead of forcing its ridge onto the others;
``noise="shared"`` keeps all ω_f = 1 (one noise level). Everything is maximised over a log
grid of (r_c, r_d, ω) by a memoised neighbourhood ascent (steps of one decade, then a third). r_d → ∞ gives the *pooled* fit (all fidelities share one
coefficient vector, each its own E0); ``coupling="none"`` fits each fidelity on its own (the
uncoupled control: with a fixed descriptor nothing is shared, so low-level forces cannot help
the high level).

**PIWSL** (Takamoto, Zaverkin, Niepert, ICML 2025, arXiv 2408.05215): for every structure R
with energy labels, seeded random displacements δ₁, δ₂ (per-atom RMS norm ``delta`` Å) give
two extra rows with target 0, linear in the coefficients because E and F are::

    Taylor:  E(R+δ₁) − E(R) + F(R)·δ₁                     (weight √λ_TC)
    path:    E(R+δ₁) − E(R+δ₂) + F(R+δ₂)·(δ₁ − δ₂)         (weight √λ_SC)

both per atom and times the fidelity's energy weight (the rows of energies). For an exactly
linear-in-coefficients model whose forces are the exact gradient, the Taylor residual is the
second-order term ½ δᵀHδ, so the rows act as a curvature (smoothness) prior learnt from no labels.

**Meta-learning, linear** (Allen et al., npj Comput. Mater. 10, 154 (2024), arXiv 2307.04012;
the LAMeL prior-mean form, docs/theory/fitting.md#meta-learning): :func:`fit_linear_prior` fits every cheaper level on
its own, takes the mean coefficient vector as the prior mean c_prior, and fits the target level
by c = argmin |A c − y|² + λ |c − c_prior|² with λ chosen by evidence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..describe import iter_batches
from ..errors import LabelError, MinbasisError
from ..kernels import as_atoms_list, design_blocks
from .atomic import read_model_file, write_model_file
from .data import matrix_to_voigt
from .fidelity import FidelityData, fidelity_names
from .model import LinearModel, MinbasisCalculator, Prediction

__all__ = ["DesignRows", "design_rows", "FidelityBlock", "block_from_rows", "fidelity_blocks", "PIWSLConfig",
           "piwsl_rows", "solve_delta", "fit_blocks", "fit_linear_mf", "fit_linear_prior", "MultiFidelityModel",
           "COUPLINGS"]

COUPLINGS = ("delta", "none", "pooled")
NOISE_MODELS = ("per_fidelity", "shared")


# -- raw design rows ----------------------------------------------------------------------------------
@dataclass
class DesignRows:
    """Unweighted linear-model rows of M structures (P = n_channels · n_features columns).

    Attributes
    ----------
    XE : (M, P) Σ over atoms of each centre species of the features (energy = XE·c + E0 part)
    XF : (N, 3, P) force rows, F_{k,a} = XF[k, a]·c (eV/Å per coefficient unit)
    XV : (M, 6, P) or None, virial rows V·σ (Voigt), periodic structures only
    counts : (M, C) number of atoms of each species; n_atoms : (M,); atom_ptr : (M+1,)
    """

    XE: np.ndarray
    XF: np.ndarray
    XV: np.ndarray | None
    counts: np.ndarray
    n_atoms: np.ndarray
    atom_ptr: np.ndarray


def design_rows(basis: Basis, atoms_or_list, with_virial: bool = False, progress: bool = False) -> DesignRows:
    """Compute :class:`DesignRows` (features summed per species, force and virial rows) for structures.

    Raises
    ------
    StructureError / SpeciesError
        Invalid structures or species outside the basis.
    """
    atoms_list = as_atoms_list(atoms_or_list)
    plan = basis.plan
    C, F = plan.n_channels, plan.n_features
    XE, XF, XV, counts = [], [], [], []
    bytes_per_pair = 3 * F * C * 8 + 3 * F * 8 * 2
    for start, chunk, batch in iter_batches(atoms_list, basis, 512 * 1024**2, bytes_per_pair,
                                            "design rows" if progress else None):
        e, f, v = design_blocks(plan, batch, with_virial=with_virial)
        XE.append(e)
        XF.append(f)
        if with_virial:
            XV.append(np.moveaxis(matrix_to_voigt(np.moveaxis(v, -1, 0)), 0, -1))
        for m in range(len(chunk)):
            counts.append(np.bincount(batch.centre_ch[batch.atom_ptr[m]:batch.atom_ptr[m + 1]], minlength=C))
    n_atoms = np.array([len(a) for a in atoms_list])
    return DesignRows(XE=np.vstack(XE), XF=np.concatenate(XF), XV=np.concatenate(XV) if with_virial else None,
                      counts=np.asarray(counts, dtype=float), n_atoms=n_atoms,
                      atom_ptr=np.concatenate([[0], np.cumsum(n_atoms)]))


# -- PIWSL --------------------------------------------------------------------------------------------
@dataclass
class PIWSLConfig:
    """Physics-informed weak supervision (Takamoto et al., ICML 2025, arXiv 2408.05215).

    Attributes
    ----------
    lambda_tc : float
        Weight λ_TC of the Taylor loss (the authors' ANI-1x value 1.2).
    lambda_sc : float
        Weight λ_SC of the path-independence (spatial consistency) loss (authors: 0.01).
    delta : float
        Per-atom RMS norm of the random displacements, Å (about 0.05).
    seed : int
        Seed of the displacements (``numpy.random.default_rng(seed)``).

    Raises
    ------
    MinbasisError
        Negative or non-finite weights, non-positive delta.
    """

    lambda_tc: float = 1.2
    lambda_sc: float = 0.01
    delta: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lambda_tc", "lambda_sc"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v >= 0):
                raise MinbasisError(f"PIWSL {name} must be a finite number >= 0, got {v}")
        if not (np.isfinite(self.delta) and self.delta > 0):
            raise MinbasisError(f"PIWSL delta must be > 0 Å, got {self.delta}")


def piwsl_displacements(atoms_list: Sequence[Atoms], cfg: PIWSLConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Seeded displacements δ₁, δ₂ (lists of (n_atoms, 3) arrays, Å) with per-atom RMS norm ``cfg.delta``."""
    rng = np.random.default_rng(cfg.seed)
    d1, d2 = [], []
    for a in atoms_list:
        d1.append(cfg.delta * rng.standard_normal((len(a), 3)) / np.sqrt(3.0))
        d2.append(cfg.delta * rng.standard_normal((len(a), 3)) / np.sqrt(3.0))
    return d1, d2


def _displaced(atoms_list, disp):
    out = []
    for a, d in zip(atoms_list, disp):
        b = a.copy()
        b.calc = None
        b.positions = a.positions + d
        out.append(b)
    return out


def piwsl_rows(basis: Basis, atoms_or_list, cfg: PIWSLConfig, rows0: DesignRows | None = None,
               progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Unweighted PIWSL rows per structure: (taylor (M, P), path (M, P)), per atom.

    ``taylor[m]·c = [E(R+δ₁) − E(R) + F(R)·δ₁] / n_m`` and
    ``path[m]·c = [E(R+δ₁) − E(R+δ₂) + F(R+δ₂)·(δ₁ − δ₂)] / n_m`` (eV/atom) for a linear model with
    coefficients c (E0 cancels). Multiply by energy_weight·√λ and append with target 0.
    ``rows0`` reuses already computed rows at the undisplaced geometries.

    Raises
    ------
    StructureError / SpeciesError
        As :func:`design_rows`.
    """
    atoms_list = as_atoms_list(atoms_or_list)
    d1, d2 = piwsl_displacements(atoms_list, cfg)
    r0 = rows0 if rows0 is not None else design_rows(basis, atoms_list, progress=progress)
    r1 = design_rows(basis, _displaced(atoms_list, d1))
    r2 = design_rows(basis, _displaced(atoms_list, d2))
    ptr = r0.atom_ptr
    M = len(atoms_list)
    tay = np.empty_like(r0.XE)
    path = np.empty_like(r0.XE)
    for m in range(M):
        a0, a1 = ptr[m], ptr[m + 1]
        n = a1 - a0
        tay[m] = (r1.XE[m] - r0.XE[m] + np.einsum("ka,kap->p", d1[m], r0.XF[a0:a1])) / n
        path[m] = (r1.XE[m] - r2.XE[m] + np.einsum("ka,kap->p", d1[m] - d2[m], r2.XF[a0:a1])) / n
    return tay, path


# -- normal-equation blocks ---------------------------------------------------------------------------
@dataclass
class FidelityBlock:
    """Weighted least-squares pieces of one fidelity, E0 eliminated (module docstring).

    Attributes
    ----------
    fidelity : str
    G : (P, P) Gram matrix AᵀA of the projected weighted rows; b : (P,) Aᵀy; yy : float yᵀy
    n_rows : int, rows (minus the eliminated E0 directions)
    AE, yE, counts : weighted energy rows (nE, P), targets (nE,), composition columns (nE, C), unprojected
        (to recover E0_f afterwards); empty when the fidelity has no energies
    info : dict, row counts per observable
    """

    fidelity: str
    G: np.ndarray
    b: np.ndarray
    yy: float
    n_rows: int
    AE: np.ndarray
    yE: np.ndarray
    counts: np.ndarray
    info: dict = field(default_factory=dict)


def block_from_rows(fidelity: str, AE: np.ndarray, yE: np.ndarray, counts: np.ndarray, AO: np.ndarray,
                    yO: np.ndarray, info: dict | None = None) -> FidelityBlock:
    """Build a :class:`FidelityBlock` from weighted energy rows (AE (nE, P), yE, counts (nE, C))
    and other weighted rows (AO (nO, P), yO: forces, virials, PIWSL). The energy rows are
    projected off the span of ``counts`` (this fidelity's own, unregularised E0)."""
    P = AO.shape[1] if AO.size else AE.shape[1]
    AEp, yEp = AE, yE
    k = 0
    if len(yE):
        Q, s, _ = np.linalg.svd(counts, full_matrices=False)
        Q = Q[:, s > 1e-10 * max(s.max(), 1e-300)]
        k = Q.shape[1]
        AEp = AE - Q @ (Q.T @ AE)
        yEp = yE - Q @ (Q.T @ yE)
    G = np.zeros((P, P))
    b = np.zeros(P)
    yy = 0.0
    for A, y in ((AEp, yEp), (AO, yO)):
        if len(y):
            G += A.T @ A
            b += A.T @ y
            yy += float(y @ y)
    return FidelityBlock(fidelity=fidelity, G=G, b=b, yy=yy, n_rows=int(len(yE) + len(yO) - k), AE=AE, yE=yE,
                         counts=counts, info=dict(info or {}))


def fidelity_blocks(basis: Basis, data: Sequence[FidelityData], piwsl: PIWSLConfig | None = None,
                    progress: bool = False) -> list[FidelityBlock]:
    """One :class:`FidelityBlock` per fidelity (entries with the same fidelity are merged).

    Rows per entry (weights w from ``FidelityData.weights`` times the config_type factor):
    energies w_E (E − …)/n_atoms, forces w_F F, virials w_S V σ / n_atoms (periodic structures
    with stress), and with ``piwsl`` the PIWSL rows of structures that carry energies. Missing
    labels (key None or weight 0) add no rows.

    Raises
    ------
    LabelError
        Missing or malformed labels, or a fidelity with no rows at all.
    """
    rows_cache: dict = {}
    per: dict[str, dict] = {}
    C = len(basis.species)
    for d in data:
        labels = d.labels()
        w = d.weights
        wct = d.config_weights(labels)
        use_v = labels.stress is not None and w["stress"] > 0
        key = (id(d.structures), use_v)
        if key not in rows_cache:
            rows_cache[key] = design_rows(basis, d.structures, with_virial=use_v, progress=progress)
        r = rows_cache[key]
        acc = per.setdefault(d.fidelity, {"AE": [], "yE": [], "cnt": [], "AO": [], "yO": [],
                                          "info": {"energy_rows": 0, "force_rows": 0, "virial_rows": 0,
                                                   "piwsl_rows": 0}})
        n = r.n_atoms.astype(float)
        if labels.energy is not None and w["energy"] > 0:
            we = w["energy"] * wct / n
            acc["AE"].append(we[:, None] * r.XE)
            acc["yE"].append(we * labels.energy)
            acc["cnt"].append(we[:, None] * r.counts)
            acc["info"]["energy_rows"] += len(n)
            if piwsl is not None and (piwsl.lambda_tc > 0 or piwsl.lambda_sc > 0):
                tay, path = piwsl_rows(basis, d.structures, piwsl, rows0=r)
                wp = w["energy"] * wct
                for lam, rows in ((piwsl.lambda_tc, tay), (piwsl.lambda_sc, path)):
                    if lam > 0:
                        acc["AO"].append(np.sqrt(lam) * wp[:, None] * rows)
                        acc["yO"].append(np.zeros(len(n)))
                        acc["info"]["piwsl_rows"] += len(n)
        if labels.forces is not None and w["forces"] > 0:
            wf = np.repeat(w["forces"] * wct, r.n_atoms * 3)
            acc["AO"].append(wf[:, None] * r.XF.reshape(-1, r.XF.shape[-1]))
            acc["yO"].append(wf * np.concatenate([f.reshape(-1) for f in labels.forces]))
            acc["info"]["force_rows"] += len(wf)
        if use_v:
            has = np.isfinite(labels.stress).all(axis=1)
            vol = np.array([abs(a.get_volume()) if a.pbc.all() else np.nan for a in d.structures])
            ws = w["stress"] * wct / n
            for m in np.flatnonzero(has):
                acc["AO"].append(ws[m] * r.XV[m])
                acc["yO"].append(ws[m] * vol[m] * labels.stress[m])
                acc["info"]["virial_rows"] += 6
    blocks = []
    for fid, acc in per.items():
        P = C * basis.n_features
        AE = np.vstack(acc["AE"]) if acc["AE"] else np.zeros((0, P))
        yE = np.concatenate(acc["yE"]) if acc["yE"] else np.zeros(0)
        cnt = np.vstack(acc["cnt"]) if acc["cnt"] else np.zeros((0, C))
        AO = np.vstack(acc["AO"]) if acc["AO"] else np.zeros((0, P))
        yO = np.concatenate(acc["yO"]) if acc["yO"] else np.zeros(0)
        if not len(yE) and not len(yO):
            raise LabelError(f"fidelity {fid!r}: nothing to fit (all labels absent or weighted 0)")
        blocks.append(block_from_rows(fid, AE, yE, cnt, AO, yO, acc["info"]))
    return blocks


# -- solvers ------------------------------------------------------------------------------------------
class _Eig:
    """Eigen-factorisation of a scaled Gram matrix restricted to active columns: G = L diag(g) Lᵀ."""

    def __init__(self, G: np.ndarray):
        g, L = np.linalg.eigh(G)
        keep = g > 1e-12 * max(g.max(), 1e-300)
        self.g, self.L = g[keep], np.ascontiguousarray(L[:, keep])
        self.P = G.shape[0]

    def logdet_plus(self, r: float) -> float:
        """log|G + r I|."""
        return float(np.sum(np.log(self.g + r)) + (self.P - len(self.g)) * np.log(r))

    def apply_inv_plus(self, v: np.ndarray, r: float) -> np.ndarray:
        """(G + r I)⁻¹ v."""
        Lv = self.L.T @ v
        return (v - self.L @ Lv) / r + self.L @ (Lv / (self.g + r))


def _scaled(blocks: Sequence[FidelityBlock]):
    """Column scale (unit RMS over all rows) and active columns."""
    diag = sum(np.diag(b.G) for b in blocks)
    n = max(sum(b.n_rows for b in blocks), 1)
    scale = np.sqrt(np.maximum(diag, 0.0) / n)
    active = scale > 1e-12 * max(scale.max(), 1e-300)
    return scale, active


class _DeltaProblem:
    """The Δ-coupled problem in scaled, active coordinates; evaluates solutions and evidence.

    ``omega`` (one relative noise precision per fidelity, ω_f = β_f/β) multiplies that fidelity's
    rows' Gram matrix, right-hand side and residual; ω = 1 everywhere is the shared-noise problem.
    Since ω_f G_f r_d (ω_f G_f + r_d)⁻¹ = ω_f · G_f t (G_f + t)⁻¹ with t = r_d/ω_f, each fidelity's
    eliminated block is cached per t (one eigendecomposition per fidelity, one P³ product per t).
    """

    def __init__(self, blocks: Sequence[FidelityBlock], with_d: Sequence[bool]):
        self.blocks = list(blocks)
        self.scale, self.active = _scaled(blocks)
        s = self.scale[self.active]
        a = self.active
        self.G = [b.G[np.ix_(a, a)] / np.outer(s, s) for b in blocks]
        self.b = [b.b[a] / s for b in blocks]
        self.yy = [b.yy for b in blocks]
        self.n_f = [b.n_rows for b in blocks]
        self.n = sum(self.n_f)
        self.with_d = list(with_d)
        self.P = int(a.sum())
        self._eig: dict[int, _Eig] = {}
        self._part: dict = {}

    def eig(self, f: int) -> _Eig:
        if f not in self._eig:
            self._eig[f] = _Eig(self.G[f])
        return self._eig[f]

    def part(self, f: int, t: float):
        """(G_f t (G_f + t)⁻¹, b_f − G_f (G_f + t)⁻¹ b_f, log|G_f + t|) of fidelity f (cached)."""
        key = (f, t)
        if key not in self._part:
            e = self.eig(f)
            h = e.g * t / (e.g + t)
            M = (e.L * h) @ e.L.T
            rhs = self.b[f] - e.L @ ((e.g / (e.g + t)) * (e.L.T @ self.b[f]))
            if len(self._part) >= 10:
                self._part.pop(next(iter(self._part)))
            self._part[key] = (M, rhs, e.logdet_plus(t))
        return self._part[key]

    def reduced(self, r_d: float, omega=None):
        """(Σ_f M_f, Σ_f rhs_f, Σ_f log|ω_f G_f + r_d|) with the d_f eliminated."""
        omega = np.ones(len(self.blocks)) if omega is None else omega
        M = np.zeros((self.P, self.P))
        rhs = np.zeros(self.P)
        logdet = 0.0
        for f in range(len(self.blocks)):
            w = float(omega[f])
            if not self.with_d[f] or not np.isfinite(r_d):
                M += w * self.G[f]
                rhs += w * self.b[f]
                continue
            Mf, rf, ld = self.part(f, r_d / w)
            M += w * Mf
            rhs += w * rf
            logdet += ld + self.P * np.log(w)
        return M, rhs, logdet

    def solve(self, r_c: float, r_d: float, omega=None):
        """(c_ref (P,), d list of (P,) or None per fidelity, log evidence) in scaled coordinates."""
        import scipy.linalg

        omega = np.ones(len(self.blocks)) if omega is None else np.asarray(omega, dtype=float)
        M, rhs, logdet_d = self.reduced(r_d, omega)
        S = M + r_c * np.eye(self.P)
        try:
            cf = scipy.linalg.cho_factor(S, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return None, None, -np.inf
        c = scipy.linalg.cho_solve(cf, rhs, check_finite=False)
        logdet_S = 2.0 * float(np.sum(np.log(np.diag(cf[0]))))
        ds = []
        E = r_c * float(c @ c)
        n_d = 0
        for f in range(len(self.blocks)):
            if self.with_d[f] and np.isfinite(r_d):
                d = self.eig(f).apply_inv_plus(self.b[f] - self.G[f] @ c, r_d / omega[f])
                E += r_d * float(d @ d)
                n_d += 1
            else:
                d = None
            ds.append(d)
            cf_ = c + (d if d is not None else 0.0)
            E += omega[f] * (self.yy[f] - 2.0 * float(cf_ @ self.b[f]) + float(cf_ @ (self.G[f] @ cf_)))
        E = max(E, 1e-300)
        self.last_E = E
        logev = 0.5 * self.P * np.log(r_c) - 0.5 * logdet_S - 0.5 * self.n * np.log(E)
        logev += 0.5 * float(np.sum(np.asarray(self.n_f) * np.log(omega)))
        if n_d:
            logev += 0.5 * n_d * self.P * np.log(r_d) - 0.5 * logdet_d
        return c, ds, float(logev)

    def unscale(self, v: np.ndarray, P_full: int) -> np.ndarray:
        out = np.zeros(P_full)
        out[self.active] = v / self.scale[self.active]
        return out


def _ascent(fun, start: Sequence[float], steps=(1.0, 1.0 / 3.0), bounds=None, fixed=None):
    """Maximise fun(*10**p) over p on a log grid by memoised neighbourhood ascent.

    The first two coordinates (r_c, r_d) move together (3×3 neighbourhood); every further
    coordinate (a log noise-precision ratio) moves on its own axis."""
    D = len(start)
    bounds = list(bounds or ((-12, 6), (-12, 10))) + [(-8.0, 8.0)] * (D - 2)
    fixed = list(fixed or (False,) * 2) + [False] * (D - len(fixed or (False,) * 2))
    memo: dict = {}

    def val(p):
        key = tuple(round(x, 6) for x in p)
        if key not in memo:
            memo[key] = fun(*(10.0 ** np.asarray(key)))
        return memo[key]

    cur = tuple(float(x) for x in start)
    for step in steps:
        moves = [(dx, dy) + (0.0,) * (D - 2) for dx in ((0.0,) if fixed[0] else (-step, 0.0, step))
                 for dy in ((0.0,) if fixed[1] else (-step, 0.0, step))]
        for j in range(2, D):
            if not fixed[j]:
                for sgn in (-step, step):
                    mv = [0.0] * D
                    mv[j] = sgn
                    moves.append(tuple(mv))
        while True:
            best, best_v = cur, val(cur)
            for mv in moves:
                p = tuple(c + m for c, m in zip(cur, mv))
                if not all(lo <= x <= hi for x, (lo, hi) in zip(p, bounds)):
                    continue
                v = val(p)
                if v > best_v + 1e-9:
                    best, best_v = p, v
            if best == cur:
                break
            cur = best
    return cur, memo


def _single_evidence(G: np.ndarray, b: np.ndarray, yy: float, n: int):
    """Ridge with evidence-optimal strength on one scaled Gram system: (coef, r, log evidence).

    The residual-plus-penalty at the optimum, E(r) = yy − Σ β²/(g + r), is evaluated as
    E⊥ + Σ β² r / (g (g + r)) with E⊥ = max(yy − Σ β²/g, 0) (the part of y outside the range of
    the rows): written as one difference it cancels to round-off, and can even turn negative,
    when the rows can interpolate the targets (few energies, or a prior mean that nearly fits
    them), which used to send the evidence to the bottom of the ridge grid."""
    e = _Eig(G)
    beta = e.L.T @ b
    grid = 10.0 ** np.arange(-12.0, 6.01, 0.05)
    best = None
    e_perp = max(yy - float(np.sum(beta**2 / e.g)), 0.0)
    for r in grid:
        E = max(e_perp + float(np.sum(beta**2 * r / (e.g * (e.g + r)))), 1e-300)
        lev = 0.5 * float(np.sum(np.log(r) - np.log(e.g + r))) - 0.5 * n * np.log(E)
        if best is None or lev > best[1]:
            best = (r, lev)
    r = best[0]
    return e.L @ (beta / (e.g + r)), float(r), float(best[1])


def _e0(block: FidelityBlock, coef: np.ndarray, C: int) -> np.ndarray:
    if not len(block.yE):
        return np.zeros(C)
    resid = block.yE - block.AE @ coef
    return np.linalg.lstsq(block.counts, resid, rcond=None)[0]


def solve_delta(blocks: Sequence[FidelityBlock], r_c: float, r_d: float, anchor: str | None = None,
                noise_weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Solve the Δ-coupled problem for given ridge strengths (on unit-RMS columns).

    Parameters
    ----------
    blocks : list of FidelityBlock (K fidelities, P columns)
    r_c, r_d : float > 0; r_d = ``np.inf`` forces d_f = 0 (one pooled coefficient vector)
    anchor : fidelity name whose d is fixed to 0 (c_anchor = c_ref), or None
    noise_weights : relative noise precision ω_f of each block (default all 1: shared noise)

    Returns
    -------
    coefs : (K, P) c_f = c_ref + d_f (unscaled); c_ref : (P,); log evidence (float)
    """
    prob = _DeltaProblem(blocks, [b.fidelity != anchor for b in blocks])
    c, ds, lev = prob.solve(r_c, r_d, noise_weights)
    if c is None:
        raise MinbasisError("the Δ-coupled normal equations are singular; increase r_c")
    P = blocks[0].G.shape[0]
    coefs = np.array([prob.unscale(c + (d if d is not None else 0.0), P) for d in ds])
    return coefs, prob.unscale(c, P), lev


def fit_blocks(blocks: Sequence[FidelityBlock], coupling: str = "delta", r_c: float | None = None,
               r_d: float | None = None, anchor: str | None = None, prior: dict | None = None,
               n_channels: int = 1, noise: str = "per_fidelity") -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit coefficients for every fidelity from its normal-equation block.

    Parameters
    ----------
    blocks : list of FidelityBlock, one per fidelity
    coupling : ``"delta"`` (c_f = c_ref + d_f, evidence-chosen r_c, r_d unless given),
        ``"pooled"`` (r_d = ∞: one shared vector, own E0 per fidelity) or ``"none"``
        (each fidelity its own evidence-optimal ridge fit: the uncoupled control)
    r_c, r_d : fixed ridge strengths on unit-RMS columns (None: chosen by evidence)
    anchor : with ``"delta"``, a fidelity whose d is 0 (default: every fidelity has its d_f)
    prior : {fidelity: (P,) prior mean} — with ``"none"``, fit that fidelity by ridge towards it
        (meta-learned prior; :func:`fit_linear_prior`)
    n_channels : C, for the E0 recovery
    noise : with ``"delta"``/``"pooled"``: ``"per_fidelity"`` (default; every fidelity f has its
        own noise precision β_f = ω_f β, the ratios ω_f chosen by evidence together with r_c, r_d,
        ω of the first block fixed to 1) or ``"shared"`` (one noise level for all fidelities)

    Returns
    -------
    coefs : (K, P); e0 : (K, C) eV; info : dict (chosen r_c, r_d, log evidence, noise weights ω_f
        and residual noise RMS per fidelity in weighted-row units, per-fidelity info)

    Raises
    ------
    MinbasisError
        Unknown coupling or invalid ridge strengths.
    """
    if coupling not in COUPLINGS:
        raise MinbasisError(f"unknown coupling {coupling!r}; choose one of {COUPLINGS}")
    if noise not in NOISE_MODELS:
        raise MinbasisError(f"unknown noise model {noise!r}; choose one of {NOISE_MODELS}")
    for name, v in (("r_c", r_c), ("r_d", r_d)):
        if v is not None and not (v > 0):
            raise MinbasisError(f"{name} must be > 0 (np.inf allowed for r_d), got {v}")
    info: dict = {"coupling": coupling, "fidelities": [b.fidelity for b in blocks],
                  "rows": {b.fidelity: b.info for b in blocks}}
    P = blocks[0].G.shape[0]
    t0 = time.perf_counter()
    if coupling == "none":
        coefs = np.zeros((len(blocks), P))
        info["per_fidelity"] = {}
        for k, blk in enumerate(blocks):
            scale, active = _scaled([blk])
            s = scale[active]
            G = blk.G[np.ix_(active, active)] / np.outer(s, s)
            b = blk.b[active] / s
            yy = blk.yy
            c0 = np.zeros(int(active.sum()))
            if prior is not None and blk.fidelity in prior:
                c0 = np.asarray(prior[blk.fidelity], dtype=float)[active] * s
                yy = yy - 2.0 * float(c0 @ b) + float(c0 @ (G @ c0))
                b = b - G @ c0
            if r_c is not None:
                e = _Eig(G)
                z, r, lev = e.L @ ((e.L.T @ b) / (e.g + r_c)), r_c, float("nan")
            else:
                z, r, lev = _single_evidence(G, b, yy, blk.n_rows)
            coefs[k, active] = (z + c0) / s
            info["per_fidelity"][blk.fidelity] = {"ridge": r, "log_evidence": lev,
                                                 "prior_mean": prior is not None and blk.fidelity in prior}
    else:
        prob = _DeltaProblem(blocks, [b.fidelity != anchor for b in blocks])
        if coupling == "pooled":
            r_d = np.inf
        K = len(blocks)
        n_free = K - 1 if noise == "per_fidelity" else 0

        def omega_of(rest):
            return np.concatenate([[1.0], np.asarray(rest, dtype=float)]) if n_free else np.ones(K)

        if r_c is not None and r_d is not None and not n_free:
            chosen, omega = (r_c, r_d), np.ones(K)
        else:
            inf_d = r_d is not None and not np.isfinite(r_d)
            start = (np.log10(r_c) if r_c else -4.0, 0.0 if (r_d is None or inf_d) else np.log10(r_d)) + (0.0,) * n_free

            def fun(rc, rd, *rest):
                return prob.solve(rc, np.inf if inf_d else rd, omega_of(rest))[2]

            best, memo = _ascent(fun, start, fixed=(r_c is not None, r_d is not None))
            chosen = (10.0 ** best[0], np.inf if inf_d else 10.0 ** best[1])
            omega = omega_of(10.0 ** np.asarray(best[2:]))
            info["evidence_evaluations"] = len(memo)
        c, ds, lev = prob.solve(chosen[0], chosen[1], omega)
        if c is None:
            raise MinbasisError("the Δ-coupled normal equations are singular; increase r_c")
        coefs = np.array([prob.unscale(c + (d if d is not None else 0.0), P) for d in ds])
        sigma2 = prob.last_E / max(prob.n, 1)  # 1/β at the optimum
        info.update(r_c=float(chosen[0]), r_d=float(chosen[1]), log_evidence=lev, anchor=anchor, noise=noise,
                    noise_weights={b.fidelity: float(w) for b, w in zip(blocks, omega)},
                    noise_rms={b.fidelity: float(np.sqrt(sigma2 / w)) for b, w in zip(blocks, omega)},
                    d_norm_ratio={b.fidelity: (float(np.linalg.norm(d) / max(np.linalg.norm(c), 1e-300))
                                               if d is not None else 0.0) for b, d in zip(blocks, ds)})
    e0 = np.array([_e0(blk, coefs[k], n_channels) for k, blk in enumerate(blocks)])
    info["solve_seconds"] = time.perf_counter() - t0
    return coefs, e0, info


# -- the model ----------------------------------------------------------------------------------------
@dataclass
class MultiFidelityModel:
    """One linear ACE potential per fidelity on a shared basis.

    Attributes
    ----------
    basis : Basis
    fidelities : list of str (K names)
    weights : (K, n_channels, n_features) float64, eV per feature unit (c_f)
    e0 : (K, n_channels) float64, eV (E0_f)
    info : dict, provenance (coupling, chosen regularisation, rows per fidelity)

    Raises
    ------
    MinbasisError
        Shapes that do not match the basis, duplicate or empty names, non-finite values.
    """

    basis: Basis
    fidelities: list
    weights: np.ndarray
    e0: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.basis, Basis):
            raise TypeError(f"basis must be a minbasis.Basis, got {type(self.basis).__name__}")
        self.fidelities = [str(f) for f in self.fidelities]
        K, C, F = len(self.fidelities), len(self.basis.species), self.basis.n_features
        if K == 0 or len(set(self.fidelities)) != K or not all(self.fidelities):
            raise MinbasisError(f"fidelities must be distinct non-empty names, got {self.fidelities}")
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        self.e0 = np.ascontiguousarray(self.e0, dtype=np.float64)
        if self.weights.shape != (K, C, F) or self.e0.shape != (K, C):
            raise MinbasisError(f"weights must be ({K}, {C}, {F}) and e0 ({K}, {C}); got {self.weights.shape}, "
                                f"{self.e0.shape}")
        if not (np.isfinite(self.weights).all() and np.isfinite(self.e0).all()):
            raise MinbasisError("weights and e0 must be finite")

    def _index(self, fidelity: str | None) -> int:
        if fidelity is None:
            if len(self.fidelities) == 1:
                return 0
            raise MinbasisError(f"this multi-fidelity model needs fidelity=...; it knows {self.fidelities}")
        if fidelity not in self.fidelities:
            raise MinbasisError(f"fidelity {fidelity!r} was not in the training data of this model; "
                                f"known fidelities: {self.fidelities}")
        return self.fidelities.index(fidelity)

    def head(self, fidelity: str | None = None) -> LinearModel:
        """The :class:`~minbasis.fit.model.LinearModel` of one fidelity.

        Raises
        ------
        MinbasisError
            Unknown fidelity (the message lists the known ones).
        """
        k = self._index(fidelity)
        return LinearModel(basis=self.basis, weights=self.weights[k], e0=self.e0[k],
                           info={"fidelity": self.fidelities[k], **self.info})

    def predict(self, atoms_or_list: Atoms | Sequence[Atoms], fidelity: str | None = "high",
                progress: bool = False) -> Prediction:
        """Energies (eV), forces (eV/Å), stress (eV/Å³) at one fidelity.

        Raises
        ------
        MinbasisError
            Unknown fidelity. StructureError / SpeciesError for bad structures.
        """
        return self.head(fidelity).predict(atoms_or_list, progress=progress)

    def calculator(self, fidelity: str | None = "high") -> MinbasisCalculator:
        """An ASE calculator predicting at ``fidelity`` (checked now, not at the first call)."""
        return MinbasisCalculator(self.head(fidelity))

    def save(self, path) -> None:
        """Write a versioned, hashed ``.npz`` (kind ``"linear-mf"``), atomically."""
        write_model_file(path, "linear-mf", self.basis, {"weights": self.weights, "e0": self.e0},
                         {"fidelities": self.fidelities}, self.info)

    @classmethod
    def load(cls, path) -> "MultiFidelityModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileFormatError
            Missing or corrupt file, other version or kind, hash mismatch.
        """
        from ..errors import FileFormatError

        basis, arrays, hyper, info = read_model_file(path, "linear-mf", ("weights", "e0"))
        try:
            return cls(basis=basis, fidelities=list(hyper.get("fidelities", [])), weights=arrays["weights"],
                       e0=arrays["e0"], info=info)
        except MinbasisError as exc:
            raise FileFormatError(f"{path}: {exc}") from exc


def fit_linear_mf(basis: Basis, data: Sequence[FidelityData], *, coupling: str = "delta",
                  r_c: float | None = None, r_d: float | None = None, anchor: str | None = None,
                  piwsl: PIWSLConfig | None = None, noise: str = "per_fidelity",
                  progress: bool = False) -> MultiFidelityModel:
    """Fit a multi-fidelity linear ACE model (module docstring) to fidelity-aware training data.

    Parameters
    ----------
    basis : Basis (C species, F features)
    data : list of FidelityData; labels absent from an entry contribute nothing
    coupling : ``"delta"`` (default), ``"pooled"`` or ``"none"`` (uncoupled control)
    r_c, r_d : ridge strengths on unit-RMS columns; None (default) chooses them by evidence
    anchor : fidelity whose correction d is fixed to 0 (default: none)
    piwsl : add PIWSL rows (:class:`PIWSLConfig`) for every entry with energies
    noise : ``"per_fidelity"`` (default: one evidence-chosen noise level per fidelity) or ``"shared"``

    Returns
    -------
    MultiFidelityModel with one head per fidelity (order of first appearance in ``data``)

    Raises
    ------
    LabelError / MinbasisError
        Missing labels, nothing to fit, bad settings. StructureError / SpeciesError for structures.
    """
    if not data:
        raise LabelError("no training data")
    t0 = time.perf_counter()
    blocks = fidelity_blocks(basis, data, piwsl=piwsl, progress=progress)
    order = fidelity_names(data)
    blocks = sorted(blocks, key=lambda b: order.index(b.fidelity))
    if anchor is not None and anchor not in order:
        raise MinbasisError(f"anchor {anchor!r} is not a training fidelity; known: {order}")
    coefs, e0, info = fit_blocks(blocks, coupling=coupling, r_c=r_c, r_d=r_d, anchor=anchor,
                                 n_channels=len(basis.species), noise=noise)
    info.update(fit_seconds=time.perf_counter() - t0,
                piwsl=(vars(piwsl) if piwsl is not None else None),
                data=[{"fidelity": d.fidelity, "n_structures": len(d.structures), "energy_key": d.energy_key,
                       "forces_key": d.forces_key, "stress_key": d.stress_key,
                       "weights": {k: v for k, v in d.weights.items()}} for d in data])
    C, F = len(basis.species), basis.n_features
    return MultiFidelityModel(basis=basis, fidelities=order, weights=coefs.reshape(len(order), C, F), e0=e0,
                              info=info)


def fit_linear_prior(basis: Basis, data: Sequence[FidelityData], target: str, *, progress: bool = False,
                     blocks: Sequence[FidelityBlock] | None = None) -> MultiFidelityModel:
    """Meta-learned prior mean for linear models (docs/theory/fitting.md#meta-learning; Allen et al. 2024, LAMeL).

    Every fidelity other than ``target`` is fitted on its own (evidence-optimal ridge); the mean
    of those coefficient vectors is the prior mean c_prior; the target is then fitted by
    c = argmin |A c − y|² + λ |c − c_prior|² with λ chosen by evidence. E0 is per fidelity.

    Returns
    -------
    MultiFidelityModel with all fidelities (``info["prior_from"]`` lists the sources)

    Raises
    ------
    MinbasisError
        ``target`` not in the data, or no other fidelity to learn the prior from.
    """
    blocks = list(blocks) if blocks is not None else fidelity_blocks(basis, data, progress=progress)
    names = [b.fidelity for b in blocks]
    if target not in names:
        raise MinbasisError(f"target fidelity {target!r} is not in the training data; known: {names}")
    others = [b for b in blocks if b.fidelity != target]
    if not others:
        raise MinbasisError("a prior needs at least one fidelity besides the target")
    C = len(basis.species)
    co, eo, info_o = fit_blocks(others, coupling="none", n_channels=C)
    prior = co.mean(axis=0)
    tb = [b for b in blocks if b.fidelity == target]
    ct, et, info_t = fit_blocks(tb, coupling="none", prior={target: prior}, n_channels=C)
    order = names
    coefs = np.array([ct[0] if n == target else co[[b.fidelity for b in others].index(n)] for n in order])
    e0 = np.array([et[0] if n == target else eo[[b.fidelity for b in others].index(n)] for n in order])
    info = {"coupling": "prior-mean", "target": target, "prior_from": [b.fidelity for b in others],
            "per_fidelity": {**info_o["per_fidelity"], **info_t["per_fidelity"]}}
    return MultiFidelityModel(basis=basis, fidelities=order, weights=coefs.reshape(len(order), C, -1), e0=e0,
                              info=info)
