"""Linear-fit scaling: time and peak memory of fits, old vs new core, structures, basis size, Dask.

Sections (``--section``, default all):

* ``ethanol`` — the 640 training frames of ``ethanol_mf.extxyz`` (shared split) with the basis
  n_max [8,6,3], l_max [0,4,2], ν = 3 (2424 functions per species, 7272 columns): an MP2
  energy-only fit and the two-fidelity fit (MP2 energies + B3LYP forces, Δ-coupled), each with
  this checkout and with the code of ``--old-ref`` (a git commit, run from a temporary
  worktree in a subprocess, side by side in the same run), with held-out MP2 errors on the 160
  test frames;
* ``memory`` — peak RSS (a fresh subprocess each) of the MP2 energy + force fit of the 800
  ethanol frames and of the same frames repeated 4× (3200), basis n_max [6,4,2], l_max [0,3,2];
* ``structures`` — fit time and peak RSS against the number of structures: rattled copies of
  the EMT-labelled Cu–Ni–Al cells of ``cu_alloy_emt.extxyz`` (relabelled with ASE's EMT after
  rattling, seed fixed), 300 → ``--max-structures``, basis ν = 3, n_max [6,4,2], l_max [0,3,2]
  (2460 columns);
* ``basis`` — fit time and peak RSS against the number of columns P (alloy data);
* ``dask`` — the alloy fit in one process and with ``--dask local:1`` and ``local:2``; the
  speed-up and the largest relative coefficient difference;
* ``zuo`` — the default fit (no options but the stress key) on ``zuo2020/{Si,Ge}_train.extxyz``
  with bases of 437, 1168 and 2972 functions (ν = 4, r_cut 5 Å): success, time, memory, and the
  test errors for information (nothing is chosen on the test files).

Writes ``benchmarks/results/fit_scaling.json`` (merged per section) and ``fit_scaling.png``.
Timings on the shared 2-core machine vary by ±30 %; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
OUT = RESULTS / "fit_scaling.json"
DATA = Path(os.environ.get("MINBASIS_SHARED_DATA", ROOT.parent / "shared" / "data"))


# -- one fit in a fresh process (so peak RSS is that fit's) ------------------------------------------
CHILD = r'''
import json, resource, sys, time
import numpy as np
import minbasis as mb
from minbasis.fit import LinearFitConfig, fit_linear, read_structures, get_labels, error_metrics
job = json.loads(sys.argv[1])
import ase.io
frames = read_structures(job["data"])
idx = job.get("train")
train = [frames[i] for i in idx] if idx is not None else frames
train = train * job.get("repeat", 1)
test = [frames[i] for i in job["test"]] if job.get("test") else []
basis = mb.Basis.ace(job["species"], job["r_cut"], job["n_max"], job["l_max"], job["order"])
t0 = time.perf_counter()
if job.get("test_file"):
    test = read_structures(job["test_file"])
if job["kind"] == "linear":
    kw = {}
    if job.get("dask"):
        kw["dask"] = job["dask"]
    model = fit_linear(basis, train, energy_key=job["energy_key"], forces_key=job["forces_key"],
                       stress_key=job.get("stress_key"), **kw)
    pred_model = model
else:
    from minbasis.fit.fidelity import FidelityData
    from minbasis.fit.multifidelity import fit_linear_mf
    data = [FidelityData(train, "high", energy_key="energy_high"),
            FidelityData(train, "dft", forces_key="forces_dft")]
    mf = fit_linear_mf(basis, data)
    pred_model = mf.head("high")
    model = mf
t_fit = time.perf_counter() - t0
out = {"fit_seconds": t_fit, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
       "columns": len(job["species"]) * basis.n_features, "n_structures": len(train)}
if test:
    ek, fk = job.get("test_keys", ("energy_high", "forces_high"))
    labels = get_labels(test, ek, fk)
    m = error_metrics(test, labels, pred_model.predict(test))
    out["test"] = {k: m[k] for k in ("energy_mae_per_atom", "energy_rmse", "forces_mae", "forces_rmse") if k in m}
    out["solver"] = {k: getattr(model, "info", {}).get(k) for k in ("route", "effective_alpha", "n_rows")}
if job.get("save_weights"):
    np.save(job["save_weights"], np.asarray(getattr(pred_model, "weights")))
print("RESULT " + json.dumps(out))
'''


def run_child(job: dict, pythonpath: str | None = None, timeout: float = 3600) -> dict:
    """Run one fit in a subprocess (optionally with another minbasis on PYTHONPATH); returns its result dict."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], capture_output=True, text=True, env=env,
                         timeout=timeout, cwd=pythonpath or str(ROOT))
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (res.stderr or res.stdout)[-2000:]}


def old_checkout(ref: str) -> str:
    """A temporary git worktree of ``ref`` (the code before the new assembly core)."""
    path = Path(tempfile.mkdtemp(prefix="minbasis-old-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True,
                   capture_output=True)
    return str(path)


def ethanol_split() -> tuple[list[int], list[int]]:
    sys.path.insert(0, str(ROOT))
    from minbasis.fit.compare import holdout_split

    test_idx, train_idx = holdout_split(800, 0, 0.2)
    return [int(i) for i in train_idx], [int(i) for i in test_idx]


def section_ethanol(args) -> dict:
    train, test = ethanol_split()
    base = {"data": str(DATA / "ethanol_mf.extxyz"), "species": ["H", "C", "O"], "r_cut": 5.0, "n_max": [8, 6, 3],
            "l_max": [0, 4, 2], "order": 3, "train": train, "test": test}
    old = old_checkout(args.old_ref)
    out = {"old_ref": args.old_ref, "n_train": len(train), "n_test": len(test)}
    try:
        for name, job in (("energy_only", {**base, "kind": "linear", "energy_key": "energy_high", "forces_key": None}),
                          ("two_fidelity", {**base, "kind": "mf"})):
            row = {}
            for code, pp in (("new", None), ("old", old)):
                print(f"ethanol {name} ({code}) ...", flush=True)
                row[code] = run_child(job, pp)
                print("   ", row[code], flush=True)
            if "fit_seconds" in row["new"] and "fit_seconds" in row["old"]:
                row["time_ratio_new_over_old"] = row["new"]["fit_seconds"] / row["old"]["fit_seconds"]
                e_new, e_old = row["new"]["test"], row["old"]["test"]
                row["test_change_relative"] = {k: e_new[k] / e_old[k] - 1.0 for k in e_new}
            out[name] = row
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", old], capture_output=True)
    return out


def section_memory(args) -> dict:
    base = {"data": str(DATA / "ethanol_mf.extxyz"), "species": ["H", "C", "O"], "r_cut": 5.0, "n_max": [6, 4, 2],
            "l_max": [0, 3, 2], "order": 3, "kind": "linear", "energy_key": "energy_high", "forces_key": "forces_high"}
    out = {}
    for rep in (1, 4):
        print(f"memory: ethanol ×{rep} ...", flush=True)
        out[f"x{rep}"] = run_child({**base, "repeat": rep})
        print("   ", out[f"x{rep}"], flush=True)
    if "peak_rss_gb" in out["x1"] and "peak_rss_gb" in out["x4"]:
        out["peak_rss_ratio_3200_over_800"] = out["x4"]["peak_rss_gb"] / out["x1"]["peak_rss_gb"]
    return out


def alloy_set(n: int, path: Path) -> None:
    """Write n structures: the alloy cells, then EMT-relabelled rattled copies (seeded)."""
    import ase.io
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    src = ase.io.read(DATA / "cu_alloy_emt.extxyz", ":")
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        a = src[k % len(src)].copy()
        if k >= len(src):
            a.positions += 0.03 * rng.standard_normal(a.positions.shape)
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        out.append(a)
    ase.io.write(path, out)


def section_structures(args) -> dict:
    out = {"rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        n = 300
        while n <= args.max_structures:
            path = Path(tmp) / f"alloy_{n}.extxyz"
            alloy_set(n, path)
            job = {"data": str(path), "species": ["Cu", "Ni", "Al"], "r_cut": 5.0, "n_max": [6, 4, 2],
                   "l_max": [0, 3, 2], "order": 3, "kind": "linear", "energy_key": "energy", "forces_key": "forces",
                   "stress_key": "stress"}
            print(f"structures {n} ...", flush=True)
            r = run_child(job)
            r["n_structures"] = n
            print("   ", r, flush=True)
            out["rows"].append(r)
            n *= 4
    return out


def section_basis(args) -> dict:
    out = {"rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alloy.extxyz"
        alloy_set(300, path)
        for n_max, l_max in (([6, 4, 2], [0, 3, 2]), ([8, 6, 3], [0, 4, 2]), ([10, 8, 4], [0, 5, 3]),
                             ([12, 10, 6], [0, 6, 4])):
            job = {"data": str(path), "species": ["Cu", "Ni", "Al"], "r_cut": 5.0, "n_max": n_max, "l_max": l_max,
                   "order": 3, "kind": "linear", "energy_key": "energy", "forces_key": "forces",
                   "stress_key": "stress"}
            print(f"basis {n_max} {l_max} ...", flush=True)
            r = run_child(job)
            r.update(n_max=n_max, l_max=l_max)
            print("   ", r, flush=True)
            out["rows"].append(r)
            if r.get("columns", 0) >= args.max_columns:
                break
    return out


def section_dask(args) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alloy.extxyz"
        alloy_set(300, path)
        job = {"data": str(path), "species": ["Cu", "Ni", "Al"], "r_cut": 5.0, "n_max": [6, 4, 2], "l_max": [0, 3, 2],
               "order": 3, "kind": "linear", "energy_key": "energy", "forces_key": "forces", "stress_key": "stress"}
        w = {}
        for name, dask in (("serial", None), ("local_1", "local:1"), ("local_2", "local:2")):
            print(f"dask {name} ...", flush=True)
            wpath = str(Path(tmp) / f"w_{name}.npy")
            out[name] = run_child({**job, "dask": dask, "save_weights": wpath})
            print("   ", out[name], flush=True)
            if Path(wpath).exists():
                w[name] = np.load(wpath)
        for name in ("local_1", "local_2"):
            if name in w and "serial" in w:
                out[name]["max_rel_weight_diff"] = float(np.abs(w[name] - w["serial"]).max() / np.abs(w["serial"]).max())
                out[name]["speedup_vs_serial"] = out["serial"]["fit_seconds"] / out[name]["fit_seconds"]
    return out


ZUO_BASES = (([8, 6, 4, 2], [0, 4, 3, 1]), ([10, 8, 6, 2], [0, 4, 3, 1]), ([12, 10, 6, 4], [0, 6, 4, 2]))


def section_zuo(args) -> dict:
    out = {}
    for el in ("Si", "Ge"):
        for n_max, l_max in ZUO_BASES:
            job = {"data": str(DATA / "zuo2020" / f"{el}_train.extxyz"), "species": [el], "r_cut": 5.0,
                   "n_max": n_max, "l_max": l_max, "order": 4, "kind": "linear", "energy_key": "energy",
                   "forces_key": "forces", "stress_key": "stress",
                   "test_file": str(DATA / "zuo2020" / f"{el}_test.extxyz"), "test_keys": ["energy", "forces"]}
            print(f"zuo {el} {n_max} {l_max} ...", flush=True)
            r = run_child(job)
            r["ok"] = "fit_seconds" in r
            print("   ", r, flush=True)
            out[f"{el}_{r.get('columns', n_max)}"] = r
    return out


def plot(results: dict) -> None:
    """fit_scaling.png: time and peak RSS against structures and against columns (sections run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    rows = [r for r in results.get("structures", {}).get("rows", []) if "fit_seconds" in r]
    if rows:
        panels.append(("n_structures", rows, "structures (Cu–Ni–Al cells, 2460 columns)",
                       "fit time and peak memory against the number of structures"))
    rows = [r for r in results.get("basis", {}).get("rows", []) if "fit_seconds" in r]
    if rows:
        panels.append(("columns", rows, "columns P (300 alloy cells)", "cost against basis size"))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (key, rows, xlabel, title) in zip(axes[0], panels):
        x = [r[key] for r in rows]
        ax.loglog(x, [r["fit_seconds"] for r in rows], "o-", label="fit time (s)")
        ax.loglog(x, [r["peak_rss_gb"] for r in rows], "s-", label="peak RSS (GB)")
        ax.set_xticks(x)
        ax.set_xticklabels([str(v) for v in x])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "fit_scaling.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", action="append", choices=["ethanol", "memory", "structures", "basis", "dask", "zuo"])
    ap.add_argument("--old-ref", default="1411d66", help="git commit with the previous fit code")
    ap.add_argument("--max-structures", type=int, default=19200)
    ap.add_argument("--max-columns", type=int, default=10000)
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found: set MINBASIS_SHARED_DATA to the shared data folder")
    sections = args.section or ["ethanol", "memory", "structures", "basis", "dask", "zuo"]
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    fns = {"ethanol": section_ethanol, "memory": section_memory, "structures": section_structures,
           "basis": section_basis, "dask": section_dask, "zuo": section_zuo}
    for s in sections:
        results[s] = fns[s](args)
        RESULTS.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1))
    plot(results)
    print(json.dumps({s: results[s] for s in sections}, indent=1))


if __name__ == "__main__":
    main()
