"""minbasis.torch: differentiable descriptors (first and second derivatives by the Numba kernels).

Acceptance of issue 13: a torch linear model on the descriptors with a fitted LinearModel's
weights reproduces its energies, forces and stress (1e-10); gradcheck and gradgradcheck on a
molecule and on a periodic multi-species cell; one force-training step gives the same
parameter gradients as the full ∂B/∂r array path (1e-10).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

torch = pytest.importorskip("torch")

import minbasis as mb  # noqa: E402
import minbasis.torch as mbt  # noqa: E402
from minbasis.errors import MinbasisError  # noqa: E402
from minbasis.kernels.autodiff import (build_geometry, pair_hvp, pair_jvp, pair_vectors, pair_vjp,  # noqa: E402
                                      scatter_to_inputs)

torch.set_default_dtype(torch.float64)


@pytest.fixture(scope="module")
def small_basis():
    """Three species, ν ≤ 3, l ≤ 2: small enough for gradcheck's many evaluations."""
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2, 2], [0, 2, 1], 3)


@pytest.fixture(scope="module")
def cuni_data():
    """Six rattled, sheared Cu/Ni cells labelled by EMT (energy, forces, stress), and a fitted LinearModel."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from minbasis.fit import LinearFitConfig, fit_linear

    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        a = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 1))
        a.numbers[rng.choice(len(a), 2, replace=False)] = 28
        a.set_cell(a.cell.array + rng.normal(scale=0.05, size=(3, 3)), scale_atoms=True)
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        frames.append(a)
    basis = mb.Basis.ace(["Cu", "Ni"], 4.0, [3, 2, 2], [0, 2, 1], 3)
    model = fit_linear(basis, frames, energy_key="energy", forces_key="forces", stress_key="stress",
                       config=LinearFitConfig(solver="ridge", alpha=1e-8))
    return frames, basis, model


@pytest.fixture(scope="module")
def ethanol_frames():
    import ase.io

    from importlib.resources import files

    path = files("minbasis") / "data" / "ethanol_mf_subset.extxyz"
    return ase.io.read(str(path), index=":12")


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# -- values -------------------------------------------------------------------------------------------
def test_values_match_numpy_describe(hco_cell, ethanol, small_basis):
    X = mbt.describe([ethanol, hco_cell], small_basis)
    ref = mb.describe([ethanol, hco_cell], small_basis)
    assert X.dtype == torch.float64 and X.shape == ref.shape
    np.testing.assert_allclose(X.numpy(), ref, rtol=1e-12, atol=1e-14)  # pair order may differ from describe's


def test_kernel_operators_against_full_jacobian(hco_cell, small_basis):
    """VJP and JVP equal the contractions of describe(gradients=True); the HVP equals central differences of the VJP."""
    plan = small_basis.plan
    g = build_geometry(hco_cell, plan)
    b = g.batch
    d = mb.describe(hco_cell, small_basis, gradients=True)
    rng = np.random.default_rng(1)
    Gb = rng.normal(size=d.features.shape)
    u = rng.normal(size=b.pair_vec.shape)
    dpos = rng.normal(size=(b.n_atoms, 3))
    # VJP chained to positions vs J contracted per sample
    v = pair_vjp(plan, b, b.pair_vec, Gb)
    dp = np.zeros((b.n_atoms, 3))
    np.add.at(dp, b.pair_j, v)
    np.add.at(dp, b.pair_i, -v)
    ref = np.zeros((b.n_atoms, 3))
    s = d.gradient_samples
    np.add.at(ref, s[:, 1], np.einsum("saf,sf->sa", d.position_gradients, Gb[s[:, 0]]))
    assert _rel(dp, ref) < 1e-12
    # the NumPy chain rule to positions / cell / strain agrees with torch autograd through pair_vectors
    np.testing.assert_allclose(pair_vectors(g, g.positions, g.cells), b.pair_vec, rtol=0, atol=1e-13)
    dpos2, dcell, deps = scatter_to_inputs(g, v)
    assert np.allclose(dpos2, dp, rtol=0, atol=1e-13)
    s_ = mbt.Structures(hco_cell, small_basis)
    pos = s_.positions.clone().requires_grad_(True)
    cel = s_.cells.clone().requires_grad_(True)
    eps = torch.zeros(1, 3, 3, requires_grad=True)
    (s_.describe(positions=pos, cell=cel, strain=eps) * torch.from_numpy(Gb)).sum().backward()
    assert _rel(pos.grad.numpy(), dpos2) < 1e-12
    assert _rel(cel.grad.numpy(), dcell) < 1e-12
    assert _rel(eps.grad.numpy(), deps) < 1e-12
    # JVP along a position displacement vs J contracted
    upair = dpos[b.pair_j] - dpos[b.pair_i]
    _, dX = pair_jvp(plan, b, b.pair_vec, upair)
    ref = np.zeros_like(dX)
    np.add.at(ref, s[:, 0], np.einsum("saf,sa->sf", d.position_gradients, dpos[s[:, 1]]))
    assert _rel(dX, ref) < 1e-12
    G, dG = pair_hvp(plan, b, b.pair_vec, Gb, u)
    assert _rel(G, v) < 1e-13
    h = 1e-5
    fd = (pair_vjp(plan, b, b.pair_vec + h * u, Gb) - pair_vjp(plan, b, b.pair_vec - h * u, Gb)) / (2 * h)
    assert _rel(dG, fd) < 1e-7


# -- gradcheck / gradgradcheck --------------------------------------------------------------------------
def _projected(structs, W):
    """Features projected to a few outputs (keeps gradcheck's output count small, all features involved)."""
    def f(pos, cell=None, strain=None):
        return structs.describe(positions=pos, cell=cell, strain=strain) @ W
    return f


def test_gradcheck_molecule(ethanol, small_basis):
    s = mbt.Structures(ethanol, small_basis)
    W = torch.from_numpy(np.random.default_rng(0).normal(size=(small_basis.n_features, 2)))
    pos = s.positions.clone().requires_grad_(True)
    f = _projected(s, W)
    assert torch.autograd.gradcheck(f, (pos,), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradgradcheck(f, (pos,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_periodic_multispecies(hco_cell, small_basis):
    s = mbt.Structures(hco_cell, small_basis)
    W = torch.from_numpy(np.random.default_rng(1).normal(size=(small_basis.n_features, 2)))
    pos = s.positions.clone().requires_grad_(True)
    cell = s.cells.clone().requires_grad_(True)
    eps = torch.zeros(1, 3, 3, requires_grad=True)
    f = _projected(s, W)
    assert torch.autograd.gradcheck(f, (pos, cell, eps), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradgradcheck(f, (pos, cell, eps), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_full_feature_gradcheck_fast_mode(hco_cell, small_basis):
    """All N × F outputs at once (fast mode: random projections of the Jacobian)."""
    s = mbt.Structures(hco_cell, small_basis)
    pos = s.positions.clone().requires_grad_(True)
    f = lambda p: s.describe(positions=p)  # noqa: E731
    assert torch.autograd.gradcheck(f, (pos,), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (pos,), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_third_derivative_is_a_clear_error(ethanol, small_basis):
    s = mbt.Structures(ethanol, small_basis)
    pos = s.positions.clone().requires_grad_(True)
    E = s.describe(positions=pos).sum()
    (g,) = torch.autograd.grad(E, pos, create_graph=True)
    (h,) = torch.autograd.grad((g ** 2).sum(), pos, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives"):
        torch.autograd.grad(h.sum(), pos)


# -- a linear model in torch equals LinearModel -----------------------------------------------------------
def _torch_linear(model, s, pos, eps):
    B = s.describe(positions=pos, strain=eps)
    w = torch.from_numpy(model.weights)[s.species]
    E_at = torch.from_numpy(model.e0)[s.species] + (w * B).sum(1)
    return torch.zeros(s.n_structures).index_add(0, s.structure, E_at)


def test_torch_linear_model_equals_linear_model_periodic(cuni_data):
    frames, basis, model = cuni_data
    s = mbt.Structures(frames, basis)
    pos = s.positions.clone().requires_grad_(True)
    eps = torch.zeros(s.n_structures, 3, 3, requires_grad=True)
    E = _torch_linear(model, s, pos, eps)
    dpos, deps = torch.autograd.grad(E.sum(), (pos, eps))
    forces = -dpos.numpy()
    sigma = deps.numpy() / s.volumes.numpy()[:, None, None]  # σ = (1/V) ∂E/∂ε
    voigt = sigma[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    pred = model.predict(frames)
    assert _rel(E.detach().numpy(), pred.energy) < 1e-10
    assert _rel(forces, np.concatenate(pred.forces)) < 1e-10
    assert _rel(voigt, pred.stress) < 1e-10
    # the fit is a real one: it reproduces the EMT stress to a few percent of its spread
    ref = np.array([f.get_stress() for f in frames])
    assert np.abs(pred.stress - ref).max() < 0.5 * np.abs(ref).max()


def test_torch_linear_model_equals_linear_model_molecules(ethanol_frames, small_basis):
    from minbasis.fit import LinearFitConfig, fit_linear

    model = fit_linear(small_basis, ethanol_frames, energy_key="energy_high", forces_key="forces_high",
                       config=LinearFitConfig(solver="ridge", alpha=1e-6))
    s = mbt.Structures(ethanol_frames, small_basis)
    pos = s.positions.clone().requires_grad_(True)
    E = _torch_linear(model, s, pos, None)
    (dpos,) = torch.autograd.grad(E.sum(), pos)
    pred = model.predict(ethanol_frames)
    assert _rel(E.detach().numpy(), pred.energy) < 1e-10
    assert _rel(-dpos.numpy(), np.concatenate(pred.forces)) < 1e-10


# -- force training equals the full-Jacobian path ---------------------------------------------------------
class _PerSpeciesMLP(torch.nn.Module):
    def __init__(self, n_species, n_features, hidden=8, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W1 = torch.nn.Parameter(torch.randn(n_species, n_features, hidden, generator=g) / n_features ** 0.5)
        self.b1 = torch.nn.Parameter(torch.randn(n_species, hidden, generator=g) * 0.1)
        self.W2 = torch.nn.Parameter(torch.randn(n_species, hidden, generator=g) / hidden ** 0.5)

    def forward(self, B, species):
        h = torch.tanh(torch.einsum("nf,nfh->nh", B, self.W1[species]) + self.b1[species])
        return (h * self.W2[species]).sum(1)


def _loss_torch_path(net, s, E_ref, F_ref, scale, second_order=True):
    pos = s.positions.clone().requires_grad_(True)
    B = s.describe(positions=pos, second_order=second_order) / scale
    E = torch.zeros(s.n_structures).index_add(0, s.structure, net(B, s.species))
    (dE,) = torch.autograd.grad(E.sum(), pos, create_graph=True)
    return ((E - E_ref) ** 2).mean() + ((-dE - F_ref) ** 2).mean()


def _loss_full_jacobian(net, frames, basis, species, structure, E_ref, F_ref, scale):
    d = mb.describe(frames, basis, gradients=True)
    B = (torch.from_numpy(d.features) / scale).requires_grad_(True)
    J = torch.from_numpy(d.position_gradients) / scale  # (G, 3, F) ∂B_i/∂r_k
    smp = torch.from_numpy(d.gradient_samples)
    E_at = net(B, species)
    E = torch.zeros(len(frames)).index_add(0, structure, E_at)
    (g,) = torch.autograd.grad(E_at.sum(), B, create_graph=True)  # ∂E_i/∂B_i
    contrib = torch.einsum("saf,sf->sa", J, g[smp[:, 0]])
    F = -torch.zeros(len(structure), 3).index_add(0, smp[:, 1], contrib)
    return ((E - E_ref) ** 2).mean() + ((F - F_ref) ** 2).mean()


def test_force_training_step_equals_full_jacobian(ethanol_frames, hco_basis):
    frames = ethanol_frames[:6]
    s = mbt.Structures(frames, hco_basis)
    E_ref = torch.tensor([f.info["energy_high"] for f in frames])
    E_ref = E_ref - E_ref.mean()
    F_ref = torch.from_numpy(np.concatenate([f.arrays["forces_high"] for f in frames]))
    scale = torch.from_numpy(mb.describe(frames, hco_basis).std(0) + 1e-3)
    grads = []
    for path in ("full", "torch", "torch-first-order"):
        net = _PerSpeciesMLP(3, hco_basis.n_features)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3)
        opt.zero_grad()
        if path.startswith("torch"):
            loss = _loss_torch_path(net, s, E_ref, F_ref, scale, second_order=(path == "torch"))
        else:
            loss = _loss_full_jacobian(net, frames, hco_basis, s.species, s.structure, E_ref, F_ref, scale)
        loss.backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        opt.step()
    for other in grads[1:]:
        for a, b in zip(other, grads[0]):
            assert torch.linalg.norm(a) > 0
            assert _rel(a.numpy(), b.numpy()) < 1e-10


# -- API details ------------------------------------------------------------------------------------------
def test_module_and_rebuild(hco_cell, small_basis):
    mod = mbt.DescriptorModule(small_basis)
    assert "n_features" in repr(mod)
    s = mbt.Structures(hco_cell, small_basis)
    X0 = mod(s)
    moved = s.positions + 0.3 * torch.from_numpy(np.random.default_rng(2).normal(size=(s.n_atoms, 3)))
    X1 = mod(s, positions=moved)  # the neighbour list is rebuilt at the new positions
    a = hco_cell.copy()
    a.positions = moved.numpy()
    assert np.allclose(X1.numpy(), mb.describe(a, small_basis), rtol=0, atol=1e-12)
    assert not np.allclose(X0.numpy(), X1.numpy())
    X2 = mbt.describe(hco_cell, small_basis, cell=torch.from_numpy(hco_cell.cell.array * 1.02))
    b = hco_cell.copy()
    b.set_cell(b.cell.array * 1.02, scale_atoms=False)
    assert np.allclose(X2.detach().numpy(), mb.describe(b, small_basis), rtol=0, atol=1e-12)


def test_bad_shapes(hco_cell, small_basis):
    with pytest.raises(MinbasisError, match="positions"):
        mbt.describe(hco_cell, small_basis, positions=torch.zeros(3, 3))
    s = mbt.Structures(hco_cell, small_basis)
    with pytest.raises(MinbasisError, match="strain"):
        s.describe(strain=torch.zeros(2, 3, 3))
    with pytest.raises(TypeError):
        mbt.DescriptorModule("not a basis")


def test_example_training_script_runs():
    """examples/torch_ethanol_training.py trains (a few epochs on a few frames) and improves the forces."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "torch_ethanol_training.py"
    spec = importlib.util.spec_from_file_location("torch_ethanol_training", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--epochs", "6", "--n-train", "20", "--n-test", "10", "--batch", "10"])
    assert np.isfinite(res["test_energy_mae_mev_per_atom"]) and res["test_forces_mae_mev_per_A"] < 1500


def test_forward_mode_jvp(hco_cell, small_basis):
    """forward_ad (dual tensors) gives the JVP kernel's δB, equal to the full Jacobian contracted."""
    s = mbt.Structures(hco_cell, small_basis)
    t = torch.from_numpy(np.random.default_rng(3).normal(size=(s.n_atoms, 3)))
    d = mb.describe(hco_cell, small_basis, gradients=True)
    ref = np.zeros_like(d.features)
    smp = d.gradient_samples
    np.add.at(ref, smp[:, 0], np.einsum("saf,sa->sf", d.position_gradients, t.numpy()[smp[:, 1]]))
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        B = s.describe(positions=fwAD.make_dual(s.positions.clone(), t))
        assert _rel(fwAD.unpack_dual(B).tangent.numpy(), ref) < 1e-12
