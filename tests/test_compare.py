"""`minbasis compare` and minbasis.fit.compare: folds, learning curves, errors."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest

from minbasis import Basis
from minbasis.cli import main
from minbasis.demo import bundled_ethanol_path
from minbasis.errors import MinbasisError
from minbasis.fit import error_metrics, fit_linear, get_labels
from minbasis.fit.compare import CompareConfig, default_sizes, fold_subsets, holdout_split

KEYS = {"energy_key": "energy_high", "forces_key": "forces_high"}


def test_fold_subsets_are_nested_disjoint_and_seeded():
    for fold in range(3):
        prev = set()
        for n in (20, 50, 100, 160):
            val, fit = fold_subsets(160, fold, n)
            assert len(val) == round(0.2 * n) and len(val) + len(fit) == n
            assert not set(val) & set(fit)
            cur = set(val) | set(fit)
            assert prev <= cur  # nested within a fold
            prev = cur
        assert prev == set(range(160))  # the largest size is the whole pool
    # the split the README numbers were measured on (benchmarks/linear_vs_nonlinear.py, pool of 640)
    val, fit = fold_subsets(640, 0, 640)
    perm = np.random.default_rng(1).permutation(640)
    assert val.tolist() == perm[:128].tolist() and fit.tolist() == perm[128:].tolist()
    assert not np.array_equal(fold_subsets(160, 0, 50)[1], fold_subsets(160, 1, 50)[1])
    with pytest.raises(MinbasisError, match="does not fit the pool"):
        fold_subsets(160, 0, 200)
    assert default_sizes(640) == (80, 160, 320, 640)
    test, rest = holdout_split(10, 0, 0.2)
    assert len(test) == 2 and sorted(test.tolist() + rest.tolist()) == list(range(10))


def test_config_errors():
    with pytest.raises(MinbasisError, match="unknown model"):
        CompareConfig(models=("linear_full", "gp"))
    with pytest.raises(MinbasisError, match="validation_fraction"):
        CompareConfig(validation_fraction=1.0)
    with pytest.raises(MinbasisError, match="at least 20"):
        default_sizes(12)


@pytest.fixture(scope="module")
def cmp_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    frames = ase.io.read(bundled_ethanol_path(), index=":50")
    ase.io.write(d / "data.extxyz", frames)
    basis = Basis.ace(["H", "C", "O"], 4.5, n_max=[4, 3], l_max=[0, 2], order=2)
    basis.save(d / "basis.json")
    return d, frames, basis


def test_cli_compare_writes_table_json_and_plot(capsys, cmp_files):
    d, frames, basis = cmp_files
    out = d / "cmp.json"
    code = main(["compare", str(d / "data.extxyz"), "--basis", str(d / "basis.json"), "--energy-key", "energy_high",
                 "--forces-key", "forces_high", "--sizes", "10,20,30,40", "--folds", "2", "--hidden", "8",
                 "--max-iter", "15", "--poly-inputs", "6", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    for kind in ("linear_full", "linear_minimal", "poly", "mlp"):
        assert kind in text
    res = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert res["n_pool"] == 40 and res["n_test"] == 10 and res["sizes"] == [10, 20, 30, 40]
    # every model at every size; 2 folds except the deterministic linear fits on the whole pool
    for kind in ("linear_full", "linear_minimal", "poly", "mlp"):
        rows = {(r["n_train"], r["fold"]) for r in res["runs"] if r["model"] == kind}
        expected = {(n, f) for n in (10, 20, 30, 40) for f in (0, 1)}
        if kind != "mlp":
            expected.discard((40, 1))
        assert rows == expected, kind
    entry = {(e["model"], e["n_train"]): e for e in res["table"]}
    assert entry[("linear_full", 40)]["features"] == basis.n_features
    assert entry[("mlp", 40)]["features"] == entry[("linear_minimal", 40)]["features"] < basis.n_features
    # the linear_full row on the whole pool is the plain fit on the 40 pool frames, scored on the other 10
    test_idx, pool_idx = holdout_split(50, 0, 0.2)
    model = fit_linear(basis, [frames[i] for i in pool_idx], **KEYS)
    test = [frames[i] for i in test_idx]
    m = error_metrics(test, get_labels(test, **KEYS), model.predict(test))
    assert entry[("linear_full", 40)]["forces_mae"] == pytest.approx(m["forces_mae"], rel=1e-8)


@pytest.mark.parametrize("extra, message", [
    (["--models", "linear_full,gp"], "unknown model"),
    (["--sizes", "10,200"], "does not fit the pool"),
    (["--test-fraction", "1.5"], "--test-fraction"),
])
def test_cli_compare_errors_are_one_line(capsys, cmp_files, extra, message):
    d, _, _ = cmp_files
    code = main(["compare", str(d / "data.extxyz"), "--basis", str(d / "basis.json"), "--energy-key", "energy_high",
                 "--forces-key", "forces_high", "-o", str(d / "bad.json"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
