"""minbasis descriptors as a metatensor ``TensorMap`` (optional extra: ``pip install "minbasis[metatensor]"``).

The layout follows featomic's (the metatensor conventions for atom-centred representations,
https://docs.metatensor.org):

* keys: ``center_type`` (atomic number of the centre), one block per species present;
* block samples ``["system", "atom"]`` (structure index, atom index within the structure),
  no components, properties ``["feature"]`` (index of the basis invariant);
* gradient ``"positions"``: samples ``["sample", "system", "atom"]`` (row of the block,
  structure, atom k whose position is varied), components ``[["xyz"]]``, values
  ∂B_{i,f}/∂r_{k,a} in 1/Å;
* gradient ``"strain"``: samples ``["sample"]``, components ``[["xyz_1"], ["xyz_2"]]``,
  values ∂B_{i,f}/∂ε_{ab} = Σ_j (r_ij)_a ∂B_{i,f}/∂(r_ij)_b (unit-less, ε applied as r → r(1 + ε));
* gradient ``"cell"``: samples ``["sample"]``, components ``[["xyz_1"], ["xyz_2"]]``,
  values ∂B_{i,f}/∂h_{ab} with h the cell matrix whose rows are the cell vectors, in 1/Å,
  = Σ_j S_{ij,a} ∂B_{i,f}/∂(r_ij)_b for the integer cell shifts S_ij of each pair.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from .basis import Basis
from .errors import MinbasisError

__all__ = ["to_tensormap"]

GRADIENTS = ("positions", "strain", "cell")


def to_tensormap(atoms_list: Sequence[Atoms], basis: Basis, gradients: Sequence[str] = (), *, describe_fn=None):
    """Features (and the requested gradients) of structures as a ``metatensor.TensorMap``.

    Parameters
    ----------
    atoms_list : list of ase.Atoms
    basis : :class:`minbasis.Basis`
    gradients : subset of ("positions", "strain", "cell")
    describe_fn : the :func:`minbasis.describe` function (passed in by it, which keeps this module
        below it in the import layers)

    Returns
    -------
    metatensor.TensorMap, float64 values (layout in the module docstring)

    Raises
    ------
    MinbasisError
        metatensor is not installed, or an unknown gradient name.
    StructureError / SpeciesError
        As :func:`minbasis.describe`.
    """
    try:
        from metatensor import Labels, TensorBlock, TensorMap
    except ImportError as exc:
        raise MinbasisError('output="tensormap" needs metatensor: pip install "minbasis[metatensor]"') from exc
    from .kernels.autodiff import build_geometry
    from .kernels.backend import get_backend

    grads = tuple(gradients)
    bad = [g for g in grads if g not in GRADIENTS]
    if bad:
        raise MinbasisError(f"unknown gradients {bad}; choose from {list(GRADIENTS)}")
    if describe_fn is None:
        raise MinbasisError('call minbasis.describe(..., output="tensormap") (to_tensormap needs describe_fn)')
    describe = describe_fn
    want_pos, want_strain, want_cell = ("positions" in grads), ("strain" in grads), ("cell" in grads)
    F = basis.n_features
    if want_pos or want_strain:
        d = describe(atoms_list, basis, gradients=True, strain_gradients=want_strain)
        X, ptr = d.features, d.atom_ptr
    else:
        X = describe(atoms_list, basis)
        ptr = np.concatenate([[0], np.cumsum([len(a) for a in atoms_list])]).astype(np.int64)
    N = len(X)
    system = np.repeat(np.arange(len(atoms_list)), np.diff(ptr))
    atom = np.arange(N) - ptr[system]
    numbers = np.concatenate([a.numbers for a in atoms_list]).astype(np.int64)
    cell_grad = None
    if want_cell:
        geom = build_geometry(atoms_list, basis.plan)
        _, J = get_backend("cpu").features(basis.plan, geom.batch, gradients=True)  # (P, 3, F) per pair
        cell_grad = np.zeros((N, 3, 3, F))
        np.add.at(cell_grad, geom.batch.pair_i, geom.shifts[:, :, None, None] * J[:, None, :, :])
    properties = Labels(["feature"], np.arange(F, dtype=np.int32).reshape(-1, 1))
    xyz = Labels(["xyz"], np.arange(3, dtype=np.int32).reshape(-1, 1))
    xyz1 = Labels(["xyz_1"], np.arange(3, dtype=np.int32).reshape(-1, 1))
    xyz2 = Labels(["xyz_2"], np.arange(3, dtype=np.int32).reshape(-1, 1))
    species = np.unique(numbers)
    blocks = []
    for z in species:
        rows = np.flatnonzero(numbers == z)
        samples = Labels(["system", "atom"], np.stack([system[rows], atom[rows]], axis=1).astype(np.int32))
        block = TensorBlock(values=np.ascontiguousarray(X[rows]), samples=samples, components=[], properties=properties)
        local = np.full(N, -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        if want_pos:
            smp = d.gradient_samples
            sel = np.flatnonzero(local[smp[:, 0]] >= 0)
            i, k = smp[sel, 0], smp[sel, 1]
            gs = Labels(["sample", "system", "atom"],
                        np.stack([local[i], system[k], atom[k]], axis=1).astype(np.int32))
            block.add_gradient("positions", TensorBlock(values=np.ascontiguousarray(d.position_gradients[sel]),
                                                        samples=gs, components=[xyz], properties=properties))
        one = Labels(["sample"], np.arange(len(rows), dtype=np.int32).reshape(-1, 1))
        if want_strain:
            block.add_gradient("strain", TensorBlock(values=np.ascontiguousarray(d.strain_gradients[rows]),
                                                     samples=one, components=[xyz1, xyz2], properties=properties))
        if want_cell:
            block.add_gradient("cell", TensorBlock(values=np.ascontiguousarray(cell_grad[rows]), samples=one,
                                                   components=[xyz1, xyz2], properties=properties))
        blocks.append(block)
    keys = Labels(["center_type"], species.astype(np.int32).reshape(-1, 1))
    return TensorMap(keys, blocks)
