"""Repulsive core: a screened-Coulomb (ZBL) pair term below an inner cutoff, smoothly switched off.

A linear ACE model knows nothing about distances shorter than those in its training data, and
its energy may turn over when atoms are pushed closer (a compressed crystal, a hard collision in
hot MD). A fixed pair baseline that is large and repulsive at short range and exactly zero
beyond an inner cutoff keeps such configurations physical without touching the fit where data
exist — as pacemaker's core repulsion and the ZBL pair basis of ACEpotentials.jl.

Pair energy (each unordered pair counted once; in a full neighbour list each atom takes half)::

    φ_ij(r) = ZBL_ij(r) · s((r − r_a) / (r_b − r_a)),   r_a = r_in − w,  r_b = r_in
    ZBL_ij(r) = k_e Z_i Z_j / r · Σ_k c_k exp(−d_k r / a_ij),  a_ij = 0.46850 Å / (Z_i^0.23 + Z_j^0.23)

with k_e = e²/(4π ε0) = 14.399645 eV Å, (c_k) = (0.18175, 0.50986, 0.28022, 0.02817),
(d_k) = (3.19980, 0.94229, 0.40290, 0.20162) (the universal screening function of Ziegler,
Biersack & Littmark, *The Stopping and Range of Ions in Solids*, Pergamon 1985) and the switch
s(x) = 1 − 10x³ + 15x⁴ − 6x⁵ for 0 ≤ x ≤ 1 (1 below, 0 above; continuous to the second
derivative). ZBL is positive and decreasing and s is non-increasing, so φ is positive and
strictly decreasing for r < r_in: the pair energy rises monotonically as two atoms approach,
and is exactly zero from r_in on.

Conventions as the rest of minbasis (design.md 3.5): forces F = −∂E/∂r (eV/Å), virial
W = −Σ_p r_p ⊗ ∂E/∂r_p (eV), stress σ = −W/V (eV/Å³).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase.data import atomic_numbers
from numba import njit

from .errors import MinbasisError

__all__ = ["ZBLCore", "zbl_pair", "pair_min_distances", "KE", "ZBL_C", "ZBL_D"]

#: e²/(4π ε0) in eV·Å (CODATA 2018).
KE = 14.399645478425668
#: ZBL universal screening function: coefficients and exponents.
ZBL_C = np.array([0.18175, 0.50986, 0.28022, 0.02817])
ZBL_D = np.array([3.19980, 0.94229, 0.40290, 0.20162])


@njit(cache=True, nogil=True)
def _pair_value(r, zz, a, ra, rb):  # pragma: no cover - compiled
    """(φ, dφ/dr) of one pair at distance r (see module docstring); zz = k_e Z_i Z_j."""
    if r >= rb:
        return 0.0, 0.0
    x = r / a
    e0 = math.exp(-3.19980 * x)
    e1 = math.exp(-0.94229 * x)
    e2 = math.exp(-0.40290 * x)
    e3 = math.exp(-0.20162 * x)
    scr = 0.18175 * e0 + 0.50986 * e1 + 0.28022 * e2 + 0.02817 * e3
    dscr = -(0.18175 * 3.19980 * e0 + 0.50986 * 0.94229 * e1 + 0.28022 * 0.40290 * e2
             + 0.02817 * 0.20162 * e3) / a
    v = zz / r * scr
    dv = zz / r * dscr - v / r
    if r <= ra:
        return v, dv
    w = rb - ra
    t = (r - ra) / w
    t2 = t * t
    s = 1.0 - t2 * t * (10.0 - 15.0 * t + 6.0 * t2)
    ds = -30.0 * t2 * (1.0 - 2.0 * t + t2) / w
    return v * s, dv * s + v * ds


@njit(cache=True, nogil=True)
def _core_kernel(pair_i, pair_ch, centre_ch, pair_vec, zz, a, ra, rb, E, G):  # pragma: no cover - compiled
    """E[i] += ½ φ(r_p), G[p] += ½ φ'(r_p) r̂_p for every pair p = (i, j) of a full list."""
    for p in range(pair_i.shape[0]):
        ci = centre_ch[pair_i[p]]
        cj = pair_ch[p]
        rbp = rb[ci, cj]
        dx = pair_vec[p, 0]
        dy = pair_vec[p, 1]
        dz = pair_vec[p, 2]
        r2 = dx * dx + dy * dy + dz * dz
        if r2 >= rbp * rbp:
            continue
        r = math.sqrt(r2)
        v, dv = _pair_value(r, zz[ci, cj], a[ci, cj], ra[ci, cj], rbp)
        E[pair_i[p]] += 0.5 * v
        g = 0.5 * dv / r
        G[p, 0] += g * dx
        G[p, 1] += g * dy
        G[p, 2] += g * dz


def zbl_pair(r: np.ndarray, z1: int, z2: int, r_in: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Switched ZBL pair energy φ(r) and dφ/dr for atomic numbers z1, z2.

    Parameters
    ----------
    r : array (P,) of distances, Å (> 0)
    z1, z2 : int, atomic numbers
    r_in : float, inner cutoff (Å): φ = 0 for r ≥ r_in
    width : float, switch width w (Å): pure ZBL below r_in − w

    Returns
    -------
    (phi, dphi) : float64 arrays (P,), eV and eV/Å.
    """
    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    a = 0.46850 / (z1 ** 0.23 + z2 ** 0.23)
    out = np.zeros((2, len(r)))
    for k, x in enumerate(r):
        out[0, k], out[1, k] = _pair_value(float(x), KE * z1 * z2, a, r_in - width, r_in)
    return out[0], out[1]


def pair_min_distances(atoms_list, species: Sequence[str], r_max: float = 6.0) -> np.ndarray:
    """Shortest distance of each species pair over a list of structures (Å; inf where absent).

    Returns
    -------
    float64 array (C, C), symmetric, C = len(species).
    """
    from vesin import NeighborList

    idx = {atomic_numbers[s]: c for c, s in enumerate(species)}
    C = len(species)
    out = np.full((C, C), np.inf)
    nl = NeighborList(cutoff=float(r_max), full_list=False)
    for atoms in atoms_list:
        ch = np.array([idx.get(int(z), -1) for z in atoms.numbers])
        pbc = np.asarray(atoms.pbc, dtype=bool)
        box = atoms.cell.array if pbc.any() else np.zeros((3, 3))
        periodic = (pbc.tolist() if not pbc.all() else True) if pbc.any() else False
        i, j, d = nl.compute(points=atoms.positions, box=box, periodic=periodic, quantities="ijd")
        if len(d) == 0:
            continue
        ci, cj = ch[i], ch[j]
        ok = (ci >= 0) & (cj >= 0)
        np.minimum.at(out, (ci[ok], cj[ok]), d[ok])
        np.minimum.at(out, (cj[ok], ci[ok]), d[ok])
    return out


@dataclass
class ZBLCore:
    """Repulsive ZBL core of a model (module docstring), one inner cutoff per species pair.

    Attributes
    ----------
    species : tuple of str
        Channel order (the basis species).
    r_in : (C, C) float64, Å
        Inner cutoff per species pair (symmetric): the core is exactly zero from r_in on.
    width : float
        Switch width w, Å: pure ZBL below r_in − w (0 < w ≤ min r_in).
    """

    species: tuple
    r_in: np.ndarray
    width: float = 0.5

    def __post_init__(self) -> None:
        """Check shapes and values.

        Raises
        ------
        MinbasisError
            Unknown species, r_in not (C, C), not symmetric or not positive, or a width outside
            (0, min r_in].
        """
        self.species = tuple(str(s) for s in self.species)
        unknown = [s for s in self.species if s not in atomic_numbers]
        if unknown:
            raise MinbasisError(f"repulsive core: unknown species {unknown}")
        C = len(self.species)
        self.r_in = np.ascontiguousarray(np.broadcast_to(np.asarray(self.r_in, dtype=np.float64), (C, C)))
        if not (np.isfinite(self.r_in).all() and (self.r_in > 0).all() and np.allclose(self.r_in, self.r_in.T)):
            raise MinbasisError(f"repulsive core: r_in must be a symmetric ({C}, {C}) array of positive distances "
                                f"in Å, got {self.r_in.tolist()}")
        self.width = float(self.width)
        if not 0.0 < self.width <= self.r_in.min():
            raise MinbasisError(f"repulsive core: switch width must be in (0, min r_in = {self.r_in.min():.3g}] Å, "
                                f"got {self.width}")
        z = np.array([atomic_numbers[s] for s in self.species], dtype=np.float64)
        self._zz = np.ascontiguousarray(KE * np.outer(z, z))
        self._a = np.ascontiguousarray(0.46850 / (z[:, None] ** 0.23 + z[None, :] ** 0.23))
        self._ra = np.ascontiguousarray(self.r_in - self.width)

    @classmethod
    def from_data(cls, species: Sequence[str], atoms_list, *, fraction: float = 0.9, width: float = 0.5,
                  default: float | None = None) -> "ZBLCore":
        """A core whose inner cutoff per species pair is ``fraction`` × the shortest distance of
        that pair in ``atoms_list`` (so it never touches the training data), for pairs absent
        from the data the smallest such value over all pairs (or ``default`` Å).

        Raises
        ------
        MinbasisError
            No pair of atoms within 6 Å in the data and no ``default``.
        """
        dmin = pair_min_distances(atoms_list, species)
        r_in = fraction * dmin
        finite = r_in[np.isfinite(r_in)]
        fill = float(finite.min()) if finite.size else default
        if fill is None:
            raise MinbasisError("repulsive core: the data have no pair of atoms within 6 Å; give r_in explicitly")
        r_in = np.where(np.isfinite(r_in), r_in, fill)
        return cls(species=tuple(species), r_in=r_in, width=min(float(width), float(r_in.min())))

    @property
    def r_max(self) -> float:
        """Largest inner cutoff, Å (pairs beyond it never contribute)."""
        return float(self.r_in.max())

    def add_to(self, batch, E: np.ndarray, G: np.ndarray) -> None:
        """Add the core to per-atom energies E (N,) eV and pair gradients G (P, 3) eV/Å of a
        :class:`~minbasis.kernels.neighbours.Batch` whose channels follow :attr:`species`, in place."""
        _core_kernel(batch.pair_i, batch.pair_ch, batch.centre_ch, batch.pair_vec, self._zz, self._a, self._ra,
                     self.r_in, E, G)

    def to_dict(self) -> dict:
        """JSON-serialisable form (stored in model files)."""
        return {"type": "zbl", "species": list(self.species), "r_in": self.r_in.tolist(), "width": self.width}

    @classmethod
    def from_dict(cls, d: dict) -> "ZBLCore":
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        MinbasisError
            Unknown core type or invalid values.
        """
        if not isinstance(d, dict) or d.get("type") != "zbl":
            raise MinbasisError(f"unknown repulsive core {d!r}; this minbasis knows type 'zbl'")
        return cls(species=tuple(d["species"]), r_in=np.asarray(d["r_in"]), width=float(d["width"]))

    def pair_energy(self, r: np.ndarray, s1: str, s2: str) -> tuple[np.ndarray, np.ndarray]:
        """φ(r) (eV) and dφ/dr (eV/Å) of the pair (s1, s2) at distances r (Å)."""
        c1, c2 = self.species.index(s1), self.species.index(s2)
        return zbl_pair(r, atomic_numbers[s1], atomic_numbers[s2], float(self.r_in[c1, c2]), self.width)
