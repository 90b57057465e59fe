"""Linear model and a committee of K coefficient perturbations in one pass (CPU, Numba).

A committee member k has weights ``weights + dw[k]`` (dw: deviations from the mean, e.g. draws
from the Bayesian posterior of a linear fit, :mod:`minbasis.fit.linear`). Its per-atom energies
and pair gradients are linear in the weights, so they are evaluated from quantities that every
member shares: per centre atom the moments A, the features B and the sparse Jacobian ∂B_f/∂A_v
(the "slots" of the plan) are computed once; then

* member energies: E_{i,k} = dw[k, s_i] · B_i (one small matrix product per atom);
* ∂E_{i,k}/∂A_v = Σ_f dw[k, s_i, f] ∂B_f/∂A_v, for all k at once (inner loop over k);
* pair gradients: the same back-propagation through R_n(r) Y_lm(r̂) as the mean model
  (:func:`minbasis.kernels.ace.ace_linear`), vectorised over the K members.

The mean model itself goes through the very per-centre step of :func:`ace_linear`
(:func:`minbasis.kernels.ace._linear_centre`, which also leaves the centre's moments and pair
primitives for the members), so its results equal those of
:func:`minbasis.kernels.linear_energy_forces` to rounding.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .ace import (_contract_backprop, _contract_values, _kernel_sizes, _linear_centre, _linear_workspace, _run_end,
                  n_chunks_for, scatter_pair_gradients)
from .neighbours import Batch
from .primitives import FASTMATH
from .plan import EvaluationPlan

__all__ = ["ace_linear_committee", "linear_energy_forces_committee"]


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def ace_linear_committee(centre_ptr, centre_ch, pair_vec, pair_ch, n_channels, r_cut, scale, n_r, l_max, sph_norm, sph_rec,
                         t_order, t_idx, o_ptr, t_pack, t_coef, t_feat, t_slot, slot_v, cf_ptr, wt, e0, dw, n_chunks,
                         E, G, Ed, Gd):  # pragma: no cover
    """Mean linear model and K deviation weight vectors in one pass over the centres.

    Parameters (beyond those of :func:`~minbasis.kernels.ace.ace_linear`)
    ----------
    t_coef, t_feat, t_slot, slot_v, cf_ptr : plan arrays (features and their sparse ∂B/∂A slots)
    wt : (n_channels, T) mean weights folded into the terms (as ``ace_linear``)
    dw : (n_channels, n_features, K) deviation weights, member index innermost, K a multiple of BLOCK

    Outputs (overwritten)
    -------
    E : (N,) per-atom energies of the mean model, eV; G : (P, 3) its pair gradients ∂E/∂r_ij, eV/Å
    Ed : (N, K) per-atom energy deviations dw[k, s_i] · B_i, eV
    Gd : (P, 3, K) pair-gradient deviations, eV/Å
    """
    N, nlm, nblock, n_mom, mp, nc = _kernel_sizes(centre_ptr, n_channels, n_r, l_max, n_chunks)
    K = Ed.shape[1]
    nf = dw.shape[1]
    T = t_order.shape[0]
    n_slots = slot_v.shape[0]
    packed = t_pack.shape[0] == T and T > 0
    for c in prange(nc):
        ws = _linear_workspace(mp, n_r, l_max, n_mom, t_idx.shape[1])
        A, dEdA, U, R, dR, W, Q, dQ, CS, Y, dY, part, cl, dl = ws  # filled by _linear_centre, per centre
        X = np.empty((1, nf))
        Gs = np.empty(n_slots)
        dA2 = np.empty((n_mom, K))
        dA = dA2.reshape(n_mom * K)
        ck = np.empty(nlm * K)
        dk = np.empty(nlm * K)
        wk = np.empty(4 * K)
        for i in range(c * N // nc, (c + 1) * N // nc):
            s_i = centre_ch[i]
            # mean model: exactly the per-centre step of ace_linear (fills A and the pair primitives)
            E[i] = e0[s_i] + _linear_centre(i, centre_ptr, pair_vec, pair_ch, r_cut, scale, n_r, l_max, sph_norm, sph_rec, packed,
                                            t_order, t_idx, o_ptr, t_pack, wt[s_i], ws, G)
            p0 = centre_ptr[i]
            npi = centre_ptr[i + 1] - p0
            # committee: features B_i and sparse ∂B_f/∂A_v of this centre, shared by all members
            for f in range(nf):
                X[0, f] = 0.0
            _contract_values(T, t_order, t_idx, o_ptr, t_pack, packed, t_coef, t_feat, A, X, 0)
            for s in range(n_slots):
                Gs[s] = 0.0
            _contract_backprop(T, t_order, t_idx, t_slot, t_coef, A, Gs, part)
            _committee_centre(i, p0, npi, n_r, nlm, n_channels, pair_ch, cf_ptr, slot_v, X[0], Gs, dw[s_i], K, U, R, dR,
                              Y, dY, dA2, dA, ck, dk, wk, Ed, Gd)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _committee_centre(i, p0, npi, n_r, nlm, n_channels, pair_ch, cf_ptr, slot_v, x, Gs, dws, K, U, R, dR, Y, dY, dA2,
                      dA, ck, dk, wk, Ed, Gd):  # pragma: no cover
    """Committee part of centre i: Ed[i, k] = Σ_f dws[f, k] x[f], ∂E_k/∂A_v (dA2[v, k], the same
    memory as the flat dA[v·K + k]) from the slots Gs of ∂B/∂A, and the pair gradients
    Gd[p0 + q, :, k] of the K members.

    ``dws`` (n_features, K) holds the deviation weights of the centre's species; K is a multiple
    of :data:`BLOCK`, and the loops over members run in blocks of BLOCK of constant length
    (one vector instruction each); the pair work arrays are flat (ck and dk (nlm·K,), wk (4·K,))."""
    nf = x.shape[0]
    nblock = n_r * nlm
    for k in range(K):
        Ed[i, k] = 0.0
    for f in range(nf):
        b = x[f]
        for kc in range(0, K, BLOCK):
            for u in range(BLOCK):
                Ed[i, kc + u] += b * dws[f, kc + u]
    for j in range(dA.shape[0]):
        dA[j] = 0.0
    for ch in range(n_channels):
        row = ch * nf
        for f in range(nf):
            for s in range(cf_ptr[row + f], cf_ptr[row + f + 1]):
                g = Gs[s]
                v = slot_v[s]
                for kc in range(0, K, BLOCK):
                    for u in range(BLOCK):
                        dA2[v, kc + u] += g * dws[f, kc + u]
    q = 0
    while q < npi:
        ch = pair_ch[p0 + q]
        qe = _run_end(pair_ch, p0, q, npi)
        base = ch * nblock
        nk = nlm * K
        for qq in range(q, qe):
            for j in range(nk):
                ck[j] = 0.0
                dk[j] = 0.0
            for n in range(n_r):
                # the (lm, k) block of radial function n is contiguous in dA: one long loop
                r = R[n, qq]
                rp = dR[n, qq]
                ov = (base + n * nlm) * K
                for j in range(nk):
                    a = dA[ov + j]
                    ck[j] += a * r
                    dk[j] += a * rp
            for j in range(4 * K):
                wk[j] = 0.0
            for lm in range(nlm):
                y0 = dY[0, lm, qq]
                y1 = dY[1, lm, qq]
                y2 = dY[2, lm, qq]
                y = Y[lm, qq]
                oc = lm * K
                for k in range(K):
                    c = ck[oc + k]
                    wk[k] += c * y0
                    wk[K + k] += c * y1
                    wk[2 * K + k] += c * y2
                    wk[3 * K + k] += dk[oc + k] * y
            u0 = U[0, qq]
            u1 = U[1, qq]
            u2 = U[2, qq]
            p = p0 + qq
            for k in range(K):
                w3 = wk[3 * K + k]
                Gd[p, 0, k] = wk[k] + w3 * u0
                Gd[p, 1, k] = wk[K + k] + w3 * u1
                Gd[p, 2, k] = wk[2 * K + k] + w3 * u2
        q = qe


@njit(cache=True)
def _scatter_committee(pair_i, pair_j, pair_vec, pair_struct, Gd, forces, virial):  # pragma: no cover
    """Per member k: forces[j, :, k] −= Gd[p, :, k], forces[i, :, k] += Gd[p, :, k] (eV/Å) and
    virial[s, :, :, k] −= r_p ⊗ Gd[p, :, k] (eV), as :func:`~minbasis.kernels.ace.scatter_pair_gradients`."""
    K = Gd.shape[2]
    for p in range(pair_i.shape[0]):
        i = pair_i[p]
        j = pair_j[p]
        s = pair_struct[p]
        for a in range(3):
            ga = Gd[p, a]
            fj = forces[j, a]
            fi = forces[i, a]
            for k in range(K):
                fj[k] -= ga[k]
                fi[k] += ga[k]
            for b in range(3):
                ra = pair_vec[p, a]
                gb = Gd[p, b]
                vab = virial[s, a, b]
                for k in range(K):
                    vab[k] -= ra * gb[k]


#: Members per block of the committee loops (one AVX-512 vector of float64); K is padded to a multiple.
BLOCK = 8


def linear_energy_forces_committee(plan: EvaluationPlan, batch: Batch, weights: np.ndarray, e0: np.ndarray,
                                   dweights: np.ndarray, de0: np.ndarray
                                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Energies, forces and virials of a linear model and of K committee members, in one pass.

    Member k has weights ``weights + dweights[k]`` and E0 ``e0 + de0[k]``. The mean results
    equal :func:`~minbasis.kernels.linear_energy_forces`; the member deviations are exact (linear
    in the weights), evaluated with the features and ∂B/∂A computed once per atom (module docstring).

    Parameters
    ----------
    weights : (n_channels, n_features) eV per unit feature; e0 : (n_channels,) eV
    dweights : (K, n_channels, n_features) deviations of the members' weights; de0 : (K, n_channels) eV

    Returns
    -------
    energies : (N,) per-atom energies of the mean model, eV
    forces : (N, 3) eV/Å; virial : (M, 3, 3) eV (stress = −W/V)
    d_energies : (K, N) per-atom energy deviations of the members, eV
    d_forces : (K, N, 3) force deviations, eV/Å; d_virial : (K, M, 3, 3) virial deviations, eV

    Raises
    ------
    ValueError
        Shapes of ``dweights`` / ``de0`` that do not match ``weights``, or K = 0.
    """
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    e0 = np.ascontiguousarray(e0, dtype=np.float64)
    dweights = np.asarray(dweights, dtype=np.float64)
    de0 = np.asarray(de0, dtype=np.float64)
    if dweights.ndim != 3 or dweights.shape[1:] != weights.shape or dweights.shape[0] < 1:
        raise ValueError(f"dweights must have shape (K, {weights.shape[0]}, {weights.shape[1]}) with K >= 1, "
                         f"got {dweights.shape}")
    K = dweights.shape[0]
    if de0.shape != (K, weights.shape[0]):
        raise ValueError(f"de0 must have shape ({K}, {weights.shape[0]}), got {de0.shape}")
    N, P, M = batch.n_atoms, len(batch.pair_i), batch.n_structures
    Kp = -(-K // BLOCK) * BLOCK  # members padded with zero deviations to whole blocks
    E = np.zeros(N)
    G = np.zeros((P, 3))
    Ed = np.zeros((N, Kp))
    Gd = np.zeros((P, 3, Kp))
    wt = np.ascontiguousarray(weights[:, plan.t_feat] * plan.t_coef[None, :])
    dw = np.zeros((weights.shape[0], weights.shape[1], Kp))  # (C, F, Kp), member index innermost
    dw[:, :, :K] = np.transpose(dweights, (1, 2, 0))
    ace_linear_committee(batch.centre_ptr, batch.centre_ch, batch.pair_vec, batch.pair_ch, plan.n_channels,
                         plan.r_cut, plan.scale, plan.n_r, plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order, plan.t_idx,
                         plan.o_ptr, plan.t_pack, plan.t_coef, plan.t_feat, plan.t_slot, plan.slot_v, plan.cf_ptr, wt,
                         e0, dw, n_chunks_for(N), E, G, Ed, Gd)
    Ed, Gd = Ed[:, :K], np.ascontiguousarray(Gd[:, :, :K])
    forces = np.zeros((N, 3))
    virial = np.zeros((M, 3, 3))
    scatter_pair_gradients(batch.pair_i, batch.pair_j, batch.pair_vec, batch.pair_struct, G, forces, virial)
    dforces = np.zeros((N, 3, K))
    dvirial = np.zeros((M, 3, 3, K))
    _scatter_committee(batch.pair_i, batch.pair_j, batch.pair_vec, batch.pair_struct, Gd, dforces, dvirial)
    dforces = np.moveaxis(dforces, 2, 0)
    dvirial = np.moveaxis(dvirial, 3, 0)
    Ed = np.ascontiguousarray(Ed.T) + de0[:, batch.centre_ch]
    return E, forces, virial, Ed, dforces, dvirial
