"""Dask clusters and sharded descriptor output for data sets larger than one machine's memory.

Cluster specifications (``dask=`` in Python, ``--dask`` on the command line) — the optional
extra ``[dask]`` (``pip install 'minbasis[dask]'``) provides ``distributed``:

* ``"local:N"`` — start a ``distributed.LocalCluster`` with N single-threaded worker
  processes on this machine (closed again at the end);
* ``"tcp://HOST:PORT"`` — connect to a running scheduler: ``dask scheduler`` on one node,
  ``dask worker tcp://HOST:PORT --nthreads 1`` on each compute node (workers need the same
  minbasis version and must see the data files under the same paths);
* a ``distributed.Client`` — used as it is.

**Sharded descriptors** (:func:`describe_shards`, ``minbasis describe DATA --basis B -o DIR
--dask ...``): the structures of DATA are cut into contiguous shards of about
``shard_atoms`` atoms (:func:`minbasis.fit.assembly.shard_bounds`); every worker reads its own
shard from DATA and writes ``DIR/shard-NNNNN.npz``, with the keys of a single ``describe``
output restricted to that shard:

* ``features`` (n, F) float64; ``atom_ptr`` (m+1,) offsets of the shard's structures;
  ``numbers`` (n,) atomic numbers; ``basis_hash`` (str); ``structure_range`` (2,) [start, stop)
  in DATA;
* with gradients: ``gradient_samples`` (G, 2) [i, k] (atom indices local to the shard),
  ``position_gradients`` (G, 3, F) = ∂B_i/∂r_k in 1/Å, ``strain_gradients`` (n, 3, 3, F).

``DIR/index.json`` is written last and lists the shards (file, start, stop, n_atoms), the basis
hash, the data file, ``n_structures``, ``n_atoms``, ``n_features`` and ``gradients``. Each shard
is written atomically; a rerun keeps the shards that are already complete and match (a long
job resumes). :func:`iter_shards` and :func:`load_shards` read them back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import FileFormatError, MinbasisError
from .io import atomic_save_npz, atomic_write_text
# the Dask connection helpers live in .parallel (fit.distributed needs them, and this module needs fit)
from .parallel import _require_distributed, dask_client  # noqa: F401 (re-exported)

__all__ = ["dask_client", "describe_shards", "iter_shards", "load_shards", "SHARD_FORMAT"]

SHARD_FORMAT = "minbasis-descriptor-shards"


def _describe_shard(spec_dict: dict, data: str, a: int, b: int, gradients: bool, path: str) -> dict:
    """Worker task: describe structures [a, b) of ``data`` and write them to ``path``."""
    from .basis import Basis
    from .describe import describe
    from .fit.data import read_structures
    from .spec import BasisSpec

    basis = Basis(BasisSpec.from_dict(spec_dict))
    frames = read_structures(data, index=f"{a}:{b}")
    out = {"basis_hash": np.array(basis.spec.hash), "structure_range": np.array([a, b]),
           "numbers": np.concatenate([f.numbers for f in frames])}
    if gradients:
        res = describe(frames, basis, gradients=True, strain_gradients=True)
        out.update(features=res.features, atom_ptr=res.atom_ptr, gradient_samples=res.gradient_samples,
                   position_gradients=res.position_gradients, strain_gradients=res.strain_gradients)
    else:
        out.update(features=describe(frames, basis), atom_ptr=np.cumsum([0] + [len(f) for f in frames]))
    atomic_save_npz(path, out)
    return {"file": Path(path).name, "start": a, "stop": b, "n_atoms": int(out["numbers"].size)}


def _shard_is_complete(path: Path, a: int, b: int, basis_hash: str, gradients: bool) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["basis_hash"]) != basis_hash or list(z["structure_range"]) != [a, b]:
                return None
            if gradients and "position_gradients" not in z.files:
                return None
            return {"file": path.name, "start": a, "stop": b, "n_atoms": int(z["numbers"].size)}
    except (OSError, KeyError, ValueError):
        return None


def describe_shards(data: str | os.PathLike, basis, out_dir: str | os.PathLike, *, gradients: bool = False,
                    dask=None, shard_atoms: int | None = None, progress: bool = True) -> dict:
    """Describe every structure of a file into a folder of shards (module docstring for the format).

    Parameters
    ----------
    data : structures file (any format ASE reads with an index)
    basis : Basis
    out_dir : output folder (created; must not be the data file)
    gradients : also write position and strain gradients (memory grows ~400 kB per atom)
    dask : cluster specification or Client; None runs the shards in this process
    shard_atoms : atoms per shard (default :data:`minbasis.fit.assembly.SHARD_ATOMS`)
    progress : tqdm bar over shards

    Returns
    -------
    dict, the contents of ``index.json``

    Raises
    ------
    MinbasisError
        ``out_dir`` is an existing file, or a cluster problem. StructureError for an unreadable file.
    """
    from .fit.assembly import SHARD_ATOMS, shard_bounds
    from .fit.data import read_structures

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MinbasisError(f"{out} exists and is not a folder; sharded output (--dask) needs a folder")
    if Path(data).resolve() == out.resolve():
        raise MinbasisError(f"the output folder {out} is the data file itself")
    frames = read_structures(data)
    bounds = shard_bounds(frames, shard_atoms or SHARD_ATOMS)
    out.mkdir(parents=True, exist_ok=True)
    spec_dict = basis.spec.to_dict()
    todo, done = [], {}
    for k, (a, b) in enumerate(bounds):
        path = out / f"shard-{k:05d}.npz"
        entry = _shard_is_complete(path, a, b, basis.spec.hash, gradients) if path.exists() else None
        if entry is not None:
            done[k] = entry
        else:
            todo.append((k, a, b, str(path)))
    bar = None
    if progress:
        from .progress import progress_bar

        bar = progress_bar(total=len(bounds), desc="describe shards", unit="shard")
        bar.update(len(done))
    try:
        if dask is None:
            for k, a, b, path in todo:
                done[k] = _describe_shard(spec_dict, str(data), a, b, gradients, path)
                if bar is not None:
                    bar.update(1)
        else:
            distributed = _require_distributed()
            with dask_client(dask) as client:
                futs = {client.submit(_describe_shard, spec_dict, str(Path(data).resolve()), a, b, gradients, path,
                                      pure=False): k for k, a, b, path in todo}
                for fut in distributed.as_completed(list(futs)):
                    done[futs[fut]] = fut.result()
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    index = {"format": SHARD_FORMAT, "version": 1, "basis_hash": basis.spec.hash, "data": str(data),
             "n_structures": len(frames), "n_atoms": int(sum(len(f) for f in frames)),
             "n_features": int(basis.n_features), "gradients": bool(gradients),
             "shards": [done[k] for k in range(len(bounds))]}
    atomic_write_text(out / "index.json", json.dumps(index, indent=1))
    return index


def _read_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{folder}: no readable index.json ({exc}); the sharded describe did not finish") from exc
    if index.get("format") != SHARD_FORMAT:
        raise FileFormatError(f"{folder}/index.json is not a {SHARD_FORMAT} index")
    return index


def iter_shards(folder: str | os.PathLike) -> Iterator[tuple[dict, dict]]:
    """Yield (shard entry of the index, arrays of that shard) in structure order.

    Raises
    ------
    FileFormatError
        Missing or foreign index, missing or corrupt shard, shard of another basis.
    """
    folder = Path(folder)
    index = _read_index(folder)
    for entry in index["shards"]:
        path = folder / entry["file"]
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{path}: cannot read shard ({exc})") from exc
        if str(arrays.get("basis_hash")) != index["basis_hash"]:
            raise FileFormatError(f"{path}: shard of another basis than the index")
        yield entry, arrays


def load_shards(folder: str | os.PathLike) -> dict:
    """Concatenate all shards (features, atom_ptr, numbers; no gradients) into one dict of arrays.

    Returns
    -------
    dict with ``features`` (N, F), ``atom_ptr`` (M+1,), ``numbers`` (N,)

    Raises
    ------
    FileFormatError
        As :func:`iter_shards`.
    """
    feats, ptr, nums = [], [np.zeros(1, dtype=np.int64)], []
    offset = 0
    for _, arr in iter_shards(folder):
        feats.append(arr["features"])
        nums.append(arr["numbers"])
        ptr.append(arr["atom_ptr"][1:] + offset)
        offset += int(arr["atom_ptr"][-1])
    return {"features": np.concatenate(feats), "atom_ptr": np.concatenate(ptr), "numbers": np.concatenate(nums)}
