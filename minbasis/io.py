"""Atomic file writes: every file minbasis writes goes through here.

A file is written to a temporary name in the target folder and renamed over the target
(``os.replace``, atomic on POSIX and Windows for paths on one file system), so a reader — or
a run interrupted half-way — never sees a half-written file, and an existing file is only
replaced by a complete new one. Missing parent folders are created.

The versioned, content-hashed model files built on this are in :mod:`minbasis.fit.fileio`.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_save_npz"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename),
    with the mode of the replaced file or ``0666 & ~umask``, removing partial files of killed
    earlier writers (:func:`minbasis.files.atomic_write`).

    Raises
    ------
    OSError
        The folder cannot be created or written; the temporary file is removed and ``path`` is
        left as it was.
    """
    from .files import atomic_write_bytes as _write

    _write(path, data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`atomic_write_bytes`.

    Raises
    ------
    OSError
        As :func:`atomic_write_bytes`.
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], compressed: bool = False) -> None:
    """Write ``arrays`` as a NumPy ``.npz`` archive at exactly ``path`` (no suffix added), atomically.

    Parameters
    ----------
    path : target file name
    arrays : name → array (any dtype NumPy can store without pickling)
    compressed : ``numpy.savez_compressed`` instead of ``numpy.savez``

    Raises
    ------
    OSError
        As :func:`atomic_write_bytes`.
    """
    from .files import atomic_write

    save = np.savez_compressed if compressed else np.savez
    atomic_write(path, lambda fh: save(fh, **arrays))  # streamed: no in-memory copy of the archive
