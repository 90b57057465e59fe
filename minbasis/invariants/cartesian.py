"""Cartesian tensor invariants: full contractions of moment tensors (docs/theory/cartesian.md).

Moment tensors (Shapeev, Multiscale Model. Simul. 14, 1153, 2016, "moment tensor potentials";
Cheng, npj Comput. Mater. 10, 157, 2024, "CACE"; HIP-HOP-NN, lanl/hippynn
``hippynn/layers/hiplayers``)::

    M_{z,n,l} = Σ_{j: Z_j = z} R_n(r_ij) T_l(r̂_ij)

with T_l the symmetric trace-free (STF) part of r̂^{⊗l} (``symmetric="stf"``, 2l+1 independent
components) or the plain symmetric tensor r̂^{⊗l} itself (``symmetric="plain"``, Shapeev's
choice). An invariant is a full contraction of a product of moment tensors, described by a
*contraction multigraph*: one vertex per tensor factor (a vertex of rank l has degree l), one
edge per contracted index pair. For STF tensors self-loops (traces) vanish; for plain tensors a
self-loop only lowers the rank by two (r̂·r̂ = 1), so self-loops are never enumerated.
Disconnected graphs are products of smaller invariants (kept only with ``include_products``).

**Evaluation through spherical moments.** Every component of T_l(r̂) is a fixed linear
combination of the real spherical harmonics Y_{l,μ}(r̂) (the convention of
:mod:`minbasis.invariants.coupling` and :mod:`minbasis.kernels.primitives`: sphericart's,
orthonormal, Condon–Shortley phase folded in), and every component of r̂^{⊗l} one of
Y_{l',μ} with l' = l, l−2, …. The coefficients are derived once, exactly, with sympy, by
decomposing each monomial x^a y^b z^c (a+b+c = l) into r^{2k} times solid harmonics (the
harmonic part, k = 0, is the STF tensor). Hence M_{z,n,l} is a linear map of the moments
A_{z,n,l',μ} the kernels already compute, and a contraction graph is a polynomial in the A's,
emitted as the same plain invariant dicts ACE uses (:mod:`minbasis.spec`): the Numba kernels,
gradients, forces, virials and the functional pruning work unchanged (the same idea as
hippynn's ``polynomial_invariants.computeInvariantPolynomial``).

Enumeration: for every sorted multiset of up to ``max_factors`` tensor labels (z, n, l) every
multigraph with the required degrees is generated, graphs isomorphic under relabelling of
identical tensors are merged by a brute-force canonical labelling (maximal upper-triangular
adjacency over the permutations of identical vertices), and, within each multiset, graphs whose
polynomial is a linear combination of earlier ones (including zero and duplicate polynomials)
are dropped. Each graph has a stable canonical name and an einsum string.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from ..errors import MinbasisError
from .cache import cached_json, check_invariant_list
from .coupling import _group_permutations

__all__ = [
    "HIPHOP_EINSUMS",
    "ContractionGraph",
    "cartesian_to_spherical",
    "cartesian_to_spherical_exact",
    "enumerate_cartesian",
    "einsum_invariants",
    "hiphop_invariants",
    "graph_invariant",
    "rank_letter",
]

#: The 13 default invariants of HIP-HOP-NN (lanl/hippynn,
#: ``hippynn/layers/hiplayers/polynomial_invariants.py``, ``default_invariants_list``; docs/theory/cartesian.md),
#: as einsum strings over the STF moments s, v, q, t of rank 0..3.
HIPHOP_EINSUMS = ("->", "i,i", "ij,ij", "ijk,ijk", "i,ij,j", "ij,ik,jk", "ij,jkl,ikl", "i,j,k,ijk",
                  "i,ij,jk,k", "i,ijk,jkl,l", "ij,jk,ilm,klm", "ij,ijk,kab,ab", "ijk,ijl,abk,abl")

_EDGE_LETTERS = "ijklmnopqrstuvwxyzabcdefgh"
_SYMMETRIC = ("stf", "plain")
#: Largest number of tensor factors :func:`enumerate_cartesian` accepts (brute-force canonical
#: labelling costs k! per graph).
MAX_FACTORS = 6


def rank_letter(l: int) -> str:
    """Letter of a tensor of rank l in names: s, v, q, t for l = 0..3, then ``x4``, ``x5``, …"""
    return "svqt"[l] if l < 4 else f"x{l}"


def _check_symmetric(symmetric: str) -> str:
    if symmetric not in _SYMMETRIC:
        raise MinbasisError(f"symmetric must be 'stf' (symmetric trace-free tensors) or 'plain' (plain "
                            f"symmetric tensors r̂⊗…⊗r̂), got {symmetric!r}")
    return symmetric


# ---------------------------------------------------------------------------------------------
# exact Cartesian ↔ spherical map
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _solid_harmonics(l_max: int):
    """Solid harmonics without normalisation, P_{l,μ}(x, y, z) = r^l Y_{l,μ}(r̂) / F_{l,|m|}, as
    sympy polynomials with integer coefficients, by the recurrences of
    :mod:`minbasis.kernels.primitives` (kept in sympy, with r² = x² + y² + z²)."""
    import sympy as sp

    x, y, z = sp.symbols("x y z", real=True)
    r2 = x * x + y * y + z * z
    Q = {(0, 0): sp.Integer(1)}
    for m in range(1, l_max + 1):
        Q[m, m] = -(2 * m - 1) * Q[m - 1, m - 1]
    for m in range(0, l_max):
        Q[m + 1, m] = (2 * m + 1) * z * Q[m, m]
    for m in range(0, l_max + 1):
        for l in range(m + 2, l_max + 1):
            Q[l, m] = sp.expand(((2 * l - 1) * z * Q[l - 1, m] - (l + m - 1) * r2 * Q[l - 2, m]) / (l - m))
    cs = [(sp.Integer(1), sp.Integer(0))]
    for m in range(1, l_max + 1):
        c0, s0 = cs[-1]
        cs.append((sp.expand(x * c0 - y * s0), sp.expand(x * s0 + y * c0)))
    P = {}
    for l in range(l_max + 1):
        P[l, l] = Q[l, 0]
        for m in range(1, l + 1):
            P[l, l + m] = sp.expand(Q[l, m] * cs[m][0])
            P[l, l - m] = sp.expand(Q[l, m] * cs[m][1])
    return (x, y, z), P


def _sph_norm_exact(l: int, mu: int):
    """F_{l,|m|} of :func:`minbasis.kernels.primitives.sph_normalisation`, exactly (sympy)."""
    import sympy as sp

    m = abs(mu - l)
    if m == 0:
        return sp.sqrt(sp.Rational(2 * l + 1, 4) / sp.pi)
    return sp.sqrt(sp.Rational(2 * l + 1, 2) / sp.pi * sp.factorial(l - m) / sp.factorial(l + m))


@lru_cache(maxsize=None)
def _monomial_decomposition(l: int):
    """Exact decomposition of the degree-l monomials into r^{2k} × solid harmonics.

    Returns (monomials, labels, X): ``monomials`` the exponent triples (a, b, c), ``labels`` the
    (l', μ) of the basis polynomials r^{l−l'} P_{l',μ} (l' = l, l−2, …), and the rational sympy
    matrix X (len(labels), len(monomials)) with x^a y^b z^c = Σ_i X[i, j] r^{l−l'_i} P_{l'_i,μ_i}.
    """
    import sympy as sp

    (x, y, z), P = _solid_harmonics(l)
    r2 = x * x + y * y + z * z
    monomials = [(a, b, l - a - b) for a in range(l, -1, -1) for b in range(l - a, -1, -1)]
    labels, polys = [], []
    for k in range(l // 2 + 1):
        lp = l - 2 * k
        for mu in range(2 * lp + 1):
            labels.append((lp, mu))
            polys.append(sp.Poly(sp.expand(r2 ** k * P[lp, mu]), x, y, z))
    M = sp.zeros(len(monomials), len(labels))
    for i, p in enumerate(polys):
        for j, (a, b, c) in enumerate(monomials):
            M[j, i] = p.coeff_monomial(x ** a * y ** b * z ** c)
    X = M.inv()
    if M * X != sp.eye(len(monomials)):  # pragma: no cover - exact arithmetic
        raise AssertionError(f"harmonic decomposition of degree {l} failed")
    return monomials, labels, X


@lru_cache(maxsize=None)
def cartesian_to_spherical_exact(l: int, symmetric: str = "stf") -> dict:
    """Exact coefficients of the Cartesian tensor of rank l in the real spherical harmonics.

    ``T_l(r̂)[i_1..i_l] = Σ_{l', μ} c[(a, b, c)][(l', μ)] Y_{l',μ}(r̂)``, where (a, b, c) counts the
    indices equal to x, y, z (the tensor is symmetric). ``symmetric="stf"``: only l' = l (the
    STF part); ``"plain"``: l' = l, l−2, …, the plain tensor r̂^{⊗l}.

    Returns
    -------
    dict mapping (a, b, c) to dict mapping (l', μ) to a sympy number (rationals times square
    roots of π and of rationals).

    Raises
    ------
    MinbasisError
        Negative rank or unknown ``symmetric``.
    """
    _check_symmetric(symmetric)
    if l < 0:
        raise MinbasisError(f"tensor rank must be >= 0, got {l}")
    monomials, labels, X = _monomial_decomposition(l)
    out = {}
    for j, mono in enumerate(monomials):
        row = {}
        for i, (lp, mu) in enumerate(labels):
            if symmetric == "stf" and lp != l:
                continue
            if X[i, j] != 0:
                row[lp, mu] = X[i, j] / _sph_norm_exact(lp, mu)
        out[mono] = row
    return out


@lru_cache(maxsize=None)
def cartesian_to_spherical(l: int, symmetric: str = "stf") -> dict[int, np.ndarray]:
    """Float64 map from real spherical harmonics to the components of a Cartesian tensor of rank l.

    Parameters
    ----------
    l : int
        Tensor rank, ≥ 0.
    symmetric : {"stf", "plain"}
        Symmetric trace-free part of r̂^{⊗l}, or r̂^{⊗l} itself.

    Returns
    -------
    dict mapping l' to a read-only float64 array C of shape (3,)*l + (2l'+1,) with
    T_l(r̂)[i_1..i_l] = Σ_{l'} Σ_μ C[l'][i_1..i_l, μ] Y_{l',μ}(r̂); keys l' = l for ``"stf"`` and
    l, l−2, …, l mod 2 for ``"plain"``. By linearity the same map takes the spherical moments
    A_{z,n,l',μ} to the moment tensor M_{z,n,l}. Rank 0: {0: [√(4π)]} (T_0 = 1).

    Raises
    ------
    MinbasisError
        Negative rank or unknown ``symmetric``.
    """
    exact = cartesian_to_spherical_exact(l, symmetric)
    lps = [l] if symmetric == "stf" else list(range(l, -1, -2))
    out = {lp: np.zeros((3,) * l + (2 * lp + 1,)) for lp in lps}
    for idx in itertools.product(range(3), repeat=l):
        mono = (idx.count(0), idx.count(1), idx.count(2))
        for (lp, mu), c in exact[mono].items():
            out[lp][idx + (mu,)] = float(c.evalf(30))  # correctly rounded
    for a in out.values():
        a.setflags(write=False)
    return out


# ---------------------------------------------------------------------------------------------
# contraction multigraphs
# ---------------------------------------------------------------------------------------------
def _pairs(k: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(k) for b in range(a + 1, k)]


def _upper_to_edges(upper: Sequence[int], k: int) -> tuple[tuple[int, int, int], ...]:
    return tuple((a, b, int(m)) for (a, b), m in zip(_pairs(k), upper) if m)


def _n_components(k: int, edges: Iterable[tuple[int, int, int]]) -> int:
    parent = list(range(k))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b, _ in edges:
        parent[find(a)] = find(b)
    return len({find(a) for a in range(k)})


def _einsum_string(ranks: Sequence[int], edges: Sequence[tuple[int, int, int]]) -> str:
    """Operand strings of a graph (edge letters assigned in edge order); "->" for a lone scalar."""
    if len(ranks) == 1 and ranks[0] == 0:
        return "->"
    ops = [""] * len(ranks)
    letter = 0
    for a, b, m in sorted(edges):
        for _ in range(m):
            if letter >= len(_EDGE_LETTERS):
                raise MinbasisError(f"graph has more than {len(_EDGE_LETTERS)} contracted index pairs")
            ops[a] += _EDGE_LETTERS[letter]
            ops[b] += _EDGE_LETTERS[letter]
            letter += 1
    return ",".join(ops)


def _canonical_upper(upper: tuple[int, ...], k: int, perms: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """Largest upper-triangular adjacency tuple over the allowed vertex permutations."""
    E = np.zeros((k, k), dtype=np.int64)
    for (a, b), m in zip(_pairs(k), upper):
        E[a, b] = E[b, a] = m
    iu = np.triu_indices(k, 1)
    best = None
    for p in perms:
        t = tuple(int(v) for v in E[np.ix_(p, p)][iu])
        if best is None or t > best:
            best = t
    return best


@dataclass(frozen=True)
class ContractionGraph:
    """A full contraction of moment tensors as a multigraph (a small value object).

    Build one from an einsum string with :meth:`from_einsum`; :meth:`canonical` gives the
    representative shared by all isomorphic graphs (factors sorted by (l, z, n) as in ACE,
    adjacency maximal over permutations of identical factors), whose :attr:`name` and
    :attr:`einsum` are stable.

    Attributes
    ----------
    ranks : tuple of int
        Rank l of each tensor factor (vertex degree).
    channels : tuple of (z, n)
        Neighbour channel z and radial index n of each factor.
    edges : tuple of (a, b, multiplicity)
        Contracted index pairs between factors a < b.
    """

    ranks: tuple[int, ...]
    channels: tuple[tuple[int, int], ...]
    edges: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        k = len(self.ranks)
        if k == 0:
            raise MinbasisError("a contraction graph needs at least one tensor factor")
        if len(self.channels) != k:
            raise MinbasisError(f"{k} ranks but {len(self.channels)} channels")
        deg = [0] * k
        for a, b, m in self.edges:
            if not (0 <= a < b < k) or m < 1:
                raise MinbasisError(f"bad edge {(a, b, m)} of a {k}-factor graph (need 0 <= a < b < {k}, "
                                    "multiplicity >= 1; self-contractions are not allowed)")
            deg[a] += m
            deg[b] += m
        if tuple(deg) != tuple(self.ranks):
            raise MinbasisError(f"vertex degrees {deg} differ from the tensor ranks {list(self.ranks)}: "
                                "every index must be contracted exactly once")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_einsum(cls, einsum: str, channels: Sequence[tuple[int, int]] | None = None) -> "ContractionGraph":
        """Parse a full contraction such as ``"ij,jk,ik"`` (``"->"`` or ``""``: a lone scalar).

        Each index letter must occur exactly twice, in two different operands (no output
        indices, no traces). ``channels`` defaults to (0, 0) for every factor.

        Raises
        ------
        MinbasisError
            Malformed string, an index used once or more than twice, or a trace.
        """
        text = str(einsum).replace(" ", "")
        if "->" in text:
            text, out = text.split("->", 1)
            if out:
                raise MinbasisError(f"einsum {einsum!r}: an invariant is a full contraction, no output indices")
        ops = text.split(",") if text else [""]
        if not all(o.isalpha() or o == "" for o in ops):
            raise MinbasisError(f"einsum {einsum!r}: operands must be letters separated by commas")
        where: dict[str, list[int]] = {}
        for v, op in enumerate(ops):
            for ch in op:
                where.setdefault(ch, []).append(v)
        counts: dict[tuple[int, int], int] = {}
        for ch, vs in where.items():
            if len(vs) != 2:
                raise MinbasisError(f"einsum {einsum!r}: index {ch!r} occurs {len(vs)} times; every index "
                                    "of a full contraction occurs exactly twice")
            a, b = sorted(vs)
            if a == b:
                raise MinbasisError(f"einsum {einsum!r}: index {ch!r} is a trace of operand {a}; traces of "
                                    "STF tensors vanish and traces of plain tensors lower the rank")
            counts[a, b] = counts.get((a, b), 0) + 1
        ranks = tuple(len(o) for o in ops)
        channels = tuple((0, 0) for _ in ops) if channels is None else tuple(tuple(int(x) for x in c) for c in channels)
        return cls(ranks, channels, tuple((a, b, m) for (a, b), m in sorted(counts.items())))

    # -- properties ------------------------------------------------------------------------
    @property
    def order(self) -> int:
        """Number of tensor factors (the polynomial degree in the moments)."""
        return len(self.ranks)

    @property
    def n_components(self) -> int:
        """Number of connected components (1 for a connected graph)."""
        return _n_components(self.order, self.edges)

    @property
    def is_connected(self) -> bool:
        return self.n_components == 1

    @property
    def einsum(self) -> str:
        """Einsum operand string of this graph as it is (use :meth:`canonical` first for a stable one)."""
        return _einsum_string(self.ranks, self.edges)

    @property
    def letters(self) -> str:
        """Rank letters of the factors, e.g. ``"vvq"``."""
        return "".join(rank_letter(l) for l in self.ranks)

    @property
    def name(self) -> str:
        """Stable canonical name, e.g. ``"vvq:i,j,ij@z0n0,z0n0,z0n0"`` (same for isomorphic graphs)."""
        c = self.canonical()
        chans = ",".join(f"z{z}n{n}" for z, n in c.channels)
        return f"{c.letters}:{c.einsum}@{chans}"

    def labels(self) -> list[tuple[int, int, int]]:
        """(z, n, l) of each factor."""
        return [(z, n, l) for (z, n), l in zip(self.channels, self.ranks)]

    def canonical(self) -> "ContractionGraph":
        """The canonical representative of the isomorphism class of this (coloured) graph."""
        k = self.order
        order = sorted(range(k), key=lambda v: (self.ranks[v], *self.channels[v]))
        pos = {v: i for i, v in enumerate(order)}
        ranks = tuple(self.ranks[v] for v in order)
        channels = tuple(self.channels[v] for v in order)
        E = np.zeros((k, k), dtype=np.int64)
        for a, b, m in self.edges:
            E[pos[a], pos[b]] += m
            E[pos[b], pos[a]] += m
        upper = tuple(int(E[a, b]) for a, b in _pairs(k))
        groups = tuple(_first_seen([(l, c) for l, c in zip(ranks, channels)]))
        upper = _canonical_upper(upper, k, _group_permutations(groups))
        return ContractionGraph(ranks, channels, _upper_to_edges(upper, k))

    def __str__(self) -> str:
        return self.name


def _first_seen(items: Sequence) -> list[int]:
    seen: dict = {}
    return [seen.setdefault(it, len(seen)) for it in items]


@lru_cache(maxsize=None)
def _degree_sequence_graphs(ranks: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """All loop-free multigraphs with the given vertex degrees, as upper-triangular tuples."""
    k = len(ranks)
    pairs = _pairs(k)
    last = {a: max((i for i, (p, q) in enumerate(pairs) if a in (p, q)), default=-1) for a in range(k)}
    out = []
    rem = list(ranks)
    cur = [0] * len(pairs)

    def rec(i):
        if i == len(pairs):
            if all(r == 0 for r in rem):
                out.append(tuple(cur))
            return
        a, b = pairs[i]
        hi = min(rem[a], rem[b])
        lo = 0
        for v in (a, b):  # the last pair touching v must use up its remaining degree
            if last[v] == i:
                lo = max(lo, rem[v])
        for m in range(lo, hi + 1):
            if (last[a] == i and m != rem[a]) or (last[b] == i and m != rem[b]):
                continue
            cur[i] = m
            rem[a] -= m
            rem[b] -= m
            rec(i + 1)
            rem[a] += m
            rem[b] += m
        cur[i] = 0

    if k == 1:
        return ((),) if ranks[0] == 0 else ()
    rec(0)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# graph → polynomial in the spherical moments
# ---------------------------------------------------------------------------------------------
_MU_RADIX = 128  # codes of a class variable: (class · 64 + l') · 128 + μ  (l' < 64)
_L_RADIX = 64


def _polynomial(ranks: tuple[int, ...], classes: tuple[int, ...], upper: tuple[int, ...],
                symmetric: str) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """Folded polynomial of a graph in "class" variables (class c, l', μ).

    Factors with the same class share their channel (z, n). Returns ((codes, coefs), raw):
    ``codes`` (M, k) int64 — each row the sorted variable codes (c · 64 + l') · 128 + μ of one
    monomial —, ``coefs`` (M,) float64, and ``raw`` the largest |coefficient| before folding
    (it tells a polynomial that vanishes by symmetry from one that is merely small).
    """
    k = len(ranks)
    edges = _upper_to_edges(upper, k)
    ops = [""] * k
    letter = 0
    for a, b, m in edges:
        for _ in range(m):
            ops[a] += _EDGE_LETTERS[letter]
            ops[b] += _EDGE_LETTERS[letter]
            letter += 1
    maps = [cartesian_to_spherical(l, symmetric) for l in ranks]
    spec = ",".join(op + "ABCDEFGH"[v] for v, op in enumerate(ops)) + "->" + "ABCDEFGH"[:k]
    rows, vals = [], []
    raw = 0.0
    for choice in itertools.product(*[sorted(m) for m in maps]):
        D = np.einsum(spec, *[maps[v][lp] for v, lp in enumerate(choice)], optimize=len(ranks) > 2)
        big = float(np.abs(D).max()) if D.size else 0.0
        if big == 0.0:
            continue
        raw = max(raw, big)
        nz = np.nonzero(np.abs(D) > 1e-14 * big)
        rows.append(np.stack([(classes[v] * _L_RADIX + choice[v]) * _MU_RADIX + nz[v] for v in range(k)], axis=1))
        vals.append(D[nz])
    if not rows:
        return (np.zeros((0, k), dtype=np.int64), np.zeros(0)), raw
    codes, coefs = _fold(np.concatenate(rows), np.concatenate(vals))
    return (codes, coefs), raw


def _fold(codes: np.ndarray, coefs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort the variables of each monomial, sum equal monomials, drop cancelled ones (relative 1e-13)."""
    codes = np.sort(codes.astype(np.int64), axis=1)
    uniq, inverse = np.unique(codes, axis=0, return_inverse=True)
    summed = np.zeros(len(uniq))
    np.add.at(summed, inverse.ravel(), coefs)
    keep = np.abs(summed) > 1e-13 * (np.abs(summed).max() if len(summed) else 0.0)
    return uniq[keep], summed[keep]


def _is_zero(poly: tuple[np.ndarray, np.ndarray], raw: float) -> bool:
    return len(poly[1]) == 0 or float(np.abs(poly[1]).max()) <= 1e-10 * raw


@lru_cache(maxsize=None)
def _shape_graphs(ranks: tuple[int, ...], classes: tuple[int, ...], connected: bool,
                  symmetric: str) -> tuple[tuple[tuple[int, ...], int, tuple[np.ndarray, np.ndarray]], ...]:
    """Linearly independent contraction graphs of one multiset "shape".

    ``ranks`` (non-decreasing within equal classes, sorted as the factors) and ``classes``
    (first-seen channel labels) describe a multiset of tensor labels up to renaming of channels.
    Returns (canonical upper-triangular adjacency, number of components, class polynomial) for
    every kept graph: non-isomorphic, and (for the STF polynomials) linearly independent of the
    graphs before it in the order (components, adjacency descending).
    """
    k = len(ranks)
    groups = tuple(_first_seen(list(zip(ranks, classes))))
    perms = _group_permutations(groups)
    found: dict[tuple[int, ...], int] = {}
    for upper in _degree_sequence_graphs(ranks):
        ncomp = _n_components(k, _upper_to_edges(upper, k))
        if connected and ncomp != 1:
            continue
        found.setdefault(_canonical_upper(upper, k, perms), ncomp)
    candidates = sorted(found.items(), key=lambda kv: (kv[1], tuple(-m for m in kv[0])))
    polys = []
    for upper, ncomp in candidates:
        poly, raw = _polynomial(ranks, classes, upper, "stf")
        if not _is_zero(poly, raw):  # else it vanishes identically (symmetry of identical factors)
            polys.append((upper, ncomp, poly))
    if not polys:
        return ()
    all_rows, index = np.unique(np.concatenate([p[0] for _, _, p in polys]), axis=0, return_inverse=True)
    index = index.ravel()
    kept, basis_rows, start = [], [], 0
    for upper, ncomp, poly in polys:
        v = np.zeros(len(all_rows))
        v[index[start:start + len(poly[1])]] = poly[1]
        start += len(poly[1])
        n0 = np.linalg.norm(v)
        for _ in range(2):  # Gram–Schmidt with re-orthogonalisation
            for q in basis_rows:
                v -= (q @ v) * q
        if np.linalg.norm(v) > 1e-9 * n0:
            basis_rows.append(v / np.linalg.norm(v))
            if symmetric == "plain":
                poly = _polynomial(ranks, classes, upper, "plain")[0]
            kept.append((upper, ncomp, poly))
    return tuple(kept)


def _make_invariant(ranks, channels, upper, poly, symmetric) -> dict:
    """Invariant dict (minbasis.spec format) of a graph with sorted labels and its class polynomial."""
    k = len(ranks)
    classes = _first_seen(list(channels))
    cz = np.zeros(max(classes) + 1, dtype=np.int64)
    cn = np.zeros(max(classes) + 1, dtype=np.int64)
    for c, (z, n) in zip(classes, channels):
        cz[c], cn[c] = z, n
    edges = _upper_to_edges(upper, k)
    graph = ContractionGraph(tuple(ranks), tuple(channels), edges)
    codes, coefs = poly
    cls, lp, mu = codes // (_L_RADIX * _MU_RADIX), (codes // _MU_RADIX) % _L_RADIX, codes % _MU_RADIX
    Z, N = int(cz.max()) + 1, int(cn.max()) + 1
    # variables ordered by (l, z, n, μ), as the factors of ACE invariants
    final, coefs = _fold(((lp * Z + cz[cls]) * N + cn[cls]) * _MU_RADIX + mu, coefs)
    mu = final % _MU_RADIX
    rest = final // _MU_RADIX
    n_, rest = rest % N, rest // N
    z_, l_ = rest % Z, rest // Z
    inv = {"order": k, "factors": [[int(z), int(n), int(l)] for (z, n), l in zip(channels, ranks)]}
    nominal = np.array([(l, z, n) for (z, n), l in zip(channels, ranks)], dtype=np.int64)
    if len(coefs) and np.array_equal(np.stack([l_, z_, n_], axis=-1), np.broadcast_to(nominal, (len(coefs), k, 3))):
        inv["terms"] = [[c, m] for c, m in zip(coefs.tolist(), mu.tolist())]
    else:
        inv["monomials"] = [[c, m] for c, m in zip(coefs.tolist(), np.stack([z_, n_, l_, mu], axis=-1).tolist())]
    einsum = graph.einsum
    chans = ",".join(f"z{z}n{n}" for z, n in channels)
    name = f"{graph.letters}:{einsum}@{chans}"
    inv["label"] = name if symmetric == "stf" else name + "/plain"
    inv["einsum"] = einsum
    inv["tensor"] = symmetric
    inv["graph"] = {"ranks": [int(l) for l in ranks], "channels": [[int(z), int(n)] for z, n in channels],
                    "edges": [list(e) for e in edges]}
    return inv


def graph_invariant(graph: ContractionGraph, symmetric: str = "stf") -> dict:
    """The invariant dict of one contraction graph (canonicalised first).

    Returns
    -------
    dict in the format of :mod:`minbasis.spec` with ``order``, ``factors`` [[z, n, l], ...]
    (the tensor factors, sorted by (l, z, n)), ``terms`` (or, for plain tensors whose
    expansion mixes moments of several l, ``monomials`` [[coef, [[z, n, l, μ], ...]], ...]),
    ``label`` (the canonical name), ``einsum``, ``tensor`` ("stf" or "plain") and ``graph``.

    Raises
    ------
    MinbasisError
        If the polynomial vanishes identically (e.g. an antisymmetric contraction of identical
        factors) or ``symmetric`` is unknown.
    """
    _check_symmetric(symmetric)
    g = graph.canonical()
    k = g.order
    classes = tuple(_first_seen(list(g.channels)))
    upper = tuple(next((m for a, b, m in g.edges if (a, b) == p), 0) for p in _pairs(k))
    poly, raw = _polynomial(g.ranks, classes, upper, symmetric)
    if _is_zero(poly, raw):
        raise MinbasisError(f"the contraction {g.name} vanishes identically")
    return _make_invariant(g.ranks, g.channels, upper, poly, symmetric)


def _cost_key(inv: dict) -> tuple:
    fs = inv["factors"]
    return (inv["order"], sum(f[2] for f in fs), sum(f[1] for f in fs), [tuple(f) for f in fs])


def _enumerate(n_species: int, max_factors: int, n_max: list[int], l_max: list[int], symmetric: str,
               include_products: bool) -> list[dict]:
    invariants = []
    for k in range(1, max_factors + 1):
        lmin = 0 if (include_products or k == 1) else 1
        labels = sorted(((z, n, l) for z in range(n_species) for n in range(n_max[k - 1])
                         for l in range(lmin, l_max[k - 1] + 1)), key=lambda t: (t[2], t[0], t[1]))
        for combo in itertools.combinations_with_replacement(labels, k):
            ls = tuple(t[2] for t in combo)
            if sum(ls) % 2 or 2 * max(ls) > sum(ls):
                continue
            channels = tuple((z, n) for z, n, _ in combo)
            classes = tuple(_first_seen(list(channels)))
            for upper, ncomp, poly in _shape_graphs(ls, classes, not include_products, symmetric):
                inv = _make_invariant(ls, channels, upper, poly, symmetric)
                inv["components"] = ncomp
                invariants.append(inv)
    invariants.sort(key=_cost_key)
    return invariants


def enumerate_cartesian(n_species: int, max_factors: int, n_max: int | Sequence[int], l_max: int | Sequence[int],
                        *, symmetric: str = "stf", include_products: bool = False,
                        use_cache: bool = True) -> list[dict]:
    """All non-isomorphic, linearly independent contraction-graph invariants.

    Parameters
    ----------
    n_species : int
        Number of neighbour channels z (≥ 1).
    max_factors : int
        Largest number of tensor factors (polynomial degree in the moments; 1..6).
    n_max, l_max : int or list of int (one per number of factors 1..max_factors)
        Radial functions n = 0..n_max−1 and tensor ranks l = 0..l_max allowed.
    symmetric : {"stf", "plain"}
        Symmetric trace-free moment tensors (default) or plain symmetric ones.
    include_products : bool
        Also enumerate disconnected graphs (products of smaller invariants). With it, the
        invariants of each multiset of moments span all its O(3) invariants — as many as ACE
        has (the character-theory count); without it, only connected graphs are kept.
    use_cache : bool
        Read/write the result from the on-disk cache (:mod:`.cache`).

    Returns
    -------
    list of dict (see :func:`graph_invariant`), plus ``components`` (number of connected
    components), sorted by cost: number of factors, Σ l, Σ n, factors; within one multiset of
    factors, connected graphs first. Graphs of one multiset whose (STF) polynomials are linearly
    dependent on earlier ones are dropped; for ``"plain"`` the same graphs are kept.

    Raises
    ------
    MinbasisError
        n_species < 1, max_factors outside 1..6, n_max < 1, l_max < 0, lists of the wrong
        length, unknown ``symmetric``.
    """
    from .ace import per_order

    _check_symmetric(symmetric)
    if int(n_species) < 1:
        raise MinbasisError(f"n_species must be >= 1, got {n_species}")
    if not isinstance(max_factors, (int, np.integer)) or not 1 <= max_factors <= MAX_FACTORS:
        raise MinbasisError(f"max_factors (number of tensor factors per invariant) must be an integer in "
                            f"1..{MAX_FACTORS}, got {max_factors!r}")
    n_list = per_order(n_max, int(max_factors), "n_max")
    l_list = per_order(l_max, int(max_factors), "l_max")
    key = {"what": "cartesian_candidates", "n_species": int(n_species), "max_factors": int(max_factors),
           "n_max": n_list, "l_max": l_list, "symmetric": symmetric, "include_products": bool(include_products),
           "v": 1}
    compute = lambda: _enumerate(int(n_species), int(max_factors), n_list, l_list, symmetric,  # noqa: E731
                                 bool(include_products))
    if not use_cache:
        return compute()
    return cached_json(key, compute,
                       check=lambda v: check_invariant_list(v, int(n_species), max(n_list), max(l_list)))


def einsum_invariants(einsums: Sequence[str], channels: Sequence[tuple[int, int]], *, max_factors: int | None = None,
                      l_max: int | None = None, symmetric: str = "stf") -> list[dict]:
    """Invariants given as einsum strings, each instantiated on every single channel (z, n).

    As in HIP-HOP-NN, every factor of one invariant uses the same channel. Contractions with
    more than ``max_factors`` factors or a rank above ``l_max`` are skipped (hippynn's
    ``n_max`` / ``l_max`` filter); isomorphic duplicates are merged.

    Parameters
    ----------
    einsums : list of str
        Full contractions, e.g. ``["->", "i,i", "ij,ik,jk"]`` (see :meth:`ContractionGraph.from_einsum`).
    channels : list of (z, n)
    max_factors, l_max : int, optional
    symmetric : {"stf", "plain"}

    Returns
    -------
    list of invariant dicts (see :func:`graph_invariant`) with an extra ``source`` (the given
    einsum string), in the order channel-major, then the given einsum order.

    Raises
    ------
    MinbasisError
        Malformed einsum string, or a contraction that vanishes identically.
    """
    _check_symmetric(symmetric)
    out, seen = [], set()
    parsed = [ContractionGraph.from_einsum(e) for e in einsums]
    for z, n in channels:
        for text, g in zip(einsums, parsed):
            if (max_factors is not None and g.order > max_factors) or (l_max is not None and max(g.ranks) > l_max):
                continue
            gc = ContractionGraph(g.ranks, tuple((int(z), int(n)) for _ in g.ranks), g.edges)
            if gc.name in seen:
                continue
            seen.add(gc.name)
            inv = graph_invariant(gc, symmetric)
            inv["source"] = text
            out.append(inv)
    return out


def hiphop_invariants(l_max: int = 3, max_factors: int = 4, *, channels: Sequence[tuple[int, int]] = ((0, 0),),
                      symmetric: str = "stf") -> list[dict]:
    """The HIP-HOP-NN invariant set (:data:`HIPHOP_EINSUMS`) with ≤ ``max_factors`` factors and ranks ≤ ``l_max``.

    Source: lanl/hippynn, ``hippynn/layers/hiplayers/polynomial_invariants.py``; counts per
    (max_factors, l_max) in docs/theory/cartesian.md (13 for (4, 3), one channel).

    Raises
    ------
    MinbasisError
        max_factors < 1 or l_max < 0.
    """
    if int(max_factors) < 1:
        raise MinbasisError(f"max_factors must be >= 1, got {max_factors}")
    if int(l_max) < 0:
        raise MinbasisError(f"l_max must be >= 0, got {l_max}")
    return einsum_invariants(HIPHOP_EINSUMS, channels, max_factors=int(max_factors), l_max=int(l_max),
                             symmetric=symmetric)
