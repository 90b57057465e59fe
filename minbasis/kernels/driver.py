"""The one driver loop: structures → neighbour batches → a kernel backend → one assembled result.

:func:`describe_structures` is what :func:`minbasis.describe` runs on every device. It splits a
list of structures into neighbour batches under a memory budget
(:func:`~minbasis.kernels.batching.iter_batches`), hands each batch to a
:class:`~minbasis.kernels.backend.KernelBackend` and assembles the results in input order:

* features only: the per-batch feature arrays are concatenated (no copy for a single batch);
* with gradients: the samples of every batch are counted first (neighbour lists are cheap next to
  the Jacobian), the outputs are allocated once on the backend, and each batch, built again,
  writes into its slices — so the peak memory is one copy of the result, not the batches plus
  their concatenation. A list that fits in one batch is evaluated directly, with no copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from .backend import KernelBackend
from .batching import GRADIENT_BATCH_BYTES, Descriptors, iter_batches, sample_keys
from .neighbours import build_batch
from .plan import EvaluationPlan

__all__ = ["describe_structures", "batch_budget"]


def batch_budget(backend: KernelBackend, n_features: int, dtype: np.dtype, gradients: bool, strain: bool,
                 gradient_batch_bytes: float = GRADIENT_BATCH_BYTES) -> tuple[float, float]:
    """Memory budget of the neighbour batches of :func:`describe_structures` on ``backend``.

    Per pair: the position gradients, 3·F values of ``dtype`` (×1.5 with strain gradients), plus 64
    bytes of neighbour data; per batch: ``gradient_batch_bytes`` × the backend's
    :attr:`~minbasis.kernels.backend.KernelBackend.gradient_batch_factor` with gradients, else the
    backend's :attr:`~minbasis.kernels.backend.KernelBackend.feature_batch_bytes`.

    Returns
    -------
    budget_bytes : float
        Bytes of one batch (the ``budget_bytes`` of :func:`~minbasis.kernels.batching.iter_batches`).
    bytes_per_pair : float
        Bytes per estimated neighbour pair (its ``bytes_per_pair``).
    """
    itemsize = np.dtype(dtype).itemsize
    bytes_per_pair = 3 * n_features * itemsize * ((1.5 if strain else 1.0) if gradients else 0.0) + 64
    budget = gradient_batch_bytes * backend.gradient_batch_factor if gradients else backend.feature_batch_bytes
    return budget, bytes_per_pair


def describe_structures(atoms_list: list[Atoms], plan: EvaluationPlan, backend: KernelBackend, *,
                        gradients: bool = False, strain_gradients: bool = False, dtype: Any = np.float64,
                        progress: bool = False, batch_bytes: float | None = None,
                        gradient_batch_bytes: float = GRADIENT_BATCH_BYTES) -> Any:
    """Features (and their gradients) of a list of structures, batch by batch on ``backend``.

    Parameters
    ----------
    atoms_list : list of ase.Atoms
        Positions in Å; periodic along the directions where ``pbc`` is True.
    plan : EvaluationPlan
        ``basis.plan``.
    backend : KernelBackend
        Where the batches are evaluated (:func:`~minbasis.kernels.backend.get_backend`).
    gradients : bool
        Also return position gradients per (centre, atom) sample.
    strain_gradients : bool
        With ``gradients``, also the strain gradients.
    dtype : float64 or float32
        Precision of the evaluation (one of the backend's ``dtypes``).
    progress : bool
        Show a progress bar over structures (on a terminal only).
    batch_bytes : float, optional
        Budget of one neighbour batch; by default from :func:`batch_budget`.
    gradient_batch_bytes : float
        Base budget of a batch with gradients (:data:`~minbasis.kernels.batching.GRADIENT_BATCH_BYTES`).

    Returns
    -------
    array of the backend, ``dtype``, shape (total atoms, F), rows in input order; or, with
    ``gradients``, :class:`~minbasis.kernels.batching.Descriptors` whose arrays are the
    backend's (shapes, dtypes and units documented there).

    Raises
    ------
    StructureError, SpeciesError
        As :func:`~minbasis.kernels.neighbours.build_batch`.
    MinbasisError
        A dtype the backend does not evaluate in; the backend is not available here.
    """
    dt = backend.check_dtype(dtype)
    F = plan.n_features
    budget, bytes_per_pair = batch_budget(backend, F, dt, gradients, gradients and strain_gradients,
                                          gradient_batch_bytes)
    if batch_bytes is not None:
        budget = batch_bytes
    if not gradients:
        xs = [backend.features(plan, batch, dtype=dt)[0]
              for _, _, batch in iter_batches(atoms_list, plan, budget, bytes_per_pair, "describe" if progress else None)]
        return backend.concatenate(xs)
    # count the samples of every batch first, allocate the outputs once and let each batch write
    # into its slices (peak memory: one copy of the result)
    ranges, counts = [], []
    for start, chunk, batch in iter_batches(atoms_list, plan, budget, bytes_per_pair):
        if start == 0 and len(chunk) == len(atoms_list):
            X, smp, G, S = backend.sample_gradients(plan, batch, strain=strain_gradients, dtype=dt)  # one batch: no copies
            return Descriptors(features=X, gradient_samples=smp, position_gradients=G, strain_gradients=S,
                               atom_ptr=backend.asarray(np.asarray(batch.atom_ptr, dtype=np.int64)))
        ranges.append((start, start + len(chunk)))
        counts.append((batch.n_atoms, len(sample_keys(batch)[0])))
    n_atoms = sum(c[0] for c in counts)
    n_samples = sum(c[1] for c in counts)
    X = backend.zeros((n_atoms, F), dt)
    G = backend.zeros((n_samples, 3, F), dt)
    S = backend.zeros((n_atoms, 3, 3, F), dt) if strain_gradients else None
    samples = np.empty((n_samples, 2), dtype=np.int64)
    ptr = [0]
    a0 = s0 = 0
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(total=len(atoms_list), desc="describe", unit="structure")
    try:
        for (start, stop), (na, ns) in zip(ranges, counts):
            chunk = atoms_list[start:stop]
            batch = build_batch(chunk, plan.species, plan.numbers, plan.r_cut)
            out = (X[a0:a0 + na], G[s0:s0 + ns], S[a0:a0 + na] if S is not None else None)
            _, smp, _, _ = backend.sample_gradients(plan, batch, strain=strain_gradients, dtype=dt, out=out)
            samples[s0:s0 + ns] = backend.to_numpy(smp) + a0
            ptr.extend((batch.atom_ptr[1:] + a0).tolist())
            a0 += na
            s0 += ns
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return Descriptors(features=X, gradient_samples=backend.asarray(samples), position_gradients=G,
                       strain_gradients=S, atom_ptr=backend.asarray(np.asarray(ptr, dtype=np.int64)))
