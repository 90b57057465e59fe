"""Structures and deformations shared by several test modules (imported as ``_helpers``)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import molecule


def strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    """A copy of ``atoms`` under the homogeneous deformation r → r (1 + ε) (row vectors), applied
    to the positions and, for periodic structures, the cell."""
    b = atoms.copy()
    x = np.eye(3) + eps
    if atoms.pbc.any():
        b.set_cell(atoms.cell.array @ x, scale_atoms=True)
    else:
        b.positions = atoms.positions @ x
    return b


def rattled_ethanol() -> Atoms:
    """Ethanol (ASE's geometry) with every atom displaced by up to 0.05 Å, seed 7."""
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=7)
    return atoms
