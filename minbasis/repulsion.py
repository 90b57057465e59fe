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

On request (``clamp=True``; off by default, because the linear fit's design matrix does not
know it) the core also clamps the distance the ACE radial basis sees (an inner cutoff of the
radial basis, as the inner cutoff of pacemaker's radial functions): below r_in the ACE part is
evaluated at ρ(r) r̂ with ρ(r) = r_in − w g((r_in − r)/w), g(t) = t − t³ + t⁴/2 for t ≤ 1 and
g = 1/2 beyond (ρ = r for r ≥ r_in; ρ, ρ' and ρ'' continuous; ρ ≥ r_in − w/2); directions
are unchanged.

By default it fades the attractive many-body energy out for crowded atoms: when a crystal is compressed, every
neighbour shell moves in at once and a linear model fitted at normal densities can fall by
hundreds of eV per atom (more neighbours, higher powers of the moments) — faster than any pair
core rises. With ρ_i = Σ_j s(r_ij), the smooth number of neighbours inside the core, and
e_i = E_i^ACE − E0 the many-body energy, the attractive part of e_i is faded out:
E_i = E0 + e_i − (1 − h(ρ_i)) e₋(e_i) + ½ Σ_j φ_ij, e₋(e) = (e − √(e² + ε²))/2 the smooth
negative part (ε = 0.1 eV), h = 1 for ρ_i ≤ ρ_lo and 0 for ρ_i ≥ ρ_hi, a quintic smoothstep
between; by default ρ counts neighbours closer than the shortest distance of each pair in the
training data (switch over [d_min − w, d_min]) and (ρ_lo, ρ_hi) = (0, 1), so the fade never
touches a training structure. Only attraction is removed (removing a repulsive many-body energy would
itself make the energy fall on compression); the same idea as pacemaker's energy cutoff on its core-repulsion density
(``rho_core_cutoff``). Where no neighbour is inside any r_in, ρ_i = 0 and nothing changes.

Conventions as the rest of minbasis: forces F = −∂E/∂r (eV/Å), virial
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

__all__ = ["ZBLCore", "zbl_pair", "clamp_radius", "pair_min_distances", "KE", "ZBL_C", "ZBL_D"]

#: e²/(4π ε0) in eV·Å (CODATA 2018).
KE = 14.399645478425668
#: Smoothing energy ε (eV) of the negative part taken by the fade (module docstring).
FADE_EPS = 0.1
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


@njit(cache=True, nogil=True)
def _clamp_value(r, rin, w):  # pragma: no cover - compiled
    """(ρ(r), dρ/dr) of the inner clamp of the ACE radial argument (module docstring)."""
    if r >= rin:
        return r, 1.0
    t = (rin - r) / w
    if t >= 1.0:
        return rin - 0.5 * w, 0.0
    t2 = t * t
    g = t - t2 * t + 0.5 * t2 * t2
    return rin - w * g, (1.0 - t) * (1.0 - t) * (1.0 + 2.0 * t)


@njit(cache=True, nogil=True)
def _clamp_kernel(pair_i, pair_ch, centre_ch, pair_vec, r_in, w, out, fac):  # pragma: no cover - compiled
    """out[p] = ρ(r_p) r̂_p, fac[p] = (dρ/dr, ρ/r); returns the number of clamped pairs."""
    n = 0
    for p in range(pair_i.shape[0]):
        dx = pair_vec[p, 0]
        dy = pair_vec[p, 1]
        dz = pair_vec[p, 2]
        rin = r_in[centre_ch[pair_i[p]], pair_ch[p]]
        r2 = dx * dx + dy * dy + dz * dz
        if r2 >= rin * rin:
            out[p, 0] = dx
            out[p, 1] = dy
            out[p, 2] = dz
            fac[p, 0] = 1.0
            fac[p, 1] = 1.0
            continue
        r = math.sqrt(r2)
        rho, drho = _clamp_value(r, rin, w)
        q = rho / r
        out[p, 0] = dx * q
        out[p, 1] = dy * q
        out[p, 2] = dz * q
        fac[p, 0] = drho
        fac[p, 1] = q
        n += 1
    return n


@njit(cache=True, nogil=True)
def _unclamp_kernel(pair_vec, fac, G):  # pragma: no cover - compiled
    """Chain rule of the clamp: G ← dρ/dr (r̂·G) r̂ + (ρ/r)(G − (r̂·G) r̂), in place."""
    for p in range(pair_vec.shape[0]):
        a = fac[p, 0]
        b = fac[p, 1]
        if a == 1.0 and b == 1.0:
            continue
        dx = pair_vec[p, 0]
        dy = pair_vec[p, 1]
        dz = pair_vec[p, 2]
        inv = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
        ux = dx * inv
        uy = dy * inv
        uz = dz * inv
        gr = ux * G[p, 0] + uy * G[p, 1] + uz * G[p, 2]
        G[p, 0] = a * gr * ux + b * (G[p, 0] - gr * ux)
        G[p, 1] = a * gr * uy + b * (G[p, 1] - gr * uy)
        G[p, 2] = a * gr * uz + b * (G[p, 2] - gr * uz)


@njit(cache=True, nogil=True)
def _switch(r, ra, rb):  # pragma: no cover - compiled
    """(s, ds/dr) of the core switch: 1 below ra, 0 above rb, quintic smoothstep between."""
    if r >= rb:
        return 0.0, 0.0
    if r <= ra:
        return 1.0, 0.0
    w = rb - ra
    t = (r - ra) / w
    t2 = t * t
    return 1.0 - t2 * t * (10.0 - 15.0 * t + 6.0 * t2), -30.0 * t2 * (1.0 - 2.0 * t + t2) / w


@njit(cache=True, nogil=True)
def _fade_kernel(centre_ptr, centre_ch, pair_ch, pair_vec, ra, rb, rho_lo, rho_hi, eps, e0, E, G):  # pragma: no cover
    """Fade the attractive many-body energy of crowded atoms out: with e = E_i − e0 and its smooth
    negative part e₋ = (e − √(e² + ε²))/2, E_i ← e0 + e − (1 − h(ρ_i)) e₋, ρ_i = Σ_j s(r_ij);
    G (pair gradients of E_i) updated by the product and chain rules."""
    N = centre_ptr.shape[0] - 1
    for i in range(N):
        ci = centre_ch[i]
        rho = 0.0
        for p in range(centre_ptr[i], centre_ptr[i + 1]):
            cj = pair_ch[p]
            r = math.sqrt(pair_vec[p, 0] ** 2 + pair_vec[p, 1] ** 2 + pair_vec[p, 2] ** 2)
            if r < rb[ci, cj]:
                rho += _switch(r, ra[ci, cj], rb[ci, cj])[0]
        if rho <= rho_lo:
            continue
        t = (rho - rho_lo) / (rho_hi - rho_lo)
        if t >= 1.0:
            h = 0.0
            dh = 0.0
        else:
            t2 = t * t
            h = 1.0 - t2 * t * (10.0 - 15.0 * t + 6.0 * t2)
            dh = -30.0 * t2 * (1.0 - 2.0 * t + t2) / (rho_hi - rho_lo)
        e = E[i] - e0[ci]
        sq = math.sqrt(e * e + eps * eps)
        eneg = 0.5 * (e - sq)                   # smooth negative part of the many-body energy
        scale = 1.0 - (1.0 - h) * 0.5 * (1.0 - e / sq)   # d/de of e − (1 − h) eneg
        for p in range(centre_ptr[i], centre_ptr[i + 1]):
            G[p, 0] *= scale
            G[p, 1] *= scale
            G[p, 2] *= scale
            cj = pair_ch[p]
            r = math.sqrt(pair_vec[p, 0] ** 2 + pair_vec[p, 1] ** 2 + pair_vec[p, 2] ** 2)
            if r < rb[ci, cj] and dh != 0.0:
                ds = _switch(r, ra[ci, cj], rb[ci, cj])[1]
                g = eneg * dh * ds / r
                G[p, 0] += g * pair_vec[p, 0]
                G[p, 1] += g * pair_vec[p, 1]
                G[p, 2] += g * pair_vec[p, 2]
        E[i] = e0[ci] + e - (1.0 - h) * eneg


def clamp_radius(r: np.ndarray, r_in: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """The distance ρ(r) the ACE radial basis sees under a core's clamp, and dρ/dr (arrays like r)."""
    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    out = np.array([_clamp_value(float(x), float(r_in), float(width)) for x in r]).reshape(-1, 2)
    return out[:, 0], out[:, 1]


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


def pair_min_distances(atoms_list, species: Sequence[str], r_max: float = 6.0,
                       min_distance: float = 0.0) -> np.ndarray:
    """Shortest distance of each species pair over a list of structures (Å; inf where absent).

    Pairs come from the kernels' validated neighbour lists
    (:func:`minbasis.kernels.build_batch`, periodic images included), in chunks of 256 structures.

    Returns
    -------
    float64 array (C, C), symmetric, C = len(species).

    Raises
    ------
    StructureError / SpeciesError
        Invalid structures, species outside ``species``, or (with ``min_distance`` > 0) atoms
        closer than ``min_distance`` Å.
    """
    from .kernels import build_batch

    numbers = [atomic_numbers[s] for s in species]
    C = len(species)
    out = np.full((C, C), np.inf)
    for k in range(0, len(atoms_list), 256):
        b = build_batch(list(atoms_list[k:k + 256]), species, numbers, float(r_max), min_distance=min_distance)
        if len(b.pair_vec):
            d = np.sqrt(np.einsum("pa,pa->p", b.pair_vec, b.pair_vec))
            ci, cj = b.centre_ch[b.pair_i], b.pair_ch
            np.minimum.at(out, (ci, cj), d)
            np.minimum.at(out, (cj, ci), d)
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
    clamp : bool
        Also clamp the distance the ACE radial basis sees (module docstring): below r_in it
        sees ρ(r) ≥ r_in − w/2. Default False: the linear fit's design matrix does not know
        the clamp, so a clamped model is only consistent with its fit where no training pair
        lies below r_in.
    fade : (float, float) or None
        Fade the attractive many-body energy out for crowded atoms (module docstring): with
        ρ_i = Σ_j s(r_ij) the smooth count of neighbours inside the core, the negative part of
        the ACE energy of atom i (without E0) is multiplied by h(ρ_i), 1 for ρ_i ≤ fade[0], 0 for
        ρ_i ≥ fade[1] (quintic smoothstep).
    fade_r : (C, C) float64 or None
        Outer radius of the neighbour count of the fade, Å (the count's switch runs over
        [fade_r − w_f, fade_r]); None: ``r_in``.
    fade_width : float or None
        w_f, Å (None: ``width``). None: off. Not representable in ``.yace`` (see
        :mod:`minbasis.export`).
    """

    species: tuple
    r_in: np.ndarray
    width: float = 0.5
    clamp: bool = False
    fade: tuple | None = (1.0, 3.0)
    fade_r: np.ndarray | None = None
    fade_width: float | None = None

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
        if self.fade is not None:
            lo, hi = (float(x) for x in self.fade)
            if not 0.0 <= lo < hi:
                raise MinbasisError(f"repulsive core: fade must be (rho_lo, rho_hi) with 0 ≤ rho_lo < rho_hi, got {self.fade}")
            self.fade = (lo, hi)
        fr = self.r_in if self.fade_r is None else self.fade_r
        self.fade_r = np.ascontiguousarray(np.broadcast_to(np.asarray(fr, dtype=np.float64), (C, C)))
        self.fade_width = float(self.width if self.fade_width is None else self.fade_width)
        if not (np.isfinite(self.fade_r).all() and 0.0 < self.fade_width < self.fade_r.min()):
            raise MinbasisError(f"repulsive core: fade_r must be finite and larger than the fade width "
                                f"{self.fade_width} Å > 0")
        self._fra = np.ascontiguousarray(self.fade_r - self.fade_width)
        z = np.array([atomic_numbers[s] for s in self.species], dtype=np.float64)
        self._zz = np.ascontiguousarray(KE * np.outer(z, z))
        self._a = np.ascontiguousarray(0.46850 / (z[:, None] ** 0.23 + z[None, :] ** 0.23))
        self._ra = np.ascontiguousarray(self.r_in - self.width)

    @classmethod
    def from_data(cls, species: Sequence[str], atoms_list, *, fraction: float = 1.1, width: float = 2.0,
                  fade_width: float = 0.4, default: float | None = None) -> "ZBLCore":
        """The default core for a training set: per species pair, r_in = ``fraction`` × the
        shortest distance of that pair in ``atoms_list`` (pairs absent from the data: the smallest
        such value, or ``default`` Å); switch width ``width`` (at most 0.95 min r_in); the fade
        counts neighbours closer than the shortest distance of the pair in the data (``fade_r``
        = that distance, switch width ``fade_width``) and removes the attractive many-body energy
        over ρ_i from 0 to 1, so it never touches a training structure and already acts on a
        single close contact.

        The defaults (1.1, 2.0 Å) put r_in slightly inside the data with a long, gentle switch:
        at the shortest training distance the switch is ≈ 0.01, so the core adds only ≈ 0.04 eV
        per closest pair there (the fit sees it as a baseline, :func:`minbasis.fit.core.fit_linear_with_core`;
        held-out errors of the alloy model change by < 10 %, ``benchmarks/core_md.py``), but it
        is already rising where a compressed crystal's energy would otherwise turn over.

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
        dmin = np.where(np.isfinite(dmin), dmin, r_in / fraction)
        w = min(float(width), 0.95 * float(r_in.min()))
        return cls(species=tuple(species), r_in=r_in, width=w, fade=(0.0, 1.0), fade_r=dmin,
                   fade_width=min(float(fade_width), 0.5 * float(dmin.min())))

    def core_counts(self, atoms) -> np.ndarray:
        """ρ_i = Σ_j s(r_ij), the fade's smooth count of close neighbours of each atom (N,)
        (switch over [fade_r − w, fade_r])."""
        from .kernels import build_batch

        numbers = [atomic_numbers[s] for s in self.species]
        b = build_batch([atoms], self.species, numbers, float(self.fade_r.max()), min_distance=0.0)
        r = np.linalg.norm(b.pair_vec, axis=1)
        ci, cj = b.centre_ch[b.pair_i], b.pair_ch
        out = np.zeros(b.n_atoms)
        for p in range(len(r)):
            out[b.pair_i[p]] += _switch(float(r[p]), float(self._fra[ci[p], cj[p]]), float(self.fade_r[ci[p], cj[p]]))[0]
        return out

    @property
    def r_max(self) -> float:
        """Largest inner cutoff or fade radius, Å (pairs beyond it never contribute)."""
        return float(max(self.r_in.max(), self.fade_r.max()))

    def add_to(self, batch, E: np.ndarray, G: np.ndarray) -> None:
        """Add the core to per-atom energies E (N,) eV and pair gradients G (P, 3) eV/Å of a
        :class:`~minbasis.kernels.neighbours.Batch` whose channels follow :attr:`species`, in place."""
        _core_kernel(batch.pair_i, batch.pair_ch, batch.centre_ch, batch.pair_vec, self._zz, self._a, self._ra,
                     self.r_in, E, G)

    def clamped_vectors(self, batch, out: np.ndarray, fac: np.ndarray) -> int:
        """Write the pair vectors the ACE part sees into ``out`` (P, 3) and the chain-rule factors
        (dρ/dr, ρ/r) into ``fac`` (P, 2); returns how many pairs were clamped (0 if ``clamp`` is off)."""
        if not self.clamp:
            out[:] = batch.pair_vec
            fac[:] = 1.0
            return 0
        return int(_clamp_kernel(batch.pair_i, batch.pair_ch, batch.centre_ch, batch.pair_vec, self.r_in,
                                 self.width, out, fac))

    def unclamp_gradients(self, batch, fac: np.ndarray, G: np.ndarray) -> None:
        """Turn gradients G (P, 3) with respect to the clamped vectors into gradients with respect
        to the true pair vectors, in place."""
        _unclamp_kernel(batch.pair_vec, fac, G)

    def fade_many_body(self, batch, e0: np.ndarray, E: np.ndarray, G: np.ndarray) -> None:
        """Apply :attr:`fade` to per-atom energies E (N,) (E0 included, e0 (C,)) and their pair
        gradients G (P, 3), in place (no-op when ``fade`` is None)."""
        if self.fade is None:
            return
        _fade_kernel(batch.centre_ptr, batch.centre_ch, batch.pair_ch, batch.pair_vec, self._fra, self.fade_r,
                     self.fade[0], self.fade[1], FADE_EPS, e0, E, G)

    def to_dict(self) -> dict:
        """JSON-serialisable form (stored in model files)."""
        return {"type": "zbl", "species": list(self.species), "r_in": self.r_in.tolist(), "width": self.width,
                "clamp": bool(self.clamp), "fade": None if self.fade is None else list(self.fade),
                "fade_r": self.fade_r.tolist(), "fade_width": self.fade_width}

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
        return cls(species=tuple(d["species"]), r_in=np.asarray(d["r_in"]), width=float(d["width"]),
                   clamp=bool(d.get("clamp", False)), fade=None if d.get("fade") is None else tuple(d["fade"]),
                   fade_r=None if d.get("fade_r") is None else np.asarray(d["fade_r"]),
                   fade_width=d.get("fade_width"))

    def pair_energy(self, r: np.ndarray, s1: str, s2: str) -> tuple[np.ndarray, np.ndarray]:
        """φ(r) (eV) and dφ/dr (eV/Å) of the pair (s1, s2) at distances r (Å)."""
        c1, c2 = self.species.index(s1), self.species.index(s2)
        return zbl_pair(r, atomic_numbers[s1], atomic_numbers[s2], float(self.r_in[c1, c2]), self.width)

