"""Property-based fuzzing of every input boundary (hypothesis).

Properties: random structures, cells, atomic numbers, hyper-parameters and corrupted files never
crash the process, hang, or raise anything but a ``ValueError`` (every minbasis error is a
``MinbasisError``, itself a ``ValueError``); what is accepted gives finite, correctly shaped
results. The number of examples is bounded so the file runs in well under a minute; set
``MINBASIS_FUZZ=deep`` for a longer, randomised run (e.g. nightly).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import minbasis as mb  # noqa: E402
from minbasis.errors import MinbasisError  # noqa: E402

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("deep", max_examples=2000, deadline=None, derandomize=False, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
PROFILE = "deep" if os.environ.get("MINBASIS_FUZZ") == "deep" else "ci"


def examples(n: int):
    """Settings with ``n`` examples in CI (the deep profile keeps its own count)."""
    return settings(settings.get_profile(PROFILE), **({"max_examples": n} if PROFILE == "ci" else {}))


@pytest.fixture(scope="module")
def small_basis():
    return mb.Basis.ace(["H", "O", "Cu"], 3.0, [2, 1], [0, 1], 2)


# -- strategies ------------------------------------------------------------------------------------
weird_floats = st.one_of(
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e-300, 1e-8, 1e-4, 0.29, 0.31, 1e3, 1e5, 3e5, 1e6, 1e12, 1e300,
                     math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)
atomic_numbers = st.one_of(st.sampled_from([1, 8, 29]), st.sampled_from([1, 8, 29]),
                           st.integers(-3, 130), st.sampled_from([-1, 0, 119, 2**31, -2**31]))


@st.composite
def cells(draw):
    kind = draw(st.sampled_from(["cubic", "random", "singular", "near_singular", "skewed", "zero_row", "weird"]))
    if kind == "cubic":
        return np.eye(3) * draw(st.floats(2.0, 8.0))
    if kind == "random":
        return np.asarray(draw(st.lists(st.floats(-6, 6), min_size=9, max_size=9))).reshape(3, 3)
    a = np.array([draw(st.floats(2, 5)), 0.0, 0.0])
    b = np.array([draw(st.floats(-1, 1)), draw(st.floats(2, 5)), 0.0])
    if kind == "singular":
        return np.array([a, b, draw(st.floats(-3, 3)) * a + draw(st.floats(-3, 3)) * b])
    if kind == "near_singular":
        eps = draw(st.sampled_from([1e-12, 1e-8, 1e-5, 1e-4, 1e-3, 0.05]))
        return np.array([a, b, a + b + [0, 0, eps]])
    if kind == "skewed":
        k = draw(st.integers(-10**6, 10**6))
        return np.array([a, b, k * a + draw(st.integers(-100, 100)) * b + [0, 0, draw(st.floats(2, 5))]])
    if kind == "zero_row":
        c = np.eye(3) * 4.0
        c[draw(st.integers(0, 2))] = 0.0
        return c
    return np.asarray(draw(st.lists(weird_floats, min_size=9, max_size=9))).reshape(3, 3)


@st.composite
def structures(draw):
    n = draw(st.integers(1, 6))
    numbers = draw(st.lists(atomic_numbers, min_size=n, max_size=n))
    scale = draw(st.sampled_from([1.0, 3.0, 10.0, 1e3, 1e6, 1e9]))
    pos = np.asarray(draw(st.lists(st.floats(0, 1), min_size=3 * n, max_size=3 * n))).reshape(n, 3) * scale
    if draw(st.integers(0, 9)) == 0:   # occasionally a weird coordinate
        pos[draw(st.integers(0, n - 1)), draw(st.integers(0, 2))] = draw(weird_floats)
    pbc = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    atoms = Atoms(positions=np.zeros((n, 3)), cell=draw(cells()), pbc=pbc)
    atoms.arrays["numbers"] = np.asarray(numbers, dtype=np.int64)
    atoms.arrays["positions"] = pos
    return atoms


# -- structures, cells, atomic numbers -------------------------------------------------------------
@examples(120)
@given(structures())
def test_random_structures_never_crash(small_basis, atoms):
    """describe() returns finite (n_atoms, n_features) features or raises a ValueError."""
    try:
        X = mb.describe(atoms, small_basis)
    except MinbasisError:
        return
    assert X.shape == (len(atoms), small_basis.n_features)
    assert np.isfinite(X).all()


@examples(25)
@given(structures(), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_accepted_structures_are_translation_invariant(small_basis, atoms, dx, dy, dz):
    try:
        X = mb.describe(atoms, small_basis)
    except MinbasisError:
        return
    moved = atoms.copy()
    moved.positions += [dx, dy, dz]
    if np.abs(moved.positions).max() > 1e5:
        return  # rounding of far-away coordinates, not a property of the descriptor
    try:
        X2 = mb.describe(moved, small_basis)
    except MinbasisError:
        return  # a shift can push a borderline pair below the overlap distance
    np.testing.assert_allclose(X2, X, atol=1e-6 * max(1.0, np.abs(X).max()))


# -- hyper-parameters ------------------------------------------------------------------------------
int_like = st.one_of(st.integers(-2, 4), st.sampled_from([2.0, 2.5, None, "2", True, np.int64(2), np.float64(1.5),
                                                          math.nan, math.inf]),
                     st.lists(st.integers(-1, 3), min_size=0, max_size=5))


@examples(80)
@given(species=st.one_of(st.lists(st.sampled_from(["H", "O", "Cu", "Xx", "X", "", 1]), min_size=0, max_size=3),
                         st.just("HO")),
       r_cut=weird_floats, n_max=int_like, l_max=int_like, order=int_like,
       radial_scale=st.one_of(st.floats(0, 20), weird_floats),
       total_degree=st.one_of(st.none(), weird_floats))
def test_random_hyper_parameters(species, r_cut, n_max, l_max, order, radial_scale, total_degree):
    """Basis.ace accepts valid hyper-parameters (without truncating non-integers) or raises a ValueError."""
    try:
        b = mb.Basis.ace(species, r_cut, n_max, l_max, order, radial_scale=radial_scale,
                         total_degree=total_degree, max_size=3e4)
    except MinbasisError:
        return
    assert isinstance(order, (int, np.integer, float)) and float(order) == int(order)
    assert b.spec.hyper["order"] == int(order) and b.n_features >= 1
    assert all(isinstance(v, int) for v in b.spec.hyper["n_max"] + b.spec.hyper["l_max"])
    assert math.isfinite(b.r_cut) and 0 <= b.spec.radial["scale"] <= 700


@examples(25)
@given(n_max=int_like, l_max=int_like, max_factors=int_like, radial_scale=weird_floats)
def test_random_cartesian_hyper_parameters(n_max, l_max, max_factors, radial_scale):
    try:
        b = mb.Basis.cartesian(["Cu"], 4.0, n_max, l_max, max_factors, radial_scale=radial_scale, max_size=3e4)
    except MinbasisError:
        return
    assert b.n_features >= 1


@examples(30)
@given(st.lists(st.text(alphabet="0123456789.,-einfaxX ", max_size=6), min_size=4, max_size=4))
def test_random_cli_hyper_parameters(tmp_path_factory, texts):
    """Any text for --r-cut/--n-max/--l-max/--order exits 0 or 2 (one line), never a traceback."""
    from minbasis.cli import main

    out = tmp_path_factory.mktemp("fuzz_cli") / "b.json"
    args = ["basis", "--species", "H", "--r-cut", texts[0], "--n-max", texts[1], "--l-max", texts[2],
            "--order", texts[3], "--max-basis-size", "3e4", "-o", str(out)]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse: bad syntax
        code = exc.code
    assert code in (0, 2)
    assert (code == 0) == out.exists()


# -- corrupted files -------------------------------------------------------------------------------
@st.composite
def corruptions(draw, size: int):
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "zero"]))
    pos = draw(st.integers(0, max(size - 1, 0)))
    return kind, pos, draw(st.integers(1, 64)), draw(st.binary(min_size=1, max_size=16))


def corrupt(data: bytes, c) -> bytes:
    kind, pos, n, junk = c
    if kind == "flip":
        b = bytearray(data)
        for k in range(pos, min(pos + n, len(b))):
            b[k] ^= 0xFF
        return bytes(b)
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + junk + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + n:]
    return data[:pos] + bytes(n) + data[pos + n:]


@pytest.fixture(scope="module")
def files(tmp_path_factory, small_basis):
    from minbasis.fit import LinearFitConfig, fit_linear

    d = tmp_path_factory.mktemp("fuzz_files")
    frames = []
    for k in range(4):
        m = molecule("H2O")
        m.rattle(0.05, seed=k)
        m.info["energy"] = -0.1 * k
        m.arrays["forces"] = np.full((3, 3), 0.01 * k)
        frames.append(m)
    import ase.io

    ase.io.write(d / "data.extxyz", frames)
    small_basis.save(d / "basis.json")
    model = fit_linear(small_basis, frames, config=LinearFitConfig(solver="ridge", alpha=1e-6))
    model.save(d / "model.npz")
    return d


@examples(60)
@given(st.data())
def test_corrupted_basis_files(files, small_basis, data):
    raw = (files / "basis.json").read_bytes()
    c = data.draw(corruptions(len(raw)))
    path = files / "corrupt_basis.json"
    path.write_bytes(corrupt(raw, c))
    try:
        b = mb.Basis.load(path)
    except MinbasisError:
        return
    assert b == small_basis   # a change the hash cannot see is one that does not matter (e.g. spaces)


@examples(40)
@given(st.data())
def test_corrupted_model_files(files, data):
    from minbasis.fit import load_model

    raw = (files / "model.npz").read_bytes()
    c = data.draw(corruptions(len(raw)))
    path = files / "corrupt_model.npz"
    path.write_bytes(corrupt(raw, c))
    try:
        model = load_model(path)
    except MinbasisError:
        return
    ref = load_model(files / "model.npz")
    np.testing.assert_array_equal(model.weights, ref.weights)


@examples(60)
@given(st.data())
def test_corrupted_structure_files(files, small_basis, data):
    from minbasis.fit import get_labels, read_structures

    raw = (files / "data.extxyz").read_bytes()
    c = data.draw(corruptions(len(raw)))
    path = files / "corrupt.extxyz"
    path.write_bytes(corrupt(raw, c))
    try:
        frames = read_structures(path)
        X = mb.describe(frames, small_basis)
        labels = get_labels(frames, "energy", "forces")
    except MinbasisError:
        return
    assert np.isfinite(X).all() and np.isfinite(labels.energy).all()


@examples(40)
@given(st.data())
def test_corrupted_cache_entries_are_never_trusted(tmp_path_factory, data):
    """Whatever happens to a cache entry, the basis built from the cache equals the reference."""
    folder = tmp_path_factory.mktemp("fuzz_cache")
    old = os.environ.get("MINBASIS_CACHE_DIR")
    os.environ["MINBASIS_CACHE_DIR"] = str(folder)
    try:
        full = mb.Basis.ace(["H", "O"], 3.0, [2, 2], [0, 1], 2)
        ref = full.minimal()
        for path in sorted(folder.glob("*.json")):
            raw = path.read_bytes()
            if data.draw(st.booleans()):
                path.write_bytes(corrupt(raw, data.draw(corruptions(len(raw)))))
            else:  # a well-formed JSON edit of the value
                entry = json.loads(raw)
                value = entry["value"]
                if isinstance(value, dict):
                    value["kept"] = data.draw(st.lists(st.integers(-2, 50), max_size=6))
                else:
                    k = data.draw(st.integers(0, len(value) - 1))
                    value[k]["factors"][0][data.draw(st.integers(0, 2))] = data.draw(st.integers(-1, 9))
                path.write_text(json.dumps(entry))
        assert mb.Basis.ace(["H", "O"], 3.0, [2, 2], [0, 1], 2) == full
        assert full.minimal() == ref
    finally:
        if old is None:
            os.environ.pop("MINBASIS_CACHE_DIR", None)
        else:
            os.environ["MINBASIS_CACHE_DIR"] = old


@examples(40)
@given(energy=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.booleans(),
                        st.lists(st.floats(-1, 1), max_size=3), st.none()),
       forces=st.one_of(st.just("ok"), st.just("short"), st.just("text"), st.just("nan")),
       weights=st.dictionaries(st.sampled_from(["default", "a"]),
                               st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2)),
                               max_size=2))
def test_random_labels_and_weights(small_basis, energy, forces, weights):
    """Labels of any type and config_type weights of any value: a fit or a ValueError."""
    from minbasis.fit import LinearFitConfig, fit_linear

    frames = []
    for k in range(3):
        m = molecule("H2O")
        m.rattle(0.05, seed=k)
        m.info["energy"] = -0.1 * k
        m.arrays["forces"] = np.zeros((3, 3))
        frames.append(m)
    if energy is not None:
        frames[1].info["energy"] = energy
    if forces == "short":
        frames[0].arrays["forces"] = np.zeros((3, 3))[:, :2].copy().repeat(1, axis=0)
        frames[0].arrays.pop("forces")
        frames[0].new_array("forces", np.zeros((3, 2)))
    elif forces == "text":
        frames[0].arrays.pop("forces")
        frames[0].new_array("forces", np.array([["a"] * 3] * 3))
    elif forces == "nan":
        frames[0].arrays["forces"][0, 0] = np.nan
    try:
        cfg = LinearFitConfig(solver="ridge", alpha=1e-6, config_type_weights=weights)
        model = fit_linear(small_basis, frames, config=cfg)
    except MinbasisError:
        return
    assert np.isfinite(model.weights).all()
