"""One atomic-write helper for every file minbasis writes, and the output-path guard.

Writes go to a hidden temporary file in the target folder, named
``.<name>.<pid>.<random>.tmp``, which is renamed over the target only when complete, so a
reader never sees a half-written file and a killed writer never destroys the old one. The
result gets the mode of the file it replaces, or ``0666 & ~umask`` for a new file (temporary
files are created private, 0600). Before writing, partial files that earlier writers of the
same target left behind (their process no longer exists, or older than a day) are removed.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from .errors import MinbasisError

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "clean_stale_partials", "check_not_input",
           "current_umask", "STALE_SECONDS", "read_toml"]

#: Partial files older than this (seconds) are removed even if their writer's pid is alive.
STALE_SECONDS = 24 * 3600


def current_umask() -> int:
    """The process umask (read from /proc where possible, else by setting and restoring it)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def clean_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove partial files of ``path`` left by killed writers; returns the removed paths.

    A partial file is ``.<name>.<pid>.<random>.tmp`` (or the older ``.<name>.<random>.tmp`` /
    ``.npz`` forms) in the target's folder; it is stale when its pid no longer exists or it is
    older than :data:`STALE_SECONDS`. Errors (a file vanishing, no permission) are ignored.
    """
    path = Path(path)
    removed = []
    try:
        entries = list(path.parent.iterdir()) if path.parent.exists() else []
    except OSError:
        return removed
    prefix = f".{path.name}."
    pat = re.compile(r"^(\d+)\.[^.]+\.tmp$")
    now = time.time()
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not (name.endswith(".tmp") or name.endswith(".npz")):
            continue
        rest = name[len(prefix):]
        m = pat.match(rest)
        try:
            old = now - entry.stat().st_mtime > STALE_SECONDS
            if (m is not None and not _pid_alive(int(m.group(1)))) or old:
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[object], None], *, binary: bool = True) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file that is then renamed.

    Parameters
    ----------
    path : path-like
        Target; its folder is created if needed.
    write : callable
        Called with an open file object (binary unless ``binary=False``).

    Returns
    -------
    Path of the written file. Its mode is the replaced file's mode, or ``0666 & ~umask``.

    Raises
    ------
    OSError
        If the folder or file cannot be written (the old file, if any, is then unchanged).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_not_input(outputs: Iterable[str | os.PathLike | None], inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse to write any of ``outputs`` over one of ``inputs`` (same path, link or hard link).

    Raises
    ------
    MinbasisError
        Naming the output and the input it would destroy.
    """
    ins = [Path(p) for p in inputs if p is not None and str(p) != ""]
    for out in outputs:
        if out is None:
            continue
        out = Path(out)
        for inp in ins:
            if _same_file(out, inp):
                raise MinbasisError(f"output {out} is the input file {inp}: writing it would destroy the input; "
                                    "choose another output name (-o)")


def read_toml(path: str | os.PathLike) -> dict:
    """The TOML document at ``path`` as a dict (:mod:`tomllib`): config files of the command line.

    Raises
    ------
    MinbasisError
        Missing file, a folder, or invalid TOML (with the parser's line and column).
    """
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise MinbasisError(f"no such config file: {path}") from None
    except IsADirectoryError:
        raise MinbasisError(f"config {path} is a folder, not a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MinbasisError(f"{path}: invalid TOML ({exc})") from exc
