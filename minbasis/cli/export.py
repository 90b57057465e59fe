"""``minbasis export``: a linear model in the ML-PACE ``.yace`` format (LAMMPS ``pair_style pace``)."""

from __future__ import annotations

import argparse
import json

from ._common import path_option
from ._config import add_config_flags, add_config_option

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to ``sub``; returns its parser (defaults from
    :func:`~minbasis.export.yace.yace_document`)."""
    from ..export.yace import yace_document

    p = sub.add_parser("export", help="write a linear model in the ML-PACE .yace format (LAMMPS pair_style pace)",
                       description="Convert a fitted linear ACE model (full or minimal basis, any species) into the "
                                   "ML-PACE C-tilde format read by LAMMPS `pair_style pace` (and pace/kk) and by "
                                   "python-ace: radial functions expanded in PACE's ChebLinear base functions, "
                                   "invariants rewritten in complex-harmonic moments times the fitted weights, E0 and "
                                   "the ZBL repulsive core included. MLP and polynomial models cannot be exported "
                                   "(they are nonlinear in the ACE functions). Prints a JSON summary with the radial "
                                   "expansion errors.",
                       epilog="example: minbasis export model.npz --format yace -o model.yace; then in LAMMPS: "
                              "pair_style pace; pair_coeff * * model.yace Cu Ni Al")
    p.add_argument("model", help="model .npz written by `minbasis fit`")
    p.add_argument("--format", choices=["yace"], default="yace", help="output format (yace: ML-PACE C-tilde YAML)")
    add_config_flags(p, yace_document, {
        "n_radial_base": dict(flag="--radial-base", type=int,
                              help="number of ChebLinear base functions the radial functions are expanded in "
                                   "({default})"),
    })
    path_option(p.add_argument("-o", "--output", required=True, help="output file, e.g. model.yace"))
    add_config_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Export the model and print the JSON summary; returns the exit code."""
    from ..export import export_yace
    from ..fit import load_model

    model = load_model(args.model)
    summary = export_yace(model, args.output, n_radial_base=args.radial_base)
    print(json.dumps(summary))
    return 0
