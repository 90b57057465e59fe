"""Progress bars that stay out of log files, and the switch behind ``minbasis … --quiet``.

Every long-running minbasis function that takes ``progress=True`` draws its bar through
:func:`progress_bar`. A bar is shown only when standard error is a terminal (tqdm's
``disable=None`` rule), so batch jobs whose stderr goes to a file get no carriage-return
spam. Overrides, strongest first:

* :func:`set_quiet` (``True`` from the command line's ``--quiet``): no bars at all;
* environment variable ``MINBASIS_PROGRESS``: ``0``/``off``/``never`` hides every bar,
  ``1``/``on``/``always`` shows them even when stderr is not a terminal (then at most one
  update every 30 s).
"""

from __future__ import annotations

import os
import sys

__all__ = ["progress_bar", "set_quiet", "is_quiet"]

_QUIET = False


def set_quiet(quiet: bool = True) -> None:
    """Hide (True) or allow (False) every minbasis progress bar in this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """True after ``set_quiet(True)`` or with ``MINBASIS_PROGRESS=0``."""
    return _QUIET or os.environ.get("MINBASIS_PROGRESS", "").strip().lower() in ("0", "off", "never", "false", "no")


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", leave: bool = False, enabled: bool = True):
    """A tqdm bar on standard error, or a disabled one (same interface, prints nothing).

    Parameters
    ----------
    total : int or None; desc : str; unit : str; leave : bool (as tqdm)
    enabled : bool, the caller's own ``progress`` flag (False: always disabled)

    Returns
    -------
    tqdm.tqdm instance; use as a context manager or call ``update``/``close``.
    """
    from tqdm.auto import tqdm

    forced = os.environ.get("MINBASIS_PROGRESS", "").strip().lower() in ("1", "on", "always", "true", "yes")
    if not enabled or is_quiet():
        disable = True
    elif forced:
        disable = False
    else:
        disable = None  # tqdm: hide when stderr is not a terminal
    interactive = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=disable, file=sys.stderr,
                mininterval=0.1 if interactive else 30.0)
