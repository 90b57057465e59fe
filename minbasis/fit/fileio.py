"""Versioned, content-hashed model files (format ``minbasis.model``), shared by every model kind.

A model file is a NumPy ``.npz`` archive written atomically (:func:`minbasis.io.atomic_save_npz`)
holding the model's arrays plus two records:

* ``meta``: JSON bytes with ``format`` ("minbasis.model"), ``format_version``
  (:data:`minbasis._version.MODEL_FORMAT_VERSION`), ``minbasis_version``, ``kind`` (the model
  class, see :mod:`minbasis.fit.registry`), ``hyper`` (hyper-parameters needed to rebuild the
  model), ``hash`` and ``info`` (provenance, not hashed);
* ``basis``: JSON bytes of the embedded basis specification.

The content hash (SHA-256 of the canonical JSON of the basis hash, kind, hyper-parameters and
per-array digests of dtype, shape and little-endian bytes) detects corrupt or edited files.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Sequence

import numpy as np

from .._version import MODEL_FORMAT_VERSION, __version__
from ..basis import Basis
from ..errors import FileFormatError, MinbasisError
from ..io import atomic_save_npz
from ..spec import BasisSpec, canonical_hash

__all__ = ["array_digest", "model_hash", "write_model_file", "read_model_meta", "read_model_file", "load_model_file"]


def array_digest(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """SHA-256 of every array's dtype, shape and little-endian bytes (for content hashes)."""
    out = {}
    for k in sorted(arrays):
        a = np.asarray(arrays[k])
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<") if a.dtype.kind in "fiu" else a.dtype)
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
        out[k] = h.hexdigest()
    return out


def model_hash(basis: Basis, kind: str, arrays: dict[str, np.ndarray], hyper: dict) -> str:
    """Content hash of a model file: basis hash, kind, hyper-parameters and array digests."""
    return canonical_hash({"basis": basis.spec.hash, "kind": kind, "hyper": hyper, "arrays": array_digest(arrays)})


def write_model_file(path: str | os.PathLike, kind: str, basis: Basis, arrays: dict[str, np.ndarray],
                     hyper: dict, info: dict) -> None:
    """Write a model as a versioned, hashed ``.npz`` (format ``minbasis.model``), atomically.

    Layout (as :meth:`LinearModel.save`): the arrays, ``meta`` (JSON bytes: format,
    format_version, minbasis_version, kind, hyper, hash, info) and ``basis`` (the embedded
    basis specification, JSON bytes). The file is written to a temporary name in the target
    folder and renamed, so a reader never sees a half-written model.

    Parameters
    ----------
    path : target file; kind : model kind (registry key); basis : the model's basis
    arrays : name → array (not ``meta`` or ``basis``); hyper : JSON-serialisable hyper-parameters (hashed)
    info : JSON-serialisable provenance (not hashed)

    Raises
    ------
    OSError
        The file cannot be written (the target is left as it was).
    TypeError
        ``hyper`` or ``info`` not JSON-serialisable.
    """
    meta = {"format": "minbasis.model", "format_version": MODEL_FORMAT_VERSION, "minbasis_version": __version__,
            "kind": kind, "hyper": hyper, "hash": model_hash(basis, kind, arrays, hyper), "info": info}
    atomic_save_npz(path, {**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                           "basis": np.frombuffer(json.dumps(basis.spec.to_dict()).encode(), dtype=np.uint8)},
                    compressed=True)


def read_model_meta(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check the envelope of a model file: (meta dict, all arrays).

    Raises
    ------
    FileFormatError
        Missing, unreadable or corrupt file, not a minbasis model, or another format version.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FileFormatError(f"no such model file: {path}") from None
    except IsADirectoryError:
        raise FileFormatError(f"model file {path} is a folder") from None
    except MemoryError:
        raise FileFormatError(f"{path}: not a readable minbasis model file (declares arrays too large to load)") from None
    except Exception as exc:  # noqa: BLE001 - zlib.error, struct.error, BadZipFile, ...: a corrupt file
        raise FileFormatError(f"{path}: not a readable minbasis model file ({type(exc).__name__}: {exc})") from exc
    if "meta" not in arrays or "basis" not in arrays:
        raise FileFormatError(f"{path}: not a minbasis model (no meta/basis records)")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{path}: corrupt model metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != "minbasis.model":
        raise FileFormatError(f"{path}: not a minbasis model")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise FileFormatError(f"{path}: model format version {meta.get('format_version')!r} (minbasis "
                              f"{meta.get('minbasis_version', '?')}) is not supported by minbasis {__version__} "
                              f"(reads version {MODEL_FORMAT_VERSION}); refit with `minbasis fit`")
    return meta, arrays


def read_model_file(path: str | os.PathLike, kind: str, names: Sequence[str]
                    ) -> tuple[Basis, dict[str, np.ndarray], dict, dict]:
    """Read a model file of the given ``kind`` written by :func:`write_model_file`.

    Returns
    -------
    (basis, arrays {name: array for name in names}, hyper, info)

    Raises
    ------
    FileFormatError
        As :func:`read_model_meta`; another model kind; missing arrays; content hash mismatch
        (corrupt or edited file).
    """
    meta, arrays = read_model_meta(path)
    if meta.get("kind", "linear") != kind:
        raise FileFormatError(f"{path}: a {meta.get('kind', 'linear')!r} model, not {kind!r}; "
                              f"read any kind with minbasis.fit.load_model")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise FileFormatError(f"{path}: model file lacks arrays {missing}")
    try:
        spec_dict = json.loads(arrays["basis"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{path}: corrupt embedded basis ({exc})") from exc
    basis = Basis(BasisSpec.from_dict(spec_dict, source=f"{path} (embedded basis)"))
    picked = {n: arrays[n] for n in names}
    hyper = meta.get("hyper", {})
    try:
        expected = model_hash(basis, kind, picked, hyper)
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: corrupt model metadata ({exc})") from exc
    if expected != meta.get("hash"):
        raise FileFormatError(f"{path}: content hash mismatch (file corrupt or edited)")
    return basis, picked, hyper, meta.get("info", {})


def load_model_file(path: str | os.PathLike, kind: str, names: Sequence[str], build: Callable):
    """Read a model file of ``kind`` (:func:`read_model_file`) and build the model from it.

    Parameters
    ----------
    path, kind, names : as :func:`read_model_file`
    build : (basis, arrays, hyper, info) → model

    Returns
    -------
    What ``build`` returns.

    Raises
    ------
    FileFormatError
        As :func:`read_model_file`, or contents that ``build`` rejects (a MinbasisError, KeyError,
        IndexError, TypeError or ValueError from it, e.g. inconsistent shapes), naming the file.
    """
    basis, arrays, hyper, info = read_model_file(path, kind, names)
    try:
        return build(basis, arrays, hyper, info)
    except (MinbasisError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: {exc}") from exc
