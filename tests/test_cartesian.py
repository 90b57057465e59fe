"""Cartesian tensor invariants (docs/theory/cartesian.md, completeness.md): the exact STF ↔ Y map, contraction-graph
enumeration, the HIP-HOP-NN counts, one pruning engine for ACE and Cartesian candidates, rank with
respect to neighbour positions, and the kernels (invariance, gradients, agreement with explicit
tensor contractions, and the same function space as ACE)."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation
from scipy.special import eval_legendre

import minbasis as mb
from minbasis.errors import MinbasisError
from minbasis.invariants import (
    HIPHOP_EINSUMS,
    ContractionGraph,
    cartesian_to_spherical,
    enumerate_ace,
    enumerate_cartesian,
    functional_prune,
    graph_invariant,
    hiphop_invariants,
    max_independent,
    moment_variables,
    prune_candidates,
)
from minbasis.local_completeness import neighbour_rank
from minbasis.local_completeness import rank_bound as max_neighbour_rank
from minbasis.invariants.cartesian import cartesian_to_spherical_exact
from minbasis.kernels.primitives import radial_values
from _helpers import strained

# docs/theory/cartesian.md: number of HIP-HOP-NN invariants for one radial channel
HIPHOP_COUNTS = {(1, 0): 1, (1, 1): 1, (1, 2): 1, (1, 3): 1,
                 (2, 0): 1, (2, 1): 2, (2, 2): 3, (2, 3): 4,
                 (3, 0): 1, (3, 1): 2, (3, 2): 5, (3, 3): 7,
                 (4, 0): 1, (4, 1): 2, (4, 2): 6, (4, 3): 13}


# ---------------------------------------------------------------------------------------------
# helpers (the patterns of test_kernels.py, repeated here so the two files stay independent)
# ---------------------------------------------------------------------------------------------
def assert_features_equal(X, Xref, rtol=1e-10, what=""):
    """|X − Xref| ≤ rtol · (largest |Xref| of that feature over atoms), feature by feature."""
    assert X.shape == Xref.shape, what
    scale = np.maximum(np.abs(Xref).max(axis=0), 1e-12 * np.abs(Xref).max())
    err = np.abs(X - Xref) / scale[None, :]
    assert err.max() <= rtol, f"{what}: max relative deviation {err.max():.3e}"


def _dense_position_jacobian(desc, n_atoms):
    """(N_i, N_k, 3, F) from the sparse [i, k] gradient rows of describe."""
    J = np.zeros((n_atoms, n_atoms, 3, desc.position_gradients.shape[2]))
    s = desc.gradient_samples
    J[s[:, 0], s[:, 1]] = desc.position_gradients
    return J


def _explicit_images(atoms, r_cut):
    """Non-periodic copy of a fully periodic ``atoms`` surrounded by enough lattice translates
    that the first len(atoms) atoms have all their neighbours explicitly."""
    cell = atoms.cell.array
    heights = atoms.get_volume() / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reps = [int(np.ceil(r_cut / h)) + 2 for h in heights]
    shifts = [(0, 0, 0)] + [s for s in itertools.product(*(range(-n, n + 1) for n in reps)) if s != (0, 0, 0)]
    pos = np.concatenate([atoms.positions + np.array(s) @ cell for s in shifts])
    return Atoms(atoms.get_chemical_symbols() * len(shifts), positions=pos)


# explicit Cartesian tensors, independent of the Y map
def stf_explicit(n: np.ndarray, l: int) -> np.ndarray:
    """STF part of n^{⊗l} for a unit vector n, l ≤ 3, from the textbook formulas."""
    d = np.eye(3)
    if l == 0:
        return np.array(1.0)
    if l == 1:
        return n.copy()
    if l == 2:
        return np.outer(n, n) - d / 3
    if l == 3:
        return (np.einsum("i,j,k->ijk", n, n, n)
                - (np.einsum("ij,k->ijk", d, n) + np.einsum("ik,j->ijk", d, n) + np.einsum("jk,i->ijk", d, n)) / 5)
    raise ValueError(l)


def plain_explicit(n: np.ndarray, l: int) -> np.ndarray:
    out = np.array(1.0)
    for _ in range(l):
        out = np.multiply.outer(out, n)
    return out


def explicit_features(atoms: Atoms, basis: mb.Basis) -> np.ndarray:
    """Features of a non-periodic structure by direct np.einsum of explicit moment tensors
    M_{z,n,l} = Σ_j R_n(r_ij) T_l(r̂_ij) (no spherical harmonics involved)."""
    spec = basis.spec
    n_r, scale, rc, l_max = spec.n_radial, spec.radial["scale"], spec.r_cut, spec.l_max
    tensor = stf_explicit if spec.hyper["symmetric"] == "stf" else plain_explicit
    ch = [spec.species.index(s) for s in atoms.get_chemical_symbols()]
    X = np.zeros((len(atoms), spec.n_features))
    for i in range(len(atoms)):
        M = {}
        for j in range(len(atoms)):
            v = atoms.positions[j] - atoms.positions[i]
            r = np.linalg.norm(v)
            if j == i or r >= rc:
                continue
            R = radial_values(np.array([r]), rc, scale, n_r)[0][0]
            for n in range(n_r):
                for l in range(l_max + 1):
                    key = (ch[j], n, l)
                    M[key] = M.get(key, 0.0) + R[n] * tensor(v / r, l)
        for f, inv in enumerate(spec.invariants):
            tensors = [M.get(tuple(fac), np.zeros((3,) * fac[2])) for fac in inv["factors"]]
            X[i, f] = np.einsum(inv["einsum"], *tensors)
    return X


def random_cluster(rng, n_atoms: int, symbols: list[str], box: float = 4.5) -> Atoms:
    while True:
        pos = rng.uniform(0, box, size=(n_atoms, 3))
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(n_atoms)
        if d.min() > 0.7:
            return Atoms(list(rng.choice(symbols, size=n_atoms)), positions=pos)


# ---------------------------------------------------------------------------------------------
# bases (small, built once)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cart_hco():
    """Three species, STF, up to 3 factors, ranks ≤ 3 (ν = 2) and ≤ 2 (ν = 3)."""
    return mb.Basis.cartesian(["H", "C", "O"], 4.0, [2, 2, 1], [0, 3, 2], 3)


@pytest.fixture(scope="module")
def cart_cu_plain():
    """One species, plain symmetric tensors (general "monomials" form), 4 factors, ranks ≤ 3."""
    return mb.Basis.cartesian(["Cu"], 4.0, 2, 3, 4, symmetric="plain")


@pytest.fixture(scope="module")
def cart_hco_minimal(cart_hco):
    return cart_hco.minimal()


CASES = [("ethanol", "cart_hco"), ("cu_cell", "cart_cu_plain"), ("hco_cell", "cart_hco_minimal")]


@pytest.fixture(params=CASES, ids=["ethanol-stf", "cu_cell-plain", "hco_cell-stf-minimal"])
def case(request):
    atoms_name, basis_name = request.param
    return request.getfixturevalue(atoms_name), request.getfixturevalue(basis_name)


# ---------------------------------------------------------------------------------------------
# 1. the exact Cartesian ↔ spherical map
# ---------------------------------------------------------------------------------------------
def test_tensor_map_matches_explicit_tensors(real_sph):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(6, 3))
    for v in vecs:
        n = v / np.linalg.norm(v)
        for l in range(4):
            stf = cartesian_to_spherical(l, "stf")
            assert list(stf) == [l]
            T = stf[l] @ real_sph(l, v[None])[0]
            np.testing.assert_allclose(T, stf_explicit(n, l), rtol=0, atol=2e-15)
            plain = cartesian_to_spherical(l, "plain")
            assert sorted(plain) == list(range(l % 2, l + 1, 2))
            P = sum(C @ real_sph(lp, v[None])[0] for lp, C in plain.items())
            np.testing.assert_allclose(P, plain_explicit(n, l), rtol=0, atol=2e-15)


@pytest.mark.parametrize("l", range(7))
def test_stf_map_addition_theorem(l, real_sph):
    """T_l(a)·T_l(b) = l!/(2l−1)!! P_l(a·b), and T_l is symmetric and trace-free (any l)."""
    rng = np.random.default_rng(l)
    a, b = rng.normal(size=(2, 3))
    a /= np.linalg.norm(a)
    b /= np.linalg.norm(b)
    C = cartesian_to_spherical(l, "stf")[l]
    Ta, Tb = C @ real_sph(l, a[None])[0], C @ real_sph(l, b[None])[0]
    expected = math.factorial(l) / math.prod(range(2 * l - 1, 0, -2)) * eval_legendre(l, a @ b)
    assert abs(np.sum(Ta * Tb) - expected) <= 1e-14
    if l >= 2:
        assert np.abs(np.trace(C, axis1=0, axis2=1)).max() <= 1e-15
        np.testing.assert_array_equal(C, np.swapaxes(C, 0, l - 1))


def test_tensor_map_is_exact():
    import sympy as sp

    # T_1 = r̂ with Y_{1,1} = −√(3/4π) x, Y_{1,−1} = −√(3/4π) y (Condon–Shortley phase folded in),
    # Y_{1,0} = √(3/4π) z; μ = m + l
    c1 = cartesian_to_spherical_exact(1, "stf")
    assert c1[(1, 0, 0)] == {(1, 2): -2 * sp.sqrt(sp.pi / 3)}
    assert c1[(0, 1, 0)] == {(1, 0): -2 * sp.sqrt(sp.pi / 3)}
    assert c1[(0, 0, 1)] == {(1, 1): 2 * sp.sqrt(sp.pi / 3)}
    # the trace over two indices of the STF map vanishes exactly: xx + yy + zz components
    for l in (2, 3, 4):
        ex = cartesian_to_spherical_exact(l, "stf")
        for rest in itertools.product(range(3), repeat=l - 2):
            total = {}
            for i in range(3):
                idx = (i, i) + rest
                for key, c in ex[(idx.count(0), idx.count(1), idx.count(2))].items():
                    total[key] = total.get(key, 0) + c
            assert all(sp.simplify(c) == 0 for c in total.values())
    # plain rank 2 = STF_2 + δ/3 · T_0 with T_0 = √(4π) Y_00
    p2 = cartesian_to_spherical_exact(2, "plain")
    assert sp.simplify(p2[(2, 0, 0)][(0, 0)] - 2 * sp.sqrt(sp.pi) / 3) == 0


# ---------------------------------------------------------------------------------------------
# 2. contraction graphs
# ---------------------------------------------------------------------------------------------
def test_graph_from_einsum_and_canonical_names():
    g = ContractionGraph.from_einsum("i,ij,j")
    assert g.ranks == (1, 2, 1) and g.order == 3 and g.is_connected
    names = {ContractionGraph.from_einsum(e).name for e in ("i,ij,j", "j,ij,i", "ij,i,j", "ab,b,a")}
    assert names == {"vvq:i,j,ij@z0n0,z0n0,z0n0"}
    # the two rank-4 tttt graphs of HIP-HOP-NN and their relabellings
    assert (ContractionGraph.from_einsum("ijk,ijl,abk,abl").name
            == ContractionGraph.from_einsum("abl,ijk,abk,ijl").name)
    assert ContractionGraph.from_einsum("ijk,ijl,abk,abl").name != ContractionGraph.from_einsum("ijk,ilm,jln,kmn").name
    # channels distinguish factors
    g2 = ContractionGraph.from_einsum("i,ij,j", channels=[(0, 1), (0, 0), (0, 0)])
    assert g2.name == "vvq:i,j,ij@z0n0,z0n1,z0n0"
    s = ContractionGraph.from_einsum("->")
    assert s.ranks == (0,) and s.einsum == "->" and s.name == "s:->@z0n0"
    assert not ContractionGraph.from_einsum("i,i,j,j").is_connected
    for bad, msg in [("i,i,i", "exactly twice"), ("ii,jj", "trace"), ("i,i->i", "no output"), ("i,j", "exactly twice"),
                     ("i1,i1", "letters")]:
        with pytest.raises(MinbasisError, match=msg):
            ContractionGraph.from_einsum(bad)
    with pytest.raises(MinbasisError, match="degrees"):
        ContractionGraph((2, 1), ((0, 0), (0, 0)), ((0, 1, 1),))


def _raw_graphs(ranks):
    """Every loop-free multigraph with the given degrees, by brute force (independent of the library)."""
    k = len(ranks)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    for mult in itertools.product(range(max(ranks) + 1), repeat=len(pairs)):
        deg = [0] * k
        for (a, b), m in zip(pairs, mult):
            deg[a] += m
            deg[b] += m
        if tuple(deg) == tuple(ranks):
            yield {(a, b): m for (a, b), m in zip(pairs, mult) if m}


def test_enumeration_is_complete_and_free_of_isomorphic_duplicates():
    """For one channel and ranks ≤ 3 no connected graph is linearly dependent on others, so the
    enumeration must list exactly one graph per isomorphism class (checked with networkx)."""
    nx = pytest.importorskip("networkx")
    from networkx.algorithms.isomorphism import categorical_node_match, numerical_edge_match

    invs = enumerate_cartesian(1, 4, 1, 3, use_cache=False)
    by_ranks = {}
    for inv in invs:
        by_ranks.setdefault(tuple(f[2] for f in inv["factors"]), []).append(inv)

    def to_nx(ranks, edges):
        G = nx.Graph()
        G.add_nodes_from((v, {"l": l}) for v, l in enumerate(ranks))
        G.add_edges_from((a, b, {"m": m}) for (a, b), m in edges.items())
        return G

    nm, em = categorical_node_match("l", None), numerical_edge_match("m", 0)
    total = 0
    for k in range(1, 5):
        for ranks in itertools.combinations_with_replacement(range(0 if k == 1 else 1, 4), k):
            if sum(ranks) % 2 or 2 * max(ranks) > sum(ranks):
                continue
            classes = []
            for edges in _raw_graphs(ranks):
                G = to_nx(ranks, edges)
                new = not any(nx.is_isomorphic(G, H, node_match=nm, edge_match=em) for H in classes)
                if nx.is_connected(G) and new:
                    classes.append(G)
            got = [to_nx(ranks, {(a, b): m for a, b, m in inv["graph"]["edges"]}) for inv in by_ranks.get(ranks, [])]
            assert len(got) == len(classes), (ranks, len(got), len(classes))
            for G, H in itertools.combinations(got, 2):
                assert not nx.is_isomorphic(G, H, node_match=nm, edge_match=em)
            total += len(classes)
    assert total == len(invs) == 20


def test_enumeration_matches_ace_counts_with_products():
    """With disconnected graphs, each multiset of moments has as many linearly independent
    Cartesian invariants as ACE (= the character-theory count of test_invariants)."""
    for args in [(1, 4, [1] * 4, [3] * 4), (2, 3, [2, 2, 1], [0, 3, 3])]:
        ace = Counter(tuple(sorted(map(tuple, i["factors"]))) for i in enumerate_ace(*args, use_cache=False))
        for sym in ("stf", "plain"):
            cart = enumerate_cartesian(*args, symmetric=sym, include_products=True, use_cache=False)
            assert Counter(tuple(sorted(map(tuple, i["factors"]))) for i in cart) == ace
            assert any(i["components"] > 1 for i in cart)
        # connected graphs only: fewer, every one of them still in the ACE multisets
        conn = Counter(tuple(sorted(map(tuple, i["factors"])))
                       for i in enumerate_cartesian(*args, use_cache=False))
        assert all(conn[key] <= ace[key] for key in conn) and sum(conn.values()) < sum(ace.values())


def test_linear_identities_are_exact():
    """Two identities the enumeration relies on, verified in exact rational arithmetic (sympy) on
    generic STF tensors: Cayley–Hamilton tr q⁴ = ½ (tr q²)² (so the product graph is dropped), and
    two different connected graphs of q and three identical rank-4 tensors h that are
    proportional, ij,iklm,jkno,lmno = ½ ij,ijkl,kmno,lmno (so only one is kept)."""
    import sympy as sp
    from sympy.polys.domains import QQ
    from sympy.polys.rings import ring

    from minbasis.invariants.cartesian import _solid_harmonics

    def stf_symbolic(l, gens):
        """Generic STF tensor: the coefficients of a generic harmonic polynomial Σ a_μ P_{l,μ}."""
        (x, y, z), P = _solid_harmonics(l)
        polys = [sp.Poly(P[l, mu], x, y, z) for mu in range(2 * l + 1)]
        T = np.empty((3,) * l, dtype=object)
        for idx in itertools.product(range(3), repeat=l):
            a, b, c = idx.count(0), idx.count(1), idx.count(2)
            mult = math.factorial(l) // (math.factorial(a) * math.factorial(b) * math.factorial(c))
            val = gens[0] * 0
            for mu, p in enumerate(polys):
                co = sp.Rational(p.coeff_monomial(x ** a * y ** b * z ** c))
                if co:
                    val += gens[mu] * QQ(int(co.p), int(co.q) * mult)
            T[idx] = val
        return T

    R, *g = ring(",".join([f"q{i}" for i in range(5)] + [f"h{i}" for i in range(9)]), QQ)
    q, h = stf_symbolic(2, g[:5]), stf_symbolic(4, g[5:])
    def contract(spec, *ops):
        out = np.einsum(spec, *ops, optimize=True)
        return out.item() if isinstance(out, np.ndarray) else out

    assert contract("ii", q) == 0 and all(v == 0 for v in np.einsum("iijk", h).ravel())
    assert contract("ij,jk,kl,li", q, q, q, q) * 2 == contract("ij,ij", q, q) ** 2
    a = contract("ij,iklm,jkno,lmno", q, h, h, h)
    b = contract("ij,ijkl,kmno,lmno", q, h, h, h)
    assert a != 0 and 2 * a - b == 0
    # ... and the enumeration keeps one graph for each
    cart = enumerate_cartesian(1, 4, 1, 2, include_products=True, use_cache=False)
    assert [i["einsum"] for i in cart if [f[2] for f in i["factors"]] == [2, 2, 2, 2]] == ["ij,ik,jl,kl"]
    cart4 = enumerate_cartesian(1, 4, 1, 4, use_cache=False)
    assert len([i for i in cart4 if [f[2] for f in i["factors"]] == [2, 4, 4, 4]]) == 1
    # the float polynomials agree: the dropped graph is half the kept one
    kept = [i for i in cart4 if [f[2] for f in i["factors"]] == [2, 4, 4, 4]][0]
    other = graph_invariant(ContractionGraph.from_einsum("ij,iklm,jkno,lmno"))
    assert {ContractionGraph.from_einsum(e).name for e in ("ij,iklm,jkno,lmno", "ij,ijkl,kmno,lmno")} == {
        kept["label"], other["label"]}
    pk = {tuple(m): c for c, m in kept["terms"]}
    po = {tuple(m): c for c, m in other["terms"]}
    ratio = {round(po[k] / pk[k], 12) for k in pk}
    assert set(pk) == set(po) and len(ratio) == 1 and abs(abs(ratio.pop()) - 0.5) < 1e-12


# ---------------------------------------------------------------------------------------------
# 3. HIP-HOP-NN counts and functional independence (docs/theory/cartesian.md, docs/theory/completeness.md)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_factors,l_max", sorted(HIPHOP_COUNTS))
def test_hiphop_counts_and_independence(max_factors, l_max):
    invs = hiphop_invariants(l_max, max_factors)
    assert len(invs) == HIPHOP_COUNTS[max_factors, l_max]
    assert all(inv["order"] <= max_factors and max(f[2] for f in inv["factors"]) <= l_max for inv in invs)
    kept, rec = functional_prune(invs)
    assert len(kept) == len(invs), f"HIP-HOP set ({max_factors}, {l_max}) is not functionally independent"
    assert rec["verified"] is True
    variables = moment_variables(invs)
    if max_factors == 4 and l_max >= 1:  # these cells reach the maximum V − 3 (V − 2 for l ≤ 1)
        assert len(invs) == max_independent(variables)


def test_hiphop_graphs_are_in_the_full_enumeration():
    names = {inv["label"] for inv in enumerate_cartesian(1, 4, 1, 3, use_cache=False)}
    hh = hiphop_invariants(3, 4)
    assert [inv["source"] for inv in hh] == list(HIPHOP_EINSUMS)
    assert {inv["label"] for inv in hh} <= names


def test_full_enumeration_prunes_to_v_minus_3():
    # one channel: 20 connected graphs → 13 = V − 3 (V = 16)
    invs = enumerate_cartesian(1, 4, 1, 3, use_cache=False)
    kept, rec = prune_candidates(invs)
    assert len(invs) == 20 and len(kept) == 13 == rec["max_rank"] and rec["n_variables"] == 16
    # several channels: two radial functions, or two species → V − 3 = 29
    for n_species, n_max in ((1, 2), (2, 1)):
        invs = enumerate_cartesian(n_species, 4, n_max, 3, use_cache=False)
        kept, rec = prune_candidates(invs)
        assert rec["n_variables"] == 32 and len(kept) == 29 == rec["max_rank"], (n_species, n_max, len(kept))
        assert rec["verified"] is True
    # plain tensors reach the same maximum
    kept, rec = prune_candidates(enumerate_cartesian(1, 4, 2, 3, symmetric="plain", use_cache=False))
    assert len(kept) == 29 == rec["max_rank"]
    # special cases of docs/theory/completeness.md: scalars only → V; scalars and one vector → V − 2
    assert len(prune_candidates(enumerate_cartesian(2, 3, 2, 0, use_cache=False))[0]) == 4
    assert len(prune_candidates(enumerate_cartesian(1, 4, 1, 1, use_cache=False))[0]) == 2


def test_minimal_cartesian_basis():
    full = mb.Basis.cartesian(["Cu"], 4.0, 1, 3, 4)
    mini = full.minimal()
    assert full.n_features == 20 and mini.n_features == 13
    assert mini.spec.family == "cartesian" and mini.spec.pruning["verified"] is True
    assert mini.counts_by_order() == {1: 1, 2: 3, 3: 4, 4: 5}
    hh = mb.Basis.cartesian(["Cu"], 4.0, 1, 3, 4, einsums="hiphop")
    assert hh.n_features == 13 and hh.minimal().n_features == 13
    assert "max_factors=4" in repr(full) and "symmetric='stf'" in repr(full)


# ---------------------------------------------------------------------------------------------
# 4. one pruning engine for ACE and Cartesian candidates
# ---------------------------------------------------------------------------------------------
def test_mixed_candidates_and_user_order():
    ace = mb.Basis.ace(["Cu"], 4.0, 1, 3, 4)
    cart = mb.Basis.cartesian(["Cu"], 4.0, 1, 3, 4)
    both = mb.Basis.union(ace, cart)
    assert both.spec.family == "mixed" and both.n_features == ace.n_features + cart.n_features
    assert "2 parts" in repr(both)
    mini = both.minimal(order="cost")
    assert mini.n_features == 13 and mini.spec.pruning["verified"] is True
    invs = list(both.spec.invariants)
    n_ace = ace.n_features
    # the user's order decides which family supplies the 13
    cart_first = list(range(n_ace, len(invs))) + list(range(n_ace))
    kept, rec = prune_candidates(invs, order=cart_first)
    assert len(kept) == 13 and all(k >= n_ace for k in rec["kept"])
    kept, rec = prune_candidates(invs, order="given")
    assert len(kept) == 13 and all(k < n_ace for k in rec["kept"])
    mini_cart_first = both.minimal(order=cart_first)
    assert all(inv["source_family"] == "cartesian" for inv in mini_cart_first.spec.invariants)
    with pytest.raises(MinbasisError, match="order must"):
        prune_candidates(invs, order="fastest")
    with pytest.raises(MinbasisError, match="distinct indices"):
        prune_candidates(invs, order=[0, 0])
    with pytest.raises(MinbasisError, match="different species"):
        mb.Basis.union(ace, mb.Basis.cartesian(["Ni"], 4.0, 1, 3, 4))


def test_from_invariants_and_file_round_trip(tmp_path, cart_cu_plain):
    plain = cart_cu_plain.spec.invariants
    assert any("monomials" in inv for inv in plain) and any("terms" in inv for inv in plain)
    path = tmp_path / "plain.json"
    cart_cu_plain.save(path)
    back = mb.Basis.load(path)
    assert back == cart_cu_plain and json.loads(path.read_text())["format_version"] == 2
    b = mb.Basis.from_invariants(["Cu"], 4.0, hiphop_invariants(3, 4), family="hiphop")
    assert b.n_features == 13 and b.spec.radial["n_max"] == 1
    with pytest.raises(MinbasisError, match="channel z = 1"):
        mb.Basis.from_invariants(["Cu"], 4.0, hiphop_invariants(3, 2, channels=[(1, 0)]))
    with pytest.raises(MinbasisError, match="at least one"):
        mb.Basis.from_invariants(["Cu"], 4.0, [])
    # a version-1 file (ACE, no monomials) is still read
    ace = mb.Basis.ace(["Cu"], 4.0, 1, 2, 2)
    d = ace.spec.to_dict()
    d["format_version"] = 1
    (tmp_path / "v1.json").write_text(json.dumps(d))
    assert mb.Basis.load(tmp_path / "v1.json") == ace


# ---------------------------------------------------------------------------------------------
# 5. rank with respect to neighbour positions (docs/theory/completeness.md)
# ---------------------------------------------------------------------------------------------
def test_neighbour_rank_of_the_13_hiphop_invariants():
    basis = mb.Basis.cartesian(["Cu"], 4.0, 1, 3, 4, einsums="hiphop")
    assert basis.n_features == 13
    for N in range(1, 9):
        rank, info = neighbour_rank(basis, N, return_details=True)
        expected = 1 if N == 1 else min(13, 3 * N - 3)
        assert rank == expected == info["max_rank"] == max_neighbour_rank(13, N), (N, info["singular_values"])
    # bare invariant dicts are wrapped in a one-species basis
    assert neighbour_rank(hiphop_invariants(2, 3), 3) == min(5, 6)
    with pytest.raises(MinbasisError, match="n_neighbours"):
        neighbour_rank(basis, 0)


# ---------------------------------------------------------------------------------------------
# 6. kernels: agreement with explicit tensor contractions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("symmetric", ["stf", "plain"])
def test_features_equal_explicit_tensor_contractions(symmetric):
    rng = np.random.default_rng(3)
    basis = mb.Basis.cartesian(["H", "O"], 4.0, [2, 2, 2, 1], [0, 3, 3, 3], 4, symmetric=symmetric,
                               include_products=True)
    atoms = random_cluster(rng, 7, ["H", "O"])
    X = mb.describe(atoms, basis)
    ref = explicit_features(atoms, basis)
    assert_features_equal(X, ref, rtol=1e-11, what=symmetric)
    assert np.abs(ref).max() > 0.1


def test_five_factor_invariants_evaluate():
    """Five-factor graphs need a wider term table than ACE (ν ≤ 4)."""
    basis = mb.Basis.cartesian(["Cu"], 4.0, 1, 2, 5)
    assert 5 in basis.counts_by_order()
    assert basis.plan.t_idx.shape[1] == 5
    atoms = random_cluster(np.random.default_rng(5), 6, ["Cu"])
    assert_features_equal(mb.describe(atoms, basis), explicit_features(atoms, basis), rtol=1e-11)


# ---------------------------------------------------------------------------------------------
# 7. invariance and gradients of describe (patterns of test_kernels)
# ---------------------------------------------------------------------------------------------
def test_invariance_rotation_reflection_translation_permutation(case):
    atoms, basis = case
    X = mb.describe(atoms, basis)
    assert X.shape == (len(atoms), basis.n_features) and np.abs(X).max() > 0.1
    R = Rotation.random(random_state=7).as_matrix()
    n = np.random.default_rng(2).normal(size=3)
    n /= np.linalg.norm(n)
    for name, M in (("rotation", R), ("mirror", np.eye(3) - 2 * np.outer(n, n)), ("rotoinversion", -R)):
        b = atoms.copy()
        b.positions = atoms.positions @ M.T
        if atoms.pbc.any():
            b.set_cell(atoms.cell.array @ M.T, scale_atoms=False)
        assert_features_equal(mb.describe(b, basis), X, what=name)
    b = atoms.copy()
    b.positions += np.array([0.37, -1.21, 2.9])
    assert_features_equal(mb.describe(b, basis), X, what="translation")
    perm = np.random.default_rng(1).permutation(len(atoms))
    assert_features_equal(mb.describe(atoms[perm], basis), X[perm], what="permutation")
    b = atoms.copy()
    b.positions[0] += [0.05, 0.0, 0.0]
    assert np.abs(mb.describe(b, basis) - X).max() > 1e-4  # control: not vacuous


@pytest.mark.parametrize("name,basis_name", [("cu_cell", "cart_cu_plain"), ("hco_cell", "cart_hco")])
def test_invariance_periodic_images(name, basis_name, request):
    atoms = request.getfixturevalue(name)
    basis = request.getfixturevalue(basis_name)
    X = mb.describe(atoms, basis)
    C = atoms.cell.array
    b = atoms.copy()
    b.positions[1] += 2 * C[0] - C[1] + 3 * C[2]
    assert_features_equal(mb.describe(b, basis), X, what="atom shifted by a lattice vector")
    b = atoms.copy()
    b.set_cell(np.array([C[0], C[1] + C[0], C[2] - C[1] + 2 * C[0]]), scale_atoms=False)
    assert_features_equal(mb.describe(b, basis), X, what="unimodular cell change")
    assert_features_equal(mb.describe(atoms.repeat((1, 2, 1)), basis), np.tile(X, (2, 1)), what="supercell")
    cluster = _explicit_images(atoms, basis.r_cut)
    assert_features_equal(mb.describe(cluster, basis)[:len(atoms)], X, what="explicit images")


def test_position_and_strain_gradients_finite_differences(case):
    atoms, basis = case
    N = len(atoms)
    desc = mb.describe(atoms, basis, gradients=True, strain_gradients=True)
    J = _dense_position_jacobian(desc, N)
    h = 1e-5
    fd = np.zeros_like(J)
    for k in range(N):
        for a in range(3):
            b = atoms.copy()
            b.positions[k, a] += h
            Xp = mb.describe(b, basis)
            b.positions[k, a] -= 2 * h
            fd[:, k, a, :] = (Xp - mb.describe(b, basis)) / (2 * h)
    scale = np.abs(J).max()
    assert scale > 1e-2 and np.abs(J - fd).max() <= 1e-6 * scale
    assert np.abs(J.sum(axis=1)).max() <= 1e-10 * scale  # translation invariance
    S = desc.strain_gradients
    fdS = np.zeros_like(S)
    for a in range(3):
        for c in range(3):
            e = np.zeros((3, 3))
            e[a, c] = h
            Xp, Xm = mb.describe(strained(atoms, e), basis), mb.describe(strained(atoms, -e), basis)
            fdS[:, a, c] = (Xp - Xm) / (2 * h)
    s_scale = np.abs(S).max()
    assert np.abs(S - fdS).max() <= 1e-6 * s_scale
    assert np.abs(S - S.transpose(0, 2, 1, 3)).max() <= 1e-10 * s_scale


def test_linear_model_forces_and_stress_on_cartesian_basis(cu_cell, cart_cu_plain):
    from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

    from minbasis.fit import LinearModel

    rng = np.random.default_rng(0)
    model = LinearModel(cart_cu_plain, rng.normal(size=(1, cart_cu_plain.n_features)), np.array([-1.0]))
    pred = model.predict(cu_cell)
    cu_cell.calc = model.calculator()
    F = pred.forces[0]
    assert np.abs(calculate_numerical_forces(cu_cell, eps=1e-5) - F).max() <= 1e-6 * np.abs(F).max()
    num = calculate_numerical_stress(cu_cell, eps=1e-5, voigt=True)
    assert np.abs(num - pred.stress[0]).max() <= 1e-6 * np.abs(pred.stress[0]).max()


# ---------------------------------------------------------------------------------------------
# 8. ACE and Cartesian invariants of the same degree span the same function space
# ---------------------------------------------------------------------------------------------
def _lstsq_residual(source: np.ndarray, target: np.ndarray) -> float:
    """Largest relative residual over target columns of the least-squares map source → target."""
    s = source / np.linalg.norm(source, axis=0)
    t = target / np.linalg.norm(target, axis=0)
    W, *_ = np.linalg.lstsq(s, t, rcond=None)
    return float(np.linalg.norm(s @ W - t, axis=0).max())


@pytest.mark.parametrize("symmetric", ["stf", "plain"])
def test_ace_and_cartesian_span_the_same_space(symmetric):
    rng = np.random.default_rng(11)
    envs = [random_cluster(rng, 10, ["H", "O"], box=4.0) for _ in range(40)]
    ace = mb.Basis.ace(["H", "O"], 4.0, [2, 2, 1], [0, 3, 2], 3)
    cart = mb.Basis.cartesian(["H", "O"], 4.0, [2, 2, 1], [0, 3, 2], 3, symmetric=symmetric, include_products=True)
    conn = mb.Basis.cartesian(["H", "O"], 4.0, [2, 2, 1], [0, 3, 2], 3, symmetric=symmetric)
    assert ace.n_features == cart.n_features > conn.n_features
    Xa, Xc, Xn = (mb.describe(envs, b) for b in (ace, cart, conn))
    assert Xa.shape[0] > 3 * Xa.shape[1]
    assert np.linalg.matrix_rank(Xa / np.linalg.norm(Xa, axis=0)) == ace.n_features  # no accidental degeneracy
    assert _lstsq_residual(Xa, Xc) <= 1e-8  # Cartesian ⊂ span(ACE)
    assert _lstsq_residual(Xc, Xa) <= 1e-8  # ACE ⊂ span(Cartesian with products)
    assert _lstsq_residual(Xa, Xn) <= 1e-8  # connected graphs too
    # control: degree-4 Cartesian invariants are not in the span of degree ≤ 3 ACE invariants
    deg4 = mb.Basis.cartesian(["H", "O"], 4.0, 1, 2, 4, symmetric=symmetric)
    X4 = mb.describe(envs, deg4)[:, [k for k, inv in enumerate(deg4.spec.invariants) if inv["order"] == 4]]
    assert _lstsq_residual(Xa, X4) > 1e-3


# ---------------------------------------------------------------------------------------------
# 9. bad input
# ---------------------------------------------------------------------------------------------
def test_bad_cartesian_input():
    for kwargs, msg in [(dict(max_factors=0), "max_factors"), (dict(max_factors=7), "max_factors"),
                        (dict(max_factors=2.5), "max_factors"), (dict(l_max=-1), "l_max"), (dict(n_max=0), "n_max"),
                        (dict(symmetric="traceless"), "symmetric"), (dict(l_max=[3, 3]), "l_max has 2 entries"),
                        (dict(einsums=["i,i,i"]), "exactly twice"), (dict(r_cut=-1.0), "r_cut"),
                        (dict(species=["Cu", "Xx"]), "unknown chemical")]:
        args = dict(species=["Cu"], r_cut=4.0, n_max=1, l_max=3, max_factors=3)
        args.update(kwargs)
        with pytest.raises(MinbasisError, match=msg):
            mb.Basis.cartesian(**args)
    with pytest.raises(MinbasisError, match="give no Cartesian invariants"):
        mb.Basis.cartesian(["Cu"], 4.0, 1, 0, 3, einsums=["i,i"])
    with pytest.raises(MinbasisError, match="max_factors"):
        hiphop_invariants(3, 0)
    with pytest.raises(MinbasisError, match="l_max"):
        hiphop_invariants(-1, 4)
    with pytest.raises(MinbasisError, match="rank"):
        cartesian_to_spherical(-1)
    with pytest.raises(MinbasisError, match="symmetric"):
        enumerate_cartesian(1, 2, 1, 2, symmetric="sym")


def test_cli_cartesian_basis(tmp_path, capsys):
    from minbasis.cli import main

    out = tmp_path / "c.json"
    code = main(["basis", "--family", "cartesian", "--species", "Cu", "--r-cut", "4", "--n-max", "1", "--l-max", "3",
                 "--max-factors", "4", "--minimal", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "minimal basis: 13 " in text
    b = mb.Basis.load(out)
    assert b.spec.family == "cartesian" and b.n_features == 13
    code = main(["basis", "--family", "cartesian", "--species", "Cu", "--r-cut", "4", "--n-max", "1", "--l-max", "2",
                 "--max-factors", "3", "--symmetric", "plain", "--include-products", "-o", str(out)])
    assert code == 0 and mb.Basis.load(out).spec.hyper["symmetric"] == "plain"
    capsys.readouterr()
    for argv, msg in [(["--family", "cartesian"], "needs --max-factors"),
                      (["--max-factors", "4", "--order", "2", "--family", "cartesian"], "belong to --family ace"),
                      ([], "needs --order"), (["--family", "cartesian", "--max-factors", "0"], "max_factors")]:
        code = main(["basis", "--species", "Cu", "--r-cut", "4", "--n-max", "1", "--l-max", "2", "-o", str(out)] + argv)
        err = capsys.readouterr().err
        assert code == 2 and msg in err and err.count("\n") == 1, (argv, err)
