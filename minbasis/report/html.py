"""The HTML page of a completeness report: one self-contained file, readable on a laptop and printable.

Rendered from the report dictionary alone (so every number on the page is in the JSON); plots
are embedded PNGs (:mod:`minbasis.report.plots`), styles are inline, there are no scripts,
fonts or other network resources.
"""

from __future__ import annotations

import html as _html
from typing import Iterable

import numpy as np

from . import plots

__all__ = ["render"]

_CSS = """
:root { --ink:#1d2430; --muted:#5b6573; --line:#dfe3e8; --accent:#3465a4; --bad:#b3261e; --good:#1e7d6f; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       max-width: 1080px; margin: 0 auto; padding: 28px 32px 60px; line-height: 1.5; font-size: 15px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 38px 0 10px; padding-bottom: 4px;
     border-bottom: 2px solid var(--line); } h3 { font-size: 16px; margin: 22px 0 6px; }
.sub { color: var(--muted); font-size: 13.5px; }
.box { border-left: 4px solid var(--accent); background: #f4f7fb; padding: 10px 16px; margin: 16px 0; }
.box.warn { border-color: #e08a1e; background: #fdf6ec; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0; }
.kpi { flex: 1 1 150px; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: #fff; }
.kpi .v { font-size: 24px; font-weight: 650; } .kpi .l { color: var(--muted); font-size: 12.5px; }
ul.findings li { margin: 6px 0; }
.row { display: flex; flex-wrap: wrap; gap: 6px 34px; align-items: flex-start; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; width: auto; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right; vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; } td.t, th.t { text-align: left; }
tr:nth-child(even) td { background: #fbfcfd; }
figure { margin: 12px 0 18px; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.yes { color: var(--good); font-weight: 600; } .no { color: var(--bad); font-weight: 600; }
.tag { display: inline-block; font-size: 11.5px; padding: 1px 7px; border-radius: 10px; background: #e8eef7;
       color: var(--accent); font-weight: 600; margin-right: 6px; vertical-align: middle; }
.tag.g { background: #fdeee0; color: #a35a00; }
nav { font-size: 13.5px; margin: 10px 0 0; } nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
code { font-size: 12.5px; background: #f1f3f5; padding: 0 4px; border-radius: 3px; }
.small { font-size: 12.5px; color: var(--muted); }
@media print { body { max-width: none; padding: 0; font-size: 11pt; } nav { display: none; }
  h2 { break-before: auto; break-after: avoid; } figure, table, .box, .kpis { break-inside: avoid; }
  a { color: inherit; text-decoration: none; } }
"""


def _e(x) -> str:
    return _html.escape(str(x), quote=True)


def _num(v, digits: int = 3) -> str:
    """Compact number formatting used everywhere on the page."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}".replace(",", " ")
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.{max(digits - 1, 1)}e}"
    return f"{v:.{digits}g}"


def _yn(v) -> str:
    if v is None:
        return "–"
    return '<span class="yes">yes</span>' if v else '<span class="no">no</span>'


def _table(headers: Iterable[str], rows: Iterable[Iterable], left: int = 1, left_cols: Iterable[int] = ()) -> str:
    headers = list(headers)
    lc = set(range(left)) | set(left_cols)
    out = ["<table><tr>" + "".join(f'<th class="{"t" if i in lc else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
           + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="{"t" if i in lc else ""}">{c}</td>' for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _fig(b64: str, caption: str, alt: str) -> str:
    return (f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{b64}"/>'
            f"<figcaption>{caption}</figcaption></figure>")


def _kpi(value, label) -> str:
    return f'<div class="kpi"><div class="v">{value}</div><div class="l">{_e(label)}</div></div>'


def _basis_line(rep: dict) -> str:
    b = rep["basis"]
    h = b["hyper"] or {}
    if b["family"] == "ace":
        args = f"ν ≤ {h.get('order')}, n_max {h.get('n_max')}, l_max {h.get('l_max')}"
    elif b["family"] == "cartesian":
        args = (f"≤ {h.get('max_factors')} tensor factors, n_max {h.get('n_max')}, l_max {h.get('l_max')}, "
                f"{h.get('symmetric')} tensors")
    else:
        args = f"{b['n_full']} custom invariants"
    return f"{b['family']} basis · species {', '.join(b['species'])} · r_cut {b['r_cut']} Å · {args}"


def _summary_section(rep: dict) -> str:
    sm = rep["summary"]
    ace = sm["family"] == "ace"
    order_word = "ν" if ace else "factors"
    kp = [_kpi(_num(sm["n_enumerated"]) if sm["n_enumerated"] is not None else "–", "candidates enumerated"),
          _kpi(_num(sm["n_linear"]), "linearly independent (full basis)"),
          _kpi(_num(sm["n_minimal"]), "functionally independent (minimal)"),
          _kpi(_num(sm["max_rank"]), f"theoretical maximum V − 3 (V = {sm['n_variables']})"),
          _kpi(f"×{sm['reduction_factor']:.2f}" if sm["reduction_factor"] else "–", "reduction factor full / minimal")]
    s = [f'<div class="kpis">{"".join(kp)}</div>']
    if sm["n_enumerated"] is None:
        s.append('<p class="small">"Candidates enumerated" (products before linear pruning) is counted for ACE bases '
                 "only; for this family the enumerated candidates are the linearly independent ones.</p>")
    else:
        s.append('<p class="small">Candidates enumerated: products of ν moments with Σ l even, one per recursive '
                 "Clebsch–Gordan coupling path, before symmetrisation over identical factors and linear pruning "
                 "(Drautz, Phys. Rev. B 99, 014104, 2019; Dusson et al., J. Comput. Phys. 454, 110946, 2022).</p>")
    status = ("reaches" if sm["locally_complete_in_moments"] else "does <b>not</b> reach")
    s.append(f'<div class="box{"" if sm["locally_complete_in_moments"] else " warn"}">The minimal basis {status} the '
             f"maximum V − 3 = {sm['max_rank']} (rank {sm['rank']}, deficit {sm['rank_deficit']}).</div>")
    rows = [[f"{order_word} = {r['order']}", _num(r.get("n_enumerated")), _num(r["n_linear"]), _num(r["n_minimal"]),
             _num(r["n_dropped"])] for r in sm["by_order"]]
    rows.append(["<b>total</b>", _num(sm["n_enumerated"]), f"<b>{_num(sm['n_linear'])}</b>",
                 f"<b>{_num(sm['n_minimal'])}</b>", _num(sm["n_dropped"])])
    s.append('<div class="row"><div>')
    s.append("<h3>Per correlation order" + ("" if ace else " (tensor factors)") + "</h3>")
    s.append(_table(["order", "enumerated", "lin. indep.", "minimal", "dropped"], rows))
    s.append("</div><div><h3>Per l <span class='small'>(largest l of its moments)</span></h3>")
    s.append(_table(["l", "V_l", "lin. indep.", "minimal", "dropped"],
                    [[f"l = {r['l']}", _num(r.get("n_variables")), _num(r["n_linear"]), _num(r["n_minimal"]),
                      _num(r["n_dropped"])] for r in sm["by_l"]]))
    s.append("</div><div><h3>Per species channel <span class='small'>(neighbour species coupled)</span></h3>")
    s.append(_table(["channel", "lin. indep.", "minimal", "dropped"],
                    [[_e(r["channel"]), _num(r["n_linear"]), _num(r["n_minimal"]), _num(r["n_dropped"])]
                     for r in sm["by_species"]]))
    s.append("</div></div>")
    s.append('<p class="small">Moment components per species: ' + ", ".join(
        f"{_e(v['species'])} {v['n_variables']}" for v in sm["variables_by_species"]) + f" (V = {sm['n_variables']}).</p>")
    return "".join(s)


def _pruning_section(rep: dict) -> str:
    pr, sm = rep["pruning"], rep["summary"]
    s = ['<p><span class="tag">local</span>Greedy pruning walks the candidates in cost order and keeps one only if '
         "its exact gradient row ∂f/∂A raises the rank at one of the random points in moment space "
         f"({pr['n_points']} points, seed {pr['seed']}, threshold tol = {pr['tol']:.0e} on the relative residual, "
         "the decision's <i>gap</i>). The final set is re-verified with a full SVD.</p>"]
    s.append(_fig(plots.rank_growth(rep), f"Rank of the accepted set after each candidate; the dashed line is the "
                  f"maximum V − 3 = {sm['max_rank']}. Shaded bands: correlation orders.", "rank growth"))
    s.append(_fig(plots.singular_values(rep), "Singular values of the row-normalised Jacobian ∂f/∂A: the kept "
                  "invariants at each pruning point (red) and all candidates at the point used below (grey) — the "
                  f"cliff after index {sm['rank']} is the functional dependence of the dropped ones.", "singular values"))
    s.append(_fig(plots.gap_histogram(rep), "Decision gaps. Accepted candidates (blue) have gaps far above tol, "
                  "dropped ones (red) at round-off; the margin between them says how clear-cut the pruning was. "
                  "Candidates met after the rank saturated were not tested; their residual is recomputed here (grey).",
                  "gap histogram"))
    acc = sorted((d for d in pr["decisions"] if d["accepted"]), key=lambda d: d["gap"])[:8]
    dep = sorted((d for d in pr["decisions"] if not d["accepted"] and d["reason"] != "rank saturated"),
                 key=lambda d: -d["gap"])[:8]
    s.append("<h3>Closest calls</h3>")
    s.append(_table(["invariant", "order", "decision", "gap (recorded)", "gap (re-evaluated)"],
                    [[_e(d["label"]), d["order"], "kept" if d["accepted"] else "dropped", _num(d["gap"]),
                      _num(d["gap_recomputed"])] for d in acc + dep]))
    s.append(f'<p class="small">Re-evaluation: gaps recomputed at the recorded points agree with the record to '
             f"{_num(pr['max_gap_mismatch'])} (relative, accepted decisions); decisions not reproduced: "
             f"{pr['n_decisions_disagreeing']}.</p>")
    dropped = pr["dropped"]
    s.append(f"<h3>Dropped invariants and what they depend on ({len(dropped)} in all)</h3>")
    s.append(f"<p>For a dropped invariant g, its gradient row is expanded by least squares on the rows of the "
             f"invariants accepted before it, at pruning point {pr['point'] + 1}: g ≈ Σ c<sub>i</sub> g<sub>i</sub>. "
             "Listed are the main contributors with their share |c<sub>i</sub>|·‖g<sub>i</sub>‖/‖g‖ (shares above 1 "
             "mean cancellation among contributors) and the residual ‖g − Σ c<sub>i</sub> g<sub>i</sub>‖/‖g‖. "
             "Shown: six dropped invariants per order, evenly spread over the candidate list; the JSON lists all.</p>")
    shown = []
    for nu in sorted({d["order"] for d in dropped}):
        of = [d for d in dropped if d["order"] == nu]
        picks = sorted({int(round(x)) for x in (np.linspace(0, len(of) - 1, 6) if len(of) > 6 else range(len(of)))})
        shown += [of[i] for i in picks]
    rows = []
    for d in shown:
        contrib = "<br/>".join(f"{_e(c['label'])} <span class='small'>({_num(c['share'], 2)})</span>"
                               for c in d["contributors"][:3]) or "–"
        why = "dependent on accepted set" if d["reason"] != "rank saturated" else "rank already saturated"
        rows.append([_e(d["label"]), d["order"], why, _num(d["gap"]), _num(d["residual"]), contrib])
    s.append(_table(["dropped invariant", "order", "why", "gap", "residual", "main contributors (share)"], rows,
                    left_cols=(2, 5)))
    miss = pr["missing"]
    if miss["n_missing"]:
        s.append(f'<h3>Directions no invariant sees ({miss["n_missing"]})</h3>')
        s.append(f"<p>Besides the {miss['n_rotations']} rotation directions"
                 f"{' (verified orthogonal to every gradient)' if miss['rotations_verified'] else ''}, the null space of "
                 f"the minimal Jacobian has {miss['n_missing']} more directions. Their weight lies on:</p>")
        s.append(_table(["l", "weight"], [[f"l = {x['l']}", _num(x["weight"], 2)] for x in miss["by_l"]]))
        s.append('<p class="small">Largest single moments: ' + ", ".join(
            f"{_e(x['moment'])} ({_num(x['weight'], 2)})" for x in miss["top_moments"]) + ".</p>")
    return "".join(s)


def _neighbour_section(rep: dict) -> str:
    nr = rep["neighbour_rank"]
    s = ['<p><span class="tag">local</span>A centre with N random neighbours (inside 0.25–0.9 r<sub>cut</sub>, species '
         "cycling through the basis species, seeded) is evaluated with <code>minbasis.describe(gradients=True)</code>; "
         "the Jacobian of the centre's features with respect to the 3N neighbour coordinates is row-normalised and "
         "its numerical rank taken. Rotations about the centre leave every feature unchanged, so the rank is at most "
         "3N − 3 (1 for N = 1), and at most K, the functional rank in moment space. The same rotations give the "
         "round-off floor: ‖J t‖ for the exact null directions t is measured, and singular values above 30× that "
         "floor count.</p>"]
    s.append(_fig(plots.neighbour_rank(rep), "Measured rank against N with the 3N − 3 line and K.", "neighbour rank"))
    rows = [[p["n_neighbours"], p["bound_3n_minus_3"], p["bound"], p["rank_minimal"], _num(p["rank_full"]),
             _num(p["smallest_kept_minimal"]), _num(p["noise_floor_minimal"]), _yn(p["saturated"])] for p in nr["points"]]
    s.append(_table(["N", "3N − 3", "min(K, 3N − 3)", "rank (minimal)", "rank (full)", "smallest kept σ/σ_max",
                     "round-off floor", "reaches bound"], rows, left=0))
    s.append('<p class="small">Small kept singular values (≪ 1) at large N mean that some deformations change the '
             "features only weakly: locally complete, but ill-conditioned.</p>")
    return "".join(s)


def _pairs_section(rep: dict) -> str:
    pairs = rep["pairs"]
    thr = rep["settings"]["distinguish_rtol"]
    s = ['<p><span class="tag g">global</span>Pairs of <i>different</i> environments that descriptors truncated at a '
         "low correlation order cannot tell apart. The relative feature distance is ‖x<sub>A</sub> − x<sub>B</sub>‖ / "
         "(½(‖x<sub>A</sub>‖ + ‖x<sub>B</sub>‖)) over the features of the centre (atom 0) of the listed subset: "
         f"<i>ν ≤ k</i> keeps the invariants of the full basis up to order k. A pair counts as distinguished above "
         f"{thr:.0e}; exactly degenerate pairs give float64 round-off (≲ 1e-15).</p>",
         '<p class="small">The literature pairs are this package\'s own constructions with the property described in '
         "the papers (identical low-order correlations, different structure), not coordinates copied from them; the "
         "construction proves the degeneracy (see <code>minbasis/report/pairs.py</code>), and the test-suite checks it "
         "without any basis, on the exact multisets of Gram matrices of ordered neighbour tuples.</p>"]
    s.append(_fig(plots.pair_structures(rep), "The environments compared (centre black; red atoms differ between A and B).",
                  "pair structures"))
    s.append(_fig(plots.pair_distances(rep), "Relative feature distance of each pair by truncation order and for the "
                  "minimal basis (red outline). Grey: identical to round-off; teal: distinguished.", "pair distances"))
    for p in pairs:
        res = p["centre" if p["centre_only"] else "structure"]
        agree = p.get("agrees_with_literature")
        badge = ""
        if agree is not None:
            badge = ('<span class="yes">agrees with the literature</span>' if agree
                     else '<span class="no">differs from the literature — see verdict</span>')
        s.append(f"<h3>{_e(p['name'])} {badge}</h3>")
        if p.get("reference"):
            s.append(f'<p class="small">Reference: {_e(p["reference"])}. Construction: {_e(p["construction"])}</p>')
        else:
            s.append(f'<p class="small">{_e(p["construction"])}</p>')
        rows = [[_e(x["label"]), _num(x["n_features"]), _num(x["relative_distance"]), _yn(x["distinguished"])]
                for x in res["subsets"]]
        s.append(_table(["features", "count", "relative distance", "distinguished"], rows))
        if not p["centre_only"]:
            rows = [[_e(x["label"]), _num(x["relative_distance"]), _yn(x["distinguished"])]
                    for x in p["centre"]["subsets"]]
            s.append('<p class="small">Above: all atoms, matched by species. Centre (atom 0) only:</p>')
            s.append(_table(["features", "relative distance", "distinguished"], rows))
        sd = p["structural_difference"]
        dl = sd["distance_lists_max_diff"]
        if dl is not None and dl < 1e-9:
            geo = ("Geometry: the sorted lists of all interatomic distances of A and B are identical (a homometric "
                   "pair: no descriptor built from distances alone can separate them)")
        else:
            geo = f"Geometry: the sorted interatomic distances differ by up to {_num(dl)} Å"
        if p["kind"] == "literature":
            geo += (f"; yet B is not a rotated or reflected copy of A: the anchors have distinct distances from the "
                    f"centre, so such an isometry would fix them, and the best of those leaves an RMSD of "
                    f"{_num(sd['rmsd_best_signs'])} Å.")
        else:
            geo += f"; RMSD after the best axis sign flip and atom matching {_num(sd['rmsd_best_signs'])} Å."
        s.append(f'<p class="small">{geo}</p>')
        s.append(f'<div class="box{"" if agree in (True, None) else " warn"}"><b>Verdict.</b> {_e(p["verdict"])}</div>')
    return "".join(s)


def _data_section(rep: dict) -> str:
    d = rep["data"]
    if not d:
        return "<p>No data given (<code>--data DATA.extxyz</code> adds effective rank, variance per order, Jacobian " \
               "condition numbers, closest pairs of environments and the cost per atom).</p>"
    s = [f"<p><b>{_e(d.get('name', ''))}</b>: {d['n_frames']} structures, {d['n_atoms']} atoms "
         f"({d['n_atoms_used']} used; {d['full']['conditioning']['n_atoms']} and "
         f"{d['minimal']['conditioning']['n_atoms']} for the Jacobians of the full and minimal bases); species "
         + ", ".join(f"{_e(k)} {v}" for k, v in d["species_counts"].items()) + ". All quantities use standardised "
         "features (centred, unit variance over the atoms).</p>"]
    rows = []
    for name in ("full", "minimal"):
        x = d[name]
        er, q = x["effective_rank"], x["conditioning"]["quantiles"]
        rows.append([name, _num(x["n_features"]), _num(x["n_constant_features"]), _num(er["numerical_rank"]),
                     _num(er["entropy_rank"]), _num(er["dims_99"]), _num(q.get("median")), _num(q.get("max")),
                     _num(x["conditioning"]["n_rank_deficient"])])
    s.append(_table(["basis", "features", "constant on data", "numerical rank", "entropy rank", "dims for 99 %",
                     "median log₁₀ κ", "max log₁₀ κ", "rank-deficient atoms"], rows))
    s.append(_fig(plots.data_spectrum(rep), "Singular values of the standardised feature matrix (atoms × features). "
                  "Entropy rank: exp of the entropy of the normalised singular values (Roy &amp; Vetterli 2007).",
                  "data spectrum"))
    s.append(_fig(plots.variance_by_order(rep), "Fraction of the variance of all standardised features lying in the "
                  "span of the features of order ≤ ν, split into what each order adds: what order ν carries that "
                  "lower orders cannot express linearly.", "variance by order"))
    rows = [[f"ν = {a['order']}", _num(a["n_features"]), _num(a["new"], 3), _num(a["cumulative"], 4),
             _num(b["n_features"]), _num(b["new"], 3), _num(b["cumulative"], 4)]
            for a, b in zip(d["full"]["variance_by_order"], d["minimal"]["variance_by_order"])]
    s.append(_table(["order", "full: features", "new", "cumulative", "minimal: features", "new", "cumulative"], rows))
    s.append(_fig(plots.condition_numbers(rep), "Per atom: κ = σ<sub>1</sub>/σ<sub>r</sub> of the Jacobian of its "
                  "standardised features with respect to its neighbours' positions, r = min(K, 3n − 3). Large κ: "
                  "some deformation of that environment barely changes the features.", "condition numbers"))
    for name in ("minimal", "full"):
        cp = d[name]["closest_pairs"]
        s.append(f"<h3>Closest distinct environments — {name} basis</h3>")
        s.append(f'<p class="small">Distance: root-mean-square difference of the standardised features; median '
                 f"nearest-neighbour distance over atoms {_num(cp['median_nn_distance'])}. Congruent duplicates "
                 f"skipped: {cp['n_congruent_skipped']}. Geometric difference: largest change of the sorted "
                 "interatomic distances of the two environments (Å); a small feature distance with a large "
                 "geometric difference would be a practical degeneracy.</p>")
        s.append(_table(["frame A", "atom A", "frame B", "atom B", "species", "feature distance", "× median",
                         "geometric diff. (Å)"],
                        [[p["frame_a"], p["atom_a"], p["frame_b"], p["atom_b"], _e(p["species"]), _num(p["distance"]),
                          _num(p["relative_to_median"]), _num(p["geometry_difference"])] for p in cp["pairs"]], left=0))
    return "".join(s)


def _cost_section(rep: dict) -> str:
    c = rep["cost"]
    if not c:
        return "<p>No data given: pass <code>--data</code> to measure the evaluation time per atom.</p>"
    rows = [[name, _num(c[name]["n_features"]), _num(c[name]["us_per_atom"]), _num(c[name]["us_per_atom_gradients"])]
            for name in ("full", "minimal")]
    return (f"<p>Wall-clock time of <code>minbasis.describe</code> on {c['n_atoms']} atoms of the data (neighbour lists "
            f"included; best of {c['repeats']} runs), with gradients on {c['n_atoms_gradients']} atoms (one run); "
            f"{c['threads']} Numba thread(s), on the machine that wrote this report, which may have been shared.</p>"
            + _table(["basis", "features", "µs / atom", "µs / atom with gradients"], rows)
            + f"<p>Minimal basis speed-up (features only): ×{_num(c['speedup'])}.</p>")


def render(rep: dict) -> str:
    """The HTML page (str) of a report dict returned by :func:`minbasis.report.completeness`."""
    sections = [("summary", "1. Summary", _summary_section(rep)),
                ("pruning", "2. Pruning decisions: what was dropped and why", _pruning_section(rep)),
                ("local", "3. Local completeness w.r.t. neighbour positions", _neighbour_section(rep)),
                ("pairs", "4. Global distinguishability: environment pairs", _pairs_section(rep)),
                ("data", "5. On the data", _data_section(rep)),
                ("cost", "6. Cost", _cost_section(rep))]
    nav = "".join(f'<a href="#{k}">{_e(t)}</a>' for k, t, _ in sections)
    findings = "".join(f"<li>{_e(f)}</li>" for f in rep["findings"])
    b = rep["basis"]
    timings = ", ".join(f"{_e(k)} {v:.1f} s" for k, v in rep["timings"].items())
    body = "".join(f'<h2 id="{k}">{_e(t)}</h2>{c}' for k, t, c in sections)
    refs = ("<ul class='small'><li>minbasis documentation, docs/theory/completeness.md (local vs global completeness).</li>"
            "<li>Allen, Shinkle, Bujack, Lubbers, arXiv 2503.23515; Bujack et al., arXiv 2503.21939 (Jacobian rank, "
            "functional independence).</li><li>S. N. Pozdnyakov et al., Phys. Rev. Lett. 125, 166001 (2020).</li>"
            "<li>J. Nigam et al., APL Mach. Learn. 2, 016110 (2024).</li>"
            "<li>O. Roy, M. Vetterli, The effective rank, EUSIPCO 2007.</li></ul>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>minbasis completeness report — {_e(", ".join(b["species"]))}</title><style>{_CSS}</style></head>
<body>
<h1>Completeness report</h1>
<div class="sub">{_e(_basis_line(rep))}<br/>full basis hash {_e(b["hash_full"][:12])} · minimal {_e(b["hash_minimal"][:12])}
 · minbasis {_e(rep["minbasis_version"])} · {_e(rep["created"])}</div>
<nav>{nav}</nav>
<div class="box"><b>What this page shows.</b> {_e(rep["shows"]["statement"])}</div>
{_fig(plots.overview(rep), "At a glance. Left: functional rank during pruning against the maximum V − 3 (section 2). "
      "Middle: rank with respect to neighbour positions against N, with 3N − 3 (section 3). Right: relative feature "
      "distance of each pair of environments by truncation order (log scale; dashed: threshold; section 4).",
      "overview")}
<h2 id="findings">Key findings</h2><ul class="findings">{findings}</ul>
{body}
<h2 id="method">Method, sources, provenance</h2>
<p class="small">Every number on this page is in the JSON file written next to it (layout: <code>minbasis/report/schema.md</code>,
schema version {rep["schema_version"]}). Time to compute: {timings}.</p>
{refs}
</body></html>
"""
