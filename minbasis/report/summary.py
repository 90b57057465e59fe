"""Counts and pruning decisions of a basis: what was enumerated, kept, dropped, and why.

Works on any :class:`~minbasis.Basis` whose invariants are polynomials of moment components
(ACE, Cartesian, mixed): it reads only ``spec.invariants``, ``spec.pruning`` and the pruning
engine of :mod:`minbasis.invariants.pruning` (docs/theory/completeness.md).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import MinbasisError

__all__ = ["resolve_bases", "invariant_label", "basis_summary", "pruning_analysis", "missing_directions",
           "rotation_tangents"]


# ---------------------------------------------------------------------------------------------
# bases
# ---------------------------------------------------------------------------------------------
def _rebuild_parent(spec):
    """The full basis a minimal specification was pruned from, rebuilt from its hyper-parameters."""
    import inspect

    from ..basis import Basis

    ctor = getattr(Basis, str(spec.family), None)
    if ctor is None or spec.family in ("custom", "mixed", "from_invariants", "union"):
        raise MinbasisError(f"this is a minimal basis of family {spec.family!r} whose full basis cannot be rebuilt "
                            f"from the file; pass the full basis (the report prunes it itself)")
    kwargs = {k: v for k, v in spec.hyper.items()}
    params = inspect.signature(ctor).parameters
    if "radial_scale" in params:
        kwargs["radial_scale"] = float(spec.radial.get("scale", 5.0))
    try:
        parent = ctor(list(spec.species), spec.r_cut, **kwargs)
    except (TypeError, MinbasisError) as exc:
        raise MinbasisError(f"cannot rebuild the full {spec.family} basis of this minimal basis ({exc}); pass the "
                            f"full basis instead") from exc
    if parent.spec.hash != spec.pruning.get("parent_hash"):
        raise MinbasisError("the full basis rebuilt from this minimal basis does not match the one it was pruned "
                            "from (built by another minbasis version?); pass the full basis instead")
    return parent


def resolve_bases(basis) -> tuple:
    """(full, minimal) bases for a report.

    Parameters
    ----------
    basis : minbasis.Basis
        A full (linearly independent) basis, which is pruned with :meth:`~minbasis.Basis.minimal`
        (cached on disk), or a minimal one, whose full basis is rebuilt from its
        hyper-parameters and checked against ``spec.pruning["parent_hash"]``.

    Raises
    ------
    MinbasisError
        A minimal basis whose full basis cannot be rebuilt (custom or mixed family, or built by
        another version).
    """
    from ..basis import Basis

    if not isinstance(basis, Basis):
        raise TypeError(f"expected a minbasis.Basis, got {type(basis).__name__}")
    if basis.spec.variant == "minimal":
        if not basis.spec.pruning:
            raise MinbasisError("minimal basis without a pruning record; pass the full basis instead")
        return _rebuild_parent(basis.spec), basis
    return basis, basis.minimal()


def invariant_label(inv: dict, species: Sequence[str]) -> str:
    """Readable name of an invariant: its factors as ``symbol n l`` joined by ``·`` (e.g.
    ``H n0 l1 · C n2 l1``), plus the coupling index or contraction name when there are several.

    Works for any family whose invariants list ``factors`` [[z, n, l], ...]; the stored ``label``
    is used as a suffix when it carries a ``#k`` index (ACE) or an einsum name (Cartesian).
    """
    parts = []
    for f in inv.get("factors", []):
        z, n, l = (int(x) for x in f[:3])
        sym = species[z] if 0 <= z < len(species) else f"z{z}"
        parts.append(f"{sym} n{n} l{l}")
    name = " · ".join(parts) if parts else str(inv.get("label", "?"))
    label = str(inv.get("label", ""))
    if "#" in label:
        k = label.rsplit("#", 1)[1]
        if k != "0":
            name += f" #{k}"
    elif "einsum" in inv:
        name += f" [{inv['einsum']}]"
    return name


def _moments(inv: dict) -> set:
    try:
        from ..spec import invariant_moments
    except ImportError:  # pragma: no cover - older specification module
        return {tuple(int(x) for x in f) for f in inv["factors"]}
    return invariant_moments(inv)


def _species_key(inv: dict, species: Sequence[str]) -> str:
    zs = sorted({int(m[0]) for m in _moments(inv)})
    return "–".join(species[z] if z < len(species) else f"z{z}" for z in zs)


def _l_key(inv: dict) -> int:
    return max((int(m[2]) for m in _moments(inv)), default=0)


def _ace_enumerated(spec) -> dict | None:
    """Products of ν moments (Σ l even) counted once per recursive coupling path, before the
    symmetrisation and linear pruning of docs/theory/ace.md; None when not an ACE basis or too many."""
    if spec.family != "ace":
        return None
    from ..invariants.coupling import coupling_paths

    h = spec.hyper
    try:
        order, n_max, l_max = int(h["order"]), list(h["n_max"]), list(h["l_max"])
    except (KeyError, TypeError, ValueError):
        return None
    td, lw = h.get("total_degree"), float(h.get("l_weight", 1.0))
    S = len(spec.species)
    counts = {}
    for nu in range(1, order + 1):
        triples = sorted(((z, n, l) for z in range(S) for n in range(n_max[nu - 1]) for l in range(l_max[nu - 1] + 1)),
                         key=lambda t: (t[2], t[0], t[1]))
        if math.comb(len(triples) + nu - 1, nu) > 2_000_000:
            return None
        total = 0
        for combo in _combos(triples, nu):
            ls = tuple(t[2] for t in combo)
            if sum(ls) % 2:
                continue
            if td is not None and sum(t[1] + 1 + lw * t[2] for t in combo) > td + 1e-9:
                continue
            total += len(coupling_paths(ls))
        counts[nu] = total
    return counts


def _combos(items, k):
    import itertools

    return itertools.combinations_with_replacement(items, k)


def _table(keys: list, full_keys: list, kept_mask: np.ndarray, name: str, extra: dict | None = None) -> list[dict]:
    rows = []
    for key in keys:
        m = np.array([fk == key for fk in full_keys], dtype=bool)
        row = {name: key, "n_linear": int(m.sum()), "n_minimal": int((m & kept_mask).sum()),
               "n_dropped": int((m & ~kept_mask).sum())}
        if extra is not None:
            row.update(extra.get(key, {}))
        rows.append(row)
    return rows


def basis_summary(full, minimal) -> dict:
    """Counts of the summary table (section 1 of the report).

    Parameters
    ----------
    full, minimal : minbasis.Basis
        From :func:`resolve_bases`.

    Returns
    -------
    dict (JSON key ``summary``; see ``schema.md``): ``n_enumerated`` (ACE only, else None),
    ``n_linear``, ``n_minimal``, ``n_variables`` V, ``max_rank`` (V − 3 in general),
    ``rank`` (generic rank reached), ``rank_deficit``, ``locally_complete_in_moments``,
    ``reduction_factor`` (n_linear / n_minimal), ``by_order``, ``by_l`` (by the largest l of an
    invariant's moments, with ``n_variables`` of that l), ``by_species`` (by the set of neighbour
    species an invariant couples), ``variables_by_species``.
    """
    from ..invariants.pruning import moment_variables

    rec = minimal.spec.pruning
    invs = full.spec.invariants
    species = list(full.spec.species)
    kept = set(int(i) for i in rec["kept"])
    kept_mask = np.array([i in kept for i in range(len(invs))], dtype=bool)
    variables = moment_variables(invs)
    enumerated = _ace_enumerated(full.spec)
    orders = [int(inv["order"]) for inv in invs]
    by_order = _table(sorted(set(orders)), orders, kept_mask, "order",
                      {k: {"n_enumerated": v} for k, v in (enumerated or {}).items()})
    ls = [_l_key(inv) for inv in invs]
    var_l: dict[int, int] = {}
    for _, _, l, _ in variables:
        var_l[l] = var_l.get(l, 0) + 1
    by_l = _table(sorted(set(ls)), ls, kept_mask, "l", {l: {"n_variables": v} for l, v in var_l.items()})
    sp = [_species_key(inv, species) for inv in invs]
    order_sp = sorted(set(sp), key=lambda s: (s.count("–"), [species.index(x) if x in species else 99 for x in s.split("–")]))
    by_species = _table(order_sp, sp, kept_mask, "channel")
    var_sp = {s: sum(1 for z, *_ in variables if species[z] == s) for s in species}
    n_lin, n_min = len(invs), int(minimal.n_features)
    return {
        "family": full.spec.family,
        "n_enumerated": int(sum(enumerated.values())) if enumerated else None,
        "n_linear": n_lin, "n_minimal": n_min, "n_dropped": n_lin - n_min,
        "n_variables": int(rec["n_variables"]), "max_rank": int(rec["max_rank"]), "rank": int(rec["rank"]),
        "rank_deficit": int(rec["max_rank"]) - int(rec["rank"]),
        "locally_complete_in_moments": int(rec["rank"]) == int(rec["max_rank"]),
        "reduction_factor": n_lin / n_min if n_min else None,
        "by_order": by_order, "by_l": by_l, "by_species": by_species,
        "variables_by_species": [{"species": s, "n_variables": int(v)} for s, v in var_sp.items()],
    }


# ---------------------------------------------------------------------------------------------
# pruning decisions
# ---------------------------------------------------------------------------------------------
def _gradients_chunked(invariants, points, variables, chunk=512):
    from ..invariants.pruning import invariant_gradients

    out = np.zeros((points.shape[0], len(invariants), points.shape[1]))
    for s in range(0, len(invariants), chunk):
        out[:, s:s + chunk] = invariant_gradients(invariants[s:s + chunk], points, variables)
    return out


def pruning_analysis(full, minimal, *, n_contributors: int = 5) -> dict:
    """Re-evaluate every recorded pruning decision and explain each dropped invariant.

    At the recorded random points (``numpy.random.default_rng(seed).standard_normal((n_points,
    V))``, as in :func:`~minbasis.invariants.pruning.functional_prune`) the exact gradient rows
    ∂f/∂A of all candidates are computed. For each decision, the relative residual of the
    candidate's row against the span of the rows accepted *before* it is recomputed at every
    point (``gap_recomputed``, the maximum over points; it should equal the recorded ``gap``).
    For each dropped invariant, its row g is expanded by least squares on the accepted rows
    g_i at one point, g ≈ Σ c_i g_i; the main contributors are those with the largest shares
    |c_i| ‖g_i‖ / ‖g‖.

    Parameters
    ----------
    full, minimal : minbasis.Basis
    n_contributors : int
        Contributors listed per dropped invariant.

    Returns
    -------
    dict (JSON key ``pruning``; see ``schema.md``): ``tol``, ``seed``, ``n_points``, ``point``
    (index of the point used for the expansions), ``point_ranks``, ``singular_values``
    (recorded, final minimal Jacobian, per point), ``singular_values_full`` (all candidates at
    ``point``), ``decisions`` (candidate order: ``index``, ``label``, ``order``, ``l``,
    ``accepted``, ``reason``, ``gap``, ``gap_recomputed``, ``rank_after``), ``dropped``
    (``index``, ``label``, ``order``, ``reason``, ``gap``, ``residual`` at ``point``,
    ``n_accepted_before``, ``contributors`` [{``index``, ``label``, ``coefficient``, ``share``}]),
    ``max_gap_mismatch`` (largest |gap_recomputed − gap| / gap over accepted decisions),
    ``n_decisions_disagreeing`` (tested decisions whose recomputed gap falls on the other side
    of ``tol``; 0 when the record is reproduced), and
    ``missing`` (:func:`missing_directions`).

    Raises
    ------
    MinbasisError
        If the record does not match the full basis (different number of variables).
    """
    from ..invariants.pruning import moment_variables

    rec = minimal.spec.pruning
    invs = list(full.spec.invariants)
    species = list(full.spec.species)
    variables = moment_variables(invs)
    V = len(variables)
    if V != int(rec["n_variables"]):
        raise MinbasisError(f"pruning record has {rec['n_variables']} variables but the full basis has {V}")
    P, seed, tol = int(rec["n_points"]), int(rec["seed"]), float(rec["tol"])
    points = np.random.default_rng(seed).standard_normal((P, V))
    decisions = rec["decisions"]
    G = _gradients_chunked(invs, points, variables)  # (P, n, V)
    norms = np.linalg.norm(G, axis=2)
    accepted_seq = [int(d["index"]) for d in decisions if d["accepted"]]
    # orthonormal rows of the accepted set, grown in acceptance order at every point
    Qs, nq = [], []
    for p in range(P):
        rows, counts = [], [0]
        for idx in accepted_seq:
            r = G[p, idx].copy()
            for _ in range(2):
                if rows:
                    Q = np.asarray(rows)
                    r -= Q.T @ (Q @ r)
            nr = np.linalg.norm(r)
            if nr > tol * norms[p, idx]:
                rows.append(r / nr)
            counts.append(len(rows))
        Qs.append(np.asarray(rows).reshape(-1, V))
        nq.append(counts)
    point_ranks = list(rec.get("point_ranks") or [])
    p_star = next((p for p, r in enumerate(point_ranks) if r == int(rec["rank"])), 0)
    # group the decisions by the number of rows accepted before them
    k_before, k = [], 0
    for d in decisions:
        k_before.append(k)
        k += bool(d["accepted"])
    out_dec, dropped = [], []
    gap_recomputed = np.zeros(len(decisions))
    resid_star = np.zeros(len(decisions))
    groups: dict[int, list[int]] = {}
    for j, kb in enumerate(k_before):
        groups.setdefault(kb, []).append(j)
    for kb, js in groups.items():
        idxs = [int(decisions[j]["index"]) for j in js]
        rel = np.zeros((P, len(js)))
        for p in range(P):
            Q = Qs[p][:nq[p][kb]]
            R = G[p, idxs].copy()
            for _ in range(2):
                if len(Q):
                    R -= (R @ Q.T) @ Q
            with np.errstate(invalid="ignore", divide="ignore"):
                rel[p] = np.where(norms[p, idxs] > 0, np.linalg.norm(R, axis=1) / norms[p, idxs], 0.0)
        gap_recomputed[js] = rel.max(axis=0)
        resid_star[js] = rel[p_star]
    # least-squares expansion of each dropped row on the rows accepted before it (at p_star)
    contributors: dict[int, list[dict]] = {}
    for kb, js in groups.items():
        dj = [j for j in js if not decisions[j]["accepted"]]
        if not dj or kb == 0:
            continue
        acc = accepted_seq[:kb]
        A = G[p_star, acc]  # (k, V)
        idxs = [int(decisions[j]["index"]) for j in dj]
        C, *_ = np.linalg.lstsq(A.T, G[p_star, idxs].T, rcond=None)  # (k, m)
        share = np.abs(C) * norms[p_star, acc][:, None] / np.maximum(norms[p_star, idxs][None, :], 1e-300)
        for col, j in enumerate(dj):
            top = [t for t in np.argsort(-share[:, col])[:n_contributors] if share[t, col] > 1e-6]
            contributors[j] = [{"index": int(acc[t]), "label": invariant_label(invs[acc[t]], species),
                                "coefficient": float(C[t, col]), "share": float(share[t, col])} for t in top]
    rank_after = 0
    mismatch = 0.0
    disagree = 0
    for j, d in enumerate(decisions):
        idx = int(d["index"])
        inv = invs[idx]
        rank_after += bool(d["accepted"])
        tested = d.get("reason") != "rank saturated"
        if tested and d["accepted"]:
            mismatch = max(mismatch, abs(gap_recomputed[j] - d["gap"]) / d["gap"])
        if tested and (gap_recomputed[j] > tol) != bool(d["accepted"]):
            disagree += 1
        out_dec.append({"index": idx, "label": invariant_label(inv, species), "order": int(inv["order"]),
                        "l": _l_key(inv), "accepted": bool(d["accepted"]), "reason": str(d["reason"]),
                        "gap": float(d["gap"]), "gap_recomputed": float(gap_recomputed[j]), "rank_after": rank_after})
        if not d["accepted"]:
            dropped.append({"index": idx, "label": invariant_label(inv, species), "order": int(inv["order"]),
                            "reason": str(d["reason"]), "gap": float(d["gap"]) if tested else None,
                            "residual": float(resid_star[j]), "gap_recomputed": float(gap_recomputed[j]),
                            "n_accepted_before": int(k_before[j]), "contributors": contributors.get(j, [])})
    # spectrum of the full candidate Jacobian at p_star (row-normalised): the cliff at the rank
    Jf = G[p_star][norms[p_star] > 0] / norms[p_star][norms[p_star] > 0][:, None]
    s_full = np.linalg.svd(Jf, compute_uv=False) if Jf.size else np.zeros(0)
    kept_sorted = sorted(int(i) for i in rec["kept"])
    return {
        "tol": tol, "seed": seed, "n_points": P, "point": int(p_star), "point_ranks": [int(r) for r in point_ranks],
        "singular_values": [list(map(float, s)) for s in rec.get("singular_values", [])],
        "singular_values_full": s_full.tolist(),
        "decisions": out_dec, "dropped": dropped, "max_gap_mismatch": float(mismatch),
        "n_decisions_disagreeing": int(disagree),
        "missing": missing_directions([invs[i] for i in kept_sorted], points[p_star], variables, species, tol),
    }


# ---------------------------------------------------------------------------------------------
# directions no invariant sees
# ---------------------------------------------------------------------------------------------
def _real_generators(l: int, conj: bool) -> list[np.ndarray]:
    """Real antisymmetric generators of rotations about x, y, z acting on real-Y_l coefficient vectors."""
    from ..invariants.coupling import complex_to_real

    m = np.arange(-l, l + 1)
    Lz = np.diag(m).astype(complex)
    Lp = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    for k in range(2 * l):
        mm = m[k]
        Lp[k + 1, k] = np.sqrt(l * (l + 1) - mm * (mm + 1))
    Lm = Lp.conj().T
    Lx, Ly = (Lp + Lm) / 2, (Lp - Lm) / 2j
    U = complex_to_real(l)
    if conj:
        U = U.conj()
    return [np.real(U @ (-1j * L) @ U.conj().T) for L in (Lx, Ly, Lz)]


def rotation_tangents(variables: Sequence[tuple[int, int, int, int]], point: np.ndarray, conj: bool = False) -> np.ndarray:
    """Tangent vectors (V, 3) of the rotation orbit through a point of moment space.

    Each moment block (z, n, l) of real spherical-harmonic components transforms under the
    rotation group by the real Wigner matrices; the three generators (about x, y, z) applied to
    the point give the directions along which every invariant is constant (orthogonal to every
    invariant's gradient). ``conj`` selects the other phase convention (used as a fallback).
    """
    variables = list(variables)
    T = np.zeros((len(variables), 3))
    blocks: dict[tuple, list[int]] = {}
    for i, (z, n, l, mu) in enumerate(variables):
        blocks.setdefault((z, n, l), []).append(i)
    for (z, n, l), idx in blocks.items():
        if l == 0:
            continue
        x = point[idx]
        for a, Ga in enumerate(_real_generators(l, conj)):
            T[idx, a] = Ga @ x
    return T


def missing_directions(kept: Sequence[dict], point: np.ndarray, variables, species: Sequence[str], tol: float) -> dict:
    """Where the directions of moment space that no kept invariant sees lie.

    The null space of the (row-normalised) Jacobian ∂f/∂A of the kept invariants at ``point``
    contains the 3 rotation directions (:func:`rotation_tangents`, verified to be orthogonal to
    every gradient) and, when the basis is not locally complete, ``max_rank − rank`` more. The
    latter are located by their squared weight on the moments of each l and each species.

    Returns
    -------
    dict (JSON ``pruning.missing``): ``n_null``, ``n_rotations`` (rotation directions found in
    the null space, normally 3), ``rotations_verified`` (bool), ``n_missing``, ``by_l``
    [{``l``, ``weight``}], ``by_species`` [{``species``, ``weight``}], ``top_moments`` (the five
    moments with the largest weight: ``moment`` "symbol n l", ``weight``). Weights sum to 1.
    """
    variables = list(variables)
    V = len(variables)
    if not kept:
        return {"n_null": V, "n_rotations": 0, "rotations_verified": False, "n_missing": V, "by_l": [], "by_species": [],
                "top_moments": []}
    from ..invariants.pruning import invariant_gradients

    J = invariant_gradients(list(kept), point[None, :], variables)[0]
    J = J / np.maximum(np.linalg.norm(J, axis=1, keepdims=True), 1e-300)
    _, s, Vt = np.linalg.svd(J, full_matrices=True)
    r = int(np.sum(s > tol * s[0])) if s.size else 0
    N = Vt[r:].T  # (V, V - r)
    T, verified = None, False
    for conj in (False, True):
        Tc = rotation_tangents(variables, point, conj)
        nt = np.linalg.norm(Tc, axis=0)
        if np.all(nt == 0):
            break
        Tn = Tc[:, nt > 0] / nt[nt > 0]
        if np.linalg.norm(J @ Tn) <= 1e-8 * np.sqrt(Tn.shape[1] * J.shape[0]):
            T, verified = Tn, True
            break
    n_rot = 0
    M = N
    if T is not None and N.shape[1]:
        Ut, st, _ = np.linalg.svd(T, full_matrices=False)
        Ut = Ut[:, st > 1e-8 * st[0]]
        n_rot = Ut.shape[1]
        M = N - Ut @ (Ut.T @ N)
        u, sm, _ = np.linalg.svd(M, full_matrices=False)
        M = u[:, sm > 0.5]
    m = M.shape[1]
    w = (M ** 2).sum(axis=1) / max(m, 1)
    by_l, by_sp, by_mom = {}, {}, {}
    for i, (z, n, l, mu) in enumerate(variables):
        by_l[l] = by_l.get(l, 0.0) + w[i]
        s_ = species[z] if z < len(species) else f"z{z}"
        by_sp[s_] = by_sp.get(s_, 0.0) + w[i]
        key = f"{s_} n{n} l{l}"
        by_mom[key] = by_mom.get(key, 0.0) + w[i]
    top = sorted(by_mom.items(), key=lambda kv: -kv[1])[:5]
    return {"n_null": int(N.shape[1]), "n_rotations": int(n_rot), "rotations_verified": bool(verified),
            "n_missing": int(m),
            "by_l": [{"l": int(l), "weight": float(v)} for l, v in sorted(by_l.items())] if m else [],
            "by_species": [{"species": k, "weight": float(v)} for k, v in by_sp.items()] if m else [],
            "top_moments": [{"moment": k, "weight": float(v)} for k, v in top] if m else []}
