"""Distributed assembly of linear fits and descriptors on Dask (optional extra ``[dask]``).

A fit's normal equations are a sum over structures, so they split into shards: every Dask
worker computes the :class:`~minbasis.fit.assembly.NormalEquations` of its own contiguous
shards of structures (reading each shard from the data file itself when the data come from a
file), and the partial pieces are folded into one on the workers. The shards are those of
:func:`minbasis.fit.assembly.shard_bounds` — fixed by the data, not by the number of workers —
and they are folded in the same order as in one process, so the result is the one-process
fit's (tested to 1e-10 relative).

Cluster specifications (``dask=`` in Python, ``--dask`` on the command line):

* ``"local:N"`` — start a ``distributed.LocalCluster`` with N single-threaded worker
  processes on this machine (closed again at the end);
* ``"tcp://HOST:PORT"`` — connect to a running scheduler (``dask scheduler`` on one node,
  ``dask worker tcp://HOST:PORT`` on each compute node);
* a ``distributed.Client`` — use it as it is.

Workers must have minbasis installed (the same version) and, for file shards, see the data
file under the same path.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..errors import MinbasisError
from .assembly import NormalEquations, RowWeights, accumulate, shard_bounds
from .data import Labels, get_labels

__all__ = ["dask_client", "distributed_equations"]


def _require_distributed():
    try:
        import distributed  # noqa: F401
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


def _slice_labels(labels: Labels, a: int, b: int) -> Labels:
    return Labels(energy=None if labels.energy is None else labels.energy[a:b],
                  forces=None if labels.forces is None else labels.forces[a:b],
                  stress=None if labels.stress is None else labels.stress[a:b],
                  config_type=labels.config_type[a:b])


def _shard_equations(spec_dict: dict, source, weights: RowWeights, e0, P: int, C: int) -> NormalEquations:
    """Worker task: the normal equations of one shard. ``source`` is ("atoms", list, Labels) or
    ("file", path, start, stop, (energy_key, forces_key, stress_key))."""
    from ..spec import BasisSpec

    basis = Basis(BasisSpec.from_dict(spec_dict))
    if source[0] == "file":
        from .data import read_structures

        _, path, a, b, keys = source
        atoms_list = read_structures(path, index=f"{a}:{b}")
        labels = get_labels(atoms_list, *keys)
    else:
        _, atoms_list, labels = source
    return accumulate(basis, atoms_list, labels, weights, e0, into=NormalEquations(P, C))


def _merge(a: NormalEquations, b: NormalEquations) -> NormalEquations:
    return a.copy().merge(b)


def distributed_equations(basis: Basis, atoms_list: Sequence[Atoms], labels: Labels, weights: RowWeights,
                          e0: np.ndarray | None, dask, source_file: tuple | None = None) -> NormalEquations:
    """Accumulate the normal equations of a linear fit on a Dask cluster.

    Parameters
    ----------
    basis, atoms_list, labels, weights, e0 : as :func:`minbasis.fit.assembly.accumulate`
    dask : cluster specification or ``distributed.Client`` (module docstring)
    source_file : optional (path, (energy_key, forces_key, stress_key)): workers read their own
        shard of structures from this file instead of receiving them

    Returns
    -------
    NormalEquations of all structures (shards folded in order on the workers)

    Raises
    ------
    MinbasisError
        Missing ``distributed``, unreachable scheduler. Errors of a worker (bad labels, bad
        structures) are raised here with their own type.
    """
    C, F = basis.plan.n_channels, basis.plan.n_features
    P, Ce = C * F, (0 if e0 is not None else C)
    spec_dict = basis.spec.to_dict()
    with dask_client(dask) as client:
        bounds = shard_bounds(atoms_list)
        futures = []
        for a, b in bounds:
            if source_file is not None:
                src = ("file", str(source_file[0]), a, b, tuple(source_file[1]))
            else:
                src = ("atoms", list(atoms_list[a:b]), _slice_labels(labels, a, b))
            futures.append(client.submit(_shard_equations, spec_dict, src, weights, e0, P, Ce, pure=False))
        total = futures[0]
        for f in futures[1:]:
            total = client.submit(_merge, total, f, pure=False)
        out = NormalEquations(P, Ce)
        return out.merge(total.result())
