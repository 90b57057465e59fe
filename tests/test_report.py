"""Completeness reports (issue 5): the numbers on the page equal the Python API's, the literature
pairs are degenerate for the lower orders by construction, invalid inputs give clear errors, and
the page renders in headless Chromium (skipped without Chromium).

Bases are small (tens to a few hundred features) so the module runs in well under a minute.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import ase.build
import ase.io
import numpy as np
import pytest

import minbasis as mb
from minbasis.cli import main
from minbasis.demo import bundled_ethanol_path
from minbasis.report import completeness, json_path_for
from minbasis.local_completeness import centre_jacobian, numerical_rank, rank_bound, random_environment
from minbasis.report.pairs import (
    DISTINGUISH_RTOL,
    correlation_multiset,
    literature_pairs,
    nigam_pair,
    pozdnyakov_pair,
    relative_distance,
)

SETTINGS = ["--species", "H,C,O", "--r-cut", "4", "--n-max", "3,2,2", "--l-max", "0,2,2", "--order", "3"]


def _basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2, 2], [0, 2, 2], 3)


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    """One `minbasis report` run with --data and --pair; returns (folder, report dict, html text)."""
    d = tmp_path_factory.mktemp("report")
    frames = ase.io.read(bundled_ethanol_path(), index=":10")
    ase.io.write(d / "data.extxyz", frames)
    a, b = pozdnyakov_pair(4.0, "H")
    ase.io.write(d / "a.xyz", a)
    ase.io.write(d / "b.xyz", b)
    code = main(["report", *SETTINGS, "--data", str(d / "data.extxyz"), "--pair", str(d / "a.xyz"), str(d / "b.xyz"),
                 "-o", str(d / "report.html")])
    assert code == 0
    rep = json.loads((d / "report.json").read_text())
    return d, rep, (d / "report.html").read_text()


# ---------------------------------------------------------------------------------------------
# the page and the JSON agree with the Python API
# ---------------------------------------------------------------------------------------------
def test_files_written_atomically_and_self_contained(cli_report):
    d, rep, page = cli_report
    assert sorted(p.name for p in d.iterdir()) == ["a.xyz", "b.xyz", "data.extxyz", "report.html", "report.json"]
    assert rep["format"] == "minbasis.report" and rep["schema_version"] == 1
    assert json_path_for(d / "report.html") == d / "report.json"
    # no network resources: every image is inline, no scripts, no external links to load
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 10
    assert "LOCAL" in rep["shows"]["statement"] and "GLOBAL" in rep["shows"]["statement"]
    assert "What this page shows" in page


def test_summary_and_pruning_equal_api(cli_report):
    _, rep, page = cli_report
    full = _basis()
    mini = full.minimal()
    rec = mini.spec.pruning
    sm = rep["summary"]
    assert sm["n_linear"] == full.n_features and sm["n_minimal"] == mini.n_features
    assert sm["n_variables"] == rec["n_variables"] and sm["max_rank"] == rec["max_rank"] and sm["rank"] == rec["rank"]
    assert {r["order"]: r["n_linear"] for r in sm["by_order"]} == full.counts_by_order()
    assert {r["order"]: r["n_minimal"] for r in sm["by_order"]} == mini.counts_by_order()
    assert sum(r["n_minimal"] for r in sm["by_l"]) == sum(r["n_minimal"] for r in sm["by_species"]) == mini.n_features
    assert rep["basis"]["hash_full"] == full.spec.hash and rep["basis"]["hash_minimal"] == mini.spec.hash
    # the page shows these numbers
    for v in (sm["n_linear"], sm["n_minimal"], sm["max_rank"]):
        assert f'<div class="v">{v}</div>' in page
    # every decision: same candidate, outcome and recorded gap as spec.pruning; re-evaluation agrees
    pr = rep["pruning"]
    assert [(d["index"], d["accepted"], d["gap"]) for d in pr["decisions"]] == \
        [(d["index"], d["accepted"], d["gap"]) for d in rec["decisions"]]
    assert pr["n_decisions_disagreeing"] == 0 and pr["max_gap_mismatch"] < 1e-8
    assert {d["index"] for d in pr["dropped"]} == set(range(full.n_features)) - set(rec["kept"])
    assert pr["singular_values"] == rec["singular_values"]
    assert pr["missing"]["n_missing"] == sm["rank_deficit"]


def test_dropped_dependencies_equal_direct_least_squares(cli_report):
    from minbasis.invariants.pruning import invariant_gradients, moment_variables

    _, rep, _ = cli_report
    full = _basis()
    rec = full.minimal().spec.pruning
    invs = list(full.spec.invariants)
    variables = moment_variables(invs)
    points = np.random.default_rng(rec["seed"]).standard_normal((rec["n_points"], len(variables)))
    p = rep["pruning"]["point"]
    accepted = [d["index"] for d in rec["decisions"] if d["accepted"]]
    item = next(d for d in rep["pruning"]["dropped"] if d["order"] == 3 and d["reason"] != "rank saturated")
    k = item["n_accepted_before"]
    G = invariant_gradients([invs[i] for i in accepted[:k]] + [invs[item["index"]]], points[p:p + 1], variables)[0]
    c, *_ = np.linalg.lstsq(G[:k].T, G[k], rcond=None)
    resid = np.linalg.norm(G[:k].T @ c - G[k]) / np.linalg.norm(G[k])
    assert item["residual"] == pytest.approx(resid, abs=1e-12) and resid < 1e-9
    share = np.abs(c) * np.linalg.norm(G[:k], axis=1) / np.linalg.norm(G[k])
    top = item["contributors"][0]
    assert top["index"] == accepted[int(np.argmax(share))]
    assert top["share"] == pytest.approx(share.max(), rel=1e-8)
    assert top["coefficient"] == pytest.approx(c[int(np.argmax(share))], rel=1e-8)


def test_neighbour_rank_equals_direct_jacobian(cli_report):
    _, rep, _ = cli_report
    full = _basis()
    mini = full.minimal()
    nr = rep["neighbour_rank"]
    assert nr["k_rank"] == rep["summary"]["rank"]
    rng = np.random.default_rng(rep["settings"]["seed"])
    for pt in nr["points"][:6]:  # same seed, same sequence of environments
        atoms = random_environment(pt["n_neighbours"], full.r_cut, list(full.species), rng)
        r = numerical_rank(centre_jacobian(atoms, mini), atoms.positions[1:])["rank"]
        assert r == pt["rank_minimal"] == rank_bound(nr["k_rank"], pt["n_neighbours"])
    top = nr["points"][-1]
    assert top["bound_3n_minus_3"] >= nr["k_rank"] and top["rank_minimal"] == nr["k_rank"]  # saturation reached


def test_pairs_equal_direct_feature_distances(cli_report):
    _, rep, page = cli_report
    full = _basis()
    mini = full.minimal()
    orders = np.array([inv["order"] for inv in full.spec.invariants])
    pairs = {p["key"]: p for p in rep["pairs"]}
    assert set(pairs) == {"pozdnyakov2020", "nigam2024", "user"}
    for lit in literature_pairs(full.r_cut, "H"):
        p = pairs[lit["key"]]
        xa, xb = mb.describe(lit["a"], full)[0], mb.describe(lit["b"], full)[0]
        for s in p["centre"]["subsets"]:
            if s["basis"] == "full":
                m = orders <= s["max_order"]
                assert s["relative_distance"] == pytest.approx(relative_distance(xa[m], xb[m]), rel=1e-12, abs=1e-30)
            else:
                d = relative_distance(mb.describe(lit["a"], mini)[0], mb.describe(lit["b"], mini)[0])
                assert s["relative_distance"] == pytest.approx(d, rel=1e-12, abs=1e-30)
            assert s["distinguished"] == (s["relative_distance"] > DISTINGUISH_RTOL)
        assert p["verdict"] in page.replace("&#x27;", "'")
    poz, nig = pairs["pozdnyakov2020"], pairs["nigam2024"]
    # the literature's statement, measured: ν ≤ 2 fails and ν ≤ 3 succeeds on the Pozdnyakov-type pair;
    # a ν ≤ 3 basis cannot separate the Nigam-type pair
    assert poz["lower_orders_degenerate"] and poz["first_distinguishing_order"] == 3 and poz["agrees_with_literature"]
    assert nig["lower_orders_degenerate"] and nig["first_distinguishing_order"] is None and nig["agrees_with_literature"]
    # the user's pair is the Pozdnyakov-type pair written to xyz files (8 decimals): same centre distances
    user = pairs["user"]
    assert [s["relative_distance"] for s in user["centre"]["subsets"]] == \
        pytest.approx([s["relative_distance"] for s in poz["centre"]["subsets"]], rel=1e-6, abs=1e-12)
    assert user["structure"] is not None and not user["centre_only"]


def test_data_and_cost_sections_equal_api(cli_report):
    from minbasis.report.dataset import effective_rank, standardise

    _, rep, page = cli_report
    full = _basis()
    frames = ase.io.read(bundled_ethanol_path(), index=":10")
    d = rep["data"]
    assert d["n_atoms"] == 90 and d["n_frames"] == 10
    Z, keep, _ = standardise(mb.describe(frames, full))
    er = effective_rank(Z)
    assert d["full"]["effective_rank"]["numerical_rank"] == er["numerical_rank"]
    assert d["full"]["effective_rank"]["entropy_rank"] == pytest.approx(er["entropy_rank"], rel=1e-10)
    assert d["full"]["n_constant_features"] == int((~keep).sum())
    vo = d["full"]["variance_by_order"]
    assert [v["order"] for v in vo] == [1, 2, 3] and vo[-1]["cumulative"] == 1.0
    assert sum(v["new"] for v in vo) == pytest.approx(1.0)
    cond = d["minimal"]["conditioning"]
    assert cond["n_atoms"] == 90 and len(cond["log10_kappa"]) == 90
    assert all(v is None or v >= 0 for v in cond["log10_kappa"])
    for pair in d["minimal"]["closest_pairs"]["pairs"]:
        assert 0 <= pair["frame_a"] < 10 and 0 <= pair["atom_a"] < 9
        assert frames[pair["frame_a"]][pair["atom_a"]].symbol == pair["species"]
    c = rep["cost"]
    assert c["n_atoms"] == 90 and c["full"]["us_per_atom"] > 0 and c["minimal"]["us_per_atom"] > 0
    assert f"{d['full']['effective_rank']['numerical_rank']}" in page


# ---------------------------------------------------------------------------------------------
# the literature pairs really are degenerate for the lower orders (our construction)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("builder, k", [(pozdnyakov_pair, 2), (nigam_pair, 3)])
def test_pairs_degenerate_by_construction_without_any_basis(builder, k):
    a, b = builder(5.0, "H")
    for nu in range(1, k + 1):
        A, B = correlation_multiset(a, nu), correlation_multiset(b, nu)
        assert A.shape == B.shape and np.allclose(A, B, atol=1e-7), f"ν = {nu} correlations differ"
    A, B = correlation_multiset(a, k + 1), correlation_multiset(b, k + 1)
    assert not np.allclose(A, B, atol=1e-3), f"ν = {k + 1} correlations should differ"


@pytest.mark.parametrize("builder, k, basis_args", [
    (pozdnyakov_pair, 2, (["H"], 5.0, [3, 3], [0, 6], 2)),           # l up to 6: degeneracy is not a truncation effect
    (nigam_pair, 3, (["H"], 5.0, [2, 2, 2], [0, 4, 4], 3)),
])
def test_pairs_degenerate_in_features_for_lower_order(builder, k, basis_args):
    basis = mb.Basis.ace(*basis_args)
    a, b = builder(basis.r_cut, "H")
    xa, xb = mb.describe(a, basis)[0], mb.describe(b, basis)[0]
    assert relative_distance(xa, xb) < 1e-12
    assert np.linalg.norm(xa) > 0


def test_pairs_distinguished_by_next_order():
    basis = mb.Basis.ace(["H"], 5.0, [1, 1, 1, 1], [0, 3, 3, 3], 4)  # one radial channel, l ≤ 3
    orders = np.array([inv["order"] for inv in basis.spec.invariants])
    for builder, k in ((pozdnyakov_pair, 2), (nigam_pair, 3)):
        a, b = builder(basis.r_cut, "H")
        xa, xb = mb.describe(a, basis)[0], mb.describe(b, basis)[0]
        assert relative_distance(xa[orders <= k], xb[orders <= k]) < 1e-12
        assert relative_distance(xa[orders == k + 1], xb[orders == k + 1]) > 1e-4
        # the two environments are not related by a rotation or reflection
        assert not np.allclose(correlation_multiset(a, k + 1), correlation_multiset(b, k + 1), atol=1e-3)


def test_single_channel_report_with_order4_and_minimal_basis_input(tmp_path):
    """A minimal basis file as input gives the same numbers as its full basis; 13 invariants, min(13, 3N − 3)."""
    full = mb.Basis.ace(["H"], 5.0, [1, 1, 1, 1], [0, 3, 3, 3], 4)
    mini = full.minimal()
    mini.save(tmp_path / "mini.json")
    rep = completeness(str(tmp_path / "mini.json"), n_neighbours=[1, 2, 3, 4, 5, 6, 8])
    assert rep["basis"]["given_variant"] == "minimal"
    assert rep["summary"]["n_minimal"] == 13 and rep["summary"]["max_rank"] == 13
    assert rep["summary"]["locally_complete_in_moments"]
    assert [p["rank_minimal"] for p in rep["neighbour_rank"]["points"]] == [1, 3, 6, 9, 12, 13, 13]
    nig = next(p for p in rep["pairs"] if p["key"] == "nigam2024")
    assert nig["first_distinguishing_order"] == 4 and nig["agrees_with_literature"]
    assert rep["summary"] == completeness(full, n_neighbours=[1, 2])["summary"]


def test_minimal_basis_can_lose_a_global_distinction():
    """Functional independence is local: the minimal basis may not separate a pair the full one does,
    and the verdict must then say so."""
    rep = completeness(mb.Basis.ace(["H"], 5.0, [3, 3, 2, 2], [0, 4, 3, 3], 4), n_neighbours=[1, 2])
    nig = next(p for p in rep["pairs"] if p["key"] == "nigam2024")
    assert nig["first_distinguishing_order"] == 4 and nig["agrees_with_literature"]
    mini = next(s for s in nig["centre"]["subsets"] if s["basis"] == "minimal")
    assert nig["minimal_distinguishes"] == mini["distinguished"]
    if not nig["minimal_distinguishes"]:
        assert "locally but not globally" in nig["verdict"]
        assert any("locally but not globally" in f for f in rep["findings"])


def test_cartesian_two_species_report(tmp_path):
    if not hasattr(mb.Basis, "cartesian"):
        pytest.skip("Basis.cartesian is not available")
    basis = mb.Basis.cartesian(["C", "H"], 4.0, n_max=1, l_max=2, max_factors=3)
    rep = completeness(basis, n_neighbours=[1, 2, 4, 8], output=tmp_path / "cart.html")
    assert rep["basis"]["family"] == "cartesian" and rep["summary"]["n_enumerated"] is None
    assert rep["summary"]["n_linear"] == basis.n_features and rep["summary"]["n_minimal"] == basis.minimal().n_features
    assert rep["pruning"]["n_decisions_disagreeing"] == 0
    for p in rep["pairs"]:
        assert p["lower_orders_degenerate"]
    assert (tmp_path / "cart.html").exists() and (tmp_path / "cart.json").exists()


# ---------------------------------------------------------------------------------------------
# invalid inputs: one-line errors from the CLI, clear exceptions from the API
# ---------------------------------------------------------------------------------------------
def _run(capsys, *args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) <= 1 and "\r" not in err, "an error must be one line on standard error"
    return code, err


def test_basis_file_from_another_version(capsys, tmp_path):
    b = _basis()
    d = b.spec.to_dict()
    d["format_version"] = 99
    (tmp_path / "old.json").write_text(json.dumps(d))
    code, err = _run(capsys, "report", "--basis", tmp_path / "old.json", "-o", tmp_path / "r.html")
    assert code == 2 and err.startswith("minbasis: error:") and "format version 99" in err and "\n" not in err
    with pytest.raises(mb.FileFormatError, match="format version"):
        completeness(str(tmp_path / "old.json"))
    assert not (tmp_path / "r.html").exists()


def test_species_not_in_basis(capsys, tmp_path):
    ase.io.write(tmp_path / "cu.extxyz", ase.build.bulk("Cu", "fcc", a=3.6))
    code, err = _run(capsys, "report", *SETTINGS, "--data", tmp_path / "cu.extxyz", "-o", tmp_path / "r.html")
    assert code == 2 and "['Cu']" in err and "not in the basis species" in err and "cu.extxyz" in err
    with pytest.raises(mb.SpeciesError, match="not in the basis species"):
        completeness(_basis(), data=[ase.build.bulk("Cu", "fcc", a=3.6)])
    a, _ = pozdnyakov_pair(4.0, "H")
    cu = a.copy()
    cu[1].symbol = "Cu"
    with pytest.raises(mb.SpeciesError, match="Cu"):
        completeness(_basis(), pair=(a, cu))


def test_pair_with_different_atom_counts(capsys, tmp_path):
    a, b = pozdnyakov_pair(4.0, "H")
    ase.io.write(tmp_path / "a.xyz", a)
    ase.io.write(tmp_path / "b.xyz", b[:4])
    code, err = _run(capsys, "report", *SETTINGS, "--pair", tmp_path / "a.xyz", tmp_path / "b.xyz", "-o",
                     tmp_path / "r.html")
    assert code == 2 and "same number of atoms" in err and "a.xyz has 5" in err and "b.xyz has 4" in err
    with pytest.raises(mb.StructureError, match="same number of atoms"):
        completeness(_basis(), pair=(a, b[:4]))
    ase.io.write(tmp_path / "two.xyz", [a, b])
    code, err = _run(capsys, "report", *SETTINGS, "--pair", tmp_path / "two.xyz", tmp_path / "a.xyz", "-o",
                     tmp_path / "r.html")
    assert code == 2 and "one structure per file" in err


def test_missing_or_conflicting_basis_settings(capsys, tmp_path):
    code, err = _run(capsys, "report", "--species", "H", "--r-cut", 4, "-o", tmp_path / "r.html")
    assert code == 2 and "missing" in err and "n_max" in err
    _basis().save(tmp_path / "b.json")
    code, err = _run(capsys, "report", "--basis", tmp_path / "b.json", *SETTINGS, "-o", tmp_path / "r.html")
    assert code == 2 and "not both" in err


# ---------------------------------------------------------------------------------------------
# the page renders in a real browser
# ---------------------------------------------------------------------------------------------
def test_html_renders_in_headless_chromium(cli_report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    d, rep, _ = cli_report
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]
    url = (d / "report.html").resolve().as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>Completeness report</h1>" in dom.stdout and "Key findings" in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") == 10
    shot = tmp_path / "shot.png"
    res = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,2000", url],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000
