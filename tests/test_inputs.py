"""Bad input gives a clear minbasis error (a ValueError) naming the problem, never a kernel crash."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

import minbasis as mb
from minbasis.errors import FileFormatError, SpeciesError, StructureError


@pytest.fixture(scope="module")
def basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2)


def test_errors_are_value_errors():
    for cls in (StructureError, SpeciesError, FileFormatError, mb.LabelError):
        assert issubclass(cls, ValueError)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_positions(basis, value):
    m = molecule("CH3CH2OH")
    m.positions[3, 1] = value
    with pytest.raises(StructureError, match=r"non-finite .* atom\(s\) \[3\]"):
        mb.describe(m, basis)


def test_overlapping_atoms(basis):
    m = molecule("CH3CH2OH")
    m.positions[4] = m.positions[0] + [0.05, 0.0, 0.0]
    with pytest.raises(StructureError, match="overlap"):
        mb.describe(m, basis)


def test_overlap_with_periodic_image(basis):
    a = Atoms("H2", positions=[[0, 0, 0], [2.95, 0, 0]], cell=[3.0, 3.0, 3.0], pbc=True)
    with pytest.raises(StructureError, match="overlap"):
        mb.describe(a, basis)


def test_unknown_species(basis):
    m = molecule("CH3CH2OH")
    m.symbols[2] = "N"
    with pytest.raises(SpeciesError, match=r"\['N'\] not in the basis species \['H', 'C', 'O'\]"):
        mb.describe(m, basis)


def test_empty_inputs(basis):
    with pytest.raises(StructureError, match="empty"):
        mb.describe(Atoms(), basis)
    with pytest.raises(StructureError, match="no structures"):
        mb.describe([], basis)
    with pytest.raises(StructureError, match="expected ase.Atoms"):
        mb.describe([molecule("H2O"), "not atoms"], basis)


def test_degenerate_cells(basis):
    a = bulk("C", "diamond", a=3.57)
    flat = a.copy()
    flat.cell[2] = flat.cell[0] + flat.cell[1]
    with pytest.raises(StructureError, match="degenerate cell"):
        mb.describe(flat, basis)
    zero = a.copy()
    zero.cell[1] = 0.0
    with pytest.raises(StructureError, match="zero length"):
        mb.describe(zero, basis)


def test_isolated_atom_has_zero_many_body_features(basis):
    """An atom with no neighbours is valid input: all its moments, hence invariants, vanish."""
    X = mb.describe(Atoms("O", positions=[[0, 0, 0]]), basis)
    assert X.shape == (1, basis.n_features)
    assert np.all(X == 0.0)


def test_bad_hyper_parameters():
    with pytest.raises(mb.MinbasisError, match="unknown chemical symbols"):
        mb.Basis.ace(["H", "Xx"], 5.0, 4, 2, 2)
    with pytest.raises(mb.MinbasisError, match="duplicates"):
        mb.Basis.ace(["H", "H"], 5.0, 4, 2, 2)
    with pytest.raises(mb.MinbasisError, match="r_cut"):
        mb.Basis.ace(["H"], -1.0, 4, 2, 2)
    with pytest.raises(mb.MinbasisError, match="order"):
        mb.Basis.ace(["H"], 5.0, 4, 2, 7)  # ν ≤ 6
    with pytest.raises(ValueError, match="n_max has 2 entries but order = 3"):
        mb.Basis.ace(["H"], 5.0, [4, 3], 2, 3)


def test_basis_file_errors(tmp_path, basis):
    path = tmp_path / "b.json"
    basis.save(path)
    assert mb.Basis.load(path) == basis
    d = json.loads(path.read_text())
    # another format version
    (tmp_path / "v.json").write_text(json.dumps(dict(d, format_version=0)))
    with pytest.raises(FileFormatError, match="format version 0"):
        mb.Basis.load(tmp_path / "v.json")
    # edited content -> hash mismatch
    edited = json.loads(path.read_text())
    edited["invariants"][0]["terms"][0][0] *= 2
    (tmp_path / "e.json").write_text(json.dumps(edited))
    with pytest.raises(FileFormatError, match="hash mismatch"):
        mb.Basis.load(tmp_path / "e.json")
    # truncated, not a basis, missing
    (tmp_path / "t.json").write_text(path.read_text()[: len(path.read_text()) // 2])
    with pytest.raises(FileFormatError, match="not valid JSON"):
        mb.Basis.load(tmp_path / "t.json")
    (tmp_path / "o.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(FileFormatError, match="not a minbasis basis"):
        mb.Basis.load(tmp_path / "o.json")
    with pytest.raises(FileFormatError, match="cannot read"):
        mb.Basis.load(tmp_path / "missing.json")
    # an invariant pointing outside the basis is caught when compiling, not inside a kernel
    bad = json.loads(path.read_text())
    bad["invariants"][0]["factors"][0][0] = 7
    from minbasis.spec import BasisSpec

    tampered = BasisSpec(family=bad["family"], variant=bad["variant"], species=bad["species"], r_cut=bad["r_cut"],
                         radial=bad["radial"], hyper=bad["hyper"], invariants=bad["invariants"], pruning=None)
    with pytest.raises(FileFormatError, match="outside the basis"):
        mb.Basis(tampered).plan


# ------------------------------------------------------------------------------------------------
# Issue 14: every family of bad input found by fault injection. Cases that used to crash the
# process (SIGFPE) or hang run in a subprocess with a timeout, so a regression fails the test
# instead of killing or stalling the test run.
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from minbasis.cli import main as cli_main
from minbasis.errors import LabelError

_PRE = """
import numpy as np, minbasis as mb
from ase import Atoms
from ase.build import bulk
b = mb.Basis.ace(['H', 'Cu'], 4.0, [2, 1], [0, 1], 2)
"""


def _in_subprocess(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-c", _PRE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[1], env=env)


@pytest.mark.parametrize("name, code, message", [
    ("coordinates beyond 1e8 Å", "mb.describe(Atoms('H2', positions=[[0, 0, 0], [2e9, 0, 0]]), b)", "translate"),
    ("a periodic cell so anisotropic that vesin's cell list gets a zero-width axis (SIGFPE)",
     "mb.describe(Atoms('H', positions=[[0, 0, 0]], cell=[3.5, 1500, 1500], pbc=True), b)", "too elongated"),
    ("a thin periodic direction and atoms spread over 10⁵–10⁶ Å in the others (SIGFPE)",
     "mb.describe(Atoms('H2', positions=[[0, 0, 0], [1, 3e5, 7e5]], cell=[4, 0, 0], pbc=[True, False, False]), b)",
     "too elongated"),
    ("mixed periodicity (T,F,T) with singular periodic vectors (SIGFPE)",
     "mb.describe(Atoms('H', positions=[[0, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [6, 0, 0]], "
     "pbc=[True, False, True]), b)", "degenerate cell"),
    ("nearly singular cell c = a + b + 1e-4 z (neighbour search never ends)",
     "mb.describe(Atoms('H', positions=[[0, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 1e-4]], pbc=True), b)",
     "own periodic image"),
    ("l_max = 40, order 3 (unbounded enumeration)",
     "mb.Basis.ace(['H'], 4.0, 1, 40, 3)", "too large to enumerate"),
    ("r_cut 400 Å in a 2.5 Å cell (6.5 GB for one atom)",
     "mb.describe(bulk('Cu', 'sc', a=2.5), mb.Basis.ace(['Cu'], 400.0, 2, 0, 1))", "pair budget"),
])
def test_former_crashes_and_hangs_give_one_clear_error(name, code, message):
    r = _in_subprocess(f"""
        try:
            {code.strip()}
        except mb.MinbasisError as exc:
            print('MINBASIS_ERROR', exc)
        """, timeout=90)
    assert r.returncode == 0, f"{name}: exit {r.returncode}\n{r.stderr[-2000:]}"
    assert "MINBASIS_ERROR" in r.stdout and message in r.stdout, r.stdout


@pytest.mark.parametrize("name, code", [
    ("coordinates 2e6 Å apart (SIGFPE in vesin)", "a = Atoms('H2', positions=[[0, 0, 0], [2e6, 0, 0]])"),
    ("elongated molecule-like structure (SIGFPE in vesin's rescaled cell list)",
     "a = Atoms('H2', positions=[[0, 0, 0], [1.5 * 4, 3.5 * 4, 4e4 * 4]])"),
    ("mixed periodicity, atoms far apart along the non-periodic direction",
     "a = Atoms('H2', positions=[[0, 0, 0], [1, 2, 3e4]], cell=[4, 4, 0], pbc=[True, True, False])"),
])
def test_former_crashes_now_give_correct_results(name, code):
    """Atoms further apart than r_cut have no neighbours: features of isolated atoms (all zero)."""
    r = _in_subprocess(code + "\nX = mb.describe(a, b)\nprint('SHAPE', X.shape, 'ZERO', bool((X == 0).all()))\n",
                       timeout=90)
    assert r.returncode == 0, f"{name}: exit {r.returncode}\n{r.stderr[-2000:]}"
    assert "SHAPE (2, " in r.stdout and "ZERO True" in r.stdout, r.stdout


def test_limits_are_overridable(monkeypatch):
    from minbasis import validate

    with pytest.raises(mb.MinbasisError, match=r"estimated size 107 .* exceeds the limit 50.*MINBASIS_MAX_BASIS_SIZE"):
        mb.Basis.ace(["H"], 4.0, 2, 2, 2, max_size=50)
    monkeypatch.setenv("MINBASIS_MAX_BASIS_SIZE", "50")
    with pytest.raises(mb.MinbasisError, match="too large"):
        mb.Basis.ace(["H"], 4.0, 2, 2, 2)
    assert mb.Basis.ace(["H"], 4.0, 2, 2, 2, max_size=1e9).n_features > 0   # the keyword wins
    monkeypatch.delenv("MINBASIS_MAX_BASIS_SIZE")
    cu = mb.Basis.ace(["Cu"], 6.0, 2, 0, 1)
    cell = bulk("Cu", "fcc", a=3.61, cubic=True)
    monkeypatch.setenv("MINBASIS_MAX_PAIRS", "100")
    with pytest.raises(StructureError, match=r"estimated .* neighbour pairs .* exceeds the pair budget 100"):
        mb.describe(cell, cu)
    monkeypatch.setenv("MINBASIS_MAX_PAIRS", "1e6")
    assert mb.describe(cell, cu).shape == (4, cu.n_features)
    monkeypatch.setenv("MINBASIS_MAX_PAIRS", "lots")
    with pytest.raises(mb.MinbasisError, match="MINBASIS_MAX_PAIRS"):
        mb.describe(cell, cu)
    monkeypatch.delenv("MINBASIS_MAX_PAIRS")
    # the estimate is of the right size: within a factor 3 of the true count for a bulk cell
    big = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    est = validate.estimate_pairs(len(big), big.positions, big.cell.array, big.pbc, 6.0)
    from minbasis.kernels import build_batch

    true = len(build_batch([big], ["Cu"], [29], 6.0).pair_i)
    assert true / 3 < est < 3 * true


def test_skewed_cell_gives_the_same_features_as_its_reduced_cell():
    """A cell with c = 30 (a + b) + c0 is the same lattice; it is reduced before vesin (bounded
    work) and must give the same features as the plain cell."""
    cu = mb.Basis.ace(["Cu"], 4.0, [2, 2], [0, 2], 2)
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.05, seed=1)
    skew = a.copy()
    cell = a.cell.array.copy()
    skew.set_cell([cell[0], cell[1], cell[2] + 30 * (cell[0] + cell[1])], scale_atoms=False)
    np.testing.assert_allclose(mb.describe(skew, cu), mb.describe(a, cu), rtol=1e-10, atol=1e-12)


def test_mixed_periodicity_with_any_non_periodic_vector():
    """Mixed periodicity against an explicit, non-periodic replica of the periodic images; the
    non-periodic cell vector may be anything (zero, collinear with a periodic one, tiny)."""
    cu = mb.Basis.ace(["Cu"], 4.0, 2, [0, 1], 2)
    rng = np.random.default_rng(2)
    pos = rng.uniform(0, 3, (4, 3)) + [[0, 0, 0], [0, 0, 0], [0, 9.0, 0], [0, 0, 0]]
    n_rep = 2  # images ±2 cells along a and c cover r_cut = 4 Å with 3 Å cells
    cluster = np.concatenate([pos + [3.0 * i, 0, 3.0 * k] for i in range(-n_rep, n_rep + 1)
                              for k in range(-n_rep, n_rep + 1)])
    centre = (2 * n_rep + 1) ** 2 // 2
    ref = mb.describe(Atoms(f"Cu{len(cluster)}", positions=cluster), cu)[4 * centre:4 * centre + 4]
    for b_vec in ([0, 10.0, 0], [0, 0, 0], [6.0, 0, 0], [0, 1e-3, 0], [1.0, 1.0, 1e-12]):
        a = Atoms("Cu4", positions=pos, cell=[[3.0, 0, 0], b_vec, [0, 0, 3.0]], pbc=[True, False, True])
        np.testing.assert_allclose(mb.describe(a, cu), ref, rtol=1e-10, atol=1e-12)
    # one periodic direction, atoms spread over hundreds of Å (vesin's mixed search took ~20 s)
    wire = Atoms("Cu4", positions=rng.uniform(0, 1, (4, 3)) * [4.6, 228, 818], cell=[[4.6, 0, 0], [0, 0, 0], [0, 0, 0]],
                 pbc=[True, False, False])
    import time

    t0 = time.perf_counter()
    assert np.isfinite(mb.describe(wire, cu)).all()
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize("z", [-1, 0, 119, 1000])
def test_invalid_atomic_numbers(basis, z):
    """Z = -1 used to wrap around the lookup table and be evaluated as O."""
    m = molecule("H2O")
    m.numbers[0] = z
    with pytest.raises(SpeciesError, match=rf"invalid atomic number\(s\) \[{z}\]"):
        mb.describe(m, basis)


@pytest.mark.parametrize("kwargs, message", [
    ({"r_cut": float("inf")}, "r_cut must be a finite number"),
    ({"r_cut": float("nan")}, "r_cut must be a finite number"),
    ({"r_cut": 1e-300}, "r_cut must be a cutoff radius between"),
    ({"r_cut": "5"}, "r_cut must be a number"),
    ({"radial_scale": float("nan")}, "radial_scale must be a finite number"),
    ({"radial_scale": 710.0}, "radial_scale must be between"),
    ({"radial_scale": -710.0}, "radial_scale must be between"),
    ({"n_max": 2.5}, "n_max must be an integer, got 2.5"),
    ({"n_max": None}, "n_max must be an integer or a list"),
    ({"n_max": "3"}, "n_max must be an integer or a list"),
    ({"n_max": [2, 2.5]}, "n_max entry must be an integer"),
    ({"l_max": True}, "l_max must be an integer"),
    ({"order": 2.5}, r"order \(correlation order ν\) must be an integer, got 2.5"),
    ({"order": None}, "order"),
    ({"order": np.float64(2.7)}, "must be an integer"),
    ({"total_degree": float("nan")}, "total_degree must be a finite number"),
    ({"l_weight": "x"}, "l_weight must be a number"),
    ({"species": "HC"}, "species must be a list"),
    ({"species": [1, 6]}, "chemical symbols"),
])
def test_bad_hyper_parameter_types(kwargs, message):
    args = dict(species=["H", "C"], r_cut=4.0, n_max=2, l_max=1, order=2)
    args.update(kwargs)
    with pytest.raises(mb.MinbasisError, match=message):
        mb.Basis.ace(**args)


def test_numpy_and_integral_hyper_parameters_are_accepted():
    ref = mb.Basis.ace(["H"], 4.0, 2, 1, 2)
    assert mb.Basis.ace(["H"], np.float32(4.0), np.int64(2), np.int32(1), np.int8(2)) == ref
    assert mb.Basis.ace(["H"], 4, 2.0, [1.0, 1], 2.0) == ref
    assert mb.Basis.ace(["H"], 4.0, np.array([2, 2]), 1, 2) == ref


def test_radial_scale_overflow_in_a_loaded_file_is_refused(tmp_path, basis):
    d = basis.spec.to_dict()
    d["radial"] = dict(d["radial"], scale=800.0)
    from minbasis.spec import BasisSpec

    d["hash"] = BasisSpec(family=d["family"], variant=d["variant"], species=d["species"], r_cut=d["r_cut"],
                          radial=d["radial"], hyper=d["hyper"], invariants=d["invariants"], pruning=None).hash
    (tmp_path / "b.json").write_text(json.dumps(d))
    with pytest.raises(FileFormatError, match="radial_scale must be between"):
        mb.Basis.load(tmp_path / "b.json")


def test_minimal_arguments(basis):
    with pytest.raises(mb.MinbasisError, match="seed must be >= 0"):
        basis.minimal(seed=-1)
    with pytest.raises(mb.MinbasisError, match="n_points must be an integer"):
        basis.minimal(n_points=2.5)
    with pytest.raises(mb.MinbasisError, match="order index must be <="):
        basis.minimal(order=[0, 10**6])


def _xyz(tmp_path, info: str, name="d.extxyz") -> Path:
    path = tmp_path / name
    path.write_text(f'2\nProperties=species:S:1:pos:R:3 {info} pbc="F F F"\nH 0 0 0\nH 0 0 0.74\n')
    return path


@pytest.mark.parametrize("info, message", [
    ("energy=abc", "is the text 'abc', not a number"),
    ('energy="1.0 2.0 3.0"', r"must be one number \(eV\), got an array of shape \(3,\)"),
    ("energy=T", "is a boolean"),
    ("energy_high=T", "is a boolean"),
])
def test_malformed_energies_in_extxyz(tmp_path, info, message):
    from minbasis.fit import get_labels, read_structures

    frames = read_structures(_xyz(tmp_path, info))
    key = "energy_high" if "energy_high" in info else "energy"
    with pytest.raises(LabelError, match=message):
        get_labels(frames, key, None)


def test_malformed_forces_and_stress():
    from minbasis.fit import get_labels

    a = molecule("H2O")
    a.arrays["f"] = np.array([["a", "b", "c"]] * 3)
    with pytest.raises(LabelError, match="must be real numbers"):
        get_labels([a], None, "f")
    a.arrays["f"] = np.ones((3, 3), dtype=bool)
    with pytest.raises(LabelError, match="boolean"):
        get_labels([a], None, "f")
    c = bulk("Cu")
    c.info["s"] = "high"
    with pytest.raises(LabelError, match="text"):
        get_labels([c], None, None, "s")


@pytest.mark.parametrize("weights, message", [
    ({"default": 1e300}, r"1e\+150"),
    ({"default": float("nan")}, "finite"),
    ({"default": -1}, ">= 0|between 0"),
    ({"default": "x"}, "must be a number"),
    ({"default": 0.0}, "nothing"),
    ({"a": 0, "default": 0}, "nothing"),
    ([1, 2], "mapping"),
])
def test_config_type_weights(weights, message):
    from minbasis.fit import LinearFitConfig, fit_linear
    from minbasis.fit.data import check_config_type_weights

    frames = [molecule("H2O") for _ in range(3)]
    for k, f in enumerate(frames):
        f.rattle(0.05, seed=k)
        f.info["energy"] = -1.0 * k
    b = mb.Basis.ace(["H", "O"], 4.0, 2, 1, 2)
    with pytest.raises(mb.MinbasisError, match=message):
        fit_linear(b, frames, forces_key=None, config=LinearFitConfig(config_type_weights=weights))
    with pytest.raises(LabelError, match=message):
        check_config_type_weights(weights, ["default"] * 3)


def test_cache_entries_have_checksums_and_bad_ones_are_recomputed(tmp_path, monkeypatch):
    """An edited cache entry used to change a basis silently (a 3-feature "minimal" basis)."""
    monkeypatch.setenv("MINBASIS_CACHE_DIR", str(tmp_path))
    full = mb.Basis.ace(["H", "O"], 4.0, [3, 2], [0, 2], 2)
    ref = full.minimal()
    entries = {p: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert len(entries) == 2 and all("checksum" in e for e in entries.values())
    mini_path = next(p for p, e in entries.items() if e["key"]["what"] == "minimal")
    ace_path = next(p for p, e in entries.items() if e["key"]["what"] == "ace_candidates")

    def tamper(path, edit):
        e = json.loads(path.read_text())
        edit(e)
        path.write_text(json.dumps(e))

    good = mini_path.read_text()
    for edit in (lambda e: e["value"].update(kept=[0, 1, 2]),                      # edited, checksum stale
                 lambda e: e["value"].update(kept="all"),                           # wrong type
                 lambda e: e["value"].update(kept=[0, 10**6]),                      # index out of range
                 lambda e: e.pop("checksum")):                                      # no checksum
        mini_path.write_text(good)
        tamper(mini_path, edit)
        assert full.minimal() == ref
        assert json.loads(mini_path.read_text())["value"]["kept"] == json.loads(good)["value"]["kept"]
    # an entry whose checksum was recomputed but whose indices are out of range is still refused
    from minbasis.invariants.cache import entry_checksum

    def forge(e):
        e["value"]["kept"] = [0, 10**6]
        e["checksum"] = entry_checksum(e["key"], e["value"])

    tamper(mini_path, forge)
    assert full.minimal() == ref
    # candidate list: terms pointing at a channel that does not exist
    good_ace = ace_path.read_text()

    def forge_ace(e):
        e["value"][0]["factors"][0][0] = 7
        e["checksum"] = entry_checksum(e["key"], e["value"])

    tamper(ace_path, forge_ace)
    assert mb.Basis.ace(["H", "O"], 4.0, [3, 2], [0, 2], 2) == full
    ace_path.write_text("[1, 2")          # truncated
    assert mb.Basis.ace(["H", "O"], 4.0, [3, 2], [0, 2], 2) == full
    assert json.loads(ace_path.read_text())["checksum"] == json.loads(good_ace)["checksum"]


def test_binary_or_model_file_as_basis(tmp_path, basis):
    np.savez(tmp_path / "m.npz", a=np.arange(3))
    with pytest.raises(FileFormatError, match="zip/.npz archive"):
        mb.Basis.load(tmp_path / "m.npz")
    (tmp_path / "bin.json").write_bytes(bytes(range(256)))
    with pytest.raises(FileFormatError, match="binary file"):
        mb.Basis.load(tmp_path / "bin.json")
    with pytest.raises(FileFormatError, match="folder"):
        mb.Basis.load(tmp_path)


# -- command line ---------------------------------------------------------------------------------
def _cli(capsys, *args):
    code = cli_main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, basis):
    d = tmp_path_factory.mktemp("cli_inputs")
    frames = []
    for k in range(4):
        m = molecule("CH3CH2OH")
        m.rattle(0.05, seed=k)
        m.info["energy"] = -0.1 * k
        m.arrays["forces"] = np.zeros((len(m), 3))
        frames.append(m)
    import ase.io

    ase.io.write(d / "data.extxyz", frames)
    basis.save(d / "basis.json")
    return d


@pytest.mark.parametrize("args, message", [
    (["basis", "--species", "H", "--r-cut", "inf", "--n-max", 2, "--l-max", 1, "--order", 2], "r_cut must be a finite"),
    (["basis", "--species", "H", "--r-cut", 4, "--n-max", 2, "--l-max", 1, "--order", 2, "--radial-scale", "nan"],
     "radial_scale must be a finite"),
    (["basis", "--species", "H", "--r-cut", 1e-300, "--n-max", 2, "--l-max", 1, "--order", 2], "r_cut must be"),
    (["basis", "--species", "H", "--r-cut", 4, "--n-max", 1, "--l-max", 40, "--order", 3], "too large"),
    (["basis", "--species", "Xx", "--r-cut", 4, "--n-max", 1, "--l-max", 1, "--order", 2], "unknown chemical"),
])
def test_cli_bad_hyper_parameters_exit_2_with_one_line(capsys, tmp_path, args, message):
    code, _, err = _cli(capsys, *args, "-o", tmp_path / "b.json")
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("minbasis: error:")
    assert not (tmp_path / "b.json").exists()


def test_cli_model_or_binary_file_as_basis(capsys, cli_files, tmp_path):
    np.savez(tmp_path / "model.npz", a=np.arange(3))
    code, _, err = _cli(capsys, "describe", cli_files / "data.extxyz", "--basis", tmp_path / "model.npz",
                        "-o", tmp_path / "f.npz")
    assert code == 2 and "not a basis JSON" in err and err.count("\n") == 1


@pytest.mark.parametrize("seed_args", [["fit", "DATA", "--basis", "BASIS", "--model", "mlp", "--seed", "-1"],
                                       ["demo", "--seed", "-3"]])
def test_cli_negative_seed(capsys, cli_files, seed_args):
    args = [str(cli_files / "data.extxyz") if a == "DATA" else str(cli_files / "basis.json") if a == "BASIS" else a
            for a in seed_args]
    with pytest.raises(SystemExit) as exc:
        cli_main(args + ["-o", "x.npz"] if args[0] == "fit" else args)
    assert exc.value.code == 2 and "seeds must be >= 0" in capsys.readouterr().err


def test_cli_config_type_weights(capsys, cli_files, tmp_path):
    for w, msg in (('{"default": 1e300}', "between 0 and 1e+150"), ('{"default": 0}', "nothing is left to fit"),
                   ('[1]', "mapping"), ('{"default": "x"}', "must be a number"), ("{", "JSON object")):
        code, _, err = _cli(capsys, "fit", cli_files / "data.extxyz", "--basis", cli_files / "basis.json",
                            "--config-type-weights", w, "-o", tmp_path / "m.npz")
        assert code == 2 and msg in err and err.count("\n") == 1, (w, err)


def test_cli_bad_fit_config(capsys, cli_files, tmp_path):
    for body, msg in (('seed = -1\n', "seed must be >= 0"), ('piwsl_tc = [1]\n', "piwsl_tc must be a number"),
                      ('model = 5\n', "model must be a non-empty string"), ('modle = "linear-mf"\n', "unknown setting"),
                      ('data = "x"\n', "data must be [[data]] tables"),
                      ('[[data]]\nfile = 3\nfidelity = "high"\n', "file must be a file name"),
                      ('[[data]]\nfile = "data.extxyz"\nfidelity = "h"\nenergy_key = "energy"\nweights = 3\n',
                       "weights must be a table"),
                      ('[[data]]\nfile = "data.extxyz"\nfidelity = "h"\nenergy_key = "energy"\n'
                       'weights = {energy = "x"}\n', "weight energy must be a number")):
        if "[[data]]" not in body and "data =" not in body:
            body += '[[data]]\nfile = "data.extxyz"\nfidelity = "high"\nenergy_key = "energy"\n'
        cfg = cli_files / "fit.toml"
        cfg.write_text(body)
        code, _, err = _cli(capsys, "fit", "--config", cfg, "--basis", cli_files / "basis.json", "-o", tmp_path / "m.npz")
        assert code == 2 and msg in err and err.count("\n") == 1, (body, err)


@pytest.mark.parametrize("command", [
    ["describe", "DATA", "--basis", "BASIS", "-o", "DATA"],
    ["describe", "DATA", "--basis", "BASIS", "-o", "BASIS"],
    ["fit", "DATA", "--basis", "BASIS", "-o", "DATA"],
    ["fit", "DATA", "--basis", "BASIS", "-o", "BASIS"],
    ["fit", "--data", "DATA:fidelity=high:energy_key=energy", "--basis", "BASIS", "-o", "DATA"],
    ["report", "--basis", "BASIS", "--data", "DATA", "-o", "DATA"],
    ["report", "--basis", "BASIS", "-o", "BASIS"],
    ["compare", "DATA", "--basis", "BASIS", "-o", "BASIS"],
])
def test_cli_never_overwrites_its_inputs(capsys, cli_files, tmp_path, command):
    import shutil

    data, basis_file = tmp_path / "data.extxyz", tmp_path / "basis.json"
    shutil.copy(cli_files / "data.extxyz", data)
    shutil.copy(cli_files / "basis.json", basis_file)
    before = {p: p.read_bytes() for p in (data, basis_file)}
    args = [a.replace("DATA", str(data)).replace("BASIS", str(basis_file)) for a in command]
    code, _, err = _cli(capsys, *args)
    assert code == 2 and "would destroy the input" in err and err.count("\n") == 1
    assert all(p.read_bytes() == b for p, b in before.items())
    # also through a symbolic link to the input
    link = tmp_path / "link.extxyz"
    link.symlink_to(data)
    args = [a.replace(str(data), str(link)) if a == str(data) and i == len(args) - 1 else a for i, a in enumerate(args)]
    if args[-1] == str(link):
        code, _, err = _cli(capsys, *args)
        assert code == 2 and "would destroy the input" in err
    assert all(p.read_bytes() == b for p, b in before.items())


def test_report_json_next_to_html_never_overwrites_an_input(capsys, cli_files, tmp_path):
    import shutil

    data = tmp_path / "r.json"   # a data file named like the report's JSON
    shutil.copy(cli_files / "basis.json", tmp_path / "basis.json")
    data.write_bytes((cli_files / "data.extxyz").read_bytes())
    code, _, err = _cli(capsys, "report", "--basis", tmp_path / "basis.json", "--data", data, "-o", tmp_path / "r.html")
    assert code == 2 and "would destroy the input" in err


# -- files: modes, partial files ------------------------------------------------------------------
def test_written_files_follow_the_umask_or_keep_the_old_mode(tmp_path, basis):
    from minbasis.files import atomic_write_text

    old = os.umask(0o022)
    try:
        basis.save(tmp_path / "new.json")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
        os.umask(0o077)
        basis.save(tmp_path / "private.json")
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
        (tmp_path / "shared.json").write_text("{}")
        os.chmod(tmp_path / "shared.json", 0o664)
        basis.save(tmp_path / "shared.json")     # keeps the mode of the file it replaces
        assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o664
        os.umask(0o022)
        atomic_write_text(tmp_path / "t.txt", "x")
        assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_cli_outputs_follow_umask(capsys, cli_files, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "f.npz"
        code, _, _ = _cli(capsys, "describe", cli_files / "data.extxyz", "--basis", cli_files / "basis.json", "-o", out)
        assert code == 0 and stat.S_IMODE(out.stat().st_mode) == 0o644
        os.chmod(out, 0o640)
        code, _, _ = _cli(capsys, "describe", cli_files / "data.extxyz", "--basis", cli_files / "basis.json", "-o", out)
        assert code == 0 and stat.S_IMODE(out.stat().st_mode) == 0o640
        model = tmp_path / "m.npz"
        code, _, _ = _cli(capsys, "fit", cli_files / "data.extxyz", "--basis", cli_files / "basis.json",
                          "--solver", "ridge", "-o", model)
        assert code == 0 and stat.S_IMODE(model.stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_partial_files_of_killed_writers_are_cleaned_up(tmp_path, basis):
    """kill -9 during a write leaves a hidden partial file; the next write of that target removes it."""
    target = tmp_path / "basis.json"
    code = f"""
        import os, signal
        from minbasis import files
        def write(fh):
            fh.write(b"x" * 1000)
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        files.atomic_write({str(target)!r}, write)
        """
    r = _in_subprocess(code)
    assert r.returncode == -9
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".basis.json.")]
    assert len(partial) == 1 and not target.exists()
    alive = tmp_path / f".basis.json.{os.getpid()}.abcd.tmp"      # a concurrent writer that is alive
    alive.write_text("in progress")
    basis.save(target)
    assert mb.Basis.load(target) == basis
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".basis.json."))
    assert left == [alive.name]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    from minbasis.files import atomic_write

    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_absurd_label_magnitudes():
    from minbasis.fit import get_labels

    a = molecule("H2O")
    a.info["e"] = 1e300
    with pytest.raises(LabelError, match="beyond"):
        get_labels([a], "e", None)
    a.arrays["f"] = np.full((3, 3), 1e200)
    with pytest.raises(LabelError, match="beyond"):
        get_labels([a], None, "f")
