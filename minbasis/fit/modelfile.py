"""Versioned, hashed ``.npz`` model files shared by every model kind.

A model file holds the model's arrays, a ``meta`` record (format, format version, minbasis
version, model kind, hyper-parameters, content hash, provenance) and the embedded basis
specification. Reading checks the envelope, the kind and the content hash, so a file from
another format version, of another kind, or edited by hand is a clear
:class:`~minbasis.errors.FileFormatError`. Re-exported by :mod:`minbasis.fit.atomic`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .._version import MODEL_FORMAT_VERSION, __version__
from ..basis import Basis
from ..errors import FileFormatError
from ..spec import BasisSpec, canonical_hash

__all__ = ["array_digest", "model_hash", "write_model_file", "read_model_meta", "read_model_file"]


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
    """
    meta = {"format": "minbasis.model", "format_version": MODEL_FORMAT_VERSION, "minbasis_version": __version__,
            "kind": kind, "hyper": hyper, "hash": model_hash(basis, kind, arrays, hyper), "info": info}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                        basis=np.frombuffer(json.dumps(basis.spec.to_dict()).encode(), dtype=np.uint8))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
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
