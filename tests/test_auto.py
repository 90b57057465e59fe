"""Automatic linear fits: radial transform from the data, validation split, selection, budget, ν ≥ 5."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

import minbasis as mb
from minbasis.errors import LabelError, MinbasisError
from minbasis.fit import get_labels
from minbasis.fit.assembly import NormalEquations, RowWeights, accumulate
from minbasis.fit.auto import (AutoFitConfig, project_seconds, _x, basis_degrees, fit_auto, radial_scale_for, shortest_distance,
                               stratified_split)
from minbasis.kernels.primitives import radial_values


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(11)
    out = []
    for k in range(16):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.numbers[rng.choice(len(a), 1)] = 28
        a.rattle(0.08, seed=k)
        a.set_cell(a.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        a.calc = EMT()
        a.info["energy"] = a.get_potential_energy()
        a.arrays["forces"] = a.get_forces()
        a.info["stress"] = a.get_stress()
        a.info["config_type"] = ["rattle", "strain"][k % 2]
        a.calc = None
        out.append(a)
    return out


def test_radial_scale_maps_the_shortest_distance_and_kernels_take_negative_scales():
    for r_min, r_cut in ((2.2, 5.0), (0.95, 5.0), (2.5, 6.0)):
        s = radial_scale_for(r_min, r_cut, -0.9)
        assert abs(_x(0.9 * r_min / r_cut, s) - (-0.9)) < 1e-4  # s is rounded to 4 decimals
    assert radial_scale_for(2.2, 5.0) < radial_scale_for(0.95, 5.0) < 0 < radial_scale_for(0.2, 5.0)
    r = np.linspace(0.3, 4.9, 40)
    for s in (-4.0, 0.0, 3.0):
        R, dR = radial_values(r, 5.0, s, 6)
        x = np.array([_x(u, s) for u in r / 5.0])
        np.testing.assert_allclose(R[:, 2], (2 * x**2 - 1) * (1 - (r / 5.0) ** 2) ** 3, rtol=1e-12, atol=1e-14)
        h = 1e-6
        fd = (radial_values(r + h, 5.0, s, 6)[0] - radial_values(r - h, 5.0, s, 6)[0]) / (2 * h)
        np.testing.assert_allclose(dR, fd, rtol=1e-6, atol=1e-7)
    with pytest.raises(MinbasisError, match="shortest distance"):
        radial_scale_for(6.0, 5.0)


def test_shortest_distance_and_stratified_split(cells):
    d = shortest_distance(cells, 5.0)
    ref = min(np.min(a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)]) for a in cells)
    assert abs(d - ref) < 1e-9
    ct = ["a"] * 10 + ["b"] * 5 + ["c"]
    tr, va = stratified_split(ct, 0.2, 3)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 16
    assert sum(ct[i] == "a" for i in va) == 2 and sum(ct[i] == "b" for i in va) == 1
    assert not any(ct[i] == "c" for i in va)
    np.testing.assert_array_equal(va, stratified_split(ct, 0.2, 3)[1])
    assert not np.array_equal(va, stratified_split(ct, 0.2, 4)[1])


def test_combined_observable_equations_equal_a_weighted_fit(cells):
    basis = mb.Basis.ace(["Cu", "Ni"], 4.5, [4, 2], [0, 2], 2)
    labels = get_labels(cells, "energy", "forces", "stress")
    parts = {o: accumulate(basis, cells, labels, w) for o, w in (("e", RowWeights(1, 0, 0)), ("f", RowWeights(0, 1, 0)),
                                                                 ("s", RowWeights(0, 0, 1)))}
    comb = NormalEquations.combine([(30.0, parts["e"]), (2.0, parts["f"]), (5.0, parts["s"])]).system()
    direct = accumulate(basis, cells, labels, RowWeights(30.0, 2.0, 5.0)).system()
    np.testing.assert_allclose(comb.G, direct.G, rtol=1e-9, atol=1e-9 * np.abs(direct.G).max())
    np.testing.assert_allclose(comb.b, direct.b, rtol=1e-9, atol=1e-9 * np.abs(direct.b).max())
    assert comb.n_rows == direct.n_rows
    assert basis_degrees(basis).shape == (2 * basis.n_features,)


def test_fit_auto_selects_on_validation_and_records_its_choice(cells):
    cfg = AutoFitConfig(budget_minutes=600, candidates=[dict(order=2, n_max=[4, 2], l_max=[0, 2]),
                                                      dict(order=3, n_max=[5, 3, 2], l_max=[0, 2, 1])],
                        weights=[(30, 1, 30), (300, 1, 3)])
    lines = []
    m = fit_auto(cells, stress_key="stress", config=cfg, log=lines.append)
    auto = m.info["auto"]
    rules = {rc: radial_scale_for(auto["shortest_distance"], rc) for rc in (5.0, 6.0)}
    assert max(rules.values()) < 0 and auto["radial_scale_rule"] == rules[auto["r_cut"]]
    # on the smallest basis (2 weight rows each) both cutoffs, each with the rule's s < 0 and
    # s = 0; then the larger basis only with the (r_cut, s) that validated better
    table = auto["table"]
    assert len(table) == 10 and auto["choice"] in table
    assert {(r["r_cut"], r["radial_scale"]) for r in table if r["candidate"] == 0} == {
        (rc, s) for rc in (5.0, 6.0) for s in (0.0, rules[rc])}
    first = [r for r in table if r["candidate"] == 0]
    best_first = min(first, key=lambda r: r["score"])
    assert {(r["r_cut"], r["radial_scale"]) for r in table if r["candidate"] == 1} == {
        (best_first["r_cut"], best_first["radial_scale"])}
    assert auto["choice"]["score"] == min(r["score"] for r in table)
    assert m.basis.spec.radial["scale"] == auto["radial_scale"] == auto["choice"]["radial_scale"]
    assert m.basis.spec.r_cut == auto["r_cut"] == auto["choice"]["r_cut"]
    assert m.basis.spec.radial["data"]["rule_scale"] == pytest.approx(rules[auto["r_cut"]], abs=1e-4)
    assert m.basis.spec.radial["data"]["shortest_distance"] == pytest.approx(auto["shortest_distance"])
    assert any("chosen" in line for line in lines)
    p = m.predict(cells)
    ref = np.array([a.info["energy"] for a in cells])
    assert np.sqrt(np.mean((p.energy - ref) ** 2)) < np.std(ref)
    # a tiny budget stops after the first candidate
    small = fit_auto(cells, stress_key="stress", log=None,
                     config=AutoFitConfig(budget_minutes=1e-4, candidates=cfg.candidates, weights=[(30, 1, 30)],
                                          r_cut=5.0))
    assert {r["candidate"] for r in small.info["auto"]["table"]} == {0}
    assert {r["r_cut"] for r in small.info["auto"]["table"]} == {5.0}  # a given cutoff is not searched
    # one factor on σ chosen on the validation split (default), none when switched off
    t = small.uncertainty["calibration"]
    assert small.committee_size == 32 and t > 0 and t != 1.0
    assert small.info["committee"]["calibration"] == t
    raw = fit_auto(cells, stress_key="stress", log=None,
                   config=AutoFitConfig(budget_minutes=1e-4, candidates=cfg.candidates, weights=[(30, 1, 30)],
                                        r_cut=5.0, calibrate=False))
    assert raw.uncertainty["calibration"] == 1.0
    np.testing.assert_allclose(raw.weights, small.weights)
    pr, ps = raw.predict(cells[:2]), small.predict(cells[:2])
    np.testing.assert_allclose(ps.forces_std[0], t * pr.forces_std[0], rtol=1e-10)
    te, ts = small.uncertainty["calibration_energy"], small.uncertainty["calibration_stress"]
    np.testing.assert_allclose(ps.energy_std, te * pr.energy_std, rtol=1e-10)
    np.testing.assert_allclose(ps.stress_std, ts * pr.stress_std, rtol=1e-10)
    with pytest.raises(LabelError, match="at least 5"):
        fit_auto(cells[:3], log=None)
    with pytest.raises(MinbasisError, match="validation_fraction"):
        AutoFitConfig(validation_fraction=0.9)


def test_cli_fit_without_basis(cells, tmp_path):
    import ase.io

    from minbasis.cli import main

    cu = []
    for a in cells[:8]:
        b = a.copy()
        b.numbers[:] = 29
        b.calc = EMT()
        b.info["energy"] = b.get_potential_energy()
        b.arrays["forces"] = b.get_forces()
        b.calc = None
        cu.append(b)
    path = tmp_path / "cells.extxyz"
    ase.io.write(path, cu)
    assert main(["fit", str(path), "--budget-minutes", "0.01", "-o", str(tmp_path / "m.npz")]) == 0
    model = mb.fit.load_model(tmp_path / "m.npz")
    assert model.info["auto"]["choice"]["columns"] == 437  # the first rung of the ladder, then the budget
    assert {r["r_cut"] for r in model.info["auto"]["table"]} == {5.0, 6.0}  # both cutoffs tried
    assert main(["fit", str(path), "--budget-minutes", "0.01", "--r-cut", "5.5", "-o", str(tmp_path / "m2.npz")]) == 0
    fixed = mb.fit.load_model(tmp_path / "m2.npz")
    assert fixed.basis.spec.r_cut == 5.5 and {r["r_cut"] for r in fixed.info["auto"]["table"]} == {5.5}
    assert fixed.basis.spec.radial["data"]["r_cut_choice"] == "given"
    assert main(["fit", str(path), "--model", "mlp", "-o", str(tmp_path / "x.npz")]) == 2


def test_correlation_order_five_is_invariant_with_exact_gradients():
    from scipy.spatial.transform import Rotation

    b = mb.Basis.ace(["Si"], 4.0, [3, 2, 2, 1, 1], [0, 1, 1, 1, 1], 5)
    assert max(b.counts_by_order()) == 5
    a = bulk("Si", "diamond", 5.43, cubic=True)
    a.rattle(0.1, seed=1)
    X = mb.describe(a, b)
    a2 = a.copy()
    a2.set_cell(a.cell @ Rotation.random(random_state=3).as_matrix().T, scale_atoms=True)
    np.testing.assert_allclose(mb.describe(a2, b), X, atol=1e-12 * np.abs(X).max())
    d = mb.describe(a, b, gradients=True)
    h = 1e-5
    ap, am = a.copy(), a.copy()
    ap.positions[3, 1] += h
    am.positions[3, 1] -= h
    fd = (mb.describe(ap, b) - mb.describe(am, b)) / (2 * h)
    s = d.gradient_samples
    sel = s[:, 1] == 3
    G = np.zeros_like(X)
    G[s[sel, 0]] = d.position_gradients[sel][:, 1, :]
    np.testing.assert_allclose(G, fd, atol=1e-7 * np.abs(fd).max())


def test_budget_projection_uses_the_measured_growth():
    # one measurement: worst-case growth (assembly ∝ P², solve ∝ P³, prediction ∝ P)
    assert project_seconds([(100, (10.0, 1.0, 2.0))], 200) == pytest.approx(40 + 8 + 4)
    # two: the measured exponents, within (1, 2), (2.5, 3) and exactly 1
    steps = [(100, (10.0, 1.0, 2.0)), (200, (20.0, 8.0, 4.0))]      # assembly grew ∝ P, solve ∝ P³
    assert project_seconds(steps, 400) == pytest.approx(40 + 64 + 8)
    steps = [(100, (10.0, 4.0, 2.0)), (200, (11.0, 5.0, 9.0))]      # below the floors: clipped up
    assert project_seconds(steps, 400) == pytest.approx(22 + 5 * 2**2.5 + 18)
    steps = [(100, (1.0, 1.0, 1.0)), (200, (100.0, 100.0, 1.0))]    # above the ceilings: clipped down
    assert project_seconds(steps, 400) == pytest.approx(400 + 800 + 2)
    with pytest.raises(MinbasisError):
        project_seconds([], 10)


def test_explicit_fit_smoothness_prior_chosen_by_evidence(cells):
    from minbasis.fit import LinearFitConfig, fit_linear
    from minbasis.fit.linear import linear_equations
    from minbasis.fit.solvers import SMOOTHNESS_POWERS, BayesianRidge, smoothness_weights, solve_system

    basis = mb.Basis.ace(["Cu", "Ni"], 5.0, [5, 3, 2], [0, 2, 1], 3, radial_scale=0.0)
    deg = basis_degrees(basis)
    assert deg.min() >= 1 and deg.max() > deg.min()
    np.testing.assert_allclose(smoothness_weights(deg, 0.2, "exponential"), np.exp(0.2 * deg))
    np.testing.assert_allclose(smoothness_weights(deg, 2.0), (1 + deg) ** 2)
    plain = fit_linear(basis, cells, stress_key="stress", config=LinearFitConfig(committee=0))
    for kind in SMOOTHNESS_POWERS:
        m = fit_linear(basis, cells, stress_key="stress", config=LinearFitConfig(committee=0, smoothness_prior=kind))
        ev = m.info["smoothness_log_evidence"]
        assert set(ev) == set(SMOOTHNESS_POWERS[kind]) and m.info["smoothness_prior"] == kind
        assert m.info["smoothness_power"] == max(ev, key=ev.get)  # the power of largest evidence
        assert m.info["log_evidence"] == pytest.approx(max(ev.values()))
    # a given power: the same solution as the solver with those prior weights
    cfg = LinearFitConfig(committee=0, smoothness_prior="algebraic", smoothness_power=4.0)
    m4 = fit_linear(basis, cells, stress_key="stress", config=cfg)
    eq = linear_equations(basis, cells, get_labels(cells, stress_key="stress"), cfg)
    ref = solve_system(eq.system(), BayesianRidge(), prior_weights=smoothness_weights(deg, 4.0))
    np.testing.assert_allclose(m4.weights.ravel(), ref.coef, rtol=1e-8, atol=1e-12)
    # the prior damps the high-degree coefficients relative to the isotropic prior
    hi = deg >= np.quantile(deg, 0.75)
    assert np.linalg.norm(m4.weights.ravel()[hi]) < np.linalg.norm(plain.weights.ravel()[hi])
    with pytest.raises(MinbasisError, match="smoothness_prior"):
        LinearFitConfig(smoothness_prior="gaussian")
    with pytest.raises(MinbasisError, match="needs solver 'bayesian'"):
        LinearFitConfig(smoothness_prior="algebraic", solver="ridge")
    with pytest.raises(MinbasisError, match="smoothness_power"):
        LinearFitConfig(smoothness_prior="algebraic", smoothness_power=-1.0)
