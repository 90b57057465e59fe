"""The model layer: network math, trainer, fidelity rule, registry, file I/O and CLI defaults.

Units of the pieces that the single- and multi-fidelity models share (minbasis.fit.network,
minbasis.fit.trainer, minbasis.fit.fidelity.resolve_fidelity, minbasis.fit.registry,
minbasis.io), checked on their own; tiny bases and a few frames, well under a minute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import ase.io
import numpy as np
import pytest

import minbasis as mb
from minbasis.demo import bundled_ethanol_path
from minbasis.errors import FileFormatError, MinbasisError
from minbasis.fit import (LinearFitConfig, MLPFitConfig, MLPMultiFidelityConfig, fit_linear, fit_mlp_mf, load_model,
                          read_structures)
from minbasis.fit.compare import CompareConfig
from minbasis.fit.fidelity import FidelityData, resolve_fidelity
from minbasis.fit.network import Architecture, head_output, input_gradient, param_gradient, trunk_forward
from minbasis.fit.registry import MODEL_CLASSES, Model, model_kinds, register_model
from minbasis.fit.trainer import output_scale, train, validation_split
from minbasis.io import atomic_save_npz, atomic_write_text

KEYS = ["--energy-key", "energy_high", "--forces-key", "forces_high"]


@pytest.fixture(scope="module")
def frames():
    return read_structures(bundled_ethanol_path())


@pytest.fixture(scope="module")
def basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2).minimal()


# -- network ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "silu"])
def test_multi_head_gradients_match_finite_differences(activation):
    """Three heads (one energy-only: u = None) with linear terms on a shared two-layer trunk: the
    parameter gradient of Σ_k [ȳ_k·y_k + u_k·∂y_k/∂x] and ∂y/∂x against central differences."""
    rng = np.random.default_rng(3)
    arch = Architecture(1, 5, (4, 3), n_heads=3, linear_term=True)
    theta = arch.init(1) + 0.4 * rng.standard_normal(arch.n_parameters)
    x = rng.standard_normal((6, 5))
    ybars = [rng.standard_normal(6) for _ in range(3)]
    us = [rng.standard_normal((6, 5)), None, rng.standard_normal((6, 5))]

    def objective(th):
        a = arch.unpack(th)
        hidden = arch.hidden_of(a, 0, 0)
        trunk = trunk_forward(hidden, x, activation)
        total = 0.0
        for k in range(3):
            w, bo, v = arch.head_of(a, k, 0)
            total += ybars[k] @ head_output(trunk, w, bo, v)
            if us[k] is not None:
                total += np.sum(us[k] * input_gradient(hidden, trunk, w, v))
        return total

    a = arch.unpack(theta)
    hidden = arch.hidden_of(a, 0, 0)
    trunk = trunk_forward(hidden, x, activation)
    gh, gheads = param_gradient(hidden, trunk, [(arch.head_of(a, k, 0)[0], True, ybars[k], us[k]) for k in range(3)])
    grads = [np.zeros(s) for s in arch.shapes]
    for j, g in enumerate(gh):
        grads[j][0, 0] = g
    for k, g in enumerate(gheads):
        grads[4][k, 0], grads[5][k, 0], grads[6][k, 0] = g.w, g.bo, g.v
    analytic = arch.pack(grads)
    h = 1e-6
    for j in range(arch.n_parameters):
        e = np.zeros_like(theta)
        e[j] = h
        fd = (objective(theta + e) - objective(theta - e)) / (2 * h)
        assert abs(fd - analytic[j]) < 1e-6 * max(1.0, abs(fd)), (j, fd, analytic[j])
    # ∂y/∂x of one head
    w, bo, v = arch.head_of(a, 2, 0)
    dx = input_gradient(hidden, trunk, w, v)
    for i, f in ((0, 0), (3, 4), (5, 2)):
        xp, xm = x.copy(), x.copy()
        xp[i, f] += h
        xm[i, f] -= h
        yp = head_output(trunk_forward(hidden, xp, activation), w, bo, v)[i]
        ym = head_output(trunk_forward(hidden, xm, activation), w, bo, v)[i]
        assert abs((yp - ym) / (2 * h) - dx[i, f]) < 1e-7


def test_architecture_layout_and_errors():
    arch = Architecture(3, 7, (5,), n_heads=2, n_trunks=2)
    assert arch.shapes == [(2, 3, 7, 5), (2, 3, 5), (2, 3, 5), (2, 3)]
    theta = arch.init(0)
    assert theta.shape == (arch.n_parameters,) and np.all(arch.unpack(theta)[1] == 0)
    np.testing.assert_array_equal(arch.pack(arch.unpack(theta)), theta)
    # the draws do not depend on the linear term (its head weights start at exactly 0)
    lin = Architecture(3, 7, (5,), linear_term=True).init(0)
    np.testing.assert_array_equal(lin[:3 * 7 * 5], Architecture(3, 7, (5,)).init(0)[:3 * 7 * 5])
    assert np.all(Architecture(3, 7, (5,), linear_term=True).unpack(lin)[2] == 0)
    with pytest.raises(MinbasisError, match="n_trunks"):
        Architecture(3, 7, (5,), n_heads=3, n_trunks=2)
    with pytest.raises(MinbasisError, match="hidden layer"):
        Architecture(3, 7, ())
    with pytest.raises(MinbasisError, match="parameter vector"):
        arch.unpack(theta[:-1])
    a = arch.unpack(theta)
    hidden = arch.hidden_of(a, 1, 2)
    gh, heads = param_gradient(hidden, trunk_forward(hidden, np.ones((2, 7)), "silu"), [])
    assert heads == [] and all(np.all(g == 0) and g.shape == p.shape for g, p in zip(gh, hidden))


# -- trainer ---------------------------------------------------------------------------------------
def test_validation_split_rule():
    assert [len(v) for v, _ in (validation_split(M, 0.1, 0) for M in (1, 2, 3))] == [0, 0, 0]
    val, fit = validation_split(4, 0.1, 0)
    assert len(val) == 1 and len(fit) == 3
    val, fit = validation_split(50, 0.2, 7)
    assert len(val) == 10 and np.all(np.diff(val) > 0) and np.all(np.diff(fit) > 0)
    assert sorted(np.concatenate([val, fit]).tolist()) == list(range(50))
    np.testing.assert_array_equal(val, np.sort(np.random.default_rng(7).permutation(50)[:10]))
    assert len(validation_split(50, 0.0, 7)[0]) == 0


def test_output_scale_uses_the_real_atom_count():
    forces = np.array([[3.0, 0.0, 4.0]])
    assert output_scale(forces) == pytest.approx(np.sqrt(25.0 / 3.0))
    resid = np.array([0.1, -0.1, 0.3])
    n = np.array([4, 8, 12])
    assert output_scale(None, resid, n) == pytest.approx(np.std(resid) * np.sqrt(8.0))
    assert output_scale(None, np.array([0.2]), np.array([5])) == 1.0  # no spread: unit scale
    assert output_scale() == 1.0


def test_mlp_mf_energy_only_scale_on_non_ethanol_cells():
    """Regression: the energy-only output unit used √9 (ethanol's atom count) for every data set."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(0)
    cells = []
    for _ in range(8):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        a.positions += rng.normal(0.0, 0.08, a.positions.shape)
        a.calc = EMT()
        a.info["energy_emt"] = a.get_potential_energy()
        a.calc = None
        cells.append(a)
    cu = mb.Basis.ace(["Cu"], 4.0, [2, 1], [0, 1], 2)
    m = fit_mlp_mf(cu, [FidelityData(cells, "emt", energy_key="energy_emt")],
                   MLPMultiFidelityConfig(hidden=3, max_iter=2, validation_fraction=0.0))
    E = np.array([a.info["energy_emt"] for a in cells])
    resid = E / 8 - m.e0[0, 0]  # one species: E0 · n is the composition energy
    assert m.scale == pytest.approx(np.std(resid) * np.sqrt(8.0), rel=1e-10)


def test_train_early_stopping_and_optimisers():
    """A quadratic training loss whose minimum lies past the validation minimum: training stops
    after `patience` checks without improvement and returns the best validation point."""
    a, b = np.array([4.0, -2.0]), np.array([1.0, -0.5])

    def loss(th, gradient=True):
        return float(np.sum((th - a) ** 2)), (2 * (th - a) if gradient else None)

    def val(th):
        return float(np.sum((th - b) ** 2))

    for opt, kw in (("lbfgs", {}), ("adam", {"batch_loss": lambda th, i: loss(th), "n_batches": 1,
                                             "learning_rate": 0.05})):
        res = train(loss, np.zeros(2), max_iter=400, validate_every=1, patience=5, val_loss=val, optimizer=opt, **kw)
        vals = [h["val_loss"] for h in res.history]
        assert res.best_val_loss == min(vals) and res.best_val_loss == pytest.approx(val(res.theta))
        assert res.history[0]["iteration"] == 0
        if opt == "adam":  # small steps: a clear minimum, then 5 checks without improvement
            assert res.stopped_early and res.message == "early stopping"
            assert res.n_iter == res.best_iteration + 5
    # no validation: the last parameters, converged
    res = train(loss, np.zeros(2), max_iter=50, validate_every=3, patience=1)
    np.testing.assert_allclose(res.theta, a, atol=1e-6)
    assert not res.stopped_early and res.best_val_loss is None and res.history[-1]["iteration"] == res.n_iter
    with pytest.raises(MinbasisError, match="optimizer"):
        train(loss, np.zeros(2), max_iter=5, validate_every=1, patience=1, optimizer="sgd")


# -- fidelity rule and the model protocol -----------------------------------------------------------
def test_resolve_fidelity_rule():
    assert resolve_fidelity([], None) == 0
    assert resolve_fidelity(["high"], None) == 0 and resolve_fidelity(["high"], "high") == 0
    assert resolve_fidelity(["high", "dft"], "dft") == 1
    with pytest.raises(MinbasisError, match=r"several fidelities \['high', 'dft'\].*--fidelity"):
        resolve_fidelity(["high", "dft"], None)
    with pytest.raises(MinbasisError, match=r"'ccsd'.*known fidelities: \['high', 'dft'\]"):
        resolve_fidelity(["high", "dft"], "ccsd")
    with pytest.raises(MinbasisError, match=r"'dft'.*known fidelities: \['high'\]"):
        resolve_fidelity(["high"], "dft")
    with pytest.raises(MinbasisError, match="single-fidelity"):
        resolve_fidelity([], "high")


def test_single_fidelity_mlp_mf_predicts_and_evaluates_without_a_fidelity(tmp_path: Path, capsys, frames, basis):
    """`evaluate` on a one-fidelity mlp-mf model failed with "fidelity None was not in the training data"."""
    from minbasis.cli import main

    train_file, test_file = tmp_path / "train.extxyz", tmp_path / "test.extxyz"
    ase.io.write(train_file, frames[:10])
    ase.io.write(test_file, frames[200:204])
    bpath = tmp_path / "basis.json"
    basis.save(bpath)
    out = tmp_path / "mf1.npz"
    assert main(["fit", "--basis", str(bpath), "--model", "mlp-mf", "--hidden", "4", "--max-iter", "5",
                 "--data", f"{train_file}:fidelity=high:energy_key=energy_high:forces_key=forces_high",
                 "-o", str(out)]) == 0
    m = load_model(out)
    assert m.fidelities == ["high"] and isinstance(m, Model)
    np.testing.assert_array_equal(m.predict(frames[200:202]).energy, m.predict(frames[200:202], "high").energy)
    capsys.readouterr()
    for extra in ([], ["--fidelity", "high"]):
        assert main(["evaluate", str(out), str(test_file), *KEYS, "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out)["n_structures"] == 4
    assert main(["evaluate", str(out), str(test_file), *KEYS, "--json", "--fidelity", "dft"]) == 2
    err = capsys.readouterr().err
    assert "known fidelities: ['high']" in err and err.count("\n") == 1
    # a two-fidelity model needs the choice, and names the choices
    two = fit_mlp_mf(basis, [FidelityData(frames[:6], "high", energy_key="energy_high"),
                             FidelityData(frames[:6], "dft", forces_key="forces_dft")],
                     MLPMultiFidelityConfig(hidden=3, max_iter=2))
    with pytest.raises(MinbasisError, match=r"several fidelities \['high', 'dft'\]"):
        two.predict(frames[200])
    with pytest.raises(MinbasisError, match="known fidelities"):
        two.calculator()


def test_single_fidelity_models_accept_only_none(frames, basis):
    lin = fit_linear(basis, frames[:20], energy_key="energy_high", forces_key="forces_high",
                     config=LinearFitConfig(solver="ridge", alpha=1e-6))
    assert isinstance(lin, Model) and lin.fidelities == []
    np.testing.assert_array_equal(lin.predict(frames[30], None).energy, lin.predict(frames[30]).energy)
    with pytest.raises(MinbasisError, match="single-fidelity"):
        lin.predict(frames[30], fidelity="high")
    with pytest.raises(MinbasisError, match="single-fidelity"):
        lin.calculator("high")


def test_registry(tmp_path: Path, frames, basis):
    assert model_kinds() == ["linear", "mlp", "poly", "linear-mf", "mlp-mf"]
    assert all(cls.kind == kind for kind, cls in MODEL_CLASSES.items())

    class NoKind:
        def predict(self, atoms, fidelity=None, progress=False): ...

    with pytest.raises(MinbasisError, match="Model protocol"):
        register_model(NoKind)

    class Clash(MODEL_CLASSES["linear"]):
        pass

    with pytest.raises(MinbasisError, match="already registered"):
        register_model(Clash)
    # a registered kind is found by load_model; an unknown one lists the known kinds
    lin = fit_linear(basis, frames[:10], energy_key="energy_high", forces_key="forces_high")
    lin.save(tmp_path / "lin.npz")
    assert type(load_model(tmp_path / "lin.npz")) is MODEL_CLASSES["linear"]
    with np.load(tmp_path / "lin.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = dict(json.loads(arrays["meta"].tobytes().decode()), kind="gp")
    atomic_save_npz(tmp_path / "gp.npz", dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)))
    with pytest.raises(FileFormatError, match=r"unknown model kind 'gp'.*'mlp-mf'"):
        load_model(tmp_path / "gp.npz")


# -- file I/O --------------------------------------------------------------------------------------
def test_atomic_writes_keep_the_old_file_on_failure(tmp_path: Path, monkeypatch):
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "old")
    assert target.read_text() == "old"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["a.json"]
    atomic_save_npz(tmp_path / "x.data", {"a": np.arange(3)})  # the name is kept as given
    with np.load(tmp_path / "x.data") as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))


# -- CLI defaults come from the config dataclasses ---------------------------------------------------
def test_cli_defaults_are_the_config_defaults(tmp_path: Path, monkeypatch, frames, basis):
    """`fit --model mlp` and `fit --model mlp-mf` without options train with exactly the dataclass
    defaults (fit --model mlp-mf used 3000 iterations / patience 50 while the config said 4000 / 150)."""
    import minbasis.fit as fit_pkg
    import minbasis.fit.mlp_mf as mlp_mf_mod
    from minbasis.cli import build_parser, main

    data, bpath = tmp_path / "d.extxyz", tmp_path / "basis.json"
    ase.io.write(data, frames[:4])
    basis.save(bpath)
    seen = {}

    class Captured(Exception):
        pass

    def capture(name):
        def fake(*args, **kwargs):
            seen[name] = kwargs.get("config", args[2] if len(args) > 2 else None)
            raise Captured

        return fake

    monkeypatch.setattr(fit_pkg, "fit_mlp", capture("mlp"))
    monkeypatch.setattr(mlp_mf_mod, "fit_mlp_mf", capture("mlp-mf"))
    with pytest.raises(Captured):
        main(["fit", str(data), "--basis", str(bpath), *KEYS, "--model", "mlp", "-o", str(tmp_path / "m.npz")])
    with pytest.raises(Captured):
        main(["fit", "--basis", str(bpath), "--model", "mlp-mf", "--data", f"{data}:fidelity=high:energy_key=energy_high",
              "-o", str(tmp_path / "m.npz")])
    assert seen["mlp"] == MLPFitConfig()
    assert seen["mlp-mf"] == MLPMultiFidelityConfig()
    assert (seen["mlp-mf"].max_iter, seen["mlp-mf"].patience) == (4000, 150)
    # given options reach the config of either model
    with pytest.raises(Captured):
        main(["fit", "--basis", str(bpath), "--model", "mlp-mf", "--data", f"{data}:fidelity=high:energy_key=energy_high",
              "--max-iter", "7", "--patience", "3", "--seed", "5", "--l2", "0", "-o", str(tmp_path / "m.npz")])
    cfg = seen["mlp-mf"]
    assert (cfg.max_iter, cfg.patience, cfg.seed, cfg.validation_seed, cfg.l2) == (7, 3, 5, 5, 0.0)
    # the other subcommands' model options and the shared loss weights
    cmp = build_parser().parse_args(["compare", str(data), "--basis", str(bpath), "-o", "c.json"])
    c = CompareConfig()
    assert (tuple(cmp.hidden), cmp.activation, cmp.l2, cmp.max_iter, cmp.patience) == (
        c.mlp_hidden, c.mlp_activation, c.mlp_l2, c.mlp_max_iter, c.mlp_patience)
    fit = build_parser().parse_args(["fit", str(data), "--basis", str(bpath), "-o", "m.npz"])
    for name in ("energy_weight", "forces_weight", "stress_weight"):
        assert getattr(fit, name) == getattr(LinearFitConfig(), name) == getattr(MLPFitConfig(), name)
