"""The automatic fit on the Zuo et al. (2020) Si and Ge benchmark, run through the CLI as a user would.

For each element: ``minbasis fit X_train.extxyz -o X.npz`` with no other option (the automatic
fit chooses cutoff, basis, radial scale, observable weights and prior on a validation split
*inside* the training file), then ``minbasis evaluate X.npz X_test.extxyz --json``. Nothing is
chosen on the test files. The fit log, the held-out errors (also per config_type), the wall time,
the peak memory and the machine load are written to ``results/zuo2020_auto.json``, next to the
published GAP and MTP test MAEs (Zuo et al., J. Phys. Chem. A 124, 731 (2020), Table 2).

Usage::

    python benchmarks/zuo2020_auto.py                   # Si and Ge, ~15 min each on 2 cores
    python benchmarks/zuo2020_auto.py --element Ge --out /tmp/ge.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "zuo2020"
#: Published test MAEs (energy meV/atom, forces eV/Å), Zuo et al. 2020, Table 2.
PUBLISHED = {"Si": {"GAP": [2.91, 0.07], "MTP": [2.21, 0.06]}, "Ge": {"GAP": [2.06, 0.05], "MTP": [1.79, 0.05]}}
CLI = [sys.executable, "-m", "minbasis.cli"]


def run_element(el: str, work: Path) -> dict:
    """Fit with no options and evaluate on the test file; the CLI's output and measurements."""
    model = work / f"{el}.npz"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    fit = subprocess.run(CLI + ["fit", str(DATA / f"{el}_train.extxyz"), "-o", str(model)],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
    ev = subprocess.run(CLI + ["evaluate", str(model), str(DATA / f"{el}_test.extxyz"), "--json"],
                        capture_output=True, text=True, check=True)
    out = json.loads(ev.stdout)
    return {"evaluate": out, "fit_log": [ln for ln in fit.stdout.splitlines() if ln.strip()],
            "fit_wall_seconds": round(wall, 1), "peak_rss_kb_so_far": rss_kb,
            "load_average_at_start": round(load, 2), "load_average_at_end": round(os.getloadavg()[0], 2),
            "test_mae_meV_per_atom_and_eV_per_A": [round(1e3 * out["energy_mae_per_atom"], 3),
                                                   round(out["forces_mae"], 4)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--element", choices=["Si", "Ge"], action="append", default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "zuo2020_auto.json"))
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA} (the shared data sets are not beside this checkout)")
        return 1
    res = {"command": "minbasis fit X_train.extxyz -o X.npz; minbasis evaluate X.npz X_test.extxyz --json "
                      "(no other options)",
           "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count()},
           "published_mae": PUBLISHED}
    with tempfile.TemporaryDirectory() as tmp:
        for el in args.element or ["Si", "Ge"]:
            print(f"{el} ...", flush=True)
            res[el] = run_element(el, Path(tmp))
            mae = res[el]["test_mae_meV_per_atom_and_eV_per_A"]
            print(f"{el}: test MAE {mae[0]} meV/atom, {mae[1]} eV/Å (GAP {PUBLISHED[el]['GAP']}, MTP "
                  f"{PUBLISHED[el]['MTP']}); fit {res[el]['fit_wall_seconds']} s", flush=True)
            print("\n".join(res[el]["fit_log"]), flush=True)
            # written after every element: a failure in the second keeps the first's 10+ minutes
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp_out = out.with_suffix(".tmp")
            tmp_out.write_text(json.dumps(res, indent=1) + "\n")
            tmp_out.replace(out)
            print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
