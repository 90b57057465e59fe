"""On-disk cache for expensive symbolic results, keyed by their inputs.

Location: ``$MINBASIS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/minbasis`` or
``~/.cache/minbasis``. Entries are JSON files named by the SHA-256 of the canonical JSON of
the key, which includes the minbasis version and a fingerprint of the source code of the
symbolic layer (:func:`code_fingerprint`), so an entry written by other code is never used.
Every entry stores a SHA-256 checksum of its key and value (:func:`entry_checksum`), and callers
may pass a structural check of the value; an unreadable entry, one whose checksum does not match
(corrupt or edited), or one that fails the check is recomputed and overwritten, never trusted.
Writes are atomic (:func:`minbasis.files.atomic_write`). Set ``MINBASIS_CACHE_DIR=off`` to disable.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .._version import __version__
from ..files import atomic_write_text
from ..spec import canonical_hash

__all__ = ["cache_dir", "cached_json", "code_fingerprint", "entry_checksum", "check_invariant_list"]


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of the source files of :mod:`minbasis.invariants` (and the spec format they emit)."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*.py")) + [here.parent / "spec.py", here.parent / "_version.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_dir() -> Path | None:
    """The cache folder, or None when caching is disabled."""
    env = os.environ.get("MINBASIS_CACHE_DIR")
    if env is not None:
        return None if env.lower() in ("", "off", "0", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minbasis"


def entry_checksum(full_key: dict, value: Any) -> str:
    """SHA-256 of the canonical JSON of ``{"key": full_key, "value": value}``."""
    return canonical_hash({"key": full_key, "value": value})


def cached_json(key: dict, compute: Callable[[], Any], check: Callable[[Any], None] | None = None) -> Any:
    """Return ``compute()``, cached on disk under ``key`` (a JSON-serialisable dict).

    A cached entry is used only if its key and its checksum (:func:`entry_checksum`) match and
    ``check`` passes; otherwise the value is recomputed and the entry rewritten.

    Parameters
    ----------
    key : dict
        Inputs of the computation; the minbasis version and code fingerprint are added.
    compute : callable
        Produces a JSON-serialisable value.
    check : callable, optional
        Structural check of a value read from the cache (types, index ranges); it raises
        (any exception) for a bad value, which is then recomputed. Freshly computed values are
        checked too, so a bug shows up as an error rather than as a poisoned cache entry.

    Returns
    -------
    The (JSON-compatible) value.
    """
    folder = cache_dir()
    if folder is None:
        value = compute()
        if check is not None:
            check(value)
        return value
    full_key = dict(key, minbasis_version=__version__, code=code_fingerprint())
    path = folder / f"{canonical_hash(full_key)}.json"
    try:
        stored = json.loads(path.read_text())
        if (isinstance(stored, dict) and stored.get("key") == full_key
                and stored.get("checksum") == entry_checksum(full_key, stored["value"])):
            if check is not None:
                check(stored["value"])
            return stored["value"]
    except Exception:  # noqa: BLE001 - any problem with an entry means: recompute it
        pass
    value = compute()
    if check is not None:
        check(value)
    try:
        atomic_write_text(path, json.dumps({"key": full_key, "value": value,
                                            "checksum": entry_checksum(full_key, value)}, separators=(",", ":")))
    except (OSError, ValueError):
        pass  # a read-only home folder must not break basis construction
    return value


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_invariant_list(value: Any, n_species: int, n_radial: int, l_max: int) -> None:
    """Structural check of a cached list of invariant dicts (:mod:`minbasis.spec` format).

    Each entry must be a dict with an integer ``order`` ≥ 1, ``factors`` [[z, n, l], ...] with
    0 ≤ z < n_species, 0 ≤ n < n_radial, 0 ≤ l ≤ l_max, and ``terms`` [[coef, [μ...]], ...]
    (one μ per factor, 0 ≤ μ ≤ 2 l, finite coef) or ``monomials`` [[coef, [[z, n, l, μ], ...]], ...]
    with the same ranges.

    Raises
    ------
    ValueError
        Naming the first bad entry.
    """
    import math

    if not isinstance(value, list) or not value:
        raise ValueError("cached invariants: not a non-empty list")

    def moment_ok(z, n, l) -> bool:
        return (_is_int(z) and _is_int(n) and _is_int(l) and 0 <= z < n_species and 0 <= n < n_radial
                and 0 <= l <= l_max)

    for k, inv in enumerate(value):
        if not isinstance(inv, dict) or not _is_int(inv.get("order")) or inv["order"] < 1:
            raise ValueError(f"cached invariant {k}: not a dict with an integer order")
        fs = inv.get("factors")
        if not isinstance(fs, list) or not all(isinstance(f, list) and len(f) == 3 and moment_ok(*f) for f in fs):
            raise ValueError(f"cached invariant {k}: factors out of range")
        if "monomials" in inv:
            for c, vs in inv["monomials"]:
                if not (isinstance(c, (int, float)) and math.isfinite(c)) or not all(
                        isinstance(v, list) and len(v) == 4 and moment_ok(*v[:3]) and _is_int(v[3])
                        and 0 <= v[3] <= 2 * v[2] for v in vs):
                    raise ValueError(f"cached invariant {k}: bad monomial")
        else:
            terms = inv.get("terms")
            if not isinstance(terms, list) or not terms:
                raise ValueError(f"cached invariant {k}: no terms")
            for c, mus in terms:
                if (not (isinstance(c, (int, float)) and math.isfinite(c)) or not isinstance(mus, list)
                        or len(mus) != len(fs)
                        or not all(_is_int(m) and 0 <= m <= 2 * f[2] for m, f in zip(mus, fs))):
                    raise ValueError(f"cached invariant {k}: bad term")
