"""Completeness analysis reports: what a basis can and cannot tell apart (docs/guide/reports.md).

:func:`completeness` analyses a basis — or the settings to build an ACE basis — and returns a
JSON-ready dictionary; :func:`write_report` writes it as a self-contained HTML page (plots
embedded as PNG, no network access, printable) plus the JSON file with every number shown on
the page. ``minbasis report`` on the command line does both. The JSON layout is documented in
``minbasis/report/schema.md`` (``format`` "minbasis.report", ``schema_version`` 1).

Two different questions are answered, and the page says which is which:

* **Local completeness** (Jacobian rank; sections "Summary", "Pruning", "Neighbour rank"):
  whether every small change of the moments (and of the neighbour positions) changes some
  feature. Allen, Shinkle, Bujack, Lubbers, arXiv 2503.23515; Bujack et al., arXiv 2503.21939.
* **Global distinguishability** (section "Pairs"): whether two *different* environments get
  different features, on pairs built to fool low correlation orders (Pozdnyakov et al., Phys.
  Rev. Lett. 125, 166001 (2020); Nigam et al., APL Mach. Learn. 2, 016110 (2024)) and on a
  user's own pair. Full local rank does not imply it.

Submodules: :mod:`.summary` (counts, pruning decisions, dependencies), :mod:`minbasis.local_completeness` (rank
against the number of neighbours), :mod:`.pairs` (the literature pairs), :mod:`.dataset`
(data analyses and cost), :mod:`.plots`, :mod:`.html`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import MinbasisError

__all__ = ["completeness", "write_report", "render_html", "SCHEMA_VERSION", "json_path_for"]

#: Version of the report JSON layout (``schema.md``).
SCHEMA_VERSION = 1

SHOWS = ("This report shows LOCAL completeness — Jacobian rank with respect to the moment components and to "
         "the neighbour positions (sections 1–3) — and GLOBAL distinguishability on specific pairs of "
         "environments (section 4). Full Jacobian rank means no small deformation of an environment is "
         "invisible; it does not prove that two different environments never get the same features. The pair "
         "tests can show such failures; passing them does not prove global completeness.")


def _build_basis(basis, species, r_cut, n_max, l_max, order):
    from ..basis import Basis

    settings = {"species": species, "r_cut": r_cut, "n_max": n_max, "l_max": l_max, "order": order}
    given = {k: v for k, v in settings.items() if v is not None}
    if basis is not None:
        if given:
            raise MinbasisError(f"give either a basis or the settings to build one, not both (got basis and "
                                f"{sorted(given)})")
        if isinstance(basis, (str, os.PathLike)):
            return Basis.load(basis)
        if not isinstance(basis, Basis):
            raise MinbasisError(f"basis must be a minbasis.Basis or a path to a basis JSON file, got "
                                f"{type(basis).__name__}")
        return basis
    missing = [k for k, v in settings.items() if v is None]
    if missing:
        raise MinbasisError(f"give a basis (--basis basis.json) or all of species, r_cut, n_max, l_max, order; "
                            f"missing {missing}")
    return Basis.ace(species, r_cut, n_max, l_max, order)


def _atoms_json(atoms, name: str, roles: Sequence[str] | None = None) -> dict:
    return {"name": name, "symbols": atoms.get_chemical_symbols(), "positions": atoms.positions.round(10).tolist(),
            "roles": list(roles) if roles is not None else None}


def _measure_pair(a, b, full, minimal, *, centre_only: bool) -> dict:
    from .pairs import compare_structures, structural_difference

    out = {"centre_only": centre_only, "centre": compare_structures(a, b, full, minimal, centre_only=True),
           "structure": None if centre_only else compare_structures(a, b, full, minimal, centre_only=False),
           "structural_difference": structural_difference(a, b)}
    return out


def _pairs_section(full, minimal, pair, progress_cb) -> list[dict]:
    from .pairs import literature_pairs, pair_verdict, read_pair

    symbol = full.species[0]
    out = []
    for lit in literature_pairs(full.r_cut, symbol):
        item = {"name": lit["name"], "key": lit["key"], "kind": "literature", "reference": lit["reference"],
                "construction": lit["construction"], "expected_degenerate_up_to": lit["degenerate_up_to"],
                "structures": {"a": _atoms_json(lit["a"], "A", lit["roles"]), "b": _atoms_json(lit["b"], "B", lit["roles"])}}
        item.update(_measure_pair(lit["a"], lit["b"], full, minimal, centre_only=True))
        item.update(pair_verdict(item))
        out.append(item)
    if pair is not None:
        if len(pair) != 2:
            raise MinbasisError(f"pair must be two structures (files or ase.Atoms), got {len(pair)}")
        a, b, names = read_pair(pair[0], pair[1], full.species)
        item = {"name": f"your pair: {names[0]} / {names[1]}", "key": "user", "kind": "user", "reference": None,
                "construction": "structures given by the user; atom 0 is taken as the centre of the 'centre' "
                                "comparison, all atoms (matched by species) in the 'structure' comparison",
                "expected_degenerate_up_to": None,
                "structures": {"a": _atoms_json(a, names[0]), "b": _atoms_json(b, names[1])}}
        item.update(_measure_pair(a, b, full, minimal, centre_only=False))
        item.update(pair_verdict(item))
        out.append(item)
    return out


def _sci(v: float | None) -> str:
    return "–" if v is None else ("0" if v == 0 else f"{v:.1e}")


def _findings(rep: dict) -> list[str]:
    """Plain-language key findings shown at the top of the page (also stored in the JSON)."""
    sm, pr, nr = rep["summary"], rep["pruning"], rep["neighbour_rank"]
    f = []
    red = f" (×{sm['reduction_factor']:.1f} fewer)" if sm["reduction_factor"] else ""
    s = (f"Local completeness in moment space: {sm['n_minimal']} of the {sm['n_linear']} linearly independent "
         f"invariants are functionally independent{red}. The maximum for its V = {sm['n_variables']} moment "
         f"components is {sm['max_rank']}")
    if sm["locally_complete_in_moments"]:
        s += " and the minimal basis reaches it: the basis is locally complete in moment space."
    else:
        miss = pr["missing"]
        s += (f"; the basis reaches only {sm['rank']}, so it is NOT locally complete in moment space "
              f"({sm['rank_deficit']} directions are invisible to every invariant")
        if miss.get("by_l"):
            top = max(miss["by_l"], key=lambda x: x["weight"])
            s += f"; {100 * top['weight']:.0f} % of their weight lies on the l = {top['l']} moments"
        s += "). Raising n_max/l_max at the higher orders, or the order, closes the gap."
    f.append(s)
    acc = [d["gap"] for d in pr["decisions"] if d["accepted"]]
    dep = [d["gap"] for d in pr["decisions"] if not d["accepted"] and d["reason"] != "rank saturated"]
    if acc:
        s = f"Every pruning decision was clear-cut: smallest accepted gap {_sci(min(acc))}"
        if dep:
            s += f", largest gap of a dropped candidate {_sci(max(dep))}"
        s += f" (threshold {pr['tol']:.0e})"
        if pr["n_decisions_disagreeing"]:
            s = (f"{pr['n_decisions_disagreeing']} pruning decisions are NOT reproduced when re-evaluated; smallest "
                 f"accepted gap {_sci(min(acc))}")
        f.append(s + f"; re-evaluated gaps agree with the record to {pr['max_gap_mismatch']:.0e} (relative).")
    pts = nr["points"]
    bad = [p for p in pts if not p["saturated"]]
    if not bad:
        f.append(f"Local completeness w.r.t. neighbour positions: for every N tested ({pts[0]['n_neighbours']}…"
                 f"{pts[-1]['n_neighbours']} neighbours) the Jacobian rank equals min(K = {nr['k_rank']}, 3N − 3).")
    else:
        f.append(f"Local completeness w.r.t. neighbour positions: the rank stays below min(K, 3N − 3) for N = "
                 f"{', '.join(str(p['n_neighbours']) for p in bad)} (measured "
                 f"{', '.join(str(p['rank_minimal']) for p in bad)}).")
    for p in rep["pairs"]:
        f.append(f"Global test, {p['name']}: {p['verdict']}")
    d = rep.get("data")
    if d:
        m, fu = d["minimal"], d["full"]
        q = m["conditioning"]["quantiles"]
        s = (f"On the data ({d['n_atoms_used']} atoms): effective (entropy) rank {fu['effective_rank']['entropy_rank']:.1f} "
             f"(full) and {m['effective_rank']['entropy_rank']:.1f} (minimal); 99 % of the standardised variance in "
             f"{fu['effective_rank']['dims_99']} and {m['effective_rank']['dims_99']} components.")
        if q:
            s += f" Jacobian condition number (minimal basis): median 10^{q['median']:.1f}, worst 10^{q['max']:.1f}"
            w = m["conditioning"]["worst"]
            if w:
                s += f" (frame {w['frame']}, atom {w['atom']})"
            s += "."
        if m["conditioning"]["n_rank_deficient"]:
            s += f" {m['conditioning']['n_rank_deficient']} atoms have a rank-deficient Jacobian."
        cp = m["closest_pairs"]["pairs"]
        if cp:
            c = cp[0]
            s += (f" Closest distinct environments (minimal basis): frame {c['frame_a']} atom {c['atom_a']} and frame "
                  f"{c['frame_b']} atom {c['atom_b']} ({c['species']}), at {c['relative_to_median']:.2f}× the median "
                  f"nearest-neighbour distance")
            s += "." if c["geometry_difference"] is None else f", geometric difference {c['geometry_difference']:.2f} Å."
        f.append(s)
    c = rep.get("cost")
    if c:
        f.append(f"Cost on the data: {c['full']['us_per_atom']:.1f} µs/atom (full, {c['full']['n_features']} features) vs "
                 f"{c['minimal']['us_per_atom']:.1f} µs/atom (minimal, {c['minimal']['n_features']}); with gradients "
                 f"{c['full']['us_per_atom_gradients']:.0f} vs {c['minimal']['us_per_atom_gradients']:.0f} µs/atom.")
    return f


def _clean(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def completeness(basis=None, *, species: Sequence[str] | None = None, r_cut: float | None = None,
                 n_max=None, l_max=None, order: int | None = None, data=None, pair: Sequence | None = None,
                 output: str | os.PathLike | None = None, seed: int = 0, n_neighbours: Sequence[int] | None = None,
                 max_atoms: int = 2500, max_jacobian_atoms: int = 600, timing_repeats: int = 3,
                 progress: bool = False) -> dict:
    """Completeness analysis of a basis: counts, pruning decisions, local rank, literature pairs, data, cost.

    Parameters
    ----------
    basis : minbasis.Basis or path, optional
        A full or minimal basis (or its JSON file). Alternatively give ``species``, ``r_cut``,
        ``n_max``, ``l_max`` and ``order`` to build :meth:`minbasis.Basis.ace`.
    species, r_cut, n_max, l_max, order
        Settings of :meth:`minbasis.Basis.ace` (r_cut in Å; n_max/l_max an int or one per order).
    data : path or list of ase.Atoms, optional
        Structures for the data sections (effective rank, variance per order, Jacobian condition
        numbers, closest pairs) and the cost section.
    pair : (a, b), optional
        A user's pair of structures (paths with one structure each, or ase.Atoms), same atoms.
    output : path, optional
        Also write the HTML page there and the JSON next to it (:func:`write_report`).
    seed : int
        Seed of the random neighbour environments.
    n_neighbours : list of int, optional
        N values of the rank-against-N curve (default: up to past saturation, at most 100).
    max_atoms, max_jacobian_atoms : int
        Atoms of the data used for the feature-matrix analyses / the Jacobian condition numbers.
    timing_repeats : int
        Repeats of the cost measurement (best time kept).
    progress : bool
        Print a progress bar (tqdm, standard error) over the sections.

    Returns
    -------
    dict
        The report (JSON-safe; layout in ``schema.md``): ``format``, ``schema_version``,
        ``minbasis_version``, ``created``, ``shows``, ``settings``, ``basis``, ``summary``,
        ``pruning``, ``neighbour_rank``, ``pairs``, ``data`` (or None), ``cost`` (or None),
        ``findings``, ``timings`` (seconds per section).

    Raises
    ------
    MinbasisError
        Missing or conflicting basis settings, or a minimal basis whose full basis cannot be rebuilt.
    FileFormatError
        A basis file that is corrupt or of another format version.
    SpeciesError
        Data or pair structures with species that are not in the basis.
    StructureError
        Unreadable structure files, or a pair whose structures have different atoms.

    Sources: docs/theory/completeness.md; Pozdnyakov et al., Phys. Rev. Lett. 125, 166001 (2020); Nigam et
    al., APL Mach. Learn. 2, 016110 (2024); Roy & Vetterli, EUSIPCO 2007 (effective rank).
    """
    from .._version import __version__
    from .. import local_completeness as local
    from . import dataset, summary

    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    # inputs first, so that a bad input fails at once with one line and no progress output
    t0 = time.perf_counter()
    b = _build_basis(basis, species, r_cut, n_max, l_max, order)
    full, minimal = summary.resolve_bases(b)
    frames = name = None
    if data is not None:
        frames, name = dataset.read_data(data, full.species)
    if pair is not None:
        from .pairs import read_pair

        if len(pair) != 2:
            raise MinbasisError(f"pair must be two structures (files or ase.Atoms), got {len(pair)}")
        read_pair(pair[0], pair[1], full.species)
    t_inputs = time.perf_counter() - t0
    steps = ["basis", "pruning", "neighbour rank", "pairs"] + (["data", "cost"] if data is not None else [])
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(total=len(steps), desc="report", unit="section")

    def step(name):
        if bar is not None:
            bar.set_postfix_str(name)

    def done(name, t0):
        timings[name] = time.perf_counter() - t0
        if bar is not None:
            bar.update(1)

    try:
        t0 = time.perf_counter() - t_inputs
        step("basis")
        summ = summary.basis_summary(full, minimal)
        done("basis", t0)
        t0 = time.perf_counter()
        step("pruning")
        prun = summary.pruning_analysis(full, minimal)
        done("pruning", t0)
        t0 = time.perf_counter()
        step("neighbour rank")
        nrank = local.neighbour_rank_curve(full, minimal, n_values=n_neighbours, seed=seed, k_rank=summ["rank"])
        done("neighbour rank", t0)
        t0 = time.perf_counter()
        step("pairs")
        pairs = _pairs_section(full, minimal, pair, step)
        done("pairs", t0)
        dat = cost = None
        if frames is not None:
            t0 = time.perf_counter()
            step("data")
            dat = dataset.data_analysis(frames, full, minimal, k_rank=summ["rank"], max_atoms=max_atoms,
                                        max_jacobian_atoms=max_jacobian_atoms)
            dat["name"] = name
            done("data", t0)
            t0 = time.perf_counter()
            step("cost")
            cost = dataset.cost_analysis(frames, full, minimal, repeats=timing_repeats)
            done("cost", t0)
    finally:
        if bar is not None:
            bar.close()
    from .pairs import DISTINGUISH_RTOL

    spec = full.spec
    rep = {
        "format": "minbasis.report", "schema_version": SCHEMA_VERSION, "minbasis_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "shows": {"local_completeness": True, "global_completeness": "pairs only", "statement": SHOWS},
        "settings": {"seed": int(seed), "distinguish_rtol": DISTINGUISH_RTOL, "max_atoms": int(max_atoms),
                     "max_jacobian_atoms": int(max_jacobian_atoms), "timing_repeats": int(timing_repeats)},
        "basis": {"family": spec.family, "species": list(spec.species), "r_cut": spec.r_cut, "hyper": spec.hyper,
                  "radial": spec.radial, "hash_full": spec.hash, "hash_minimal": minimal.spec.hash,
                  "given_variant": b.spec.variant, "n_full": full.n_features, "n_minimal": minimal.n_features},
        "summary": summ, "pruning": prun, "neighbour_rank": nrank, "pairs": pairs, "data": dat, "cost": cost,
    }
    rep["findings"] = _findings(rep)
    timings["total"] = time.perf_counter() - t_all
    rep["timings"] = timings
    rep = _clean(rep)
    if output is not None:
        write_report(rep, output)
    return rep


def json_path_for(html_path: str | os.PathLike) -> Path:
    """The JSON file written next to an HTML report: same name with suffix ``.json``."""
    p = Path(html_path)
    return p.with_suffix(".json") if p.suffix.lower() in (".html", ".htm") else p.with_name(p.name + ".json")


def render_html(report: dict) -> str:
    """The self-contained HTML page of a report dict (see :mod:`minbasis.report.html`)."""
    from .html import render

    return render(report)


def write_report(report: dict, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the HTML page to ``path`` and the JSON to :func:`json_path_for` ``(path)``, atomically.

    The page is rendered from ``report`` alone, so every number on it is in the JSON.

    Returns
    -------
    (html_path, json_path)

    Raises
    ------
    OSError
        If the folder cannot be written.
    """
    from ..spec import atomic_write_text

    html_path = Path(path)
    jpath = json_path_for(html_path)
    text = json.dumps(_clean(report), indent=1, allow_nan=False, ensure_ascii=False)
    page = render_html(report)
    for target, content in ((jpath, text), (html_path, page)):
        atomic_write_text(target, content)  # mode: the replaced file's, or 0666 & ~umask
    return html_path, jpath
