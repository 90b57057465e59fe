"""Structure batches under a memory budget, the sample layout of gradients, and the
:class:`Descriptors` result container.

Used by the one driver loop of both backends (:func:`minbasis.kernels.driver.describe_structures`)
and by the fits, which evaluate training and test structures batch by batch. Re-exported by
:mod:`minbasis.describe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from ase import Atoms

from .neighbours import Batch, build_batch
from .plan import EvaluationPlan

__all__ = ["GRADIENT_BATCH_BYTES", "Descriptors", "iter_batches", "sample_keys"]

#: Memory budget (bytes) of the per-pair gradient array of one batch.
GRADIENT_BATCH_BYTES = 512 * 1024**2


@dataclass
class Descriptors:
    """Features with their gradients (returned by ``describe(..., gradients=True)``).

    The arrays are NumPy arrays from the CPU backend and CuPy arrays (float64 or float32) from the
    GPU backend (:mod:`minbasis.kernels.backend`).

    Attributes
    ----------
    features : (N, F) float64
        Per-atom invariants, rows in input order (all structures concatenated).
    gradient_samples : (G, 2) int64
        Rows [i, k]: the derivative of the features of atom i with respect to the position of
        atom k (global indices into ``features``); every i has a row with k = i.
    position_gradients : (G, 3, F) float64
        ∂B_{i,f}/∂r_{k,a} in 1/Å per feature unit.
    strain_gradients : (N, 3, 3, F) float64 or None
        ∂B_{i,f}/∂ε_{ab} = Σ_j (r_ij)_a ∂B_{i,f}/∂(r_ij)_b (unit-less), present when requested.
    atom_ptr : (M+1,) int64
        Offsets of each structure's atoms in ``features``.
    """

    features: np.ndarray
    gradient_samples: np.ndarray
    position_gradients: np.ndarray
    strain_gradients: np.ndarray | None
    atom_ptr: np.ndarray


def iter_batches(atoms_list: list[Atoms], basis, budget_bytes: float, bytes_per_pair: float,
                 progress: str | None = None) -> Iterator[tuple[int, list[Atoms], Batch]]:
    """Yield (first structure index, list of structures, Batch) with about ``budget_bytes`` of pairs each.

    The pair count is estimated as 60 per atom (dense metals at 5 Å have about 42); a batch holds
    at least one structure. With ``progress`` set, a tqdm bar with that description counts
    structures (:func:`minbasis.progress.progress_bar`: shown only on a terminal).

    Parameters
    ----------
    atoms_list : list of ase.Atoms
        Positions in Å.
    basis : minbasis.Basis or EvaluationPlan
        Only the evaluation plan (``basis.plan``, or the plan itself) is used: species and cutoff.
    budget_bytes : float
        Bytes that one batch may use at ``bytes_per_pair`` per estimated pair.
    bytes_per_pair : float
        Bytes of output and work per neighbour pair (for example 3·F·8 for float64 gradients).
    progress : str, optional
        Description of a progress bar over structures.

    Raises
    ------
    StructureError, SpeciesError
        As :func:`~minbasis.kernels.neighbours.build_batch`.
    """
    plan = basis if isinstance(basis, EvaluationPlan) else basis.plan
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(total=len(atoms_list), desc=progress, unit="structure")
    start = 0
    try:
        while start < len(atoms_list):
            stop = start
            pairs = 0.0
            while stop < len(atoms_list):
                est = len(atoms_list[stop]) * 60.0
                if stop > start and (pairs + est) * bytes_per_pair > budget_bytes:
                    break
                pairs += est
                stop += 1
            chunk = atoms_list[start:stop]
            yield start, chunk, build_batch(chunk, plan.species, plan.numbers, plan.r_cut)
            if bar is not None:
                bar.update(len(chunk))
            start = stop
    finally:
        if bar is not None:
            bar.close()


def sample_keys(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique (centre i, atom k) sample keys i·N + k of a batch (every i has k = i), and
    the inverse map of its P pair keys followed by its N self keys.

    This is the row layout of :attr:`Descriptors.gradient_samples` (rows [key // N, key % N]),
    shared by both backends.

    Returns
    -------
    keys : numpy.ndarray, int64, shape (G,), G ≤ P + N samples
    inverse : numpy.ndarray, int64, shape (P + N,): the sample row of each pair, then of each
        centre's self sample
    """
    N = batch.n_atoms
    keys = np.concatenate([batch.pair_i * N + batch.pair_j, np.arange(N) * (N + 1)])
    return np.unique(keys, return_inverse=True)
