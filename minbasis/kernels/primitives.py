"""Numba primitives evaluated per neighbour pair: radial basis and real spherical harmonics.

Radial basis (docs/theory/bases.md), ``chebyshev_exp``::

    x(r) = 1 − 2 (exp(−s (r/r_cut − 1)) − 1) / (exp(s) − 1)     (s = ``scale``; s → 0: x = 2r/r_cut − 1)
    R_n(r) = T_n(x(r)) · f_cut(r),  f_cut(r) = (1 − (r/r_cut)²)³,  n = 0..n_max−1

T_n are Chebyshev polynomials; x maps [0, r_cut] monotonically onto [−1, 1] for any s: s > 0
gives more resolution at short distances (the exponential distance transform of pacemaker's
"ChebExpCos" radial basis, Lysogorskiy et al., npj Comput. Mater. 7, 97, 2021), s < 0 towards
r_cut, where the neighbours of a solid lie (:func:`minbasis.fit.auto.radial_scale_for` picks s
from the data's shortest distance). f_cut and its first and second derivatives vanish at r_cut.

Real spherical harmonics Y_lm(r̂) with their gradients with respect to the pair vector,
orthonormal, Condon–Shortley phase folded in (the convention of sphericart; see
:mod:`minbasis.invariants.coupling`), computed from Cartesian recurrences for the solid
harmonics S_lm(r) = r^l Y_lm(r̂) (Bigi et al., J. Chem. Phys. 159, 064802, 2023), evaluated
on the unit sphere (r = 1): Q_m^m = (−1)^m (2m−1)!!, Q_{m+1}^m = (2m+1) z Q_m^m,
(l−m) Q_l^m = (2l−1) z Q_{l−1}^m − (l+m−1) Q_{l−2}^m, and Y_{l,±m} = F_lm Q_l^m {c_m, s_m}
with c_m + i s_m = (x + i y)^m. Index of (l, m) is l² + l + m.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["sph_normalisation", "sph_recurrence", "pair_geometry", "pair_radial", "pair_harmonics", "radial_values",
           "harmonics_values"]


def sph_normalisation(l_max: int) -> np.ndarray:
    """F_lm factors, float64 array of shape (l_max+1, l_max+1) (m ≥ 0)."""
    F = np.zeros((l_max + 1, l_max + 1))
    for l in range(l_max + 1):
        F[l, 0] = math.sqrt((2 * l + 1) / (4 * math.pi))
        for m in range(1, l + 1):
            F[l, m] = math.sqrt((2 * l + 1) / (2 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
    return F


def sph_recurrence(l_max: int) -> np.ndarray:
    """Coefficients of the Q_l^m recurrence, float64 array (2, l_max+1, l_max+1):
    C[0, l, m] = (2l − 1)/(l − m) and C[1, l, m] = (l + m − 1)/(l − m) for l ≥ m + 2, else 0
    (tabulated so that the kernels do no divisions)."""
    C = np.zeros((2, l_max + 1, l_max + 1))
    for m in range(l_max + 1):
        for l in range(m + 2, l_max + 1):
            C[0, l, m] = (2 * l - 1) / (l - m)
            C[1, l, m] = (l + m - 1) / (l - m)
    return C


# ---------------------------------------------------------------------------------------------
# The kernels evaluate all neighbour pairs of one centre at once, pair index innermost
# (contiguous), so that the loops over pairs vectorise (SIMD). ``fastmath`` is limited to
# reassociation and fused multiply-add (no assumptions about NaN or infinities).
FASTMATH = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def pair_geometry(pair_vec, p0, npi, U):  # pragma: no cover - compiled
    """U[0:3, q] = unit vector r̂ and U[3, q] = |r| (Å), U[4, q] = 1/|r| of pairs p0 + q, q < npi."""
    for q in range(npi):
        dx = pair_vec[p0 + q, 0]
        dy = pair_vec[p0 + q, 1]
        dz = pair_vec[p0 + q, 2]
        r = math.sqrt(dx * dx + dy * dy + dz * dz)
        inv = 1.0 / r
        U[0, q] = dx * inv
        U[1, q] = dy * inv
        U[2, q] = dz * inv
        U[3, q] = r
        U[4, q] = inv


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def pair_radial(U, npi, r_cut, scale, n_max, R, dR, W):  # pragma: no cover - compiled
    """R[n, q] = R_n(r_q) and dR[n, q] = dR_n/dr (1/Å) for q < npi, r_q = U[3, q] (module
    docstring; zero at and beyond r_cut); W (4, ≥ npi) is work space."""
    den = math.exp(scale) - 1.0 if abs(scale) > 1e-8 else 1.0
    for q in range(npi):
        u = U[3, q] / r_cut
        if u >= 1.0:
            W[0, q] = 0.0
            W[1, q] = 0.0
            W[2, q] = 0.0
            W[3, q] = 0.0
            continue
        if abs(scale) > 1e-8:
            e = math.exp(-scale * (u - 1.0))
            W[0, q] = 1.0 - 2.0 * (e - 1.0) / den
            W[1, q] = 2.0 * scale * e / (r_cut * den)
        else:
            W[0, q] = 2.0 * u - 1.0
            W[1, q] = 2.0 / r_cut
        w = 1.0 - u * u
        W[2, q] = w * w * w
        W[3, q] = -6.0 * w * w * u / r_cut
    # Chebyshev T_n(x) and T'_n(x) into R, dR; then the envelope and the chain rule
    for q in range(npi):
        R[0, q] = 1.0
        dR[0, q] = 0.0
    if n_max > 1:
        for q in range(npi):
            R[1, q] = W[0, q]
            dR[1, q] = 1.0
    for n in range(2, n_max):
        for q in range(npi):
            x = W[0, q]
            R[n, q] = 2.0 * x * R[n - 1, q] - R[n - 2, q]
            dR[n, q] = 2.0 * R[n - 1, q] + 2.0 * x * dR[n - 1, q] - dR[n - 2, q]
    for n in range(n_max):
        for q in range(npi):
            t = R[n, q]
            R[n, q] = t * W[2, q]
            dR[n, q] = dR[n, q] * W[1, q] * W[2, q] + t * W[3, q]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def pair_harmonics(U, npi, l_max, F, C, Q, dQ, CS, Y, dY, want_grad):  # pragma: no cover - compiled
    """Y[lm, q] = Y_lm(r̂_q) and, if ``want_grad``, dY[a, lm, q] = ∂Y_lm/∂(r_q)_a (1/Å), q < npi,
    from U of :func:`pair_geometry`; F: :func:`sph_normalisation`, C: :func:`sph_recurrence`.
    Work arrays: Q, dQ (l_max+1, l_max+1, ≥ npi), CS (2, l_max+1, ≥ npi).

    On the unit sphere Y_lm = F_lm Q_l^m(z) {c_m, s_m}(x, y); its gradient is the tangential
    part of the gradient of that extension, g − (û · g) û, divided by r, with
    g = F_lm (Q dc/dx, Q dc/dy, Q' c) and (l − m) Q'_l = (2l − 1)(Q_{l−1} + z Q'_{l−1})
    − (l + m − 1) Q'_{l−2} (the recurrence of Q differentiated in z)."""
    if npi == 0:
        return
    for q in range(npi):
        Q[0, 0, q] = 1.0
        dQ[0, 0, q] = 0.0
        CS[0, 0, q] = 1.0
        CS[1, 0, q] = 0.0
    for m in range(1, l_max + 1):
        qmm = -(2 * m - 1) * Q[m - 1, m - 1, 0]  # Q_m^m is a constant
        for q in range(npi):
            Q[m, m, q] = qmm
            dQ[m, m, q] = 0.0
            CS[0, m, q] = U[0, q] * CS[0, m - 1, q] - U[1, q] * CS[1, m - 1, q]
            CS[1, m, q] = U[0, q] * CS[1, m - 1, q] + U[1, q] * CS[0, m - 1, q]
    for m in range(0, l_max):
        a = 2 * m + 1
        for q in range(npi):
            Q[m + 1, m, q] = a * U[2, q] * Q[m, m, q]
            dQ[m + 1, m, q] = a * Q[m, m, q]
    for m in range(0, l_max + 1):
        for l in range(m + 2, l_max + 1):
            a1 = C[0, l, m]
            a2 = C[1, l, m]
            for q in range(npi):
                Q[l, m, q] = a1 * U[2, q] * Q[l - 1, m, q] - a2 * Q[l - 2, m, q]
            if want_grad:
                for q in range(npi):
                    dQ[l, m, q] = a1 * (Q[l - 1, m, q] + U[2, q] * dQ[l - 1, m, q]) - a2 * dQ[l - 2, m, q]
    for l in range(l_max + 1):
        k = l * l + l
        f = F[l, 0]
        for q in range(npi):
            Y[k, q] = f * Q[l, 0, q]
        if want_grad:
            for q in range(npi):
                gz = f * dQ[l, 0, q]
                x, y, z, inv = U[0, q], U[1, q], U[2, q], U[4, q]
                dY[0, k, q] = -z * gz * x * inv
                dY[1, k, q] = -z * gz * y * inv
                dY[2, k, q] = (gz - z * gz * z) * inv
    for m in range(1, l_max + 1):
        for l in range(m, l_max + 1):
            f = F[l, m]
            kp = l * l + l + m
            km = l * l + l - m
            for q in range(npi):
                fq = f * Q[l, m, q]
                Y[kp, q] = fq * CS[0, m, q]
                Y[km, q] = fq * CS[1, m, q]
            if want_grad:
                for q in range(npi):
                    x, y, z, inv = U[0, q], U[1, q], U[2, q], U[4, q]
                    fq = f * Q[l, m, q]
                    fdq = f * dQ[l, m, q]
                    cp, sp = CS[0, m - 1, q], CS[1, m - 1, q]
                    # d c_m/dx = m c_{m-1}, d c_m/dy = −m s_{m-1}, d s_m/dx = m s_{m-1}, d s_m/dy = m c_{m-1}
                    gx = fq * m * cp
                    gy = -fq * m * sp
                    gz = fdq * CS[0, m, q]
                    dot = x * gx + y * gy + z * gz
                    dY[0, kp, q] = (gx - dot * x) * inv
                    dY[1, kp, q] = (gy - dot * y) * inv
                    dY[2, kp, q] = (gz - dot * z) * inv
                    gx = fq * m * sp
                    gy = fq * m * cp
                    gz = fdq * CS[1, m, q]
                    dot = x * gx + y * gy + z * gz
                    dY[0, km, q] = (gx - dot * x) * inv
                    dY[1, km, q] = (gy - dot * y) * inv
                    dY[2, km, q] = (gz - dot * z) * inv


def _geometry(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float64)
    U = np.empty((5, max(len(vectors), 1)))
    pair_geometry(vectors, 0, len(vectors), U)
    return U


def radial_values(r: np.ndarray, r_cut: float, scale: float, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """R_n(r) and dR_n/dr for distances r (P,) in Å (a NumPy front end of :func:`pair_radial`).

    Returns
    -------
    R, dR : float64 arrays (P, n_max); dR in 1/Å.
    """
    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    P = len(r)
    U = np.zeros((5, max(P, 1)))
    U[3, :P] = r
    R = np.empty((n_max, max(P, 1)))
    dR = np.empty((n_max, max(P, 1)))
    pair_radial(U, P, float(r_cut), float(scale), int(n_max), R, dR, np.empty((4, max(P, 1))))
    return R[:, :P].T.copy(), dR[:, :P].T.copy()


def harmonics_values(vectors: np.ndarray, l_max: int, gradients: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Real Y_lm(r̂) and ∂Y_lm/∂r for pair vectors (P, 3) in Å (a NumPy front end of
    :func:`pair_harmonics`).

    Returns
    -------
    Y : float64 (P, (l_max+1)²), index l² + l + m
    dY : float64 (P, 3, (l_max+1)²) in 1/Å (zeros when ``gradients`` is False)
    """
    U = _geometry(vectors)
    P = len(np.atleast_2d(vectors))
    m = max(P, 1)
    nlm = (l_max + 1) ** 2
    Y = np.zeros((nlm, m))
    dY = np.zeros((3, nlm, m))
    pair_harmonics(U, P, int(l_max), sph_normalisation(l_max), sph_recurrence(l_max), np.empty((l_max + 1, l_max + 1, m)),
                   np.empty((l_max + 1, l_max + 1, m)), np.empty((2, l_max + 1, m)), Y, dY, bool(gradients))
    return Y[:, :P].T.copy(), np.transpose(dY[:, :, :P], (2, 0, 1)).copy()
