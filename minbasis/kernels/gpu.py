"""Array-module-generic evaluation of the kernels: the GPU path (CuPy), testable with NumPy.

The rest of the library reaches this module through
:class:`~minbasis.kernels.backend.GpuBackend` (``get_backend("gpu")``), and batches of
structures through the driver loop that every backend shares
(:func:`~minbasis.kernels.driver.describe_structures`); this module evaluates one neighbour
batch at a time.

Every function here takes an array module ``xp`` — :mod:`cupy` on a GPU, :mod:`numpy` for
testing on any machine — and evaluates exactly what the Numba kernels of
:mod:`minbasis.kernels.evaluate` evaluate, from the same :class:`~minbasis.kernels.plan.EvaluationPlan`
and neighbour :class:`~minbasis.kernels.neighbours.Batch` (the neighbour list itself is built on
the host by vesin). The code is written once with vectorised array operations, so that the
NumPy run of the tests exercises the very code that runs on the GPU:

1. **Pair primitives**, for all pairs of a chunk at once: the Chebyshev-exp radial basis with
   its poly3 envelope, R (n_r, P) and dR/dr, and the real spherical harmonics Y (nlm, P) and
   ∂Y/∂r (nlm, 3, P) from the Cartesian recurrences of :mod:`minbasis.kernels.primitives`
   (same conventions: sphericart-style real Y_lm, index l² + l + m), as a Python loop over
   (l, m) of array operations over pairs.
2. **Moments** A (N, n_moments) = Σ_pairs R_n Y_lm: a segment sum over pairs written as a
   sparse (centre·channel × pair) matrix times the dense (pair × n_r·nlm) products
   (scipy.sparse, or cupyx.scipy.sparse, i.e. cuSPARSE SpMM, on a GPU).
3. **Contraction**: factor k of every term is gathered as columns of A (N, T), the factors are
   multiplied, and the products summed into features by a sparse (F × T) matrix holding t_coef.
4. **Gradients by back-propagation**: the partial products Π_{j≠k} A of each factor k
   (prefix/suffix products, exact when a factor is zero) are reduced by sparse matrices into
   ∂B_f/∂A_v on the sparse (v, f) "slots" (for per-pair Jacobians) or, weighted by the
   linear-model weights, into ∂E/∂A_v (for energies and forces: no Jacobian is built). Then, per
   neighbour channel c (the pairs of a chunk are sorted by channel, so that each channel is a
   contiguous range), Z[p, s] = ∂A_{v_s}/∂(r_p)_a · ∂B/∂A[i_p, s] and J[:, a, :] = Z M_c with
   M_c the sparse (slots of c × F) slot → feature map; for the linear model
   ∂E/∂r_p = Σ_{n,lm} ∂E/∂A_{n,lm} (R'_n Y_lm r̂ + R_n ∇Y_lm), factorised over n.

Dense arrays are kept row-major with the atom or pair axis first and handed to the sparse
products as transposed views, which is the column-major layout cuSPARSE works in (no copies on
the GPU; SciPy copies them).

Memory: work is done in chunks of consecutive centre atoms (with their pairs, which are
contiguous in a Batch). Chunks are chosen from a cost model of the temporaries, in array
elements (T terms, W factors per term, S slots, S_c of them in channel c, nb = n_r·nlm):
per atom 3·T + 3·n_moments + 2·F for features; 2·W·T + 3·T + 2·S + 3·n_moments + 2·F with
gradients; 2·W·T + 4·T + 4·n_moments + 3·F for the linear model; per pair 2·n_r + 2·nlm + 2·nb
for the primitives and moments, plus 2·n_r + 6·nlm + 7·nb + 3·max S_c + 8·F with gradients or
2·n_r + 9·nlm + 3·nb for the linear model. The temporaries of one chunk thus stay below
``chunk_bytes`` (tested with NumPy by tracing allocations), unless a single atom needs more, in
which case it is a chunk of its own. The outputs come on top: X (N·F), the per-pair J (P·3·F)
or the per-sample G ((P+N)·3·F) and strain (N·9·F), or E, forces and virials. Default
``chunk_bytes``: 64 MiB with NumPy; with CuPy a quarter of the free device memory, at most 8 GiB.

The host builds the index structure (the plan's sparse matrices once per plan, dtype and array
module; per chunk the pair → (centre, channel) and pair → sample maps) with NumPy/SciPy and
copies it to the device; all floating-point work runs on ``xp``. ``dtype`` may be float64
(default; equal to the Numba kernels to about 1e-14 relative) or float32 (every stage,
accumulations included, in float32: about 1e-6–1e-5 relative to each feature's largest value,
more where an invariant cancels strongly).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sps

from ..errors import MinbasisError
from .batching import sample_keys
from .neighbours import Batch
from .plan import EvaluationPlan

__all__ = ["array_module", "to_numpy", "xp_features", "xp_sample_gradients", "xp_linear_energy_forces"]

_NUMPY_CHUNK_BYTES = 64 * 1024**2
_GPU_CHUNK_BYTES_MAX = 8 * 1024**3


# ---------------------------------------------------------------------------------------------
# array modules
# ---------------------------------------------------------------------------------------------
def array_module(device: str):
    """The array module of a ``device`` name: None for "cpu" (the Numba kernels), :mod:`cupy`
    for "gpu", :mod:`numpy` for the private testing value "numpy-reference" (the GPU code path
    run with NumPy arrays).

    Raises
    ------
    MinbasisError
        Unknown device name; or "gpu" when CuPy cannot be imported (install it with
        ``pip install 'minbasis[gpu]'``, i.e. cupy-cuda12x) or no CUDA device is usable.
    """
    if device == "cpu":
        return None
    if device == "numpy-reference":
        return np
    if device != "gpu":
        raise MinbasisError(f"unknown device {device!r}: use 'cpu' (Numba kernels) or 'gpu' (CuPy)")
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA installation raising at import
        raise MinbasisError("device='gpu' needs CuPy with a CUDA device, but CuPy cannot be imported "
                            f"({type(exc).__name__}: {exc}); install it with pip install 'minbasis[gpu]' "
                            "(cupy-cuda12x), or use device='cpu'") from exc
    try:
        n_devices = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # cupy.cuda.runtime.CUDARuntimeError: no driver, no device
        raise MinbasisError(f"device='gpu': CuPy finds no usable CUDA device ({type(exc).__name__}: {exc}); "
                            "use device='cpu'") from exc
    if n_devices < 1:
        raise MinbasisError("device='gpu': CuPy finds no CUDA device; use device='cpu'")
    return cupy


def to_numpy(a: Any) -> np.ndarray | None:
    """Copy a CuPy array to the host (NumPy arrays and None pass through unchanged)."""
    if a is None or isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return get() if callable(get) else np.asarray(a)


def _default_chunk_bytes(xp) -> int:
    if xp is np:
        return _NUMPY_CHUNK_BYTES
    free, _ = xp.cuda.Device().mem_info
    return int(min(_GPU_CHUNK_BYTES_MAX, max(free // 4, 64 * 1024**2)))


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise MinbasisError(f"dtype must be float32 or float64, got {dt}")
    return dt


# ---------------------------------------------------------------------------------------------
# sparse matrices: built on the host with SciPy, moved to the array module
# ---------------------------------------------------------------------------------------------
class _Sparse:
    """A CSR matrix of the array module and its number of stored entries (SpMM needs nnz > 0)."""

    def __init__(self, xp, rows, cols, data, shape, dtype):
        m = sps.coo_matrix((np.asarray(data, dtype=np.float64), (np.asarray(rows), np.asarray(cols))),
                           shape=shape).tocsr()  # sums duplicate entries
        m.sum_duplicates()
        self.shape = shape
        self.nnz = int(m.nnz)
        data = m.data.astype(dtype)
        if xp is np:
            self.m = sps.csr_matrix((data, m.indices, m.indptr), shape=shape)
        else:
            import cupyx.scipy.sparse as cps

            self.m = cps.csr_matrix((xp.asarray(data), xp.asarray(m.indices.astype(np.int32)),
                                     xp.asarray(m.indptr.astype(np.int32))), shape=shape)

    def dot(self, xp, dense):
        """Sparse (a × b) @ dense (b × k) → dense (a × k).

        cuSPARSE multiplies column-major dense matrices (CuPy converts others by a copy and
        returns column-major results), so callers keep their arrays row-major with the long
        axis first and pass and receive transposed views: no copy on the GPU."""
        if self.nnz == 0:
            return xp.zeros((self.shape[0], dense.shape[1]), dtype=dense.dtype)
        return self.m @ dense


class _DevicePlan:
    """Plan arrays and plan-level sparse matrices on one array module, in one dtype."""

    def __init__(self, plan: EvaluationPlan, xp, dtype):
        self.plan = plan
        self.xp = xp
        self.dtype = dtype
        C, n_r, l_max = plan.n_channels, plan.n_r, plan.l_max
        self.C, self.n_r, self.l_max = C, n_r, l_max
        self.nlm = (l_max + 1) ** 2
        self.nblock = n_r * self.nlm
        self.n_mom = C * self.nblock
        self.F = plan.n_features
        T = len(plan.t_coef)
        W0 = plan.t_idx.shape[1] if plan.t_idx.ndim == 2 else 0
        W = max(W0, 1)  # a plan of constant terms only (W0 = 0) gets one padding factor
        self.T, self.W = T, W
        order = np.asarray(plan.t_order)
        idx = np.full((T, W), -1, dtype=np.int64)
        idx[:, :W0] = np.asarray(plan.t_idx).reshape(T, W0)
        mask = np.arange(W)[None, :] < order[:, None]  # (T, W) factors that exist
        idx1 = np.where(mask, idx, self.n_mom)  # padding → the column of ones appended to A
        self.idx1 = [xp.asarray(np.ascontiguousarray(idx1[:, k])) for k in range(W)]
        tk_t, tk_k = np.nonzero(mask)
        col = tk_k * T + tk_t  # column of factor k of term t in the (W·T, N) partial products
        coef = np.asarray(plan.t_coef, dtype=np.float64)
        # X^T (F, N) = M_feat (F × T) @ products (T, N)
        self.m_feat = _Sparse(xp, plan.t_feat, np.arange(T), coef, (self.F, T), dtype)
        # sparse ∂B_f/∂A_v "slots": one per distinct (v, f), sorted by v (as the Numba kernels;
        # derived here from the term arrays alone)
        F1 = max(self.F, 1)
        slot_keys, t_slot = np.unique(idx[tk_t, tk_k] * F1 + np.asarray(plan.t_feat)[tk_t], return_inverse=True)
        slot_v, slot_f = slot_keys // F1, slot_keys % F1
        self.S = len(slot_keys)
        # ∂B/∂A on slots: Gs^T (S, N) = M_slot (S × W·T) @ partial products (W·T, N)
        self.m_slot = _Sparse(xp, t_slot.ravel(), col, coef[tk_t], (self.S, W * T), dtype)
        # ∂E/∂A: (n_mom, N) = M_mom (n_mom × W·T) @ weighted partial products (W·T, N)
        self.m_mom = _Sparse(xp, idx[tk_t, tk_k], col, np.ones(len(col)), (self.n_mom, W * T), dtype)
        # per neighbour channel: slots [s0, s1), their moment within the channel block, and the
        # slot → feature map M_c (F × S_c)
        v_ptr = np.searchsorted(slot_v, np.arange(self.n_mom + 1))
        self.channels = []
        for c in range(C):
            s0, s1 = int(v_ptr[c * self.nblock]), int(v_ptr[(c + 1) * self.nblock])
            vloc = xp.asarray(slot_v[s0:s1] - c * self.nblock)
            m_c = _Sparse(xp, slot_f[s0:s1], np.arange(s1 - s0), np.ones(s1 - s0),
                          (self.F, s1 - s0), dtype)
            self.channels.append((s0, s1, vloc, m_c))
        self.s_max = max([s1 - s0 for s0, s1, _, _ in self.channels], default=0)

    # element counts of the temporaries (for chunking), per atom and per pair; they include the
    # copies SciPy makes of transposed operands (CuPy's cuSPARSE path copies the others)
    def cost(self, mode: str) -> tuple[float, float]:
        T, W, F, n_mom, nb = self.T, self.W, self.F, self.n_mom, self.nblock
        prim = 2 * self.n_r + 2 * self.nlm + 16 + 2 * nb  # R, Y, recurrence temporaries, R⊗Y (+ copy)
        if mode == "features":
            return 3 * T + 3 * n_mom + 2 * F + 8, prim
        prim += 2 * self.n_r + 6 * self.nlm  # dR, dY and the pair-major copies
        if mode == "gradients":
            per_atom = 2 * W * T + 3 * T + 2 * self.S + 3 * n_mom + 2 * F + 16
            return per_atom, prim + 7 * nb + 3 * self.s_max + 8 * F + 16
        return (2 * W * T + 4 * T + 4 * n_mom + 3 * F + 16,  # linear
                prim + 3 * nb + 3 * self.nlm + 16)


_PLAN_CACHE: list[_DevicePlan] = []


def _device_plan(plan: EvaluationPlan, xp, dtype) -> _DevicePlan:
    for dp in _PLAN_CACHE:
        if dp.plan is plan and dp.xp is xp and dp.dtype == dtype:
            return dp
    dp = _DevicePlan(plan, xp, dtype)
    _PLAN_CACHE.insert(0, dp)
    del _PLAN_CACHE[4:]
    return dp


def _chunks(centre_ptr: np.ndarray, per_atom: float, per_pair: float, budget: float) -> list[tuple[int, int]]:
    """Consecutive centre ranges [i0, i1) whose cost per_atom·atoms + per_pair·pairs ≤ budget
    (a single atom over budget is a chunk of its own)."""
    N = len(centre_ptr) - 1
    cum = per_atom * np.arange(N + 1) + per_pair * np.asarray(centre_ptr, dtype=np.float64)
    out = []
    i0 = 0
    while i0 < N:
        i1 = int(np.searchsorted(cum, cum[i0] + budget, side="right")) - 1
        i1 = min(max(i1, i0 + 1), N)
        out.append((i0, i1))
        i0 = i1
    return out


# ---------------------------------------------------------------------------------------------
# pair primitives
# ---------------------------------------------------------------------------------------------
def _radial(xp, r, r_cut, scale, n_r, grad):
    """R (n_r, P) and dR/dr (n_r, P) in 1/Å (or None) of the chebyshev_exp basis with the poly3
    envelope, for distances r (P,) in Å; see :func:`minbasis.kernels.primitives.pair_radial`."""
    u = r / r_cut
    if abs(scale) > 1e-8:
        den = math.exp(scale) - 1.0
        e = xp.exp(-scale * (u - 1.0))
        x = 1.0 - 2.0 * (e - 1.0) / den
        dx = (2.0 * scale / (r_cut * den)) * e
    else:
        x = 2.0 * u - 1.0
        dx = 2.0 / r_cut
    inside = u < 1.0
    w = 1.0 - u * u
    zero = xp.zeros_like(r)
    fc = xp.where(inside, w * w * w, zero)
    R = xp.empty((n_r,) + r.shape, dtype=r.dtype)
    dR = xp.empty_like(R) if grad else None
    if grad:
        dfc = xp.where(inside, (-6.0 / r_cut) * (w * w * u), zero)
        dxfc = dx * fc
    # Chebyshev T_n(x) and dT_n/dx by their three-term recurrences
    t_prev, t = xp.ones_like(r), x
    dt_prev, dt = zero, xp.ones_like(r)
    for n in range(n_r):
        if n == 0:
            tn, dtn = t_prev, dt_prev
        elif n == 1:
            tn, dtn = t, dt
        else:
            tn = 2.0 * x * t - t_prev
            t_prev, t = t, tn
            if grad:
                dtn = 2.0 * t_prev + 2.0 * x * dt - dt_prev
                dt_prev, dt = dt, dtn
        R[n] = tn * fc
        if grad:
            dR[n] = dtn * dxfc + tn * dfc
    return R, dR


def _spherical_harmonics(xp, x, y, z, inv_r, l_max, Fn, grad):
    """Real Y_lm (nlm, P) of the unit vectors (x, y, z) and ∂Y_lm/∂r (nlm, 3, P) in 1/Å (or None).

    The recurrences of :func:`minbasis.kernels.primitives.pair_harmonics`, over m outer and
    l inner, keeping two previous Q_l^m; ``Fn`` is the (l_max+1, l_max+1) normalisation."""
    P = x.shape[0]
    dtype = x.dtype
    nlm = (l_max + 1) ** 2
    Y = xp.empty((nlm, P), dtype=dtype)
    dY = xp.empty((nlm, 3, P), dtype=dtype) if grad else None
    u = (x, y, z)
    ones = xp.ones(P, dtype=dtype)
    zeros = xp.zeros(P, dtype=dtype)
    c, s = ones, zeros  # c_m + i s_m = (x + i y)^m
    qmm = 1.0
    for m in range(l_max + 1):
        if m > 0:
            qmm = -(2 * m - 1) * qmm
            c_prev, s_prev = c, s
            c = x * c_prev - y * s_prev
            s = x * s_prev + y * c_prev
            dc = (m * c_prev, -m * s_prev)
            ds = (m * s_prev, m * c_prev)
        # l = m: Q constant, dQ = 0
        q_2, q_1 = None, qmm * ones
        dq_2, dq_1 = None, (zeros, zeros, zeros)
        for l in range(m, l_max + 1):
            if l == m + 1:
                q = (2 * m + 1) * qmm * z
                dq = (zeros, zeros, (2 * m + 1) * qmm * ones)
            elif l >= m + 2:
                a1 = (2 * l - 1) / (l - m)
                a2 = (l + m - 1) / (l - m)
                q = a1 * z * q_1 - a2 * q_2
                if grad:
                    dq = tuple(a1 * z * dq_1[a] - a2 * (2.0 * u[a] * q_2 + dq_2[a]) for a in range(3))
                    dq = (dq[0], dq[1], dq[2] + a1 * q_1)
            else:
                q, dq = q_1, dq_1
            if l > m:
                q_2, q_1 = q_1, q
                dq_2, dq_1 = dq_1, (dq if grad else None)
            f = float(Fn[l, m])
            k = l * l + l
            if m == 0:
                v = f * q
                Y[k] = v
                if grad:
                    for a in range(3):
                        dY[k, a] = (f * dq[a] - l * v * u[a]) * inv_r
                continue
            fq = f * q
            vp = fq * c
            vm = fq * s
            Y[k + m] = vp
            Y[k - m] = vm
            if grad:
                for a in range(3):
                    gp = f * dq[a] * c
                    gm = f * dq[a] * s
                    if a < 2:
                        gp = gp + fq * dc[a]
                        gm = gm + fq * ds[a]
                    dY[k + m, a] = (gp - l * vp * u[a]) * inv_r
                    dY[k - m, a] = (gm - l * vm * u[a]) * inv_r
    return Y, dY


class _Chunk:
    """Pairs of the centres [i0, i1) sorted by neighbour channel, with their primitives.

    Layouts: R, Y component-major (n_r, P), (nlm, P) for the moments; with gradients also
    pair-major copies RT (P, n_r), dRT (P, n_r), YT (P, nlm), dYT (P, 3, nlm), uT (P, 3)."""

    def __init__(self, dp: _DevicePlan, batch: Batch, i0: int, i1: int, grad: bool):
        xp, dtype = dp.xp, dp.dtype
        self.i0, self.i1, self.n = i0, i1, i1 - i0
        self.p0, self.p1 = int(batch.centre_ptr[i0]), int(batch.centre_ptr[i1])
        ch = batch.pair_ch[self.p0:self.p1]
        if dp.C > 1:
            self.order = np.argsort(ch, kind="stable")  # chunk pair q ↔ batch pair p0 + order[q]
            ch = ch[self.order]
        else:
            self.order = None
        self.P = len(ch)
        self.ch_ptr = np.searchsorted(ch, np.arange(dp.C + 1))  # channel c: chunk pairs [ch_ptr[c], ch_ptr[c+1])
        self.iloc = self.host(batch.pair_i) - i0  # centre of each chunk pair, chunk-local
        self.iloc_dev = xp.asarray(self.iloc)
        self.vec_host = self.host(batch.pair_vec)
        if self.P == 0:
            return
        vec = xp.asarray(self.vec_host, dtype=dtype)
        x, y, z = vec[:, 0], vec[:, 1], vec[:, 2]
        r = xp.sqrt(x * x + y * y + z * z)
        inv_r = 1.0 / r
        ux, uy, uz = x * inv_r, y * inv_r, z * inv_r
        plan = dp.plan
        self.R, dR = _radial(xp, r, plan.r_cut, plan.scale, dp.n_r, grad)
        self.Y, dY = _spherical_harmonics(xp, ux, uy, uz, inv_r, dp.l_max, plan.sph_norm, grad)
        if grad:
            self.RT = xp.ascontiguousarray(self.R.T)
            self.dRT = xp.ascontiguousarray(dR.T)
            self.YT = xp.ascontiguousarray(self.Y.T)
            self.dYT = xp.ascontiguousarray(dY.transpose(2, 1, 0))
            self.uT = xp.stack([ux, uy, uz], axis=1)

    def host(self, a: np.ndarray) -> np.ndarray:
        """The chunk's slice of a per-pair host array, in chunk (channel-sorted) order."""
        a = a[self.p0:self.p1]
        return a if self.order is None else a[self.order]

    def moments(self, dp: _DevicePlan, batch: Batch):
        """A with a column of ones appended: (n, n_moments + 1) for the chunk's centres."""
        xp = dp.xp
        A1 = xp.empty((self.n, dp.n_mom + 1), dtype=dp.dtype)
        A1[:, dp.n_mom] = 1.0
        if self.P == 0:
            A1[:, :dp.n_mom] = 0.0
            return A1
        RY = (self.R[:, None, :] * self.Y[None, :, :]).reshape(dp.nblock, self.P)  # (n_r·nlm, P)
        rows = self.iloc * dp.C + self.host(batch.pair_ch)
        seg = _Sparse(xp, rows, np.arange(self.P), np.ones(self.P), (self.n * dp.C, self.P), dp.dtype)
        A1[:, :dp.n_mom] = seg.dot(xp, RY.T).reshape(self.n, dp.n_mom)
        return A1

    def channel_ranges(self, dp: _DevicePlan):
        """(c, q0, q1) for each neighbour channel c with chunk pairs [q0, q1)."""
        for c in range(dp.C):
            q0, q1 = int(self.ch_ptr[c]), int(self.ch_ptr[c + 1])
            if q1 > q0:
                yield c, q0, q1

    def dA(self, dp: _DevicePlan, q0: int, q1: int):
        """∂A_{n,lm}/∂(r_p)_a = R'_n Y_lm (r̂_p)_a + R_n ∂_a Y_lm for chunk pairs [q0, q1): (Pc, 3, n_r·nlm)."""
        RT, dRT, YT, dYT, uT = self.RT[q0:q1], self.dRT[q0:q1], self.YT[q0:q1], self.dYT[q0:q1], self.uT[q0:q1]
        dRY = dRT[:, :, None] * YT[:, None, :]  # (Pc, n_r, nlm)
        out = dRY[:, None, :, :] * uT[:, :, None, None] + RT[:, None, :, None] * dYT[:, :, None, :]
        return out.reshape(q1 - q0, 3, dp.nblock)


def _contract(dp: _DevicePlan, A1, partials: bool):
    """Term products (n, T) and, if ``partials``, the partial products (n, W, T):
    parts[:, k, t] = Π_{j≠k} A[t_idx[t, j]] by prefix and suffix products."""
    xp = dp.xp
    n = A1.shape[0]
    W, T = dp.W, dp.T

    def fac(k):  # factor k of every term, (n, T); gathered again when needed, not stored
        return xp.take(A1, dp.idx1[k], axis=1)

    prod = fac(0)
    if not partials:
        for k in range(1, W):
            prod *= fac(k)
        return prod, None
    parts = xp.empty((n, W, T), dtype=dp.dtype)
    parts[:, 0] = 1.0
    for k in range(1, W):  # prefix products
        xp.multiply(parts[:, k - 1], prod if k == 1 else fac(k - 1), out=parts[:, k])
    prod = parts[:, W - 1] * (prod if W == 1 else fac(W - 1))
    if W > 1:
        suf = fac(W - 1)
        for k in range(W - 2, -1, -1):  # times suffix products
            parts[:, k] *= suf
            if k > 0:
                suf *= fac(k)
    return prod, parts


def _prepare(plan, batch, xp, dtype, chunk_bytes, mode):
    if not isinstance(plan, EvaluationPlan):
        raise TypeError(f"plan must be an EvaluationPlan, got {type(plan).__name__}")
    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be a Batch, got {type(batch).__name__}")
    dt = _check_dtype(dtype)
    dp = _device_plan(plan, xp, dt)
    budget = (chunk_bytes if chunk_bytes is not None else _default_chunk_bytes(xp)) / dt.itemsize
    if budget <= 0:
        raise MinbasisError(f"chunk_bytes must be positive, got {chunk_bytes}")
    per_atom, per_pair = dp.cost(mode)
    return dp, _chunks(batch.centre_ptr, per_atom, per_pair, budget)


def _features_and_pair_jacobian(dp, batch, chunks, want_grad, sink):
    """Evaluate features (and Jacobian rows) chunk by chunk; ``sink(chunk, X, J)`` receives the
    features X (n, F) and, with ``want_grad``, the per-pair J (P_chunk, 3, F) in chunk order."""
    xp = dp.xp
    for i0, i1 in chunks:
        ck = _Chunk(dp, batch, i0, i1, want_grad)
        A1 = ck.moments(dp, batch)
        prod, parts = _contract(dp, A1, want_grad)
        del A1
        X = dp.m_feat.dot(xp, prod.T).T
        del prod
        J = None
        if want_grad:
            J = xp.zeros((ck.P, 3, dp.F), dtype=dp.dtype)
            if ck.P:
                Gs = dp.m_slot.dot(xp, parts.reshape(ck.n, dp.W * dp.T).T).T  # (n, S): ∂B/∂A on slots
                del parts
                for c, q0, q1 in ck.channel_ranges(dp):
                    s0, s1, vloc, m_c = dp.channels[c]
                    g = Gs[:, s0:s1][ck.iloc_dev[q0:q1]]  # (Pc, S_c)
                    dA = ck.dA(dp, q0, q1)
                    for a in range(3):
                        Z = xp.take(dA[:, a, :], vloc, axis=1)
                        Z *= g
                        J[q0:q1, a, :] = m_c.dot(xp, Z.T).T
                        del Z
                    del g, dA
        sink(ck, X, J)


def xp_features(plan: EvaluationPlan, batch: Batch, xp, dtype=np.float64, gradients: bool = False,
                chunk_bytes: int | None = None):
    """Per-atom invariants and, optionally, their per-pair gradients, with array module ``xp``.

    Equal to :func:`minbasis.kernels.evaluate.features` (to about 1e-13 relative in float64).

    Parameters
    ----------
    plan : EvaluationPlan
    batch : Batch
        Host (NumPy) neighbour batch from :func:`~minbasis.kernels.neighbours.build_batch`.
    xp : module
        :mod:`cupy` (GPU) or :mod:`numpy`.
    dtype : float64 or float32
        Precision of every stage, accumulations included.
    gradients : bool
        Also return the per-pair Jacobian.
    chunk_bytes : int, optional
        Bound on the temporaries of one chunk of centres (module docstring); default 64 MiB
        with NumPy, a quarter of the free device memory (≤ 8 GiB) with CuPy.

    Returns
    -------
    X : xp array, ``dtype``, shape (N, n_features)
    J : xp array, ``dtype``, shape (P, 3, n_features), J[p, a, f] = ∂B_{i,f}/∂(r_ij)_a in 1/Å
        for pair p = (i, j) of the batch (batch pair order), or None without ``gradients``.

    Raises
    ------
    MinbasisError
        ``dtype`` other than float32/float64, or a non-positive ``chunk_bytes``.
    TypeError
        ``plan`` or ``batch`` of the wrong type.
    """
    dp, chunks = _prepare(plan, batch, xp, dtype, chunk_bytes, "gradients" if gradients else "features")
    X = xp.empty((batch.n_atoms, dp.F), dtype=dp.dtype)
    J_all = xp.empty((len(batch.pair_i), 3, dp.F), dtype=dp.dtype) if gradients else None

    def sink(ck, Xc, J):
        X[ck.i0:ck.i1] = Xc
        if gradients and ck.P:
            if ck.order is None:
                J_all[ck.p0:ck.p1] = J
            else:
                J_all[xp.asarray(ck.p0 + ck.order)] = J

    _features_and_pair_jacobian(dp, batch, chunks, gradients, sink)
    return X, J_all


def xp_sample_gradients(plan: EvaluationPlan, batch: Batch, xp, dtype=np.float64, strain: bool = False,
                        chunk_bytes: int | None = None, out: tuple | None = None):
    """Features with gradients per (centre i, atom k) sample, with array module ``xp``.

    Equal to :func:`minbasis.kernels.evaluate.sample_gradients`. The per-pair Jacobian of one
    chunk of centres is reduced into its samples (a sparse sample × pair matrix with +1 for
    ∂/∂r_j and −1 for ∂/∂r_i) before the next chunk, so the full per-pair Jacobian is never held.

    Parameters
    ----------
    plan, batch, xp, dtype, chunk_bytes
        As in :func:`xp_features`.
    strain : bool
        Also return the strain gradients.
    out : (X, G, S), optional
        ``xp`` arrays of ``dtype`` with the shapes below (S None without ``strain``) to write into,
        for example slices of a larger result (every element is overwritten); by default they are
        allocated.

    Returns
    -------
    X : xp array, ``dtype``, shape (N, F) features
    samples : xp array, int64, shape (G, 2): rows [i, k] (batch-local atom indices), sorted;
        every i has a row k = i
    grads : xp array, ``dtype``, shape (G, 3, F): ∂B_{i,f}/∂r_{k,a} in 1/Å
    strain : xp array, ``dtype``, shape (N, 3, 3, F): ∂B_{i,f}/∂ε_ab = Σ_j (r_ij)_a ∂B_{i,f}/∂(r_ij)_b
        (unit-less), or None without ``strain``

    Raises
    ------
    MinbasisError, TypeError
        As :func:`xp_features`.
    ValueError
        ``out`` arrays of the wrong shapes, or without a strain array when ``strain`` is True.
    """
    dp, chunks = _prepare(plan, batch, xp, dtype, chunk_bytes, "gradients")
    N = batch.n_atoms
    P = len(batch.pair_i)
    uniq, inv = sample_keys(batch)
    pair_sample, self_sample = inv[:P], inv[P:]
    sample_ptr = np.searchsorted(uniq // N, np.arange(N + 1))  # samples of centre i: [ptr[i], ptr[i+1])
    F = dp.F
    if out is None:
        X = xp.empty((N, F), dtype=dp.dtype)
        G = xp.empty((len(uniq), 3, F), dtype=dp.dtype)
        S = xp.empty((N, 3, 3, F), dtype=dp.dtype) if strain else None
    else:
        X, G, S = out
        if strain and S is None:
            raise ValueError("out must hold a strain array when strain=True")
        S = S if strain else None
        if X.shape != (N, F) or G.shape != (len(uniq), 3, F) or (strain and S.shape != (N, 3, 3, F)):
            raise ValueError("out arrays have the wrong shapes for this batch")

    def sink(ck, Xc, J):
        X[ck.i0:ck.i1] = Xc
        g0, g1 = int(sample_ptr[ck.i0]), int(sample_ptr[ck.i1])
        if ck.P == 0:
            G[g0:g1] = 0.0
            if strain:
                S[ck.i0:ck.i1] = 0.0
            return
        q = np.arange(ck.P)
        rows = np.concatenate([ck.host(pair_sample), self_sample[ck.i0 + ck.iloc]]) - g0
        red = _Sparse(xp, rows, np.concatenate([q, q]), np.repeat([1.0, -1.0], ck.P), (g1 - g0, ck.P), dp.dtype)
        Jf = J.reshape(ck.P, 3 * F)
        G[g0:g1] = red.dot(xp, Jf).reshape(g1 - g0, 3, F)
        if strain:
            rows = (ck.iloc[:, None] * 3 + np.arange(3)[None, :]).ravel()
            st = _Sparse(xp, rows, np.repeat(q, 3), ck.vec_host.ravel(), (ck.n * 3, ck.P), dp.dtype)
            S[ck.i0:ck.i1] = st.dot(xp, Jf).reshape(ck.n, 3, 3, F)

    _features_and_pair_jacobian(dp, batch, chunks, True, sink)
    samples = np.stack([uniq // N, uniq % N], axis=1).astype(np.int64)
    return X, xp.asarray(samples), G, S


def xp_linear_energy_forces(plan: EvaluationPlan, batch: Batch, weights, e0, xp, dtype=np.float64,
                            chunk_bytes: int | None = None):
    """Energy, forces and virial of a linear model E = Σ_i e0[s_i] + weights[s_i] · B_i, with ``xp``.

    Equal to :func:`minbasis.kernels.evaluate.linear_energy_forces`. ∂E_i/∂A is back-propagated
    through the contraction (partial products weighted by weights[s_i, f]·t_coef, reduced by a
    sparse moment × term matrix), then contracted per pair with ∂A/∂r_ij factorised over n:
    Σ_{n,lm} ∂E/∂A_{n,lm} (R'_n Y_lm r̂ + R_n ∇Y_lm); no descriptor Jacobian is built.

    Parameters
    ----------
    plan, batch, xp, dtype, chunk_bytes
        As in :func:`xp_features`.
    weights : array (n_channels, n_features), eV per unit feature (NumPy or ``xp``).
    e0 : array (n_channels,), eV.

    Returns
    -------
    energies : xp array, ``dtype``, (N,) per-atom energies, eV
    forces : xp array, ``dtype``, (N, 3), eV/Å, F = −∂E/∂r
    virial : xp array, ``dtype``, (M, 3, 3), eV, W = −Σ_p r_p ⊗ ∂E/∂r_p (docs/theory/conventions.md)

    Raises
    ------
    MinbasisError
        ``weights`` not (n_channels, n_features) or ``e0`` not (n_channels,); as :func:`xp_features`.
    """
    dp, chunks = _prepare(plan, batch, xp, dtype, chunk_bytes, "linear")
    weights = to_numpy(weights)
    e0 = to_numpy(e0)
    weights = np.asarray(weights, dtype=np.float64)
    e0 = np.asarray(e0, dtype=np.float64)
    if weights.shape != (dp.C, dp.F) or e0.shape != (dp.C,):
        raise MinbasisError(f"weights must be ({dp.C}, {dp.F}) and e0 ({dp.C},), got {weights.shape} and {e0.shape}")
    N, P = batch.n_atoms, len(batch.pair_i)
    # w_t per centre channel: weights[s, t_feat[t]] · t_coef[t], (C, T)
    wtc = xp.asarray(weights[:, plan.t_feat] * np.asarray(plan.t_coef)[None, :], dtype=dp.dtype)
    w_dev = xp.asarray(weights, dtype=dp.dtype)
    e0_dev = xp.asarray(e0, dtype=dp.dtype)
    centre_ch = xp.asarray(batch.centre_ch)
    E = xp.empty(N, dtype=dp.dtype)
    Gp = xp.zeros((P, 3), dtype=dp.dtype)  # ∂E_i/∂r_ij per pair, batch order
    for i0, i1 in chunks:
        ck = _Chunk(dp, batch, i0, i1, True)
        A1 = ck.moments(dp, batch)
        prod, parts = _contract(dp, A1, True)
        del A1
        ch = centre_ch[i0:i1]
        # E_i = e0 + Σ_f w[s_i, f] B_{i,f}: summed along the contiguous feature axis (pairwise
        # summation in NumPy, a tree reduction in CuPy), which keeps float32 accurate
        X = xp.ascontiguousarray(dp.m_feat.dot(xp, prod.T).T)  # (n, F)
        del prod
        E[i0:i1] = e0_dev[ch] + (X * w_dev[ch]).sum(axis=1)
        del X
        if ck.P == 0:
            continue
        parts *= wtc[ch][:, None, :]  # weights[s_i, t_feat]·t_coef
        dEdA = dp.m_mom.dot(xp, parts.reshape(ck.n, dp.W * dp.T).T).T  # (n, n_mom)
        del parts
        g = xp.empty((ck.P, 3), dtype=dp.dtype)
        for c, q0, q1 in ck.channel_ranges(dp):
            D = dEdA[:, c * dp.nblock:(c + 1) * dp.nblock][ck.iloc_dev[q0:q1]].reshape(q1 - q0, dp.n_r, dp.nlm)
            sy = (D * ck.YT[q0:q1, None, :]).sum(axis=2)  # (Pc, n_r): Σ_lm ∂E/∂A Y
            radial = (ck.dRT[q0:q1] * sy).sum(axis=1)  # Σ_n R'_n Σ_lm ∂E/∂A Y
            RD = (ck.RT[q0:q1, :, None] * D).sum(axis=1)  # (Pc, nlm)
            del D, sy
            for a in range(3):
                g[q0:q1, a] = (RD * ck.dYT[q0:q1, a, :]).sum(axis=1) + radial * ck.uT[q0:q1, a]
        if ck.order is None:
            Gp[ck.p0:ck.p1] = g
        else:
            Gp[xp.asarray(ck.p0 + ck.order)] = g
    # forces F_i += G_p, F_j −= G_p; virial W_s −= r_p ⊗ G_p
    cols = np.arange(P)
    scat = _Sparse(xp, np.concatenate([batch.pair_i, batch.pair_j]), np.concatenate([cols, cols]),
                   np.repeat([1.0, -1.0], P), (N, P), dp.dtype)
    forces = scat.dot(xp, Gp)
    vec = xp.asarray(batch.pair_vec, dtype=dp.dtype)
    outer = -(vec[:, :, None] * Gp[:, None, :]).reshape(P, 9)
    per_struct = _Sparse(xp, batch.pair_struct, cols, np.ones(P), (batch.n_structures, P), dp.dtype)
    virial = per_struct.dot(xp, outer).reshape(batch.n_structures, 3, 3)
    return E, forces, virial
