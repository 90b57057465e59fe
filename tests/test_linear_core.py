"""The one assembly + solver core of linear fits: streaming, shards, solvers, singular systems, Dask."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

import minbasis as mb
from minbasis.demo import bundled_ethanol_path
from minbasis.errors import LabelError, MinbasisError
from minbasis.fit import LinearFitConfig, fit_linear, get_labels, read_structures
from minbasis.fit.assembly import LinearSystem, NormalEquations, RowWeights, WeightedRows, accumulate
from minbasis.fit.fidelity import FidelityData
from minbasis.fit.multifidelity import fit_linear_mf
from minbasis.fit.solvers import ARD, BayesianRidge, Ridge, solve_system, spectrum

KEYS = {"energy_key": "energy_high", "forces_key": "forces_high"}


@pytest.fixture(scope="module")
def frames():
    return read_structures(bundled_ethanol_path())[:40]


@pytest.fixture(scope="module")
def basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2)


@pytest.fixture(scope="module")
def alloy():
    rng = np.random.default_rng(3)
    out = []
    for k in range(10):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        a.numbers[rng.choice(len(a), 3, replace=False)] = 28
        a.rattle(0.05, seed=k)
        a.set_cell(a.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        a.calc = EMT()
        a.info["energy"] = a.get_potential_energy()
        a.arrays["forces"] = a.get_forces()
        a.info["stress"] = a.get_stress()
        a.info["config_type"] = "bulk" if k % 2 else "strained"
        a.calc = None
        out.append(a)
    return out


def _random_rows(rng, n_e, n_o, P, C):
    CE = rng.integers(1, 5, size=(n_e, C)).astype(float)
    CE /= CE.sum(axis=1, keepdims=True)
    AE = 50.0 + rng.standard_normal((n_e, P))  # large mean, small spread: the case a Gram form can cancel
    return WeightedRows(AE=AE, yE=rng.standard_normal(n_e) + CE @ np.arange(1.0, C + 1), CE=CE,
                        AO=rng.standard_normal((n_o, P)), yO=rng.standard_normal(n_o),
                        n_rows={"energy": n_e, "forces": n_o})


def test_streaming_gram_equals_rows_and_shards_merge_exactly():
    rng = np.random.default_rng(0)
    P, C = 12, 3
    batches = [_random_rows(rng, 7, 9, P, C) for _ in range(6)]
    rows = NormalEquations(P, C, max_rows=10**9)      # keeps every row: exact row projection
    gram = NormalEquations(P, C)                      # switches to Gram pieces after P rows
    for b in batches:
        rows.add(b)
        gram.add(b)
    assert not rows.is_gram and gram.is_gram
    s_rows, s_gram = rows.system(), gram.system()
    G, bb, yy = s_rows.gram()
    np.testing.assert_allclose(s_gram.G, G, rtol=1e-9, atol=1e-9 * np.abs(G).max())
    np.testing.assert_allclose(s_gram.b, bb, rtol=1e-9, atol=1e-9 * np.abs(bb).max())
    assert s_gram.n_rows == s_rows.n_rows == 6 * 16 - C
    c = rng.standard_normal(P)
    np.testing.assert_allclose(gram.e0(c), rows.e0(c), rtol=1e-9)
    # shards accumulated separately (different shifts) and merged equal the serial accumulator
    a, b = NormalEquations(P, C), NormalEquations(P, C)
    for k, bt in enumerate(batches):
        (a if k < 2 else b).add(bt)
    merged = a.merge(b).system()
    np.testing.assert_allclose(merged.G, s_gram.G, rtol=1e-9, atol=1e-9 * np.abs(G).max())
    np.testing.assert_allclose(merged.b, s_gram.b, rtol=1e-9, atol=1e-9 * np.abs(bb).max())
    with pytest.raises(MinbasisError, match="merge"):
        a.merge(NormalEquations(P + 1, C))


def test_memory_of_the_accumulator_does_not_grow_with_structures(basis, frames):
    labels = get_labels(frames, **KEYS)
    w = RowWeights()
    small = accumulate(basis, frames[:10], get_labels(frames[:10], **KEYS), w)
    big = accumulate(basis, frames + frames + frames, get_labels(frames + frames + frames, **KEYS), w)
    assert small.is_gram and big.is_gram
    assert big.nbytes() == small.nbytes()
    assert big.total_rows == 3 * accumulate(basis, frames, labels, w).total_rows


def test_bayesian_is_finite_and_accurate_on_a_singular_gram_matrix():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 20))
    A = np.column_stack([X, X[:, :5], 2.0 * X[:, 5:8] - X[:, 8:11], np.zeros(300)])  # exact dependencies
    c_true = rng.standard_normal(A.shape[1])
    y = A @ c_true + 1e-3 * rng.standard_normal(300)
    gram = LinearSystem("gram", A.shape[1], 300, G=A.T @ A, b=A.T @ y, yy=float(y @ y))
    assert np.linalg.matrix_rank(gram.G) < A.shape[1]
    # ARD may prune a column whose identifiable coefficient is tiny (its sparsity prior): a looser bound
    for solver, bound in ((BayesianRidge(), 3e-3), (Ridge(1e-10), 3e-3), (ARD(), 0.02 * np.std(y))):
        res = solve_system(gram, solver)
        assert np.isfinite(res.coef).all(), solver.name
        assert np.sqrt(np.mean((A @ res.coef - y) ** 2)) < bound, solver.name
    # rows form (n < P) of a singular problem: the n < P route gives the same answer as the Gram route
    A2, y2 = A[:15], y[:15]
    r_rows = solve_system(LinearSystem("rows", A.shape[1], 15, A=A2, y=y2), BayesianRidge())
    r_gram = solve_system(LinearSystem("gram", A.shape[1], 15, G=A2.T @ A2, b=A2.T @ y2, yy=float(y2 @ y2)),
                          BayesianRidge())
    np.testing.assert_allclose(A2 @ r_rows.coef, A2 @ r_gram.coef, rtol=1e-6, atol=1e-6)


def test_evidence_residual_does_not_cancel_when_rows_interpolate():
    """n < P, targets in the row space and large: yᵀy − 2cᵀAᵀy + cᵀAᵀAc would cancel to garbage."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((12, 40))
    y = A @ rng.standard_normal(40) + 1e3 * A[:, 0]
    for system in (LinearSystem("rows", 40, 12, A=A, y=y),
                   LinearSystem("gram", 40, 12, G=A.T @ A, b=A.T @ y, yy=float(y @ y))):
        sp = spectrum(system)
        z, info, alpha, lam = BayesianRidge().solve_spectrum(sp)
        coef = sp.V @ z
        rss = float(np.sum((y - A @ coef) ** 2))
        assert np.isfinite(info["log_evidence"]) and np.isfinite(coef).all()
        r = lam / alpha
        k = sp.kept
        rss_stable = sp.e_perp + float(np.sum(sp.beta[k] ** 2 * r**2 / (sp.g[k] * (sp.g[k] + r) ** 2)))
        assert abs(rss - rss_stable) <= 1e-6 * max(rss, 1e-12) + 1e-9


def test_single_fidelity_uncoupled_mf_equals_fit_linear(basis, frames):
    lin = fit_linear(basis, frames, **KEYS)
    mf = fit_linear_mf(basis, [FidelityData(frames, "high", **KEYS)], coupling="none")
    np.testing.assert_allclose(mf.weights[0], lin.weights, rtol=1e-10, atol=1e-10 * np.abs(lin.weights).max())
    np.testing.assert_allclose(mf.e0[0], lin.e0, rtol=1e-10, atol=1e-10 * np.abs(lin.e0).max())


def test_energy_only_fit_takes_the_row_route_and_predicts(basis, frames):
    m = fit_linear(basis, frames, energy_key="energy_high", forces_key=None)
    assert m.info["route"] == "rows" and m.info["n_rows"] == len(frames) - 1
    pred = m.predict(frames).energy
    ref = np.array([a.info["energy_high"] for a in frames])
    assert np.isfinite(pred).all() and np.sqrt(np.mean((pred - ref) ** 2)) < np.std(ref)


def test_fit_with_stress_rows_and_config_type_weights(basis, alloy):
    cu = mb.Basis.ace(["Cu", "Ni"], 4.5, [4, 2], [0, 2], 2)
    cfg = LinearFitConfig(config_type_weights={"bulk": 2.0})
    m = fit_linear(cu, alloy, stress_key="stress", config=cfg)
    assert m.info["rows"]["virial"] == 6 * len(alloy)
    p = m.predict(alloy)
    ref_s = np.array([a.info["stress"] for a in alloy])
    assert np.abs(p.stress - ref_s).max() < 0.3 * np.abs(ref_s).max()
    with pytest.raises(LabelError, match="config_type weight 0"):
        fit_linear(cu, alloy, config=LinearFitConfig(config_type_weights={"bulk": 0.0, "strained": 0.0}))


def test_dask_local_cluster_equals_serial_fit(basis, frames, tmp_path):
    pytest.importorskip("distributed")
    import ase.io

    path = tmp_path / "train.extxyz"
    ase.io.write(path, frames[:24])
    train = read_structures(path)
    serial = fit_linear(basis, train, **KEYS)
    par = fit_linear(basis, train, dask="local:2", **KEYS)
    par_file = fit_linear(basis, train, dask="local:2", source_file=str(path), **KEYS)
    for m in (par, par_file):
        np.testing.assert_allclose(m.weights, serial.weights, rtol=1e-10, atol=1e-10 * np.abs(serial.weights).max())
        np.testing.assert_allclose(m.e0, serial.e0, rtol=1e-10, atol=1e-10 * np.abs(serial.e0).max())
    with pytest.raises(MinbasisError, match="local:N"):
        fit_linear(basis, train, dask="local:0", **KEYS)
