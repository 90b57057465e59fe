"""Numba kernels: primitives against scipy and finite differences, invariance of ``describe``,
position/strain gradients and the forces and stress of linear models (docs/theory/bases.md, docs/theory/conventions.md)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import chebyshev
from scipy.spatial.transform import Rotation

import minbasis as mb
from minbasis.fit import LinearModel
from minbasis.kernels.primitives import harmonics_values, radial_values
from _helpers import strained

# structure fixture, basis fixture; the three cases of the acceptance criteria: a molecule,
# a triclinic periodic cell (single species) and a triclinic multi-species periodic cell
CASES = [("ethanol", "hco_basis"), ("cu_cell", "cu_basis"), ("hco_cell", "hco_minimal")]
CASE_IDS = ["ethanol", "cu_cell", "hco_cell"]


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    atoms_name, basis_name = request.param
    return request.getfixturevalue(atoms_name), request.getfixturevalue(basis_name)


def _feat(atoms, basis):
    return mb.describe(atoms, basis)


def assert_features_equal(X, Xref, rtol=1e-10, what=""):
    """|X − Xref| ≤ rtol · (largest |Xref| of that feature over atoms), feature by feature."""
    assert X.shape == Xref.shape, what
    scale = np.maximum(np.abs(Xref).max(axis=0), 1e-12 * np.abs(Xref).max())
    err = np.abs(X - Xref) / scale[None, :]
    assert err.max() <= rtol, f"{what}: max relative deviation {err.max():.3e}"


# ---------------------------------------------------------------------------------------------
# 1. primitives
# ---------------------------------------------------------------------------------------------
def _sph(vec, l_max):
    """Y (nlm,) and dY (nlm, 3) of one vector."""
    Y, dY = harmonics_values(np.asarray(vec, dtype=float)[None, :], l_max)
    return Y[0], dY[0].T.copy()


def _directions():
    rng = np.random.default_rng(42)
    vecs = rng.normal(size=(25, 3)) * rng.uniform(0.5, 4.0, size=(25, 1))
    special = np.array([[0, 0, 1.3], [0, 0, -0.7], [2.0, 0, 0], [0, -1.1, 0], [1e-4, 2e-4, 1.5],
                        [1.0, 1.0, 1.0], [-0.3, 0.2, -2.2]])
    return np.vstack([vecs, special])


def test_spherical_harmonics_match_scipy(real_sph):
    l_max = 6
    vecs = _directions()
    for v in vecs:
        Y, _ = _sph(v, l_max)
        for l in range(l_max + 1):
            ref = real_sph(l, v[None, :])[0]
            np.testing.assert_allclose(Y[l * l:(l + 1) ** 2], ref, rtol=0, atol=1e-12, err_msg=f"l={l}, r={v}")


def test_spherical_harmonics_orthonormal():
    # Lebedev-free check: Gauss–Legendre in cos θ × uniform φ integrates Y_lm Y_l'm' exactly
    l_max = 4
    x, wx = np.polynomial.legendre.leggauss(12)
    phi = np.arange(16) * 2 * np.pi / 16
    rows, weights = [], []
    for ct, w in zip(x, wx):
        st = np.sqrt(1 - ct * ct)
        for p in phi:
            rows.append(_sph(np.array([st * np.cos(p), st * np.sin(p), ct]), l_max)[0])
            weights.append(w * 2 * np.pi / 16)
    Ys = np.array(rows)
    G = Ys.T @ (np.array(weights)[:, None] * Ys)
    np.testing.assert_allclose(G, np.eye((l_max + 1) ** 2), atol=1e-12)


def test_batched_primitives_equal_one_by_one():
    """A batch of pairs gives, pair by pair, what each pair gives alone (no cross-talk between
    the vectorised lanes), with and without gradients."""
    vecs = _directions()
    Y, dY = harmonics_values(vecs, 6)
    Y0, dY0 = harmonics_values(vecs, 6, gradients=False)
    np.testing.assert_array_equal(Y0, Y)
    assert not dY0.any()
    for k, v in enumerate(vecs):
        y, dy = _sph(v, 6)
        np.testing.assert_allclose(Y[k], y, rtol=0, atol=1e-15)
        np.testing.assert_allclose(dY[k].T, dy, rtol=0, atol=1e-14)
    r = np.linalg.norm(vecs, axis=1)
    R, dR = radial_values(r, 4.0, 5.0, 6)
    for k in range(len(r)):
        np.testing.assert_allclose(R[k], _radial(r[k], 4.0, 5.0, 6)[0], rtol=0, atol=1e-15)
        np.testing.assert_allclose(dR[k], _radial(r[k], 4.0, 5.0, 6)[1], rtol=0, atol=1e-14)


def test_spherical_harmonics_gradient_finite_differences():
    l_max = 6
    h = 1e-6
    for v in _directions():
        Y, dY = _sph(v, l_max)
        fd = np.zeros_like(dY)
        for a in range(3):
            e = np.zeros(3)
            e[a] = h
            fd[:, a] = (_sph(v + e, l_max)[0] - _sph(v - e, l_max)[0]) / (2 * h)
        scale = max(1.0, np.abs(dY).max())
        assert np.abs(dY - fd).max() <= 1e-7 * scale, (v, np.abs(dY - fd).max())
        # Y depends on the direction only: Y(2r) = Y(r) and r · ∇Y = 0
        np.testing.assert_allclose(_sph(2.0 * v, l_max)[0], Y, atol=1e-13)
        assert np.abs(dY @ v).max() <= 1e-12 * scale * np.linalg.norm(v)


def _radial(r, r_cut, scale, n_max):
    R, dR = radial_values(np.array([r]), r_cut, scale, n_max)
    return R[0], dR[0]


@pytest.mark.parametrize("scale", [5.0, 2.0, 0.0])
def test_radial_basis_values_and_derivative(scale):
    r_cut, n_max, h = 4.0, 6, 1e-6
    for r in np.linspace(0.3, r_cut - 1e-3, 41):
        R, dR = _radial(r, r_cut, scale, n_max)
        # independent formula of the module docstring
        u = r / r_cut
        x = 2 * u - 1 if scale == 0 else 1 - 2 * (np.exp(-scale * (u - 1)) - 1) / (np.exp(scale) - 1)
        ref = np.array([chebyshev.chebval(x, np.eye(n_max)[n]) for n in range(n_max)]) * (1 - u * u) ** 3
        np.testing.assert_allclose(R, ref, rtol=0, atol=1e-14)
        fd = (_radial(r + h, r_cut, scale, n_max)[0] - _radial(r - h, r_cut, scale, n_max)[0]) / (2 * h)
        np.testing.assert_allclose(dR, fd, rtol=0, atol=1e-8 * max(1.0, np.abs(dR).max()), err_msg=f"r={r}")


@pytest.mark.parametrize("scale", [5.0, 0.0])
def test_radial_basis_smooth_at_cutoff(scale):
    r_cut, n_max = 4.0, 6
    for r in (r_cut, r_cut + 1e-12, r_cut + 0.5):
        R, dR = _radial(r, r_cut, scale, n_max)
        assert np.all(R == 0.0) and np.all(dR == 0.0)

    def second(r, h=1e-7):
        return (_radial(r + h, r_cut, scale, n_max)[1] - _radial(r - h, r_cut, scale, n_max)[1]) / (2 * h)

    # R ~ δ³, R' ~ δ², R'' ~ δ as r = r_cut − δ → r_cut: halving δ divides them by 8, 4, 2
    d = 1e-3
    R1, dR1 = _radial(r_cut - d, r_cut, scale, n_max)
    R2, dR2 = _radial(r_cut - d / 2, r_cut, scale, n_max)
    np.testing.assert_allclose(R2 / R1, 1 / 8, rtol=0.01)
    np.testing.assert_allclose(dR2 / dR1, 1 / 4, rtol=0.01)
    np.testing.assert_allclose(second(r_cut - d / 2) / second(r_cut - d), 1 / 2, rtol=0.02)
    # and they are small in absolute terms compared with their values inside the cutoff
    inside = np.array([np.abs(_radial(r, r_cut, scale, n_max)[0]).max() for r in np.linspace(0.5, 3.5, 7)])
    assert np.abs(R1).max() < 1e-6 * inside.max()
    assert np.abs(second(r_cut - 1e-4)).max() < 1e-2


# ---------------------------------------------------------------------------------------------
# 5. invariance of describe
# ---------------------------------------------------------------------------------------------
def test_features_invariant_under_rotation_and_reflection(case):
    atoms, basis = case
    X = _feat(atoms, basis)
    assert X.shape == (len(atoms), basis.n_features)
    assert np.abs(X).max() > 0.1
    rng = np.random.default_rng(9)
    R = Rotation.random(random_state=5).as_matrix()
    n = rng.normal(size=3)
    n /= np.linalg.norm(n)
    mirror = np.eye(3) - 2 * np.outer(n, n)
    for name, M in (("rotation", R), ("mirror", mirror), ("rotoinversion", -R)):
        b = atoms.copy()
        b.positions = atoms.positions @ M.T
        if atoms.pbc.any():
            b.set_cell(atoms.cell.array @ M.T, scale_atoms=False)  # may be left-handed
        assert_features_equal(_feat(b, basis), X, what=name)
    # inversion of positions only: a lattice is centrosymmetric, the cell may stay as it is
    b = atoms.copy()
    b.positions = -atoms.positions
    assert_features_equal(_feat(b, basis), X, what="inversion")


def test_features_invariant_under_translation_and_permutation(case):
    atoms, basis = case
    X = _feat(atoms, basis)
    b = atoms.copy()
    b.positions += np.array([0.37, -1.21, 2.9])
    assert_features_equal(_feat(b, basis), X, what="translation")
    perm = np.random.default_rng(1).permutation(len(atoms))
    assert_features_equal(_feat(atoms[perm], basis), X[perm], what="permutation")
    # exchange the positions of two like atoms: their rows exchange, the others stay
    symbols = np.array(atoms.get_chemical_symbols())
    like = [np.flatnonzero(symbols == s) for s in set(symbols)]
    i, j = next(g for g in like if len(g) >= 2)[:2]
    b = atoms.copy()
    pos = b.positions
    pos[[i, j]] = pos[[j, i]]
    b.positions = pos
    rows = np.arange(len(atoms))
    rows[[i, j]] = rows[[j, i]]
    assert_features_equal(_feat(b, basis), X[rows], what="swap of like atoms")
    assert np.abs(X[i] - X[j]).max() > 1e-6  # the swap is not trivially invisible


def test_features_change_with_geometry(case):
    """Control: the invariance checks are not vacuous."""
    atoms, basis = case
    X = _feat(atoms, basis)
    b = atoms.copy()
    b.positions[0] += [0.05, 0.0, 0.0]
    assert np.abs(_feat(b, basis) - X).max() > 1e-4


@pytest.mark.parametrize("name", ["cu_cell", "hco_cell"])
def test_features_invariant_under_periodic_image_choice(name, request):
    atoms = request.getfixturevalue(name)
    basis = request.getfixturevalue("cu_basis" if name == "cu_cell" else "hco_basis")
    X = _feat(atoms, basis)
    C = atoms.cell.array
    # wrapping positions into the cell
    b = atoms.copy()
    b.positions += 1.7 * C[0] - 2.3 * C[2]  # a translation that moves the atoms out of the cell
    assert_features_equal(_feat(b, basis), X, what="shifted out of the cell")
    b.wrap()
    assert_features_equal(_feat(b, basis), X, what="wrapped")
    # one atom shifted by a lattice vector
    b = atoms.copy()
    b.positions[1] += 2 * C[0] - C[1] + 3 * C[2]
    assert_features_equal(_feat(b, basis), X, what="atom shifted by a lattice vector")
    # an equivalent cell choice (unimodular change of lattice basis)
    b = atoms.copy()
    b.set_cell(np.array([C[0], C[1] + C[0], C[2] - C[1] + 2 * C[0]]), scale_atoms=False)
    assert_features_equal(_feat(b, basis), X, what="unimodular cell change")
    # supercells: features are the repeated ones
    for rep in ((2, 1, 1), (1, 2, 2)):
        n = int(np.prod(rep))
        assert_features_equal(_feat(atoms.repeat(rep), basis), np.tile(X, (n, 1)), what=f"supercell {rep}")


def test_partially_periodic_slab(cu_cell, cu_basis):
    slab = cu_cell.copy()
    slab.pbc = [True, True, False]
    X = _feat(slab, cu_basis)
    assert np.abs(X - _feat(cu_cell, cu_basis)).max() > 1e-3  # fewer neighbours than the bulk
    b = slab.copy()
    b.positions[0] += cu_cell.cell[0] - 2 * cu_cell.cell[1]
    b.positions += [0.0, 0.0, 7.0]
    assert_features_equal(_feat(b, cu_basis), X, what="slab: in-plane lattice shift + translation")
    # the non-periodic direction has no images: a huge cell along it changes nothing
    c = slab.copy()
    c.cell[2] = cu_cell.cell[2] * 5.0
    assert_features_equal(_feat(c, cu_basis), X, what="slab: length of the non-periodic cell vector")


def _explicit_images(atoms, r_cut):
    """Non-periodic copy of ``atoms`` surrounded by enough lattice translates (along the periodic
    directions) that the first len(atoms) atoms have all their neighbours explicitly."""
    import itertools

    from ase import Atoms

    cell = atoms.cell.array
    reps = []
    for a in range(3):
        if atoms.pbc[a]:
            # distance between the lattice planes spanned by the other periodic vectors
            others = np.array([cell[b] for b in range(3) if b != a and atoms.pbc[b]]).reshape(-1, 3)
            q = np.linalg.qr(others.T)[0] if len(others) else np.zeros((3, 0))
            height = np.linalg.norm(cell[a] - q @ (q.T @ cell[a]))
            reps.append(int(np.ceil(r_cut / height)) + 2)
        else:
            reps.append(0)
    shifts = [(0, 0, 0)] + [s for s in itertools.product(*(range(-n, n + 1) for n in reps)) if s != (0, 0, 0)]
    pos = np.concatenate([atoms.positions + np.array(s) @ cell for s in shifts])
    return Atoms(atoms.get_chemical_symbols() * len(shifts), positions=pos)


@pytest.mark.parametrize("name", ["cu_cell", "hco_cell"])
def test_periodic_images_equal_explicit_cluster(name, request):
    """Features of a periodic cell equal those of the same atoms inside a large non-periodic
    cluster of explicit periodic images (independent of the neighbour list's image search)."""
    atoms = request.getfixturevalue(name)
    basis = request.getfixturevalue("cu_basis" if name == "cu_cell" else "hco_basis")
    X = _feat(atoms, basis)
    cluster = _explicit_images(atoms, basis.r_cut)
    assert len(cluster) > 20 * len(atoms)
    assert_features_equal(_feat(cluster, basis)[:len(atoms)], X, what="explicit images")


def test_wire_with_zero_cell_vectors(cu_basis):
    """pbc only along z, with zero-length cell vectors along the non-periodic directions."""
    from ase import Atoms

    pos = np.array([[0.0, 0.0, 0.0], [1.2, 1.3, 0.9], [2.5, -0.4, 1.1], [-0.9, 1.6, 2.4]])
    wire = Atoms("Cu4", positions=pos, cell=[[0, 0, 0], [0, 0, 0], [0.3, -0.2, 4.1]], pbc=[False, False, True])
    X = _feat(wire, cu_basis)
    ref = _feat(_explicit_images(wire, cu_basis.r_cut), cu_basis)[:len(wire)]
    assert_features_equal(X, ref, what="wire vs explicit images")
    vac = wire.copy()
    vac.set_cell([[30.0, 0, 0], [0, 30.0, 0], [0.3, -0.2, 4.1]], scale_atoms=False)
    assert_features_equal(_feat(vac, cu_basis), X, what="wire in a vacuum cell")


def test_describe_gradient_batches(monkeypatch, ethanol, hco_cell, hco_basis):
    """Splitting a list into several gradient batches does not change any output."""
    import importlib

    describe_module = importlib.import_module("minbasis.describe")  # the attribute is the function

    structures = [ethanol, hco_cell, ethanol, hco_cell, ethanol]
    full = mb.describe(structures, hco_basis, gradients=True, strain_gradients=True)
    monkeypatch.setattr(describe_module, "GRADIENT_BATCH_BYTES", 1)  # one structure per batch
    split = mb.describe(structures, hco_basis, gradients=True, strain_gradients=True)
    for field in ("gradient_samples", "atom_ptr"):
        np.testing.assert_array_equal(getattr(split, field), getattr(full, field), err_msg=field)
    for field in ("features", "position_gradients", "strain_gradients"):
        ref = getattr(full, field)
        np.testing.assert_allclose(getattr(split, field), ref, rtol=0, atol=1e-13 * np.abs(ref).max(), err_msg=field)
    np.testing.assert_array_equal(full.atom_ptr, np.cumsum([0] + [len(a) for a in structures]))
    no_strain = mb.describe(structures, hco_basis, gradients=True)
    assert no_strain.strain_gradients is None
    np.testing.assert_array_equal(no_strain.position_gradients, split.position_gradients)


def test_describe_gradient_batches_hold_one_copy(monkeypatch, ethanol, hco_basis):
    """Many neighbour batches are written into one preallocated result: the peak memory is about
    one copy of the result (the batches are not concatenated at the end)."""
    import importlib
    import tracemalloc

    describe_module = importlib.import_module("minbasis.describe")
    structures = [ethanol] * 12
    mb.describe(structures[:1], hco_basis, gradients=True)  # compile outside the trace
    monkeypatch.setattr(describe_module, "GRADIENT_BATCH_BYTES", 1)  # one structure per batch
    tracemalloc.start()
    try:
        d = mb.describe(structures, hco_basis, gradients=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = d.features.nbytes + d.position_gradients.nbytes + d.gradient_samples.nbytes
    assert peak <= 1.3 * result, f"peak {peak / 1e6:.1f} MB for a {result / 1e6:.1f} MB result"


def test_describe_batches_structures(ethanol, hco_cell, hco_basis):
    parts = [_feat(a, hco_basis) for a in (ethanol, hco_cell, ethanol)]
    X = mb.describe([ethanol, hco_cell, ethanol], hco_basis)
    np.testing.assert_allclose(X, np.vstack(parts), rtol=0, atol=1e-13)
    d = mb.describe([ethanol, hco_cell], hco_basis, gradients=True, strain_gradients=True)
    np.testing.assert_array_equal(d.atom_ptr, [0, len(ethanol), len(ethanol) + len(hco_cell)])
    d1 = mb.describe(hco_cell, hco_basis, gradients=True, strain_gradients=True)
    rows = d.gradient_samples[:, 0] >= len(ethanol)
    np.testing.assert_array_equal(d.gradient_samples[rows] - len(ethanol), d1.gradient_samples)
    np.testing.assert_allclose(d.position_gradients[rows], d1.position_gradients, rtol=0, atol=1e-14)
    np.testing.assert_allclose(d.strain_gradients[len(ethanol):], d1.strain_gradients, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# 6. gradients
# ---------------------------------------------------------------------------------------------
def _dense_position_jacobian(desc, n_atoms):
    """(N_i, N_k, 3, F) from the sparse [i, k] rows; checks the sample layout."""
    s = desc.gradient_samples
    assert s.shape[1] == 2 and len(s) == len(desc.position_gradients)
    assert len({(int(i), int(k)) for i, k in s}) == len(s), "duplicate gradient samples"
    assert {(i, i) for i in range(n_atoms)} <= {(int(i), int(k)) for i, k in s}
    J = np.zeros((n_atoms, n_atoms, 3, desc.position_gradients.shape[2]))
    J[s[:, 0], s[:, 1]] = desc.position_gradients
    return J


def test_position_gradients_finite_differences(case):
    atoms, basis = case
    N = len(atoms)
    desc = mb.describe(atoms, basis, gradients=True)
    J = _dense_position_jacobian(desc, N)
    np.testing.assert_allclose(desc.features, _feat(atoms, basis), rtol=0, atol=1e-13)
    h = 1e-5
    fd = np.zeros_like(J)
    for k in range(N):
        for a in range(3):
            b = atoms.copy()
            b.positions[k, a] += h
            Xp = _feat(b, basis)
            b.positions[k, a] -= 2 * h
            Xm = _feat(b, basis)
            fd[:, k, a, :] = (Xp - Xm) / (2 * h)
    scale = np.abs(J).max()
    assert scale > 1e-2
    err = np.abs(J - fd).max() / scale
    assert err <= 1e-6, f"position gradients differ from finite differences by {err:.2e} (relative)"
    # translation invariance: Σ_k ∂B_i/∂r_k = 0
    assert np.abs(J.sum(axis=1)).max() <= 1e-10 * scale


def test_strain_gradients_finite_differences(case):
    atoms, basis = case
    desc = mb.describe(atoms, basis, gradients=True, strain_gradients=True)
    S = desc.strain_gradients
    assert S.shape == (len(atoms), 3, 3, basis.n_features)
    h = 1e-5
    fd = np.zeros_like(S)
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            fd[:, a, b] = (_feat(strained(atoms, e), basis) - _feat(strained(atoms, -e), basis)) / (2 * h)
    scale = np.abs(S).max()
    assert scale > 1e-2
    err = np.abs(S - fd).max() / scale
    assert err <= 1e-6, f"strain gradients differ from finite differences by {err:.2e} (relative)"
    # rotation invariance makes ∂B/∂ε symmetric
    assert np.abs(S - S.transpose(0, 2, 1, 3)).max() <= 1e-10 * scale


def test_strain_gradients_from_position_gradients_in_molecule(ethanol, hco_basis):
    """Without periodic images, ∂B_i/∂ε_ab = Σ_k r_{k,a} ∂B_i/∂r_{k,b}."""
    desc = mb.describe(ethanol, hco_basis, gradients=True, strain_gradients=True)
    J = _dense_position_jacobian(desc, len(ethanol))
    S = np.einsum("ka,ikbf->iabf", ethanol.positions, J)
    np.testing.assert_allclose(desc.strain_gradients, S, rtol=0, atol=1e-11 * np.abs(S).max())


# ---------------------------------------------------------------------------------------------
# 7. linear model: forces and stress
# ---------------------------------------------------------------------------------------------
def _random_model(basis, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(len(basis.species), basis.n_features))
    e0 = rng.normal(size=len(basis.species)) * 3.0
    return LinearModel(basis, weights, e0)


def _channels(atoms, basis):
    return np.array([basis.species.index(s) for s in atoms.get_chemical_symbols()])


def _energy(model, atoms):
    return float(model.predict(atoms).energy[0])


def _voigt(m):
    return np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])


def test_linear_model_energy_forces_stress_finite_differences(case):
    atoms, basis = case
    model = _random_model(basis)
    pred = model.predict(atoms)
    ch = _channels(atoms, basis)
    X = _feat(atoms, basis)
    # energy and per-atom energies are the linear model of the features
    Ei = model.e0[ch] + np.einsum("if,if->i", model.weights[ch], X)
    np.testing.assert_allclose(pred.atomic_energies[0], Ei, rtol=1e-10, atol=1e-10 * np.abs(Ei).max())
    np.testing.assert_allclose(pred.energy[0], Ei.sum(), rtol=1e-10)
    F = pred.forces[0]
    assert F.shape == (len(atoms), 3)
    # forces = −∂E/∂r by central differences
    h = 1e-5
    fd = np.zeros_like(F)
    for k in range(len(atoms)):
        for a in range(3):
            b = atoms.copy()
            b.positions[k, a] += h
            ep = _energy(model, b)
            b.positions[k, a] -= 2 * h
            fd[k, a] = -(ep - _energy(model, b)) / (2 * h)
    scale = np.abs(F).max()
    assert scale > 1e-2
    assert np.abs(F - fd).max() <= 1e-6 * scale, np.abs(F - fd).max() / scale
    assert np.abs(F.sum(axis=0)).max() <= 1e-10 * scale  # no net force
    # stress = (1/V) ∂E/∂ε (ASE convention and Voigt order)
    if not atoms.pbc.all():
        assert np.all(np.isnan(pred.stress[0]))
        return
    V = atoms.get_volume()
    sigma = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            sigma[a, b] = (_energy(model, strained(atoms, e)) - _energy(model, strained(atoms, -e))) / (2 * h * V)
    stress = pred.stress[0]
    assert stress.shape == (6,)
    s_scale = np.abs(stress).max()
    assert s_scale > 1e-3
    assert np.abs(stress - _voigt(sigma)).max() <= 1e-6 * s_scale, (stress, _voigt(sigma))
    assert np.abs(sigma - sigma.T).max() <= 1e-6 * s_scale


def test_linear_model_matches_descriptor_jacobian(case):
    atoms, basis = case
    model = _random_model(basis, seed=1)
    pred = model.predict(atoms)
    ch = _channels(atoms, basis)
    desc = mb.describe(atoms, basis, gradients=True, strain_gradients=True)
    i, k = desc.gradient_samples.T
    # F_k = −Σ_i w[s_i] · ∂B_i/∂r_k over the Jacobian rows
    contrib = np.einsum("gaf,gf->ga", desc.position_gradients, model.weights[ch[i]])
    F = np.zeros((len(atoms), 3))
    np.add.at(F, k, -contrib)
    scale = np.abs(F).max()
    assert np.abs(F - pred.forces[0]).max() <= 1e-10 * scale
    if atoms.pbc.all():
        W = np.einsum("iabf,if->ab", desc.strain_gradients, model.weights[ch])
        stress = _voigt(0.5 * (W + W.T)) / atoms.get_volume()
        assert np.abs(stress - pred.stress[0]).max() <= 1e-10 * np.abs(stress).max()


def test_design_blocks_reproduce_linear_model(ethanol, hco_cell, hco_basis):
    """Rows of the linear design matrix (kernels.design_blocks) times the coefficients give the
    energies, forces and V·σ of the back-propagated linear model."""
    from minbasis.kernels import build_batch, design_blocks

    model = _random_model(hco_basis, seed=5)
    structures = [ethanol, hco_cell]
    plan = hco_basis.plan
    batch = build_batch(structures, plan.species, plan.numbers, plan.r_cut)
    XE, XF, XV = design_blocks(plan, batch, with_virial=True)
    c = model.weights.ravel()  # channel-major: c[s * F + f] = weights[s, f]
    pred = model.predict(structures)
    for m, atoms in enumerate(structures):
        e0 = model.e0[_channels(atoms, hco_basis)].sum()
        assert XE[m] @ c + e0 == pytest.approx(pred.energy[m], rel=1e-12)
        a0, a1 = batch.atom_ptr[m], batch.atom_ptr[m + 1]
        F = pred.forces[m]
        assert np.abs(XF[a0:a1] @ c - F).max() <= 1e-10 * np.abs(F).max()
        if atoms.pbc.all():
            sigma = _voigt(XV[m] @ c) / atoms.get_volume()
            assert np.abs(sigma - pred.stress[m]).max() <= 1e-10 * np.abs(pred.stress[m]).max()


def test_linear_model_rejects_weights_of_wrong_shape(hco_minimal, ethanol):
    """Weights must be (n_species, n_features). A transposed array (n_features, n_species) is
    indexed by the Numba kernel without bounds checks and silently gives a wrong energy."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(len(hco_minimal.species), hco_minimal.n_features))
    e0 = np.zeros(len(hco_minimal.species))
    with pytest.raises(ValueError):
        LinearModel(hco_minimal, np.ascontiguousarray(w.T), e0).predict(ethanol)


def test_linear_model_batch_equals_single(ethanol, hco_cell, hco_basis):
    model = _random_model(hco_basis, seed=2)
    both = model.predict([ethanol, hco_cell, ethanol])
    for m, atoms in enumerate([ethanol, hco_cell, ethanol]):
        one = model.predict(atoms)
        np.testing.assert_allclose(both.energy[m], one.energy[0], rtol=1e-13)
        np.testing.assert_allclose(both.forces[m], one.forces[0], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(np.isnan(both.stress[m]), np.isnan(one.stress[0]))
        np.testing.assert_allclose(both.stress[m][~np.isnan(one.stress[0])], one.stress[0][~np.isnan(one.stress[0])],
                                   rtol=0, atol=1e-13)


def test_ase_calculator(case):
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms, basis = case
    model = _random_model(basis, seed=3)
    pred = model.predict(atoms)
    atoms.calc = model.calculator()
    assert atoms.get_potential_energy() == pytest.approx(pred.energy[0], rel=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(pred.energy[0], rel=1e-12)
    np.testing.assert_allclose(atoms.get_potential_energies(), pred.atomic_energies[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), pred.forces[0], rtol=0, atol=1e-12)
    # ASE's own finite differences agree with the analytic forces and stress
    from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

    num_f = calculate_numerical_forces(atoms, eps=1e-5)
    assert np.abs(num_f - pred.forces[0]).max() <= 1e-6 * np.abs(pred.forces[0]).max()
    if atoms.pbc.all():
        np.testing.assert_allclose(atoms.get_stress(), pred.stress[0], rtol=0, atol=1e-14)
        num = calculate_numerical_stress(atoms, eps=1e-5, voigt=True)
        assert np.abs(num - pred.stress[0]).max() <= 1e-6 * np.abs(pred.stress[0]).max()
    else:
        with pytest.raises(PropertyNotImplementedError):
            atoms.get_stress()
    # the calculator follows the atoms when they move
    e_before = atoms.get_potential_energy()
    atoms.positions[0] += [0.02, -0.01, 0.03]
    assert atoms.get_potential_energy() != e_before
    assert atoms.get_potential_energy() == pytest.approx(_energy(model, atoms), rel=1e-12)


def test_packed_and_general_contractions_agree(hco_cell, hco_basis):
    """The packed, unrolled contraction (plans with ≤ 4 factors per term) and the general one
    (taken when t_pack is empty) give the same features, energies, forces and virials."""
    import dataclasses

    from minbasis.kernels.evaluate import features, linear_energy_forces
    from minbasis.kernels.neighbours import build_batch

    plan = hco_basis.plan
    assert len(plan.t_pack) == len(plan.t_order) > 0
    general = dataclasses.replace(plan, t_pack=plan.t_pack[:0])
    batch = build_batch([hco_cell], plan.species, plan.numbers, plan.r_cut)
    np.testing.assert_allclose(features(plan, batch)[0], features(general, batch)[0], rtol=1e-13, atol=1e-13)
    w = np.random.default_rng(1).normal(size=(len(plan.species), plan.n_features))
    for a, b in zip(linear_energy_forces(plan, batch, w, np.zeros(3)), linear_energy_forces(general, batch, w, np.zeros(3))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
