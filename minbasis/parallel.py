"""Connections to Dask clusters, shared by sharded descriptors and distributed fits.

Cluster specifications (``dask=`` in Python, ``--dask`` on the command line; the optional
extra ``[dask]`` provides ``distributed``): ``"local:N"`` starts a ``distributed.LocalCluster``
with N single-threaded worker processes on this machine (closed again at the end);
``"tcp://HOST:PORT"`` connects to a running scheduler; a ``distributed.Client`` is used as it
is. Used by :mod:`minbasis.cluster` (sharded ``describe``) and :mod:`minbasis.fit.distributed`.
"""

from __future__ import annotations

import contextlib

from .errors import MinbasisError

__all__ = ["dask_client"]


def _require_distributed():
    try:
        import distributed
    except ImportError:
        raise MinbasisError("--dask needs the optional dependency 'distributed': pip install 'minbasis[dask]'") from None
    return distributed


@contextlib.contextmanager
def dask_client(spec):
    """Context manager yielding a ``distributed.Client`` for a cluster specification (module docstring).

    Raises
    ------
    MinbasisError
        Missing ``distributed`` package, a malformed specification, or a scheduler that cannot be reached.
    """
    distributed = _require_distributed()
    if isinstance(spec, distributed.Client):
        yield spec
        return
    text = str(spec)
    if text.startswith("local:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise MinbasisError(f"--dask local:N needs a worker count N >= 1, got {text!r}")
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    if "://" in text:
        try:
            client = distributed.Client(text, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise MinbasisError(f"cannot reach the Dask scheduler at {text}: {exc}") from exc
        try:
            yield client
        finally:
            client.close()
        return
    raise MinbasisError(f"unknown Dask cluster {text!r}: use local:N or tcp://HOST:PORT")
