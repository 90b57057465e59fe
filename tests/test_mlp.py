"""Nonlinear fits on minbasis descriptors: per-species MLPs and linear fits on polynomial features.

Gradient checks (analytic loss gradient vs finite differences), forces and stress as energy
derivatives, model files (round trip, corrupt/edited/other-version files), early stopping,
the CLI. Tiny bases and a few frames, so the module runs in well under a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

import minbasis as mb
from minbasis.demo import bundled_ethanol_path
from minbasis.errors import FileFormatError, MinbasisError
from minbasis.fit import (LinearFitConfig, LinearModel, MLPFitConfig, MLPModel, PolynomialFeatures, PolynomialModel,
                          error_metrics, fit_linear, fit_mlp, fit_polynomial, get_labels, load_model, read_structures)
from minbasis.fit.atomic import DescriptorSet, fit_e0, fit_standardiser, forces_from_gradients
from minbasis.fit.mlp import _architecture, _Objective, mlp_loss

KEYS = {"energy_key": "energy_high", "forces_key": "forces_high"}


@pytest.fixture(scope="module")
def frames():
    return read_structures(bundled_ethanol_path())


@pytest.fixture(scope="module")
def basis():
    """Minimal basis of a small H/C/O ACE basis (24 features)."""
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2).minimal()


@pytest.fixture(scope="module")
def emt_cells():
    """Four strained, rattled fcc Cu/Ni cells with EMT energies, forces and stress."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(4):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        numbers = a.numbers.copy()
        numbers[rng.random(len(a)) < 0.4] = 28
        a.numbers = numbers
        a.set_cell(a.cell @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True)
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        a.get_potential_energy()
        a.get_stress()
        out.append(a)
    return out


@pytest.fixture(scope="module")
def mlp_model(frames, basis):
    cfg = MLPFitConfig(hidden=(8,), max_iter=60, validation_fraction=0.2, validate_every=5, patience=50)
    return fit_mlp(basis, frames[:20], config=cfg, **KEYS)


def _objective(basis, atoms, labels_keys, hidden, activation, stress=False, l2=1e-3, seed=1, linear=False):
    labels = get_labels(atoms, *labels_keys)
    data = DescriptorSet(basis, atoms, strain=stress)
    C = len(basis.species)
    mean, std = fit_standardiser(data.features, data.channels, C)
    e0 = fit_e0(atoms, data.channels, labels.energy, C)
    cfg = MLPFitConfig(hidden=hidden, activation=activation, l2=l2)
    arch = _architecture(C, basis.n_features, hidden, linear)
    obj = _Objective(data, labels, cfg, arch, mean, std, 0.8, e0, len(atoms))
    rng = np.random.default_rng(seed)
    theta = arch.init(0)
    theta = theta + 0.3 * rng.standard_normal(theta.shape)  # away from the symmetric start
    return obj, theta, arch, (mean, std, e0)


def _check_gradient(obj, theta, n_check=16, h=1e-6):
    loss, grad, _ = obj(theta)
    rng = np.random.default_rng(0)
    scale = np.abs(grad).max()
    for k in rng.choice(theta.size, n_check, replace=False):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += h
        tm[k] -= h
        fd = (obj(tp, gradient=False)[0] - obj(tm, gradient=False)[0]) / (2 * h)
        assert abs(fd - grad[k]) <= 1e-6 * scale + 1e-5 * abs(grad[k]), (k, fd, grad[k])
    return loss


# -- MLP: gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden,activation,linear", [((6,), "tanh", False), ((5, 4), "tanh", True),
                                                      ((5, 4), "silu", False), ((6,), "silu", True)])
def test_loss_gradient_matches_finite_differences(frames, basis, hidden, activation, linear):
    obj, theta, _, _ = _objective(basis, frames[:3], ("energy_high", "forces_high"), hidden, activation, linear=linear)
    _check_gradient(obj, theta)


def test_loss_gradient_with_stress(emt_cells):
    basis = mb.Basis.ace(["Cu", "Ni"], 4.0, [3, 2], [0, 1], 2)
    obj, theta, _, _ = _objective(basis, emt_cells[:3], ("energy", "forces", "stress"), (4, 3), "silu", stress=True)
    loss, _, parts = obj(theta)
    assert parts["stress"] > 0 and parts["forces"] > 0 and parts["energy"] > 0
    _check_gradient(obj, theta)


def test_uncached_descriptor_chunks_give_the_same_loss(frames, basis):
    """With a zero cache budget every chunk is recomputed on access; the loss is unchanged."""
    obj, theta, arch, (mean, std, e0) = _objective(basis, frames[:6], ("energy_high", "forces_high"), (5,), "silu")
    labels = get_labels(frames[:6], **KEYS)
    data = DescriptorSet(basis, frames[:6], chunk_bytes=1, cache_bytes=0)
    assert len(data) == 6 and not data.fully_cached and data.cached_bytes == 0
    other = _Objective(data, labels, obj.cfg, arch, mean, std, 0.8, e0, 6)
    l1, g1, _ = obj(theta)
    l2, g2, _ = other(theta)
    assert l2 == pytest.approx(l1, rel=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-10, atol=1e-12 * np.abs(g1).max())


def test_forces_and_stress_are_energy_derivatives(frames, basis, emt_cells):
    """Predicted forces = −∂E/∂r and stress = (1/V) ∂E/∂ε by central differences; the training-time
    chain rule through ∂B/∂r gives the same forces as the Jacobian-free prediction."""
    obj, theta, arch, (mean, std, e0) = _objective(basis, frames[:2], ("energy_high", "forces_high"), (5, 4), "tanh",
                                                   linear=True)
    model = MLPModel(basis=basis, params=[p[0] for p in arch.unpack(theta)], mean=mean, std=std, scale=0.8, e0=e0, activation="tanh")
    atoms = frames[50]
    pred = model.predict(atoms)
    h = 1e-5
    fd = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for a in range(3):
            ap, am = atoms.copy(), atoms.copy()
            ap.positions[i, a] += h
            am.positions[i, a] -= h
            fd[i, a] = -(model.predict(ap).energy[0] - model.predict(am).energy[0]) / (2 * h)
    np.testing.assert_allclose(pred.forces[0], fd, atol=1e-6 * max(1.0, np.abs(fd).max()))
    # chain rule with the descriptor Jacobian (training path) == prediction path
    data = DescriptorSet(basis, frames[:2])
    c = data.chunk(0)
    _, g = model.atomic_energies_and_gradients(c.X, c.ch)
    F_chain = forces_from_gradients(c.samples, c.J, g, c.n_atoms)
    np.testing.assert_allclose(F_chain, np.concatenate(model.predict(frames[:2]).forces), atol=1e-10)
    # stress on a periodic cell
    cu = mb.Basis.ace(["Cu", "Ni"], 4.0, [3, 2], [0, 1], 2)
    obj, theta, arch, (mean, std, e0) = _objective(cu, emt_cells[:2], ("energy", "forces"), (4,), "silu")
    model = MLPModel(basis=cu, params=[p[0] for p in arch.unpack(theta)], mean=mean, std=std, scale=0.8, e0=e0, activation="silu")
    cell = emt_cells[3]
    stress = model.predict(cell).stress[0]
    eps = 1e-7
    num = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = eps
            ap, am = cell.copy(), cell.copy()
            ap.set_cell(cell.cell @ (np.eye(3) + e), scale_atoms=True)
            am.set_cell(cell.cell @ (np.eye(3) - e), scale_atoms=True)
            num[a, b] = (model.predict(ap).energy[0] - model.predict(am).energy[0]) / (2 * eps) / cell.get_volume()
    voigt = np.array([num[0, 0], num[1, 1], num[2, 2], 0.5 * (num[1, 2] + num[2, 1]), 0.5 * (num[0, 2] + num[2, 0]),
                      0.5 * (num[0, 1] + num[1, 0])])
    np.testing.assert_allclose(stress, voigt, atol=1e-6 * max(1.0, np.abs(voigt).max()))


# -- MLP: training, files, calculator ----------------------------------------------------------------
def test_mlp_fit_learns_and_roundtrips(tmp_path: Path, frames, basis, mlp_model):
    test = frames[200:230]
    labels = get_labels(test, **KEYS)
    m = error_metrics(test, labels, mlp_model.predict(test))
    f_std = np.std(np.concatenate([f.ravel() for f in labels.forces]))
    assert m["forces_mae"] < 0.5 * f_std, m
    info = mlp_model.info
    assert info["n_train"] == 16 and info["n_validation"] == 4
    assert info["history"][-1]["train_loss"] < info["history"][0]["train_loss"]
    path = tmp_path / "mlp.npz"
    mlp_model.save(path)
    again = load_model(path)
    assert isinstance(again, MLPModel) and again.hidden == (8,)
    p1, p2 = mlp_model.predict(test[:3]), again.predict(test[:3])
    np.testing.assert_array_equal(p1.energy, p2.energy)
    np.testing.assert_array_equal(np.concatenate(p1.forces), np.concatenate(p2.forces))
    # ASE calculator
    atoms = test[0].copy()
    atoms.calc = again.calculator()
    assert atoms.get_potential_energy() == pytest.approx(p1.energy[0], rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), p1.forces[0], atol=1e-12)


def test_mlp_file_errors(tmp_path: Path, mlp_model):
    path = tmp_path / "mlp.npz"
    mlp_model.save(path)
    (tmp_path / "trunc.npz").write_bytes(path.read_bytes()[:300])
    (tmp_path / "junk.npz").write_text("not a model")
    for bad in ("trunc.npz", "junk.npz", "missing.npz"):
        with pytest.raises(FileFormatError):
            MLPModel.load(tmp_path / bad)
        with pytest.raises(FileFormatError):
            load_model(tmp_path / bad)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "edited.npz", **dict(arrays, p0=arrays["p0"] * 1.001))
    with pytest.raises(FileFormatError, match="hash mismatch"):
        load_model(tmp_path / "edited.npz")
    meta = json.loads(arrays["meta"].tobytes().decode())
    for field, value, match in (("format_version", 99, "format version 99"), ("kind", "gp", "unknown model kind"),
                                ("hyper", {"activation": "relu", "n_params": 4}, "hash mismatch")):
        edited = dict(meta, **{field: value})
        np.savez(tmp_path / "m.npz", **dict(arrays, meta=np.frombuffer(json.dumps(edited).encode(), dtype=np.uint8)))
        with pytest.raises(FileFormatError, match=match):
            load_model(tmp_path / "m.npz")
    with pytest.raises(FileFormatError, match="read any kind with minbasis.fit.load_model"):
        LinearModel.load(path)


def test_early_stopping_restores_best_validation_parameters(frames, basis):
    """An oversized network on 3 frames overfits; training stops and returns the parameters of the
    best validation check, whose loss is recomputed independently."""
    train, val = frames[:3], frames[100:106]
    cfg = MLPFitConfig(hidden=(32,), l2=0.0, max_iter=400, validate_every=3, patience=4, seed=3)
    model = fit_mlp(basis, train, validation=val, config=cfg, **KEYS)
    info = model.info
    val_losses = [h["val_loss"] for h in info["history"]]
    assert info["stopped_early"]
    assert info["best_iteration"] < info["n_iter"]
    assert min(val_losses) < val_losses[-1]
    assert info["best_val_loss"] == pytest.approx(min(val_losses), rel=1e-12)
    assert mlp_loss(model, val, config=cfg, **KEYS)["loss"] == pytest.approx(min(val_losses), rel=1e-9)
    # reproducible for a seed
    again = fit_mlp(basis, train, validation=val, config=cfg, **KEYS)
    np.testing.assert_array_equal(again.params[0], model.params[0])


def test_linear_term_starts_from_the_linear_fit(frames, basis):
    """With linear_term, the network starts as the degree-1 polynomial (= linear on standardised
    features) fit: the first training loss is that model's loss, and training lowers it."""
    cfg = MLPFitConfig(hidden=(8,), linear_term=True, max_iter=20, validation_fraction=0.0)
    model = fit_mlp(basis, frames[:12], config=cfg, **KEYS)
    assert model.linear_term and len(model.params) == 5
    lin = fit_polynomial(basis, frames[:12], degree=1, **KEYS)
    ref = mlp_loss(MLPModel(basis=basis, params=[np.zeros_like(p) for p in model.params[:-1]] +
                            [lin.weights / model.scale], mean=lin.mean, std=lin.std, scale=model.scale, e0=lin.e0),
                   frames[:12], **KEYS)["loss"]
    first = model.info["history"][0]["train_loss"]
    assert first == pytest.approx(ref, rel=1e-3)  # same fit up to the evidence iteration tolerance
    assert model.info["history"][-1]["train_loss"] < ref


def test_adam_optimizer_reduces_loss(frames, basis):
    cfg = MLPFitConfig(hidden=(8,), optimizer="adam", learning_rate=1e-2, batch_size=4, max_iter=20,
                       validation_fraction=0.0, validate_every=5)
    model = fit_mlp(basis, frames[:12], config=cfg, **KEYS)
    hist = model.info["history"]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert model.info["n_validation"] == 0


def test_mlp_config_errors(frames, basis):
    with pytest.raises(MinbasisError, match="1 or 2"):
        MLPFitConfig(hidden=(4, 4, 4))
    with pytest.raises(MinbasisError, match="activation"):
        MLPFitConfig(activation="relu")
    with pytest.raises(MinbasisError, match="optimizer"):
        MLPFitConfig(optimizer="sgd")
    with pytest.raises(MinbasisError, match="validation_fraction"):
        MLPFitConfig(validation_fraction=1.0)
    with pytest.raises(mb.LabelError, match="nothing to fit"):
        fit_mlp(basis, frames[:3], energy_key=None, forces_key=None)


# -- polynomial features -----------------------------------------------------------------------------
def test_polynomial_features_derivatives():
    rng = np.random.default_rng(4)
    poly = PolynomialFeatures(6, degree=3, n_product_inputs=4)
    assert poly.n_outputs == 6 + 10 + 20
    assert poly.names()[6] == "B0*B0" and poly.names()[-1] == "B3*B3*B3"
    x = rng.standard_normal((5, 6))
    D = rng.standard_normal((5, 2, 6))
    h = 1e-6
    num = np.stack([(poly.transform(x + h * D[:, q]) - poly.transform(x - h * D[:, q])) / (2 * h) for q in range(2)], 1)
    np.testing.assert_allclose(poly.jacobian_apply(x, D), num, atol=1e-8)
    w = rng.standard_normal(poly.n_outputs)
    num_g = np.stack([((poly.transform(x + h * e) - poly.transform(x - h * e)) @ w) / (2 * h) for e in np.eye(6)], 1)
    np.testing.assert_allclose(poly.gradient(x, w), num_g, atol=1e-8)
    with pytest.raises(MinbasisError):
        PolynomialFeatures(6, degree=0)
    with pytest.raises(MinbasisError):
        PolynomialFeatures(6, n_product_inputs=7)


def test_polynomial_fit_forces_and_files(tmp_path: Path, frames, basis):
    model = fit_polynomial(basis, frames[:40], degree=2, n_product_inputs=10, **KEYS)
    assert model.weights.shape == (3, 24 + 55)
    atoms = frames[120]
    pred = model.predict(atoms)
    h = 1e-5
    fd = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for a in range(3):
            ap, am = atoms.copy(), atoms.copy()
            ap.positions[i, a] += h
            am.positions[i, a] -= h
            fd[i, a] = -(model.predict(ap).energy[0] - model.predict(am).energy[0]) / (2 * h)
    np.testing.assert_allclose(pred.forces[0], fd, atol=1e-6 * max(1.0, np.abs(fd).max()))
    # design rows (product rule through dB/dr) reproduce the predictions
    from minbasis.fit.poly import _poly_equations

    sub = frames[:4]
    data = DescriptorSet(basis, sub)
    eq = _poly_equations(data, get_labels(sub, **KEYS), LinearFitConfig(), model.poly, model.mean, model.std,
                         max_rows=10**9)
    AE, yE, CE, AO, yO = eq.rows()
    p = model.predict(sub)
    np.testing.assert_allclose(AO @ model.weights.ravel(), np.concatenate(p.forces).ravel(), atol=1e-10)
    np.testing.assert_allclose(AE @ model.weights.ravel() + CE @ model.e0, 30.0 * p.energy / 9, rtol=1e-12)
    # degree 1 on standardised features spans the same space as the linear model
    lin = fit_linear(basis, frames[:40], config=LinearFitConfig(solver="ridge", alpha=1e-10), **KEYS)
    deg1 = fit_polynomial(basis, frames[:40], degree=1, config=LinearFitConfig(solver="ridge", alpha=1e-10), **KEYS)
    test = frames[150:155]
    np.testing.assert_allclose(np.concatenate(deg1.predict(test).forces), np.concatenate(lin.predict(test).forces),
                               atol=1e-5)
    path = tmp_path / "poly.npz"
    model.save(path)
    again = load_model(path)
    assert isinstance(again, PolynomialModel) and again.poly.to_dict() == model.poly.to_dict()
    np.testing.assert_array_equal(again.predict(test).energy, model.predict(test).energy)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "edited.npz", **dict(arrays, weights=arrays["weights"] + 1e-9))
    with pytest.raises(FileFormatError, match="hash mismatch"):
        load_model(tmp_path / "edited.npz")
    with pytest.raises(MinbasisError, match="n_product_inputs"):
        fit_polynomial(mb.Basis.ace(["H", "C", "O"], 4.0, [6, 4], [0, 3], 2), frames[:2], degree=2, **KEYS)


def test_polynomial_stress_rows(emt_cells):
    basis = mb.Basis.ace(["Cu", "Ni"], 4.0, [3, 2], [0, 1], 2)
    model = fit_polynomial(basis, emt_cells, degree=2, n_product_inputs=4, stress_key="stress",
                           config=LinearFitConfig(solver="ridge", alpha=1e-6))
    from minbasis.fit.poly import _poly_equations

    data = DescriptorSet(basis, emt_cells, strain=True)
    labels = get_labels(emt_cells, "energy", "forces", "stress")
    eq = _poly_equations(data, labels, LinearFitConfig(forces_weight=0.0), model.poly, model.mean, model.std,
                         max_rows=10**9)
    pred = model.predict(emt_cells)
    rows = eq.rows()[3] @ model.weights.ravel()
    vol = np.array([a.get_volume() for a in emt_cells])
    n = np.array([len(a) for a in emt_cells])
    np.testing.assert_allclose(rows, (30.0 * pred.stress * vol[:, None] / n[:, None]).ravel(), rtol=1e-9, atol=1e-12)


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_fit_mlp_and_poly_then_evaluate(tmp_path: Path, capsys, frames):
    from minbasis.cli import main

    ase.io.write(tmp_path / "train.extxyz", frames[:20])
    ase.io.write(tmp_path / "test.extxyz", frames[200:210])
    b = tmp_path / "basis.json"
    assert main(["basis", "--species", "H,C,O", "--r-cut", "4", "--n-max", "3,2", "--l-max", "0,1", "--order", "2",
                 "--minimal", "-o", str(b)]) == 0
    keys = ["--energy-key", "energy_high", "--forces-key", "forces_high"]
    for extra in (["--model", "mlp", "--hidden", "6,4", "--max-iter", "30", "--activation", "silu"],
                  ["--model", "poly", "--degree", "2", "--poly-inputs", "8"]):
        out = tmp_path / "model.npz"
        assert main(["fit", str(tmp_path / "train.extxyz"), "--basis", str(b), *keys, *extra, "-o", str(out)]) == 0
        capsys.readouterr()
        assert main(["evaluate", str(out), str(tmp_path / "test.extxyz"), *keys, "--json"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["n_structures"] == 10 and np.isfinite(metrics["forces_mae"])
        assert metrics["energy_mae_per_atom"] > 0
    code = main(["fit", str(tmp_path / "train.extxyz"), "--basis", str(b), *keys, "--model", "mlp", "--hidden",
                 "4,4,4", "-o", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("minbasis: error:") and "1 or 2" in err and err.count("\n") == 1
