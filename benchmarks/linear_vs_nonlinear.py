"""Linear or nonlinear? Learning curves of three model families on the same folds (docs/theory/fitting.md).

Compared on ethanol MP2/cc-pVDZ energies and forces (``../shared/data/ethanol_mf.extxyz``,
keys ``energy_high`` / ``forces_high``), all built from one ACE hyper-parameter set
``Basis.ace(["H", "C", "O"], 5.0, n_max=[6, 4, 2], l_max=[0, 3, 2], order=3)`` (the basis
chosen for the README by ``benchmarks/accuracy.py --select``):

* ``linear_full``  — linear model on the full (linearly independent) ACE basis, 820 features
  per species, Bayesian ridge (:func:`minbasis.fit.fit_linear`);
* ``linear_minimal`` — the same on the minimal, functionally independent subset (174): a
  reference for what the nonlinear models add;
* ``poly`` — linear model on degree-2 polynomial features of the standardised minimal basis
  (the 174 features plus the products among the first ``K`` of them), Bayesian ridge
  (:func:`minbasis.fit.fit_polynomial`);
* ``mlp`` — one MLP per species on the 174 standardised minimal features, energy and force
  loss, L-BFGS with early stopping (:func:`minbasis.fit.fit_mlp`).

Splits (never any choice on the test frames):

* test: the first 20 % of ``default_rng(0).permutation(800)`` — the split of
  ``benchmarks/accuracy.py`` (160 frames); the other 640 are the training pool;
* fold r: ``perm = default_rng(1 + r).permutation(640)`` of the pool (fold 0 is the validation
  split of ``accuracy.py``: its first 128 frames). A training size n uses the n frames
  ``perm[:v] ∪ perm[128 : 128 + n − v]`` with v = round(0.2 n); the linear models fit all n
  (their regularisation comes from the Bayesian evidence, no validation needed), the MLP fits
  the n − v frames and early-stops on the v frames. Sizes are nested within a fold, and at
  n = 640 fold 0 is exactly accuracy.py's training set (linear) and its fit/validation split (MLP).
  The sizes in ``--fold-sizes`` (50, 100, 200, 640) are fitted on ``--folds`` (3) folds, 400 on
  fold 0 only; at n = 640 every fold has the same 640 frames, so the (deterministic) linear
  models are fitted once and only the MLP (another fit/validation division and seed) is
  repeated. The table gives the mean and the spread (max − min) over folds.

Everything runs on one thread (``--threads 1``: BLAS via threadpoolctl and Numba), so timings
are per core and a shared machine does not make threaded BLAS collapse.

Hyper-parameters of ``poly`` (K) and ``mlp`` (width, depth, weight decay, iterations) are
``CHOSEN``, the result of ``--select``: candidates scored by force MAE on fold 0's 128
validation frames after fitting on its other 512 (see the selection JSON). Reported per fit:
held-out energy MAE (meV/atom) and force MAE (eV/Å), features per species, parameters, fit
seconds, and evaluation µs/atom (``model.predict`` on the 160 test frames: energy, forces;
best of ``--repeats``). For the MLP also its training and validation errors (the diagnosis
when it loses).

Usage::

    python benchmarks/linear_vs_nonlinear.py              # full run (≈ 20 min, one thread, busy machine)
    python benchmarks/linear_vs_nonlinear.py --quick      # 3 sizes, fewer iterations (≈ 4 min)
    python benchmarks/linear_vs_nonlinear.py --select     # redo the validation-based choices (then edit CHOSEN)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


import minbasis as mb
from minbasis.fit import error_metrics, get_labels
from minbasis.fit.compare import (CompareConfig, compare_models, eval_cost, fit_one, fold_subsets, format_comparison,
                                  plot_comparison)

from accuracy import shared_split  # noqa: E402  (the split of every shared-data benchmark)

HERE = Path(__file__).resolve().parent
KEYS = {"energy_key": "energy_high", "forces_key": "forces_high", "stress_key": None}
BASIS = (["H", "C", "O"], 5.0, [6, 4, 2], [0, 3, 2], 3)
SIZES = [50, 100, 200, 400, 640]
QUICK_SIZES = [50, 200, 640]

#: Candidates for --select (fold 0: fit on 512 frames, score on the 128 validation frames).
POLY_CANDIDATES = [24, 40, 56]
MLP_CANDIDATES = [
    {"hidden": [64], "l2": 1e-6, "activation": "tanh"},
    {"hidden": [128], "l2": 1e-6, "activation": "tanh"},
    {"hidden": [64, 64], "l2": 1e-6, "activation": "tanh"},
    {"hidden": [64], "l2": 1e-6, "activation": "silu"},
]
#: Result of the last --select run (benchmarks/results/linear_vs_nonlinear_selection.json).
CHOSEN = {"poly_inputs": 56, "mlp": {"hidden": [64], "l2": 1e-6, "activation": "silu"}}
MLP_ITER = {"full": 3000, "quick": 300}
TITLE = ("Linear or nonlinear? Ethanol MP2/cc-pVDZ energies + forces; ACE r_cut 5 Å, ν = 3, "
         "n_max = [6, 4, 2], l_max = [0, 3, 2]; bars: min–max over folds")


def config_of(poly_inputs: int, mlp: dict, max_iter: int, **kw) -> CompareConfig:
    """The comparison settings of a (poly K, MLP setting) choice. MLP: L-BFGS, validation every 10
    iterations, stop after 50 checks = 500 iterations without improvement (10 checks stopped fold 1
    at n = 640 on a temporary plateau of its validation loss, after which it fell by half)."""
    return CompareConfig(poly_inputs=poly_inputs, mlp_hidden=tuple(mlp["hidden"]), mlp_l2=mlp["l2"],
                         mlp_activation=mlp.get("activation", "tanh"), mlp_max_iter=max_iter, mlp_patience=50,
                         keys=dict(KEYS), **kw)


def select(pool, bases, max_iter: int) -> dict:
    """Score the poly and MLP candidates on fold 0 — fit on its 512 fitting frames, score by force
    MAE on its 128 validation frames (which the MLP also uses for early stopping, exactly as at
    n = 640 in the learning curves). The test frames are never touched."""
    val_i, fit_i = fold_subsets(len(pool), 0, 640)
    fit = [pool[i] for i in fit_i]
    val = [pool[i] for i in val_i]
    labels = get_labels(val, **KEYS)

    def score(model, frames, lab):
        m = error_metrics(frames, lab, model.predict(frames))
        return {"energy_mae_meV_per_atom": 1e3 * m["energy_mae_per_atom"], "forces_mae": m["forces_mae"]}

    rows = []
    for K in POLY_CANDIDATES:
        model, sec, extra = fit_one("poly", bases, fit, None, None, config_of(K, CHOSEN["mlp"], max_iter))
        m = score(model, val, labels)
        rows.append({"model": "poly", "poly_inputs": K, "seconds": sec, "validation": m, "features": extra["features"]})
        print(f"  [select] poly K={K}: {extra['features']} features, val F MAE {m['forces_mae']:.4f} eV/Å, "
              f"E MAE {m['energy_mae_meV_per_atom']:.3f} meV/atom ({sec:.0f} s)", flush=True)
    for cand in MLP_CANDIDATES:
        model, sec, extra = fit_one("mlp", bases, None, fit, val, config_of(CHOSEN["poly_inputs"], cand, max_iter))
        m = score(model, val, labels)
        tr = score(model, fit, get_labels(fit, **KEYS))
        rows.append({"model": "mlp", **cand, "seconds": sec, "validation": m, "train": tr,
                     "best_iteration": extra["best_iteration"], "n_iter": extra["n_iter"],
                     "parameters": extra["parameters"], "history": extra["history"]})
        print(f"  [select] mlp {cand}: val F MAE {m['forces_mae']:.4f} eV/Å, E MAE "
              f"{m['energy_mae_meV_per_atom']:.3f} meV/atom (train F {tr['forces_mae']:.4f}), best it "
              f"{extra['best_iteration']}/{extra['n_iter']} ({sec:.0f} s)", flush=True)
    best_poly = min((r for r in rows if r["model"] == "poly"), key=lambda r: r["validation"]["forces_mae"])
    best_mlp = min((r for r in rows if r["model"] == "mlp"), key=lambda r: r["validation"]["forces_mae"])
    chosen = {"poly_inputs": best_poly["poly_inputs"],
              "mlp": {k: best_mlp[k] for k in ("hidden", "l2", "activation")}}
    return {"rows": rows, "chosen": chosen, "max_iter": max_iter,
            "split": "fold 0: fit perm[128:640], score perm[:128] of default_rng(1).permutation(640) of the pool"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sizes 50, 200, 640, one fold; MLP at most 300 iterations")
    ap.add_argument("--select", action="store_true",
                    help="only choose K and the MLP settings on validation data (writes the selection JSON)")
    ap.add_argument("--sizes", default=None, help="comma-separated training sizes (default 50,100,200,400,640)")
    ap.add_argument("--folds", type=int, default=3, help="folds for the sizes in --fold-sizes (default 3)")
    ap.add_argument("--fold-sizes", default="50,100,200,640", help="sizes fitted on --folds folds (others: fold 0)")
    ap.add_argument("--models", default="linear_full,linear_minimal,poly,mlp")
    ap.add_argument("--max-iter", type=int, default=None, help="MLP L-BFGS iterations (default 3000, quick 300)")
    ap.add_argument("--repeats", type=int, default=3, help="timed prediction calls (best is kept)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS and Numba threads (default 1: timings per core, and no collapse of threaded "
                         "BLAS on a machine shared with other jobs)")
    ap.add_argument("--out", default=str(HERE / "results" / "linear_vs_nonlinear.json"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON of --out")
    args = ap.parse_args()
    if args.plot_only:
        results = json.loads(Path(args.out).read_text())
        results["eval_cost"] = eval_cost(results["runs"])
        Path(args.out).write_text(json.dumps(results, indent=1))
        plot_comparison(results, Path(args.out).with_suffix(".png"), TITLE)
        return
    t_start = time.perf_counter()
    import numba
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    pool, test = shared_split("ethanol_mf.extxyz")  # the split of benchmarks/accuracy.py
    full = mb.Basis.ace(*BASIS)
    bases = {"full": full, "minimal": full.minimal()}
    max_iter = args.max_iter or MLP_ITER["quick" if args.quick else "full"]
    print(f"bases: full {full.n_features}, minimal {bases['minimal'].n_features} features per species; "
          f"pool {len(pool)}, test {len(test)}", flush=True)
    if args.select:
        sel = select(pool, bases, max_iter)
        sel["meta"] = {"date": time.strftime("%Y-%m-%d %H:%M"), "seconds": time.perf_counter() - t_start,
                       "load_average": os.getloadavg(), "command": " ".join(["python"] + sys.argv)}
        sel_path = Path(args.out).with_name("linear_vs_nonlinear_selection.json")
        sel_path.parent.mkdir(parents=True, exist_ok=True)
        sel_path.write_text(json.dumps(sel, indent=1))
        print(f"  [select] chosen {sel['chosen']}; wrote {sel_path}. Copy it into CHOSEN and rerun without --select.")
        return
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (QUICK_SIZES if args.quick else SIZES)
    cfg = config_of(CHOSEN["poly_inputs"], CHOSEN["mlp"], max_iter, models=tuple(args.models.split(",")),
                    sizes=tuple(sizes), folds=1 if args.quick else args.folds,
                    fold_sizes=tuple(int(v) for v in args.fold_sizes.split(",") if v.strip()), repeats=args.repeats)
    results = compare_models(full, pool, test, cfg, minimal=bases["minimal"], log=lambda line: print(line, flush=True))
    results["basis"]["args"] = BASIS
    results["settings"] = dict(CHOSEN)
    results["mlp_max_iter"] = max_iter
    print("\n" + format_comparison(results))
    table, nmax = results["table"], max(sizes)
    acc = {k: next((t for t in table if t["model"] == k and t["n_train"] == nmax), None) for k in ("linear_full", "mlp")}
    if acc["linear_full"] and acc["mlp"]:
        a, b = acc["linear_full"], acc["mlp"]
        results["acceptance"] = {"n_train": nmax, "linear_full_forces_mae": a["forces_mae"],
                                 "linear_full_features": a["features"], "mlp_forces_mae": b["forces_mae"],
                                 "mlp_features": b["features"],
                                 "mlp_no_worse": bool(b["forces_mae"] <= a["forces_mae"]),
                                 "fewer_features": bool(b["features"] < a["features"])}
        print(f"\nacceptance (n = {nmax}): MLP on minimal ({b['features']} features) F MAE {b['forces_mae']:.4f} "
              f"vs linear full ({a['features']} features) {a['forces_mae']:.4f} eV/Å -> "
              f"{'PASS' if results['acceptance']['mlp_no_worse'] else 'FAIL'}")
    results["meta"] = {"minbasis_version": mb.__version__, "python": platform.python_version(),
                       "machine": platform.machine(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                       "date": time.strftime("%Y-%m-%d %H:%M"), "seconds": time.perf_counter() - t_start,
                       "threads": args.threads, "command": " ".join(["python"] + sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    png = plot_comparison(results, Path(args.out).with_suffix(".png"), TITLE)
    print(f"wrote {args.out} and {png} ({results['meta']['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
