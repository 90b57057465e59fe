"""Enumeration of ACE invariants (B-basis) with linear pruning.

For correlation orders ν = 1..order, every sorted multiset of ν moment labels (z, n, l)
with Σ l even (O(3) parity) is coupled to rotation invariants with the symmetrised
generalised Clebsch–Gordan couplings of :mod:`.coupling`; the linearly independent ones
are kept (Drautz, PRB 99, 014104, 2019; Dusson et al., J. Comput. Phys. 454, 110946, 2022).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..errors import MinbasisError
from .cache import cached_json, check_invariant_list
from .coupling import symmetrised_couplings

__all__ = ["per_order", "enumerate_ace", "multiset_groups", "MAX_ORDER"]

#: Largest correlation order ν the enumeration accepts.
MAX_ORDER = 6


def per_order(value: int | Sequence[int], order: int, name: str) -> list[int]:
    """Expand an int or a per-order list (one entry per ν = 1..order) to a list of length ``order``.

    Accepts Python and NumPy integers and integral floats (``2.0``); refuses anything else
    (None, strings, ``2.5``: values are never silently truncated).

    Raises
    ------
    MinbasisError (a ValueError)
        If the value is not an integer or a list of integers, a list has the wrong length, or an
        entry is out of range (n_max ≥ 1, l_max ≥ 0).
    """
    from ..validate import as_int

    minimum = 1 if name == "n_max" else 0
    if isinstance(value, (str, bytes)) or value is None or isinstance(value, (dict, set)):
        raise MinbasisError(f"{name} must be an integer or a list of integers (one per order 1..{order}), "
                            f"got {value!r}")
    if np.ndim(value) == 0:
        values = [as_int(name, value.item() if isinstance(value, np.ndarray) else value, minimum=minimum)] * order
    else:
        values = [as_int(f"{name} entry", v) for v in value]
        if len(values) != order:
            example = [values[0] if values else minimum] * order
            raise MinbasisError(f"{name} has {len(values)} entries but order = {order}; give one per "
                                f"correlation order 1..{order}, e.g. {name}={example}")
    for v in values:
        if v < minimum:
            raise MinbasisError(f"{name} entries must be >= {minimum}, got {values}")
    return values


def multiset_groups(triples: Sequence[tuple[int, int, int]]) -> tuple[int, ...]:
    """Group labels of identical factors: equal triples get equal labels (first-seen order)."""
    seen: dict[tuple[int, int, int], int] = {}
    return tuple(seen.setdefault(tuple(t), len(seen)) for t in triples)


@lru_cache(maxsize=None)
def _folded_terms(ls: tuple[int, ...], groups: tuple[int, ...]) -> tuple[tuple[tuple[float, tuple[int, ...]], ...], ...]:
    """Sparse terms of every independent coupling, folded over exchanges of identical factors.

    Because a symmetrised coupling is symmetric under exchange of identical factors, all index
    tuples that are permutations of one another within a group multiply the same monomial;
    they are summed into one term whose μ's are sorted within each group.
    """
    out = []
    for D in symmetrised_couplings(ls, groups):
        acc: dict[tuple[int, ...], float] = {}
        for mu in zip(*np.nonzero(D)):
            key = list(int(m) for m in mu)
            for g in set(groups):
                pos = [p for p, gg in enumerate(groups) if gg == g]
                vals = sorted(key[p] for p in pos)
                for p, v in zip(pos, vals):
                    key[p] = v
            k = tuple(key)
            acc[k] = acc.get(k, 0.0) + float(D[mu])
        scale = max(abs(v) for v in acc.values())
        out.append(tuple((c, k) for k, c in sorted(acc.items()) if abs(c) > 1e-13 * scale))
    return tuple(out)


def _candidate_key(inv: dict) -> tuple:
    """Cost order of pruning (docs/theory/completeness.md): correlation order, then total l, then total n, then labels."""
    fs = inv["factors"]
    return (inv["order"], sum(f[2] for f in fs), sum(f[1] for f in fs), [tuple(f) for f in fs])


def _enumerate(n_species: int, order: int, n_max: list[int], l_max: list[int],
               total_degree: float | None, l_weight: float) -> list[dict]:
    invariants = []
    for nu in range(1, order + 1):
        triples = sorted(((z, n, l) for z in range(n_species) for n in range(n_max[nu - 1])
                          for l in range(l_max[nu - 1] + 1)), key=lambda t: (t[2], t[0], t[1]))
        for combo in itertools.combinations_with_replacement(triples, nu):
            ls = tuple(t[2] for t in combo)
            if sum(ls) % 2 or (nu == 1 and ls[0] != 0) or (nu == 2 and ls[0] != ls[1]):
                continue
            if nu >= 3 and 2 * max(ls) > sum(ls):
                continue
            if total_degree is not None and sum(t[1] + 1 + l_weight * t[2] for t in combo) > total_degree + 1e-9:
                continue
            groups = multiset_groups(combo)
            for k, terms in enumerate(_folded_terms(ls, groups)):
                label = "".join(f"[z{z} n{n} l{l}]" for z, n, l in combo) + f"#{k}"
                invariants.append({"order": nu, "factors": [list(t) for t in combo],
                                   "terms": [[c, list(mu)] for c, mu in terms], "label": label})
    invariants.sort(key=_candidate_key)
    return invariants


def enumerate_ace(n_species: int, order: int, n_max: Sequence[int], l_max: Sequence[int],
                  total_degree: float | None = None, l_weight: float = 1.0,
                  use_cache: bool = True) -> list[dict]:
    """All linearly independent ACE invariants for the given hyper-parameters.

    Parameters
    ----------
    n_species : int
        Number of neighbour channels z.
    order : int
        Maximum correlation order ν (1..6; above 4 use a total_degree cut or small per-order l_max).
    n_max, l_max : list of int, one entry per order
        Radial functions n = 0..n_max[ν-1]-1 and degrees l = 0..l_max[ν-1] allowed at order ν.
    total_degree : float, optional
        Keep only products with Σ_k (n_k + 1 + l_weight · l_k) ≤ total_degree.
    l_weight : float
        Weight of l in the total degree.
    use_cache : bool
        Read/write the result from the on-disk cache (:mod:`.cache`).

    Returns
    -------
    list of dict, each ``{"order", "factors", "terms", "label"}`` (see :mod:`minbasis.spec`),
    sorted by cost (order, Σ l, Σ n).
    """
    if not 1 <= order <= MAX_ORDER:
        raise MinbasisError(f"order (correlation order ν) must be 1..{MAX_ORDER}, got {order}")
    key = {"what": "ace_candidates", "n_species": n_species, "order": order, "n_max": list(n_max),
           "l_max": list(l_max), "total_degree": total_degree, "l_weight": l_weight, "v": 1}
    compute = lambda: _enumerate(n_species, order, list(n_max), list(l_max), total_degree, l_weight)  # noqa: E731
    if not use_cache:
        return compute()
    return cached_json(key, compute, check=lambda v: check_invariant_list(v, n_species, max(n_max), max(l_max)))
