"""Functional pruning of invariants by Jacobian rank (docs/theory/completeness.md).

The independent components of every moment A_{z,n,l,μ} used by the candidates are treated
as V free variables. A set of polynomial invariants f_1..f_K is functionally independent iff
the K×V Jacobian ∂f/∂A has rank K at a generic point (Langbein's criterion; Allen, Shinkle,
Bujack, Lubbers, arXiv 2503.23515; Bujack et al., arXiv 2503.21939).

Greedy pruning walks the candidates in cost order and accepts one only if its gradient row
raises the rank at one of K ≥ 3 random points (a candidate is dependent only if it is
dependent at all points). An orthonormal basis of accepted rows is kept per point and grown
by block Gram–Schmidt with re-orthogonalisation, so each test costs O(V · rank). The relative
residual norm ‖(1 − QᵀQ) g‖ / ‖g‖ of each decision (its "gap") is recorded, and the final set
is re-verified with a full SVD at every point (full rank at one point, the generic rank).

This module works on the plain invariant dicts of :mod:`minbasis.spec` and is shared by
every invariant family expressed in moment components (ACE, Cartesian, or a mix of both:
:func:`prune_candidates`). The rank with respect to neighbour positions (3N − 3 for N
neighbours) needs the kernels and lives in :func:`minbasis.local_completeness.neighbour_rank`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import MinbasisError
from ..spec import invariant_moments, invariant_monomials

__all__ = ["moment_variables", "max_independent", "invariant_gradients", "functional_prune",
           "candidate_cost", "prune_candidates"]


def moment_variables(invariants: Sequence[dict]) -> list[tuple[int, int, int, int]]:
    """Sorted list of the moment components (z, n, l, μ) the invariants depend on (the V variables).

    Every component of every moment (z, n, l) that appears in an invariant (as a factor or, for
    the general ``monomials`` form, in a monomial) counts, all 2l+1 of them.
    """
    moments = set().union(*(invariant_moments(inv) for inv in invariants)) if len(invariants) else set()
    return [(z, n, l, mu) for (z, n, l) in sorted(moments) for mu in range(2 * l + 1)]


def max_independent(variables: Sequence[tuple[int, int, int, int]]) -> int:
    """Largest possible number of functionally independent O(3) invariants of the variables.

    V − 3 in general (generic orbits of SO(3) are 3-dimensional); V when only scalars (l = 0)
    are present; V − 2 when besides scalars there is exactly one vector moment (l = 1).
    """
    V = len(variables)
    moments = {(z, n, l) for z, n, l, _ in variables}
    n_vec = sum(1 for m in moments if m[2] == 1)
    n_higher = sum(1 for m in moments if m[2] >= 2)
    if n_vec == 0 and n_higher == 0:
        return V
    if n_vec == 1 and n_higher == 0:
        return V - 2
    return V - 3


def _term_arrays(invariants: Sequence[dict], var_index: dict) -> dict[int, tuple[np.ndarray, ...]]:
    """Per number of factors ν of a monomial: (feature index (T,), coefficient (T,), variable indices (T, ν))."""
    per: dict[int, list] = {}
    for f, inv in enumerate(invariants):
        for coef, variables in invariant_monomials(inv):
            rows = per.setdefault(len(variables), [[], [], []])
            rows[0].append(f)
            rows[1].append(coef)
            rows[2].append([var_index[v] for v in variables])
    return {nu: (np.asarray(a, dtype=np.int64), np.asarray(c, dtype=float),
                 np.asarray(v, dtype=np.int64).reshape(len(a), nu)) for nu, (a, c, v) in per.items()}


def invariant_gradients(invariants: Sequence[dict], points: np.ndarray,
                        variables: Sequence[tuple[int, int, int, int]] | None = None) -> np.ndarray:
    """Exact gradients ∂f_k/∂A of the polynomial invariants at given moment values.

    Parameters
    ----------
    invariants : sequence of invariant dicts (see :mod:`minbasis.spec`).
    points : numpy.ndarray, float64, shape (P, V)
        Values of the V moment components (ordered as ``variables``).
    variables : list of (z, n, l, μ), optional
        Defaults to :func:`moment_variables` of the invariants.

    Returns
    -------
    numpy.ndarray, float64, shape (P, K, V).
    """
    variables = moment_variables(invariants) if variables is None else list(variables)
    var_index = {v: i for i, v in enumerate(variables)}
    points = np.atleast_2d(np.asarray(points, dtype=float))
    P, V = points.shape
    if V != len(variables):
        raise MinbasisError(f"points have {V} columns but there are {len(variables)} variables")
    out = np.zeros((P, len(invariants), V))
    for nu, (feat, coef, idx) in _term_arrays(invariants, var_index).items():
        for p in range(P):
            vals = points[p][idx]  # (T, ν)
            for k in range(nu):
                others = np.prod(np.delete(vals, k, axis=1), axis=1) if nu > 1 else np.ones(len(feat))
                np.add.at(out[p], (feat, idx[:, k]), coef * others)
    return out


def functional_prune(invariants: Sequence[dict], *, n_points: int = 3, seed: int = 0,
                     tol: float = 1e-7, order: Sequence[int] | None = None,
                     block: int = 256) -> tuple[list[int], dict]:
    """Greedy functionally independent subset of ``invariants`` (docs/theory/completeness.md).

    Parameters
    ----------
    invariants : sequence of invariant dicts.
    n_points : int
        Number K ≥ 3 of random points (moment values drawn from N(0, 1), seeded).
    seed : int
        Seed of the random points.
    tol : float
        A candidate is accepted when its relative residual exceeds ``tol`` at some point.
    order : sequence of int, optional
        Candidate order (indices into ``invariants``); default is the given order.
    block : int
        Candidates projected together (BLAS-3) before the sequential within-block tests.

    Returns
    -------
    kept : list of int
        Indices of the accepted invariants, in acceptance order.
    record : dict
        ``n_variables`` V, ``max_rank``, ``rank``, ``n_candidates``, ``decisions`` (per
        candidate: index, accepted, gap = largest relative residual over points, reason),
        ``singular_values`` of the final normalised Jacobian at each point, ``point_ranks``
        (numerical rank at each point), ``verified`` (the largest of them, the generic rank,
        equals the number kept), ``tol``, ``seed``, ``n_points``.

    Raises
    ------
    ValueError
        If ``n_points`` < 3 or the final SVD check fails.
    """
    if n_points < 3:
        raise MinbasisError(f"n_points must be >= 3 (docs/theory/completeness.md), got {n_points}")
    invariants = list(invariants)
    order = list(range(len(invariants))) if order is None else [int(i) for i in order]
    variables = moment_variables(invariants)
    V = len(variables)
    max_rank = max_independent(variables)
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((n_points, V))
    Qs = [np.zeros((0, V)) for _ in range(n_points)]
    kept: list[int] = []
    decisions: list[dict] = []
    for start in range(0, len(order), block):
        chunk = order[start:start + block]
        if len(kept) >= max_rank:
            decisions.extend({"index": i, "accepted": False, "gap": 0.0, "reason": "rank saturated"} for i in chunk)
            continue
        G = invariant_gradients([invariants[i] for i in chunk], points, variables)  # (P, B, V)
        norms = np.linalg.norm(G, axis=2)  # (P, B)
        R = G.copy()
        for p in range(n_points):
            for _ in range(2):
                if len(Qs[p]):
                    R[p] -= (R[p] @ Qs[p].T) @ Qs[p]
        new_rows: list[list[np.ndarray]] = [[] for _ in range(n_points)]
        for b, idx in enumerate(chunk):
            if len(kept) >= max_rank:
                decisions.append({"index": idx, "accepted": False, "gap": 0.0, "reason": "rank saturated"})
                continue
            gaps, resid = [], []
            for p in range(n_points):
                r = R[p, b].copy()
                for _ in range(2):
                    for q in new_rows[p]:
                        r -= (q @ r) * q
                resid.append(r)
                gaps.append(np.linalg.norm(r) / norms[p, b] if norms[p, b] > 0 else 0.0)
            gap = float(max(gaps))
            accepted = gap > tol
            decisions.append({"index": idx, "accepted": bool(accepted), "gap": gap,
                              "reason": "raises rank" if accepted else "dependent on accepted set"})
            if accepted:
                kept.append(idx)
                for p in range(n_points):
                    nr = np.linalg.norm(resid[p])
                    # a row that is dependent at this point only (non-generic point) adds nothing here
                    if nr > tol * norms[p, b]:
                        new_rows[p].append(resid[p] / nr)
        for p in range(n_points):
            if new_rows[p]:
                Qs[p] = np.vstack([Qs[p], np.array(new_rows[p])])
    # final verification with a full SVD of the normalised Jacobian at every point. The rank at a
    # generic point is the maximum over points; a random point can be close to a degenerate
    # configuration for the accepted set, so full rank is required at one point, not at all.
    svals, point_ranks = [], []
    if kept:
        J = invariant_gradients([invariants[i] for i in kept], points, variables)
        for p in range(n_points):
            Jp = J[p] / np.linalg.norm(J[p], axis=1, keepdims=True)
            s = np.linalg.svd(Jp, compute_uv=False)
            svals.append(s.tolist())
            point_ranks.append(int(np.sum(s > tol * s[0])))
    verified = not kept or max(point_ranks) == len(kept)
    if not verified:
        raise MinbasisError(f"functional pruning: full-SVD verification failed (ranks {point_ranks} at the "
                         f"{n_points} points, {len(kept)} accepted); retry with another seed or a larger tol")
    record = {"n_variables": V, "max_rank": max_rank, "rank": len(kept),
              "n_candidates": len(order), "decisions": decisions, "singular_values": svals,
              "point_ranks": point_ranks, "verified": verified, "tol": tol, "seed": seed, "n_points": n_points}
    return kept, record


def candidate_cost(inv: dict) -> tuple[int, int, int]:
    """Cost of a candidate invariant (docs/theory/completeness.md): (number of factors ν, Σ l, Σ n) of its factors.

    The same key for ACE and Cartesian invariants, so a mixed list is ordered consistently;
    sort with it stably to keep the given order between candidates of equal cost.
    """
    fs = inv["factors"]
    return (int(inv["order"]), sum(int(f[2]) for f in fs), sum(int(f[1]) for f in fs))


def prune_candidates(invariants: Sequence[dict], *, order: str | Sequence[int] | None = "cost", n_points: int = 3,
                     seed: int = 0, tol: float = 1e-7, block: int = 256) -> tuple[list[dict], dict]:
    """Functionally independent subset of any list of candidate invariants (ACE, Cartesian or mixed).

    One pruning engine for every family (docs/theory/completeness.md): each candidate is a polynomial in the
    moment components, so the Jacobian-rank test of :func:`functional_prune` applies unchanged.

    Parameters
    ----------
    invariants : sequence of invariant dicts (:mod:`minbasis.spec`), of any families.
    order : "cost", "given" / None, or sequence of int
        Candidate order: by :func:`candidate_cost` (stable: ties keep the given order), as
        given, or an explicit permutation (indices into ``invariants``; may be a subset).
    n_points, seed, tol, block
        As in :func:`functional_prune`.

    Returns
    -------
    kept : list of dict
        The accepted invariants, in candidate order.
    record : dict
        The record of :func:`functional_prune` plus ``kept`` (indices into ``invariants``, in
        acceptance order) and ``order`` (the candidate order used).

    Raises
    ------
    MinbasisError
        Unknown ``order`` keyword, an index out of range or repeated, or the failures of
        :func:`functional_prune`.
    """
    invariants = list(invariants)
    if order is None or (isinstance(order, str) and order == "given"):
        idx = list(range(len(invariants)))
    elif isinstance(order, str):
        if order != "cost":
            raise MinbasisError(f"order must be 'cost', 'given' or a list of indices, got {order!r}")
        idx = sorted(range(len(invariants)), key=lambda i: candidate_cost(invariants[i]))
    else:
        idx = [int(i) for i in order]
        bad = [i for i in idx if not 0 <= i < len(invariants)]
        if bad or len(set(idx)) != len(idx):
            raise MinbasisError(f"order must list distinct indices in 0..{len(invariants) - 1}"
                                + (f"; out of range: {bad[:5]}" if bad else "; some are repeated"))
    kept, record = functional_prune(invariants, n_points=n_points, seed=seed, tol=tol, order=idx, block=block)
    record = dict(record, kept=list(kept), order=idx)
    return [invariants[i] for i in kept], record
