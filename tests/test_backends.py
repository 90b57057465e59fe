"""Every kernel backend (:mod:`minbasis.kernels.backend`) passes the same checks.

Each test runs once per entry of :data:`BACKENDS`: the Numba kernels ("cpu"), the array-module
GPU code run with NumPy ("numpy-reference", so that the GPU code path is checked on any
machine) and CuPy on a CUDA device ("gpu", skipped without CuPy or a device, as hippynn does).
The checks, on a rattled ethanol molecule and a rattled periodic three-species fcc cell with
small ACE bases (ν ≤ 3 and ν ≤ 4):

* features equal a reference computed here from the plan's term arrays and the per-pair
  radial and angular primitives (moments summed in Python, products of moments per term);
* position gradients (per pair and per sample) and strain gradients against central finite
  differences of the features;
* the linear model: energies equal e0 + weights · features, forces and virials equal the
  features' gradients contracted with the weights, and the virial equals −∂E/∂ε by finite
  differences of a strained cell;
* invariance of the features under a random rotation;
* the one driver loop gives the same result in one batch and in one batch per structure;
* the optional operations (committee, autodiff products) agree with the features' Jacobian
  where the backend has them, and raise ``MinbasisError`` where it does not.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from scipy.spatial.transform import Rotation

import minbasis as mb
from minbasis.errors import MinbasisError
from minbasis.kernels import build_batch, describe_structures, get_backend
from minbasis.kernels.backend import CpuBackend, GpuBackend, KernelBackend
from minbasis.kernels.primitives import harmonics_values, radial_values
from _helpers import rattled_ethanol, strained


def _gpu_usable() -> bool:
    """CuPy imports and sees at least one CUDA device."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # noqa: BLE001 - no driver, no device, broken installation
        return False


#: The backends every test runs on (device names of :func:`minbasis.kernels.get_backend`).
BACKENDS = [
    pytest.param("cpu", id="cpu"),
    pytest.param("numpy-reference", id="numpy-reference"),
    pytest.param("gpu", id="gpu", marks=pytest.mark.skipif(not _gpu_usable(), reason="needs CuPy and a CUDA device")),
]

#: Backends with the committee and the autodiff operators.
FULL = {"cpu"}


@pytest.fixture(params=BACKENDS)
def backend(request) -> KernelBackend:
    b = get_backend(request.param)
    b.require()
    return b


def _alloy() -> Atoms:
    """Rattled, sheared 32-atom fcc cell of Cu, Ni and Al (periodic, triclinic)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.numbers = np.random.default_rng(1).choice([29, 28, 13], size=len(atoms))
    atoms.set_cell(atoms.cell.array + [[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, -0.2, 0.0]], scale_atoms=True)
    atoms.rattle(0.05, seed=2)
    return atoms


_BASES: dict = {}


def _basis(name: str) -> mb.Basis:
    if name not in _BASES:
        _BASES[name] = (mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2, 2], [0, 2, 2], 3) if name == "hco"
                        else mb.Basis.ace(["Cu", "Ni", "Al"], 4.5, [3, 2, 2, 1], [0, 3, 2, 1], 4))
    return _BASES[name]


#: structure, basis, atoms whose positions the finite-difference tests displace
CASES = {"ethanol": (rattled_ethanol, "hco", None), "alloy": (_alloy, "alloy", [0, 7, 20])}


@pytest.fixture(params=list(CASES))
def case(request):
    make, basis_name, fd_atoms = CASES[request.param]
    atoms = make()
    return atoms, _basis(basis_name), (range(len(atoms)) if fd_atoms is None else fd_atoms)


def _batch(atoms, basis):
    plan = basis.plan
    return build_batch(atoms if isinstance(atoms, list) else [atoms], plan.species, plan.numbers, plan.r_cut)


def _features(backend, atoms, basis, **kw):
    return backend.to_numpy(backend.features(basis.plan, _batch(atoms, basis), **kw)[0])


def assert_close(got, want, rtol, what):
    """|got − want| ≤ rtol · (largest |want| of each feature, or overall for arrays without one)."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    top = np.abs(want).max()
    scale = np.abs(want).reshape(-1, want.shape[-1]).max(axis=0) if want.ndim > 1 else top
    err = np.abs(got - want) / np.maximum(scale, 1e-12 * top)
    assert err.max() <= rtol, f"{what}: max relative deviation {err.max():.3e} > {rtol:g}"


def reference_features(atoms, basis) -> np.ndarray:
    """B (N, F) from the plan's terms: A_{c,n,lm} = Σ_{j in channel c} R_n(r_ij) Y_lm(r̂_ij) per centre,
    B_f = Σ_{t: feat t = f} coef_t Π_k A[idx_{t,k}] — a plain-Python evaluation of the definition."""
    plan = basis.plan
    b = _batch(atoms, basis)
    nlm = (plan.l_max + 1) ** 2
    R, _ = radial_values(np.linalg.norm(b.pair_vec, axis=1), plan.r_cut, plan.scale, plan.n_r)  # (P, n_r)
    Y, _ = harmonics_values(b.pair_vec, plan.l_max, gradients=False)  # (P, nlm)
    A = np.zeros((b.n_atoms, plan.n_channels, plan.n_r, nlm))
    np.add.at(A, (b.pair_i, b.pair_ch), R[:, :, None] * Y[:, None, :])
    A = A.reshape(b.n_atoms, -1)
    X = np.zeros((b.n_atoms, plan.n_features))
    for t in range(len(plan.t_coef)):
        idx = plan.t_idx[t, :plan.t_order[t]]
        X[:, plan.t_feat[t]] += plan.t_coef[t] * np.prod(A[:, idx], axis=1)
    return X


# ---------------------------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------------------------
def test_get_backend_names_and_errors():
    assert isinstance(get_backend("cpu"), CpuBackend) and get_backend("cpu") is get_backend("cpu")
    for name in ("gpu", "cuda"):
        b = get_backend(name)
        assert isinstance(b, GpuBackend) and b.name == "gpu"
    for bad in ("tpu", "GPU0", ""):
        with pytest.raises(ValueError, match="unknown device"):
            get_backend(bad)
    with pytest.raises(MinbasisError, match="float64 only"):
        get_backend("cpu").check_dtype(np.float32)
    assert get_backend("numpy-reference").check_dtype("float32") == np.float32


def test_gpu_backend_without_cupy_fails_only_when_used(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    b = get_backend("gpu")  # constructing it imports nothing
    plan = _basis("hco").plan
    batch = _batch(rattled_ethanol(), _basis("hco"))
    with pytest.raises(MinbasisError, match="CuPy"):
        b.require()
    with pytest.raises(MinbasisError, match="CuPy"):
        b.features(plan, batch)
    with pytest.raises(MinbasisError, match="CuPy"):
        mb.describe(rattled_ethanol(), _basis("hco"), device="cuda")


# ---------------------------------------------------------------------------------------------
# the same checks for every backend
# ---------------------------------------------------------------------------------------------
def test_features_equal_reference(backend, case):
    atoms, basis, _ = case
    X, J = backend.features(basis.plan, _batch(atoms, basis))
    assert J is None
    ref = reference_features(atoms, basis)
    assert np.abs(ref).max() > 0.1
    assert_close(backend.to_numpy(X), ref, 1e-10, f"{backend.name} features")


def test_position_gradients_finite_differences(backend, case):
    atoms, basis, fd_atoms = case
    plan = basis.plan
    batch = _batch(atoms, basis)
    N, F = len(atoms), plan.n_features
    X, smp, G, _ = (backend.to_numpy(a) for a in backend.sample_gradients(plan, batch))
    Xp, Jp = (backend.to_numpy(a) for a in backend.features(plan, batch, gradients=True))
    assert_close(Xp, X, 1e-12, "features with and without sample gradients")
    # per-sample gradients: dense ∂B_i/∂r_k
    J = np.zeros((N, N, 3, F))
    J[smp[:, 0], smp[:, 1]] = G
    # the per-pair Jacobian scattered to atoms (∂/∂r_j += J_p, ∂/∂r_i −= J_p) gives the same
    Jd = np.zeros_like(J)
    np.add.at(Jd, (batch.pair_i, batch.pair_j), Jp)
    np.add.at(Jd, (batch.pair_i, batch.pair_i), -Jp)
    scale = np.abs(J).max()
    assert scale > 1e-2
    assert np.abs(Jd - J).max() <= 1e-10 * scale, "per-pair and per-sample gradients disagree"
    h = 1e-5
    for k in fd_atoms:
        for a in range(3):
            b = atoms.copy()
            b.positions[k, a] += h
            xp = _features(backend, b, basis)
            b.positions[k, a] -= 2 * h
            fd = (xp - _features(backend, b, basis)) / (2 * h)
            err = np.abs(J[:, k, a] - fd).max() / scale
            assert err <= 1e-6, f"∂B/∂r[{k}, {a}] differs from finite differences by {err:.2e} (relative)"
    assert np.abs(J.sum(axis=1)).max() <= 1e-10 * scale  # translation invariance


def test_strain_gradients_finite_differences(backend, case):
    atoms, basis, _ = case
    _, _, _, S = backend.sample_gradients(basis.plan, _batch(atoms, basis), strain=True)
    S = backend.to_numpy(S)
    assert S.shape == (len(atoms), 3, 3, basis.n_features)
    h = 1e-5
    fd = np.zeros_like(S)
    for a in range(3):
        for c in range(3):
            e = np.zeros((3, 3))
            e[a, c] = h
            fd[:, a, c] = (_features(backend, strained(atoms, e), basis)
                           - _features(backend, strained(atoms, -e), basis)) / (2 * h)
    scale = np.abs(S).max()
    assert scale > 1e-2
    err = np.abs(S - fd).max() / scale
    assert err <= 1e-6, f"strain gradients differ from finite differences by {err:.2e} (relative)"


def _model(basis, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(basis.plan.n_channels, basis.n_features)), rng.normal(size=basis.plan.n_channels)


def test_linear_model_consistent_with_features(backend, case):
    atoms, basis, _ = case
    plan = basis.plan
    batch = _batch(atoms, basis)
    w, e0 = _model(basis)
    E, Fo, W = (backend.to_numpy(a) for a in backend.linear_energy_forces(plan, batch, w, e0))
    X, smp, G, S = (backend.to_numpy(a) for a in backend.sample_gradients(plan, batch, strain=True))
    ch = batch.centre_ch
    assert_close(E, e0[ch] + np.einsum("if,if->i", w[ch], X), 1e-10, "energies = e0 + w · B")
    forces = np.zeros((len(atoms), 3))
    np.add.at(forces, smp[:, 1], -np.einsum("gaf,gf->ga", G, w[ch[smp[:, 0]]]))
    assert_close(Fo.reshape(-1), forces.reshape(-1), 1e-10, "forces = −w · ∂B/∂r")
    assert_close(W.reshape(-1), -np.einsum("iabf,if->ab", S, w[ch]).reshape(-1), 1e-10, "virial = −w · ∂B/∂ε")
    # the folded weights give the same results (they are ignored where the backend folds itself)
    folded = np.ascontiguousarray(w[:, plan.t_feat] * plan.t_coef[None, :])
    E2, F2, W2 = (backend.to_numpy(a) for a in backend.linear_energy_forces(plan, batch, w, e0, folded=folded))
    assert_close(E2, E, 1e-12, "energies (folded)")
    assert_close(F2.reshape(-1), Fo.reshape(-1), 1e-12, "forces (folded)")
    assert_close(W2.reshape(-1), W.reshape(-1), 1e-12, "virial (folded)")


def test_virial_equals_strain_derivative_of_energy(backend, case):
    atoms, basis, _ = case
    plan = basis.plan
    w, e0 = _model(basis, seed=5)

    def energy(a):
        return float(backend.to_numpy(backend.linear_energy_forces(plan, _batch(a, basis), w, e0)[0]).sum())

    W = backend.to_numpy(backend.linear_energy_forces(plan, _batch(atoms, basis), w, e0)[2])[0]
    h = 1e-5
    dE = np.zeros((3, 3))
    for a in range(3):
        for c in range(3):
            e = np.zeros((3, 3))
            e[a, c] = h
            dE[a, c] = (energy(strained(atoms, e)) - energy(strained(atoms, -e))) / (2 * h)
    scale = np.abs(W).max()
    assert scale > 1e-3
    assert np.abs(W + dE).max() <= 1e-6 * scale, f"virial {W} != −∂E/∂ε {-dE}"  # W = −∂E/∂ε


def test_features_invariant_under_rotation(backend, case):
    atoms, basis, _ = case
    X = _features(backend, atoms, basis)
    M = Rotation.random(random_state=11).as_matrix()
    b = atoms.copy()
    b.positions = atoms.positions @ M.T
    if atoms.pbc.any():
        b.set_cell(atoms.cell.array @ M.T, scale_atoms=False)
    assert_close(_features(backend, b, basis), X, 1e-10, "rotated features")


def test_driver_batches_give_one_result(backend):
    """The one driver loop: one batch per structure equals one batch for all (features, samples,
    position and strain gradients, offsets), on every backend."""
    basis = _basis("hco")
    mols = [rattled_ethanol(), molecule("H2O"), rattled_ethanol()]
    mols[2].rattle(0.03, seed=5)
    one = describe_structures(mols, basis.plan, backend, gradients=True, strain_gradients=True)
    many = describe_structures(mols, basis.plan, backend, gradients=True, strain_gradients=True, batch_bytes=1)
    for field in ("gradient_samples", "atom_ptr"):
        np.testing.assert_array_equal(backend.to_numpy(getattr(many, field)), backend.to_numpy(getattr(one, field)))
    for field in ("features", "position_gradients", "strain_gradients"):
        ref = backend.to_numpy(getattr(one, field))
        assert_close(backend.to_numpy(getattr(many, field)), ref, 1e-13, field)
    X = backend.to_numpy(describe_structures(mols, basis.plan, backend, batch_bytes=1))
    assert_close(X, backend.to_numpy(one.features), 1e-13, "features, one batch per structure")
    assert_close(X, np.concatenate([reference_features(a, basis) for a in mols]), 1e-10, "features vs reference")


def test_optional_operations(backend):
    """Committee and autodiff products agree with the Jacobian where the backend has them, and
    raise MinbasisError naming the operation where it does not."""
    basis = _basis("alloy")
    plan = basis.plan
    batch = _batch(_alloy(), basis)
    w, e0 = _model(basis)
    rng = np.random.default_rng(8)
    dw, de0 = rng.normal(size=(3,) + w.shape), rng.normal(size=(3, len(e0)))
    gX = rng.normal(size=(batch.n_atoms, plan.n_features))
    du = rng.normal(size=batch.pair_vec.shape)
    calls = {
        "committee": lambda: backend.linear_energy_forces_committee(plan, batch, w, e0, dw, de0),
        "pair_features": lambda: backend.pair_features(plan, batch, batch.pair_vec),
        "pair_vjp": lambda: backend.pair_vjp(plan, batch, batch.pair_vec, gX),
        "pair_jvp": lambda: backend.pair_jvp(plan, batch, batch.pair_vec, du),
        "pair_hvp": lambda: backend.pair_hvp(plan, batch, batch.pair_vec, gX, du),
    }
    assert ("pair_vjp" in backend.operations) == ("linear_energy_forces_committee" in backend.operations) \
        == (backend.name in FULL)
    assert {"features", "sample_gradients", "linear_energy_forces"} <= backend.operations
    if backend.name not in FULL:
        for name, call in calls.items():
            with pytest.raises(MinbasisError, match="not available on device"):
                call()
        return
    X, J = backend.features(plan, batch, gradients=True)
    E, Fo, W = backend.linear_energy_forces(plan, batch, w, e0)
    Em, Fm, Wm, dE, dF, dW = calls["committee"]()
    assert_close(Em, E, 1e-12, "committee mean energies")
    assert_close(Fm.reshape(-1), Fo.reshape(-1), 1e-12, "committee mean forces")
    for k in range(3):  # member k is the linear model with weights w + dw[k]
        Ek, Fk, Wk = backend.linear_energy_forces(plan, batch, w + dw[k], e0 + de0[k])
        assert_close(E + dE[k], Ek, 1e-10, f"member {k} energies")
        assert_close((Fo + dF[k]).reshape(-1), Fk.reshape(-1), 1e-10, f"member {k} forces")
        assert_close((W + dW[k]).reshape(-1), Wk.reshape(-1), 1e-10, f"member {k} virial")
    assert_close(calls["pair_features"](), X, 1e-12, "pair_features")
    vjp = calls["pair_vjp"]()
    assert_close(vjp.reshape(-1), np.einsum("paf,pf->pa", J, gX[batch.pair_i]).reshape(-1), 1e-10, "VJP")
    B, dB = calls["pair_jvp"]()
    assert_close(B, X, 1e-12, "JVP values")
    jvp = np.zeros_like(X)
    np.add.at(jvp, batch.pair_i, np.einsum("paf,pa->pf", J, du))
    assert_close(dB, jvp, 1e-10, "JVP")
    g, _ = calls["pair_hvp"]()
    assert_close(g.reshape(-1), vjp.reshape(-1), 1e-12, "HVP's gradient")
