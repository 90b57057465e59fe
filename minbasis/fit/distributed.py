"""Distributed assembly of linear fits and descriptors on Dask (optional extra ``[dask]``).

A fit's normal equations are a sum over structures, so they split into shards: every Dask
worker computes the :class:`~minbasis.fit.assembly.NormalEquations` of its own contiguous
shards of structures (reading each shard from the data file itself when the data come from a
file), and the partial pieces are folded into one on the workers. The shards are those of
:func:`minbasis.fit.assembly.shard_bounds` — fixed by the data, not by the number of workers —
and they are folded in the same order as in one process, so the result is the one-process
fit's (tested to 1e-10 relative).

Cluster specifications: see :mod:`minbasis.cluster` (``"local:N"``, ``"tcp://HOST:PORT"`` or a Client).
Workers must have minbasis installed (the same version) and, for file shards, see the data
file under the same path.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..parallel import dask_client
from .assembly import NormalEquations, RowWeights, accumulate, shard_bounds
from .data import Labels, get_labels

__all__ = ["distributed_equations"]


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
