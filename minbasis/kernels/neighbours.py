"""Validated structures → batched neighbour lists (vesin), the input of every kernel.

A :class:`Batch` concatenates the atoms of many structures; pairs are full (both i→j and
j→i), sorted by centre and then neighbour channel, with r_ij = r_j − r_i + S_ij · cell (Å).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

from ..errors import SpeciesError, StructureError
from ..validate import check_numbers, check_structure_geometry

__all__ = ["Batch", "build_batch", "as_atoms_list", "MIN_DISTANCE"]

#: Pairs closer than this (Å) are reported as overlapping atoms.
MIN_DISTANCE = 0.3


@dataclass
class Batch:
    """Atoms of several structures and their neighbour pairs (see module docstring).

    Attributes (N atoms, P pairs, M structures)
    ----------
    centre_ch : (N,) int64 channel (basis species index) of each atom
    atom_struct : (N,) int64 structure of each atom; atom_ptr : (M+1,) offsets
    centre_ptr : (N+1,) int64 CSR offsets of each centre's pairs
    pair_i, pair_j : (P,) int64 global atom indices; pair_ch : (P,) channel of j
    pair_vec : (P, 3) float64 Å; pair_struct : (P,) int64
    volumes : (M,) float64 Å³ (NaN for structures that are not periodic in all directions)
    """

    centre_ch: np.ndarray
    atom_struct: np.ndarray
    atom_ptr: np.ndarray
    centre_ptr: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_ch: np.ndarray
    pair_vec: np.ndarray
    pair_struct: np.ndarray
    volumes: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.centre_ch)

    @property
    def n_structures(self) -> int:
        return len(self.atom_ptr) - 1


def as_atoms_list(atoms_or_list: Atoms | Sequence[Atoms]) -> list[Atoms]:
    """Accept one :class:`ase.Atoms` or a sequence of them.

    Raises
    ------
    StructureError
        If the input is empty or holds something other than ``ase.Atoms``.
    """
    if isinstance(atoms_or_list, Atoms):
        return [atoms_or_list]
    try:
        items = list(atoms_or_list)
    except TypeError:
        raise StructureError(f"expected ase.Atoms or a list of them, got {type(atoms_or_list).__name__}") from None
    if not items:
        raise StructureError("no structures given (empty list)")
    for k, a in enumerate(items):
        if not isinstance(a, Atoms):
            raise StructureError(f"structure {k} is a {type(a).__name__}, expected ase.Atoms")
    return items


def _check_structure(k: int, atoms: Atoms, channel_of: dict[int, int], species: Sequence[str]) -> np.ndarray:
    """Channel of every atom of structure ``k`` after checking its atoms (count, positions, atomic
    numbers, species); the cell is checked by :func:`minbasis.validate.check_structure_geometry`."""
    if len(atoms) == 0:
        raise StructureError(f"structure {k} is empty (0 atoms)")
    pos = np.asarray(atoms.positions)
    if pos.dtype.kind not in "fiu" or pos.shape != (len(atoms), 3):
        raise StructureError(f"structure {k}: positions must be real numbers of shape ({len(atoms)}, 3), got "
                             f"{pos.dtype} {pos.shape}")
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        raise StructureError(f"structure {k}: non-finite (NaN/inf) position for atom(s) {np.flatnonzero(bad)[:10].tolist()}")
    numbers = check_numbers(k, atoms.numbers)
    table = np.full(max(int(numbers.max()), max(channel_of)) + 1, -1, dtype=np.int64)
    for z, c in channel_of.items():
        table[z] = c
    ch = table[numbers]
    if (ch < 0).any():
        from ase.data import chemical_symbols

        unknown = sorted({chemical_symbols[int(z)] for z in numbers[ch < 0]})
        raise SpeciesError(f"structure {k} contains species {unknown} not in the basis species {list(species)}")
    return ch


def build_batch(atoms_list: Sequence[Atoms], species: Sequence[str], numbers: Sequence[int], r_cut: float,
                min_distance: float = MIN_DISTANCE, max_pairs: float | None = None) -> Batch:
    """Validate structures and compute their neighbour lists within ``r_cut`` (Å) with vesin.

    Every structure is checked before vesin sees it (:mod:`minbasis.validate`): atoms, atomic
    numbers, species, periodic cell vectors (for any periodicity), overlap with its own periodic
    image, the extent of non-periodic structures and the estimated pair count against the pair
    budget ``max_pairs`` (default :data:`minbasis.validate.MAX_PAIRS` or ``$MINBASIS_MAX_PAIRS``).

    Raises
    ------
    StructureError
        Empty structure, NaN/inf positions, degenerate or nearly singular cell, atoms spread too
        far for the neighbour search, too many estimated pairs, or two atoms closer than
        ``min_distance`` Å (overlapping atoms).
    SpeciesError
        An atom's atomic number is invalid or its species is not among ``species``.
    """
    from vesin import NeighborList

    channel_of = {int(z): c for c, z in enumerate(numbers)}
    nl = NeighborList(cutoff=float(r_cut), full_list=True)
    ch_all, struct_all, pi_all, pj_all, vec_all, ps_all, vols = [], [], [], [], [], [], []
    offset = 0
    atom_ptr = [0]
    for k, atoms in enumerate(atoms_list):
        ch = _check_structure(k, atoms, channel_of, species)
        pos = np.ascontiguousarray(atoms.positions, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        geo = check_structure_geometry(k, pos, np.asarray(atoms.cell.array, dtype=np.float64), pbc, float(r_cut),
                                       min_distance, max_pairs)
        # geo.points/geo.box: the same pairs (i, j, r_ij) as the structure, in a fully periodic box
        i, j, D = nl.compute(points=geo.points, box=geo.box, periodic=True, quantities="ijD")
        d = np.linalg.norm(D, axis=1) if len(D) else np.zeros(0)
        if len(d) and d.min() < min_distance:
            q = int(np.argmin(d))
            raise StructureError(f"structure {k}: atoms {int(i[q])} and {int(j[q])} overlap "
                                 f"(distance {d[q]:.3g} Å < {min_distance} Å)")
        # by centre, then by neighbour channel: the kernels sum the moments of each run of equal
        # channel with vectorised loops, so one run per (centre, channel) is fastest
        order = np.argsort(i.astype(np.int64) * len(species) + ch[j], kind="stable")
        i, j, D = i[order].astype(np.int64), j[order].astype(np.int64), D[order]
        ch_all.append(ch)
        struct_all.append(np.full(len(atoms), k, dtype=np.int64))
        pi_all.append(i + offset)
        pj_all.append(j + offset)
        vec_all.append(D)
        ps_all.append(np.full(len(i), k, dtype=np.int64))
        vols.append(abs(atoms.get_volume()) if pbc.all() else np.nan)
        offset += len(atoms)
        atom_ptr.append(offset)
    pair_i = np.concatenate(pi_all)
    pair_j = np.concatenate(pj_all)
    centre_ch = np.concatenate(ch_all)
    centre_ptr = np.zeros(offset + 1, dtype=np.int64)
    np.cumsum(np.bincount(pair_i, minlength=offset), out=centre_ptr[1:])
    return Batch(centre_ch=centre_ch, atom_struct=np.concatenate(struct_all),
                 atom_ptr=np.asarray(atom_ptr, dtype=np.int64), centre_ptr=centre_ptr,
                 pair_i=pair_i, pair_j=pair_j, pair_ch=centre_ch[pair_j],
                 pair_vec=np.ascontiguousarray(np.concatenate(vec_all), dtype=np.float64),
                 pair_struct=np.concatenate(ps_all), volumes=np.asarray(vols, dtype=float))
