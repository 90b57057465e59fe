"""Symbolic layer: couplings are O(3) invariants, their number matches character theory, and
functional pruning reaches the known maximal number of independent invariants (docs/theory/ace.md, completeness.md)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from minbasis.invariants import (
    complex_to_real,
    enumerate_ace,
    functional_prune,
    invariant_gradients,
    max_independent,
    moment_variables,
    symmetrised_couplings,
)
from minbasis.invariants.coupling import _group_permutations, clebsch_gordan_table, path_coupling


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def contract(D: np.ndarray, factors: list[np.ndarray]) -> float:
    """B = Σ_μ D[μ_1..μ_ν] Π_k factors[k][μ_k]."""
    out = D
    for a in factors:
        out = np.tensordot(out, a, axes=([0], [0]))
    return float(out)


def contract_scale(D: np.ndarray, factors: list[np.ndarray]) -> float:
    """Σ_μ |D[μ]| Π_k |factors[k][μ_k]|: the size of the terms summed in :func:`contract`."""
    return contract(np.abs(D), [np.abs(a) for a in factors])


def moments_from_points(ls, groups, points, weights, real_sph):
    """One density-like moment per factor: A_g = Σ_j w_{g,j} Y_{l_g}(r̂_j); identical group
    labels share one moment (they are the same (z, n, l) moment)."""
    out = []
    for l, g in zip(ls, groups):
        out.append(weights[g] @ real_sph(l, points))
    return out


# ---------------------------------------------------------------------------------------------
# basic objects
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("l", range(7))
def test_complex_to_real_is_unitary(l):
    U = complex_to_real(l)
    assert U.shape == (2 * l + 1, 2 * l + 1)
    np.testing.assert_allclose(U @ U.conj().T, np.eye(2 * l + 1), atol=1e-14)


@pytest.mark.parametrize("l1,l2", [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3)])
def test_clebsch_gordan_orthogonality(l1, l2):
    # Σ_{m1 m2} <l1 m1 l2 m2|L M><l1 m1 l2 m2|L' M'> = δ_LL' δ_MM'
    blocks = [clebsch_gordan_table(l1, l2, L).reshape(-1, 2 * L + 1) for L in range(abs(l1 - l2), l1 + l2 + 1)]
    C = np.concatenate(blocks, axis=1)
    assert C.shape == ((2 * l1 + 1) * (2 * l2 + 1),) * 2
    np.testing.assert_allclose(C.T @ C, np.eye(C.shape[1]), atol=1e-14)
    with pytest.raises(ValueError):
        clebsch_gordan_table(l1, l2, l1 + l2 + 1)


def test_odd_parity_gives_no_o3_invariant():
    assert symmetrised_couplings((1, 1, 1), (0, 1, 2)) == ()
    assert symmetrised_couplings((1, 2, 2), (0, 1, 1)) == ()
    assert symmetrised_couplings((1, 1, 2, 3), (0, 1, 2, 3)) == ()
    with pytest.raises(ValueError):
        path_coupling((1, 1, 1), (1,))


# ---------------------------------------------------------------------------------------------
# 2. couplings are O(3) invariants
# ---------------------------------------------------------------------------------------------
COUPLING_CASES = [
    ((0,), (0,)),
    ((1, 1), (0, 1)),
    ((2, 2), (0, 0)),
    ((3, 3), (0, 1)),
    ((1, 1, 2), (0, 1, 2)),
    ((1, 1, 2), (0, 0, 1)),
    ((2, 2, 2), (0, 0, 0)),
    ((1, 2, 3), (0, 1, 2)),
    ((2, 3, 3), (0, 1, 1)),
    ((3, 3, 2), (0, 1, 2)),
    ((1, 1, 1, 1), (0, 1, 2, 3)),
    ((1, 1, 1, 1), (0, 0, 0, 0)),
    ((1, 1, 2, 2), (0, 0, 1, 1)),
    ((2, 2, 2, 2), (0, 1, 2, 3)),
    ((2, 2, 2, 2), (0, 0, 1, 1)),
    ((1, 2, 2, 3), (0, 1, 2, 3)),
    ((1, 2, 2, 3), (0, 1, 1, 2)),
    ((3, 3, 3, 3), (0, 0, 1, 1)),
    ((2, 3, 3, 2), (0, 1, 1, 2)),  # identical factors need not be adjacent to non-identical ones
]


@pytest.mark.parametrize("ls,groups", COUPLING_CASES, ids=[f"{ls}-{g}" for ls, g in COUPLING_CASES])
def test_symmetrised_couplings_are_o3_invariant(ls, groups, real_sph):
    Ds = symmetrised_couplings(ls, groups)
    assert len(Ds) >= 1, f"{ls} {groups} must have at least one invariant"
    shape = tuple(2 * l + 1 for l in ls)
    # orthonormal and symmetric under exchange of identical factors
    G = np.array([[np.sum(a * b) for b in Ds] for a in Ds])
    np.testing.assert_allclose(G, np.eye(len(Ds)), atol=1e-12)
    for D in Ds:
        assert D.shape == shape and D.dtype == np.float64
        for perm in _group_permutations(groups):
            np.testing.assert_allclose(np.transpose(D, perm), D, atol=1e-13)

    rng = np.random.default_rng(sum(ls) * 31 + len(ls))
    n_groups = max(groups) + 1
    for trial in range(3):
        pts = rng.normal(size=(6, 3))
        w = rng.normal(size=(n_groups, 6))
        A = moments_from_points(ls, groups, pts, w, real_sph)
        R = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
        nrm = pts[0] / np.linalg.norm(pts[0])
        mirror = np.eye(3) - 2 * np.outer(nrm, nrm)
        transformed = {
            "rotation": pts @ R.T,
            "inversion": -pts,
            "mirror": pts @ mirror.T,
            "rotoreflection": -(pts @ R.T),
        }
        for D in Ds:
            B = contract(D, A)
            scale = contract_scale(D, A)
            # the invariant is not identically zero (otherwise the test below is vacuous)
            assert abs(B) > 1e-6 * scale, f"{ls} {groups}: invariant vanishes at a generic point"
            for name, p in transformed.items():
                Bt = contract(D, moments_from_points(ls, groups, p, w, real_sph))
                assert abs(Bt - B) <= 1e-10 * scale, (name, ls, groups, B, Bt)


def test_non_invariant_tensor_is_detected(real_sph):
    """Control: the invariance check above fails for a non-invariant contraction."""
    rng = np.random.default_rng(0)
    D = rng.normal(size=(3, 3))
    pts = rng.normal(size=(6, 3))
    w = rng.normal(size=(2, 6))
    A = moments_from_points((1, 1), (0, 1), pts, w, real_sph)
    R = Rotation.random(random_state=1).as_matrix()
    At = moments_from_points((1, 1), (0, 1), pts @ R.T, w, real_sph)
    assert abs(contract(D, At) - contract(D, A)) > 1e-3 * contract_scale(D, A)


# ---------------------------------------------------------------------------------------------
# 3. counts against character theory
# ---------------------------------------------------------------------------------------------
_N_GRID = 400
_THETA = (np.arange(_N_GRID) + 0.5) * np.pi / _N_GRID  # midpoint rule on [0, π]: exact for
# even trigonometric polynomials of degree < 2 * _N_GRID, which all integrands below are.


def chi(l: int, theta: np.ndarray) -> np.ndarray:
    """Character of V_l at rotation angle θ: Σ_{m=-l..l} e^{imθ} = sin((2l+1)θ/2) / sin(θ/2)."""
    return 1.0 + 2.0 * sum(np.cos(m * theta) for m in range(1, l + 1))


def chi_sym(l: int, k: int, theta: np.ndarray) -> np.ndarray:
    """Character of Sym^k(V_l) by Newton's identity h_k = (1/k) Σ_j p_j h_{k−j}, p_j = χ_l(jθ)."""
    h = [np.ones_like(theta)]
    for n in range(1, k + 1):
        h.append(sum(chi(l, j * theta) * h[n - j] for j in range(1, n + 1)) / n)
    return h[k]


def character_count(multiset) -> int:
    """Number of O(3) invariants in ⊗_{distinct (z, n, l)} Sym^{k}(V_l), k the multiplicity.

    Inversion acts on V_l by (−1)^l, so there are none when Σ l is odd; otherwise the SO(3)
    count (1/π) ∫_0^π χ(θ) (1 − cos θ) dθ (Weyl's integration formula for class functions)."""
    counts = Counter(tuple(t) for t in multiset)
    if sum(t[2] * k for t, k in counts.items()) % 2:
        return 0
    total = np.ones_like(_THETA)
    for (z, n, l), k in counts.items():
        total = total * chi_sym(l, k, _THETA)
    m = float(np.mean(total * (1.0 - np.cos(_THETA))))
    assert abs(m - round(m)) < 1e-8, f"non-integer multiplicity {m} for {multiset}"
    return int(round(m))


def test_character_formulas():
    theta = np.linspace(0.1, 3.0, 7)
    for l in range(5):
        np.testing.assert_allclose(chi(l, theta), np.sin((2 * l + 1) * theta / 2) / np.sin(theta / 2), rtol=1e-12)
    # known multiplicities (a, b vectors; q a rank-2 tensor; t rank 3)
    a, b, c, d = (0, 0, 1), (0, 1, 1), (0, 2, 1), (0, 3, 1)
    q, q2, t = (0, 0, 2), (0, 1, 2), (0, 0, 3)
    assert character_count([(0, 0, 0)]) == 1
    assert character_count([a]) == 0
    assert character_count([a, a]) == 1
    assert character_count([a, b]) == 1
    assert character_count([a, b, c]) == 0  # (a × b)·c is a pseudo-scalar
    assert character_count([a, b, c, d]) == 3  # (a·b)(c·d), (a·c)(b·d), (a·d)(b·c)
    assert character_count([a, a, a, a]) == 1  # |a|^4
    assert character_count([a, a, b, b]) == 2  # |a|²|b|², (a·b)²
    assert character_count([q, q, q]) == 1  # tr q³
    assert character_count([a, a, q]) == 1  # a·q·a
    assert character_count([q, q2]) == 1
    assert character_count([q, q, q2, q2]) == 3
    assert character_count([a, q, t]) == 1
    assert character_count([t, t, t, t]) == 2  # degree-4 invariants of a binary sextic form
    assert character_count([a, a, a]) == 0


def _all_multisets(n_species, order, n_max, l_max):
    for nu in range(1, order + 1):
        triples = [(z, n, l) for z in range(n_species) for n in range(n_max[nu - 1]) for l in range(l_max[nu - 1] + 1)]
        yield from itertools.combinations_with_replacement(triples, nu)


CHARACTER_SETTINGS = [
    (1, 4, [2, 2, 2, 2], [3, 3, 3, 3]),
    (1, 4, [1, 1, 1, 1], [3, 3, 3, 3]),
    (2, 4, [1, 1, 1, 1], [3, 3, 3, 3]),
    (2, 4, [2, 2, 2, 1], [0, 3, 3, 2]),
    (3, 3, [2, 2, 1], [0, 2, 3]),
]


@pytest.mark.parametrize("n_species,order,n_max,l_max", CHARACTER_SETTINGS)
def test_enumeration_counts_match_character_theory(n_species, order, n_max, l_max):
    invs = enumerate_ace(n_species, order, n_max, l_max, use_cache=False)
    found = Counter(tuple(sorted(tuple(f) for f in inv["factors"])) for inv in invs)
    for inv in invs:
        assert inv["order"] == len(inv["factors"])
    expected = {}
    for ms in _all_multisets(n_species, order, n_max, l_max):
        c = character_count(ms)
        if c:
            expected[tuple(sorted(ms))] = c
    missing = {k: v for k, v in expected.items() if k not in found}
    assert not missing, f"multisets with invariants that enumerate_ace misses: {list(missing.items())[:5]}"
    spurious = {k: v for k, v in found.items() if k not in expected}
    assert not spurious, f"multisets without O(3) invariants that enumerate_ace lists: {list(spurious.items())[:5]}"
    wrong = {k: (found[k], v) for k, v in expected.items() if found[k] != v}
    assert not wrong, f"(found, character count) differ for {list(wrong.items())[:5]}"
    assert sum(found.values()) == sum(expected.values()) == len(invs)


def test_enumerated_invariants_are_rotation_invariant(real_sph):
    """The sparse terms (folded over identical factors) give rotation-invariant polynomials of
    moments built from real Y_lm of random neighbours, for every invariant of a 2-channel ν=4 set."""
    invs = enumerate_ace(2, 4, [2, 1, 1, 1], [0, 3, 2, 2], use_cache=False)
    rng = np.random.default_rng(7)
    pts = rng.normal(size=(8, 3))
    w = rng.normal(size=(2, 2, 8))  # (z, n, neighbour)
    R = Rotation.random(random_state=3).as_matrix()

    def moments(p):
        return {(z, n, l): w[z, n] @ real_sph(l, p) for z in range(2) for n in range(2) for l in range(4)}

    def evaluate(A):
        vals = []
        for inv in invs:
            v = s = 0.0
            for coef, mus in inv["terms"]:
                prod = coef * np.prod([A[tuple(f)][mu] for f, mu in zip(inv["factors"], mus)])
                v += prod
                s += abs(prod)
            vals.append((v, s))
        return np.array(vals)

    B = evaluate(moments(pts))
    for p in (pts @ R.T, -pts, -(pts @ R.T)):
        Bt = evaluate(moments(p))
        assert np.all(np.abs(Bt[:, 0] - B[:, 0]) <= 1e-10 * B[:, 1])
    assert np.all(np.abs(B[:, 0]) > 1e-8 * B[:, 1])


# ---------------------------------------------------------------------------------------------
# 4. functional pruning
# ---------------------------------------------------------------------------------------------
def test_max_independent_rules():
    def var(moments):
        return [(z, n, l, mu) for z, n, l in moments for mu in range(2 * l + 1)]

    assert max_independent(var([(0, 0, 0), (0, 1, 0), (1, 0, 0)])) == 3  # scalars only: V
    assert max_independent(var([(0, 0, 0), (0, 0, 1)])) == 4 - 2  # scalars + one vector
    assert max_independent(var([(0, 0, 0), (1, 0, 0), (1, 2, 1)])) == 5 - 2
    assert max_independent(var([(0, 0, 1), (0, 1, 1)])) == 6 - 3  # |a|², |b|², a·b
    assert max_independent(var([(0, 0, 2)])) == 5 - 3  # tr q², tr q³
    assert max_independent(var([(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)])) == 16 - 3


@pytest.mark.parametrize("l_max,expected,V", [(3, 13, 16), (2, 6, 9), (1, 2, 4), (0, 1, 1)])
def test_minimal_single_channel_counts(l_max, expected, V):
    import minbasis as mb

    basis = mb.Basis.ace(["Cu"], 4.0, 1, l_max, 4)
    mini = basis.minimal()
    rec = mini.spec.pruning
    assert mini.n_features == expected
    assert rec["n_variables"] == V
    assert rec["max_rank"] == expected == max_independent(moment_variables(basis.spec.invariants))
    assert rec["verified"] is True
    assert mini.spec.variant == "minimal"
    # kept invariants are a subset of the full basis, in the full basis' order
    full = list(basis.spec.invariants)
    idx = [full.index(inv) for inv in mini.spec.invariants]
    assert idx == sorted(idx) == rec["kept"]


def test_minimal_scalars_only_and_one_vector():
    import minbasis as mb

    # scalars only: every scalar moment is itself an independent invariant
    mini = mb.Basis.ace(["H", "O"], 4.0, 3, 0, 3).minimal()
    assert mini.spec.pruning["n_variables"] == 6
    assert mini.n_features == 6
    assert all(inv["order"] == 1 for inv in mini.spec.invariants)
    # scalars (n = 0, 1) and exactly one vector (n = 0): V − 2 = 5 − 2
    basis = mb.Basis.ace(["Cu"], 4.0, [2, 1, 1], [0, 1, 1], 3)
    variables = moment_variables(basis.spec.invariants)
    assert len(variables) == 5
    assert max_independent(variables) == 3
    mini = basis.minimal()
    assert mini.n_features == 3
    assert mini.spec.pruning["verified"] is True


def test_minimal_multichannel_reaches_but_never_exceeds_max(hco_basis, hco_minimal):
    variables = moment_variables(hco_basis.spec.invariants)
    bound = max_independent(variables)
    assert len(variables) == 84
    assert hco_minimal.n_features <= bound
    assert hco_minimal.n_features == bound == 81  # degree ≤ 3 invariants already reach V − 3
    assert hco_minimal.spec.pruning["verified"] is True
    assert hco_minimal.spec.pruning["parent_hash"] == hco_basis.spec.hash


def test_minimal_two_channel_order4_bound():
    import minbasis as mb

    basis = mb.Basis.ace(["Cu", "Ni"], 4.0, [2, 1, 1, 1], [0, 2, 2, 1], 4)
    mini = basis.minimal()
    bound = max_independent(moment_variables(basis.spec.invariants))
    assert 0 < mini.n_features <= bound
    assert mini.spec.pruning["verified"] is True


def _independent_check(invariants, kept, seed=12345, n_points=2):
    """Rank and residuals at fresh random points (not the points the pruning used)."""
    variables = moment_variables(invariants)
    pts = np.random.default_rng(seed).standard_normal((n_points, len(variables)))
    J = invariant_gradients(invariants, pts, variables)  # (P, K, V)
    out = []
    for p in range(n_points):
        Jk = J[p, kept]
        Jk = Jk / np.linalg.norm(Jk, axis=1, keepdims=True)
        s = np.linalg.svd(Jk, compute_uv=False)
        Qk, _ = np.linalg.qr(Jk.T)  # orthonormal basis of the accepted rows
        rest = [i for i in range(len(invariants)) if i not in set(kept)]
        Jr = J[p, rest]
        Jr = Jr / np.maximum(np.linalg.norm(Jr, axis=1, keepdims=True), 1e-300)
        resid = np.linalg.norm(Jr - (Jr @ Qk) @ Qk.T, axis=1) if rest else np.zeros(0)
        out.append((s, resid))
    return out


@pytest.mark.parametrize("args", [(1, 4, [1] * 4, [3] * 4), (2, 3, [2, 2, 1], [0, 2, 2])])
def test_pruning_decisions_hold_at_fresh_points(args):
    invs = enumerate_ace(*args, use_cache=False)
    kept, rec = functional_prune(invs)
    assert rec["verified"] is True
    for s, resid in _independent_check(invs, kept):
        assert s[-1] > 1e-6 * s[0], "accepted invariants are not independent at a fresh point"
        assert resid.size == 0 or resid.max() < 1e-9, "a rejected invariant raises the rank at a fresh point"


def test_functional_prune_block_size_and_order():
    """Blocked (BLAS-3) projection gives the same decisions as small blocks; any candidate order
    reaches the same rank (the rank of the whole set), and the default order is the given order."""
    invs = enumerate_ace(2, 3, [2, 2, 1], [0, 2, 2], use_cache=False)
    kept, rec = functional_prune(invs)
    kept_small, rec_small = functional_prune(invs, block=7)
    assert kept_small == kept
    assert [d["accepted"] for d in rec_small["decisions"]] == [d["accepted"] for d in rec["decisions"]]
    rev = list(range(len(invs)))[::-1]
    kept_rev, rec_rev = functional_prune(invs, order=rev)
    assert len(kept_rev) == len(kept)
    # ... which is the rank of the Jacobian of all candidates at a fresh point (here 30 < V − 3 = 33:
    # products of at most three moments, the n = 1 ones only in pairs, do not reach the maximum)
    variables = moment_variables(invs)
    J = invariant_gradients(invs, np.random.default_rng(99).standard_normal((1, len(variables))), variables)[0]
    sv = np.linalg.svd(J / np.linalg.norm(J, axis=1, keepdims=True), compute_uv=False)
    assert int(np.sum(sv > 1e-9 * sv[0])) == len(kept) == 30
    assert rec["max_rank"] == 33
    assert [d["index"] for d in rec_rev["decisions"]] == rev
    assert kept == sorted(kept) and kept[0] == 0


def _product(inv_a: dict, inv_b: dict) -> dict:
    """The invariant inv_a · inv_b as an invariant dict (terms multiplied out)."""
    terms = [[ca * cb, list(ma) + list(mb_)] for ca, ma in inv_a["terms"] for cb, mb_ in inv_b["terms"]]
    return {"order": inv_a["order"] + inv_b["order"], "factors": inv_a["factors"] + inv_b["factors"],
            "terms": terms, "label": f"({inv_a['label']})*({inv_b['label']})"}


def test_functional_prune_rejects_product_of_accepted():
    invs = enumerate_ace(1, 3, [1] * 3, [3] * 3, use_cache=False)
    kept, rec = functional_prune(invs)
    assert rec["max_rank"] == 13 and len(kept) == 8 < rec["max_rank"]  # not saturated
    by_order = {}
    for i in kept:
        by_order.setdefault(invs[i]["order"], []).append(i)
    a, b = by_order[2][0], by_order[2][-1]
    c, d = by_order[1][0], by_order[3][-1]
    candidates = list(invs) + [_product(invs[a], invs[b]), _product(invs[c], invs[d]),
                               _product(_product(invs[a], invs[d]), invs[b])]
    kept2, rec2 = functional_prune(candidates)
    assert kept2 == kept
    assert rec2["verified"] is True
    decisions = {d_["index"]: d_ for d_ in rec2["decisions"]}
    for extra in range(len(invs), len(candidates)):
        dec = decisions[extra]
        assert dec["accepted"] is False
        assert dec["reason"] == "dependent on accepted set"  # tested, not skipped as saturated
        assert dec["gap"] < 1e-10, dec
    accepted_gaps = [decisions[i]["gap"] for i in kept2]
    assert min(accepted_gaps) > 1e-2, accepted_gaps


def test_functional_prune_accepts_new_independent_invariant():
    """Control: an order-4 invariant that raises the rank of the order-≤3 set is accepted."""
    invs3 = enumerate_ace(1, 3, [1] * 3, [3] * 3, use_cache=False)
    invs4 = enumerate_ace(1, 4, [1] * 4, [3] * 4, use_cache=False)
    kept3, _ = functional_prune(invs3)
    kept4, _ = functional_prune(invs4)
    new = [invs4[i] for i in kept4 if invs4[i]["order"] == 4]
    assert len(new) == 13 - len(kept3)
    kept, rec = functional_prune(list(invs3) + new)
    assert len(kept) == 13
    for d in rec["decisions"][len(invs3):]:
        assert d["accepted"] is True and d["gap"] > 1e-3


def test_functional_prune_needs_three_points():
    invs = enumerate_ace(1, 2, [1, 1], [1, 1], use_cache=False)
    with pytest.raises(ValueError):
        functional_prune(invs, n_points=2)


def test_neighbour_rank_of_the_13_invariants():
    """docs/theory/completeness.md: the rank of the 13 one-channel invariants with respect to N neighbour
    positions around a fixed centre is min(13, 3N − 3)."""
    import minbasis as mb
    from ase import Atoms

    mini = mb.Basis.ace(["Cu"], 4.0, 1, 3, 4).minimal()
    assert mini.n_features == 13
    rng = np.random.default_rng(2)
    for N in (2, 3, 4, 5, 6, 8):
        while True:  # neighbours within the cutoff of the centre, not overlapping
            d = rng.normal(size=(N, 3))
            d *= (rng.uniform(1.2, 3.2, size=N) / np.linalg.norm(d, axis=1))[:, None]
            pos = np.vstack([np.zeros(3), d])
            dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(N + 1)
            if dist.min() > 0.8:
                break
        atoms = Atoms(f"Cu{N + 1}", positions=pos)
        desc = mb.describe(atoms, mini, gradients=True)
        J = np.zeros((3 * N, 13))
        for (i, k), g in zip(desc.gradient_samples, desc.position_gradients):
            if i == 0 and k > 0:
                J[3 * (k - 1):3 * k] = g
        J /= np.abs(J).max()
        s = np.linalg.svd(J, compute_uv=False)
        rank = int(np.sum(s > 1e-9 * s[0]))
        assert rank == min(13, 3 * N - 3), (N, s)
