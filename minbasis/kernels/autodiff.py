"""Differentiation operators of the descriptor map for autodiff frameworks (NumPy in, NumPy out).

The descriptors of a batch are a function of its pair vectors only, B = Φ(r) with
r (P, 3) the vectors r_ij = r_j − r_i + S_ij · cell of the fixed neighbour list (Å) and
B (N, F) the per-atom invariants (Drautz, PRB 99, 014104, 2019, for the
moments and their contraction). This module provides the four operators that an
autodiff framework needs to differentiate Φ to second order without ever storing the
(P, 3, F) Jacobian:

* :func:`pair_features` — B = Φ(r);
* :func:`pair_vjp` — the vector–Jacobian product ḡ_p = Σ_{i,f} Ḡ_{i,f} ∂B_{i,f}/∂r_p (P, 3)
  for a cotangent Ḡ (N, F): ∂L/∂B is back-propagated through the contraction to the moments
  and scattered over pairs, exactly as the linear model computes its forces
  (:func:`minbasis.kernels.ace.ace_linear`), with one weight row per atom;
* :func:`pair_jvp` — the Jacobian–vector product δB = Σ_p ∂B/∂r_p · δr_p (N, F) for a tangent
  δr (P, 3): forward mode through the moments (δA) and the contraction (product rule). It is
  also the derivative of :func:`pair_vjp` with respect to Ḡ;
* :func:`pair_hvp` — the derivative of :func:`pair_vjp` with respect to r along δr: the
  Hessian–vector product Σ_q ∂²(Ḡ · B)/∂r_p ∂r_q · δr_q (P, 3), with exact second derivatives of
  the radial functions (Chebyshev recurrence, envelope) and of the real spherical harmonics
  (their Cartesian Hessian on the unit sphere, see :func:`_harmonics_hvp`).

Positions, cells and strains enter r linearly (r_p = (r_j − r_i + S_p · cell) · (1 + ε)), so a
framework forms r with its own differentiable operations (gather, matrix products) and
calls these operators for Φ only. :func:`build_geometry` builds the neighbour list and the
integer cell shifts S_p that this needs.

Costs per call are about one (:func:`pair_features`, :func:`pair_vjp`, :func:`pair_jvp`) or
two (:func:`pair_hvp`) feature evaluations with gradients of the moments; memory is O(P + N·F)
plus O(T) work space per thread (T contraction terms). Conventions: float64, Å, features
unit-less; gradients with respect to pair vectors in 1/Å.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from ase import Atoms
from numba import njit, prange

from ..errors import MinbasisError
from .ace import _centre_moments, _kernel_sizes, _linear_centre, _linear_workspace, _workspace, n_chunks_for
from .neighbours import Batch, as_atoms_list, build_batch
from .plan import EvaluationPlan
from .primitives import FASTMATH

__all__ = ["PairGeometry", "build_geometry", "pair_vectors", "pair_features", "pair_vjp", "pair_jvp", "pair_hvp",
           "scatter_to_inputs"]


# -- geometry -----------------------------------------------------------------------------------------
@dataclass
class PairGeometry:
    """A neighbour list with the integer cell shifts needed to rebuild its pair vectors.

    Attributes (N atoms, P pairs, M structures)
    ----------
    batch : :class:`~minbasis.kernels.neighbours.Batch` of the structures (pairs within r_cut)
    shifts : (P, 3) float64, integer cell shifts S_p: r_p = r_j − r_i + S_p · cell[struct_p]
    positions : (N, 3) float64, Å, the positions the list was built at
    cells : (M, 3, 3) float64, Å, rows are cell vectors (zeros for non-periodic structures)
    """

    batch: Batch
    shifts: np.ndarray
    positions: np.ndarray
    cells: np.ndarray

    @property
    def n_atoms(self) -> int:
        return self.batch.n_atoms

    @property
    def n_structures(self) -> int:
        return self.batch.n_structures


def build_geometry(atoms_or_list: Atoms | Sequence[Atoms], plan: EvaluationPlan, positions: np.ndarray | None = None,
                   cells: np.ndarray | None = None) -> PairGeometry:
    """Neighbour list (vesin) and cell shifts of structures, optionally at other positions/cells.

    Parameters
    ----------
    atoms_or_list : ase.Atoms or list of them (species, ``pbc``; positions and cells unless given)
    plan : the basis' evaluation plan (species, r_cut)
    positions : (N, 3) float64 in Å, all structures' atoms concatenated, or None
    cells : (M, 3, 3) float64 in Å (rows are cell vectors), or None

    Returns
    -------
    :class:`PairGeometry`

    Raises
    ------
    MinbasisError
        ``positions`` or ``cells`` of the wrong shape.
    StructureError / SpeciesError
        As :func:`~minbasis.kernels.neighbours.build_batch`.
    """
    atoms_list = as_atoms_list(atoms_or_list)
    sizes = [len(a) for a in atoms_list]
    N, M = sum(sizes), len(atoms_list)
    if positions is not None or cells is not None:
        pos = None if positions is None else np.asarray(positions, dtype=np.float64)
        cel = None if cells is None else np.asarray(cells, dtype=np.float64)
        if pos is not None and pos.shape != (N, 3):
            raise MinbasisError(f"positions must have shape (total atoms, 3) = ({N}, 3), got {pos.shape}")
        if cel is not None:
            if cel.shape == (3, 3) and M == 1:
                cel = cel[None]
            if cel.shape != (M, 3, 3):
                raise MinbasisError(f"cell must have shape (n_structures, 3, 3) = ({M}, 3, 3), got {cel.shape}")
        copies, a0 = [], 0
        for m, a in enumerate(atoms_list):
            b = a.copy()
            b.calc = None
            if cel is not None:
                b.set_cell(cel[m], scale_atoms=False)
            if pos is not None:
                b.positions = pos[a0:a0 + len(a)]
            copies.append(b)
            a0 += len(a)
        atoms_list = copies
    batch = build_batch(atoms_list, plan.species, plan.numbers, plan.r_cut)
    pos = np.concatenate([a.positions for a in atoms_list]).astype(np.float64)
    cells_arr = np.zeros((M, 3, 3))
    for m, a in enumerate(atoms_list):
        if a.pbc.any():
            cells_arr[m] = a.cell.array
    shifts = np.zeros((len(batch.pair_i), 3))
    d = batch.pair_vec - (pos[batch.pair_j] - pos[batch.pair_i])
    for m, a in enumerate(atoms_list):
        if not a.pbc.any():
            continue
        sel = batch.pair_struct == m
        if not sel.any():
            continue
        per = np.flatnonzero(a.pbc)
        S = np.linalg.lstsq(cells_arr[m][per].T, d[sel].T, rcond=None)[0].T  # d = S_per · cell[per]
        S = np.rint(S)
        resid = np.abs(S @ cells_arr[m][per] - d[sel]).max() if len(S) else 0.0
        if resid > 1e-6:
            raise MinbasisError(f"structure {m}: could not recover the integer cell shifts of its pairs "
                                f"(residual {resid:.3g} Å)")
        full = np.zeros((int(sel.sum()), 3))
        full[:, per] = S
        shifts[sel] = full
    return PairGeometry(batch=batch, shifts=shifts, positions=pos, cells=cells_arr)


def pair_vectors(geom: PairGeometry, positions: np.ndarray, cells: np.ndarray, strain: np.ndarray | None = None
                 ) -> np.ndarray:
    """r_p = (r_j − r_i + S_p · cell[s_p]) · (1 + ε[s_p]) (P, 3) in Å — the NumPy form of what the
    torch and JAX front ends compute with their own differentiable operations.

    ``strain`` (M, 3, 3) is the displacement gradient ε (unit-less), applied as r → r (1 + ε),
    i.e. r'_b = Σ_a r_a (δ_ab + ε_ab); None means ε = 0.
    """
    b = geom.batch
    r = positions[b.pair_j] - positions[b.pair_i] + np.einsum("pa,pab->pb", geom.shifts, cells[b.pair_struct])
    if strain is not None:
        r = r + np.einsum("pa,pab->pb", r, strain[b.pair_struct])
    return r


def scatter_to_inputs(geom: PairGeometry, g: np.ndarray, strain: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Chain pair-vector gradients g_p = ∂L/∂r_p (P, 3) to positions, cells and strain (at ε = 0).

    Returns
    -------
    d_positions : (N, 3), ∂L/∂r_k = Σ_{p: j=k} g_p − Σ_{p: i=k} g_p (r_p = r_j − r_i + S_p · cell)
    d_cells : (M, 3, 3), ∂L/∂cell[a, b] = Σ_p S_pa g_pb
    d_strain : (M, 3, 3), ∂L/∂ε_ab = Σ_p r_pa g_pb (= −virial for L = E), or None
    """
    b = geom.batch
    dpos = np.zeros((b.n_atoms, 3))
    np.add.at(dpos, b.pair_j, g)
    np.add.at(dpos, b.pair_i, -g)
    dcell = np.zeros((b.n_structures, 3, 3))
    np.add.at(dcell, b.pair_struct, geom.shifts[:, :, None] * g[:, None, :])
    deps = None
    if strain:
        deps = np.zeros((b.n_structures, 3, 3))
        np.add.at(deps, b.pair_struct, b.pair_vec[:, :, None] * g[:, None, :])
    return dpos, dcell, deps


# -- kernels ------------------------------------------------------------------------------------------
def _plan_args(plan: EvaluationPlan) -> tuple:
    """The plan arguments of the autodiff kernels, in their order: sizes, radial and angular set-up, terms."""
    return (plan.n_channels, plan.r_cut, plan.scale, plan.n_r, plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order,
            plan.t_idx, plan.t_coef, plan.t_feat)


def _check(batch: Batch, pair_vec: np.ndarray, name: str = "pair_vec") -> np.ndarray:
    pv = np.ascontiguousarray(pair_vec, dtype=np.float64)
    if pv.shape != (len(batch.pair_i), 3):
        raise MinbasisError(f"{name} must have shape (n_pairs, 3) = ({len(batch.pair_i)}, 3), got {pv.shape}")
    return pv


def _inputs(plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray, cotangent: np.ndarray | None = None,
            tangent: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(pair_vec (P, 3), cotangent (N, F), tangent (P, 3)) as C-contiguous float64 arrays (None stays None).

    Raises
    ------
    MinbasisError
        An array of the wrong shape (the message names it).
    """
    pv = _check(batch, pair_vec)
    gX = None
    if cotangent is not None:
        gX = np.ascontiguousarray(cotangent, dtype=np.float64)
        if gX.shape != (batch.n_atoms, plan.n_features):
            raise MinbasisError(f"cotangent must have shape (n_atoms, n_features) = ({batch.n_atoms}, "
                                f"{plan.n_features}), got {gX.shape}")
    return pv, gX, (None if tangent is None else _check(batch, tangent, "tangent"))


def pair_features(plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray) -> np.ndarray:
    """Features B (N, F) float64 of the batch's centres at pair vectors ``pair_vec`` (P, 3) in Å.

    Raises
    ------
    MinbasisError
        ``pair_vec`` of the wrong shape.
    """
    from .evaluate import features

    pv = _check(batch, pair_vec)
    return features(plan, replace(batch, pair_vec=pv))[0]


def pair_vjp(plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
    """Vector–Jacobian product ḡ_p = Σ_{i,f} Ḡ_{i,f} ∂B_{i,f}/∂r_p, float64 (P, 3) in 1/Å per unit of Ḡ.

    Parameters
    ----------
    pair_vec : (P, 3) float64 pair vectors in Å (the batch's neighbour list)
    cotangent : (N, F) float64 Ḡ = ∂L/∂B

    Raises
    ------
    MinbasisError
        Arrays of the wrong shape.
    """
    pv, gX, _ = _inputs(plan, batch, pair_vec, cotangent=cotangent)
    G = np.zeros((len(batch.pair_i), 3))
    _vjp_kernel(batch.centre_ptr, pv, batch.pair_ch, *_plan_args(plan), gX, n_chunks_for(batch.n_atoms), G)
    return G


def pair_jvp(plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray, tangent: np.ndarray, values: bool = True
             ) -> tuple[np.ndarray | None, np.ndarray]:
    """Features and their directional derivative along a tangent of the pair vectors.

    Parameters
    ----------
    pair_vec : (P, 3) float64 in Å; tangent : (P, 3) float64 δr in Å
    values : bool, also return the features (False saves one (N, F) array)

    Returns
    -------
    B : (N, F) float64 features (None when ``values`` is False);
    dB : (N, F) float64, δB = Σ_p ∂B/∂r_p · δr_p

    Raises
    ------
    MinbasisError
        Arrays of the wrong shape.
    """
    pv, _, du = _inputs(plan, batch, pair_vec, tangent=tangent)
    X = np.zeros((batch.n_atoms if values else 0, plan.n_features))
    dX = np.zeros((batch.n_atoms, plan.n_features))
    _jvp_kernel(batch.centre_ptr, pv, batch.pair_ch, *_plan_args(plan), du, values, n_chunks_for(batch.n_atoms), X, dX)
    return (X if values else None), dX


def pair_hvp(plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray, cotangent: np.ndarray, tangent: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """The VJP and its derivative with respect to the pair vectors along a tangent.

    With L = Σ_{i,f} Ḡ_{i,f} B_{i,f} (Ḡ held fixed): g_p = ∂L/∂r_p and
    δg_p = Σ_q ∂²L/∂r_p ∂r_q · δr_q — the term that a second derivative (``gradgradcheck``,
    force-dependent losses differentiated with respect to positions) needs besides
    :func:`pair_jvp`.

    Parameters
    ----------
    pair_vec : (P, 3) float64 in Å; cotangent : (N, F) float64 Ḡ; tangent : (P, 3) float64 δr in Å

    Returns
    -------
    g : (P, 3) float64 (as :func:`pair_vjp`); dg : (P, 3) float64 in 1/Å² per unit of Ḡ and δr

    Raises
    ------
    MinbasisError
        Arrays of the wrong shape.
    """
    pv, gX, du = _inputs(plan, batch, pair_vec, cotangent, tangent)
    G = np.zeros((len(batch.pair_i), 3))
    dG = np.zeros_like(G)
    _hvp_kernel(batch.centre_ptr, pv, batch.pair_ch, *_plan_args(plan), gX, du, n_chunks_for(batch.n_atoms), G, dG)
    return G, dG


@njit(cache=True, parallel=True)
def _vjp_kernel(centre_ptr, pair_vec, pair_ch, n_channels, r_cut, scale, n_r, l_max, sph_norm, sph_rec, t_order, t_idx,
                t_coef, t_feat, gX, n_chunks, G):  # pragma: no cover - compiled
    """G[p] = Σ_f gX[i, f] ∂B_{i,f}/∂r_p for every pair p of centre i: the linear-model back-propagation
    (:func:`~minbasis.kernels.ace.ace_linear`) with the weights wt[t] = gX[i, t_feat[t]] t_coef[t]
    formed per centre (O(T) work space per thread instead of an (N, T) weight table)."""
    N, nlm, nblock, n_mom, mp, nc = _kernel_sizes(centre_ptr, n_channels, n_r, l_max, n_chunks)
    T = t_order.shape[0]
    empty = np.zeros(0, dtype=np.int64)
    for c in prange(nc):
        ws = _linear_workspace(mp, n_r, l_max, n_mom, t_idx.shape[1])
        wt = np.empty(T)
        for i in range(c * N // nc, (c + 1) * N // nc):
            if centre_ptr[i + 1] == centre_ptr[i]:
                continue
            nz = False
            for f in range(gX.shape[1]):
                if gX[i, f] != 0.0:
                    nz = True
                    break
            if not nz:
                continue
            for t in range(T):
                wt[t] = gX[i, t_feat[t]] * t_coef[t]
            _linear_centre(i, centre_ptr, pair_vec, pair_ch, r_cut, scale, n_r, l_max, sph_norm, sph_rec, False, t_order,
                           t_idx, empty, empty, wt, ws, G, np.empty(0))


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _moment_tangent(pair_ch, p0, npi, n_r, nlm, du, U, R, dR, Y, dY, dA):  # pragma: no cover - compiled
    """dA[v] = Σ_q ∂A_v/∂r_q · δr_q for the pairs of one centre (dA zeroed here): with s_q = r̂_q · δr_q,
    δA_{c,n,lm} = Σ_q dR_n Y_lm s_q + R_n (∇Y_lm · δr_q)."""
    nblock = n_r * nlm
    for v in range(dA.shape[0]):
        dA[v] = 0.0
    for q in range(npi):
        p = p0 + q
        ux, uy, uz = du[p, 0], du[p, 1], du[p, 2]
        s = U[0, q] * ux + U[1, q] * uy + U[2, q] * uz
        base = pair_ch[p] * nblock
        for lm in range(nlm):
            dyu = dY[0, lm, q] * ux + dY[1, lm, q] * uy + dY[2, lm, q] * uz
            yl = Y[lm, q] * s
            for n in range(n_r):
                dA[base + n * nlm + lm] += dR[n, q] * yl + R[n, q] * dyu


@njit(cache=True, parallel=True)
def _jvp_kernel(centre_ptr, pair_vec, pair_ch, n_channels, r_cut, scale, n_r, l_max, sph_norm, sph_rec, t_order, t_idx,
                t_coef, t_feat, du, want_x, n_chunks, X, dX):  # pragma: no cover - compiled
    """X[i, f] = B_{i,f} (if ``want_x``) and dX[i, f] = Σ_p ∂B_{i,f}/∂r_p · du[p] (outputs zero on entry): the
    tangent of the moments (:func:`_moment_tangent`) pushed through every term by the product rule."""
    N, nlm, nblock, n_mom, mp, nc = _kernel_sizes(centre_ptr, n_channels, n_r, l_max, n_chunks)
    T = t_order.shape[0]
    for c in prange(nc):
        A = np.empty(n_mom)
        dA = np.empty(n_mom)
        U, R, dR, W, Q, dQ, CS, Y, dY = _workspace(mp, n_r, l_max)
        for i in range(c * N // nc, (c + 1) * N // nc):
            p0 = centre_ptr[i]
            npi = centre_ptr[i + 1] - p0
            _centre_moments(pair_vec, pair_ch, p0, npi, r_cut, scale, n_r, l_max, sph_norm, sph_rec, U, R, dR, W, Q, dQ, CS,
                            Y, dY, A, True)
            _moment_tangent(pair_ch, p0, npi, n_r, nlm, du, U, R, dR, Y, dY, dA)
            for t in range(T):
                o = t_order[t]
                val = 1.0
                dval = 0.0
                for k in range(o):  # (Π_{<k} a) a_k and its tangent, one factor at a time
                    a = A[t_idx[t, k]]
                    dval = dval * a + val * dA[t_idx[t, k]]
                    val *= a
                f = t_feat[t]
                if want_x:
                    X[i, f] += t_coef[t] * val
                dX[i, f] += t_coef[t] * dval


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _radial_second(U, npi, r_cut, scale, n_r, ddR, T0, T1, T2):  # pragma: no cover - compiled
    """ddR[n, q] = d²R_n/dr² (1/Å²) of the radial basis of :func:`~minbasis.kernels.primitives.pair_radial`:
    R_n = T_n(x(r)) f(r), R''_n = T''_n x'² f + T'_n x'' f + 2 T'_n x' f' + T_n f'', with
    T''_n = 4 T'_{n−1} + 2x T''_{n−1} − T''_{n−2}; zero at and beyond r_cut. T0, T1, T2 (n_r,) work."""
    den = math.exp(scale) - 1.0 if scale > 1e-8 else 1.0
    for q in range(npi):
        u = U[3, q] / r_cut
        if u >= 1.0:
            for n in range(n_r):
                ddR[n, q] = 0.0
            continue
        if scale > 1e-8:
            e = math.exp(-scale * (u - 1.0))
            x = 1.0 - 2.0 * (e - 1.0) / den
            x1 = 2.0 * scale * e / (r_cut * den)
            x2 = -2.0 * scale * scale * e / (r_cut * r_cut * den)
        else:
            x = 2.0 * u - 1.0
            x1 = 2.0 / r_cut
            x2 = 0.0
        w = 1.0 - u * u
        f0 = w * w * w
        f1 = -6.0 * w * w * u / r_cut
        f2 = (24.0 * w * u * u - 6.0 * w * w) / (r_cut * r_cut)
        for n in range(n_r):
            if n == 0:
                T0[n], T1[n], T2[n] = 1.0, 0.0, 0.0
            elif n == 1:
                T0[n], T1[n], T2[n] = x, 1.0, 0.0
            else:
                T0[n] = 2.0 * x * T0[n - 1] - T0[n - 2]
                T1[n] = 2.0 * T0[n - 1] + 2.0 * x * T1[n - 1] - T1[n - 2]
                T2[n] = 4.0 * T1[n - 1] + 2.0 * x * T2[n - 1] - T2[n - 2]
            ddR[n, q] = T2[n] * x1 * x1 * f0 + T1[n] * x2 * f0 + 2.0 * T1[n] * x1 * f1 + T0[n] * f2


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _harmonics_hvp(pair_vec, p0, npi, l_max, F, C, U, Q, dQ, CS, du, ddQ, HYu):  # pragma: no cover - compiled
    """HYu[a, lm, q] = Σ_b ∂²Y_lm/∂r_a ∂r_b · δr_b for the pairs p0 + q (after
    :func:`~minbasis.kernels.primitives.pair_harmonics` filled Q, dQ, CS with gradients).

    Y(r) = G(r̂) with G = F_lm Q_l^m(z) {c_m, s_m}(x, y); with h = ∇G(r̂), H = ∇∇G(r̂),
    P = 1 − r̂r̂ᵀ, π = P δr and s = r̂ · δr, differentiating ∇Y = P h / r once more gives
    ∇∇Y δr = [P H π − (r̂ · h) π − r̂ (h · π) − (P h) s] / r². The Hessian of G uses
    ∂c_m/∂x = m c_{m−1}, ∂c_m/∂y = −m s_{m−1}, ∂s_m/∂x = m s_{m−1}, ∂s_m/∂y = m c_{m−1} (twice) and
    Q'' from the recurrence differentiated twice: (l − m) Q''_l = (2l − 1)(2 Q'_{l−1} + z Q''_{l−1})
    − (l + m − 1) Q''_{l−2}."""
    for q in range(npi):
        for m in range(l_max + 1):
            for l in range(l_max + 1):
                ddQ[l, m, q] = 0.0
    for m in range(0, l_max + 1):
        for l in range(m + 2, l_max + 1):
            a1 = C[0, l, m]
            a2 = C[1, l, m]
            for q in range(npi):
                ddQ[l, m, q] = a1 * (2.0 * dQ[l - 1, m, q] + U[2, q] * ddQ[l - 1, m, q]) - a2 * ddQ[l - 2, m, q]
    for q in range(npi):
        x, y, z, inv = U[0, q], U[1, q], U[2, q], U[4, q]
        p = p0 + q
        ux, uy, uz = du[p, 0], du[p, 1], du[p, 2]
        s = x * ux + y * uy + z * uz
        px, py, pz = ux - s * x, uy - s * y, uz - s * z
        inv2 = inv * inv
        for l in range(l_max + 1):
            for m in range(l + 1):
                f = F[l, m]
                qv = f * Q[l, m, q]
                q1 = f * dQ[l, m, q]
                q2 = f * ddQ[l, m, q]
                for part in range(2 if m > 0 else 1):
                    # part 0: c_m (index l² + l + m), part 1: s_m (index l² + l − m)
                    if m == 0:
                        cm, cx, cy, cxx, cxy, cyy = 1.0, 0.0, 0.0, 0.0, 0.0, 0.0
                    else:
                        mm = m * (m - 1.0)
                        c1, s1 = CS[0, m - 1, q], CS[1, m - 1, q]
                        c2 = CS[0, m - 2, q] if m >= 2 else 0.0
                        s2 = CS[1, m - 2, q] if m >= 2 else 0.0
                        if part == 0:
                            cm = CS[0, m, q]
                            cx, cy = m * c1, -m * s1
                            cxx, cxy, cyy = mm * c2, -mm * s2, -mm * c2
                        else:
                            cm = CS[1, m, q]
                            cx, cy = m * s1, m * c1
                            cxx, cxy, cyy = mm * s2, mm * c2, -mm * s2
                    hx, hy, hz = qv * cx, qv * cy, q1 * cm
                    Hxx, Hxy, Hyy = qv * cxx, qv * cxy, qv * cyy
                    Hxz, Hyz, Hzz = q1 * cx, q1 * cy, q2 * cm
                    # H π, then P (H π)
                    ax = Hxx * px + Hxy * py + Hxz * pz
                    ay = Hxy * px + Hyy * py + Hyz * pz
                    az = Hxz * px + Hyz * py + Hzz * pz
                    d = x * ax + y * ay + z * az
                    ax -= d * x
                    ay -= d * y
                    az -= d * z
                    uh = x * hx + y * hy + z * hz
                    hp = hx * px + hy * py + hz * pz
                    phx, phy, phz = hx - uh * x, hy - uh * y, hz - uh * z
                    k = l * l + l + (m if part == 0 else -m)
                    HYu[0, k, q] = (ax - uh * px - x * hp - phx * s) * inv2
                    HYu[1, k, q] = (ay - uh * py - y * hp - phy * s) * inv2
                    HYu[2, k, q] = (az - uh * pz - z * hp - phz * s) * inv2


@njit(cache=True, parallel=True)
def _hvp_kernel(centre_ptr, pair_vec, pair_ch, n_channels, r_cut, scale, n_r, l_max, sph_norm, sph_rec, t_order, t_idx,
                t_coef, t_feat, gX, du, n_chunks, G, dG):  # pragma: no cover - compiled
    """G[p] = ∂L/∂r_p and dG[p] = Σ_q ∂²L/∂r_p∂r_q du[q] for L = Σ_{i,f} gX[i, f] B_{i,f} (outputs zero).

    Per centre: moments A and their tangent δA; e_v = ∂L_i/∂A_v and its tangent
    δe_v = Σ_w ∂²L_i/∂A_v∂A_w δA_w (the contraction differentiated twice by the product rule);
    then with φ_v(r) = R_n(|r|) Y_lm(r̂) and D_v = ∇φ_v,
    dG_q = Σ_v δe_v D_v(r_q) + e_v ∇∇φ_v(r_q) δr_q, where
    ∇∇φ δr = R'' Y r̂ s + R' (r̂ (∇Y · δr) + ∇Y s) + R' Y (δr − r̂ s)/r + R ∇∇Y δr (s = r̂ · δr)."""
    N, nlm, nblock, n_mom, mp, nc = _kernel_sizes(centre_ptr, n_channels, n_r, l_max, n_chunks)
    T = t_order.shape[0]
    W_ = t_idx.shape[1]
    m1 = max(mp, 1)
    for c in prange(nc):
        A = np.empty(n_mom)
        dA = np.empty(n_mom)
        e = np.empty(n_mom)
        de = np.empty(n_mom)
        U, R, dR, W, Q, dQ, CS, Y, dY = _workspace(mp, n_r, l_max)
        ddR = np.empty((n_r, m1))
        ddQ = np.empty((l_max + 1, l_max + 1, m1))
        HYu = np.empty((3, nlm, m1))
        T0 = np.empty(n_r)
        T1 = np.empty(n_r)
        T2 = np.empty(n_r)
        a = np.empty(W_)
        da = np.empty(W_)
        for i in range(c * N // nc, (c + 1) * N // nc):
            p0 = centre_ptr[i]
            npi = centre_ptr[i + 1] - p0
            if npi == 0:
                continue
            _centre_moments(pair_vec, pair_ch, p0, npi, r_cut, scale, n_r, l_max, sph_norm, sph_rec, U, R, dR, W, Q, dQ, CS,
                            Y, dY, A, True)
            _moment_tangent(pair_ch, p0, npi, n_r, nlm, du, U, R, dR, Y, dY, dA)
            _radial_second(U, npi, r_cut, scale, n_r, ddR, T0, T1, T2)
            _harmonics_hvp(pair_vec, p0, npi, l_max, sph_norm, sph_rec, U, Q, dQ, CS, du, ddQ, HYu)
            for v in range(n_mom):
                e[v] = 0.0
                de[v] = 0.0
            for t in range(T):
                w = gX[i, t_feat[t]] * t_coef[t]
                if w == 0.0:
                    continue
                o = t_order[t]
                for k in range(o):
                    a[k] = A[t_idx[t, k]]
                    da[k] = dA[t_idx[t, k]]
                for k in range(o):
                    prod = 1.0
                    dprod = 0.0
                    for j in range(o):
                        if j == k:
                            continue
                        dprod = dprod * a[j] + prod * da[j]
                        prod *= a[j]
                    e[t_idx[t, k]] += w * prod
                    de[t_idx[t, k]] += w * dprod
            for q in range(npi):
                p = p0 + q
                base = pair_ch[p] * nblock
                ux, uy, uz = du[p, 0], du[p, 1], du[p, 2]
                rx, ry, rz, inv = U[0, q], U[1, q], U[2, q], U[4, q]
                s = rx * ux + ry * uy + rz * uz
                g0 = 0.0
                g1 = 0.0
                g2 = 0.0
                h0 = 0.0
                h1 = 0.0
                h2 = 0.0
                for lm in range(nlm):
                    c0 = 0.0  # Σ_n e R_n
                    c1 = 0.0  # Σ_n e R'_n
                    c2 = 0.0  # Σ_n e R''_n
                    d0 = 0.0  # Σ_n δe R_n
                    d1 = 0.0  # Σ_n δe R'_n
                    for n in range(n_r):
                        v = base + n * nlm + lm
                        c0 += e[v] * R[n, q]
                        c1 += e[v] * dR[n, q]
                        c2 += e[v] * ddR[n, q]
                        d0 += de[v] * R[n, q]
                        d1 += de[v] * dR[n, q]
                    y = Y[lm, q]
                    dy0, dy1, dy2 = dY[0, lm, q], dY[1, lm, q], dY[2, lm, q]
                    # first derivative: Σ_v e_v D_v
                    g0 += c1 * y * rx + c0 * dy0
                    g1 += c1 * y * ry + c0 * dy1
                    g2 += c1 * y * rz + c0 * dy2
                    # tangent: Σ_v δe_v D_v + e_v ∇∇φ_v δr
                    dyu = dy0 * ux + dy1 * uy + dy2 * uz
                    h0 += d1 * y * rx + d0 * dy0 + c2 * y * rx * s + c1 * (rx * dyu + dy0 * s) \
                        + c1 * y * (ux - rx * s) * inv + c0 * HYu[0, lm, q]
                    h1 += d1 * y * ry + d0 * dy1 + c2 * y * ry * s + c1 * (ry * dyu + dy1 * s) \
                        + c1 * y * (uy - ry * s) * inv + c0 * HYu[1, lm, q]
                    h2 += d1 * y * rz + d0 * dy2 + c2 * y * rz * s + c1 * (rz * dyu + dy2 * s) \
                        + c1 * y * (uz - rz * s) * inv + c0 * HYu[2, lm, q]
                G[p, 0] = g0
                G[p, 1] = g1
                G[p, 2] = g2
                dG[p, 0] = h0
                dG[p, 1] = h1
                dG[p, 2] = h2
