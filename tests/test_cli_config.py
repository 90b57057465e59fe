"""Command-line options generated from the configuration dataclasses (one source of defaults), and
TOML config files (``--config FILE.toml``) for every subcommand."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json

import pytest

from minbasis.cli import SUBCOMMANDS, _parse, build_parser, main
from minbasis.cli._config import add_config_flags, config_flags, config_keys
from minbasis.fit.linear import LinearFitConfig
from minbasis.fit.mlp import MLPFitConfig
from minbasis.fit.mlp_mf import MLPMultiFidelityConfig


# -- one source of defaults ---------------------------------------------------------------------------
def _field_default(config, name):
    """The default of a dataclass field or of a function's keyword argument, read independently of the CLI."""
    if dataclasses.is_dataclass(config):
        f = {f.name: f for f in dataclasses.fields(config)}[name]
        return f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return inspect.signature(config).parameters[name].default


def _help_forms(value) -> set[str]:
    if isinstance(value, (tuple, list)):
        return {",".join(str(v) for v in value), ", ".join(str(v) for v in value)}
    if isinstance(value, float):
        return {str(value), format(value, "g")}
    return {str(value)}


def drift(parser: argparse.ArgumentParser) -> list[str]:
    """Every generated option whose parser default is not its configuration default (or None where the
    configurations it sets disagree), or whose help text does not show each configuration's value."""
    bad = []
    for command, action in config_flags(parser):
        values = [_field_default(s.config, s.field) for s in action.config_sources]
        same = all(type(v) is type(values[0]) and v == values[0] for v in values)
        to_arg = getattr(action, "config_to_arg", None)
        expected = (to_arg(values[0]) if to_arg and values[0] is not None else values[0]) if same else None
        if action.default != expected or type(action.default) is not type(expected):
            bad.append(f"{command} {action.option_strings[-1]}: parser default {action.default!r}, "
                       f"configuration {expected!r} ({[(s.label, s.field) for s in action.config_sources]})")
        for s, v in zip(action.config_sources, values):
            if v is not None and not any(form in (action.help or "") for form in _help_forms(v)):
                bad.append(f"{command} {action.option_strings[-1]}: help does not show {s.label}'s {v!r}")
    return bad


def test_generated_defaults_are_the_config_defaults():
    assert drift(build_parser()) == []


#: Options whose default must come from a configuration (a literal there would fail this list).
GENERATED = {
    "basis": {"--symmetric", "--total-degree", "--radial-scale", "--max-basis-size"},
    "describe": {"--shard-atoms"},
    "fit": {"--energy-weight", "--forces-weight", "--stress-weight", "--validation-fraction", "--seed", "--solver",
            "--alpha", "--committee", "--calibrate", "--budget-minutes", "--r-cut", "--degree", "--poly-inputs",
            "--hidden", "--activation", "--optimizer", "--max-iter", "--l2", "--patience", "--coupling", "--noise",
            "--piwsl-delta"},
    "compare": {"--models", "--sizes", "--folds", "--degree", "--poly-inputs", "--hidden", "--activation", "--l2",
                "--max-iter", "--patience", "--seed"},
    "demo": {"--seed", "--n-train"},
    "report": {"--seed"},
    "export": {"--radial-base"},
}


def test_config_backed_options_are_generated():
    found: dict[str, set] = {}
    for command, action in config_flags(build_parser()):
        found.setdefault(command, set()).add(action.option_strings[-1])
    for command, options in GENERATED.items():
        assert options <= found.get(command, set()), (command, sorted(options - found.get(command, set())))


def test_models_with_different_defaults_leave_the_option_to_the_model():
    parser = build_parser()
    fit = {a.dest: a for a in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
           .choices["fit"]._actions}
    mlp, mf = MLPFitConfig(), MLPMultiFidelityConfig()
    assert (mlp.max_iter, mlp.patience) != (mf.max_iter, mf.patience)  # otherwise this test checks nothing
    for name in ("max_iter", "patience"):
        assert fit[name].default is None
        text = f"default {getattr(mlp, name)} for mlp, {getattr(mf, name)} for mlp-mf"
        assert text in fit[name].help, fit[name].help
    assert fit["l2"].default == mlp.l2 == mf.l2 and fit["activation"].default == mlp.activation == mf.activation
    args = parser.parse_args(["fit", "d.extxyz", "--basis", "b.json", "-o", "m.npz"])
    assert args.alpha == LinearFitConfig().alpha and args.solver == LinearFitConfig().solver
    assert args.energy_weight == LinearFitConfig().energy_weight == mlp.energy_weight


def test_parser_follows_the_dataclass(monkeypatch):
    """Change a configuration default: the parser's default and help follow, nothing else needs editing."""
    import minbasis.fit.linear as linear_mod
    import minbasis.fit.mlp_mf as mlp_mf_mod

    Lin = dataclasses.make_dataclass("LinearFitConfig", [("alpha", float, dataclasses.field(default=1e-3))],
                                     bases=(LinearFitConfig,))
    Mf = dataclasses.make_dataclass("MLPMultiFidelityConfig",
                                    [("max_iter", int, dataclasses.field(default=MLPFitConfig().max_iter))],
                                    bases=(MLPMultiFidelityConfig,))
    monkeypatch.setattr(linear_mod, "LinearFitConfig", Lin)
    monkeypatch.setattr(mlp_mf_mod, "MLPMultiFidelityConfig", Mf)
    parser = build_parser()
    args = parser.parse_args(["fit", "d.extxyz", "--basis", "b.json", "-o", "m.npz"])
    assert args.alpha == 1e-3
    assert args.max_iter == MLPFitConfig().max_iter  # the two models now agree: their common default
    assert drift(parser) == []


def test_drift_is_detected():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    p = sub.add_parser("fit")
    add_config_flags(p, {"mlp": MLPFitConfig, "mlp-mf": MLPMultiFidelityConfig},
                     {"max_iter": dict(type=int, help="iterations ({default})"),
                      "l2": dict(type=float, help="weight decay ({default})")})
    add_config_flags(p, LinearFitConfig, {"alpha": dict(type=float, help="ridge ({default})")})
    assert drift(parser) == []
    actions = {a.dest: a for a in p._actions}
    actions["alpha"].default = 1e-6  # a literal that differs from LinearFitConfig.alpha
    actions["max_iter"].default = 3000  # a literal where mlp and mlp-mf disagree
    actions["l2"].help = "weight decay (default 1e-5)"  # typed, not generated
    bad = drift(parser)
    assert {b.split(":")[0] for b in bad} == {"fit --alpha", "fit --max-iter", "fit --l2"}, bad


def test_add_config_flags_rejects_unknown_fields():
    with pytest.raises(ValueError, match="no configuration"):
        add_config_flags(argparse.ArgumentParser(), LinearFitConfig, {"no_such_field": {}})


# -- TOML config files --------------------------------------------------------------------------------
def _sub(parser, name):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def test_every_subcommand_reads_a_config():
    parser = build_parser()
    for name in SUBCOMMANDS:
        sub = _sub(parser, name)
        assert "config" in {a.dest for a in sub._actions}, name
        assert config_keys(sub), name


def test_toml_sets_defaults_and_flags_override(tmp_path):
    cfg = tmp_path / "settings.toml"
    cfg.write_text('[basis]\nspecies = ["H", "C"]\nr_cut = 4.0\nn-max = [3, 2]\nl_max = "0,1"\norder = 2\n'
                   'minimal = true\noutput = "out/basis.json"\n'
                   '[fit]\nenergy_key = "energy_high"\nmax_iter = 7\nbasis = "out/basis.json"\nsolver = "ridge"\n'
                   'config_type_weights = {surface = 2.0}\n')
    # required options supplied by the file; relative paths are relative to the file's folder
    args = _parse(build_parser(), ["basis", "--config", str(cfg)])
    assert (args.species, args.r_cut, args.n_max, args.l_max, args.order, args.minimal) == (
        ["H", "C"], 4.0, [3, 2], [0, 1], 2, True)
    assert args.output == str(tmp_path / "out" / "basis.json")
    # the command line wins over the file
    args = _parse(build_parser(), ["basis", "--config", str(cfg), "--r-cut", "5.5", "--order", "3", "-o", "x.json"])
    assert (args.r_cut, args.order, args.output) == (5.5, 3, "x.json")
    # the [fit] table applies to fit only, the [basis] table not at all
    args = _parse(build_parser(), ["fit", "d.extxyz", "--config", str(cfg), "-o", "m.npz"])
    assert (args.energy_key, args.max_iter, args.solver) == ("energy_high", 7, "ridge")
    assert args.basis == str(tmp_path / "out" / "basis.json") and json.loads(args.config_type_weights) == {"surface": 2}
    assert args.forces_key == "forces" and args.alpha == LinearFitConfig().alpha  # not in the file: defaults
    args = _parse(build_parser(), ["fit", "d.extxyz", "--config", str(cfg), "--solver", "ard", "--max-iter", "9",
                                   "-o", "m.npz"])
    assert (args.solver, args.max_iter) == ("ard", 9)


@pytest.mark.parametrize("body, message", [
    ("r_cutt = 4.0\n", "unknown setting 'r_cutt' for `minbasis basis` (did you mean 'r_cut'?); valid keys: family"),
    ("r_cut = 'five'\n", "r_cut must be a number"),
    ("order = 2.5\n", "order must be an integer"),
    ("family = 'spherical'\n", "family must be one of ['ace', 'cartesian']"),
    ("minimal = 'yes'\n", "minimal must be true or false"),
    ("r_cut = 4.0\nr-cut = 5.0\n", "'r_cut' is given twice"),
    ("order = 2\n[basis]\norder = 3\n", "set both at the top level and in [basis]"),
    ("species = 'H'\nr_cut = 4\n", None),
])
def test_bad_config_is_one_line(capsys, tmp_path, body, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    argv = ["basis", "--config", str(cfg), "--species", "H", "--r-cut", "4", "--n-max", "2", "--l-max", "1",
            "--order", "2", "-o", str(tmp_path / "b.json")]
    code = main(argv)
    err = capsys.readouterr().err
    if message is None:
        assert code == 0 and (tmp_path / "b.json").exists()
        return
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"minbasis: error: {cfg}: "), err
    assert message in err, err


def test_unknown_key_lists_the_valid_keys(capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[evaluate]\nfidelty = 'high'\n")
    assert main(["evaluate", "m.npz", "d.extxyz", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'fidelty'" in err and "did you mean 'fidelity'" in err
    for key in ("energy_key", "forces_key", "stress_key", "no_forces", "no_energy", "json", "parity"):
        assert key in err


def test_fit_config_keeps_data_tables_and_flags_win(tmp_path):
    cfg = tmp_path / "mf.toml"
    cfg.write_text('model = "mlp-mf"\ncoupling = "none"\nhidden = 8\nbasis = "b.json"\n'
                   '[[data]]\nfile = "d.extxyz"\nfidelity = "high"\nenergy_key = "energy_high"\n')
    args = _parse(build_parser(), ["fit", "--config", str(cfg), "--coupling", "pooled", "-o", "m.npz"])
    assert (args.model, args.coupling, args.hidden) == ("mlp-mf", "pooled", 8)
    assert args.config_data == [{"file": "d.extxyz", "fidelity": "high", "energy_key": "energy_high"}]
    assert args.basis == str(tmp_path / "b.json")
    assert _parse(build_parser(), ["fit", "d.extxyz", "-o", "m.npz"]).config_data is None


def test_fit_from_a_config_file(capsys, tmp_path):
    """A single-fidelity fit whose basis, label keys and solver come from the file."""
    import ase.io

    from minbasis.demo import bundled_ethanol_path

    ase.io.write(tmp_path / "train.extxyz", ase.io.read(bundled_ethanol_path(), index=":12"))
    cfg = tmp_path / "minbasis.toml"
    cfg.write_text('[basis]\nspecies = "H,C,O"\nr_cut = 4.0\nn_max = 3\nl_max = 1\norder = 2\noutput = "basis.json"\n'
                   '[fit]\nbasis = "basis.json"\nenergy_key = "energy_high"\nforces_key = "forces_high"\n'
                   'solver = "ridge"\nalpha = 1e-6\noutput = "model.npz"\n')
    assert main(["basis", "--config", str(cfg)]) == 0
    assert main(["fit", str(tmp_path / "train.extxyz"), "--config", str(cfg)]) == 0
    from minbasis.fit import load_model

    model = load_model(tmp_path / "model.npz")
    assert model.info["solver"] == "ridge" and "fitted" in capsys.readouterr().out


def test_the_documented_fit_config_is_valid(tmp_path):
    """The TOML example of minbasis.fit.fidelity's docstring uses only keys `minbasis fit` knows."""
    import textwrap
    import tomllib

    import minbasis.fit.fidelity as fidelity

    doc = fidelity.__doc__
    block = doc[doc.index("\nTOML config"):].split("::\n\n", 1)[1].split("\n\n", 1)[0]
    text = textwrap.dedent(block)
    assert tomllib.loads(text)["data"]
    cfg = tmp_path / "fit.toml"
    cfg.write_text(text)
    args = _parse(build_parser(), ["fit", "--config", str(cfg)])
    assert (args.model, args.coupling, args.noise) == ("linear-mf", "delta", "per_fidelity")
    assert args.output == str(tmp_path / "model.npz") and len(args.config_data) == 2
