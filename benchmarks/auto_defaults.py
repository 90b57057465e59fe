"""The automatic fit against the explicit-basis default fit, both run through the CLI as a user would.

For each data set the frames are split once (the split of every benchmark on the shared data:
the first 20 % of ``numpy.random.default_rng(0).permutation`` are the held-out test set,
:func:`minbasis.fit.compare.holdout_split`) and written to ``train.extxyz`` / ``test.extxyz``
in a work folder. Then, with nothing chosen on the test frames:

* **auto**: ``minbasis fit train.extxyz -o auto.npz`` (no basis, no weights: the automatic fit
  chooses basis, radial scale, observable weights and prior on a validation split *inside*
  the training frames);
* **default**: ``minbasis basis`` with the same species, r_cut, n_max, l_max and ν as the basis
  the automatic fit chose but every other setting at its default (radial scale 5), then
  ``minbasis fit train.extxyz --basis basis.json -o default.npz`` with default weights — what a
  user got before the automatic fit existed, at the same basis size;

and ``minbasis evaluate MODEL test.extxyz --json`` for both. The table gives held-out MAEs and
the relative force improvement of auto over default.

Usage::

    python benchmarks/auto_defaults.py                       # alloy and ethanol
    python benchmarks/auto_defaults.py --dataset alloy --budget-minutes 15
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase.io import write

HERE = Path(__file__).resolve().parent
#: The command line of this checkout's minbasis (run from the repository root).
MB = [sys.executable, "-m", "minbasis.cli"]

#: Label flags of the command lines per data set (files and split: accuracy.DATASETS, shared_split).
CLI_KEYS = {"alloy": [], "ethanol": ["--energy-key", "energy_high", "--forces-key", "forces_high"]}


def sh(cmd: list[str], log: Path) -> tuple[float, str]:
    """Run a command, tee its output to ``log``; (seconds, stdout). Exits on failure."""
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    dt = time.perf_counter() - t0
    log.write_text(res.stdout + "\n--- stderr ---\n" + res.stderr)
    if res.returncode != 0:
        sys.exit(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return dt, res.stdout


def run(name: str, work: Path, budget: float | None) -> dict:
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    from accuracy import DATASETS, shared_split

    train, test = shared_split(DATASETS[name]["file"])
    w = work / name
    w.mkdir(parents=True, exist_ok=True)
    write(w / "train.extxyz", train)
    write(w / "test.extxyz", test)
    keys = CLI_KEYS[name]
    extra = ["--budget-minutes", str(budget)] if budget else []
    t_auto, _ = sh([*MB, "fit", str(w / "train.extxyz"), "-o", str(w / "auto.npz"), *keys, *extra],
                   w / "auto_fit.log")
    _, out = sh([*MB, "evaluate", str(w / "auto.npz"), str(w / "test.extxyz"), "--json", *keys],
                w / "auto_eval.log")
    auto_eval = json.loads(out)
    from minbasis.fit.registry import load_model

    model = load_model(w / "auto.npz")
    b = model.basis
    chosen = model.info["auto"]["choice"]
    order, n_max, l_max = chosen["order"], chosen["n_max"], chosen["l_max"]
    r_cut = b.spec.r_cut
    sh([*MB, "basis", "--species", ",".join(b.species), "--r-cut", str(r_cut),
        "--n-max", ",".join(map(str, n_max)), "--l-max", ",".join(map(str, l_max)), "--order", str(order),
        "-o", str(w / "basis.json")], w / "basis.log")
    t_def, _ = sh([*MB, "fit", str(w / "train.extxyz"), "--basis", str(w / "basis.json"), "-o",
                   str(w / "default.npz"), *keys], w / "default_fit.log")
    _, out = sh([*MB, "evaluate", str(w / "default.npz"), str(w / "test.extxyz"), "--json", *keys],
                w / "default_eval.log")
    def_eval = json.loads(out)
    fa, fd = auto_eval["forces_mae"], def_eval["forces_mae"]
    return {"n_train": len(train), "n_test": len(test), "split": "default_rng(0).permutation, first 20% test",
            "chosen": chosen, "features_per_species": int(b.n_features), "r_cut": r_cut,
            "radial_scale_auto": model.info["auto"]["radial_scale"],
            "auto": {"fit_seconds": t_auto, "test": auto_eval},
            "default": {"fit_seconds": t_def, "test": def_eval},
            "forces_mae_improvement": 1.0 - fa / fd}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=[*CLI_KEYS, "both"], default="both")
    ap.add_argument("--work", default="/tmp/minbasis-auto-defaults")
    ap.add_argument("--budget-minutes", type=float, default=None, help="passed to the automatic fit (default: its own)")
    ap.add_argument("--out", default=str(HERE / "results" / "auto_defaults.json"))
    args = ap.parse_args()
    names = ["alloy", "ethanol"] if args.dataset == "both" else [args.dataset]
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                          "cpu_count": os.cpu_count()}
    for n in names:
        results[n] = run(n, Path(args.work), args.budget_minutes)
        out_path.write_text(json.dumps(results, indent=1, default=float))
    print(f"\n{'data':8} {'features':>8} {'model':8} {'E MAE meV/atom':>15} {'F MAE eV/Å':>11} {'fit s':>7}")
    for n in names:
        r = results[n]
        for m in ("default", "auto"):
            t = r[m]["test"]
            print(f"{n:8} {r['features_per_species']:8d} {m:8} {1e3 * t['energy_mae_per_atom']:15.3f} "
                  f"{t['forces_mae']:11.4f} {r[m]['fit_seconds']:7.0f}")
        print(f"{n:8} auto force MAE {100 * r['forces_mae_improvement']:.1f} % better than default")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
