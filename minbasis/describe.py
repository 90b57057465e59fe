"""``minbasis.describe``: per-atom features and their gradients for any ML model."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from .basis import Basis
from .errors import MinbasisError
from .kernels import as_atoms_list, build_batch, features
from .kernels.batching import GRADIENT_BATCH_BYTES, Descriptors, iter_batches  # noqa: F401 (re-exported)
from .kernels.evaluate import sample_gradients, sample_keys

__all__ = ["describe", "Descriptors", "iter_batches"]


def describe(atoms_or_list: Atoms | Sequence[Atoms], basis: Basis, *, gradients: bool = False,
             strain_gradients: bool = False, progress: bool = False, device: str = "cpu",
             dtype: str = "float64", output: str = "numpy") -> np.ndarray | Descriptors:
    """Evaluate the basis for every atom of one or several structures.

    Parameters
    ----------
    atoms_or_list : ase.Atoms or list of ase.Atoms
        Positions in Å; periodic along the directions where ``pbc`` is True (any triclinic cell).
    basis : Basis
    gradients : bool
        Also return position gradients (and strain gradients if ``strain_gradients``).
    progress : bool
        Show a tqdm progress bar over batches (only when stderr is a terminal; see
        :mod:`minbasis.progress`).
    device : "cpu" or "gpu"
        "cpu": the Numba kernels. "gpu": CuPy on the current CUDA device
        (:mod:`minbasis.kernels.gpu`; neighbour lists are still built on the host), float64,
        and every returned array (the ``Descriptors`` fields included) is a ``cupy.ndarray``.
    dtype : "float64" or "float32"
        Precision of the GPU evaluation (every stage, sums included); the CPU kernels are
        float64 only.
    output : "numpy" or "tensormap"
        "tensormap": a ``metatensor.TensorMap`` (needs ``pip install "minbasis[metatensor]"``;
        CPU only) with one block per centre species (key ``center_type``), samples
        ``["system", "atom"]`` and, with ``gradients``, a ``"positions"`` gradient block and with
        ``strain_gradients`` ``"strain"`` and ``"cell"`` gradient blocks, in featomic's layout
        (:mod:`minbasis.metatensor_output`).

    Returns
    -------
    numpy.ndarray (cupy.ndarray with device="gpu"), float64, shape (total atoms, n_features),
    rows in input order; or :class:`Descriptors` when ``gradients`` is True; or a
    ``metatensor.TensorMap`` with output="tensormap".

    Raises
    ------
    StructureError
        Empty input or structure, NaN/inf positions, degenerate cell, overlapping atoms.
    SpeciesError
        A species that is not in ``basis.species``.
    MinbasisError
        An unknown ``device``, ``dtype`` or ``output``, float32 on the CPU, device="gpu" when CuPy is
        not installed or no CUDA device is usable, or output="tensormap" without metatensor.
    """
    if not isinstance(basis, Basis):
        raise TypeError(f"basis must be a minbasis.Basis, got {type(basis).__name__}")
    if output != "numpy":
        if output != "tensormap":
            raise MinbasisError(f"output must be 'numpy' or 'tensormap', got {output!r}")
        if device != "cpu" or np.dtype(dtype) != np.float64:
            raise MinbasisError('output="tensormap" is computed on the CPU in float64')
        from .metatensor_output import to_tensormap

        grads = (("positions",) if gradients else ()) + (("strain", "cell") if strain_gradients else ())
        return to_tensormap(as_atoms_list(atoms_or_list), basis, grads, describe_fn=describe)
    if dtype not in ("float64", "float32", np.float64, np.float32):
        raise MinbasisError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    if device != "cpu":
        from .kernels.gpu import array_module, describe_xp

        xp = array_module(device)  # raises MinbasisError before any work
        return describe_xp(as_atoms_list(atoms_or_list), basis, xp, np.dtype(dtype), gradients=gradients,
                           strain_gradients=strain_gradients, progress=progress)
    if np.dtype(dtype) != np.float64:
        raise MinbasisError("the CPU kernels evaluate in float64 only; float32 is a GPU option (device='gpu')")
    atoms_list = as_atoms_list(atoms_or_list)
    plan = basis.plan
    F = plan.n_features
    bytes_per_pair = (3 * F * 8 * ((1.5 if strain_gradients else 1.0) if gradients else 0.0)) + 64
    budget = GRADIENT_BATCH_BYTES if gradients else 256 * 1024**2
    if not gradients:
        xs, ptr, offset = [], [0], 0
        for _, _, batch in iter_batches(atoms_list, basis, budget, bytes_per_pair, "describe" if progress else None):
            xs.append(features(plan, batch)[0])
            ptr.extend((batch.atom_ptr[1:] + offset).tolist())
            offset += batch.n_atoms
        return _join(xs)
    # gradients: count the samples of every neighbour batch first (neighbour lists are cheap next to
    # the Jacobian), allocate the outputs once and let each batch write into its slices, so that the
    # peak memory is one copy of the result, not the batches plus their concatenation
    ranges, counts = [], []
    for start, chunk, batch in iter_batches(atoms_list, basis, budget, bytes_per_pair):
        if start == 0 and len(chunk) == len(atoms_list):
            X, smp, G, S = sample_gradients(plan, batch, strain=strain_gradients)  # one batch: no copies at all
            return Descriptors(features=X, gradient_samples=smp, position_gradients=G, strain_gradients=S,
                               atom_ptr=np.asarray(batch.atom_ptr, dtype=np.int64))
        ranges.append((start, start + len(chunk)))
        counts.append((batch.n_atoms, len(sample_keys(batch)[0])))
    n_atoms = sum(c[0] for c in counts)
    n_samples = sum(c[1] for c in counts)
    X = np.zeros((n_atoms, F))
    G = np.zeros((n_samples, 3, F))
    S = np.zeros((n_atoms, 3, 3, F)) if strain_gradients else None
    samples = np.empty((n_samples, 2), dtype=np.int64)
    ptr = [0]
    a0 = s0 = 0
    bar = None
    if progress:
        from .progress import progress_bar

        bar = progress_bar(total=len(atoms_list), desc="describe", unit="structure")
    try:
        for (start, stop), (na, ns) in zip(ranges, counts):
            chunk = atoms_list[start:stop]
            batch = build_batch(chunk, plan.species, plan.numbers, plan.r_cut)
            out = (X[a0:a0 + na], G[s0:s0 + ns], S[a0:a0 + na] if S is not None else None)
            _, smp, _, _ = sample_gradients(plan, batch, strain=strain_gradients, out=out)
            samples[s0:s0 + ns] = smp + a0
            ptr.extend((batch.atom_ptr[1:] + a0).tolist())
            a0 += na
            s0 += ns
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return Descriptors(features=X, gradient_samples=samples, position_gradients=G, strain_gradients=S,
                       atom_ptr=np.asarray(ptr, dtype=np.int64))


def _join(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate along axis 0 without copying when there is a single batch."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
