"""Committee uncertainty of linear fits: kernel exactness, calibration on a problem with known noise,
model files, calculator results, and the CLI outputs (calibration keys, parity plot, error tables)."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase.build import bulk

import minbasis as mb
from minbasis.cli import main
from minbasis.demo import bundled_ethanol_path
from minbasis.errors import MinbasisError
from minbasis.fit import LinearFitConfig, LinearModel, fit_linear, get_labels
from minbasis.fit.metrics import calibration, stratified_holdout, within_sigma
from minbasis.kernels import build_batch, linear_energy_forces
from minbasis.kernels.committee import linear_energy_forces_committee


@pytest.fixture(scope="module")
def cu_small():
    return mb.Basis.ace(["Cu"], 4.0, [4, 3], [0, 2], 2)


def _cells(n: int, seed: int, sigma: float = 0.12):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.6 + 0.05 * rng.standard_normal(), cubic=True).repeat((2, 2, 2))
        a.positions += sigma * rng.standard_normal(a.positions.shape)
        a.info["config_type"] = "hot" if k % 3 == 0 else "cold"
        out.append(a)
    return out


def _label(frames, truth: LinearModel, noise_f: float, noise_e_per_atom: float, seed: int):
    """Labels of a known linear model plus Gaussian noise of known size."""
    rng = np.random.default_rng(seed)
    pred = truth.predict(frames)
    for k, a in enumerate(frames):
        a.info["energy"] = pred.energy[k] + noise_e_per_atom * len(a) * rng.standard_normal()
        a.arrays["forces"] = pred.forces[k] + noise_f * rng.standard_normal(pred.forces[k].shape)
        a.info["true_energy"] = pred.energy[k]
        a.arrays["true_forces"] = pred.forces[k].copy()
    return frames


@pytest.fixture(scope="module")
def synthetic(cu_small):
    """A problem the Bayesian model describes exactly: the true coefficients are drawn from the
    solver's prior (i.i.d. Gaussian on unit-RMS columns) and the labels carry Gaussian noise of
    known size (0.05 eV/Å on forces, the same in weighted units on energies)."""
    from minbasis.fit.linear import linear_equations
    from minbasis.fit.solvers import column_scale

    noise_f = 0.05
    cells = _cells(40, 1)
    zero = LinearModel(basis=cu_small, weights=np.zeros((1, cu_small.n_features)), e0=np.array([-3.0]))
    _label(cells, zero, noise_f, noise_f / 30.0, 0)
    eq = linear_equations(cu_small, cells, get_labels(cells, "energy", "forces", None), LinearFitConfig())
    scale, _ = column_scale(eq.system())
    rng = np.random.default_rng(3)
    truth = LinearModel(basis=cu_small, weights=(0.5 * rng.standard_normal(cu_small.n_features) / scale)[None, :],
                        e0=np.array([-3.0]))
    train = _label(cells, truth, noise_f, noise_f / 30.0, 11)
    test = _label(_cells(30, 2), truth, noise_f, noise_f / 30.0, 12)
    model = fit_linear(cu_small, train, energy_key="energy", forces_key="forces",
                       config=LinearFitConfig(committee=32, committee_seed=5))
    return truth, model, train, test, noise_f


# -- kernel ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["ethanol", "hco_cell", "hco_cell_general_plan"])
def test_committee_forces_equal_members_evaluated_separately(hco_basis, ethanol, hco_cell, which):
    """Member energies, forces and virials of the one-pass kernel equal separately evaluated
    models; for the packed plan and for the general (unpacked) contraction."""
    import dataclasses

    atoms = ethanol if which == "ethanol" else hco_cell
    plan = hco_basis.plan
    if which.endswith("general_plan"):
        plan = dataclasses.replace(plan, t_pack=np.zeros(0, dtype=np.int64))
    rng = np.random.default_rng(0)
    C, F, K = plan.n_channels, hco_basis.n_features, 5
    w, e0 = 1e-2 * rng.standard_normal((C, F)), rng.standard_normal(C)
    dw, de0 = 1e-3 * rng.standard_normal((K, C, F)), 1e-2 * rng.standard_normal((K, C))
    batch = build_batch([atoms, atoms], plan.species, plan.numbers, plan.r_cut)
    E, Fo, W = linear_energy_forces(plan, batch, w, e0)
    Em, Fm, Wm, dE, dF, dW = linear_energy_forces_committee(plan, batch, w, e0, dw, de0)
    np.testing.assert_allclose(Em, E, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Fm, Fo, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Wm, W, rtol=0, atol=1e-12)
    for k in range(K):
        Ek, Fk, Wk = linear_energy_forces(plan, batch, w + dw[k], e0 + de0[k])
        np.testing.assert_allclose(E + dE[k], Ek, rtol=0, atol=1e-10)
        np.testing.assert_allclose(Fo + dF[k], Fk, rtol=0, atol=1e-10)
        np.testing.assert_allclose(W + dW[k], Wk, rtol=0, atol=1e-10)


@pytest.mark.parametrize("packed", [True, False])
def test_term_sums_give_feature_sums_and_member_energies(hco_basis, hco_cell, packed):
    """The term sums accumulated inside the mean model's contraction give Σ_i B_i per species
    (features evaluated directly) and the members' energy deviations; the mean is ace_linear's."""
    import dataclasses

    from minbasis.kernels.ace import ace_linear, n_chunks_for
    from minbasis.kernels.committee import ace_linear_term_sums, member_energy_deviations, term_sums_to_features

    plan = hco_basis.plan if packed else dataclasses.replace(hco_basis.plan, t_pack=np.zeros(0, dtype=np.int64))
    rng = np.random.default_rng(1)
    C, F, K = plan.n_channels, hco_basis.n_features, 8
    w, e0 = 1e-2 * rng.standard_normal((C, F)), rng.standard_normal(C)
    dw, de0 = 1e-3 * rng.standard_normal((K, C, F)), 1e-2 * rng.standard_normal((K, C))
    batch = build_batch([hco_cell], plan.species, plan.numbers, plan.r_cut)
    N, P, nc = batch.n_atoms, len(batch.pair_i), 3
    wt = np.ascontiguousarray(w[:, plan.t_feat] * plan.t_coef[None, :])
    args = (batch.centre_ptr, batch.centre_ch, batch.pair_vec, batch.pair_ch, C, plan.r_cut, plan.scale, plan.n_r,
            plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order, plan.t_idx, plan.o_ptr, plan.t_pack, wt, e0)
    E, G = np.zeros(N), np.zeros((P, 3))
    ace_linear(*args, n_chunks_for(N), E, G)
    Es, Gs, Vs = np.zeros(N), np.zeros((P, 3)), np.full((nc, C, len(plan.t_order)), np.nan)  # overwritten
    ace_linear_term_sums(*args, nc, Es, Gs, Vs)
    np.testing.assert_allclose(Es, E, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Gs, G, rtol=0, atol=1e-12)
    X = term_sums_to_features(plan, Vs)
    B = mb.describe([hco_cell], hco_basis)
    ch = batch.centre_ch
    np.testing.assert_allclose(X, np.stack([B[ch == c].sum(axis=0) for c in range(C)]), rtol=1e-10, atol=1e-10)
    dE = np.empty(K)
    member_energy_deviations(plan.t_feat, plan.t_coef, Vs, ch, np.ascontiguousarray(np.transpose(dw, (1, 2, 0))),
                             np.ascontiguousarray(de0.T), np.empty((C, F)), dE)
    *_, dEa, _, _ = linear_energy_forces_committee(hco_basis.plan, batch, w, e0, dw, de0)
    np.testing.assert_allclose(dE, dEa.sum(axis=1), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="term_sums"):
        term_sums_to_features(plan, Vs[:, :, 1:])


def test_committee_kernel_rejects_bad_shapes(hco_basis, ethanol):
    plan = hco_basis.plan
    C, F = plan.n_channels, hco_basis.n_features
    batch = build_batch([ethanol], plan.species, plan.numbers, plan.r_cut)
    with pytest.raises(ValueError, match="dweights"):
        linear_energy_forces_committee(plan, batch, np.zeros((C, F)), np.zeros(C), np.zeros((2, C, F + 1)),
                                       np.zeros((2, C)))
    with pytest.raises(ValueError, match="de0"):
        linear_energy_forces_committee(plan, batch, np.zeros((C, F)), np.zeros(C), np.zeros((2, C, F)),
                                       np.zeros((3, C)))


# -- fit, prediction, calibration ------------------------------------------------------------------------
def test_committee_members_are_posterior_draws(synthetic):
    truth, model, *_ = synthetic
    assert model.committee_size == 32
    assert model.committee_weights.shape == (32, 1, model.basis.n_features)
    assert model.committee_e0.shape == (32, 1)
    assert model.info["committee"]["size"] == 32
    # deviations from the mean, spread around 0
    assert abs(model.committee_weights.mean(axis=0)).max() < 3 * model.committee_weights.std(axis=0).max()


def test_calibration_on_problem_with_known_noise(synthetic):
    truth, model, train, test, noise_f = synthetic
    # the evidence recovers the noise level
    assert model.uncertainty["noise_forces"] == pytest.approx(noise_f, rel=0.1)
    pred = model.predict(test)
    labels = get_labels(test, "energy", "forces", None)
    cal = calibration(np.arange(len(test)), labels, pred)
    assert 0.64 <= cal["forces_within_1sigma"] <= 0.73
    assert cal["forces_within_2sigma"] >= 0.93
    # the committee spread alone describes the error of the mean function (noise-free truth)
    dF = np.concatenate([(pred.forces[k] - a.arrays["true_forces"]).ravel() for k, a in enumerate(test)])
    sF = np.concatenate([np.sqrt(np.maximum(s**2 - model.uncertainty["noise_forces"] ** 2, 0)).ravel()
                         for s in pred.forces_std])
    f1, f2 = within_sigma(dF, sF)
    assert 0.5 <= f1 <= 0.85 and f2 >= 0.85


def test_prediction_std_shapes_and_committee_energies(synthetic):
    _, model, _, test, _ = synthetic
    pred = model.predict(test[:3])
    assert pred.energy_std.shape == (3,) and (pred.energy_std > 0).all()
    assert [f.shape for f in pred.forces_std] == [(32, 3)] * 3
    assert pred.energy_committee.shape == (3, 32)
    assert pred.stress_std.shape == (3, 6) and np.isfinite(pred.stress_std).all()
    # member energies: mean + deviation, and they match a model built from one member
    k = 7
    member = LinearModel(basis=model.basis, weights=model.weights + model.committee_weights[k],
                         e0=model.e0 + model.committee_e0[k])
    np.testing.assert_allclose(pred.energy_committee[:, k], member.predict(test[:3]).energy, rtol=0, atol=1e-9)
    plain = model.predict(test[:3], committee=False)
    assert plain.energy_std is None and plain.forces_std is None
    np.testing.assert_allclose(plain.energy, pred.energy, rtol=0, atol=1e-10)


def test_uncertainty_scale_multiplies_the_committee_part(synthetic, cu_small):
    _, model, train, test, _ = synthetic
    import dataclasses

    u = dict(model.uncertainty, scale=2.0, noise_forces=0.0, noise_energy_per_atom=0.0, noise_stress_per_atom=0.0)
    u1 = dict(u, scale=1.0)
    p2 = dataclasses.replace(model, uncertainty=u).predict(test[:2])
    p1 = dataclasses.replace(model, uncertainty=u1).predict(test[:2])
    np.testing.assert_allclose(p2.forces_std[0], 2 * p1.forces_std[0], rtol=1e-12)
    np.testing.assert_allclose(p2.energy_std, 2 * p1.energy_std, rtol=1e-12)


def test_model_file_roundtrip_with_and_without_committee(synthetic, tmp_path):
    _, model, _, test, _ = synthetic
    model.save(tmp_path / "m.npz")
    back = LinearModel.load(tmp_path / "m.npz")
    assert back.committee_size == 32 and back.uncertainty == model.uncertainty
    np.testing.assert_array_equal(back.committee_weights, model.committee_weights)
    np.testing.assert_allclose(back.predict(test[:1]).forces_std[0], model.predict(test[:1]).forces_std[0])
    old = LinearModel(basis=model.basis, weights=model.weights, e0=model.e0, info={"solver": "ridge"})
    old.save(tmp_path / "old.npz")  # the layout of files written before committees (no extra arrays, hyper {})
    back = LinearModel.load(tmp_path / "old.npz")
    assert back.committee_size == 0 and back.predict(test[:1]).energy_std is None


def test_committee_options(cu_small, synthetic):
    _, _, train, _, _ = synthetic
    m0 = fit_linear(cu_small, train[:10], config=LinearFitConfig(committee=0))
    assert m0.committee_size == 0
    ridge = fit_linear(cu_small, train[:10], config=LinearFitConfig(solver="ridge"))
    assert ridge.committee_size == 0
    with pytest.raises(MinbasisError, match="committee"):
        LinearFitConfig(solver="ridge", committee=4)
    with pytest.raises(MinbasisError, match="committee"):
        LinearFitConfig(committee=-1)
    with pytest.raises(MinbasisError, match="committee"):
        LinearModel(basis=cu_small, weights=np.zeros((1, cu_small.n_features)), e0=np.zeros(1),
                    committee_weights=np.zeros((2, 1, 3)), committee_e0=np.zeros((2, 1)))


def test_calculator_results_have_std(synthetic):
    _, model, _, test, _ = synthetic
    atoms = test[0].copy()
    ref = model.predict(atoms)
    atoms.calc = model.calculator(committee=True)
    f = atoms.get_forces()
    r = atoms.calc.results
    # energy_std every step, from the mean model's own pass; forces/stress std when asked for
    assert isinstance(r["energy_std"], float) and r["energy_std"] == pytest.approx(ref.energy_std[0], rel=1e-10)
    assert "forces_std" not in r and "stress_std" not in r
    assert atoms.calc.get_property("energy_std") == r["energy_std"]
    fs = atoms.calc.get_property("forces_std", atoms)
    assert fs.shape == f.shape and (fs > 0).all()
    np.testing.assert_allclose(fs, ref.forces_std[0], rtol=1e-10)
    np.testing.assert_allclose(atoms.calc.get_property("stress_std", atoms), ref.stress_std[0], rtol=1e-10)
    np.testing.assert_allclose(atoms.calc.results["forces"], f, rtol=0, atol=0)  # not recomputed
    # steps on the reused neighbour list
    rng = np.random.default_rng(4)
    for _ in range(3):
        atoms.positions += 0.02 * rng.standard_normal(atoms.positions.shape)
        atoms.get_forces()
        ref = model.predict(atoms)
        assert atoms.calc.results["energy_std"] == pytest.approx(ref.energy_std[0], rel=1e-10)
        np.testing.assert_allclose(atoms.calc.get_property("forces_std", atoms), ref.forces_std[0], rtol=1e-10)
    assert atoms.calc.n_neighbour_builds == 1
    # "all": every std on every step
    atoms.calc = model.calculator(committee="all")
    atoms.get_forces()
    np.testing.assert_allclose(atoms.calc.results["forces_std"], ref.forces_std[0], rtol=1e-10)
    np.testing.assert_allclose(atoms.calc.results["stress_std"], ref.stress_std[0], rtol=1e-10)
    atoms.calc = model.calculator(committee=False)
    np.testing.assert_allclose(atoms.get_forces(), ref.forces[0], rtol=0, atol=1e-12)
    assert "forces_std" not in atoms.calc.results and "energy_std" not in atoms.calc.results
    atoms.calc = model.calculator(committee=False, fast=False)
    atoms.get_forces()
    assert "energy_std" not in atoms.calc.results
    atoms.calc = model.calculator(fast=False)
    atoms.get_forces()
    np.testing.assert_allclose(atoms.calc.results["forces_std"], ref.forces_std[0], rtol=1e-10)
    atoms.calc = model.calculator()  # default: the committee's energy_std on every step
    atoms.get_forces()
    assert atoms.calc.results["energy_std"] == pytest.approx(ref.energy_std[0], rel=1e-10)
    big = _cells(1, 7)[0].repeat((2, 1, 2))  # 128 atoms: the threaded kernel, one term-sum buffer per thread
    big.calc = model.calculator()
    ref = model.predict(big)
    big.get_forces()
    assert len(big) >= 64 and big.calc.results["energy_std"] == pytest.approx(ref.energy_std[0], rel=1e-10)
    np.testing.assert_allclose(big.calc.get_property("forces_std", big), ref.forces_std[0], rtol=1e-10)
    with pytest.raises(ValueError, match="committee"):
        model.calculator(committee="forces")


def test_calculator_std_multispecies_molecule_and_repulsion(hco_basis, ethanol):
    """energy_std / forces_std of the fast path equal predict's for a 3-species molecule (serial
    kernel path) and for a model with a repulsive core; a model without committee has none."""
    from ase.calculators.calculator import PropertyNotImplementedError

    from minbasis.repulsion import ZBLCore

    rng = np.random.default_rng(2)
    C, F, K = 3, hco_basis.n_features, 8
    kw = dict(basis=hco_basis, weights=1e-2 * rng.standard_normal((C, F)), e0=rng.standard_normal(C),
              committee_weights=1e-3 * rng.standard_normal((K, C, F)), committee_e0=1e-2 * rng.standard_normal((K, C)),
              uncertainty={"noise_energy_per_atom": 1e-3, "noise_forces": 0.02, "calibration": 1.3,
                           "calibration_energy": 0.8})
    for model in (LinearModel(**kw), LinearModel(**kw, repulsion=ZBLCore(("H", "C", "O"), r_in=1.0, width=0.5))):
        atoms = ethanol.copy()
        atoms.calc = model.calculator(committee=True)
        ref = model.predict(atoms)
        assert atoms.get_potential_energy() == pytest.approx(ref.energy[0], abs=1e-10)
        assert atoms.calc.results["energy_std"] == pytest.approx(ref.energy_std[0], rel=1e-10)
        np.testing.assert_allclose(atoms.calc.get_property("forces_std", atoms), ref.forces_std[0], rtol=1e-10)
        with pytest.raises(PropertyNotImplementedError):
            atoms.calc.get_property("stress_std", atoms)
    atoms = ethanol.copy()
    atoms.calc = LinearModel(basis=hco_basis, weights=kw["weights"], e0=kw["e0"]).calculator(committee=True)
    with pytest.raises(PropertyNotImplementedError):
        atoms.calc.get_property("energy_std", atoms)


def test_within_sigma_and_stratified_holdout():
    assert within_sigma(np.array([0.5, -1.5, 3.0, np.nan]), np.ones(4)) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    cts = ["a"] * 10 + ["b"] * 5 + ["c"]
    held, rest = stratified_holdout(cts, 0.2, seed=1)
    assert sorted(np.concatenate([held, rest]).tolist()) == list(range(16))
    assert [np.sum(np.asarray(cts)[held] == c) for c in "abc"] == [2, 1, 0]
    assert stratified_holdout(cts, 0.2, seed=1)[0].tolist() == held.tolist()
    assert len(stratified_holdout(cts, 0.0)[0]) == 0
    with pytest.raises(MinbasisError, match="fraction"):
        stratified_holdout(cts, 1.0)


# -- CLI -----------------------------------------------------------------------------------------------
def test_cli_fit_tables_evaluate_calibration_and_parity(capsys, tmp_path):
    frames = ase.io.read(bundled_ethanol_path(), index=":50")
    ase.io.write(tmp_path / "train.extxyz", frames[:40])
    ase.io.write(tmp_path / "test.extxyz", frames[40:])
    b = tmp_path / "b.json"
    assert main(["basis", "--species", "H,C,O", "--r-cut", "4.5", "--n-max", "4,3", "--l-max", "0,2", "--order", "2",
                 "-o", str(b)]) == 0
    keys = ["--energy-key", "energy_high", "--forces-key", "forces_high"]
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "train.extxyz"), "--basis", str(b), *keys, "--validation-fraction", "0.25",
                 "--committee", "8", "-o", str(tmp_path / "m.npz")]) == 0
    out = capsys.readouterr().out
    assert "committee of 8" in out and "training errors (30 structures)" in out
    assert "validation errors (10 structures" in out and "calibration" in out
    assert LinearModel.load(tmp_path / "m.npz").committee_size == 8
    png = tmp_path / "parity.png"
    assert main(["evaluate", str(tmp_path / "m.npz"), str(tmp_path / "test.extxyz"), *keys, "--json",
                 "--parity", str(png)]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("forces_within_1sigma", "forces_within_2sigma", "energy_within_1sigma", "energy_within_2sigma"):
        assert 0.0 <= res["calibration"][key] <= 1.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # --committee 0: no committee, no calibration block
    assert main(["fit", str(tmp_path / "train.extxyz"), "--basis", str(b), *keys, "--committee", "0",
                 "-o", str(tmp_path / "m0.npz")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m0.npz"), str(tmp_path / "test.extxyz"), *keys, "--json"]) == 0
    assert "calibration" not in json.loads(capsys.readouterr().out)


def test_calibration_factor_near_one_on_a_well_specified_problem(cu_small, synthetic):
    _, _, train, test, _ = synthetic
    model = fit_linear(cu_small, train, config=LinearFitConfig(committee=16, calibration_fraction=0.25))
    t = model.uncertainty["calibration"]
    assert 0.8 < t < 1.25 and model.info["committee"]["calibration"] == t
    te = model.uncertainty["calibration_energy"]  # energies get their own factor
    assert 0.5 < te < 2.0 and te != t
    base = fit_linear(cu_small, train, config=LinearFitConfig(committee=16))
    np.testing.assert_allclose(model.predict(test[:1]).forces_std[0], t * base.predict(test[:1]).forces_std[0],
                               rtol=1e-10)
    np.testing.assert_allclose(model.predict(test[:3]).energy_std, te * base.predict(test[:3]).energy_std, rtol=1e-10)
    with pytest.raises(MinbasisError, match="calibration_fraction"):
        LinearFitConfig(calibration_fraction=1.0)


def test_calibration_scale_minimises_the_crps():
    from types import SimpleNamespace

    from scipy.stats import norm

    from minbasis.fit.data import Labels
    from minbasis.fit.linear import calibration_scale

    rng = np.random.default_rng(3)

    def scale_of(err, sigma):
        pred = SimpleNamespace(forces=[err], forces_std=[np.broadcast_to(sigma, err.shape)], energy_std=None)
        labels = Labels(energy=None, forces=[np.zeros_like(err)], stress=None, config_type=np.array(["x"]))
        return calibration_scale(pred, labels)

    def crps(err, sigma):
        u = np.abs(err) / sigma
        return np.mean(sigma * (u * (2 * norm.cdf(u) - 1) + 2 * norm.pdf(u) - 1 / np.sqrt(np.pi)))

    # Gaussian errors of std 0.2 with σ = 0.1: the proper score recovers t = 2
    err = rng.normal(0.0, 0.2, size=(20000, 3))
    assert scale_of(err, 0.1) == pytest.approx(2.0, rel=0.03)
    # per-point σ (heteroscedastic): errors drawn with std 3σ_i give t = 3
    sig = rng.uniform(0.05, 0.5, size=(20000, 3))
    t = scale_of(rng.normal(0.0, 1.0, size=sig.shape) * 3 * sig, sig)
    assert t == pytest.approx(3.0, rel=0.03)
    # heavy tails (Student t, 3 dof): the minimum of the mean CRPS, between the factor that
    # matches the 68 % quantile and the log-likelihood's sqrt(mean z²)
    err = rng.standard_t(3, size=(20000, 3))
    z = np.abs(err).ravel()
    t = scale_of(err, 1.0)
    for f in (0.97, 1.03):
        assert crps(err, t) < crps(err, f * t)
    assert np.quantile(z, 0.6827) < t < np.sqrt(np.mean(z**2))
    with pytest.raises(MinbasisError, match="committee"):
        calibration_scale(SimpleNamespace(forces=[err], forces_std=None, energy_std=None),
                          Labels(energy=None, forces=[err], stress=None, config_type=np.array(["x"])))
