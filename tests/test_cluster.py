"""Sharded descriptor output (serial and Dask) and the CLI's --dask / --shards options."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest

import minbasis as mb
from minbasis.cluster import describe_shards, iter_shards, load_shards
from minbasis.cli import main
from minbasis.demo import bundled_ethanol_path
from minbasis.errors import FileFormatError, MinbasisError
from minbasis.fit import read_structures


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    frames = read_structures(bundled_ethanol_path())[:30]
    data = tmp / "data.extxyz"
    ase.io.write(data, frames)
    basis = mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2)
    return tmp, data, basis, read_structures(data)


def test_shards_equal_describe_and_resume(setup):
    tmp, data, basis, frames = setup
    out = tmp / "serial"
    index = describe_shards(data, basis, out, gradients=True, shard_atoms=60, progress=False)
    assert len(index["shards"]) == 5 and index["n_atoms"] == 270
    np.testing.assert_array_equal(load_shards(out)["features"], mb.describe(frames, basis))
    # gradients of one shard equal describe of its structures
    entry, arr = next(iter_shards(out))
    ref = mb.describe(frames[entry["start"]:entry["stop"]], basis, gradients=True)
    np.testing.assert_array_equal(arr["position_gradients"], ref.position_gradients)
    # resume: complete shards are kept (same mtime), a deleted one is recomputed
    first = out / "shard-00000.npz"
    last = out / "shard-00004.npz"
    mtime = first.stat().st_mtime_ns
    last.unlink()
    describe_shards(data, basis, out, gradients=True, shard_atoms=60, progress=False)
    assert first.stat().st_mtime_ns == mtime and last.exists()
    # a corrupt index is a clear error
    (out / "index.json").write_text("{")
    with pytest.raises(FileFormatError, match="index.json"):
        load_shards(out)
    with pytest.raises(MinbasisError, match="not a folder"):
        describe_shards(data, basis, data, progress=False)


def test_cli_describe_shards_and_dask(setup):
    tmp, data, basis, frames = setup
    bpath = tmp / "basis.json"
    basis.save(bpath)
    assert main(["describe", str(data), "--basis", str(bpath), "--shards", "--shard-atoms", "100",
                 "-o", str(tmp / "cli")]) == 0
    index = json.loads((tmp / "cli" / "index.json").read_text())
    assert index["n_structures"] == 30 and len(index["shards"]) == 3
    pytest.importorskip("distributed")
    assert main(["describe", str(data), "--basis", str(bpath), "--dask", "local:2", "--shard-atoms", "100",
                 "-o", str(tmp / "dask")]) == 0
    np.testing.assert_array_equal(load_shards(tmp / "dask")["features"], load_shards(tmp / "cli")["features"])


def test_cli_fit_dask_equals_serial(setup):
    pytest.importorskip("distributed")
    tmp, data, basis, frames = setup
    bpath = tmp / "basis.json"
    basis.save(bpath)
    keys = ["--energy-key", "energy_high", "--forces-key", "forces_high"]
    assert main(["fit", str(data), "--basis", str(bpath), *keys, "-o", str(tmp / "s.npz")]) == 0
    assert main(["fit", str(data), "--basis", str(bpath), *keys, "--dask", "local:2", "-o", str(tmp / "d.npz")]) == 0
    s, d = mb.fit.load_model(tmp / "s.npz"), mb.fit.load_model(tmp / "d.npz")
    np.testing.assert_allclose(d.weights, s.weights, rtol=1e-10, atol=1e-10 * np.abs(s.weights).max())
    assert main(["fit", str(data), "--basis", str(bpath), *keys, "--model", "mlp", "--dask", "local:1",
                 "-o", str(tmp / "m.npz")]) == 2
