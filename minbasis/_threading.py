"""Process safety of the Numba kernels: a fork-safe threading layer and a clear error otherwise.

Numba's parallel kernels run on a *threading layer*. Its default on Linux is GNU OpenMP when
TBB is not installed, and GNU OpenMP cannot be used again in a child created by ``fork()``
once it has run in the parent: the child is terminated ("fork() called from a process already
using GNU OpenMP") and a ``multiprocessing.Pool`` (fork is its default start method on Linux
before Python 3.14) waits forever. See the Numba documentation, "The Threading Layers"
(https://numba.readthedocs.io/en/stable/user/threading-layer.html).

minbasis therefore selects Numba's ``"forksafe"`` layer when it is imported and the user has
made no choice (neither ``NUMBA_THREADING_LAYER`` nor ``numba.config.THREADING_LAYER``):
TBB if installed, else an OpenMP that is not GNU's, else Numba's own ``workqueue`` pool. The
kernels never launch nested or concurrent parallel regions (they keep the GIL), so the
workqueue layer's lack of thread safety does not matter to them.

If a fork-unsafe layer is nevertheless active (the user chose GNU OpenMP, or Numba code ran
it before minbasis was imported), a fork is detected with :func:`os.register_at_fork`: the
parent gets a :class:`RuntimeWarning` and every minbasis kernel call in the child raises
:class:`~minbasis.errors.MinbasisError` naming the fix, instead of the child being killed and
the pool hanging.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["select_fork_safe_layer", "fork_unsafe_layer", "check_fork_safe", "FORK_MESSAGE"]

FORK_MESSAGE = ("minbasis: this process was forked after Numba's GNU OpenMP threading layer ran in its parent, "
                "and GNU OpenMP cannot run again in a forked child. Use multiprocessing.get_context('spawn') or "
                "'forkserver', or let minbasis choose a fork-safe layer: import minbasis before running other "
                "Numba parallel code and do not set NUMBA_THREADING_LAYER=omp (or install tbb).")

_CHILD_UNSAFE = False


def select_fork_safe_layer() -> str:
    """Ask Numba for its ``"forksafe"`` threading layer unless the user chose one already.

    Returns the configured layer name (``numba.config.THREADING_LAYER``) after the call.
    Has no effect once Numba's layer has been launched in this process."""
    import numba

    if not os.environ.get("NUMBA_THREADING_LAYER") and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"
    return numba.config.THREADING_LAYER


def fork_unsafe_layer() -> bool:
    """True when Numba's launched threading layer is GNU OpenMP (not usable after fork)."""
    try:
        import numba

        layer = numba.threading_layer()
    except (ValueError, ImportError):  # not launched yet
        return False
    if layer != "omp":
        return False
    try:
        from numba.np.ufunc import omppool

        return getattr(omppool, "openmp_vendor", "GNU") == "GNU"
    except ImportError:
        return True


def check_fork_safe() -> None:
    """Raise :class:`~minbasis.errors.MinbasisError` (:data:`FORK_MESSAGE`) in a child forked from a
    process whose Numba layer is GNU OpenMP; called before every parallel kernel launch."""
    if _CHILD_UNSAFE:
        from .errors import MinbasisError

        raise MinbasisError(FORK_MESSAGE)


_parent_unsafe = False


def _before_fork() -> None:
    global _parent_unsafe
    _parent_unsafe = fork_unsafe_layer()
    if _parent_unsafe:
        warnings.warn(FORK_MESSAGE, RuntimeWarning, stacklevel=2)


def _after_fork_child() -> None:
    global _CHILD_UNSAFE
    _CHILD_UNSAFE = _CHILD_UNSAFE or _parent_unsafe


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_child)
