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
