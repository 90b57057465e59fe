"""Global distinguishability: pairs of environments that low correlation orders cannot tell apart.

Local completeness (full Jacobian rank, :mod:`minbasis.local_completeness`) says that no small change
of an environment is invisible; it does not say that two *different* environments never give
the same features (docs/theory/completeness.md). This module tests the second, global question on pairs of
centred environments that are known to fool descriptors truncated at a correlation order:

* **Pozdnyakov-type pair** (S. N. Pozdnyakov et al., "Incompleteness of atomic structure
  representations", Phys. Rev. Lett. 125, 166001 (2020)): identical
  ν ≤ 2 (3-body) correlations of the centre, different structure.
* **Nigam-type pair** (J. Nigam et al., "Completeness of atomic structure representations",
  APL Mach. Learn. 2, 016110 (2024); 4-body degeneracies were
  also reported in the 2020 paper): identical ν ≤ 3 (up to 4-body) correlations, different
  structure.

The coordinates are our own construction with the property these papers describe, not copied
from them. Both follow one provable mechanism. The neighbour set is split into parts; some
parts ("anchors") are single atoms on the positive coordinate axes at distinct distances, and
one part Q is replaced by its image Q' = g(Q). An O(3)-invariant correlation of order ν is a
sum over ordered ν-tuples of neighbours of a function of the tuple's Gram matrix (inner
products r_j · r_k). A tuple that contains Q-atoms and the anchors of a set T is unchanged in
distribution if some isometry h fixes every anchor in T and maps Q onto Q' as a set. So if
such an h exists for every set T of at most ν − 1 anchors, the ν-correlations of the two
environments coincide; if no isometry fixes all anchors and maps Q to Q', the environments
are different (the anchors have distinct distances from the centre, so any isometry mapping
one environment onto the other must fix them).

* Pozdnyakov-type (4 neighbours): anchors on +z and +x, Q = {(a, b, c), (−a, b, −c)},
  Q' = {(−a, b, c), (a, b, −c)}. The mirror x → −x fixes the +z anchor and maps Q → Q'; the
  mirror z → −z fixes the +x anchor and does the same; the only isometries that fix both
  anchors (identity and y → −y) do not. Hence identical ν ≤ 2 correlations; the ν = 3 tuples
  (z-anchor, x-anchor, q) differ (sign of a·c).
* Nigam-type (7 neighbours): anchors on +z, +x, +y, Q the orbit of (a, b, c) under the three
  half-turns about the axes (four points, an even number of minus signs), Q' = −Q (an odd
  number). Each pair of anchors is fixed by one mirror (y → −y fixes z and x, …) that maps
  Q → Q'; only the identity fixes all three. Hence identical ν ≤ 3 correlations; the ν = 4
  tuples (z, x, y, q) differ (sign of a·b·c).

:func:`correlation_multiset` checks these statements without any basis (exact multisets of
Gram matrices of ordered ν-tuples), :func:`compare_structures` measures them with a basis.
"""

from __future__ import annotations

import itertools
import os
from typing import Sequence

import numpy as np
from ase import Atoms

from ..errors import SpeciesError, StructureError

__all__ = ["DISTINGUISH_RTOL", "pozdnyakov_pair", "nigam_pair", "literature_pairs", "correlation_multiset",
           "relative_distance", "compare_structures", "read_pair", "check_species", "structural_difference",
           "pair_verdict"]

#: A pair counts as distinguished when the relative feature distance exceeds this value. Exactly
#: degenerate pairs give 1e-19..1e-15 in float64 (round-off); distinguished ones give 1e-4..1.
DISTINGUISH_RTOL = 1e-8

# direction of the generic point q of the construction (any a, b, c ≠ 0 with distinct |a|, |b|, |c|)
_Q_DIRECTION = np.array([0.9, 0.6, 1.3]) / np.linalg.norm([0.9, 0.6, 1.3])


def _centred(symbol: str, neighbours: Sequence[Sequence[float]]) -> Atoms:
    pos = np.vstack([np.zeros(3), np.asarray(neighbours, dtype=float)])
    return Atoms([symbol] * len(pos), positions=pos)


def pozdnyakov_pair(r_cut: float, symbol: str = "H") -> tuple[Atoms, Atoms]:
    """Two centred environments (centre = atom 0, 4 neighbours) with identical ν ≤ 2 correlations.

    See the module docstring for the construction and its proof. Anchors at 0.38 r_cut on +z
    and 0.62 r_cut on +x; the two other neighbours at 0.5 r_cut. All atoms are ``symbol``.

    Parameters
    ----------
    r_cut : float
        Cutoff of the basis in Å; every neighbour lies inside 0.62 r_cut of the centre.
    symbol : str
        Chemical symbol of every atom (one of the basis species).

    Returns
    -------
    (ase.Atoms, ase.Atoms), 5 atoms each, not periodic, positions in Å.

    Source: the property is that of Pozdnyakov et al., Phys. Rev. Lett. 125, 166001 (2020);
    the coordinates are this module's construction.
    """
    rc = float(r_cut)
    a, b, c = 0.5 * rc * _Q_DIRECTION
    anchors = [[0.0, 0.0, 0.38 * rc], [0.62 * rc, 0.0, 0.0]]
    A = _centred(symbol, anchors + [[a, b, c], [-a, b, -c]])
    B = _centred(symbol, anchors + [[-a, b, c], [a, b, -c]])
    return A, B


def nigam_pair(r_cut: float, symbol: str = "H") -> tuple[Atoms, Atoms]:
    """Two centred environments (centre = atom 0, 7 neighbours) with identical ν ≤ 3 correlations.

    See the module docstring for the construction and its proof. Anchors at 0.32, 0.42 and
    0.75 r_cut on +z, +x and +y; the four other neighbours at 0.55 r_cut. All atoms are ``symbol``.

    Parameters
    ----------
    r_cut : float
        Cutoff of the basis in Å.
    symbol : str
        Chemical symbol of every atom.

    Returns
    -------
    (ase.Atoms, ase.Atoms), 8 atoms each, not periodic, positions in Å.

    Source: the property is that discussed by Nigam et al., APL Mach. Learn. 2, 016110 (2024)
    (and Pozdnyakov et al. 2020 for 4-body features); the coordinates are this module's construction.
    """
    rc = float(r_cut)
    q = 0.55 * rc * _Q_DIRECTION
    anchors = [[0.0, 0.0, 0.32 * rc], [0.42 * rc, 0.0, 0.0], [0.0, 0.75 * rc, 0.0]]
    Q = [q * np.array(s) for s in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))]
    A = _centred(symbol, anchors + [list(v) for v in Q])
    B = _centred(symbol, anchors + [list(-v) for v in Q])
    return A, B


_LITERATURE = (
    {"name": "Pozdnyakov-type pair", "key": "pozdnyakov2020",
     "reference": "S. N. Pozdnyakov et al., Phys. Rev. Lett. 125, 166001 (2020)",
     "degenerate_up_to": 2, "builder": pozdnyakov_pair, "roles": ["centre"] + ["anchor"] * 2 + ["moved"] * 2,
     "construction": "centre + 4 neighbours: anchors on +z and +x; Q = {(a,b,c), (−a,b,−c)} in A, "
                     "its mirror image Q' = {(−a,b,c), (a,b,−c)} in B. Each anchor alone is fixed by a mirror that "
                     "maps Q to Q' (so all ν ≤ 2 correlations agree); no isometry fixing both anchors does."},
    {"name": "Nigam-type pair", "key": "nigam2024",
     "reference": "J. Nigam et al., APL Mach. Learn. 2, 016110 (2024)",
     "degenerate_up_to": 3, "builder": nigam_pair, "roles": ["centre"] + ["anchor"] * 3 + ["moved"] * 4,
     "construction": "centre + 7 neighbours: anchors on +z, +x, +y; Q = the four points (±a,±b,±c) with an even "
                     "number of minus signs in A, −Q in B. Each pair of anchors is fixed by a mirror that maps Q to "
                     "−Q (so all ν ≤ 3 correlations agree); only the identity fixes all three."},
)


def literature_pairs(r_cut: float, symbol: str) -> list[dict]:
    """The literature pairs, built for a cutoff and a species.

    Returns
    -------
    list of dict with ``name``, ``key``, ``reference``, ``degenerate_up_to`` (the
    largest correlation order ν at which the pair is degenerate by construction),
    ``construction`` (one sentence), ``roles`` (per atom: "centre", "anchor" or "moved"),
    ``a`` and ``b`` (:class:`ase.Atoms`, centre = atom 0).
    """
    out = []
    for item in _LITERATURE:
        a, b = item["builder"](r_cut, symbol)
        out.append({k: v for k, v in item.items() if k != "builder"} | {"a": a, "b": b})
    return out


def correlation_multiset(atoms: Atoms, nu: int, *, centre: int = 0, r_cut: float | None = None,
                         decimals: int = 9) -> np.ndarray:
    """Basis-free fingerprint of the ν-body correlation of one centred environment.

    Every ordered ν-tuple (with repetition) of neighbours j_1..j_ν of ``centre`` within ``r_cut``
    contributes one row: the upper triangle of its Gram matrix r_{j_a} · r_{j_b} (Å², r relative
    to the centre, no periodic images) followed by the atomic numbers of the tuple. Rows are
    rounded to ``decimals`` and sorted. Two environments have identical O(3)-invariant ν-body
    correlations (every ACE/Cartesian invariant with ν factors, for any radial and angular
    basis) iff these arrays are equal: an ordered tuple of vectors is determined up to O(3) by
    its Gram matrix.

    Parameters
    ----------
    atoms : ase.Atoms
    nu : int
        Correlation order ν ≥ 1 (cost grows as n_neighbours^ν).
    centre : int
        Index of the centre atom.
    r_cut : float, optional
        Cutoff in Å (default: every other atom is a neighbour).
    decimals : int
        Rounding before sorting.

    Returns
    -------
    numpy.ndarray, float64, shape (n_neighbours^ν, ν(ν+1)/2 + ν), rows sorted lexicographically.

    Raises
    ------
    StructureError
        ν < 1 or more than 10⁶ tuples.
    """
    nu = int(nu)
    if nu < 1:
        raise StructureError(f"correlation order must be >= 1, got {nu}")
    rel = atoms.positions - atoms.positions[centre]
    idx = [k for k in range(len(atoms)) if k != centre
           and (r_cut is None or np.linalg.norm(rel[k]) < r_cut)]
    if len(idx) ** nu > 10**6:
        raise StructureError(f"{len(idx)}^{nu} tuples are too many for correlation_multiset")
    vec = rel[idx]
    Z = atoms.numbers[idx].astype(float)
    iu = np.triu_indices(nu)
    rows = []
    for tup in itertools.product(range(len(idx)), repeat=nu):
        v = vec[list(tup)]
        rows.append(np.concatenate([(v @ v.T)[iu], Z[list(tup)]]))
    R = np.round(np.asarray(rows), decimals) + 0.0
    order = np.lexsort(R.T[::-1])
    return R[order]


def relative_distance(x: np.ndarray, y: np.ndarray) -> float:
    """‖x − y‖ / (½(‖x‖ + ‖y‖)) (Frobenius norms over all entries); 0 when both are zero.

    Unit-less. Used for every "relative feature distance" of the report.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    den = 0.5 * (np.linalg.norm(x) + np.linalg.norm(y))
    return float(np.linalg.norm(x - y) / den) if den > 0 else 0.0


def _matched(XA: np.ndarray, XB: np.ndarray, za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """Permutation p of the atoms of A (same species) minimising Σ ‖XA[p] − XB‖² (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    perm = np.empty(len(zb), dtype=np.int64)
    for z in np.unique(zb):
        ia, ib = np.flatnonzero(za == z), np.flatnonzero(zb == z)
        D = ((XA[ia][:, None, :] - XB[ib][None, :, :]) ** 2).sum(-1)
        r, c = linear_sum_assignment(D)
        perm[ib[c]] = ia[r]
    return perm


def compare_structures(a: Atoms, b: Atoms, full, minimal, *, centre_only: bool) -> dict:
    """Relative feature distances between two structures, per correlation order and for the minimal basis.

    Parameters
    ----------
    a, b : ase.Atoms
        Same number of atoms and same species counts (checked by the caller, :func:`read_pair`).
    full, minimal : minbasis.Basis
        The linearly independent basis and its functionally independent subset.
    centre_only : bool
        True: compare the features of atom 0 only (a centred environment). False: compare all
        atoms, after matching the atoms of ``a`` to those of ``b`` (same species, Hungarian
        assignment on the full-basis features), so that a mere renumbering is not a difference.

    Returns
    -------
    dict
        ``subsets``: list of {``label`` ("ν ≤ k" or "minimal"), ``basis`` ("full"/"minimal"),
        ``max_order`` k (None for the minimal basis), ``n_features``, ``relative_distance``
        (:func:`relative_distance`), ``distinguished`` (distance > :data:`DISTINGUISH_RTOL`)};
        ``per_order``: {``order``: ν, ``relative_distance``} for the features of order exactly ν.
    """
    from ..describe import describe

    XA_full, XB_full = (describe([s], full) for s in (a, b))
    XA_min, XB_min = (describe([s], minimal) for s in (a, b))
    if centre_only:
        XA_full, XB_full, XA_min, XB_min = XA_full[:1], XB_full[:1], XA_min[:1], XB_min[:1]
    else:
        perm = _matched(XA_full, XB_full, a.numbers, b.numbers)
        XA_full = XA_full[perm]
        XA_min = XA_min[_matched(XA_min, XB_min, a.numbers, b.numbers)]
    orders = np.array([inv["order"] for inv in full.spec.invariants])
    subsets = []
    for k in sorted(set(orders.tolist())):
        m = orders <= k
        d = relative_distance(XA_full[:, m], XB_full[:, m])
        subsets.append({"label": f"ν ≤ {k}", "basis": "full", "max_order": int(k), "n_features": int(m.sum()),
                        "relative_distance": d, "distinguished": bool(d > DISTINGUISH_RTOL)})
    d = relative_distance(XA_min, XB_min)
    subsets.append({"label": "minimal", "basis": "minimal", "max_order": None, "n_features": int(minimal.n_features),
                    "relative_distance": d, "distinguished": bool(d > DISTINGUISH_RTOL)})
    per_order = [{"order": int(k), "relative_distance": relative_distance(XA_full[:, orders == k], XB_full[:, orders == k])}
                 for k in sorted(set(orders.tolist()))]
    return {"subsets": subsets, "per_order": per_order}


def check_species(frames: Sequence[Atoms], species: Sequence[str], source: str) -> None:
    """Raise :class:`~minbasis.errors.SpeciesError` naming ``source`` if a structure has a species
    that is not among ``species`` (the basis channels)."""
    allowed = set(species)
    for k, atoms in enumerate(frames):
        bad = sorted(set(atoms.get_chemical_symbols()) - allowed)
        if bad:
            raise SpeciesError(f"{source}: structure {k} contains species {bad} that are not in the basis species "
                               f"{list(species)}; build the basis with --species including them")


def read_pair(path_a: str | os.PathLike | Atoms, path_b: str | os.PathLike | Atoms, species: Sequence[str]
              ) -> tuple[Atoms, Atoms, list[str]]:
    """Read a user's pair of structures (one structure per file, any format ASE reads).

    Returns
    -------
    (a, b, names): the two structures and a display name for each.

    Raises
    ------
    StructureError
        A file is missing or unreadable, holds more than one structure, or the two structures
        have different numbers of atoms or different species counts.
    SpeciesError
        A species that is not among ``species``.
    """
    from ..fit.data import read_structures

    out, names = [], []
    for p in (path_a, path_b):
        if isinstance(p, Atoms):
            frames, name = [p], f"structure {len(out)}"
        else:
            frames, name = read_structures(p), os.path.basename(str(p))
            if len(frames) != 1:
                raise StructureError(f"--pair: {p} holds {len(frames)} structures; give one structure per file")
        check_species(frames, species, f"--pair {name}")
        out.append(frames[0])
        names.append(name)
    a, b = out
    if len(a) != len(b):
        raise StructureError(f"--pair: the two structures must have the same number of atoms; {names[0]} has "
                             f"{len(a)}, {names[1]} has {len(b)}")
    if sorted(a.get_chemical_symbols()) != sorted(b.get_chemical_symbols()):
        raise StructureError(f"--pair: the two structures must contain the same atoms; {names[0]} is "
                             f"{a.get_chemical_formula()}, {names[1]} is {b.get_chemical_formula()}")
    return a, b, names


def structural_difference(a: Atoms, b: Atoms) -> dict:
    """How different two structures are geometrically, without any descriptor.

    Returns
    -------
    dict
        ``distance_lists_max_diff`` (Å): largest difference between the sorted lists of all
        interatomic distances per species pair (0 for congruent structures; also 0 for
        "homometric" non-congruent ones); ``rmsd_best_signs`` (Å): RMSD between b and the best of
        the eight sign flips diag(±1, ±1, ±1) of a about atom 0, after an optimal same-species
        atom matching. For the literature pairs, whose anchors sit on the positive axes at distinct
        distances, every isometry mapping one onto the other would have to be among these flips,
        so a non-zero value shows the environments are different.
    """
    from scipy.optimize import linear_sum_assignment

    def dist_lists(s):
        D = s.get_all_distances()
        Z = s.numbers
        out = {}
        for i, j in zip(*np.triu_indices(len(s), 1)):
            out.setdefault(tuple(sorted((int(Z[i]), int(Z[j])))), []).append(D[i, j])
        return {k: np.sort(v) for k, v in out.items()}

    la, lb = dist_lists(a), dist_lists(b)
    diff = max((float(np.max(np.abs(la[k] - lb[k]))) for k in la if k in lb and len(la[k]) == len(lb[k])),
               default=0.0)
    if set(la) != set(lb) or any(len(la[k]) != len(lb[k]) for k in la if k in lb):
        diff = float("inf")
    pa = a.positions - a.positions[0]
    pb = b.positions - b.positions[0]
    best = float("inf")
    for signs in itertools.product((1, -1), repeat=3):
        q = pa * np.array(signs)
        tot = 0.0
        for z in np.unique(b.numbers):
            ia, ib = np.flatnonzero(a.numbers == z), np.flatnonzero(b.numbers == z)
            D = ((q[ia][:, None] - pb[ib][None]) ** 2).sum(-1)
            r, c = linear_sum_assignment(D)
            tot += D[r, c].sum()
        best = min(best, float(np.sqrt(tot / len(b))))
    return {"distance_lists_max_diff": diff, "rmsd_best_signs": best}


def pair_verdict(pair: dict) -> dict:
    """Plain-language verdict for one measured pair (a dict of the report's ``pairs`` list).

    Compares the measurement with the expectation from the literature: degenerate for every
    truncation ν ≤ ``expected_degenerate_up_to``, distinguishable by higher orders of a complete
    (untruncated) basis. Says so plainly when the measurement differs, and notes when the
    minimal basis loses a distinction the full basis makes (functional independence is local).

    Returns
    -------
    dict: ``lower_orders_degenerate`` (bool or None), ``first_distinguishing_order`` (int or
    None), ``minimal_distinguishes`` (bool), ``agrees_with_literature`` (bool or None for user
    pairs), ``verdict`` (str).
    """
    res = pair["centre" if pair["centre_only"] else "structure"]
    full = [s for s in res["subsets"] if s["basis"] == "full"]
    mini = next(s for s in res["subsets"] if s["basis"] == "minimal")
    first = next((s["max_order"] for s in full if s["distinguished"]), None)
    top = max(s["max_order"] for s in full)
    k = pair.get("expected_degenerate_up_to")
    fmt = lambda v: "0" if v == 0 else f"{v:.1e}"  # noqa: E731
    parts = []
    lower_ok, agrees = None, None
    if k is None:
        if first is None:
            parts.append(f"No correlation order of this basis (ν ≤ {top}) distinguishes the two structures "
                         f"(largest relative distance {fmt(max(s['relative_distance'] for s in full))}).")
        else:
            d = next(s["relative_distance"] for s in full if s["max_order"] == first)
            parts.append(f"Distinguished from ν ≤ {first} on (relative distance {fmt(d)})"
                         + (f"; ν ≤ {first - 1} cannot tell them apart." if first > min(s['max_order'] for s in full) else "."))
    else:
        lower = [s for s in full if s["max_order"] <= k]
        higher = [s for s in full if s["max_order"] > k]
        lower_ok = not any(s["distinguished"] for s in lower)
        worst_lower = max((s["relative_distance"] for s in lower), default=0.0)
        if not lower_ok:
            agrees = False
            parts.append(f"CONTRADICTS the construction and the literature: ν ≤ {first} already distinguishes the pair "
                         f"(relative distance {fmt(next(s['relative_distance'] for s in lower if s['distinguished']))}), "
                         f"although its ν ≤ {k} correlations are identical by construction — a defect of the basis "
                         f"or of the kernels.")
        elif higher:
            if first is not None:
                agrees = True
                d = next(s["relative_distance"] for s in higher if s["max_order"] == first)
                parts.append(f"As in the literature: truncated at ν ≤ {k} the features are identical (relative "
                             f"distance ≤ {fmt(worst_lower)}, round-off); ν ≤ {first} tells A from B "
                             f"(relative distance {fmt(d)}).")
            else:
                agrees = False
                parts.append(f"Differs from the literature's expectation: orders above ν = {k} can distinguish this "
                             f"kind of pair, but this truncated basis (up to ν = {top}) does not (largest relative "
                             f"distance {fmt(max(s['relative_distance'] for s in full))}). The invariants of order "
                             f"{k + 1}..{top} kept by its n_max/l_max do not see the difference (for the Nigam-type "
                             f"pair, l ≥ 3 is needed at ν = 4).")
        else:
            agrees = True
            parts.append(f"As in the literature: this basis stops at ν = {top}, within the orders at which the pair is "
                         f"degenerate (ν ≤ {k}), and no order distinguishes it (relative distance ≤ {fmt(worst_lower)}, "
                         f"round-off); a basis with ν ≥ {k + 1} is needed.")
    if mini["distinguished"]:
        parts.append(f"The minimal basis distinguishes it (relative distance {fmt(mini['relative_distance'])}).")
    elif first is not None:
        parts.append("The minimal basis does NOT distinguish it although the full basis does: functional "
                     "independence is local — each dropped invariant is a function of the kept ones near generic "
                     "points, not necessarily a single-valued function everywhere — so the minimal basis is locally "
                     "but not globally as complete as the full one.")
    else:
        parts.append("The minimal basis does not distinguish it either.")
    return {"lower_orders_degenerate": lower_ok, "first_distinguishing_order": first,
            "minimal_distinguishes": bool(mini["distinguished"]), "agrees_with_literature": agrees,
            "verdict": " ".join(parts)}
