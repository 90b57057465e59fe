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

When only the members' total energies are wanted (the MD calculator's ``energy_std`` on every
step), neither per-atom features nor ∂B/∂A are needed: E_k − E = Σ_s dw[k, s] · Σ_{i of species s} B_i.
:func:`ace_linear_term_sums` runs the mean model and accumulates every term's value per species
inside its own contraction; :func:`member_energy_deviations` folds those sums into features and
takes the K products.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .ace import (_contract_backprop, _contract_values, _kernel_sizes, _linear_centre, _linear_workspace, _run_end,
                  n_chunks_for, scatter_pair_gradients)
from .neighbours import Batch
from .primitives import FASTMATH
from .plan import EvaluationPlan

__all__ = ["ace_linear_committee", "ace_linear_term_sums", "linear_energy_forces_committee", "member_energy_deviations",
           "term_sums_to_features"]


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
    no_sums = np.empty(0)
    Edf = Ed.reshape(Ed.size)
    for c in prange(nc):
        ws = _linear_workspace(mp, n_r, l_max, n_mom, t_idx.shape[1])
        A, dEdA, U, R, dR, W, Q, dQ, CS, Y, dY, part, cl, dl = ws  # filled by _linear_centre, per centre
        X = np.empty((1, nf))
        Gs = np.empty(n_slots)
        dA = np.empty(n_mom * K)  # ∂E_k/∂A_v at v·K + k
        ck = np.empty(K)
        dk = np.empty(K)
        w0 = np.empty(K)
        w1 = np.empty(K)
        w2 = np.empty(K)
        w3 = np.empty(K)
        for i in range(c * N // nc, (c + 1) * N // nc):
            s_i = centre_ch[i]
            # mean model: exactly the per-centre step of ace_linear (fills A and the pair primitives)
            E[i] = e0[s_i] + _linear_centre(i, centre_ptr, pair_vec, pair_ch, r_cut, scale, n_r, l_max, sph_norm, sph_rec, packed,
                                            t_order, t_idx, o_ptr, t_pack, wt[s_i], ws, G, no_sums)
            p0 = centre_ptr[i]
            npi = centre_ptr[i + 1] - p0
            # committee: features B_i and sparse ∂B_f/∂A_v of this centre, shared by all members
            for f in range(nf):
                X[0, f] = 0.0
            for s in range(n_slots):
                Gs[s] = 0.0
            if packed:
                _values_slots_packed(o_ptr, t_pack, t_slot, t_coef, t_feat, A, X[0], Gs)
            else:
                _contract_values(T, t_order, t_idx, o_ptr, t_pack, packed, t_coef, t_feat, A, X, 0)
                _contract_backprop(T, t_order, t_idx, t_slot, t_coef, A, Gs, part)
            _committee_centre(i, p0, npi, n_r, nlm, n_channels, pair_ch, cf_ptr, slot_v, X[0], Gs, dw[s_i], K, U, R, dR,
                              Y, dY, dA, ck, dk, w0, w1, w2, w3, Edf, Gd)


@njit(cache=True, nogil=True)
def _values_slots_packed(o_ptr, t_pack, t_slot, t_coef, t_feat, A, x, Gs):  # pragma: no cover
    """Features x[f] += Σ_{t of f} t_coef[t] Π_k A[i_k] and the slots of ∂B/∂A,
    Gs[t_slot[t, k]] += t_coef[t] Π_{j≠k} A[i_j], in one pass over the terms of a packed plan
    (≤ 4 factors, indices 16 bits each in ``t_pack``, terms sorted by order: one index load per
    term and no branch on the order, as :func:`~minbasis.kernels.ace._contract_packed`)."""
    m = np.int64(0xFFFF)
    for t in range(o_ptr[1], o_ptr[2]):
        c = t_coef[t]
        x[t_feat[t]] += c * A[t_pack[t] & m]
        Gs[t_slot[t, 0]] += c
    for t in range(o_ptr[2], o_ptr[3]):
        pk = t_pack[t]
        c = t_coef[t]
        a0 = A[pk & m]
        a1 = A[(pk >> 16) & m]
        x[t_feat[t]] += c * a0 * a1
        Gs[t_slot[t, 0]] += c * a1
        Gs[t_slot[t, 1]] += c * a0
    for t in range(o_ptr[3], o_ptr[4]):
        pk = t_pack[t]
        c = t_coef[t]
        a0 = A[pk & m]
        a1 = A[(pk >> 16) & m]
        a2 = A[(pk >> 32) & m]
        c01 = c * a0 * a1
        x[t_feat[t]] += c01 * a2
        Gs[t_slot[t, 0]] += c * a1 * a2
        Gs[t_slot[t, 1]] += c * a0 * a2
        Gs[t_slot[t, 2]] += c01
    for t in range(o_ptr[4], o_ptr[5]):
        pk = t_pack[t]
        c = t_coef[t]
        a0 = A[pk & m]
        a1 = A[(pk >> 16) & m]
        a2 = A[(pk >> 32) & m]
        a3 = A[(pk >> 48) & m]
        c01 = c * a0 * a1
        c23 = c * a2 * a3
        x[t_feat[t]] += c01 * a2 * a3
        Gs[t_slot[t, 0]] += c23 * a1
        Gs[t_slot[t, 1]] += c23 * a0
        Gs[t_slot[t, 2]] += c01 * a3
        Gs[t_slot[t, 3]] += c01 * a2


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def ace_linear_term_sums(centre_ptr, centre_ch, pair_vec, pair_ch, n_channels, r_cut, scale, n_r, l_max, sph_norm, sph_rec,
                         t_order, t_idx, o_ptr, t_pack, wt, e0, n_chunks, E, G, Vs):  # pragma: no cover
    """Mean linear model (as :func:`~minbasis.kernels.ace.ace_linear`) and the values of every plan
    term summed over the centres of each species, accumulated inside the mean model's own
    contraction (two more operations per term): all that the energy deviations of any number
    of committee members need, E_k − E = Σ_s Σ_t dw[k, s, t_feat[t]] t_coef[t] Vs[s, t] + Σ_i de0[k, s_i]
    (:func:`term_sums_to_features`), without their forces.

    Outputs (overwritten): E (N,) eV and G (P, 3) eV/Å as ``ace_linear``; Vs (nc, n_channels, T),
    chunk c's sums over its centres of each species (the caller sums over c).
    """
    N, nlm, nblock, n_mom, mp, nc = _kernel_sizes(centre_ptr, n_channels, n_r, l_max, n_chunks)
    packed = t_pack.shape[0] == t_order.shape[0] and t_order.shape[0] > 0
    for c in prange(nc):
        ws = _linear_workspace(mp, n_r, l_max, n_mom, t_idx.shape[1])
        V = Vs[c]
        for s in range(V.shape[0]):
            for t in range(V.shape[1]):
                V[s, t] = 0.0
        for i in range(c * N // nc, (c + 1) * N // nc):
            s_i = centre_ch[i]
            E[i] = e0[s_i] + _linear_centre(i, centre_ptr, pair_vec, pair_ch, r_cut, scale, n_r, l_max, sph_norm, sph_rec,
                                            packed, t_order, t_idx, o_ptr, t_pack, wt[s_i], ws, G, V[s_i])


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _committee_centre(i, p0, npi, n_r, nlm, n_channels, pair_ch, cf_ptr, slot_v, x, Gs, dws, K, U, R, dR, Y, dY, dA,
                      ck, dk, w0, w1, w2, w3, Ed, Gd):  # pragma: no cover
    """Committee part of centre i: Ed[i·K + k] = Σ_f dws[f, k] x[f] (Ed the flat (N, K) array),
    ∂E_k/∂A_v (dA[v·K + k]) from the slots Gs of ∂B/∂A, and the pair gradients Gd[p0 + q, :, k]
    of the K members.

    ``dws`` (n_features, K) holds the deviation weights of the centre's species (K a multiple of
    :data:`BLOCK`). Every loop over members is innermost, over contiguous memory, with unsigned
    flat indices (no negative-index wrap-around check and no sub-array per row, so it compiles
    to vector instructions); per pair and (l, m) the n-sums c_k = Σ_n ∂E_k/∂A_nlm R_n and d_k = Σ_n ∂E_k/∂A_nlm R'_n (ck, dk (K,))
    are formed first and then added to the pair's gradient sums w0, w1, w2 (Σ_lm c_k ∇Y_lm) and
    w3 (Σ_lm d_k Y_lm), separate (K,) arrays."""
    nf = x.shape[0]
    nblock = n_r * nlm
    Ku = np.uint64(K)
    zero = np.uint64(0)
    dwf = dws.reshape(dws.size)  # flat views: index arithmetic instead of a sub-array per row
    Gdf = Gd.reshape(Gd.size)
    oe = np.uint64(i) * Ku
    for k in range(zero, Ku):
        Ed[oe + k] = 0.0
    for f in range(nf):
        b = x[f]
        ow = np.uint64(f) * Ku
        for k in range(zero, Ku):
            Ed[oe + k] += b * dwf[ow + k]
    for j in range(zero, np.uint64(dA.shape[0])):
        dA[j] = 0.0
    for ch in range(n_channels):
        row = ch * nf
        for f in range(nf):
            ow = np.uint64(f) * Ku
            for s in range(cf_ptr[row + f], cf_ptr[row + f + 1]):
                g = Gs[s]
                ov = np.uint64(slot_v[s]) * Ku
                for k in range(zero, Ku):
                    dA[ov + k] += g * dwf[ow + k]
    q = 0
    while q < npi:
        ch = pair_ch[p0 + q]
        qe = _run_end(pair_ch, p0, q, npi)
        base = ch * nblock
        for qq in range(q, qe):
            for k in range(zero, Ku):
                w0[k] = 0.0
                w1[k] = 0.0
                w2[k] = 0.0
                w3[k] = 0.0
            for lm in range(nlm):
                for k in range(zero, Ku):
                    ck[k] = 0.0
                    dk[k] = 0.0
                for n in range(n_r):
                    r = R[n, qq]
                    rp = dR[n, qq]
                    oa = np.uint64(base + n * nlm + lm) * Ku
                    for k in range(zero, Ku):
                        a = dA[oa + k]
                        ck[k] += a * r
                        dk[k] += a * rp
                y0 = dY[0, lm, qq]
                y1 = dY[1, lm, qq]
                y2 = dY[2, lm, qq]
                y = Y[lm, qq]
                for k in range(zero, Ku):
                    c = ck[k]
                    w0[k] += c * y0
                    w1[k] += c * y1
                    w2[k] += c * y2
                    w3[k] += dk[k] * y
            # one output stream per loop: the compiler vectorises loops whose stores cannot overlap
            og = np.uint64(p0 + qq) * np.uint64(3) * Ku
            g0 = Gdf[og:og + Ku]
            g1 = Gdf[og + Ku:og + 2 * Ku]
            g2 = Gdf[og + 2 * Ku:og + 3 * Ku]
            u0 = U[0, qq]
            u1 = U[1, qq]
            u2 = U[2, qq]
            for k in range(zero, Ku):
                g0[k] = w0[k] + w3[k] * u0
            for k in range(zero, Ku):
                g1[k] = w1[k] + w3[k] * u1
            for k in range(zero, Ku):
                g2[k] = w2[k] + w3[k] * u2
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
    Ed = np.empty((N, Kp))  # every entry written by the kernel
    Gd = np.empty((P, 3, Kp))
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


@njit(cache=True, nogil=True)
def _fold_term_sums(t_feat, t_coef, Vs, X):  # pragma: no cover
    """X[s, t_feat[t]] = Σ_c t_coef[t] Vs[c, s, t] (X overwritten)."""
    for s in range(X.shape[0]):
        for f in range(X.shape[1]):
            X[s, f] = 0.0
    T = t_feat.shape[0]
    if T == 0:
        return
    for c in range(Vs.shape[0]):
        for s in range(X.shape[0]):
            # the terms of a feature are contiguous within an order: sum each run in a register
            f = t_feat[0]
            acc = 0.0
            for t in range(T):
                ft = t_feat[t]
                if ft != f:
                    X[s, f] += acc
                    acc = 0.0
                    f = ft
                acc += t_coef[t] * Vs[c, s, t]
            X[s, f] += acc


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def member_energy_deviations(t_feat, t_coef, Vs, centre_ch, dwT, de0T, X, dE):  # pragma: no cover
    """Committee members' total-energy deviations from the term sums of :func:`ace_linear_term_sums`:
    X = Σ_c fold(Vs[c]) (:func:`_fold_term_sums`, overwritten) and
    dE[k] = Σ_s Σ_f dwT[s, f, k] X[s, f] + Σ_i de0T[s_i, k] (eV, overwritten).

    ``dwT`` (n_channels, n_features, K) and ``de0T`` (n_channels, K): the members' weight and E0
    deviations with the member index innermost (one vector operation per feature)."""
    _fold_term_sums(t_feat, t_coef, Vs, X)
    K = dE.shape[0]
    for k in range(K):
        dE[k] = 0.0
    for i in range(centre_ch.shape[0]):
        s_i = centre_ch[i]
        for k in range(K):
            dE[k] += de0T[s_i, k]
    for s in range(X.shape[0]):
        for f in range(X.shape[1]):
            x = X[s, f]
            for k in range(K):
                dE[k] += x * dwT[s, f, k]


def term_sums_to_features(plan: EvaluationPlan, term_sums: np.ndarray) -> np.ndarray:
    """Per-species feature sums from per-species term sums: X[s, f] = Σ_{t: t_feat[t] = f}
    t_coef[t] · term_sums[s, t] (the terms of feature f and their coupling coefficients).

    Parameters
    ----------
    term_sums : (n_channels, T) or (n_chunks, n_channels, T) float64, e.g. the Vs of
        :func:`ace_linear_term_sums` (chunks are summed)

    Returns
    -------
    (n_channels, n_features) float64: Σ_i B_i over the centres i of each species

    Raises
    ------
    ValueError
        ``term_sums`` of another shape.
    """
    term_sums = np.asarray(term_sums, dtype=np.float64)
    T = plan.t_feat.shape[0]
    Vs = term_sums[None] if term_sums.ndim == 2 else term_sums
    if Vs.ndim != 3 or Vs.shape[1:] != (plan.n_channels, T):
        raise ValueError(f"term_sums must have shape ({plan.n_channels}, {T}) or (n_chunks, {plan.n_channels}, {T}), "
                         f"got {term_sums.shape}")
    X = np.empty((plan.n_channels, plan.n_features))
    _fold_term_sums(plan.t_feat, plan.t_coef, np.ascontiguousarray(Vs), X)
    return X
