"""``minbasis.describe``: per-atom features and their gradients for any ML model.

The public entry point only: it validates the arguments, picks the kernel backend of ``device``
(:func:`minbasis.kernels.backend.get_backend`) and runs the driver loop over neighbour batches
(:func:`minbasis.kernels.driver.describe_structures`), which is the same for every device.
:data:`GRADIENT_BATCH_BYTES` (read at each call) bounds the gradient output of one batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from .basis import Basis, require_basis
from .errors import MinbasisError
from .kernels.backend import get_backend
from .kernels.batching import GRADIENT_BATCH_BYTES, Descriptors, iter_batches  # noqa: F401 (re-exported)
from .kernels.driver import describe_structures
from .kernels.neighbours import as_atoms_list

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
    device : "cpu", "gpu" or "cuda"
        "cpu": the Numba kernels. "gpu" (or "cuda"): CuPy on the current CUDA device
        (:class:`minbasis.kernels.backend.GpuBackend`; neighbour lists are still built on the
        host), and every returned array (the ``Descriptors`` fields included) is a ``cupy.ndarray``.
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
    numpy.ndarray (cupy.ndarray with device="gpu"), float64 (or float32 with dtype="float32" on
    the GPU), shape (total atoms, n_features), rows in input order; or :class:`Descriptors` when
    ``gradients`` is True; or a ``metatensor.TensorMap`` with output="tensormap".

    Raises
    ------
    StructureError
        Empty input or structure, NaN/inf positions, degenerate cell, overlapping atoms.
    SpeciesError
        A species that is not in ``basis.species``.
    MinbasisError
        An unknown ``device``, ``dtype`` or ``output``, float32 on the CPU, device="gpu" when CuPy is
        not installed or no CUDA device is usable, or output="tensormap" on a GPU, in float32 or
        without metatensor.
    TypeError
        ``basis`` is not a :class:`~minbasis.Basis`.
    """
    require_basis(basis)
    if output not in ("numpy", "tensormap"):
        raise MinbasisError(f"output must be 'numpy' or 'tensormap', got {output!r}")
    backend = get_backend(device)  # MinbasisError for an unknown device
    if output == "tensormap":
        if backend.name != "cpu" or np.dtype(dtype) != np.float64:
            raise MinbasisError('output="tensormap" is computed on the CPU in float64')
        from .metatensor_output import to_tensormap

        grads = (("positions",) if gradients else ()) + (("strain", "cell") if strain_gradients else ())
        return to_tensormap(as_atoms_list(atoms_or_list), basis, grads, describe_fn=describe)
    if dtype not in ("float64", "float32", np.float64, np.float32):
        raise MinbasisError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    dt = backend.check_dtype(dtype)  # the CPU kernels: float64 only
    backend.require()  # a missing CuPy or CUDA device raises here, before any work
    return describe_structures(as_atoms_list(atoms_or_list), basis.plan, backend, gradients=gradients,
                               strain_gradients=strain_gradients, dtype=dt, progress=progress,
                               gradient_batch_bytes=GRADIENT_BATCH_BYTES)
