"""``minbasis compare``: learning curves of linear, polynomial and MLP fits on the same folds."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import MinbasisError
from ..files import check_not_input
from ._common import add_label_keys, info, int_list, label_keys, path_option, resolve_stress, seed
from ._config import add_config_flags, add_config_option, config_defaults

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to ``sub``; returns its parser (model options from
    :class:`~minbasis.fit.compare.CompareConfig`)."""
    from ..fit.compare import CompareConfig
    from ..fit.network import ACTIVATIONS

    cmp = config_defaults(CompareConfig)
    p = sub.add_parser("compare", help="linear or nonlinear? learning curves of linear, polynomial and MLP fits",
                       description="Fit, on the same folds and training sizes, a linear model on the full basis, "
                                   "a linear model on its minimal subset, a linear model on polynomial features of "
                                   "the minimal basis and a per-species MLP on the minimal basis; score each on the "
                                   "same held-out structures (energy and force MAE, features per species, "
                                   "parameters, fit time, evaluation µs/atom). Prints a table and writes JSON + PNG "
                                   "(learning curves, accuracy vs cost). Nothing is chosen on the held-out "
                                   "structures: the MLP early-stops on a validation part of each training subset.",
                       epilog="example: minbasis compare train.extxyz --basis basis.json --test-fraction 0.2 "
                              "--energy-key energy_high --forces-key forces_high --sizes 50,100,200,640 -o cmp.json")
    p.add_argument("data", help="labelled structures: the training pool (and the held-out part unless --test is given)")
    path_option(p.add_argument("--basis", required=True, help="the FULL basis JSON; its minimal subset is computed"))
    path_option(p.add_argument("--test", default=None,
                               help="held-out structures (default: a seeded --test-fraction of DATA)"))
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="held-out fraction of DATA when --test is not given (default 0.2)")
    add_label_keys(p)
    add_config_flags(p, CompareConfig, {
        "models": dict(to_arg=",".join,
                       help=f"comma-separated subset of {', '.join(cmp['models'])} (default: all)"),
        "sizes": dict(type=int_list, help="training sizes, comma-separated (default: pool/8, pool/4, pool/2, pool)"),
        "folds": dict(type=int, help="folds per training size ({default})"),
    })[0].config_list = True
    g = p.add_argument_group("models (CompareConfig)")
    add_config_flags(g, CompareConfig, {
        "poly_degree": dict(flag="--degree", type=int, help="poly: largest monomial degree ({default})"),
        "poly_inputs": dict(type=int, help="poly: products among the first K minimal features only (default: all)"),
        "mlp_hidden": dict(flag="--hidden", type=int_list, to_arg=list, help="mlp: hidden widths ({default})"),
        "mlp_activation": dict(flag="--activation", choices=list(ACTIVATIONS), help="mlp: activation ({default})"),
        "mlp_l2": dict(flag="--l2", type=float, help="mlp: weight decay ({default})"),
        "mlp_max_iter": dict(flag="--max-iter", type=int, help="mlp: L-BFGS iterations ({default})"),
        "mlp_patience": dict(flag="--patience", type=int,
                             help="mlp: validation checks (every 10 iterations) without improvement before stopping "
                                  "({default})"),
    })
    add_config_flags(p, CompareConfig, {
        "seed": dict(type=seed, help="seed of the held-out split and of the folds ({default})"),
    })
    p.add_argument("--threads", type=int, default=None,
                   help="Numba and BLAS threads (default: all; 1 gives per-core timings)")
    path_option(p.add_argument("-o", "--output", required=True,
                               help="output JSON; the plot is written next to it (.png)"))
    add_config_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Fit and score every model on every fold; print the table, write JSON + PNG; returns the exit code."""
    from ..basis import Basis
    from ..fit import read_structures
    from ..fit.compare import CompareConfig, compare_models, format_comparison, holdout_split, plot_comparison
    from ..io import atomic_write_text

    t0 = time.perf_counter()
    if args.threads is not None:
        import numba
        from threadpoolctl import threadpool_limits

        if args.threads < 1:
            raise MinbasisError(f"--threads must be >= 1, got {args.threads}")
        threadpool_limits(limits=args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    check_not_input([args.output, Path(args.output).with_suffix(".png")], [args.data, args.test, args.basis])
    basis = Basis.load(args.basis)
    frames = read_structures(args.data)
    if args.test is not None:
        pool, test = frames, read_structures(args.test)
    else:
        if not 0.0 < args.test_fraction < 1.0:
            raise MinbasisError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
        test_idx, pool_idx = holdout_split(len(frames), args.seed, args.test_fraction)
        pool, test = [frames[i] for i in pool_idx], [frames[i] for i in test_idx]
    e_key, f_key, s_key = label_keys(args)
    sizes = args.sizes if isinstance(args.sizes, list) or args.sizes is None else [args.sizes]
    hidden = args.hidden if isinstance(args.hidden, list) else [args.hidden]
    cfg = CompareConfig(models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
                        sizes=tuple(sizes) if sizes else None, folds=args.folds, seed=args.seed,
                        poly_degree=args.degree, poly_inputs=args.poly_inputs, mlp_hidden=tuple(hidden),
                        mlp_activation=args.activation, mlp_l2=args.l2, mlp_max_iter=args.max_iter,
                        mlp_patience=args.patience,
                        keys={"energy_key": e_key, "forces_key": f_key, "stress_key": resolve_stress(pool, s_key)})
    info(f"pool {len(pool)} structures, held out {len(test)}; full basis {basis.n_features} features per species",
         flush=True)
    results = compare_models(basis, pool, test, cfg, log=lambda line: info(line, flush=True))
    results["meta"] = {"data": str(args.data), "test": args.test, "basis": str(args.basis),
                       "seconds": time.perf_counter() - t0, "date": time.strftime("%Y-%m-%d %H:%M")}
    print("\n" + format_comparison(results))
    out = Path(args.output)
    atomic_write_text(out, json.dumps(results, indent=1))
    png = plot_comparison(results, out.with_suffix(".png"),
                          f"Linear or nonlinear? {Path(args.data).name}, {len(pool)}-structure pool, {len(test)} held "
                          f"out; bars: min–max over folds")
    info(f"wrote {out} and {png} in {time.perf_counter() - t0:.1f} s")
    return 0
