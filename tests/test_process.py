"""Process safety: a fork-based multiprocessing.Pool after minbasis ran in the parent completes.

Each case runs in a fresh interpreter (the threading layer is chosen once per process) with
a timeout, so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import multiprocessing as mp
    import numba
    import numpy as np
    from ase.build import molecule
    import minbasis as mb

    basis = mb.Basis.ace(["H", "C", "O"], 4.0, 2, 1, 2)
    frames = [molecule("CH3CH2OH") for _ in range(16)]
    for k, a in enumerate(frames):
        a.rattle(0.05, seed=k)
    ref = mb.describe(frames, basis)          # parallel kernels run in the parent first
    print("layer", numba.threading_layer(), flush=True)

    def work(k):
        return mb.describe(frames[k], basis)

    with mp.get_context("fork").Pool(2) as pool:
        out = pool.map(work, range(len(frames)))
    assert np.array_equal(np.concatenate(out), ref)
    print("OK", flush=True)
""")


def _run(env_extra: dict, timeout: float = 240.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_pool_after_minbasis_completes():
    res = _run({})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "OK" in res.stdout
    assert "layer omp" not in res.stdout or "GNU" not in res.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_with_gnu_openmp_fails_clearly_instead_of_hanging():
    """A user who forces GNU OpenMP gets a MinbasisError from the pool, not a hang."""
    try:
        from numba.np.ufunc import omppool
    except ImportError:
        pytest.skip("Numba has no OpenMP layer here")
    if getattr(omppool, "openmp_vendor", None) != "GNU":
        pytest.skip("the OpenMP layer here is not GNU OpenMP (fork-safe already)")
    res = _run({"NUMBA_THREADING_LAYER": "omp"})
    assert "layer omp" in res.stdout
    assert res.returncode != 0
    assert "forked after Numba's GNU OpenMP" in res.stderr


def test_layer_respects_user_choice(monkeypatch):
    import numba

    from minbasis._threading import select_fork_safe_layer

    monkeypatch.setattr(numba.config, "THREADING_LAYER", "workqueue")
    assert select_fork_safe_layer() == "workqueue"
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "default")
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    assert select_fork_safe_layer() == "forksafe"


# -- quiet runs -------------------------------------------------------------------------------------------
def test_progress_bar_rules(monkeypatch):
    import io

    from minbasis import progress

    monkeypatch.delenv("MINBASIS_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    bar = progress.progress_bar(total=5, desc="x")
    assert bar.disable
    bar.close()
    monkeypatch.setenv("MINBASIS_PROGRESS", "1")
    bar = progress.progress_bar(total=5, desc="x")
    assert not bar.disable
    bar.close()
    progress.set_quiet(True)
    try:
        assert progress.progress_bar(total=5, desc="x").disable
    finally:
        progress.set_quiet(False)
    monkeypatch.setenv("MINBASIS_PROGRESS", "0")
    assert progress.progress_bar(total=5, desc="x").disable
    assert progress.progress_bar(total=5, desc="x", enabled=False).disable


def test_quiet_flag_every_command():
    from minbasis.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        assert any("--quiet" in a.option_strings for a in sp._actions), name


def test_quiet_cli_runs(tmp_path, capsys):
    from importlib.resources import files

    from minbasis.cli import main
    from minbasis import progress

    data = str(files("minbasis") / "data" / "ethanol_mf_subset.extxyz")
    b = tmp_path / "b.json"
    assert main(["basis", "--species", "H,C,O", "--r-cut", "4", "--n-max", "2", "--l-max", "1", "--order", "2",
                 "-o", str(b), "--quiet"]) == 0
    assert main(["--quiet", "describe", data, "--basis", str(b), "-o", str(tmp_path / "f.npz")]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert b.exists() and (tmp_path / "f.npz").exists()
    assert not progress.is_quiet() or os.environ.get("MINBASIS_PROGRESS") == "0"  # restored after main
    assert main(["describe", data, "--basis", str(b), "-o", str(tmp_path / "g.npz")]) == 0
    assert "wrote" in capsys.readouterr().out


def test_no_progress_spam_in_log_files(tmp_path):
    """stderr redirected to a file (a batch job's log): no progress-bar output at all."""
    from importlib.resources import files

    data = str(files("minbasis") / "data" / "ethanol_mf_subset.extxyz")
    env = {k: v for k, v in os.environ.items() if k != "MINBASIS_PROGRESS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import sys; from minbasis.cli import main; "
            f"sys.exit(main(['basis', '--species', 'H,C,O', '--r-cut', '4', '--n-max', '2', '--l-max', '1', "
            f"'--order', '2', '-o', r'{tmp_path / 'b.json'}']) or main(['describe', r'{data}', '--basis', "
            f"r'{tmp_path / 'b.json'}', '-o', r'{tmp_path / 'f.npz'}']))")
    with open(tmp_path / "log.txt", "w") as log:
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
                             text=True, timeout=240)
    assert res.returncode == 0
    text = (tmp_path / "log.txt").read_text()
    assert "\r" not in text and "structure/s" not in text and "it/s" not in text, text[:500]
