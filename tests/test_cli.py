"""The `minbasis` command line: each subcommand end to end, and one-line errors with exit code ≠ 0."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
import ase.io

from minbasis.cli import main
from minbasis.demo import bundled_ethanol_path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    frames = ase.io.read(bundled_ethanol_path(), index=":40")
    ase.io.write(d / "train.extxyz", frames[:30])
    ase.io.write(d / "test.extxyz", frames[30:])
    return d


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_basis_describe_fit_evaluate(capsys, workdir):
    b = workdir / "basis.json"
    code, out, _ = run(capsys, "basis", "--species", "H,C,O", "--r-cut", 4.5, "--n-max", "4,3", "--l-max", "0,2",
                       "--order", 2, "--minimal", "-o", b)
    assert code == 0 and "minimal basis" in out and b.exists()
    code, out, _ = run(capsys, "describe", workdir / "test.extxyz", "--basis", b, "--gradients", "-o", workdir / "f.npz")
    assert code == 0
    with np.load(workdir / "f.npz") as z:
        assert z["features"].shape[0] == 90
        assert z["atom_ptr"].tolist() == list(range(0, 91, 9))
        assert z["position_gradients"].shape[1] == 3
        assert z["strain_gradients"].shape == (90, 3, 3, z["features"].shape[1])
    full = workdir / "full.json"
    assert run(capsys, "basis", "--species", "H,C,O", "--r-cut", 4.5, "--n-max", "4,3", "--l-max", "0,2",
               "--order", 2, "-o", full)[0] == 0
    model = workdir / "model.npz"
    code, out, _ = run(capsys, "fit", workdir / "train.extxyz", "--basis", full, "--energy-key", "energy_high",
                       "--forces-key", "forces_high", "-o", model)
    assert code == 0 and model.exists()
    code, out, _ = run(capsys, "evaluate", model, workdir / "test.extxyz", "--energy-key", "energy_high",
                       "--forces-key", "forces_high", "--json")
    assert code == 0
    metrics = json.loads(out)
    for key in ("n_structures", "energy_mae", "energy_rmse", "energy_mae_per_atom", "forces_mae", "forces_rmse"):
        assert key in metrics
    assert metrics["n_structures"] == 10
    assert "stress_mae" not in metrics  # molecules carry no stress
    code, out, _ = run(capsys, "evaluate", model, workdir / "test.extxyz", "--energy-key", "energy_high",
                       "--forces-key", "forces_high")
    assert code == 0 and "F MAE" in out and "md500K" in out


def test_stress_is_evaluated_when_present(capsys, tmp_path):
    frames = []
    for k in range(8):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        a.get_stress()
        frames.append(a)
    ase.io.write(tmp_path / "cu.extxyz", frames)
    assert run(capsys, "basis", "--species", "Cu", "--r-cut", 4.5, "--n-max", 3, "--l-max", "0,1", "--order", 2,
               "-o", tmp_path / "b.json")[0] == 0
    assert run(capsys, "fit", tmp_path / "cu.extxyz", "--basis", tmp_path / "b.json", "-o", tmp_path / "m.npz")[0] == 0
    code, out, _ = run(capsys, "evaluate", tmp_path / "m.npz", tmp_path / "cu.extxyz", "--json")
    assert code == 0 and "stress_mae" in json.loads(out)


@pytest.mark.parametrize("args, message", [
    (["basis", "--species", "H,Qq", "--r-cut", "5", "--n-max", "4", "--l-max", "2", "--order", "2", "-o", "x.json"],
     "unknown chemical symbols"),
    (["basis", "--species", "H", "--r-cut", "5", "--n-max", "4,3", "--l-max", "2", "--order", "3", "-o", "x.json"],
     "n_max has 2 entries"),
    (["describe", "missing.extxyz", "--basis", "missing.json", "-o", "f.npz"], "cannot read basis file"),
    (["evaluate", "missing.npz", "x.extxyz", "--json"], "no such model file"),
])
def test_errors_are_one_line(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minbasis: error:") and message in lines[0], err


def test_missing_label_key_is_one_line(capsys, workdir):
    b = workdir / "b2.json"
    assert run(capsys, "basis", "--species", "H,C,O", "--r-cut", 4.0, "--n-max", 3, "--l-max", 1, "--order", 2, "-o", b)[0] == 0
    code, _, err = run(capsys, "fit", workdir / "train.extxyz", "--basis", b, "--energy-key", "energy_ccsdt",
                       "-o", workdir / "m.npz")
    assert code == 2 and "no energy under key 'energy_ccsdt'" in err and len(err.strip().splitlines()) == 1


def test_console_script_help():
    """The installed entry point works and every subcommand documents itself."""
    for sub in ([], ["basis"], ["describe"], ["fit"], ["compare"], ["evaluate"], ["demo"], ["report"]):
        res = subprocess.run([sys.executable, "-m", "minbasis.cli", *sub, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "usage: minbasis" in res.stdout
