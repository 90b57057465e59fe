#!/usr/bin/env python
"""Speed and memory of ``minbasis.describe`` on the workloads of benchmarks/README.md.

What is timed, for each workload × basis × thread count (each case in a fresh subprocess so
that its peak memory is its own):

* ``nlist``     neighbour list alone through ``minbasis.kernels.build_batch`` (vesin plus
                minbasis' validation and sorting): a lower bound for every other path;
* ``vesin``     the raw ``vesin.NeighborList.compute`` calls inside it, for reference;
* ``describe``  ``minbasis.describe(atoms, basis)``, features only;
* ``desc+grad`` ``minbasis.describe(atoms, basis, gradients=True)``: features plus
                position gradients (the full Jacobian, G × 3 × F);
* ``linear``    ``LinearModel(basis, weights, e0).predict(atoms)``: energies, forces and
                stress of a linear model, back-propagated through the moments without
                building the Jacobian (docs/theory/conventions.md), i.e. the fast force path.

Workloads: fcc Cu a = 3.61 Å 10×10×10 conventional cells (4000 atoms),
diamond Si a = 5.43 Å 8×8×8 (4096 atoms), both rattled 0.02 Å (seed 42); 1000 ethanol
molecules, molecule k rattled 0.05 Å with seed k, passed as one list; r_cut = 5 Å.
Bases: ``pace``  = Basis.ace(species, 5.0, n_max=[8, 8, 3], l_max=[0, 6, 3], order=3),
its ``.minimal()``, and ``small`` = n_max=[6, 4, 2], l_max=[0, 3, 2], order=3.

Per case: µs per atom (best of ``--repeats`` calls, after a compile call on a tiny structure of
the same kind and one full-size warm-up call, both timed and reported), features per atom,
mean neighbours per atom, threads (``numba.set_num_threads``) and the peak memory of the calls:
the worker's peak resident set size (``ru_maxrss``) after the calls minus its resident size
just before them, with the peak first reset through ``/proc/self/clear_refs`` so that earlier
peaks (imports, compilation) cannot hide it (tracemalloc does not see Numba's allocations).

Out-of-memory guard: with gradients the gradient array alone is about pairs × 3 × F × 8
bytes (one row per (centre, neighbour) sample, written directly by the kernel into the
result, which is allocated once for all neighbour batches); the peak is ≈ 1.0 times that
array (1.5 is assumed; before that change it was 2× for inputs that need several batches). A case is skipped, and recorded as
skipped with its reason, when the array exceeds ``--max-grad-gb`` (default 8) or the
predicted peak exceeds 90 % of the memory available when the case starts.

Usage::

    python benchmarks/describe_speed.py --quick            # smoke test, about a minute
    python benchmarks/describe_speed.py                    # full run, see benchmarks/README.md
    python benchmarks/describe_speed.py --workloads cu --bases pace --paths describe,desc+grad

Writes ``--out`` (default benchmarks/results/describe_speed.json; ``--quick`` writes
describe_speed_quick.json) with machine information and one record per case.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
R_CUT = 5.0
CRYSTAL_SEED = 42
GRAD_PEAK_FACTOR = 1.5  # describe(gradients=True) peak ≈ this × the gradient array (measured ≈ 1.0: the result is allocated once)

BASES = {
    "pace": dict(n_max=[8, 8, 3], l_max=[0, 6, 3], order=3, minimal=False),
    "pace-minimal": dict(n_max=[8, 8, 3], l_max=[0, 6, 3], order=3, minimal=True),
    "small": dict(n_max=[6, 4, 2], l_max=[0, 3, 2], order=3, minimal=False),
}
SPECIES = {"cu": ["Cu"], "si": ["Si"], "ethanol": ["H", "C", "O"]}
SIZES = {  # (full, quick): repeats of the conventional cell, or number of molecules
    "cu": (10, 3),
    "si": (8, 2),
    "ethanol": (1000, 20),
}
PATHS = ["nlist", "vesin", "describe", "desc+grad", "linear"]
BASIS_FREE_PATHS = ("nlist", "vesin")


# --------------------------------------------------------------------------------------------
# structures and bases (used by the parent and by each worker)
# --------------------------------------------------------------------------------------------
def make_workload(name: str, size: int) -> list:
    """The structures of one workload as a list of ase.Atoms."""
    from ase.build import bulk, molecule

    if name == "cu":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((size, size, size))
        atoms.rattle(stdev=0.02, seed=CRYSTAL_SEED)
        return [atoms]
    if name == "si":
        atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((size, size, size))
        atoms.rattle(stdev=0.02, seed=CRYSTAL_SEED)
        return [atoms]
    if name == "ethanol":
        mols = []
        for k in range(size):
            m = molecule("CH3CH2OH")
            m.rattle(stdev=0.05, seed=k)
            mols.append(m)
        return mols
    raise ValueError(f"unknown workload {name!r}")


def tiny_workload(name: str) -> list:
    """A small structure of the same kind, for the compile (first-call) timing."""
    return make_workload(name, 2 if name != "si" else 1)


def make_basis(workload: str, basis_name: str):
    import minbasis as mb

    cfg = BASES[basis_name]
    basis = mb.Basis.ace(SPECIES[workload], R_CUT, n_max=cfg["n_max"], l_max=cfg["l_max"], order=cfg["order"])
    if cfg["minimal"]:
        basis = basis.minimal()
    return basis


def maxrss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process' peak RSS to its current RSS (Linux ≥ 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    cur = current_rss_bytes()
    return cur is not None and maxrss_bytes() <= cur + 4 * 2**20


def mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------------------------
# worker: one case in its own process
# --------------------------------------------------------------------------------------------
def _numba_cache_stats(*dispatchers) -> dict:
    hits = misses = 0
    for d in dispatchers:
        st = d.stats
        hits += sum(st.cache_hits.values())
        misses += sum(st.cache_misses.values())
    return {"numba_cache_hits": hits, "numba_cache_misses": misses}


def run_case(case: dict) -> dict:
    """Time one case; returns a JSON-serialisable record (run inside the worker process)."""
    import numba

    threads = int(case["threads"])
    numba.set_num_threads(threads)
    import minbasis as mb
    from minbasis.kernels import build_batch
    from minbasis.kernels import ace as ace_kernels

    path = case["path"]
    atoms = make_workload(case["workload"], case["size"])
    tiny = tiny_workload(case["workload"])
    n_atoms = sum(len(a) for a in atoms)
    if path in BASIS_FREE_PATHS:
        species = SPECIES[case["workload"]]
        from ase.data import atomic_numbers

        numbers = [atomic_numbers[s] for s in species]
        basis = None
    else:
        basis = make_basis(case["workload"], case["basis"])
        species, numbers = basis.plan.species, basis.plan.numbers  # also compiles the plan

    if path == "nlist":
        def call(a):
            return build_batch(a, species, numbers, R_CUT)
    elif path == "vesin":
        from vesin import NeighborList

        def call(a):
            nl = NeighborList(cutoff=R_CUT, full_list=True)
            out = []
            for s in a:
                pbc = bool(s.pbc.all())
                box = np.ascontiguousarray(s.cell.array if pbc else np.zeros((3, 3)), dtype=np.float64)
                out.append(nl.compute(points=np.ascontiguousarray(s.positions, dtype=np.float64), box=box,
                                      periodic=pbc, quantities="ijD"))
            return out
    elif path == "describe":
        def call(a):
            return mb.describe(a, basis)
    elif path == "desc+grad":
        def call(a):
            return mb.describe(a, basis, gradients=True)
    elif path == "linear":
        from minbasis.fit import LinearModel

        rng = np.random.default_rng(0)
        model = LinearModel(basis, weights=rng.normal(size=(len(basis.species), basis.n_features)),
                            e0=np.zeros(len(basis.species)))

        def call(a):
            return model.predict(a)
    else:
        raise ValueError(f"unknown path {path!r}")

    t0 = time.perf_counter()
    call(tiny)  # Numba compilation (or load from its on-disk cache) happens here
    compile_s = time.perf_counter() - t0
    cache = _numba_cache_stats(ace_kernels.ace_features, ace_kernels.ace_linear,
                               ace_kernels.scatter_pair_gradients)
    gc.collect()
    # Peak memory of the calls alone: reset the high-water mark to the current RSS where the
    # kernel allows it, so that earlier peaks (imports, compilation) do not hide the calls' own.
    if reset_peak_rss():
        rss_before, peak_method = current_rss_bytes(), "peak RSS reset via /proc/self/clear_refs, then ru_maxrss"
    else:
        rss_before, peak_method = maxrss_bytes(), "ru_maxrss delta (a lower bound: earlier peaks hide smaller ones)"
    t0 = time.perf_counter()
    out = call(atoms)
    warmup_s = time.perf_counter() - t0
    del out
    times = []
    for _ in range(case["repeats"]):
        t0 = time.perf_counter()
        out = call(atoms)
        times.append(time.perf_counter() - t0)
        del out
    rss_after = maxrss_bytes()
    best = min(times)
    return {
        "n_atoms": n_atoms,
        "threads": numba.get_num_threads(),
        "numba_threading_layer": numba.threading_layer(),
        "compile_s": compile_s,
        "warmup_s": warmup_s,
        "times_s": times,
        "best_s": best,
        "us_per_atom": best / n_atoms * 1e6,
        "median_us_per_atom": float(np.median(times)) / n_atoms * 1e6,
        "rss_before_mb": rss_before / 2**20,
        "peak_rss_mb": rss_after / 2**20,
        "peak_increase_mb": (rss_after - rss_before) / 2**20,
        "peak_method": peak_method,
        **cache,
    }


def worker_main(spec: str) -> None:
    case = json.loads(spec)
    try:
        rec = {"status": "ok", **run_case(case)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        import traceback

        rec = {"status": "error", "reason": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(limit=6)}
    print("@@RESULT@@" + json.dumps(rec), flush=True)


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------
def machine_info() -> dict:
    import ase
    import numba

    import minbasis

    cpu = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        vesin_version = __import__("vesin").__version__
    except Exception:  # noqa: BLE001
        vesin_version = None
    git = {}
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                       check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout
        git["dirty"] = bool(status.strip())
    except Exception:  # noqa: BLE001 - no git, not a repository
        git = {"commit": None, "dirty": None}
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_total_gb": total / 1e9 if total else None,
        "memory_available_gb_at_start": (mem_available_bytes() or 0) / 1e9,
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
        "ase": ase.__version__,
        "vesin": vesin_version,
        "minbasis": minbasis.__version__,
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
    }


def workload_stats(name: str, size: int) -> dict:
    from minbasis.kernels import build_batch

    atoms = make_workload(name, size)
    from ase.data import atomic_numbers

    species = SPECIES[name]
    batch = build_batch(atoms, species, [atomic_numbers[s] for s in species], R_CUT)
    n_atoms = batch.n_atoms
    return {"n_atoms": n_atoms, "n_structures": len(atoms), "n_pairs": int(len(batch.pair_i)),
            "mean_neighbours": len(batch.pair_i) / n_atoms}


def run_worker(case: dict, timeout: float, cold_compile: bool) -> dict:
    env = dict(os.environ)
    if int(case["threads"]) == 1:  # keep BLAS/OpenMP pools to one thread as well
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = "1"
    tmp = None
    if cold_compile:
        tmp = tempfile.TemporaryDirectory(prefix="numba-cache-")
        env["NUMBA_CACHE_DIR"] = tmp.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(case)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    finally:
        if tmp is not None:
            tmp.cleanup()
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
    why = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit code {proc.returncode}"
    return {"status": "error", "reason": f"worker {why}: {' | '.join(tail)}"}


def fmt_table(records: list[dict]) -> str:
    head = ["workload", "atoms", "nbrs", "basis", "variant", "feat", "path", "grad", "thr",
            "µs/atom", "compile s", "warmup s", "peak MB", "note"]
    rows = []
    for r in records:
        ok = r["status"] == "ok"
        note = "" if ok else f"{r['status']}: {r.get('reason', '')}"
        if len(note) > 70:
            note = note[:67] + "..."
        rows.append([
            r["workload"], str(r["n_atoms"]), f"{r['mean_neighbours']:.1f}", r.get("basis") or "-",
            r.get("variant") or "-", str(r["n_features"]) if r.get("n_features") else "-", r["path"],
            "yes" if r["gradients"] else "no", str(r["threads"]),
            f"{r['us_per_atom']:.2f}" if ok else "-",
            f"{r['compile_s']:.2f}" if ok else "-",
            f"{r['warmup_s']:.2f}" if ok else "-",
            f"{r['peak_increase_mb']:.0f}" if ok else (f"~{r['est_peak_mb']:.0f}?" if r.get("est_peak_mb") else "-"),
            note,
        ])
    widths = [max(len(h), *(len(row[k]) for row in rows)) if rows else len(h) for k, h in enumerate(head)]
    numeric = {1, 2, 5, 8, 9, 10, 11, 12}
    def line(cells):
        return "  ".join(c.rjust(w) if k in numeric else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths))).rstrip()
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring and benchmarks/README.md for what each path measures.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (Cu 3×3×3, Si 2×2×2, 20 ethanol) for smoke testing")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default: numba's maximum, then 1)")
    p.add_argument("--workloads", default="cu,si,ethanol", help="subset of cu,si,ethanol")
    p.add_argument("--bases", default=",".join(BASES), help=f"subset of {','.join(BASES)}")
    p.add_argument("--paths", default=",".join(PATHS), help=f"subset of {','.join(PATHS)}")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case after the warm-up (best is reported)")
    p.add_argument("--max-grad-gb", type=float, default=8.0,
                   help="skip gradient cases whose per-pair gradient array (pairs×3×F×8 bytes) exceeds this")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per case before it is abandoned")
    p.add_argument("--cold-compile", action="store_true",
                   help="give each worker an empty NUMBA_CACHE_DIR so 'compile s' is a true compilation "
                        "(default: Numba's on-disk cache is used and 'compile s' is mostly loading it)")
    p.add_argument("--out", default=None,
                   help="JSON output (default benchmarks/results/describe_speed.json, or "
                        "describe_speed_quick.json with --quick)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 3:
        p.error("--repeats must be at least 3")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker_main(args.worker)
        return 0
    import numba

    def log(msg):
        print(msg, flush=True)

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    paths = [q.strip() for q in args.paths.split(",") if q.strip()]
    for name, given, allowed in (("workload", workloads, SIZES), ("basis", bases, BASES), ("path", paths, PATHS)):
        bad = [x for x in given if x not in allowed]
        if bad:
            print(f"error: unknown {name} {bad}; choose from {', '.join(allowed)}", file=sys.stderr)
            return 2
    if args.threads:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    else:
        threads = list(dict.fromkeys([numba.config.NUMBA_NUM_THREADS, 1]))
    too_many = [t for t in threads if not 1 <= t <= numba.config.NUMBA_NUM_THREADS]
    if too_many:
        print(f"error: thread counts {too_many} outside 1..{numba.config.NUMBA_NUM_THREADS} "
              "(numba's maximum; raise it with NUMBA_NUM_THREADS)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else HERE / "results" / (
        "describe_speed_quick.json" if args.quick else "describe_speed.json")

    info = machine_info()
    log(f"minbasis {info['minbasis']} ({info['git_commit'] or 'no git'}{', dirty' if info['git_dirty'] else ''}), "
        f"numba {info['numba']}, numpy {info['numpy']}, vesin {info['vesin']}")
    log(f"{info['cpu_model']}, {info['cpu_count']} CPUs, {info['memory_total_gb']:.1f} GB "
        f"({info['memory_available_gb_at_start']:.1f} GB available), load {info['load_average_at_start'][0]:.2f}")

    # ---- plan the cases -------------------------------------------------------------------
    cases = []
    for w in workloads:
        size = SIZES[w][1 if args.quick else 0]
        stats = workload_stats(w, size)
        log(f"{w}: size {size}, {stats['n_atoms']} atoms in {stats['n_structures']} structure(s), "
            f"{stats['mean_neighbours']:.1f} neighbours per atom within {R_CUT} Å")
        for q in paths:
            for bname in ([None] if q in BASIS_FREE_PATHS else bases):
                base = {"workload": w, "size": size, **stats, "basis": bname, "path": q,
                        "gradients": q == "desc+grad", "repeats": args.repeats}
                if bname is not None:
                    cfg = BASES[bname]
                    base["basis_params"] = {"species": SPECIES[w], "r_cut": R_CUT, "n_max": cfg["n_max"],
                                            "l_max": cfg["l_max"], "order": cfg["order"]}
                    base["variant"] = "minimal" if cfg["minimal"] else "full"
                    b = make_basis(w, bname)
                    base["n_features"] = b.n_features
                    base["basis_hash"] = b.spec.hash
                else:
                    base.update(variant=None, n_features=None)
                for t in threads:
                    cases.append(dict(base, threads=t))

    # ---- run them -------------------------------------------------------------------------
    records = []
    t_start = time.perf_counter()
    for k, case in enumerate(cases, 1):
        label = (f"[{k}/{len(cases)}] {case['workload']} {case['basis'] or '-'} {case['path']} "
                 f"threads={case['threads']}")
        rec = dict(case)
        if rec.get("status") == "error":
            log(f"{label}: error: {rec['reason']}")
            records.append(rec)
            continue
        if case["gradients"]:
            grad_bytes = case["n_pairs"] * 3 * case["n_features"] * 8
            peak = GRAD_PEAK_FACTOR * grad_bytes
            avail = mem_available_bytes()
            rec["est_pair_gradient_mb"] = grad_bytes / 2**20
            rec["est_peak_mb"] = peak / 2**20
            log(f"{label}: per-pair gradient array {case['n_pairs']} pairs × 3 × {case['n_features']} × 8 B "
                f"= {grad_bytes / 1e9:.2f} GB (predicted peak ≈ {peak / 1e9:.1f} GB, "
                f"{(avail or 0) / 1e9:.1f} GB available)")
            reason = None
            if grad_bytes > args.max_grad_gb * 1e9:
                reason = f"per-pair gradient array {grad_bytes / 1e9:.1f} GB > --max-grad-gb {args.max_grad_gb:g}"
            elif avail is not None and peak > 0.9 * avail:
                reason = f"predicted peak {peak / 1e9:.1f} GB > 90% of available memory {avail / 1e9:.1f} GB"
            if reason:
                rec.update(status="skipped", reason=reason)
                log(f"{label}: skipped: {reason}")
                records.append(rec)
                continue
        t0 = time.perf_counter()
        res = run_worker(case, args.timeout, args.cold_compile)
        rec.update(res)
        rec["wall_s"] = time.perf_counter() - t0
        if rec["status"] == "ok":
            log(f"{label}: {rec['us_per_atom']:.2f} µs/atom (best of {len(rec['times_s'])}), "
                f"compile {rec['compile_s']:.2f} s, warm-up {rec['warmup_s']:.2f} s, "
                f"peak +{rec['peak_increase_mb']:.0f} MB, {rec['wall_s']:.0f} s wall")
        else:
            log(f"{label}: {rec['status']}: {rec['reason']}")
        records.append(rec)
        # write as we go so that an interrupted run keeps its results
        _write(out, info, args, records, time.perf_counter() - t_start)

    _write(out, info, args, records, time.perf_counter() - t_start)
    print()
    print(fmt_table(records))
    print(f"\n{len(records)} cases in {time.perf_counter() - t_start:.0f} s; results in {out}")
    print("µs/atom: best wall time of the call / atoms; peak MB: worker's peak RSS during the warm-up and "
          "timed calls minus its RSS before them; compile s: first call on a tiny structure (Numba JIT or cache load).")
    return 0


def _write(out: Path, info: dict, args, records: list[dict], elapsed: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "describe_speed",
        "machine": info,
        "settings": {"quick": args.quick, "repeats": args.repeats, "max_grad_gb": args.max_grad_gb,
                     "cold_compile": args.cold_compile, "r_cut": R_CUT, "crystal_seed": CRYSTAL_SEED,
                     "ethanol_seeds": "molecule k rattled with seed k", "bases": BASES,
                     "grad_peak_factor": GRAD_PEAK_FACTOR, "argv": sys.argv[1:]},
        "elapsed_s": elapsed,
        "results": records,
    }
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
