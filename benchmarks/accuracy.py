"""Held-out accuracy of linear ACE fits on the shared reference data (the README numbers).

Data (``../shared/data``, see its README): ``ethanol_mf.extxyz`` fitted to MP2/cc-pVDZ
energies and forces (``energy_high``, ``forces_high``), and ``cu_alloy_emt.extxyz`` fitted to
EMT energies, forces and stress. Split: a permutation of the frames with
``numpy.random.default_rng(0)``; the first 20 % are the held-out test set, never used for
any choice.

``--select`` chooses the basis per data set on a validation split of the *training* frames
(20 % of them, ``default_rng(1)``) by validation force MAE among ``CANDIDATES``; without it,
the basis chosen by the last selection run (``CHOSEN``) is used. Both modes then refit on all
training frames and report test errors.

Usage::

    python benchmarks/accuracy.py                  # both data sets, chosen bases
    python benchmarks/accuracy.py --select         # redo the validation-based choice
    python benchmarks/accuracy.py --dataset ethanol --out benchmarks/results/accuracy.json
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
from minbasis.fit import LinearFitConfig, error_metrics, fit_linear, get_labels, read_structures
from minbasis.fit.compare import holdout_split

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("MINBASIS_SHARED_DATA", HERE.parent.parent / "shared" / "data"))

DATASETS = {
    "ethanol": {"file": "ethanol_mf.extxyz", "species": ["H", "C", "O"],
                "keys": {"energy_key": "energy_high", "forces_key": "forces_high", "stress_key": None}},
    "alloy": {"file": "cu_alloy_emt.extxyz", "species": ["Cu", "Ni", "Al"],
              "keys": {"energy_key": "energy", "forces_key": "forces", "stress_key": "stress"}},
}

#: Candidate bases for --select: (r_cut Å, n_max per order, l_max per order, order).
CANDIDATES = {
    "ethanol": [(5.0, [6, 4, 2], [0, 3, 2], 3), (5.0, [8, 5, 3], [0, 3, 2], 3), (5.0, [6, 4, 3, 2], [0, 3, 2, 1], 4)],
    "alloy": [(5.0, [6, 4, 2], [0, 3, 2], 3), (5.5, [6, 4, 2], [0, 3, 2], 3), (5.5, [8, 5, 3], [0, 3, 2], 3)],
}

#: Result of the last `--select` run (see benchmarks/results/accuracy_selection.json).
CHOSEN = {
    "ethanol": (5.0, [6, 4, 3, 2], [0, 3, 2, 1], 4),
    "alloy": (5.0, [6, 4, 2], [0, 3, 2], 3),
}


def shared_split(filename: str) -> tuple[list, list]:
    """(training frames, test frames) of a file in the shared data folder: the split every
    benchmark on the shared data uses — the first 20 % of ``default_rng(0).permutation`` held out
    (:func:`minbasis.fit.compare.holdout_split`). Exits with a message if the file is absent."""
    path = DATA / filename
    if not path.exists():
        sys.exit(f"{path} not found: set MINBASIS_SHARED_DATA to the shared data folder")
    frames = read_structures(path)
    test_idx, train_idx = holdout_split(len(frames), 0, 0.2)
    return [frames[i] for i in train_idx], [frames[i] for i in test_idx]


def fit_and_score(settings, species, train, test, keys) -> dict:
    r_cut, n_max, l_max, order = settings
    basis = mb.Basis.ace(species, r_cut, n_max, l_max, order)
    t0 = time.perf_counter()
    model = fit_linear(basis, train, config=LinearFitConfig(), **keys)
    t_fit = time.perf_counter() - t0
    labels = get_labels(test, keys["energy_key"], keys["forces_key"], keys["stress_key"])
    t0 = time.perf_counter()
    pred = model.predict(test)
    t_pred = time.perf_counter() - t0
    m = error_metrics(test, labels, pred)
    return {"basis": {"r_cut": r_cut, "n_max": n_max, "l_max": l_max, "order": order,
                      "features_per_species": basis.n_features, "n_species": len(species),
                      "hash": basis.spec.hash}, "fit_seconds": t_fit,
            "predict_us_per_atom": 1e6 * t_pred / sum(len(a) for a in test), "metrics": m,
            "solver": {k: model.info.get(k) for k in ("solver", "effective_alpha", "n_rows", "n_columns")}}


def run(name: str, select: bool) -> dict:
    cfg = DATASETS[name]
    train, test = shared_split(cfg["file"])
    out = {"n_train": len(train), "n_test": len(test), "split": "default_rng(0).permutation, first 20% test"}
    chosen = CHOSEN[name]
    if select:
        val_local, fit_local = holdout_split(len(train), 1, 0.2)
        rows = []
        for settings in CANDIDATES[name]:
            res = fit_and_score(settings, cfg["species"], [train[i] for i in fit_local],
                                [train[i] for i in val_local], cfg["keys"])
            rows.append(res)
            print(f"  [{name} validation] {settings}: {res['basis']['features_per_species']} features, "
                  f"F MAE {res['metrics']['forces_mae']:.4f} eV/Å, E MAE "
                  f"{1e3 * res['metrics']['energy_mae_per_atom']:.3f} meV/atom", flush=True)
        best = min(range(len(rows)), key=lambda k: rows[k]["metrics"]["forces_mae"])
        chosen = CANDIDATES[name][best]
        out["selection"] = rows
    res = fit_and_score(chosen, cfg["species"], train, test, cfg["keys"])
    out.update(res)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["ethanol", "alloy", "both"], default="both")
    ap.add_argument("--select", action="store_true", help="choose the basis on a validation split first")
    ap.add_argument("--out", default=str(HERE / "results" / "accuracy.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    names = ["ethanol", "alloy"] if args.dataset == "both" else [args.dataset]
    results = {n: run(n, args.select) for n in names}
    print(f"\n{'data':8} {'features/species':>16} {'E MAE meV/atom':>15} {'F MAE eV/Å':>11} "
          f"{'S MAE eV/Å³':>12} {'fit s':>7}")
    for n, r in results.items():
        m = r["metrics"]
        s = f"{m['stress_mae']:.2e}" if "stress_mae" in m else "–"
        print(f"{n:8} {r['basis']['features_per_species']:>16} {1e3 * m['energy_mae_per_atom']:>15.3f} "
              f"{m['forces_mae']:>11.4f} {s:>12} {r['fit_seconds']:>7.1f}")
    meta = {"minbasis_version": mb.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - t0,
            "command": " ".join(["python"] + sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {args.out} ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
