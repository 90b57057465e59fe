"""Validation at the boundary: hyper-parameters, structures, cells and work estimates.

Every check raises a :class:`~minbasis.errors.MinbasisError` (a ``ValueError``) that names the
offending input and, where it can, the fix. Nothing here imports numba or sympy.

Limits (module-level defaults; each can be raised by an environment variable read at call
time, or by a keyword of the function that enforces it):

* :data:`MAX_PAIRS` — estimated neighbour pairs of one structure (``MINBASIS_MAX_PAIRS``;
  keyword ``max_pairs`` of :func:`minbasis.kernels.build_batch`). About 400 bytes per pair are
  needed while features are computed, so the default (10⁷) bounds one structure to ≈ 4 GB.
* :data:`MAX_BASIS_SIZE` — estimated size of an ACE enumeration, the summed entries of the
  dense coupling tensors Π_k (2 l_k + 1) over all multisets of moments
  (``MINBASIS_MAX_BASIS_SIZE``; keyword ``max_size`` of :meth:`minbasis.Basis.ace`).
* :data:`MAX_SPAN_CELLS` — a structure that is not periodic in every direction may span at
  most this many cutoff radii along x, y or z (a hard limit of the neighbour search, vesin,
  which crashes the process beyond ≈ 10⁵).
"""

from __future__ import annotations

import math
import numbers
import os
from itertools import combinations_with_replacement
from typing import Sequence

import numpy as np

from .errors import MinbasisError, SpeciesError, StructureError

__all__ = ["MAX_PAIRS", "MAX_BASIS_SIZE", "MAX_SPAN_CELLS", "MAX_RADIAL_SCALE", "MIN_R_CUT", "MAX_R_CUT",
           "limit", "as_int", "as_float", "check_r_cut", "check_radial_scale", "check_species", "check_seed",
           "ace_size_estimate", "check_ace_size", "check_numbers", "check_cell", "estimate_pairs",
           "StructureGeometry", "check_structure_geometry"]

#: Default pair budget of one structure (estimated neighbour pairs); env ``MINBASIS_MAX_PAIRS``.
MAX_PAIRS = 10_000_000
#: Default size budget of an ACE enumeration (coupling-tensor entries); env ``MINBASIS_MAX_BASIS_SIZE``.
MAX_BASIS_SIZE = 20_000_000
#: Largest extent of a non-periodic structure, in cutoff radii, along x, y or z (vesin limit).
MAX_SPAN_CELLS = 50_000
#: Largest exponent of the radial distance transform: exp(s) overflows float64 above ≈ 709.
MAX_RADIAL_SCALE = 700.0
#: Smallest and largest cutoff radius, Å.
MIN_R_CUT = 0.5
MAX_R_CUT = 1000.0

_ENV = {"MAX_PAIRS": "MINBASIS_MAX_PAIRS", "MAX_BASIS_SIZE": "MINBASIS_MAX_BASIS_SIZE"}


def limit(name: str, override: float | None = None) -> float:
    """The active value of a limit: ``override`` if given, else its environment variable, else the
    module default.

    Parameters
    ----------
    name : {"MAX_PAIRS", "MAX_BASIS_SIZE"}
    override : float, optional
        Explicit value (e.g. a keyword argument); must be a positive number.

    Raises
    ------
    MinbasisError
        If the override or the environment variable is not a positive number.
    """
    if override is not None:
        return as_float(name.lower(), override, minimum=1.0)
    env = _ENV[name]
    text = os.environ.get(env)
    if text is not None and text.strip():
        try:
            value = float(text)
        except ValueError:
            raise MinbasisError(f"environment variable {env}={text!r} must be a positive number") from None
        if not (math.isfinite(value) or value == math.inf) or value < 1:
            raise MinbasisError(f"environment variable {env}={text!r} must be a positive number")
        return value
    return float(globals()[name])


# -- scalars ---------------------------------------------------------------------------------------
def as_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int, accepting ints, NumPy integers and integral floats (``2.0``).

    Raises
    ------
    MinbasisError
        For None, bools, strings, non-integral or non-finite numbers, or a value outside
        [minimum, maximum].
    """
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise MinbasisError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (numbers.Integral, np.integer)):
        out = int(value)
    elif isinstance(value, (numbers.Real, np.floating)):
        v = float(value)
        if not math.isfinite(v) or v != int(v):
            raise MinbasisError(f"{name} must be an integer, got {value!r} (non-integer values are not rounded)")
        out = int(v)
    else:
        raise MinbasisError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and out < minimum:
        raise MinbasisError(f"{name} must be >= {minimum}, got {out}")
    if maximum is not None and out > maximum:
        raise MinbasisError(f"{name} must be <= {maximum}, got {out}")
    return out


def as_float(name: str, value, minimum: float | None = None, maximum: float | None = None, *,
             unit: str = "") -> float:
    """``value`` as a finite Python float within [minimum, maximum].

    Raises
    ------
    MinbasisError
        For None, bools, strings, NaN/inf, or a value out of range.
    """
    u = f" (in {unit})" if unit else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise MinbasisError(f"{name} must be a number{u}, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise MinbasisError(f"{name} must be a finite number{u}, got {v}")
    if minimum is not None and v < minimum:
        raise MinbasisError(f"{name} must be >= {minimum:g}{u}, got {v:g}")
    if maximum is not None and v > maximum:
        raise MinbasisError(f"{name} must be <= {maximum:g}{u}, got {v:g}")
    return v


def check_r_cut(r_cut) -> float:
    """Cutoff radius in Å, finite, within [:data:`MIN_R_CUT`, :data:`MAX_R_CUT`].

    Raises
    ------
    MinbasisError
        Not a number, NaN/inf, or out of range.
    """
    v = as_float("r_cut", r_cut, unit="Å")
    if not MIN_R_CUT <= v <= MAX_R_CUT:
        raise MinbasisError(f"r_cut must be a cutoff radius between {MIN_R_CUT} and {MAX_R_CUT:g} Å, got {v:g}")
    return v


def check_radial_scale(scale) -> float:
    """Exponent s of the radial distance transform, 0 ≤ s ≤ :data:`MAX_RADIAL_SCALE`.

    exp(s) enters the transform; above ≈ 709 it overflows and every feature would be NaN.

    Raises
    ------
    MinbasisError
        Not a finite number in range.
    """
    v = as_float("radial_scale", scale)
    if not 0.0 <= v <= MAX_RADIAL_SCALE:
        raise MinbasisError(f"radial_scale must be between 0 (plain Chebyshev in r) and {MAX_RADIAL_SCALE:g} "
                            f"(exp(s) overflows beyond ≈ 709), got {v:g}; the default is 5")
    return v


def check_species(species) -> list[str]:
    """Validated list of distinct chemical symbols.

    Raises
    ------
    MinbasisError
        Not a list of strings, empty, unknown symbols, or duplicates.
    """
    from ase.data import atomic_numbers

    if isinstance(species, str):
        raise MinbasisError(f"species must be a list of chemical symbols such as ['H', 'C'], got the string "
                            f"{species!r}")
    try:
        items = list(species)
    except TypeError:
        raise MinbasisError(f"species must be a list of chemical symbols, got {type(species).__name__}") from None
    if not items:
        raise MinbasisError("species must name at least one chemical element, e.g. ['H', 'C', 'O']")
    bad_type = [s for s in items if not isinstance(s, str)]
    if bad_type:
        raise MinbasisError(f"species must be chemical symbols (strings), got {bad_type[:3]}")
    unknown = [s for s in items if s not in atomic_numbers or s == "X"]
    if unknown:
        raise MinbasisError(f"unknown chemical symbols {unknown}; use symbols such as 'H', 'Cu'")
    if len(set(items)) != len(items):
        raise MinbasisError(f"species {items} contains duplicates")
    return items


def check_seed(name: str, seed) -> int:
    """A random seed: an integer 0 ≤ seed < 2**63.

    Raises
    ------
    MinbasisError
        Negative, non-integer or too large.
    """
    return as_int(name, seed, minimum=0, maximum=2**63 - 1)


# -- size of an ACE enumeration --------------------------------------------------------------------
def ace_size_estimate(n_species: int, order: int, n_max: Sequence[int], l_max: Sequence[int],
                      total_degree: float | None = None, l_weight: float = 1.0) -> int:
    """Estimated size of :func:`minbasis.invariants.enumerate_ace`: Σ over multisets of moments
    (z, n, l) that pass the parity and coupling filters of Π_k (2 l_k + 1), the entries of their
    dense coupling tensors (time and memory of the enumeration grow with it).

    Counts multisets per sorted l-tuple combinatorially, so it costs O(#l-tuples), not O(#multisets).
    The total-degree cut is ignored (an upper bound). Shapes: n_max, l_max have ``order`` entries.
    """
    total = 0
    for nu in range(1, order + 1):
        m = n_species * n_max[nu - 1]  # channels (z, n) per l
        for ls in combinations_with_replacement(range(l_max[nu - 1] + 1), nu):
            if sum(ls) % 2 or (nu == 1 and ls[0] != 0) or (nu == 2 and ls[0] != ls[1]):
                continue
            if nu >= 3 and 2 * max(ls) > sum(ls):
                continue
            count = 1
            for l in set(ls):
                c = ls.count(l)
                count *= math.comb(m + c - 1, c)
            total += count * math.prod(2 * l + 1 for l in ls)
    return int(total)


def check_ace_size(n_species: int, order: int, n_max: Sequence[int], l_max: Sequence[int],
                   total_degree: float | None = None, l_weight: float = 1.0, max_size: float | None = None) -> int:
    """Refuse an ACE enumeration whose :func:`ace_size_estimate` exceeds the limit.

    Parameters
    ----------
    max_size : float, optional
        Limit; default :data:`MAX_BASIS_SIZE` or ``$MINBASIS_MAX_BASIS_SIZE``.

    Returns
    -------
    int, the estimate.

    Raises
    ------
    MinbasisError
        Naming the estimate, the limit and how to raise it.
    """
    est = ace_size_estimate(n_species, order, n_max, l_max, total_degree, l_weight)
    lim = limit("MAX_BASIS_SIZE", max_size)
    if est > lim:
        raise MinbasisError(
            f"this ACE basis is too large to enumerate: estimated size {est:.3g} coupling-tensor entries "
            f"(species {n_species}, order {order}, n_max {list(n_max)}, l_max {list(l_max)}) exceeds the limit "
            f"{lim:.3g}; lower l_max, n_max or order, or raise the limit with max_size=... or "
            f"MINBASIS_MAX_BASIS_SIZE (--max-basis-size on the command line)")
    return est


# -- structures ------------------------------------------------------------------------------------
def check_numbers(k: int, numbers: np.ndarray) -> np.ndarray:
    """Atomic numbers as int64, each in 1..118.

    Raises
    ------
    SpeciesError
        Zero, negative or too large atomic numbers (they would otherwise wrap around lookup tables).
    """
    from ase.data import chemical_symbols

    z = np.asarray(numbers)
    if z.dtype.kind not in "iu":
        raise SpeciesError(f"structure {k}: atomic numbers must be integers, got dtype {z.dtype}")
    z = z.astype(np.int64)
    bad = (z < 1) | (z >= len(chemical_symbols))
    if bad.any():
        raise SpeciesError(f"structure {k}: invalid atomic number(s) {sorted(set(z[bad].tolist()))[:5]} for atom(s) "
                           f"{np.flatnonzero(bad)[:10].tolist()}; atomic numbers must be 1..{len(chemical_symbols) - 1}")
    return z


def check_cell(k: int, cell: np.ndarray, pbc: np.ndarray) -> None:
    """The periodic cell vectors must be finite, non-zero and linearly independent.

    Checked for every periodic subset (mixed periodicity included); non-periodic vectors are
    ignored (any value is fine there).

    Raises
    ------
    StructureError
        Non-finite entries, a periodic vector of zero length or longer than 1e8 Å, or dependent periodic vectors
        (k-dimensional volume below 1e-6 of the product of their lengths).
    """
    cell = np.asarray(cell, dtype=float)
    pbc = np.asarray(pbc, dtype=bool)
    if not pbc.any():
        return
    P = cell[pbc]
    if not np.isfinite(P).all():
        raise StructureError(f"structure {k}: cell has non-finite entries")
    with np.errstate(over="ignore", invalid="ignore"):
        lengths = np.linalg.norm(P, axis=1)
    if not np.isfinite(lengths).all() or (lengths > 1e8).any():
        raise StructureError(f"structure {k}: periodic cell vector longer than 1e8 Å ({lengths.max():.3g} Å); "
                             "set pbc=False along that direction instead")
    if (lengths < 1e-6).any():
        raise StructureError(f"structure {k}: periodic along {np.flatnonzero(pbc).tolist()} but a cell vector there "
                             "has zero length; give a cell vector for every periodic direction or set pbc=False there")
    U = P / lengths[:, None]
    vol = math.sqrt(max(float(np.linalg.det(U @ U.T)), 0.0))
    if vol < 1e-6:
        what = "volume" if len(P) == 3 else ("area" if len(P) == 2 else "length")
        raise StructureError(f"structure {k}: degenerate cell: the periodic cell vectors (directions "
                             f"{np.flatnonzero(pbc).tolist()}) are linearly dependent (relative {what} {vol:.3g}); "
                             "fix the cell or set pbc=False along the redundant direction")


class StructureGeometry:
    """What :func:`check_structure_geometry` found: the cell handed to the neighbour search
    (Minkowski reduced when that changes it: same lattice, same pairs, bounded work), the
    periodicity flags and the estimated number of neighbour pairs."""

    def __init__(self, box: np.ndarray, periodic, est_pairs: float):
        self.box = box
        self.periodic = periodic
        self.est_pairs = est_pairs


def _orthonormal_complement(P: np.ndarray) -> np.ndarray:
    """Rows spanning the orthogonal complement of the rows of P (k × 3, k ≤ 2), orthonormal."""
    if len(P) == 0:
        return np.eye(3)
    q, _ = np.linalg.qr(np.vstack([P, np.eye(3)]).T)
    return q[:, len(P):3].T


def estimate_pairs(n_atoms: int, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_cut: float) -> float:
    """Estimated number of (full, ordered) neighbour pairs within ``r_cut`` of one structure.

    N² · (4/3)π r_cut³ / V_eff, with V_eff the volume spanned by the periodic cell vectors and,
    along non-periodic directions, the extent of the atoms (at least 2 r_cut); for structures
    periodic in no direction at most N (N − 1). Shapes: positions (N, 3) Å, cell (3, 3) Å.
    """
    pbc = np.asarray(pbc, dtype=bool)
    P = np.asarray(cell, dtype=float)[pbc]
    rows = [P] if len(P) else []
    for v in _orthonormal_complement(P):
        ext = float(np.ptp(positions @ v)) if n_atoms else 0.0
        rows.append((max(ext, 2.0 * r_cut) * v)[None, :])
    v_eff = abs(float(np.linalg.det(np.vstack(rows))))
    est = float(n_atoms) ** 2 * (4.0 / 3.0) * math.pi * r_cut ** 3 / max(v_eff, 1e-300)
    if not pbc.any():
        est = min(est, float(n_atoms) * (n_atoms - 1))
    return est


def check_structure_geometry(k: int, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_cut: float,
                             min_distance: float, max_pairs: float | None = None) -> StructureGeometry:
    """Checks that keep the neighbour search (vesin) from crashing, hanging or exhausting memory.

    * periodic cell vectors valid (:func:`check_cell`);
    * no atom overlapping its own periodic image: the shortest lattice vector (Minkowski
      reduction) is at least ``min_distance`` Å — a nearly singular cell whose volume test passes
      is caught here, and any other skewed cell is handed to vesin in reduced form;
    * with mixed periodicity, the non-periodic cell vectors (which do not change the pairs) are
      replaced by orthogonal ones longer than the structure plus r_cut, and the search runs as
      fully periodic (same pairs, bounded work), so any value there is fine;
    * a structure that is not periodic in all directions spans at most :data:`MAX_SPAN_CELLS`
      cutoff radii along x, y and z;
    * estimated pairs (:func:`estimate_pairs`) within the pair budget (:data:`MAX_PAIRS`).

    Parameters: positions (N, 3) Å (finite), cell (3, 3) Å, pbc (3,) bool, r_cut Å.

    Raises
    ------
    StructureError
        Naming the problem, the estimate and the limit where one applies.
    """
    from ase.geometry import minkowski_reduce

    pbc = np.asarray(pbc, dtype=bool)
    cell = np.asarray(cell, dtype=float)
    check_cell(k, cell, pbc)
    box = cell
    if pbc.any():
        try:
            rcell, op = minkowski_reduce(cell, pbc=pbc)
        except Exception as exc:  # pragma: no cover - ASE's reduction failing on a checked cell
            raise StructureError(f"structure {k}: cannot reduce the cell ({exc})") from exc
        shortest = float(np.linalg.norm(rcell[pbc], axis=1).min())
        if shortest < min_distance:
            raise StructureError(f"structure {k}: every atom overlaps its own periodic image: the shortest lattice "
                                 f"vector is {shortest:.3g} Å < {min_distance} Å (nearly singular cell); fix the cell")
        if not np.array_equal(op, np.eye(3, dtype=op.dtype)):
            box = np.ascontiguousarray(rcell, dtype=np.float64)
        if not pbc.all():
            # Mixed periodicity is handed to vesin as a fully periodic box whose non-periodic
            # directions are orthogonal to the periodic ones and longer than the atoms' extent
            # plus r_cut, so no pair crosses them: the same pairs, but vesin's fully periodic
            # search (its mixed-periodicity search takes seconds to minutes for a few atoms
            # spread over a few hundred Å, and any value of a non-periodic vector is fine here).
            box = np.array(box, dtype=np.float64)
            for row, v in zip(np.flatnonzero(~pbc), _orthonormal_complement(box[pbc])):
                ext = float(np.ptp(positions @ v)) if len(positions) else 0.0
                box[row] = v * (ext + r_cut + 1.0)
    if not pbc.all() and len(positions) > 1:
        span = np.ptp(positions, axis=0)
        worst = int(np.argmax(span))
        if span[worst] > MAX_SPAN_CELLS * r_cut:
            raise StructureError(f"structure {k}: atoms span {span[worst]:.3g} Å along {'xyz'[worst]}, more than "
                                 f"{MAX_SPAN_CELLS} × r_cut = {MAX_SPAN_CELLS * r_cut:.3g} Å, which the neighbour "
                                 "search cannot handle; split far-apart groups into separate structures")
    est = estimate_pairs(len(positions), positions, box, pbc, r_cut)
    lim = limit("MAX_PAIRS", max_pairs)
    if est > lim:
        raise StructureError(f"structure {k}: estimated {est:.3g} neighbour pairs within r_cut = {r_cut:g} Å "
                             f"({len(positions)} atoms) exceeds the pair budget {lim:.3g} (≈ 400 bytes each); "
                             "lower r_cut, use a smaller structure, or raise the budget with "
                             "MINBASIS_MAX_PAIRS (or max_pairs=...)")
    return StructureGeometry(box=box if pbc.any() else np.zeros((3, 3)), periodic=bool(pbc.any()), est_pairs=est)
