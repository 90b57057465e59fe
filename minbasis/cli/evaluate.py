"""``minbasis evaluate``: errors of a fitted model on labelled structures (table or JSON, parity plot)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import add_label_keys, info, label_keys, path_option, resolve_stress
from ._config import add_config_option

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to ``sub``; returns its parser."""
    p = sub.add_parser("evaluate", help="errors of a fitted model on labelled structures",
                       description="Print energy, force and stress MAE/RMSE overall and per config_type; with "
                                   "--json print one JSON object (n_structures, energy_mae, energy_rmse [eV per "
                                   "structure], energy_mae_per_atom [eV/atom], forces_mae, forces_rmse [eV/Å], "
                                   "stress_mae, stress_rmse [eV/Å³], per_config_type). For a model with a "
                                   "committee (linear, Bayesian solver) the JSON also has calibration: the "
                                   "fractions of errors within 1σ and 2σ of the predicted std "
                                   "(forces_within_1sigma, forces_within_2sigma, energy_within_1sigma, "
                                   "energy_within_2sigma; 0.68 and 0.95 when calibrated).")
    p.add_argument("model", help="model .npz written by `minbasis fit`")
    p.add_argument("data", help="labelled structures")
    add_label_keys(p)
    p.add_argument("--fidelity", default=None,
                   help="multi-fidelity models: the level of theory to predict (e.g. high); an unknown one is an error")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    path_option(p.add_argument("--parity", default=None, metavar="PLOT.png",
                               help="also write a parity plot (predicted vs reference energy per atom and force "
                                    "components, coloured by config_type, PNG)"))
    add_config_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Predict, compare with the labels and print the errors; returns the exit code."""
    from ..fit import error_metrics, get_labels, load_model, read_structures
    from ..fit.metrics import format_metrics_table

    model = load_model(args.model)
    frames = read_structures(args.data)
    e_key, f_key, s_key = label_keys(args)
    s_key = resolve_stress(frames, s_key)
    labels = get_labels(frames, e_key, f_key, s_key)
    pred = model.predict(frames, fidelity=args.fidelity, progress=not args.json)
    metrics = error_metrics(frames, labels, pred)
    if args.parity:
        from ..fit.metrics import parity_plot

        parity_plot(frames, labels, pred, args.parity, title=f"{Path(args.model).name} on {Path(args.data).name}")
        if not args.json:
            info(f"wrote {args.parity}")
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_metrics_table(metrics))
    return 0
