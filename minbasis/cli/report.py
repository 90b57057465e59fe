"""``minbasis report``: completeness analysis of a basis as a self-contained HTML page plus JSON."""

from __future__ import annotations

import argparse
import time

from ..files import check_not_input
from ._common import info, int_list, path_option, seed, species
from ._config import add_config_flags, add_config_option

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to ``sub``; returns its parser (defaults from
    :func:`~minbasis.report.completeness`)."""
    from ..report import completeness

    p = sub.add_parser("report", help="completeness analysis report (HTML page + JSON)",
                       description="Analyse what a basis can and cannot tell apart and write a self-contained HTML "
                                   "page (plots embedded, printable, no network needed) plus a JSON file with every "
                                   "number on it (same name, .json; layout in minbasis/report/schema.md). Shows LOCAL "
                                   "completeness (Jacobian rank in moment space and w.r.t. neighbour positions, which "
                                   "invariants were dropped and what they depend on) and GLOBAL distinguishability on "
                                   "environment pairs that fool low correlation orders (Pozdnyakov et al. 2020, "
                                   "Nigam et al. 2024) or on your own pair. With --data: effective rank, variance per "
                                   "order, Jacobian condition numbers, closest environments and cost per atom.",
                       epilog="example: minbasis report --species H,C,O --r-cut 5 --n-max 6,4,2 --l-max 0,3,2 "
                              "--order 3 --data ethanol.extxyz -o report.html")
    path_option(p.add_argument("--basis", default=None, help="basis JSON (full or minimal) written by `minbasis basis`; "
                                                             "or give the ACE settings below"))
    p.add_argument("--species", type=species, default=None, help="comma-separated chemical symbols, e.g. H,C,O")
    p.add_argument("--r-cut", type=float, default=None, help="cutoff radius in Å")
    p.add_argument("--n-max", type=int_list, default=None, help="radial functions per order (int or list)")
    p.add_argument("--l-max", type=int_list, default=None, help="largest l per order (int or list)")
    p.add_argument("--order", type=int, default=None, help="correlation order ν (1..4)")
    path_option(p.add_argument("--data", default=None, help="structures (extxyz, …) for the data and cost sections"))
    path_option(p.add_argument("--pair", nargs=2, metavar=("A", "B"), default=None,
                               help="your own pair of structures (one per file, same atoms) to test whether the basis "
                                    "tells them apart"))
    add_config_flags(p, completeness, {
        "seed": dict(type=seed, help="seed of the random neighbour environments ({default})"),
    })
    path_option(p.add_argument("-o", "--output", required=True,
                               help="output HTML file; the JSON is written next to it"))
    add_config_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Analyse the basis and write the report; returns the exit code."""
    from ..report import completeness, json_path_for, write_report

    check_not_input([args.output, json_path_for(args.output)],
                    [args.basis, args.data] + list(args.pair or []))
    t0 = time.perf_counter()
    rep = completeness(args.basis, species=args.species, r_cut=args.r_cut, n_max=args.n_max, l_max=args.l_max,
                       order=args.order, data=args.data, pair=args.pair, seed=args.seed, progress=True)
    html_path, json_path = write_report(rep, args.output)
    for line in rep["findings"]:
        print(f"- {line}")
    info(f"wrote {html_path} and {json_path} in {time.perf_counter() - t0:.1f} s")
    return 0
