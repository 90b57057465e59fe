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
* :data:`MAX_COORDINATE` — atoms further than this from the origin are refused.
* the cell-list shape vesin would use (:func:`vesin_cells`) must have no zero entry (vesin
  divides by it: SIGFPE) and the cell pairs it visits are bounded by 10⁹.
"""

from __future__ import annotations

import math
import numbers
import os
from itertools import combinations_with_replacement
from typing import Sequence

import numpy as np

from .errors import MinbasisError, SpeciesError, StructureError

__all__ = ["MAX_PAIRS", "MAX_BASIS_SIZE", "MAX_COORDINATE", "vesin_cells", "MAX_RADIAL_SCALE", "MIN_R_CUT", "MAX_R_CUT",
           "limit", "as_int", "as_float", "check_r_cut", "check_radial_scale", "check_species", "check_seed",
           "ace_size_estimate", "check_ace_size", "check_numbers", "check_cell", "estimate_pairs",
           "StructureGeometry", "check_structure_geometry"]

#: Default pair budget of one structure (estimated neighbour pairs); env ``MINBASIS_MAX_PAIRS``.
MAX_PAIRS = 10_000_000
#: Default size budget of an ACE enumeration (coupling-tensor entries); env ``MINBASIS_MAX_BASIS_SIZE``.
MAX_BASIS_SIZE = 20_000_000
#: Largest distance of an atom from the origin, Å (float64 resolution there is ≈ 1e-8 Å).
MAX_COORDINATE = 1e8
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
    """Exponent s of the radial distance transform, |s| ≤ :data:`MAX_RADIAL_SCALE`.

    exp(s) enters the transform; above ≈ 709 it overflows and every feature would be NaN.
    s < 0 (resolution towards r_cut, chosen from the data by ``minbasis fit`` without a basis)
    is valid.

    Raises
    ------
    MinbasisError
        Not a finite number in range.
    """
    v = as_float("radial_scale", scale)
    if not -MAX_RADIAL_SCALE <= v <= MAX_RADIAL_SCALE:
        raise MinbasisError(f"radial_scale must be between -{MAX_RADIAL_SCALE:g} and {MAX_RADIAL_SCALE:g} "
                            f"(exp(s) overflows beyond ≈ 709; 0 is plain Chebyshev in r), got {v:g}; the default is 5")
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
    """What :func:`check_structure_geometry` hands to the neighbour search (vesin): a fully
    periodic ``box`` (3, 3) Å and ``points`` (N, 3) Å that give exactly the pairs (i, j, r_ij)
    of the original structure, ``cells`` (3,) the cell-list shape vesin will use, and
    ``est_pairs`` the estimated number of pairs."""

    def __init__(self, box: np.ndarray, points: np.ndarray, cells: np.ndarray, est_pairs: float):
        self.box = box
        self.points = points
        self.cells = cells
        self.est_pairs = est_pairs
        self.periodic = True


#: vesin's cap on the number of cells of its cell list (cpu_cell_list.cpp, MAX_NUMBER_OF_CELLS).
_VESIN_MAX_CELLS = 1e5


def vesin_cells(box: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """The cell-list shape (3,) and the search extent n_search (3,) that vesin's CPU cell list
    uses for a fully periodic ``box`` (3, 3) Å and ``cutoff`` Å, reproduced from its algorithm:
    n_k = max(1, trunc(d_k / cutoff)) with d_k the distances between faces, rescaled with fixed
    ratios when Π n_k > 10⁵. A zero entry means vesin would divide by zero (SIGFPE)."""
    box = np.asarray(box, dtype=float)
    d = np.empty(3)
    for k in range(3):
        nrm = np.cross(box[(k + 1) % 3], box[(k + 2) % 3])
        d[k] = abs(nrm @ box[k]) / np.linalg.norm(nrm)
    n = np.maximum(np.trunc(d / cutoff), 1.0)
    if n.prod() > _VESIN_MAX_CELLS:
        rxy, ryz = n[0] / n[1], n[1] / n[2]
        nz = np.trunc(np.cbrt(_VESIN_MAX_CELLS / (rxy * ryz * ryz)))
        ny = np.trunc(ryz * nz)
        n = np.array([np.trunc(rxy * ny), ny, nz])
    with np.errstate(divide="ignore", invalid="ignore"):
        search = np.maximum(np.ceil(cutoff * n / d), 1.0)
    return n, search


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
    * every non-periodic direction becomes a periodic one, orthogonal to the periodic vectors and
      longer than the atoms' extent plus r_cut (so no pair crosses it; any value of a
      non-periodic cell vector is fine), and the points are wrapped into the box: the same pairs
      (i, j, r_ij), found by vesin's fully periodic search on a box whose cell-list shape is known
      (:func:`vesin_cells`; padded directions are lengthened until no entry is zero, else the
      structure is refused) and whose work is bounded (≤ 10⁹ cell visits);
    * atoms within ±:data:`MAX_COORDINATE` Å of the origin;
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
    positions = np.asarray(positions, dtype=float)
    if np.abs(positions).max() > MAX_COORDINATE:
        raise StructureError(f"structure {k}: a coordinate is {np.abs(positions).max():.3g} Å from the origin, beyond "
                             f"±{MAX_COORDINATE:g} Å (float64 keeps < 1e-8 Å there); translate the structure")
    check_cell(k, cell, pbc)
    box = np.zeros((3, 3))
    if pbc.any():
        try:
            rcell, _ = minkowski_reduce(cell, pbc=pbc)
        except Exception as exc:  # pragma: no cover - ASE's reduction failing on a checked cell
            raise StructureError(f"structure {k}: cannot reduce the cell ({exc})") from exc
        shortest = float(np.linalg.norm(rcell[pbc], axis=1).min())
        if shortest < min_distance:
            raise StructureError(f"structure {k}: every atom overlaps its own periodic image: the shortest lattice "
                                 f"vector is {shortest:.3g} Å < {min_distance} Å (nearly singular cell); fix the cell")
        box[pbc] = rcell[pbc]
    # Non-periodic directions become periodic ones, orthogonal to the periodic vectors and longer
    # than the atoms' extent plus r_cut, so that no pair crosses them: the same pairs, but vesin's
    # fully periodic search on a box we know (its mixed/non-periodic searches took ~20 s for a few
    # atoms spread over hundreds of Å, and crashed for elongated structures).
    padded = np.flatnonzero(~pbc)
    for row, v in zip(padded, _orthonormal_complement(box[pbc])):
        box[row] = v * (float(np.ptp(positions @ v)) + r_cut + 1.0)
    for _ in range(64):
        cells, search = vesin_cells(box, r_cut)
        if (cells >= 1).all() or not len(padded):
            break
        # too anisotropic: lengthen the padded direction with the fewest cells (vesin keeps the
        # ratios of the cell counts when it caps their product, so thin axes round down to 0)
        n_raw = np.maximum(np.trunc(np.linalg.norm(box, axis=1) / r_cut), 1.0)
        box[padded[np.argmin(n_raw[padded])]] *= 2.0
    if not (cells >= 1).all():
        raise StructureError(f"structure {k}: the cell is too elongated for the neighbour search (vesin would use "
                             f"{cells.astype(int).tolist()} cells); use a less anisotropic cell or a larger r_cut")
    visits = float(np.prod(cells) * np.prod(2 * search + 1))
    if visits > 1e9:
        raise StructureError(f"structure {k}: the neighbour search would visit {visits:.3g} cell pairs (cells "
                             f"{cells.astype(int).tolist()}, search {search.astype(int).tolist()}), more than 1e9; "
                             "lower r_cut or use a larger cell")
    # points inside the box: wrap periodic fractional coordinates, shift padded ones to start at 0
    frac = np.linalg.solve(box.T, positions.T).T
    for r in range(3):
        frac[:, r] = frac[:, r] - np.floor(frac[:, r]) if pbc[r] else frac[:, r] - frac[:, r].min()
    points = np.ascontiguousarray(frac @ box, dtype=np.float64)
    est = estimate_pairs(len(positions), positions, box, pbc, r_cut)
    lim = limit("MAX_PAIRS", max_pairs)
    if est > lim:
        raise StructureError(f"structure {k}: estimated {est:.3g} neighbour pairs within r_cut = {r_cut:g} Å "
                             f"({len(positions)} atoms) exceeds the pair budget {lim:.3g} (≈ 400 bytes each); "
                             "lower r_cut, use a smaller structure, or raise the budget with "
                             "MINBASIS_MAX_PAIRS (or max_pairs=...)")
    return StructureGeometry(box=np.ascontiguousarray(box), points=points, cells=cells, est_pairs=est)
