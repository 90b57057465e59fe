"""Numba kernels for ACE moments, invariants and their gradients (CPU, float64).

The kernels evaluate any polynomial invariant of the moments given as term arrays: ACE
couplings (:mod:`minbasis.invariants.ace`) and Cartesian tensor contractions
(:mod:`minbasis.invariants.cartesian`, whose moment tensors are fixed linear maps of the
spherical moments) share every stage — neighbour list, radial basis, moments, contraction,
gradients.

All kernels work on a *batch*: the centre atoms of many structures, with their neighbour
pairs stored contiguously per centre (CSR: pairs ``centre_ptr[i]:centre_ptr[i+1]`` belong to
centre i). Pair vectors are r_ij = r_j − r_i + S_ij·cell in Å. Moments are laid out flat as
v = (z · n_r + n) · (l_max+1)² + l² + l + m.

The evaluation plan (term arrays) comes from :mod:`minbasis.kernels.plan`:
``t_order`` (T,) number of factors of term t (terms sorted by it), ``t_idx`` (T, W) moment
indices (padded with −1 to the largest number of factors W, 4 for ACE ν ≤ 4), ``t_coef`` (T,),
``t_feat`` (T,) feature index, ``t_slot`` (T, W) index of the sparse ∂B_f/∂A_v entry ("slot")
each factor contributes to, ``slot_v`` (S,) the moment of each slot, and ``cf_ptr``
(n_channels·F + 1,) the CSR offsets of the slots of feature f among the moments of channel c
(slots sorted by channel, feature, moment).

Gradients follow docs/theory/conventions.md: the kernels return ∂/∂r_ij per pair; callers scatter
∂/∂r_j += ∂/∂r_ij and ∂/∂r_i −= ∂/∂r_ij.

Every per-centre kernel here, in :mod:`minbasis.kernels.committee` and in
:mod:`minbasis.kernels.autodiff` starts from the same set-up (:func:`_kernel_sizes`: sizes and
chunks of centres; :func:`_workspace`: per-chunk pair work arrays; :func:`_centre_moments`), and
the kernels that back-propagate a weighted contraction (the linear model, its committee, the
vector–Jacobian product) share its per-centre step, :func:`_linear_centre` with
:func:`_linear_workspace`. The Python entry points are :mod:`minbasis.kernels.evaluate`, reached
through :class:`~minbasis.kernels.backend.CpuBackend`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .primitives import FASTMATH, pair_geometry, pair_harmonics, pair_radial

__all__ = ["ace_features", "ace_linear", "scatter_pair_gradients", "scatter_design", "n_chunks_for"]


def n_chunks_for(n_atoms: int) -> int:
    """Atom chunks of a kernel call: 8 per Numba thread (load balance), at most one per atom.

    Called before every parallel kernel launch; raises MinbasisError in a child process forked after
    GNU OpenMP ran in its parent (:mod:`minbasis._threading`), where the launch would kill the process."""
    import numba

    from .._threading import check_fork_safe

    check_fork_safe()

    return max(1, min(int(n_atoms), 8 * numba.get_num_threads()))


@njit(cache=True, nogil=True)
def _max_pairs(centre_ptr):  # pragma: no cover
    m = 0
    for i in range(centre_ptr.shape[0] - 1):
        m = max(m, centre_ptr[i + 1] - centre_ptr[i])
    return m


@njit(cache=True, nogil=True, inline="always")
def _run_end(pair_ch, p0, q, npi):  # pragma: no cover
    """End (exclusive) of the run of pairs p0 + q, p0 + q + 1, … with the neighbour channel of pair p0 + q."""
    qe = q + 1
    while qe < npi and pair_ch[p0 + qe] == pair_ch[p0 + q]:
        qe += 1
    return qe


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _centre_moments(pair_vec, pair_ch, p0, npi, r_cut, scale, n_r, l_max, sph_norm, sph_rec, U, R, dR, W, Q, dQ, CS, Y, dY, A,
                    want_grad):  # pragma: no cover
    """Pair primitives of the npi pairs p0.. of one centre (U, R, dR, Y and, if ``want_grad``, dY;
    layouts of :mod:`minbasis.kernels.primitives`) and its moments A (zeroed here) =
    Σ_pairs R_n Y_lm, summed over each run of pairs with the same neighbour channel (pairs
    are sorted by channel within a centre by :func:`~minbasis.kernels.neighbours.build_batch`;
    unsorted pairs give the same result in shorter runs)."""
    nlm = (l_max + 1) * (l_max + 1)
    nblock = n_r * nlm
    pair_geometry(pair_vec, p0, npi, U)
    pair_radial(U, npi, r_cut, scale, n_r, R, dR, W)
    pair_harmonics(U, npi, l_max, sph_norm, sph_rec, Q, dQ, CS, Y, dY, want_grad)
    for v in range(A.shape[0]):
        A[v] = 0.0
    q = 0
    while q < npi:
        ch = pair_ch[p0 + q]
        qe = _run_end(pair_ch, p0, q, npi)
        base = ch * nblock
        ka, kb = np.uint64(q), np.uint64(qe)  # unsigned: no negative-index wrap-around, so the loops vectorise
        for n in range(n_r):
            for lm in range(nlm):
                acc = 0.0
                for k in range(ka, kb):
                    acc += R[n, k] * Y[lm, k]
                A[base + n * nlm + lm] += acc
        q = qe


@njit(cache=True, nogil=True)
def _workspace(mp, n_r, l_max):  # pragma: no cover
    """Per-chunk work arrays of :func:`_centre_moments` for at most mp pairs per centre."""
    nlm = (l_max + 1) * (l_max + 1)
    m = max(mp, 1)
    return (np.empty((5, m)), np.empty((n_r, m)), np.empty((n_r, m)), np.empty((4, m)),
            np.empty((l_max + 1, l_max + 1, m)), np.empty((l_max + 1, l_max + 1, m)), np.empty((2, l_max + 1, m)),
            np.empty((nlm, m)), np.empty((3, nlm, m)))


@njit(cache=True, nogil=True)
def _kernel_sizes(centre_ptr, n_channels, n_r, l_max, n_chunks):  # pragma: no cover
    """The set-up every per-centre kernel shares: (N centres, nlm = (l_max+1)², nblock = n_r·nlm moments
    per channel, n_mom moments, mp the largest number of pairs of a centre, nc chunks of centres).

    Chunk c of a kernel's ``prange`` handles the centres ``c·N // nc ≤ i < (c+1)·N // nc``."""
    N = centre_ptr.shape[0] - 1
    nlm = (l_max + 1) * (l_max + 1)
    nblock = n_r * nlm
    return N, nlm, nblock, n_channels * nblock, _max_pairs(centre_ptr), max(1, min(N, n_chunks))


@njit(cache=True, nogil=True)
def _linear_workspace(mp, n_r, l_max, n_mom, width):  # pragma: no cover
    """Per-chunk work arrays of :func:`_linear_centre`: (A, dEdA, U, R, dR, W, Q, dQ, CS, Y, dY, part, cl, dl) —
    moments and ∂E/∂A (n_mom,), the pair primitives of :func:`_workspace`, the partial products of
    one term (width,) and the n-contracted c_lm, d_lm (nlm, max(mp, 1)) of :func:`_backprop_pairs`."""
    nlm = (l_max + 1) * (l_max + 1)
    U, R, dR, W, Q, dQ, CS, Y, dY = _workspace(mp, n_r, l_max)
    return (np.empty(n_mom), np.empty(n_mom), U, R, dR, W, Q, dQ, CS, Y, dY, np.empty(width),
            np.empty((nlm, max(mp, 1))), np.empty((nlm, max(mp, 1))))


@njit(cache=True, nogil=True)
def _linear_centre(i, centre_ptr, pair_vec, pair_ch, r_cut, scale, n_r, l_max, sph_norm, sph_rec, packed, t_order, t_idx,
                   o_ptr, t_pack, w, ws, G, V):  # pragma: no cover
    """e = Σ_t w[t] Π_k A[t_idx[t, k]] of centre i and its pair gradients G[p] = ∂e/∂r_p (pairs of i overwritten).

    The moments A of the centre (with their gradients), ∂e/∂A back-propagated through the
    contraction (:func:`_contract_packed` when ``packed``, else :func:`_contract_backprop`) and
    then over the pairs (:func:`_backprop_pairs`): the linear model's per-centre step, shared by
    :func:`ace_linear`, the committee (:mod:`minbasis.kernels.committee`) and the vector–Jacobian
    product (:mod:`minbasis.kernels.autodiff`). ``ws`` is :func:`_linear_workspace`; on return its
    A, U, R, dR, Y, dY hold the centre's moments and pair primitives. ``V`` (T,) or empty: when
    not empty, V[t] += Π_k A[t_idx[t, k]] (the term values, accumulated for feature sums)."""
    A, dEdA, U, R, dR, W, Q, dQ, CS, Y, dY, part, cl, dl = ws
    p0 = centre_ptr[i]
    npi = centre_ptr[i + 1] - p0
    nlm = (l_max + 1) * (l_max + 1)
    _centre_moments(pair_vec, pair_ch, p0, npi, r_cut, scale, n_r, l_max, sph_norm, sph_rec, U, R, dR, W, Q, dQ, CS, Y, dY,
                    A, True)
    for v in range(dEdA.shape[0]):
        dEdA[v] = 0.0
    if packed:
        e = _contract_packed(o_ptr, t_pack, w, A, dEdA, V)
    else:
        e = _contract_backprop(t_order.shape[0], t_order, t_idx, t_idx, w, A, dEdA, part)
        if V.shape[0] > 0:
            for t in range(t_order.shape[0]):
                val = 1.0
                for k in range(t_order[t]):
                    val *= A[t_idx[t, k]]
                V[t] += val
    _backprop_pairs(pair_ch, p0, npi, n_r, nlm, dEdA, U, R, dR, Y, dY, cl, dl, W, G)
    return e


@njit(cache=True, nogil=True, inline="always")
def _term_partials(t, o, t_idx, A, part):  # pragma: no cover
    """Product Π_k A[t_idx[t, k]] of term t (o factors); part[k] = Π_{j≠k} A[t_idx[t, j]]
    by prefix/suffix products (O(o), no division, exact when a factor is zero)."""
    pre = 1.0
    for k in range(o):
        part[k] = pre
        pre *= A[t_idx[t, k]]
    suf = 1.0
    for k in range(o - 1, -1, -1):
        part[k] *= suf
        suf *= A[t_idx[t, k]]
    return pre


@njit(cache=True, nogil=True)
def _contract_values(T, t_order, t_idx, o_ptr, t_pack, packed, t_coef, t_feat, A, X, i):  # pragma: no cover
    """X[i, t_feat[t]] += t_coef[t] Π_k A[t_idx[t, k]] for all terms.

    With ``packed`` the indices come from ``t_pack`` (four 16-bit indices per term, terms sorted
    by order, ``o_ptr`` the order blocks): one load per term; otherwise from ``t_idx``. The terms
    of a feature are contiguous within an order, so each feature is summed in registers (two
    alternating accumulators, which halves the add-latency chain) and stored once."""
    if T == 0:
        return
    m = np.int64(0xFFFF)
    f = t_feat[0]
    acc0 = 0.0
    acc1 = 0.0
    for t in range(T):
        if packed:
            pk = t_pack[t]
            val = A[pk & m]
            if t >= o_ptr[2]:
                val *= A[(pk >> 16) & m]
                if t >= o_ptr[3]:
                    val *= A[(pk >> 32) & m]
                    if t >= o_ptr[4]:
                        val *= A[(pk >> 48) & m]
        else:
            val = 1.0
            for k in range(t_order[t]):
                val *= A[t_idx[t, k]]
        ft = t_feat[t]
        if ft != f:
            X[i, f] += acc0 + acc1
            acc0 = 0.0
            acc1 = 0.0
            f = ft
        if t & 1:
            acc1 += t_coef[t] * val
        else:
            acc0 += t_coef[t] * val
    X[i, f] += acc0 + acc1


@njit(cache=True, nogil=True)
def _contract_backprop(T, t_order, t_idx, t_out, wt, A, dA, part):  # pragma: no cover
    """e = Σ_t wt[t] Π_k A[t_idx[t, k]] and its partial products: dA[t_out[t, k]] += ∂(term t)/∂A_{t_idx[t, k]}
    (dA accumulates; unrolled for 1–4 factors, prefix/suffix products otherwise). With
    t_out = t_idx, dA is ∂e/∂A; with t_out = t_slot, the sparse ∂B_f/∂A_v slots. Returns e."""
    e = 0.0
    e1 = 0.0  # a second accumulator for odd terms: halves the add-latency chain
    for t in range(T):
        w = wt[t]
        o = t_order[t]
        if o == 3:
            a0, a1, a2 = A[t_idx[t, 0]], A[t_idx[t, 1]], A[t_idx[t, 2]]
            w01 = w * a0 * a1
            if t & 1:
                e1 += w01 * a2
            else:
                e += w01 * a2
            dA[t_out[t, 0]] += w * a1 * a2
            dA[t_out[t, 1]] += w * a0 * a2
            dA[t_out[t, 2]] += w01
        elif o == 2:
            a0, a1 = A[t_idx[t, 0]], A[t_idx[t, 1]]
            if t & 1:
                e1 += w * a0 * a1
            else:
                e += w * a0 * a1
            dA[t_out[t, 0]] += w * a1
            dA[t_out[t, 1]] += w * a0
        elif o == 4:
            a0, a1, a2, a3 = A[t_idx[t, 0]], A[t_idx[t, 1]], A[t_idx[t, 2]], A[t_idx[t, 3]]
            w01 = w * a0 * a1
            w23 = w * a2 * a3
            if t & 1:
                e1 += w01 * a2 * a3
            else:
                e += w01 * a2 * a3
            dA[t_out[t, 0]] += w23 * a1
            dA[t_out[t, 1]] += w23 * a0
            dA[t_out[t, 2]] += w01 * a3
            dA[t_out[t, 3]] += w01 * a2
        elif o == 1:
            e += w * A[t_idx[t, 0]]
            dA[t_out[t, 0]] += w
        else:
            e += w * _term_partials(t, o, t_idx, A, part)
            for k in range(o):
                dA[t_out[t, k]] += w * part[k]
    return e + e1


@njit(cache=True, nogil=True)
def _contract_packed(o_ptr, t_pack, wt, A, dA, V):  # pragma: no cover
    """e = Σ_t wt[t] Π_k A[i_k] and dA[i_k] += ∂e/∂A_{i_k}, for plans whose terms have ≤ 4 factors
    with indices packed 16 bits each into ``t_pack`` and sorted by order (``o_ptr``): one
    load per term for its indices and no branch — the linear model's fastest contraction
    (:func:`_contract_backprop` is the general form). When ``V`` (T,) is not empty, also
    V[t] += Π_k A[i_k], the term values (two more operations per term, for feature sums)."""
    m = np.int64(0xFFFF)
    sums = V.shape[0] > 0
    e0 = 0.0
    e1 = 0.0
    for t in range(o_ptr[1], o_ptr[2]):
        i0 = t_pack[t] & m
        e0 += wt[t] * A[i0]
        dA[i0] += wt[t]
        if sums:
            V[t] += A[i0]
    for t in range(o_ptr[2], o_ptr[3]):
        pk = t_pack[t]
        i0 = pk & m
        i1 = (pk >> 16) & m
        w = wt[t]
        a0 = A[i0]
        a1 = A[i1]
        v = a0 * a1
        if t & 1:
            e1 += w * v
        else:
            e0 += w * v
        dA[i0] += w * a1
        dA[i1] += w * a0
        if sums:
            V[t] += v
    for t in range(o_ptr[3], o_ptr[4]):
        pk = t_pack[t]
        i0 = pk & m
        i1 = (pk >> 16) & m
        i2 = (pk >> 32) & m
        w = wt[t]
        a0 = A[i0]
        a1 = A[i1]
        a2 = A[i2]
        w01 = w * a0 * a1
        if t & 1:
            e1 += w01 * a2
        else:
            e0 += w01 * a2
        dA[i0] += w * a1 * a2
        dA[i1] += w * a0 * a2
        dA[i2] += w01
        if sums:
            V[t] += a0 * a1 * a2
    for t in range(o_ptr[4], o_ptr[5]):
        pk = t_pack[t]
        i0 = pk & m
        i1 = (pk >> 16) & m
        i2 = (pk >> 32) & m
        i3 = (pk >> 48) & m
        w = wt[t]
        a0 = A[i0]
        a1 = A[i1]
        a2 = A[i2]
        a3 = A[i3]
        w01 = w * a0 * a1
        w23 = w * a2 * a3
        if t & 1:
            e1 += w01 * a2 * a3
        else:
            e0 += w01 * a2 * a3
        dA[i0] += w23 * a1
        dA[i1] += w23 * a0
        dA[i2] += w01 * a3
        dA[i3] += w01 * a2
        if sums:
            V[t] += a0 * a1 * a2 * a3
    return e0 + e1


@njit(cache=True, parallel=True)
def ace_features(centre_ptr, pair_vec, pair_ch, n_channels, r_cut, scale, n_r, l_max, sph_norm, sph_rec,
                 t_order, t_idx, o_ptr, t_pack, t_coef, t_feat, t_slot, slot_v, cf_ptr, want_grad,
                 pair_sample, self_sample, want_strain, n_chunks, X, G, S):  # pragma: no cover
    """Features X (N, n_features) and, if ``want_grad``, their gradients (outputs must be zero).

    With g_p[a, f] = ∂B_{i,f}/∂(r_ij)_a for pair p = (i, j):
    G[pair_sample[p]] += g_p (derivative with respect to r_j) and, when self_sample[i] ≥ 0,
    G[self_sample[i]] −= g_p (with respect to r_i); with ``want_strain``
    S[i, a, b, f] += (r_ij)_a g_p[b, f]. Every sample belongs to one centre, and each centre is
    handled by one thread, so the writes never race. ``pair_sample = arange(P)`` and
    ``self_sample = −1`` give the raw per-pair gradients. Without ``want_grad`` the spherical
    harmonics are evaluated without their gradients. Atoms are processed in ``n_chunks``
    contiguous chunks (a few per thread, see :func:`n_chunks_for`), each allocating its
    workspace once.
    """
    N, nlm, nblock, n_mom, mp, nc = _kernel_sizes(centre_ptr, n_channels, n_r, l_max, n_chunks)
    T = t_coef.shape[0]
    n_slots = slot_v.shape[0]
    packed = t_pack.shape[0] == T and T > 0
    for c in prange(nc):
        A = np.empty(n_mom)
        U, R, dR, W, Q, dQ, CS, Y, dY = _workspace(mp, n_r, l_max)
        Gs = np.empty(n_slots)
        part = np.empty(t_idx.shape[1])
        D = np.empty((nblock, 3, max(mp, 1)))
        acc = np.empty((3, max(mp, 1)))
        for i in range(c * N // nc, (c + 1) * N // nc):
            p0 = centre_ptr[i]
            npi = centre_ptr[i + 1] - p0
            _centre_moments(pair_vec, pair_ch, p0, npi, r_cut, scale, n_r, l_max, sph_norm, sph_rec, U, R, dR, W, Q, dQ, CS, Y, dY,
                            A, want_grad)
            _contract_values(T, t_order, t_idx, o_ptr, t_pack, packed, t_coef, t_feat, A, X, i)
            if not want_grad:
                continue
            # ∂B_f/∂A_v on the (v, f) slots
            for s in range(n_slots):
                Gs[s] = 0.0
            _contract_backprop(T, t_order, t_idx, t_slot, t_coef, A, Gs, part)
            _scatter_jacobian(i, p0, npi, n_r, nlm, pair_vec, pair_ch, pair_sample, self_sample[i], want_strain,
                              slot_v, cf_ptr, Gs, U, R, dR, Y, dY, D, acc, G, S)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _scatter_jacobian(i, p0, npi, n_r, nlm, pair_vec, pair_ch, pair_sample, gs, want_strain, slot_v, cf_ptr, Gs,
                      U, R, dR, Y, dY, D, acc, G, S):  # pragma: no cover
    """Jacobian of the features of centre i with respect to its pairs, scattered into samples.

    D[v, a, q] = ∂A_v/∂(r_q)_a for all pairs q of a run of equal neighbour channel; then, per
    feature f, g[a, q] = ∂B_{i,f}/∂(r_q)_a = Σ_{slots of f} Gs D[v, a, q] — one sparse row per
    feature, vectorised over the pairs of the run — added to G[pair_sample], subtracted from
    the self sample G[gs] (if gs ≥ 0) and, with ``want_strain``, S[i, a, b, f] += Σ_q r_qa g[b, q].
    Work arrays D (n_r·nlm, 3, ≥ npi), acc (3, ≥ npi)."""
    nblock = n_r * nlm
    nf = G.shape[2]
    q = 0
    while q < npi:
        c = pair_ch[p0 + q]
        qe = _run_end(pair_ch, p0, q, npi)
        ka, kb = np.uint64(q), np.uint64(qe)  # unsigned: no negative-index wrap-around, so the loops vectorise
        for n in range(n_r):
            off = n * nlm
            for lm in range(nlm):
                for k in range(ka, kb):
                    ry = dR[n, k] * Y[lm, k]
                    rn = R[n, k]
                    D[off + lm, 0, k] = ry * U[0, k] + rn * dY[0, lm, k]
                    D[off + lm, 1, k] = ry * U[1, k] + rn * dY[1, lm, k]
                    D[off + lm, 2, k] = ry * U[2, k] + rn * dY[2, lm, k]
        base = c * nblock
        row = c * nf
        for f in range(nf):
            for k in range(ka, kb):
                acc[0, k] = 0.0
                acc[1, k] = 0.0
                acc[2, k] = 0.0
            for s in range(cf_ptr[row + f], cf_ptr[row + f + 1]):
                g = Gs[s]
                vl = np.uint64(slot_v[s] - base)
                for k in range(ka, kb):
                    acc[0, k] += g * D[vl, 0, k]
                    acc[1, k] += g * D[vl, 1, k]
                    acc[2, k] += g * D[vl, 2, k]
            for k in range(q, qe):
                gp = pair_sample[p0 + k]
                G[gp, 0, f] += acc[0, k]
                G[gp, 1, f] += acc[1, k]
                G[gp, 2, f] += acc[2, k]
            if gs >= 0:
                t0 = 0.0
                t1 = 0.0
                t2 = 0.0
                for k in range(ka, kb):
                    t0 += acc[0, k]
                    t1 += acc[1, k]
                    t2 += acc[2, k]
                G[gs, 0, f] -= t0
                G[gs, 1, f] -= t1
                G[gs, 2, f] -= t2
            if want_strain:
                for a in range(3):
                    for bb in range(3):
                        t = 0.0
                        for k in range(ka, kb):
                            t += pair_vec[p0 + np.int64(k), a] * acc[bb, k]
                        S[i, a, bb, f] += t
        q = qe


@njit(cache=True, parallel=True)
def ace_linear(centre_ptr, centre_ch, pair_vec, pair_ch, n_channels, r_cut, scale, n_r, l_max, sph_norm, sph_rec,
               t_order, t_idx, o_ptr, t_pack, wt, e0, n_chunks, E, G):  # pragma: no cover
    """Linear model E_i = e0[s_i] + Σ_f weights[s_i, f] B_{i,f} and its pair gradients.

    ``wt`` (n_channels, T) = weights[:, t_feat] · t_coef: the model folded into the terms;
    ``o_ptr``, ``t_pack``: the packed form of the plan (:func:`_contract_packed`; empty
    ``t_pack`` selects the general contraction).

    Back-propagates ∂E_i/∂A through the contraction (no Jacobian of B is built), then
    G[p] = ∂E_i/∂r_ij (eV/Å) for each pair p = (i, j), contracted over n first:
    c_lm = Σ_n ∂E/∂A_nlm R_n, d_lm = Σ_n ∂E/∂A_nlm R'_n, G = Σ_lm c_lm ∇Y_lm + r̂ Σ_lm d_lm Y_lm.
    E (N,) and G (P, 3) are overwritten.
    """
    N, nlm, nblock, n_mom, mp, nc = _kernel_sizes(centre_ptr, n_channels, n_r, l_max, n_chunks)
    packed = t_pack.shape[0] == t_order.shape[0] and t_order.shape[0] > 0
    no_sums = np.empty(0)
    for c in prange(nc):
        ws = _linear_workspace(mp, n_r, l_max, n_mom, t_idx.shape[1])
        for i in range(c * N // nc, (c + 1) * N // nc):
            s_i = centre_ch[i]
            E[i] = e0[s_i] + _linear_centre(i, centre_ptr, pair_vec, pair_ch, r_cut, scale, n_r, l_max, sph_norm, sph_rec,
                                            packed, t_order, t_idx, o_ptr, t_pack, wt[s_i], ws, G, no_sums)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _backprop_pairs(pair_ch, p0, npi, n_r, nlm, dEdA, U, R, dR, Y, dY, cl, dl, W, G):  # pragma: no cover
    """G[p0 + q] = Σ_v ∂E/∂A_v ∂A_v/∂r_q for the pairs of one centre, per run of equal neighbour
    channel, contracted over n first (c_lm = Σ_n ∂E/∂A_nlm R_n, d_lm = Σ_n ∂E/∂A_nlm R'_n;
    G = Σ_lm c_lm ∇Y_lm + r̂ Σ_lm d_lm Y_lm), all loops over pairs innermost."""
    nblock = n_r * nlm
    q = 0
    while q < npi:
        ch = pair_ch[p0 + q]
        qe = _run_end(pair_ch, p0, q, npi)
        base = ch * nblock
        ka, kb = np.uint64(q), np.uint64(qe)  # unsigned: no negative-index wrap-around, so the loops vectorise
        for lm in range(nlm):
            for k in range(ka, kb):
                cl[lm, k] = 0.0
                dl[lm, k] = 0.0
        for n in range(n_r):
            off = base + n * nlm
            for lm in range(nlm):
                de = dEdA[off + lm]
                for k in range(ka, kb):
                    cl[lm, k] += de * R[n, k]
                    dl[lm, k] += de * dR[n, k]
        for k in range(ka, kb):
            W[0, k] = 0.0
            W[1, k] = 0.0
            W[2, k] = 0.0
            W[3, k] = 0.0
        for lm in range(nlm):
            for k in range(ka, kb):
                W[0, k] += cl[lm, k] * dY[0, lm, k]
                W[1, k] += cl[lm, k] * dY[1, lm, k]
                W[2, k] += cl[lm, k] * dY[2, lm, k]
                W[3, k] += dl[lm, k] * Y[lm, k]
        for k in range(q, qe):
            G[p0 + k, 0] = W[0, k] + W[3, k] * U[0, k]
            G[p0 + k, 1] = W[1, k] + W[3, k] * U[1, k]
            G[p0 + k, 2] = W[2, k] + W[3, k] * U[2, k]
        q = qe


@njit(cache=True)
def scatter_pair_gradients(pair_i, pair_j, pair_vec, pair_struct, G, forces, virial):  # pragma: no cover
    """Forces F_j −= G_p, F_i += G_p (eV/Å) and virial W −= r_p ⊗ G_p (eV) per structure."""
    for p in range(pair_i.shape[0]):
        i = pair_i[p]
        j = pair_j[p]
        s = pair_struct[p]
        for a in range(3):
            forces[j, a] -= G[p, a]
            forces[i, a] += G[p, a]
            for b in range(3):
                virial[s, a, b] -= pair_vec[p, a] * G[p, b]


@njit(cache=True)
def scatter_design(pair_i, pair_j, pair_vec, pair_struct, centre_ch, J, n_features, DF, DS):  # pragma: no cover
    """Accumulate linear-model design rows from per-pair gradients J (P, 3, F).

    DF (N, 3, n_channels·F): force rows, DF[k, a, s·F + f] = −∂(Σ_{i: s_i = s} B_{i,f})/∂r_{k,a}.
    DS (n_structures, 3, 3, n_channels·F): V·σ rows, Σ_p r_{p,a} ∂B/∂r_{p,b} (eV for unit weights).
    """
    for p in range(pair_i.shape[0]):
        i = pair_i[p]
        j = pair_j[p]
        s = pair_struct[p]
        c0 = centre_ch[i] * n_features
        for a in range(3):
            ra = pair_vec[p, a]
            for f in range(n_features):
                g = J[p, a, f]
                DF[j, a, c0 + f] -= g
                DF[i, a, c0 + f] += g
            for b in range(3):
                for f in range(n_features):
                    DS[s, a, b, c0 + f] += ra * J[p, b, f]

