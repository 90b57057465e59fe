"""Structure batches under a memory budget, and the :class:`Descriptors` result container.

Shared by the CPU path (:func:`minbasis.describe`) and the GPU path
(:func:`minbasis.kernels.gpu.describe_xp`), and by the fits, which evaluate training and
test structures batch by batch. Re-exported by :mod:`minbasis.describe`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from .neighbours import build_batch

__all__ = ["GRADIENT_BATCH_BYTES", "Descriptors", "iter_batches"]

#: Memory budget (bytes) of the per-pair gradient array of one batch.
GRADIENT_BATCH_BYTES = 512 * 1024**2


@dataclass
class Descriptors:
    """Features with their gradients (returned by ``describe(..., gradients=True)``).

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
                 progress: str | None = None):
    """Yield (first structure index, list of structures, Batch) with about ``budget_bytes`` of pairs each.

    The pair count is estimated as 60 per atom (dense metals at 5 Å have about 42). With
    ``progress`` set, a tqdm bar with that description counts structures
    (:func:`minbasis.progress.progress_bar`: shown only on a terminal). ``basis`` is a
    :class:`minbasis.Basis` (only its evaluation plan, ``basis.plan``, is used).
    """
    plan = basis.plan
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
