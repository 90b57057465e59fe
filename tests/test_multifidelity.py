"""Multi-fidelity linear fits, PIWSL rows, prior-mean meta-learning and their CLI (issue 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minbasis as mb
from minbasis.demo import bundled_ethanol_path
from minbasis.errors import LabelError, FileFormatError, MinbasisError
from minbasis.fit import LinearModel, read_structures
from minbasis.fit.fidelity import FidelityData, load_fit_config, parse_data_spec
from minbasis.fit.network import Architecture
from minbasis.fit.multifidelity import (MultiFidelityModel, PIWSLConfig, design_rows,
                                        fidelity_blocks, fit_blocks, fit_linear_mf, fit_linear_prior, piwsl_rows,
                                        solve_delta)


@pytest.fixture(scope="module")
def frames():
    return read_structures(bundled_ethanol_path())[:36]


@pytest.fixture(scope="module")
def basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2)


def test_missing_labels_and_zero_weights_contribute_nothing(basis, frames):
    tr = frames[:12]
    only_e = fidelity_blocks(basis, [FidelityData(tr, "high", energy_key="energy_high")])[0]
    zero_f = fidelity_blocks(basis, [FidelityData(tr, "high", energy_key="energy_high", forces_key="forces_high",
                                                  weights={"forces": 0.0})])[0]
    assert only_e.info["force_rows"] == 0 and zero_f.info["force_rows"] == 0
    np.testing.assert_array_equal(only_e.G, zero_f.G)
    np.testing.assert_array_equal(only_e.b, zero_f.b)
    # forces of another fidelity never enter the high block
    blocks = fidelity_blocks(basis, [FidelityData(tr, "high", energy_key="energy_high"),
                                     FidelityData(tr, "dft", forces_key="forces_dft")])
    hi = [b for b in blocks if b.fidelity == "high"][0]
    np.testing.assert_allclose(hi.G, only_e.G)
    assert [b.info["energy_rows"] for b in blocks] == [12, 0]


def test_weights_per_fidelity_and_observable(basis, frames):
    tr = frames[:10]
    base = fidelity_blocks(basis, [FidelityData(tr, "dft", energy_key="energy_dft", weights={"forces": 0})])[0]
    double = fidelity_blocks(basis, [FidelityData(tr, "dft", energy_key="energy_dft",
                                                  weights={"energy": 60.0, "forces": 0})])[0]
    np.testing.assert_allclose(double.G, 4.0 * base.G, rtol=1e-10, atol=1e-12)
    f1 = fidelity_blocks(basis, [FidelityData(tr, "dft", forces_key="forces_dft")])[0]
    f3 = fidelity_blocks(basis, [FidelityData(tr, "dft", forces_key="forces_dft", weights={"forces": 3.0})])[0]
    np.testing.assert_allclose(f3.G, 9.0 * f1.G, rtol=1e-10)
    # config_type weights act per structure
    ct = tr[0].info["config_type"]
    rest = [a for a in tr if a.info["config_type"] != ct]
    zero_ct = [FidelityData(tr, "dft", forces_key="forces_dft", weights={"config_type": {ct: 0.0}})]
    if rest:
        fw = fidelity_blocks(basis, zero_ct)[0]
        ref = fidelity_blocks(basis, [FidelityData(rest, "dft", forces_key="forces_dft")])[0]
        np.testing.assert_allclose(fw.G, ref.G, rtol=1e-9, atol=1e-9)
    else:  # every structure weighted 0: nothing to fit is an error, not a zero model
        with pytest.raises(LabelError, match="nothing to fit"):
            fidelity_blocks(basis, zero_ct)
    with pytest.raises(MinbasisError, match="unknown weight"):
        FidelityData(tr, "dft", forces_key="forces_dft", weights={"force": 1.0})


def test_fidelity_only_in_training_and_unseen_fidelity(basis, frames):
    tr, te = frames[:24], frames[24:]
    data = [FidelityData(tr[:8], "high", energy_key="energy_high"),
            FidelityData(tr, "dft", energy_key="energy_dft", forces_key="forces_dft")]
    m = fit_linear_mf(basis, data)
    assert m.fidelities == ["high", "dft"]
    p_dft = m.predict(te, fidelity="dft")
    E = np.array([a.info["energy_dft"] for a in te])
    assert np.mean(np.abs(p_dft.energy - E)) < 0.3
    with pytest.raises(MinbasisError, match=r"'ccsd'.*known fidelities: \['high', 'dft'\]"):
        m.predict(te, fidelity="ccsd")
    with pytest.raises(MinbasisError, match="known fidelities"):
        m.calculator(fidelity="gfn2")
    atoms = te[0].copy()
    atoms.calc = m.calculator(fidelity="high")
    np.testing.assert_allclose(atoms.get_potential_energy(), m.predict(te[0], "high").energy[0])


def test_delta_with_infinite_d_ridge_is_the_joint_fit(basis, frames):
    tr = frames[:20]
    data = [FidelityData(tr[:10], "high", energy_key="energy_high", forces_key="forces_high"),
            FidelityData(tr, "dft", energy_key="energy_dft", forces_key="forces_dft")]
    blocks = fidelity_blocks(basis, data)
    r_c = 1e-3
    coefs, c_ref, _ = solve_delta(blocks, r_c, np.inf)
    np.testing.assert_allclose(coefs[0], coefs[1])
    # the same problem written out: stacked rows, energy rows projected per fidelity, ridge on unit-RMS columns
    G = sum(b.G for b in blocks)
    bb = sum(b.b for b in blocks)
    n = sum(b.n_rows for b in blocks)
    s = np.sqrt(np.diag(G) / n)
    act = s > 1e-12 * s.max()
    Gs = G[np.ix_(act, act)] / np.outer(s[act], s[act])
    ref = np.zeros_like(c_ref)
    ref[act] = np.linalg.solve(Gs + r_c * np.eye(act.sum()), bb[act] / s[act]) / s[act]
    np.testing.assert_allclose(c_ref, ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())
    # a huge but finite d ridge approaches it; a small one decouples the fidelities
    near, _, _ = solve_delta(blocks, r_c, 1e9)
    np.testing.assert_allclose(near[0], coefs[0], atol=1e-4 * np.abs(coefs).max())
    loose, _, _ = solve_delta(blocks, r_c, 1e-6)
    assert np.linalg.norm(loose[0] - loose[1]) > 1e-3 * np.linalg.norm(loose[0])


def test_uncoupled_equals_separate_fits(basis, frames):
    tr = frames[:16]
    data = [FidelityData(tr[:8], "high", energy_key="energy_high"),
            FidelityData(tr, "dft", energy_key="energy_dft", forces_key="forces_dft")]
    m = fit_linear_mf(basis, data, coupling="none")
    alone = fit_linear_mf(basis, data[:1], coupling="none")
    np.testing.assert_allclose(m.weights[0], alone.weights[0], rtol=1e-8, atol=1e-12)
    delta = fit_linear_mf(basis, data)  # evidence-chosen r_c, r_d
    assert delta.info["r_c"] > 0 and delta.info["r_d"] > 0 and delta.info["evidence_evaluations"] >= 9


def test_piwsl_rows_are_exact_for_a_linear_model(basis, frames):
    tr = frames[:10]
    lin = fit_linear_mf(basis, [FidelityData(tr, "high", energy_key="energy_high", forces_key="forces_high")])
    head = lin.head("high")
    c = head.weights.reshape(-1)
    cfg = PIWSLConfig(delta=0.02, seed=3)
    tay, path = piwsl_rows(basis, frames[20:23], cfg)
    from minbasis.fit.multifidelity import _displaced, piwsl_displacements

    sub = frames[20:23]
    d1, d2 = piwsl_displacements(sub, cfg)
    p0, p1, p2 = head.predict(sub), head.predict(_displaced(sub, d1)), head.predict(_displaced(sub, d2))
    for m, a in enumerate(sub):
        n = len(a)
        t_ref = (p1.energy[m] - p0.energy[m] + np.sum(p0.forces[m] * d1[m])) / n
        s_ref = (p1.energy[m] - p2.energy[m] + np.sum(p2.forces[m] * (d1[m] - d2[m]))) / n
        assert abs(tay[m] @ c - t_ref) < 1e-9 and abs(path[m] @ c - s_ref) < 1e-9
    # the Taylor residual of the fitted model is second order in δ
    res = []
    for delta in (0.01, 0.005):
        t, _ = piwsl_rows(basis, sub, PIWSLConfig(delta=delta, seed=3))
        res.append(np.abs(t @ c))
    ratio = res[0] / res[1]
    assert np.all((ratio > 3.5) & (ratio < 4.5)), ratio
    # PIWSL rows enter the fit as extra rows of the energy-labelled fidelity
    with_p = fidelity_blocks(basis, [FidelityData(tr, "high", energy_key="energy_high")],
                             piwsl=PIWSLConfig(lambda_tc=1.2, lambda_sc=0.01))[0]
    assert with_p.info["piwsl_rows"] == 2 * len(tr)
    with pytest.raises(MinbasisError, match="delta"):
        PIWSLConfig(delta=0.0)


def test_prior_mean_meta_learning(basis, frames):
    tr = frames[:20]
    data = [FidelityData(tr[:6], "high", energy_key="energy_high")] + [
        FidelityData(tr, f, energy_key=f"energy_{f}", forces_key=f"forces_{f}") for f in ("dft", "low", "gfn2")]
    m = fit_linear_prior(basis, data, target="high")
    assert m.info["prior_from"] == ["dft", "low", "gfn2"] and m.fidelities[0] == "high"
    p = m.predict(frames[24:30], "high")
    assert np.isfinite(p.energy).all()
    with pytest.raises(MinbasisError, match="not in the training data"):
        fit_linear_prior(basis, data, target="ccsd")


def test_save_load_roundtrip_and_corrupt_files(basis, frames, tmp_path):
    data = [FidelityData(frames[:6], "high", energy_key="energy_high"),
            FidelityData(frames[:12], "dft", forces_key="forces_dft", energy_key="energy_dft")]
    m = fit_linear_mf(basis, data)
    path = tmp_path / "mf.npz"
    m.save(path)
    back = mb.fit.load_model(path)
    assert isinstance(back, MultiFidelityModel) and back.fidelities == m.fidelities
    np.testing.assert_array_equal(back.weights, m.weights)
    np.testing.assert_allclose(back.predict(frames[30:32], "high").energy, m.predict(frames[30:32], "high").energy)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FileFormatError):
        MultiFidelityModel.load(bad)
    # an edited weight fails the hash check
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["weights"] = arrays["weights"] * 1.0001
    edited = tmp_path / "edited.npz"
    np.savez(edited, **arrays)
    with pytest.raises(FileFormatError, match="hash"):
        MultiFidelityModel.load(edited)
    with pytest.raises(FileFormatError, match="linear-mf"):
        LinearModel.load(path)
    with pytest.raises(MinbasisError, match="distinct"):
        MultiFidelityModel(basis, ["a", "a"], m.weights, m.e0)


def test_data_spec_and_toml(tmp_path, frames):
    import ase.io

    f = tmp_path / "d.extxyz"
    ase.io.write(f, frames[:3])
    cache: dict = {}
    a = parse_data_spec(f"{f}:fidelity=high:energy_key=energy_high:energy_weight=10", cache)
    b = parse_data_spec(f"{f}:fidelity=dft:forces_key=forces_dft", cache)
    assert a.structures is b.structures and a.weights["energy"] == 10.0 and a.forces_key is None
    with pytest.raises(MinbasisError, match="fidelity"):
        parse_data_spec(f"{f}:energy_key=energy_high")
    with pytest.raises(MinbasisError, match="unknown field"):
        parse_data_spec(f"{f}:fidelity=x:energy=energy_high")
    cfg = tmp_path / "fit.toml"
    cfg.write_text('model = "linear-mf"\n[[data]]\nfile = "d.extxyz"\nfidelity = "high"\nenergy_key = "energy_high"\n'
                   '[[data]]\nfile = "d.extxyz"\nfidelity = "dft"\nforces_key = "forces_dft"\n'
                   'weights = {forces = 2.0}\n')
    out = load_fit_config(cfg)
    assert out["model"] == "linear-mf" and [d.fidelity for d in out["data"]] == ["high", "dft"]
    assert out["data"][1].weights["forces"] == 2.0


def test_cli_roundtrip(tmp_path, frames, basis, capsys):
    import ase.io

    from minbasis.cli import main

    train, test = tmp_path / "train.extxyz", tmp_path / "test.extxyz"
    ase.io.write(train, frames[:20])
    ase.io.write(test, frames[28:34])
    bpath = tmp_path / "basis.json"
    basis.save(bpath)
    out = tmp_path / "mf.npz"
    rc = main(["fit", "--basis", str(bpath), "--data", f"{train}:fidelity=high:energy_key=energy_high",
               "--data", f"{train}:fidelity=dft:forces_key=forces_dft:energy_key=energy_dft",
               "--model", "linear-mf", "-o", str(out)])
    assert rc == 0 and out.exists()
    capsys.readouterr()
    rc = main(["evaluate", str(out), str(test), "--fidelity", "high", "--energy-key", "energy_high",
               "--forces-key", "forces_high", "--json"])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_structures"] == 6 and metrics["forces_mae"] < 2.0
    rc = main(["evaluate", str(out), str(test), "--fidelity", "ccsd", "--energy-key", "energy_high", "--no-forces",
               "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and "known fidelities" in err and err.count("\n") == 1
    rc = main(["evaluate", str(out), str(test), "--energy-key", "energy_high", "--no-forces", "--json"])
    assert rc == 2 and "--fidelity" in capsys.readouterr().err
    cfg = tmp_path / "fit.toml"
    cfg.write_text('basis = "basis.json"\ncoupling = "none"\n[[data]]\nfile = "train.extxyz"\nfidelity = "high"\n'
                   'energy_key = "energy_high"\n')
    rc = main(["fit", "--config", str(cfg), "-o", str(tmp_path / "m2.npz")])
    assert rc == 0
    assert mb.fit.load_model(tmp_path / "m2.npz").info["coupling"] == "none"


def test_mlp_mf_gradient_matches_finite_differences(basis, frames):
    from minbasis.fit.fidelity import fidelity_names
    from minbasis.fit.mlp_mf import MLPMultiFidelityConfig, _entries, _Problem

    data = [FidelityData(frames[:4], "high", energy_key="energy_high"),
            FidelityData(frames[:6], "dft", energy_key="energy_dft", forces_key="forces_dft")]
    cfg = MLPMultiFidelityConfig(hidden=3, piwsl=PIWSLConfig(lambda_tc=1.2, lambda_sc=0.5))
    ents = _entries(basis, data, fidelity_names(data), cfg, [np.arange(4), np.arange(6)], {})
    C, F = 3, basis.n_features
    rng = np.random.default_rng(1)
    for shared in (True, False):
        S = 1 if shared else 2
        e0 = np.array([[ -300.0, -1000.0, -2000.0]] * 2)  # roughly centres the energies
        prob = _Problem(ents, Architecture(C, F, (3,), n_heads=2, n_trunks=S), np.zeros((C, F)), np.full((C, F), 5.0),
                        0.5, e0, 1e-3)
        n = S * C * F * 3 + S * C * 3 + 2 * C * 3 + 2 * C
        th = 0.3 * rng.standard_normal(n)
        _, g = prob(th)
        for j in rng.choice(n, 8, replace=False):
            e = np.zeros(n)
            e[j] = 1e-4
            fd = (prob(th + e, False)[0] - prob(th - e, False)[0]) / 2e-4
            assert abs(fd - g[j]) <= 1e-5 * max(1.0, abs(g[j])) + 1e-6 * abs(prob(th, False)[0]) * 1e-2, (j, fd, g[j])


def test_mlp_mf_fit_predict_save(basis, frames, tmp_path):
    from minbasis.fit.mlp_mf import MLPMultiFidelityConfig, MLPMultiFidelityModel, fit_mlp_mf

    data = [FidelityData(frames[:8], "high", energy_key="energy_high"),
            FidelityData(frames[:16], "dft", energy_key="energy_dft", forces_key="forces_dft")]
    m = fit_mlp_mf(basis, data, MLPMultiFidelityConfig(hidden=6, max_iter=40))
    assert m.shared and m.fidelities == ["high", "dft"]
    p = m.predict(frames[30:32], "dft")
    assert np.all(np.abs(p.energy - [a.info["energy_dft"] for a in frames[30:32]]) < 2.0)
    with pytest.raises(MinbasisError, match="known fidelities"):
        m.predict(frames[30:32], "ccsd")
    m.save(tmp_path / "m.npz")
    back = mb.fit.load_model(tmp_path / "m.npz")
    assert isinstance(back, MLPMultiFidelityModel)
    np.testing.assert_allclose(back.predict(frames[30:31], "high").forces[0], m.predict(frames[30:31], "high").forces[0])
    atoms = frames[30].copy()
    atoms.calc = m.calculator("high")
    np.testing.assert_allclose(atoms.get_forces(), m.predict(frames[30], "high").forces[0])
    unc = fit_mlp_mf(basis, data, MLPMultiFidelityConfig(hidden=6, max_iter=5, shared=False))
    assert not unc.shared and unc.W.shape[0] == 2


def test_reptile_pretrain_then_finetune(basis, frames):
    from minbasis.fit.mlp_mf import MLPMultiFidelityConfig, fit_mlp_mf, reptile_pretrain

    levels = [FidelityData(frames[:10], f, energy_key=f"energy_{f}", forces_key=f"forces_{f}") for f in ("dft", "low")]
    cfg = MLPMultiFidelityConfig(hidden=4, max_iter=10)
    init = reptile_pretrain(basis, levels, cfg, outer=3, inner=3, extra_structures=frames[:5])
    assert init["theta"].shape == (3 * basis.n_features * 4 + 3 * 4 + 3 * 4 + 3,) and len(init["levels"]) == 3
    m = fit_mlp_mf(basis, [FidelityData(frames[:5], "high", energy_key="energy_high")], cfg, init=init)
    np.testing.assert_allclose(m.std, init["std"])
    assert np.isfinite(m.predict(frames[30:31], "high").energy).all()


def test_per_fidelity_noise_downweights_a_noisy_fidelity(basis, frames):
    """Evidence-chosen noise levels per fidelity: adding noise to one fidelity's labels lowers its weight ω."""
    import copy

    tr = frames[:24]
    rng = np.random.default_rng(5)
    noisy = []
    for a in tr:
        b = copy.copy(a)
        b.info = dict(a.info)
        b.arrays = {k: v.copy() for k, v in a.arrays.items()}
        b.info["energy_dft"] = a.info["energy_dft"] + rng.normal(0.0, 0.5)
        b.arrays["forces_dft"] = a.arrays["forces_dft"] + rng.normal(0.0, 1.0, a.arrays["forces_dft"].shape)
        noisy.append(b)
    hi = FidelityData(tr[:10], "high", energy_key="energy_high", forces_key="forces_high")
    out = {}
    for name, low in (("clean", tr), ("noisy", noisy)):
        blocks = fidelity_blocks(basis, [hi, FidelityData(low, "dft", energy_key="energy_dft", forces_key="forces_dft")])
        _, _, info = fit_blocks(blocks, coupling="delta", n_channels=3)
        _, _, shared = fit_blocks(blocks, coupling="delta", n_channels=3, noise="shared")
        assert info["noise_weights"]["high"] == 1.0 and shared["noise_weights"] == {"high": 1.0, "dft": 1.0}
        assert info["log_evidence"] >= shared["log_evidence"] - 1e-9
        out[name] = info
    assert out["noisy"]["noise_weights"]["dft"] < 0.1 * out["clean"]["noise_weights"]["dft"], out
    assert out["noisy"]["noise_rms"]["dft"] > 3.0 * out["clean"]["noise_rms"]["dft"]
    # the weights are what solve_delta uses: re-solving at the chosen point reproduces the evidence
    blocks = fidelity_blocks(basis, [hi, FidelityData(noisy, "dft", energy_key="energy_dft", forces_key="forces_dft")])
    info = out["noisy"]
    _, _, lev = solve_delta(blocks, info["r_c"], info["r_d"], noise_weights=[1.0, info["noise_weights"]["dft"]])
    assert abs(lev - info["log_evidence"]) < 1e-6 * abs(lev)
    with pytest.raises(MinbasisError, match="noise model"):
        fit_blocks(blocks, noise="separate")


def _cu_cells(n, seed):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.lj import LennardJones

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        eps = rng.uniform(-0.02, 0.02, (3, 3))
        a.set_cell(a.cell @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        a.positions += rng.normal(0.0, 0.05, a.positions.shape)
        for name, calc in (("emt", EMT()), ("lj", LennardJones(sigma=2.33, epsilon=0.41, rc=4.5, smooth=True))):
            a.calc = calc
            a.info[f"energy_{name}"] = a.get_potential_energy()
            a.arrays[f"forces_{name}"] = a.get_forces()
            a.info[f"stress_{name}"] = a.get_stress()
        a.calc = None
        out.append(a)
    return out


def test_multifidelity_stress_rows_enter_the_fit_and_are_predicted():
    """Periodic two-fidelity case (EMT 'high', Lennard-Jones 'low' on strained, rattled Cu cells)."""
    cu = mb.Basis.ace(["Cu"], 4.0, [3, 2], [0, 1], 2)
    cells = _cu_cells(14, seed=2)
    tr, te = cells[:10], cells[10:]
    low = FidelityData(tr, "low", energy_key="energy_lj", forces_key="forces_lj", stress_key="stress_lj")

    def high(w):
        return FidelityData(tr[:6], "high", energy_key="energy_emt", stress_key="stress_emt", weights={"stress": w})

    blocks = fidelity_blocks(cu, [high(30.0), low])
    assert [b.info["virial_rows"] for b in blocks] == [36, 60] and blocks[0].info["force_rows"] == 0
    without = fidelity_blocks(cu, [high(0.0), low])
    assert without[0].info["virial_rows"] == 0 and not np.allclose(without[0].G, blocks[0].G)
    m = fit_linear_mf(cu, [high(30.0), low])
    m0 = fit_linear_mf(cu, [high(0.0), low])
    # what the fit's virial rows say (XV·c = V σ) is what predict returns
    rows = design_rows(cu, te, with_virial=True)
    for k, f in enumerate(m.fidelities):
        vol = np.array([a.get_volume() for a in te])
        np.testing.assert_allclose(m.predict(te, f).stress, rows.XV @ m.weights[k].reshape(-1) / vol[:, None],
                                   rtol=1e-8, atol=1e-10)
    # EMT stress labels improve the EMT head's stress, on training and held-out cells
    for part in (tr[:6], te):
        ref = np.array([a.info["stress_emt"] for a in part])
        err = np.mean(np.abs(m.predict(part, "high").stress - ref))
        err0 = np.mean(np.abs(m0.predict(part, "high").stress - ref))
        assert err < 0.5 * err0, (err, err0)
    lj = np.array([a.info["stress_lj"] for a in te])
    assert np.mean(np.abs(m.predict(te, "low").stress - lj)) < 0.2 * np.mean(np.abs(lj))


def test_mlp_mf_silu_gradient_and_uncoupled_equals_separate_fits(basis, frames):
    from minbasis.fit.fidelity import fidelity_names
    from minbasis.fit.mlp_mf import MLPMultiFidelityConfig, _entries, _Problem, fit_mlp_mf

    data = [FidelityData(frames[:5], "high", energy_key="energy_high"),
            FidelityData(frames[:6], "dft", energy_key="energy_dft", forces_key="forces_dft")]
    cfg = MLPMultiFidelityConfig(hidden=3, activation="silu")
    ents = _entries(basis, data, fidelity_names(data), cfg, [np.arange(5), np.arange(6)], {})
    C, F = 3, basis.n_features
    rng = np.random.default_rng(2)
    e0 = np.array([[-300.0, -1000.0, -2000.0]] * 2)
    prob = _Problem(ents, Architecture(C, F, (3,), n_heads=2), np.zeros((C, F)), np.full((C, F), 5.0), 0.5, e0, 1e-3,
                    "silu")
    n = C * F * 3 + C * 3 + 2 * C * 3 + 2 * C
    th = 0.3 * rng.standard_normal(n)
    L, g = prob(th)
    for j in rng.choice(n, 8, replace=False):
        e = np.zeros(n)
        e[j] = 1e-4
        fd = (prob(th + e, False)[0] - prob(th - e, False)[0]) / 2e-4
        assert abs(fd - g[j]) <= 1e-5 * max(1.0, abs(g[j])) + 1e-11 * abs(L), (j, fd, g[j])  # round-off of L
    # the uncoupled control trains one network per fidelity: its high head is the high-only network
    small = MLPMultiFidelityConfig(hidden=4, max_iter=15, patience=100)
    unc = fit_mlp_mf(basis, [data[0], FidelityData(frames[:12], "dft", energy_key="energy_dft",
                                                   forces_key="forces_dft")], replace_cfg(small, shared=False))
    alone = fit_mlp_mf(basis, [data[0]], small)
    assert unc.W.shape[0] == 2 and unc.activation == "silu"
    p1, p2 = unc.predict(frames[30:33], "high"), alone.predict(frames[30:33], "high")
    np.testing.assert_allclose(p1.energy, p2.energy, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate(p1.forces), np.concatenate(p2.forces), rtol=1e-8, atol=1e-10)
    assert set(unc.info["per_fidelity"]) == {"high", "dft"}


def replace_cfg(cfg, **kw):
    from dataclasses import replace

    return replace(cfg, **kw)


def test_cli_mlp_mf_passes_activation_and_patience(tmp_path, frames, basis):
    import ase.io

    from minbasis.cli import main
    from minbasis.fit.mlp_mf import MLPMultiFidelityModel

    train = tmp_path / "train.extxyz"
    ase.io.write(train, frames[:12])
    bpath = tmp_path / "basis.json"
    basis.save(bpath)
    out = tmp_path / "mlp.npz"
    rc = main(["fit", "--basis", str(bpath), "--model", "mlp-mf", "--hidden", "4", "--max-iter", "5",
               "--activation", "tanh", "--patience", "7", "--seed", "3",
               "--data", f"{train}:fidelity=high:energy_key=energy_high",
               "--data", f"{train}:fidelity=dft:forces_key=forces_dft:energy_key=energy_dft", "-o", str(out)])
    assert rc == 0
    m = mb.fit.load_model(out)
    assert isinstance(m, MLPMultiFidelityModel) and m.activation == "tanh" and m.fidelities == ["high", "dft"]
    assert m.info["patience"] == 7 and m.info["seed"] == 3 and m.info["validation_seed"] == 3
