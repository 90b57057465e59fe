"""minbasis.jax: descriptors under jax.grad (first and second derivatives by the Numba kernels).

The acceptance tests of minbasis.torch, under ``jax.grad``: a linear model on the
descriptors with a fitted LinearModel's weights (energies, forces, stress to 1e-10), numerical
checks of first and second derivatives, and a force-training gradient equal to the full
∂B/∂r array path (1e-10).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import minbasis as mb  # noqa: E402
import minbasis.jax as mbj  # noqa: E402
from minbasis.errors import MinbasisError  # noqa: E402


@pytest.fixture(scope="module")
def small_basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2, 2], [0, 2, 1], 3)


@pytest.fixture(scope="module")
def ethanol_frames():
    from importlib.resources import files

    import ase.io

    return ase.io.read(str(files("minbasis") / "data" / "ethanol_mf_subset.extxyz"), index=":8")


@pytest.fixture(scope="module")
def cuni():
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from minbasis.fit import LinearFitConfig, fit_linear

    rng = np.random.default_rng(0)
    frames = []
    for k in range(5):
        a = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 1))
        a.numbers[rng.choice(len(a), 2, replace=False)] = 28
        a.set_cell(a.cell.array + rng.normal(scale=0.05, size=(3, 3)), scale_atoms=True)
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        frames.append(a)
    basis = mb.Basis.ace(["Cu", "Ni"], 4.0, [3, 2, 2], [0, 2, 1], 3)
    model = fit_linear(basis, frames, stress_key="stress", config=LinearFitConfig(solver="ridge", alpha=1e-8))
    return frames, basis, model


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def test_values(hco_cell, ethanol, small_basis):
    X = mbj.describe([ethanol, hco_cell], small_basis)
    assert X.dtype == jnp.float64
    # the same pairs as describe; their order may differ (sums at round-off level)
    np.testing.assert_allclose(np.asarray(X), mb.describe([ethanol, hco_cell], small_basis), rtol=1e-12, atol=1e-14)


def test_linear_model_energy_forces_stress_under_grad(cuni):
    frames, basis, model = cuni
    s = mbj.Structures(frames, basis)
    w = jnp.asarray(model.weights)[s.species]
    e0 = jnp.asarray(model.e0)[s.species]

    def energies(pos, eps):
        B = s.describe(positions=pos, strain=eps)
        return jax.ops.segment_sum(e0 + (w * B).sum(1), s.structure, num_segments=s.n_structures)

    eps0 = jnp.zeros((s.n_structures, 3, 3))
    E = energies(s.positions, eps0)
    dpos, deps = jax.grad(lambda p, e: energies(p, e).sum(), argnums=(0, 1))(s.positions, eps0)
    sigma = np.asarray(deps) / s.volumes[:, None, None]
    voigt = sigma[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    pred = model.predict(frames)
    assert _rel(E, pred.energy) < 1e-10
    assert _rel(-np.asarray(dpos), np.concatenate(pred.forces)) < 1e-10
    assert _rel(voigt, pred.stress) < 1e-10


def test_check_grads_molecule_and_cell(ethanol, hco_cell, small_basis):
    """First derivatives by jax's numerical check; second derivatives (grad of a gradient, the
    force-training case) against central differences of the first."""
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.normal(size=(small_basis.n_features, 2)))
    for atoms in (ethanol, hco_cell):
        s = mbj.Structures(atoms, small_basis)
        x0 = (s.positions, s.cells, jnp.zeros((1, 3, 3)))
        f = lambda p, c, e: s.describe(positions=p, cell=c, strain=e) @ W  # noqa: E731
        check_grads(f, x0, order=1, modes=["rev"], eps=1e-5, atol=1e-6, rtol=1e-5)
        grad = jax.grad(lambda p, c, e: jnp.tanh(f(p, c, e)).sum(), argnums=(0, 1, 2))
        v = [jnp.asarray(rng.normal(size=np.shape(x))) for x in x0]
        second = jax.grad(lambda p, c, e: sum((g * vv).sum() for g, vv in zip(grad(p, c, e), v)), argnums=(0, 1, 2))
        an = second(*x0)
        for k in range(3):  # directional second derivative along each input in turn
            d = [jnp.zeros_like(x) for x in x0]
            d[k] = jnp.asarray(rng.normal(size=np.shape(x0[k])))
            h = 1e-5
            gp = grad(*[x + h * dd for x, dd in zip(x0, d)])
            gm = grad(*[x - h * dd for x, dd in zip(x0, d)])
            fd = sum(((a - b) / (2 * h) * vv).sum() for a, b, vv in zip(gp, gm, v))
            ana = (an[k] * d[k]).sum()
            assert abs(float(fd - ana)) <= 1e-6 * max(1.0, abs(float(ana)))


def test_jit(hco_cell, small_basis):
    s = mbj.Structures(hco_cell, small_basis)
    g = jax.jit(jax.grad(lambda p: s.describe(positions=p).sum()))(s.positions)
    g2 = jax.grad(lambda p: s.describe(positions=p).sum())(s.positions)
    assert np.allclose(g, g2, rtol=1e-13, atol=1e-13)
    W = jnp.full((small_basis.n_features,), 0.1)

    def force_loss(W):  # a gradient of a gradient, jitted
        E = lambda p: jnp.tanh(s.describe(positions=p) @ W).sum()  # noqa: E731
        return E(s.positions) ** 2 + (jax.grad(E)(s.positions) ** 2).sum()

    a, b = jax.grad(force_loss)(W), jax.jit(jax.grad(force_loss))(W)
    assert float(jnp.abs(a).max()) > 0 and np.allclose(a, b, rtol=1e-12, atol=1e-12)


def _mlp(params, B, species):
    W1, b1, W2 = params
    h = jnp.tanh(jnp.einsum("nf,nfh->nh", B, W1[species]) + b1[species])
    return (h * W2[species]).sum(1)


def test_force_training_gradient_equals_full_jacobian(ethanol_frames, hco_basis):
    frames = ethanol_frames[:5]
    s = mbj.Structures(frames, hco_basis)
    E_ref = np.array([f.info["energy_high"] for f in frames])
    E_ref = jnp.asarray(E_ref - E_ref.mean())
    F_ref = jnp.asarray(np.concatenate([f.arrays["forces_high"] for f in frames]))
    d = mb.describe(frames, hco_basis, gradients=True)
    scale = jnp.asarray(d.features.std(0) + 1e-3)
    rng = np.random.default_rng(0)
    F_, H = hco_basis.n_features, 8
    params = (jnp.asarray(rng.normal(size=(3, F_, H)) / F_ ** 0.5), jnp.asarray(rng.normal(size=(3, H)) * 0.1),
              jnp.asarray(rng.normal(size=(3, H)) / H ** 0.5))
    M = s.n_structures

    def loss_kernels(params):
        def energy(pos):
            B = s.describe(positions=pos) / scale
            return jax.ops.segment_sum(_mlp(params, B, s.species), s.structure, num_segments=M)
        E = energy(s.positions)
        F = -jax.grad(lambda p: energy(p).sum())(s.positions)
        return ((E - E_ref) ** 2).mean() + ((F - F_ref) ** 2).mean()

    J = jnp.asarray(d.position_gradients) / scale
    X = jnp.asarray(d.features) / scale
    smp = d.gradient_samples

    def loss_full(params):
        E_at = _mlp(params, X, s.species)
        E = jax.ops.segment_sum(E_at, s.structure, num_segments=M)
        g = jax.grad(lambda B: _mlp(params, B, s.species).sum())(X)
        F = -jax.ops.segment_sum(jnp.einsum("saf,sf->sa", J, g[smp[:, 0]]), smp[:, 1], num_segments=s.n_atoms)
        return ((E - E_ref) ** 2).mean() + ((F - F_ref) ** 2).mean()

    l1, g1 = jax.value_and_grad(loss_kernels)(params)
    l2, g2 = jax.value_and_grad(loss_full)(params)
    assert _rel(l1, l2) < 1e-12
    for a, b in zip(g1, g2):
        assert float(jnp.abs(b).max()) > 0
        assert _rel(a, b) < 1e-10


def test_describe_under_grad_and_errors(hco_cell, small_basis):
    pos0 = jnp.asarray(hco_cell.positions)
    g = jax.grad(lambda p: mbj.describe(hco_cell, small_basis, positions=p).sum())(pos0)
    s = mbj.Structures(hco_cell, small_basis)
    assert np.allclose(g, jax.grad(lambda p: s.describe(positions=p).sum())(pos0), rtol=0, atol=1e-13)
    with pytest.raises(MinbasisError, match="positions"):
        s.describe(positions=jnp.zeros((2, 3)))
    with pytest.raises(MinbasisError, match="concrete"):
        jax.grad(lambda p: (s.update(positions=p), 0.0)[1])(pos0)
