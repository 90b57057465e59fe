"""Linear-fit scaling: time and peak memory of fits, old vs new core, structures, basis size, Dask.

Sections (``--section``; default all but ``acejax``):

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
  test errors for information (nothing is chosen on the test files);
* ``acejax`` — against ace-jax's linear fit (issue 10: "fit ≥ 5× faster than ace-jax's linear
  fit at comparable basis size on the same data"; needs ace-jax, not part of the default run):
  ``zuo2020/Si_train.extxyz`` (energies, forces, stress), ν = 4, r_cut 5 Å, two basis sizes
  matched within ±20 % (ace-jax ``aj basis --order 4 --max-degree`` 13 / 15: 505 / 1031
  functions, B plus pair; minbasis n_max [8,6,4,2] / [10,8,6,2], l_max [0,4,3,1],
  ``radial_scale=0``: 437 / 1168), each code's default Bayesian-evidence fit (``fit_linear``
  defaults; ``aj fit --m-per-species 0 --rungs map --lml-solver qr --e0 lsq``: E0 fitted, as
  minbasis does; ace-jax's default ``--e0 model`` takes E0 = 0 from the basis file and is run once
  for the record). Every fit runs in its own process, the codes alternating (ace-jax, minbasis,
  minbasis, ace-jax): the first run of each with empty compilation caches (JAX persistent cache,
  Numba cache), the second warm. Fit time = data file → fitted model (ace-jax: its ``data``,
  ``problem``, ``objective``, ``map`` and ``rungs`` stages from ``progress.jsonl``; minbasis:
  ``read_structures`` + ``fit_linear``); ace-jax's one-off basis/coupling construction (``aj basis``,
  empty coupling cache) is reported apart, the whole command's wall time and peak RSS too. Test
  errors (``Si_test.extxyz``), computed here from each code's predictions with one definition,
  for information. ``--acejax-alloy yes|only`` adds Cu–Ni–Al (``cu_alloy_emt.extxyz``, seeded
  240/60 split): ace-jax's three-species basis is tried once with a 5 min limit (order 3,
  max-degree 6: 1047 functions, against minbasis n_max [5,3,2], l_max [0,3,1], 3 × 377); it
  builds in seconds: the > 30 min spec search recorded in ``peers.py`` was an H, C, O basis
  at total degree 34 (not re-measured here; ethanol is not compared). The alloy basis of the
  other sections (2460 columns; ace-jax max-degree 8: 2775) is not used: ace-jax's fit went
  from 209 s to ~25 min when the Si basis doubled, so it would take hours here.
"""

from __future__ import annotations

import argparse
import json
import os
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


# -- ace-jax (peer library) against minbasis, linear fits of the same data -----------------------------
#: (ace-jax --max-degree, minbasis n_max, minbasis l_max): Si, ν = 4, function counts within ±20 %.
ACEJAX_SIZES = ((13, [8, 6, 4, 2], [0, 4, 3, 1]), (15, [10, 8, 6, 2], [0, 4, 3, 1]))
#: Cu–Ni–Al (ν = 3): ace-jax --order 3 --max-degree 6 (1047 functions for the three species) against
#: minbasis n_max [5,3,2], l_max [0,3,1] (3 × 377 = 1131 columns). The alloy basis of the other sections
#: (2460 columns; ace-jax --max-degree 8: 2775) would cost ace-jax hours here (its Si fit went from 209 s to
#: about 20 min when the basis doubled).
ACEJAX_ALLOY = {"order": 3, "degree": 6, "n_max": [5, 3, 2], "l_max": [0, 3, 1]}

MB_FIT_CHILD = r"""
import json, sys, time
t_start = time.perf_counter()
import numpy as np
import minbasis as mb
from minbasis.fit import fit_linear, read_structures
job = json.loads(sys.argv[1])
t_import = time.perf_counter() - t_start
t0 = time.perf_counter()
basis = mb.Basis.ace(job["species"], job["r_cut"], job["n_max"], job["l_max"], job["order"],
                     radial_scale=job["radial_scale"])
t_basis = time.perf_counter() - t0
t0 = time.perf_counter()
train = read_structures(job["train"])
t_read = time.perf_counter() - t0
model = fit_linear(basis, train, energy_key="energy", forces_key="forces", stress_key="stress")
t_fit = time.perf_counter() - t0
test = read_structures(job["test"])
pred = model.predict(test)
np.savez(job["pred"], energy=np.asarray(pred.energy), forces=np.concatenate(pred.forces),
         stress=np.asarray(pred.stress))
print("RESULT " + json.dumps({"import_seconds": t_import, "basis_seconds": t_basis, "read_seconds": t_read,
                              "fit_seconds": t_fit, "n_functions": basis.n_features,
                              "columns": len(job["species"]) * basis.n_features,
                              "solver": {k: model.info.get(k) for k in ("route", "effective_alpha", "n_rows")}}))
"""

#: ace-jax's progress.jsonl stages that make the fit (data file → fitted model); "predict" (the test
#: set) and "outputs" (files) are not counted.
ACEJAX_FIT_STAGES = ("data", "problem", "objective", "map", "rungs")


def run_timed(cmd: list[str], env: dict | None = None, cwd: str | None = None, timeout: float = 3600) -> dict:
    """Run one command in its own process: wall seconds, that process' peak RSS (wait4), rc, output."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, cwd=cwd, text=True)
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                _, status, ru = os.wait4(proc.pid, 0)
                rc = "timeout"
                break
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        proc.returncode = rc if isinstance(rc, int) else -9      # reaped by wait4: keep Popen from waiting
        fo.seek(0)
        fe.seek(0)
        return {"rc": rc, "wall_seconds": wall, "peak_rss_gb": ru.ru_maxrss / 1024**2, "stdout": fo.read(),
                "stderr": fe.read()}


def _test_errors(test_path: Path, energy, forces, stress) -> dict:
    """MAE/RMSE on the labelled test frames, the same definitions for both codes: energy per atom,
    force components (eV/Å), stress Voigt components (eV/Å³, ASE sign)."""
    import ase.io

    frames = ase.io.read(test_path, ":")
    n = np.array([len(a) for a in frames])
    dE = (np.asarray(energy) - np.array([a.get_potential_energy() for a in frames])) / n
    dF = np.asarray(forces) - np.concatenate([a.get_forces() for a in frames])
    dS = np.asarray(stress) - np.array([a.get_stress() for a in frames])
    return {"energy_mae_per_atom": float(np.mean(np.abs(dE))), "energy_rmse_per_atom": float(np.sqrt(np.mean(dE**2))),
            "forces_mae": float(np.mean(np.abs(dF))), "forces_rmse": float(np.sqrt(np.mean(dF**2))),
            "stress_mae": float(np.mean(np.abs(dS)))}


def _acejax_stages(progress: Path) -> dict:
    out = {}
    if progress.exists():
        for line in progress.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("event") == "stage" and rec.get("status") == "done":
                out[rec["name"]] = rec["seconds"]
    return out


def acejax_fit(tmp: Path, tag: str, basis_npz: Path, r0: float, train: Path, test: Path, jax_cache: Path,
               timeout: float, e0: str = "lsq") -> dict:
    """One ``aj fit`` (linear arm, default evidence solver) in its own process, then ``aj eval`` on ``test``.

    ``e0="lsq"`` fits the per-species E0 jointly with the readout, as minbasis does by default;
    ace-jax's default ``model`` takes E0 from the basis file, which is 0 for a basis built by
    ``aj basis`` (so the total energies, −5.4 eV/atom for Si, must come from the ACE functions)."""
    out_dir = tmp / f"aj_{tag}"
    cmd = ["aj", "fit", "--model", str(basis_npz), "--r0", f"{r0:g}", "--train", str(train), "--test", str(test),
           "--energy-key", "energy", "--force-key", "forces", "--stress-key", "stress", "--m-per-species", "0",
           "--rungs", "map", "--lml-solver", "qr", "--e0", e0, "--out", str(out_dir)]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(jax_cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    r = run_timed(cmd, env=env, cwd=str(tmp), timeout=timeout)
    stages = _acejax_stages(out_dir / "progress.jsonl")
    row = {"command": " ".join(cmd), "rc": r["rc"], "command_seconds": r["wall_seconds"],
           "peak_rss_gb": r["peak_rss_gb"], "stages": stages}
    if r["rc"] != 0 or not all(k in stages for k in ACEJAX_FIT_STAGES):
        row["error"] = (r["stderr"] or r["stdout"])[-2000:]
        return row
    row["fit_seconds"] = sum(stages[k] for k in ACEJAX_FIT_STAGES)
    pred = tmp / f"aj_{tag}_test.extxyz"
    ev = run_timed(["aj", "eval", "--model", str(out_dir / "model.npz"), "--data", str(test), "--stress-key", "stress",
                    "--out", str(pred)], env=env, cwd=str(tmp), timeout=timeout)
    if ev["rc"] == 0:
        # read with the extxyz plugin that wrote it (ASE's reader rejects its nested-list stress)
        from ase_extxyz.io import read_cextxyz

        frames = list(read_cextxyz(str(pred), index=":", create_calc=False))
        stress = [np.asarray(a.info["ace_stress"], float).reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
                  for a in frames]
        row["test"] = _test_errors(test, [a.info["ace_energy"] for a in frames],
                                   np.concatenate([a.arrays["ace_forces"] for a in frames]), np.array(stress))
    else:
        row["test_error"] = (ev["stderr"] or ev["stdout"])[-2000:]
    return row


def minbasis_fit(tmp: Path, tag: str, species: list, order: int, n_max: list, l_max: list, train: Path, test: Path,
                 numba_cache: Path, timeout: float) -> dict:
    """One minbasis ``fit_linear`` (defaults) in its own process, then its test predictions."""
    pred = tmp / f"mb_{tag}_test.npz"
    job = {"species": species, "r_cut": 5.0, "n_max": n_max, "l_max": l_max, "order": order, "radial_scale": 0.0,
           "train": str(train), "test": str(test), "pred": str(pred)}
    env = {**os.environ, "NUMBA_CACHE_DIR": str(numba_cache)}
    env.pop("PYTHONPATH", None)
    r = run_timed([sys.executable, "-c", MB_FIT_CHILD, json.dumps(job)], env=env, cwd=str(ROOT), timeout=timeout)
    row = {"rc": r["rc"], "command_seconds": r["wall_seconds"], "peak_rss_gb": r["peak_rss_gb"]}
    res = [json.loads(line[7:]) for line in r["stdout"].splitlines() if line.startswith("RESULT ")]
    if r["rc"] != 0 or not res:
        row["error"] = (r["stderr"] or r["stdout"])[-2000:]
        return row
    row.update(res[0])                                   # fit_seconds includes read_seconds
    p = np.load(pred)
    row["test"] = _test_errors(test, p["energy"], p["forces"], p["stress"])
    return row


def acejax_basis(tmp: Path, elements: str, order: int, degree: int, timeout: float) -> dict:
    """``aj basis`` with an empty coupling cache: the one-off basis/coupling construction."""
    name = f"{elements.replace(',', '')}_{order}_{degree}"
    out = tmp / f"aj_basis_{name}.npz"
    cmd = ["aj", "basis", "--elements", elements, "--order", str(order), "--max-degree", str(degree), "--rcut", "5.0",
           "--coupling-cache-dir", str(tmp / f"coupling_{name}"), "--out", str(out)]
    r = run_timed(cmd, cwd=str(tmp), timeout=timeout)
    row = {"command": " ".join(cmd), "rc": r["rc"], "seconds": r["wall_seconds"], "peak_rss_gb": r["peak_rss_gb"]}
    if r["rc"] != 0:
        row["error"] = (r["stderr"] or r["stdout"])[-2000:]
        return row
    row["log"] = r["stdout"].strip().splitlines()[-1]
    meta = json.loads(bytes(np.load(out)["meta_json"]).decode())
    # "basis entries" = many-body (B) plus pair functions: the fitted coefficients (all species together)
    row["n_functions"] = int(meta["len_basis"])
    row["r0"] = float(np.mean(np.asarray(meta["basis"]["r0"], float)))
    row["npz"] = str(out)
    return row


def _speedups(row: dict, runs: dict) -> None:
    aj, mbw = runs.get("acejax_warm", {}), runs.get("minbasis_warm", {})
    if "fit_seconds" in aj and "fit_seconds" in mbw:
        row["fit_speedup_warm"] = aj["fit_seconds"] / mbw["fit_seconds"]
        row["command_speedup_warm"] = aj["command_seconds"] / mbw["command_seconds"]
        row["peak_rss_ratio_warm"] = aj["peak_rss_gb"] / mbw["peak_rss_gb"]
    ajc, mbc = runs.get("acejax_cold", {}), runs.get("minbasis_cold", {})
    if "fit_seconds" in ajc and "fit_seconds" in mbc:
        row["fit_speedup_cold"] = ajc["fit_seconds"] / mbc["fit_seconds"]


def acejax_si(tmp: Path, args) -> list:
    zuo = DATA / "zuo2020"
    train, test = zuo / "Si_train.extxyz", zuo / "Si_test.extxyz"
    rows = []
    for degree, n_max, l_max in ACEJAX_SIZES:
        print(f"acejax: aj basis Si --max-degree {degree} ...", flush=True)
        b = acejax_basis(tmp, "Si", 4, degree, args.acejax_timeout)
        print("   ", {k: v for k, v in b.items() if k != "command"}, flush=True)
        row = {"acejax_max_degree": degree, "minbasis_n_max": n_max, "minbasis_l_max": l_max, "acejax_basis": b}
        rows.append(row)
        if "n_functions" not in b:
            continue
        jax_cache, numba_cache = tmp / f"jax_cache_{degree}", tmp / f"numba_cache_{degree}"
        runs = {}
        for code, tag in (("acejax", "cold"), ("minbasis", "cold"), ("minbasis", "warm"), ("acejax", "warm")):
            print(f"acejax: {code} {tag} (degree {degree}, n_max {n_max}) ...", flush=True)
            if code == "acejax":
                r = acejax_fit(tmp, f"{degree}_{tag}", Path(b["npz"]), b["r0"], train, test, jax_cache,
                               args.acejax_timeout)
            else:
                r = minbasis_fit(tmp, f"{degree}_{tag}", ["Si"], 4, n_max, l_max, train, test, numba_cache,
                                 args.acejax_timeout)
            print("   ", {k: v for k, v in r.items() if k != "command"}, flush=True)
            runs[f"{code}_{tag}"] = r
        if degree == ACEJAX_SIZES[0][0]:
            # ace-jax's default E0 (the basis file's, 0 here), once, warm: for the record
            print(f"acejax: acejax warm, --e0 model (degree {degree}) ...", flush=True)
            r = acejax_fit(tmp, f"{degree}_e0model", Path(b["npz"]), b["r0"], train, test, jax_cache,
                           args.acejax_timeout, e0="model")
            print("   ", {k: v for k, v in r.items() if k != "command"}, flush=True)
            runs["acejax_warm_e0_model"] = r
        row.update(runs)
        row["n_functions"] = {"acejax": b["n_functions"], "minbasis": runs["minbasis_warm"].get("n_functions")}
        _speedups(row, runs)
    return rows


def acejax_alloy(tmp: Path, args) -> dict:
    """Cu–Ni–Al: ace-jax's three-species basis once (5 min limit); if it builds, fits on a seeded 240/60
    split of ``cu_alloy_emt.extxyz``: ace-jax once (cold: empty JAX cache), minbasis cold (empty Numba
    cache) and warm."""
    import ase.io

    a = ACEJAX_ALLOY
    print(f"acejax: aj basis Cu,Ni,Al --order {a['order']} --max-degree {a['degree']} (5 min limit) ...", flush=True)
    b = acejax_basis(tmp, "Cu,Ni,Al", a["order"], a["degree"], 300)
    b["built_within_limit"] = b["rc"] == 0
    print("   ", {k: v for k, v in b.items() if k != "command"}, flush=True)
    out = {"data": "cu_alloy_emt.extxyz (300 Cu–Ni–Al cells, 19850 atoms, EMT energies, forces, stress), "
                   "seeded 240/60 train/test split",
           "acejax_order": a["order"], "acejax_max_degree": a["degree"], "minbasis_n_max": a["n_max"],
           "minbasis_l_max": a["l_max"], "acejax_basis": b}
    if "n_functions" not in b:
        return out
    frames = ase.io.read(DATA / "cu_alloy_emt.extxyz", ":")
    perm = np.random.default_rng(0).permutation(len(frames))
    n_test = len(frames) // 5
    train, test = tmp / "alloy_train.extxyz", tmp / "alloy_test.extxyz"
    ase.io.write(train, [frames[i] for i in perm[n_test:]])
    ase.io.write(test, [frames[i] for i in perm[:n_test]])
    out["split"] = {"seed": 0, "n_train": len(frames) - n_test, "n_test": n_test}
    runs = {}
    print("acejax: acejax alloy ...", flush=True)
    runs["acejax_cold"] = acejax_fit(tmp, "alloy", Path(b["npz"]), b["r0"], train, test, tmp / "jax_cache_alloy",
                                     args.acejax_alloy_timeout)
    print("   ", {k: v for k, v in runs["acejax_cold"].items() if k != "command"}, flush=True)
    for tag in ("cold", "warm"):
        print(f"acejax: minbasis alloy {tag} ...", flush=True)
        runs[f"minbasis_{tag}"] = minbasis_fit(tmp, f"alloy_{tag}", ["Cu", "Ni", "Al"], a["order"], a["n_max"],
                                               a["l_max"], train, test, tmp / "numba_cache_alloy", args.acejax_timeout)
        print("   ", {k: v for k, v in runs[f"minbasis_{tag}"].items() if k != "command"}, flush=True)
    out.update(runs)
    out["n_functions"] = {"acejax": b["n_functions"], "minbasis": runs["minbasis_warm"].get("columns")}
    _speedups(out, runs)
    if "fit_seconds" in runs["acejax_cold"] and "fit_seconds" in runs["minbasis_warm"]:
        out["fit_speedup_acejax_cold_minbasis_warm"] = (runs["acejax_cold"]["fit_seconds"]
                                                        / runs["minbasis_warm"]["fit_seconds"])
    return out


def section_acejax(args) -> dict:
    prev = json.loads(OUT.read_text()).get("acejax", {}) if OUT.exists() else {}
    out = {"data": "Si: zuo2020/Si_train.extxyz (214 structures, 13233 atoms; energies, forces, stress), "
                   "test zuo2020/Si_test.extxyz (25 structures)",
           "run_order_per_size": ["acejax cold", "minbasis cold", "minbasis warm", "acejax warm",
                                  "acejax warm --e0 model (first size only)"],
           "fit_definition": "acejax: sum of its data, problem, objective, map and rungs stages (progress.jsonl); "
                             "minbasis: read_structures + fit_linear; imports, test prediction and output "
                             "files excluded (they are in command_seconds)"}
    with tempfile.TemporaryDirectory(prefix="acejax-bench-") as tmp_s:
        tmp = Path(tmp_s)
        if args.acejax_alloy == "only":
            out = {**prev, **{k: v for k, v in out.items() if k not in prev}}
        else:
            out["sizes"] = acejax_si(tmp, args)
        if args.acejax_alloy in ("yes", "only"):
            out["alloy"] = acejax_alloy(tmp, args)
    for row in out.get("sizes", []) + ([out["alloy"]] if "alloy" in out else []):
        row["acejax_basis"].pop("npz", None)
    print_acejax_table(out)
    return out


def print_acejax_table(out: dict) -> None:
    nan = float("nan")
    print("\ndata  code      | functions | fit s cold | fit s warm | command s (warm if run) | peak RSS GB | "
          "test E meV/at | test F eV/Å")
    rows = [("Si", r) for r in out.get("sizes", [])] + ([("alloy", out["alloy"])] if "alloy" in out else [])
    for data, row in rows:
        for code in ("acejax", "minbasis"):
            c, w = row.get(f"{code}_cold", {}), row.get(f"{code}_warm", {})
            n = row["acejax_basis"].get("n_functions") if code == "acejax" else w.get("columns")
            last = w or c
            t = last.get("test", {})
            print(f"{data:5} {code:9} | {n!s:>9} | {c.get('fit_seconds', nan):10.1f} | "
                  f"{w.get('fit_seconds', nan):10.1f} | {last.get('command_seconds', nan):23.1f} | "
                  f"{last.get('peak_rss_gb', nan):11.2f} | "
                  f"{1e3 * t.get('energy_mae_per_atom', nan):13.2f} | {t.get('forces_mae', nan):.4f}")
        if "fit_speedup_warm" in row:
            print(f"      → minbasis fit {row['fit_speedup_warm']:.1f}× faster warm, "
                  f"{row.get('fit_speedup_cold', nan):.1f}× cold; whole command {row['command_speedup_warm']:.1f}×")
        if "fit_speedup_acejax_cold_minbasis_warm" in row:
            print(f"      → minbasis fit {row.get('fit_speedup_cold', nan):.1f}× faster, both cold; "
                  f"{row['fit_speedup_acejax_cold_minbasis_warm']:.1f}× minbasis warm against ace-jax cold")


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
    ap.add_argument("--section", action="append",
                    choices=["ethanol", "memory", "structures", "basis", "dask", "zuo", "acejax"])
    ap.add_argument("--old-ref", default="1411d66", help="git commit with the previous fit code")
    ap.add_argument("--max-structures", type=int, default=19200)
    ap.add_argument("--max-columns", type=int, default=10000)
    ap.add_argument("--acejax-timeout", type=float, default=3600, help="seconds per ace-jax/minbasis command")
    ap.add_argument("--acejax-alloy", choices=["no", "yes", "only"], default="no",
                    help="acejax: also try ace-jax's Cu,Ni,Al basis (5 min limit) and, if it builds, fit the "
                         "alloy with both codes; 'only' keeps the Si rows already in the JSON")
    ap.add_argument("--acejax-alloy-timeout", type=float, default=5400, help="seconds for ace-jax's alloy fit")
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found: set MINBASIS_SHARED_DATA to the shared data folder")
    sections = args.section or ["ethanol", "memory", "structures", "basis", "dask", "zuo"]
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    fns = {"ethanol": section_ethanol, "memory": section_memory, "structures": section_structures,
           "basis": section_basis, "dask": section_dask, "zuo": section_zuo, "acejax": section_acejax}
    for s in sections:
        results[s] = fns[s](args)
        RESULTS.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1))
    plot(results)
    print(json.dumps({s: results[s] for s in sections}, indent=1))


if __name__ == "__main__":
    main()
