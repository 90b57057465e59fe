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

from ..basis import Basis, require_basis
from ..errors import LabelError, MinbasisError
from ..kernels import as_atoms_list
from .assembly import (Entry, LinearSystem, NormalEquations, RawRows, RowWeights, WeightedRows, accumulate_entries,
                       raw_rows)
from .fidelity import FidelityData, fidelity_names, resolve_fidelity
from .fileio import read_model_file, write_model_file
from .solvers import BayesianRidge, column_scale, spectrum
from .model import LinearModel, MinbasisCalculator, Prediction

__all__ = ["DesignRows", "design_rows", "FidelityBlock", "block_from_rows", "fidelity_blocks", "PIWSLConfig",
           "piwsl_rows", "solve_delta", "fit_blocks", "fit_linear_mf", "fit_linear_prior", "MultiFidelityModel",
           "COUPLINGS"]

COUPLINGS = ("delta", "none", "pooled")
NOISE_MODELS = ("per_fidelity", "shared")


# -- raw design rows ----------------------------------------------------------------------------------
#: Unweighted linear-model rows (the assembly core's :class:`~minbasis.fit.assembly.RawRows`).
DesignRows = RawRows


def design_rows(basis: Basis, atoms_or_list, with_virial: bool = False, progress: bool = False) -> RawRows:
    """Compute the unweighted rows (features summed per species, force and virial rows) of structures.

    Holds every force row in memory: meant for small sets and analyses; fits stream instead.

    Raises
    ------
    StructureError / SpeciesError
        Invalid structures or species outside the basis.
    """
    return raw_rows(basis, as_atoms_list(atoms_or_list), with_virial, "design rows" if progress else None)


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


def _piwsl_pair(basis: Basis, atoms_list, d1, d2, r0: RawRows) -> tuple[np.ndarray, np.ndarray]:
    """Taylor and path rows (M, P) per atom for structures with displacements d1, d2 and rows r0."""
    r1 = raw_rows(basis, _displaced(atoms_list, d1))
    r2 = raw_rows(basis, _displaced(atoms_list, d2))
    ptr = r0.atom_ptr
    tay = np.empty_like(r0.XE)
    path = np.empty_like(r0.XE)
    for m in range(len(atoms_list)):
        a0, a1 = ptr[m], ptr[m + 1]
        n = a1 - a0
        tay[m] = (r1.XE[m] - r0.XE[m] + np.einsum("ka,kap->p", d1[m], r0.XF[a0:a1])) / n
        path[m] = (r1.XE[m] - r2.XE[m] + np.einsum("ka,kap->p", d1[m] - d2[m], r2.XF[a0:a1])) / n
    return tay, path


def piwsl_rows(basis: Basis, atoms_or_list, cfg: PIWSLConfig, rows0: RawRows | None = None,
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
    return _piwsl_pair(basis, atoms_list, d1, d2, r0)


# -- normal-equation blocks ---------------------------------------------------------------------------
class FidelityBlock:
    """Normal equations of one fidelity, E0 eliminated (module docstring).

    Attributes
    ----------
    fidelity : str
    eq : NormalEquations (the streaming accumulator of this fidelity's weighted rows)
    info : dict, row counts per observable (``energy_rows``, ``force_rows``, ``virial_rows``, ``piwsl_rows``)

    Properties ``G`` (P, P) AᵀA, ``b`` (P,) Aᵀy, ``yy`` and ``n_rows`` describe the E0-eliminated
    system; ``system`` is the :class:`~minbasis.fit.assembly.LinearSystem` itself (row form when
    the fidelity has fewer rows than columns).
    """

    def __init__(self, fidelity: str, eq: NormalEquations, info: dict | None = None):
        self.fidelity = fidelity
        self.eq = eq
        self.info = dict(info or {})
        self._system: LinearSystem | None = None
        self._gram = None

    @property
    def system(self) -> LinearSystem:
        if self._system is None:
            self._system = self.eq.system()
        return self._system

    def _g(self):
        if self._gram is None:
            self._gram = self.system.gram()
        return self._gram

    @property
    def G(self) -> np.ndarray:
        return self._g()[0]

    @property
    def b(self) -> np.ndarray:
        return self._g()[1]

    @property
    def yy(self) -> float:
        return self._g()[2]

    @property
    def n_rows(self) -> int:
        return self.system.n_rows


def block_from_rows(fidelity: str, AE: np.ndarray, yE: np.ndarray, counts: np.ndarray, AO: np.ndarray,
                    yO: np.ndarray, info: dict | None = None) -> FidelityBlock:
    """Build a :class:`FidelityBlock` from weighted energy rows (AE (nE, P), yE, counts (nE, C))
    and other weighted rows (AO (nO, P), yO: forces, virials, PIWSL). The energy rows are
    projected off the span of ``counts`` (this fidelity's own, unregularised E0)."""
    P = AO.shape[1] if AO.size else AE.shape[1]
    counts = np.asarray(counts, dtype=float).reshape(len(yE), -1)
    eq = NormalEquations(P, counts.shape[1])
    eq.add(WeightedRows(AE=np.asarray(AE, dtype=float).reshape(-1, P), yE=np.asarray(yE, dtype=float), CE=counts,
                        AO=np.asarray(AO, dtype=float).reshape(-1, P), yO=np.asarray(yO, dtype=float),
                        n_rows={"energy": len(yE), "forces": len(yO)}))
    return FidelityBlock(fidelity, eq, info)


def _piwsl_extra(basis: Basis, atoms_list, piwsl: PIWSLConfig):
    """Callback for :func:`~minbasis.fit.assembly.accumulate_entries` adding weighted PIWSL rows per batch."""
    d1, d2 = piwsl_displacements(atoms_list, piwsl)

    def extra(start, stop, raw, labels, weights):
        if labels.energy is None or weights.energy <= 0:
            return []
        tay, path = _piwsl_pair(basis, atoms_list[start:stop], d1[start:stop], d2[start:stop], raw)
        wp = weights.energy * weights.factors(labels.config_type[start:stop])
        out = []
        for lam, rows in ((piwsl.lambda_tc, tay), (piwsl.lambda_sc, path)):
            if lam > 0:
                out.append((np.sqrt(lam) * wp[:, None] * rows, np.zeros(len(wp))))
        return out

    return extra


def fidelity_blocks(basis: Basis, data: Sequence[FidelityData], piwsl: PIWSLConfig | None = None,
                    progress: bool = False) -> list[FidelityBlock]:
    """One :class:`FidelityBlock` per fidelity (entries with the same fidelity are merged).

    Rows per entry (weights w from ``FidelityData.weights`` times the config_type factor) are
    those of :func:`minbasis.fit.assembly.weight_rows`: energies w_E (E − …)/n_atoms, forces
    w_F F, virials w_S V σ / n_atoms (periodic structures with stress), and with ``piwsl`` the
    PIWSL rows of structures that carry energies. Missing labels (key None or weight 0) add no
    rows. Structures are streamed in batches; entries that share a structure list share one
    pass of the kernels.

    Raises
    ------
    LabelError
        Missing or malformed labels, or a fidelity with no rows at all.
    """
    C, F = len(basis.species), basis.n_features
    P = C * F
    accs: dict[str, NormalEquations] = {}
    groups: dict[int, tuple] = {}
    use_piwsl = piwsl is not None and (piwsl.lambda_tc > 0 or piwsl.lambda_sc > 0)
    for d in data:
        labels = d.labels()
        w = d.weights
        rw = RowWeights(w["energy"], w["forces"], w["stress"], dict(w.get("config_type", {})))
        acc = accs.setdefault(d.fidelity, NormalEquations(P, C))
        entry = Entry(labels, rw, acc)
        if not any(entry.uses().values()) or not (rw.factors(labels.config_type) > 0).any():
            continue
        groups.setdefault(id(d.structures), (d.structures, []))[1].append(entry)
    for structures, entries in groups.values():
        atoms_list = as_atoms_list(structures)
        if use_piwsl:
            extra = _piwsl_extra(basis, atoms_list, piwsl)
            for e in entries:
                if e.uses()["energy"]:
                    e.extra = extra
        accumulate_entries(basis, atoms_list, entries, progress="design rows" if progress else None)
    blocks = []
    for fid, acc in accs.items():
        if acc.total_rows == 0:
            raise LabelError(f"fidelity {fid!r}: nothing to fit (all labels absent or weighted 0)")
        nr = acc.n_rows
        blocks.append(FidelityBlock(fid, acc, {"energy_rows": nr["energy"], "force_rows": nr["forces"],
                                               "virial_rows": nr["virial"], "piwsl_rows": nr["extra"]}))
    return blocks


# -- solvers ------------------------------------------------------------------------------------------
class _Eig:
    """Eigen-coordinates of one fidelity's scaled system: AᵀA = L diag(g) Lᵀ.

    ``g_all, L_all``: every eigenpair (g ≥ 0; min(n, P) of them for the row form) — used where
    the Gram matrix itself enters (S, the corrections d_f, log-determinants), so nothing is
    truncated there. ``g, L, beta``: the non-null directions (g > 10⁻¹² max g) — used for the
    low-rank (Woodbury) route and for the stable residual with E⊥, the part of ‖y‖² that no
    coefficient vector reaches."""

    def __init__(self, system: LinearSystem):
        sp = spectrum(system)
        keep = sp.kept
        self.g_all, self.L_all, self.beta_all = sp.g, np.ascontiguousarray(sp.V), sp.beta
        self.keep = keep
        self.g, self.L = sp.g[keep], np.ascontiguousarray(sp.V[:, keep])
        self.beta = sp.beta[keep]
        self.e_perp = sp.e_perp
        self.P = system.P

    def logdet_plus(self, r: float) -> float:
        """log|G + r I|."""
        return float(np.sum(np.log(self.g_all + r)) + (self.P - len(self.g_all)) * np.log(r))

    def apply_inv_plus(self, v: np.ndarray, r: float) -> np.ndarray:
        """(G + r I)⁻¹ v."""
        Lv = self.L_all.T @ v
        return (v - self.L_all @ Lv) / r + self.L_all @ (Lv / (self.g_all + r))

    def residual(self, c: np.ndarray) -> float:
        """‖A c − y‖² = E⊥ + Σ_kept (g u − β)²/g + Σ_null (g u² − 2 u β), u = Lᵀc (no cancellation)."""
        u = self.L_all.T @ c
        k = self.keep
        uk, gk, bk = u[k], self.g_all[k], self.beta_all[k]
        un, gn, bn = u[~k], self.g_all[~k], self.beta_all[~k]
        return max(self.e_perp + float(np.sum((gk * uk - bk) ** 2 / gk)) + float(np.sum(gn * un**2 - 2 * un * bn)),
                   0.0)


def _scaled(blocks: Sequence[FidelityBlock]):
    """Column scale (unit RMS over all rows) and active columns."""
    diag = sum(b.system.diag() for b in blocks)
    n = max(sum(b.n_rows for b in blocks), 1)
    scale = np.sqrt(np.maximum(diag, 0.0) / n)
    active = scale > 1e-12 * max(scale.max(), 1e-300)
    return scale, active


class _DeltaProblem:
    """The Δ-coupled problem in scaled, active coordinates; evaluates solutions and evidence.

    Each fidelity f is held in its eigen-coordinates (L_f, g_f, β_f). ``omega`` (one relative
    noise precision per fidelity, ω_f = β_f/β) scales that fidelity's Gram matrix, right-hand
    side and residual. The reduced matrix S = r_c I + Σ_f L_f diag(h_f) L_fᵀ (h_f = ω_f g_f r_d /
    (ω_f g_f + r_d) with a correction d_f, ω_f g_f without) is handled in the eigenbasis U of
    the fidelity of largest rank (the "base"): S = U [diag(r_c + h_base) + W H Wᵀ] Uᵀ with
    W = Uᵀ [L_f …] computed once. When the other fidelities together have rank K ≤ P/2 (e.g.
    energy-only high-level data next to force-rich low-level data), S is inverted by the
    Woodbury identity in O(P K²) per evaluation instead of O(P³); otherwise by a Cholesky
    factorisation of the P × P matrix in that basis.
    """

    def __init__(self, blocks: Sequence[FidelityBlock], with_d: Sequence[bool]):
        self.blocks = list(blocks)
        self.scale, self.active = _scaled(blocks)
        a = self.active
        self.eigs = [_Eig(b.system.restrict(a, self.scale)) for b in blocks]
        self.n_f = [b.n_rows for b in blocks]
        self.n = sum(self.n_f)
        self.with_d = list(with_d)
        self.P = int(a.sum())
        ranks = [len(e.g) for e in self.eigs]
        self.base = int(np.argmax(ranks))
        eb = self.eigs[self.base]
        # full orthonormal basis U of the base fidelity: all its eigenvectors (plus, in the row
        # form, an orthonormal completion of their span)
        m = len(eb.g_all)
        if m < self.P:
            R = np.random.default_rng(0).standard_normal((self.P, self.P - m))
            R -= eb.L_all @ (eb.L_all.T @ R)
            null, _ = np.linalg.qr(R)
            self.U = np.column_stack([eb.L_all, null])
        else:
            self.U = eb.L_all
        self.others = [f for f in range(len(self.blocks)) if f != self.base]
        self.K = sum(len(self.eigs[f].g) for f in self.others)
        self.woodbury = self.K <= self.P // 2
        # low-rank route: non-null directions only; dense route: every eigenpair (nothing truncated)
        self.W = {f: self.U.T @ (self.eigs[f].L if self.woodbury else self.eigs[f].L_all) for f in self.others}

    def _h(self, f: int, r_d: float, w: float, g: np.ndarray) -> np.ndarray:
        if not self.with_d[f] or not np.isfinite(r_d):
            return w * g
        return w * g * r_d / (w * g + r_d)

    def _rhs(self, f: int, r_d: float, w: float) -> np.ndarray:
        e = self.eigs[f]
        if not self.with_d[f] or not np.isfinite(r_d):
            return w * (e.L_all @ e.beta_all)
        return w * (e.L_all @ (e.beta_all * r_d / (w * e.g_all + r_d)))

    def _g_other(self, f: int) -> np.ndarray:
        e = self.eigs[f]
        return e.g if self.woodbury else e.g_all

    def solve(self, r_c: float, r_d: float, omega=None):
        """(c_ref (P,), d list of (P,) or None per fidelity, log evidence) in scaled coordinates."""
        import scipy.linalg

        omega = np.ones(len(self.blocks)) if omega is None else np.asarray(omega, dtype=float)
        rhs = sum(self._rhs(f, r_d, float(omega[f])) for f in range(len(self.blocks)))
        hb = np.zeros(self.P)
        gb = self.eigs[self.base].g_all
        hb[:len(gb)] = self._h(self.base, r_d, float(omega[self.base]), gb)
        D = r_c + hb
        if np.any(D <= 0):
            return None, None, -np.inf
        rhs_u = self.U.T @ rhs
        if self.others:
            Wm = np.column_stack([self.W[f] for f in self.others])
            H = np.concatenate([self._h(f, r_d, float(omega[f]), self._g_other(f)) for f in self.others])
        else:
            Wm, H = np.zeros((self.P, 0)), np.zeros(0)
        try:
            if self.woodbury:
                DW = Wm / D[:, None]
                inner = np.diag(1.0 / H) + Wm.T @ DW if len(H) else np.zeros((0, 0))
                cf = scipy.linalg.cho_factor(inner, lower=True, check_finite=False) if len(H) else None
                x = rhs_u / D
                if len(H):
                    x -= DW @ scipy.linalg.cho_solve(cf, Wm.T @ x, check_finite=False)
                    logdet_S = float(np.sum(np.log(D))) + 2.0 * float(np.sum(np.log(np.diag(cf[0])))) + float(
                        np.sum(np.log(H)))
                else:
                    logdet_S = float(np.sum(np.log(D)))
            else:
                S = np.diag(D) + (Wm * H) @ Wm.T
                cf = scipy.linalg.cho_factor(S, lower=True, check_finite=False)
                x = scipy.linalg.cho_solve(cf, rhs_u, check_finite=False)
                logdet_S = 2.0 * float(np.sum(np.log(np.diag(cf[0]))))
        except (np.linalg.LinAlgError, ValueError):
            return None, None, -np.inf
        c = self.U @ x
        ds = []
        E = r_c * float(c @ c)
        n_d = 0
        logdet_d = 0.0
        for f, e in enumerate(self.eigs):
            w = float(omega[f])
            if self.with_d[f] and np.isfinite(r_d):
                u = e.L_all.T @ c
                d = e.L_all @ ((e.beta_all - e.g_all * u) / (e.g_all + r_d / w))
                E += r_d * float(d @ d)
                n_d += 1
                logdet_d += e.logdet_plus(r_d / w) + self.P * np.log(w)
            else:
                d = None
            ds.append(d)
            cf_ = c + (d if d is not None else 0.0)
            E += w * e.residual(cf_)
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


def _bayes_block(blk: FidelityBlock, prior: np.ndarray | None = None, r: float | None = None):
    """Evidence-optimal (or fixed-ridge ``r``) fit of one fidelity, optionally towards a prior mean.

    Uses the same column scaling and :class:`~minbasis.fit.solvers.BayesianRidge` as
    :func:`~minbasis.fit.linear.fit_linear`, so an uncoupled single-fidelity fit equals it. A prior
    mean c0 shifts the problem to z = c − c0: β ← β − g·(Vᵀc0) in the eigen-coordinates, while the
    unreachable part E⊥ of the residual is unchanged (no cancellation).

    Returns (coef (P,), ridge λ/α, log evidence or NaN).
    """
    system = blk.system
    scale, active = column_scale(system)
    sp = spectrum(system.restrict(active, scale))
    c0 = np.zeros(int(active.sum()))
    if prior is not None:
        c0 = np.asarray(prior, dtype=float)[active] * scale[active]
        sp.beta = sp.beta - sp.g * (sp.V.T @ c0)
    if r is not None:
        z, ridge, lev = sp.V @ (sp.beta / (sp.g + r)), float(r), float("nan")
    else:
        zk, info, _, _ = BayesianRidge().solve_spectrum(sp)
        z, ridge, lev = sp.V @ zk, info["effective_alpha"], info["log_evidence"]
    coef = np.zeros(system.P)
    coef[active] = (z + c0) / scale[active]
    return coef, ridge, lev


def _e0(block: FidelityBlock, coef: np.ndarray, C: int) -> np.ndarray:
    if block.eq.C == 0 or block.eq.n_rows["energy"] == 0:
        return np.zeros(C)
    return block.eq.e0(coef)


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
    P = blocks[0].system.P
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
    P = blocks[0].system.P
    t0 = time.perf_counter()
    if coupling == "none":
        coefs = np.zeros((len(blocks), P))
        info["per_fidelity"] = {}
        for k, blk in enumerate(blocks):
            pm = prior.get(blk.fidelity) if prior is not None else None
            coefs[k], r, lev = _bayes_block(blk, pm, r_c)
            info["per_fidelity"][blk.fidelity] = {"ridge": r, "log_evidence": lev,
                                                 "prior_mean": pm is not None}
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

    kind = "linear-mf"  # model kind in files and in minbasis.fit.registry (a class attribute, not a field)
    basis: Basis
    fidelities: list
    weights: np.ndarray
    e0: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_basis(self.basis)
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
        return resolve_fidelity(self.fidelities, fidelity)

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

    def predict(self, atoms_or_list: Atoms | Sequence[Atoms], fidelity: str | None = None,
                progress: bool = False) -> Prediction:
        """Energies (eV), forces (eV/Å), stress (eV/Å³) at one fidelity.

        Raises
        ------
        MinbasisError
            Unknown fidelity. StructureError / SpeciesError for bad structures.
        """
        return self.head(fidelity).predict(atoms_or_list, progress=progress)

    def calculator(self, fidelity: str | None = None) -> MinbasisCalculator:
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
