"""A neighbour list with a skin, reused across molecular-dynamics steps (Verlet list).

The list of candidate pairs is built with vesin at ``r_cut + skin`` and kept, as integer cell
shifts, until some atom has moved more than ``skin / 2`` from where it was at the last build
(then no pair can have come from beyond ``r_cut + skin`` to within ``r_cut``; the rule LAMMPS
uses with ``neighbor skin`` and ``neigh_modify check yes``: Verlet, Phys. Rev. 159, 98, 1967;
Allen & Tildesley, *Computer Simulation of Liquids*, 2nd ed., sec. 5.3). Every step the pair
vectors r_ij = r_j − r_i + S_ij · cell of the candidates are recomputed from the current
positions and those within ``r_cut`` are kept, in the order the kernels expect (by centre,
then neighbour channel; :mod:`minbasis.kernels.neighbours`).

A change of the cell, of the periodic directions, of the atom count or of the species forces
a rebuild, so the list is always exact: it holds every pair within ``r_cut`` and no other,
as a fresh :func:`~minbasis.kernels.neighbours.build_batch` would.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from ase import Atoms
from numba import njit

from ..errors import StructureError
from .neighbours import MIN_DISTANCE, Batch, _check_structure

__all__ = ["SkinNeighbourList"]


@njit(cache=True, nogil=True)
def _select_pairs(pos, cell, cand_i, cand_j, cand_S, ch, r_cut, centre_ptr, pair_i, pair_j, pair_ch,
                  pair_vec):  # pragma: no cover - compiled
    """Keep the candidates with |r_ij| < r_cut; returns (number kept, smallest distance², its pair).

    Candidates are sorted by centre, so the kept pairs are too; ``centre_ptr`` (N+1,) is filled
    with the CSR offsets of each centre's kept pairs.
    """
    N = pos.shape[0]
    rc2 = r_cut * r_cut
    for a in range(N + 1):
        centre_ptr[a] = 0
    k = 0
    dmin = np.inf
    pmin = -1
    for p in range(cand_i.shape[0]):
        i = cand_i[p]
        j = cand_j[p]
        s0 = cand_S[p, 0]
        s1 = cand_S[p, 1]
        s2 = cand_S[p, 2]
        dx = pos[j, 0] - pos[i, 0] + s0 * cell[0, 0] + s1 * cell[1, 0] + s2 * cell[2, 0]
        dy = pos[j, 1] - pos[i, 1] + s0 * cell[0, 1] + s1 * cell[1, 1] + s2 * cell[2, 1]
        dz = pos[j, 2] - pos[i, 2] + s0 * cell[0, 2] + s1 * cell[1, 2] + s2 * cell[2, 2]
        d2 = dx * dx + dy * dy + dz * dz
        if d2 < rc2:
            pair_i[k] = i
            pair_j[k] = j
            pair_ch[k] = ch[j]
            pair_vec[k, 0] = dx
            pair_vec[k, 1] = dy
            pair_vec[k, 2] = dz
            centre_ptr[i + 1] += 1
            if d2 < dmin:
                dmin = d2
                pmin = k
            k += 1
    for a in range(N):
        centre_ptr[a + 1] += centre_ptr[a]
    return k, dmin, pmin


@njit(cache=True, nogil=True)
def _max_displacement2(pos, ref):  # pragma: no cover - compiled
    """Largest squared displacement |pos − ref|² over atoms (Å²)."""
    m = 0.0
    for a in range(pos.shape[0]):
        dx = pos[a, 0] - ref[a, 0]
        dy = pos[a, 1] - ref[a, 1]
        dz = pos[a, 2] - ref[a, 2]
        d2 = dx * dx + dy * dy + dz * dz
        if d2 > m:
            m = d2
    return m


class SkinNeighbourList:
    """Verlet list for one structure: rebuilt only when an atom moved more than ``skin / 2``.

    Parameters
    ----------
    species : sequence of str
        Basis species (channels), as :class:`~minbasis.kernels.plan.EvaluationPlan.species`.
    numbers : sequence of int
        Their atomic numbers.
    r_cut : float
        Interaction cutoff, Å.
    skin : float
        Extra distance of the candidate list, Å (≥ 0; 0 rebuilds every step). LAMMPS' metal
        units default is 2 Å; 1 Å is a good value for r_cut ≈ 5 Å at room temperature.
    min_distance : float
        Pairs closer than this (Å) raise :class:`~minbasis.errors.StructureError` unless
        ``overlap="warn"``.
    overlap : {"error", "warn"}
        What to do about overlapping atoms: raise, or warn once per rebuild (for models with a
        repulsive core, which keeps the energy finite and rising there).

    Attributes
    ----------
    n_builds : int
        How many times the candidate list was built (for tests and benchmarks).
    batch : Batch
        The current pairs (views into preallocated buffers; valid until the next :meth:`update`).
    """

    def __init__(self, species: Sequence[str], numbers: Sequence[int], r_cut: float, skin: float = 1.0,
                 min_distance: float = MIN_DISTANCE, overlap: str = "error"):
        if not (float(skin) >= 0.0 and math.isfinite(float(skin))):
            raise ValueError(f"skin must be a finite distance ≥ 0 Å, got {skin}")
        if overlap not in ("error", "warn"):
            raise ValueError(f"overlap must be 'error' or 'warn', got {overlap!r}")
        self.species = tuple(species)
        self.numbers = [int(z) for z in numbers]
        self.channel_of = {int(z): c for c, z in enumerate(self.numbers)}
        self.r_cut = float(r_cut)
        self.skin = float(skin)
        self.min_distance = float(min_distance)
        self.overlap = overlap
        self.n_builds = 0
        self._key = None
        self.batch: Batch | None = None

    # -- building -----------------------------------------------------------------------------
    def _rebuild(self, atoms: Atoms, pos: np.ndarray) -> None:
        from vesin import NeighborList

        ch = _check_structure(0, atoms, self.channel_of, self.species)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any():
            box = np.ascontiguousarray(atoms.cell.array, dtype=np.float64)
            periodic = pbc.tolist() if not pbc.all() else True
        else:
            box = np.zeros((3, 3))
            periodic = False
        nl = NeighborList(cutoff=self.r_cut + self.skin, full_list=True)
        i, j, S = nl.compute(points=pos, box=box, periodic=periodic, quantities="ijS")
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        order = np.argsort(i * len(self.species) + ch[j], kind="stable")
        N = len(atoms)
        self._cand_i = np.ascontiguousarray(i[order])
        self._cand_j = np.ascontiguousarray(j[order])
        self._cand_S = np.ascontiguousarray(np.asarray(S, dtype=np.float64)[order].reshape(-1, 3))
        self._ch = np.ascontiguousarray(ch, dtype=np.int64)
        self._ref = pos.copy()
        self._cell = box.copy()
        self._key = (N, atoms.numbers.tobytes(), pbc.tobytes(), box.tobytes())
        P = len(self._cand_i)
        self._centre_ptr = np.zeros(N + 1, dtype=np.int64)
        self._pair_i = np.empty(P, dtype=np.int64)
        self._pair_j = np.empty(P, dtype=np.int64)
        self._pair_ch = np.empty(P, dtype=np.int64)
        self._pair_vec = np.empty((P, 3))
        self._zeros = np.zeros(P, dtype=np.int64)
        vol = abs(float(np.linalg.det(box))) if pbc.all() else np.nan
        self._static = dict(centre_ch=self._ch, atom_struct=np.zeros(N, dtype=np.int64),
                            atom_ptr=np.array([0, N], dtype=np.int64), volumes=np.array([vol]))
        self._overlap_warned = False
        self.n_builds += 1

    def needs_rebuild(self, atoms: Atoms) -> bool:
        """Whether :meth:`update` would rebuild the candidate list for ``atoms`` (first call, a
        changed cell, pbc, atom count or species, or an atom moved more than skin/2)."""
        if self._key is None or len(atoms) != self._key[0]:
            return True
        box = np.asarray(atoms.cell.array, dtype=np.float64) if atoms.pbc.any() else np.zeros((3, 3))
        if (box.tobytes() != self._key[3] or np.asarray(atoms.pbc, dtype=bool).tobytes() != self._key[2]
                or atoms.numbers.tobytes() != self._key[1]):
            return True
        pos = np.ascontiguousarray(atoms.positions, dtype=np.float64)
        return _max_displacement2(pos, self._ref) > 0.25 * self.skin * self.skin or self.skin == 0.0

    def update(self, atoms: Atoms) -> Batch:
        """The pairs of ``atoms`` within ``r_cut`` as a one-structure :class:`Batch`.

        Raises
        ------
        StructureError
            NaN/inf positions, degenerate cell, empty structure, or (with ``overlap="error"``)
            two atoms closer than ``min_distance``.
        SpeciesError
            A species outside the basis.
        """
        pos = np.ascontiguousarray(atoms.positions, dtype=np.float64)
        if self.needs_rebuild(atoms):
            self._rebuild(atoms, pos)
        elif not np.isfinite(pos).all():
            _check_structure(0, atoms, self.channel_of, self.species)  # raises with the atom named
        k, dmin2, pmin = _select_pairs(pos, self._cell, self._cand_i, self._cand_j, self._cand_S, self._ch,
                                       self.r_cut, self._centre_ptr, self._pair_i, self._pair_j, self._pair_ch,
                                       self._pair_vec)
        if k and dmin2 < self.min_distance ** 2:
            msg = (f"atoms {int(self._pair_i[pmin])} and {int(self._pair_j[pmin])} overlap "
                   f"(distance {math.sqrt(dmin2):.3g} Å < {self.min_distance} Å)")
            if self.overlap == "error":
                raise StructureError(f"structure 0: {msg}")
            if not self._overlap_warned:
                import warnings

                warnings.warn(f"{msg}; the repulsive core keeps the energy finite, but check the simulation",
                              RuntimeWarning, stacklevel=3)
                self._overlap_warned = True
        self.batch = Batch(centre_ptr=self._centre_ptr, pair_i=self._pair_i[:k], pair_j=self._pair_j[:k],
                           pair_ch=self._pair_ch[:k], pair_vec=self._pair_vec[:k], pair_struct=self._zeros[:k],
                           **self._static)
        return self.batch
