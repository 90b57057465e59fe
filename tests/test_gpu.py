"""The array-module evaluation path (:mod:`minbasis.kernels.gpu`) against the Numba kernels.

The same code runs with NumPy here (``xp=numpy``, or the private ``device="numpy-reference"``)
and with CuPy on a machine with a CUDA device; the CuPy cases skip cleanly without one.
Structures: a rattled ethanol molecule and a rattled periodic Cu/Ni/Al fcc cell; bases: a ν ≤ 3
ACE basis, a ν ≤ 4 ACE basis and Cartesian moment-tensor bases, all small.
"""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

import minbasis as mb
from minbasis.errors import MinbasisError
from minbasis.fit import LinearModel
from minbasis.kernels import build_batch, describe_structures, features, get_backend, gpu, linear_energy_forces
from minbasis.kernels.evaluate import sample_gradients
from _helpers import rattled_ethanol

RTOL = {np.float64: 1e-10, np.float32: 1e-5}


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
def _cupy_or_skip():
    cp = pytest.importorskip("cupy")
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver / no device
        pytest.skip(f"CuPy finds no CUDA device ({type(exc).__name__}: {exc})")
    if n < 1:
        pytest.skip("CuPy finds no CUDA device")
    return cp


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    return np if request.param == "numpy" else _cupy_or_skip()


def _alloy() -> Atoms:
    """Rattled 32-atom fcc cell of Cu, Ni and Al (periodic, 42 neighbours within 4.5 Å)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.numbers = np.random.default_rng(1).choice([29, 28, 13], size=len(atoms))
    atoms.rattle(0.05, seed=2)
    return atoms


def _copper() -> Atoms:
    """Rattled 32-atom fcc Cu cell: one species (no channel sorting) and a linear radial map."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=3)
    return atoms


_BASES = {
    "ace-cu-linear-map": lambda: mb.Basis.ace(["Cu"], 4.5, [3, 2, 2], [0, 2, 2], 3, radial_scale=0.0),
    "ace3": lambda: mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2, 2], [0, 2, 2], 3),
    "ace4": lambda: mb.Basis.ace(["Cu", "Ni", "Al"], 4.5, [3, 2, 2, 1], [0, 3, 2, 1], 4),
    "cart-mol": lambda: mb.Basis.cartesian(["H", "C", "O"], 4.0, 2, 2, 3),
    "cart-cell": lambda: mb.Basis.cartesian(["Cu", "Ni", "Al"], 4.5, 2, 3, 3),
}
CASES = {"ethanol-ace": (rattled_ethanol, "ace3"), "ethanol-cartesian": (rattled_ethanol, "cart-mol"),
         "alloy-ace": (_alloy, "ace4"), "alloy-cartesian": (_alloy, "cart-cell"),
         "copper-ace": (_copper, "ace-cu-linear-map")}
_CACHE: dict = {}


def _basis(name):
    if name not in _CACHE:
        _CACHE[name] = _BASES[name]()
    return _CACHE[name]


@pytest.fixture(params=list(CASES), scope="module")
def case(request):
    """(plan, batch, Numba reference results, weights, e0) of one structure × basis."""
    make_atoms, basis_name = CASES[request.param]
    plan = _basis(basis_name).plan
    batch = build_batch([make_atoms()], plan.species, plan.numbers, plan.r_cut)
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(plan.n_channels, plan.n_features))
    e0 = rng.normal(size=plan.n_channels)
    X, J = features(plan, batch, gradients=True)
    _, samples, G, S = sample_gradients(plan, batch, strain=True)
    ref = {"X": X, "J": J, "samples": samples, "G": G, "S": S,
           "EFV": linear_energy_forces(plan, batch, weights, e0)}
    return plan, batch, ref, weights, e0


def assert_close(a, ref, rtol, what):
    """|a − ref| ≤ rtol · scale, with scale the largest |ref| of each feature (last axis) when
    ``ref`` has a feature axis, else the largest |ref| overall."""
    a = gpu.to_numpy(a)
    assert a.shape == ref.shape, what
    if ref.size == 0:
        return
    top = np.abs(ref).max()
    scale = np.abs(ref).reshape(-1, ref.shape[-1]).max(axis=0) if ref.ndim > 1 else top
    err = np.abs(a.astype(np.float64) - ref) / np.maximum(scale, 1e-12 * top)
    assert err.max() <= rtol, f"{what}: max relative deviation {err.max():.3e} > {rtol:g}"


# ---------------------------------------------------------------------------------------------
# (a), (b): the array path equals the Numba kernels, with NumPy and (where present) CuPy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_features_and_pair_gradients(case, xp, dtype):
    plan, batch, ref, _, _ = case
    X, J = gpu.xp_features(plan, batch, xp, dtype)
    assert J is None and X.dtype == dtype
    assert_close(X, ref["X"], RTOL[dtype], "features")
    X, J = gpu.xp_features(plan, batch, xp, dtype, gradients=True)
    assert J.dtype == dtype
    assert_close(X, ref["X"], RTOL[dtype], "features (with gradients)")
    assert_close(J, ref["J"], RTOL[dtype], "per-pair gradients")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_sample_and_strain_gradients(case, xp, dtype):
    plan, batch, ref, _, _ = case
    X, samples, G, S = gpu.xp_sample_gradients(plan, batch, xp, dtype, strain=True)
    np.testing.assert_array_equal(gpu.to_numpy(samples), ref["samples"])
    assert_close(X, ref["X"], RTOL[dtype], "features")
    assert_close(G, ref["G"], RTOL[dtype], "sample gradients")
    assert_close(S, ref["S"], RTOL[dtype], "strain gradients")
    _, _, G2, S2 = gpu.xp_sample_gradients(plan, batch, xp, dtype)
    assert S2 is None
    assert_close(G2, ref["G"], RTOL[dtype], "sample gradients without strain")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_linear_energy_forces_virial(case, xp, dtype):
    plan, batch, ref, weights, e0 = case
    E, F, W = gpu.xp_linear_energy_forces(plan, batch, weights, e0, xp, dtype)
    assert E.dtype == F.dtype == W.dtype == dtype
    for got, want, what in zip((E, F, W), ref["EFV"], ("energies", "forces", "virial")):
        assert_close(got.reshape(-1), want.reshape(-1), RTOL[dtype], what)


def test_chunking_does_not_change_results(case):
    """Tiny chunks (down to one centre per chunk) give the results of a single chunk."""
    plan, batch, ref, weights, e0 = case
    X, J = gpu.xp_features(plan, batch, np, gradients=True, chunk_bytes=1)
    assert_close(X, ref["X"], 1e-10, "features, 1 atom per chunk")
    assert_close(J, ref["J"], 1e-10, "gradients, 1 atom per chunk")
    _, _, G, S = gpu.xp_sample_gradients(plan, batch, np, strain=True, chunk_bytes=200_000)
    assert_close(G, ref["G"], 1e-10, "sample gradients, small chunks")
    assert_close(S, ref["S"], 1e-10, "strain gradients, small chunks")
    E, F, W = gpu.xp_linear_energy_forces(plan, batch, weights, e0, np, chunk_bytes=200_000)
    for got, want, what in zip((E, F, W), ref["EFV"], ("energies", "forces", "virial")):
        assert_close(got.reshape(-1), want.reshape(-1), 1e-10, what)


def test_isolated_atoms_and_several_structures():
    """Atoms without neighbours (chunks without pairs) and batches of several structures."""
    basis = _basis("ace3")
    plan = basis.plan
    lone = Atoms("H", positions=[[0.0, 0.0, 0.0]])
    pair = Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 1.2]])
    atoms = [rattled_ethanol(), lone, pair, lone.copy()]
    batch = build_batch(atoms, plan.species, plan.numbers, plan.r_cut)
    X, J = features(plan, batch, gradients=True)
    _, samples, G, S = sample_gradients(plan, batch, strain=True)
    w = np.random.default_rng(0).normal(size=(plan.n_channels, plan.n_features))
    e0 = np.array([0.1, -0.2, 0.3])
    EFV = linear_energy_forces(plan, batch, w, e0)
    for cb in (1, None):
        X2, J2 = gpu.xp_features(plan, batch, np, gradients=True, chunk_bytes=cb)
        assert_close(X2, X, 1e-10, "features")
        assert_close(J2, J, 1e-10, "pair gradients")
        _, s2, G2, S2 = gpu.xp_sample_gradients(plan, batch, np, strain=True, chunk_bytes=cb)
        np.testing.assert_array_equal(s2, samples)
        assert_close(G2, G, 1e-10, "sample gradients")
        assert_close(S2, S, 1e-10, "strain gradients")
        for got, want in zip(gpu.xp_linear_energy_forces(plan, batch, w, e0, np, chunk_bytes=cb), EFV):
            assert_close(got.reshape(-1), want.reshape(-1), 1e-10, "linear model")


def test_memory_of_a_chunk_stays_within_chunk_bytes():
    """The temporaries (traced peak minus the outputs) stay below ``chunk_bytes``."""
    plan = _basis("ace4").plan
    cell = _alloy().repeat((2, 1, 1))
    batch = build_batch([cell], plan.species, plan.numbers, plan.r_cut)
    N, P, F = batch.n_atoms, len(batch.pair_i), plan.n_features
    w = np.ones((plan.n_channels, F))
    chunk = 4 * 1024**2
    gpu.xp_features(plan, batch, np, chunk_bytes=chunk)  # plan-level arrays built outside the trace
    runs = [(lambda: gpu.xp_features(plan, batch, np, chunk_bytes=chunk), N * F),
            (lambda: gpu.xp_features(plan, batch, np, gradients=True, chunk_bytes=chunk), N * F + P * 3 * F),
            (lambda: gpu.xp_sample_gradients(plan, batch, np, strain=True, chunk_bytes=chunk),
             N * F + (P + N) * 3 * F + N * 9 * F),
            (lambda: gpu.xp_linear_energy_forces(plan, batch, w, np.zeros(3), np, chunk_bytes=chunk), 0)]
    for run, out_elements in runs:
        tracemalloc.start()
        try:
            result = run()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del result
        assert peak - 8 * out_elements <= chunk, f"temporaries {(peak - 8 * out_elements) / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# plumbing: describe(device=...), LinearModel.predict(device=...), errors
# ---------------------------------------------------------------------------------------------
def _describe_device(xp):
    return "numpy-reference" if xp is np else "gpu"


def test_describe_on_device_equals_cpu(xp):
    basis = _basis("ace3")
    mols = [rattled_ethanol(), molecule("H2O"), rattled_ethanol().copy()]
    mols[2].rattle(0.03, seed=5)
    dev = _describe_device(xp)
    assert_close(mb.describe(mols, basis, device=dev), mb.describe(mols, basis), 1e-10, "describe")
    ref = mb.describe(mols, basis, gradients=True, strain_gradients=True)
    got = mb.describe(mols, basis, gradients=True, strain_gradients=True, device=dev)
    assert isinstance(got.features, xp.ndarray)
    assert_close(got.features, ref.features, 1e-10, "features")
    np.testing.assert_array_equal(gpu.to_numpy(got.gradient_samples), ref.gradient_samples)
    assert_close(got.position_gradients, ref.position_gradients, 1e-10, "position gradients")
    assert_close(got.strain_gradients, ref.strain_gradients, 1e-10, "strain gradients")
    np.testing.assert_array_equal(gpu.to_numpy(got.atom_ptr), ref.atom_ptr)
    got32 = mb.describe(mols, basis, device=dev, dtype="float32")
    assert got32.dtype == np.float32
    assert_close(got32, ref.features, 1e-5, "float32 describe")
    with pytest.raises(MinbasisError, match="float64 only"):
        mb.describe(mols, basis, dtype="float32")
    with pytest.raises(MinbasisError, match="dtype must be"):
        mb.describe(mols, basis, dtype="float16")
    # several neighbour batches (a tiny batch budget) concatenate like the CPU path: the one driver loop
    backend = get_backend(dev)
    small = describe_structures(mols, basis.plan, backend, gradients=True, batch_bytes=1)
    assert_close(small.position_gradients, ref.position_gradients, 1e-10, "position gradients, 1 structure per batch")
    np.testing.assert_array_equal(gpu.to_numpy(small.gradient_samples), ref.gradient_samples)
    assert small.strain_gradients is None
    X32 = describe_structures(mols, basis.plan, backend, dtype=np.float32, progress=True)
    assert X32.dtype == np.float32
    assert_close(X32, ref.features, 1e-5, "float32 features")


def test_predict_on_device_equals_cpu(xp):
    basis = _basis("ace4")
    rng = np.random.default_rng(4)
    model = LinearModel(basis, weights=rng.normal(size=(3, basis.n_features)), e0=rng.normal(size=3))
    cells = [_alloy(), _alloy()]
    cells[1].rattle(0.02, seed=9)
    ref = model.predict(cells)
    got = model.predict(cells, device=_describe_device(xp))
    assert_close(got.energy, ref.energy, 1e-10, "energy")
    assert_close(got.stress, ref.stress, 1e-10, "stress")
    for a, b in zip(got.forces, ref.forces):
        assert isinstance(a, np.ndarray)
        assert_close(a.reshape(-1), b.reshape(-1), 1e-10, "forces")


def test_gpu_without_cupy_raises_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    basis = _basis("ace3")
    with pytest.raises(MinbasisError, match="CuPy"):
        mb.describe(rattled_ethanol(), basis, device="gpu")
    model = LinearModel(basis, weights=np.zeros((3, basis.n_features)), e0=np.zeros(3))
    with pytest.raises(MinbasisError, match="CuPy"):
        model.predict(rattled_ethanol(), device="gpu")


def test_gpu_without_cuda_device_raises_clear_error(monkeypatch):
    class _Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    class _NoDevice:
        class cuda:
            runtime = _Runtime

    monkeypatch.setitem(sys.modules, "cupy", _NoDevice)
    with pytest.raises(MinbasisError, match="no usable CUDA device"):
        mb.describe(rattled_ethanol(), _basis("ace3"), device="gpu")

    class _ZeroDevices:
        class cuda:
            class runtime:
                @staticmethod
                def getDeviceCount():
                    return 0

    monkeypatch.setitem(sys.modules, "cupy", _ZeroDevices)
    with pytest.raises(MinbasisError, match="no CUDA device"):
        gpu.array_module("gpu")


def test_bad_arguments():
    basis = _basis("ace3")
    plan = basis.plan
    batch = build_batch([rattled_ethanol()], plan.species, plan.numbers, plan.r_cut)
    with pytest.raises(MinbasisError, match="unknown device"):
        mb.describe(rattled_ethanol(), basis, device="tpu")
    assert gpu.array_module("cpu") is None and gpu.array_module("numpy-reference") is np
    with pytest.raises(MinbasisError, match="dtype"):
        gpu.xp_features(plan, batch, np, np.float16)
    with pytest.raises(MinbasisError, match="chunk_bytes"):
        gpu.xp_features(plan, batch, np, chunk_bytes=0)
    with pytest.raises(MinbasisError, match="weights"):
        gpu.xp_linear_energy_forces(plan, batch, np.zeros((2, plan.n_features)), np.zeros(3), np)
    with pytest.raises(TypeError):
        gpu.xp_features(basis, batch, np)
    with pytest.raises(TypeError):
        gpu.xp_features(plan, [rattled_ethanol()], np)


def test_helpers():
    """An empty sparse matrix multiplies to zeros; to_numpy copies device arrays via .get()."""
    empty = gpu._Sparse(np, [], [], [], (3, 4), np.float32)
    out = empty.dot(np, np.ones((4, 2), dtype=np.float32))
    assert out.shape == (3, 2) and out.dtype == np.float32 and not out.any()

    class _DeviceArray:
        def get(self):
            return np.arange(3)

    np.testing.assert_array_equal(gpu.to_numpy(_DeviceArray()), np.arange(3))
    assert gpu.to_numpy(None) is None
    np.testing.assert_array_equal(gpu.to_numpy([1, 2]), [1, 2])
