#!/usr/bin/env python
"""Speed of the CuPy (GPU) path of minbasis on the workloads of benchmarks/README.md.

What is timed, for each workload × basis × dtype (float64, float32):

* ``describe``  features only: the driver loop :func:`minbasis.kernels.driver.describe_structures` on
                the GPU backend, i.e. ``minbasis.describe(atoms, basis, device="gpu")`` (which is the
                float64 case);
* ``desc+grad`` features and position gradients per (centre, atom) sample
                (``describe(..., gradients=True, device="gpu")``), results left on the GPU;
* ``linear``    energies, forces and virials of a linear model with random weights, back-propagated
                through the moments (:func:`minbasis.kernels.gpu.xp_linear_energy_forces`, batched
                as ``LinearModel.predict(device="gpu")`` batches), copied back to the host;
* ``nlist``     the host neighbour lists alone (vesin through ``build_batch``, batched exactly as the
                path above batches them); ``nlist_fraction`` = nlist time / path time is the
                share of the path spent on the host building neighbour lists.

Workloads and bases are those of ``describe_speed.py`` (imported from it): fcc Cu 10×10×10
(4000 atoms), diamond Si 8×8×8 (4096 atoms), 1000 ethanol molecules; r_cut 5 Å; bases
``pace`` (n_max [8, 8, 3], l_max [0, 6, 3], ν = 3) and ``small`` (n_max [6, 4, 2], l_max [0, 3, 2]).

Per case: one warm-up call (CuPy kernel compilation, plan upload; reported as ``warmup_s``),
then ``--repeats`` calls, each ended by a device synchronisation; µs per atom is the best of
them. ``pool_mb``: bytes held by CuPy's memory pool after the calls (the pool keeps freed
blocks, so this is close to the peak device memory of the calls). Correctness: the GPU result
is compared with the Numba CPU kernels — features and linear model on the full workload;
gradients on the small (``--quick``) size of the workload, to keep the CPU reference cheap —
and ``max_rel_diff`` is max |GPU − CPU| / (largest |CPU| of that feature, or of the array).

Without CuPy or a CUDA device the script prints why and exits with status 2. ``--device
numpy-reference`` runs the same code with NumPy arrays, as a smoke test of this script on a
machine without a GPU (its timings mean nothing; use ``--quick``).

Usage::

    python benchmarks/gpu_speed.py                  # full run → benchmarks/results/gpu_speed.json
    python benchmarks/gpu_speed.py --quick          # Cu 3×3×3, Si 2×2×2, 20 ethanol
    python benchmarks/gpu_speed.py --workloads cu --bases pace --dtypes float32
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from describe_speed import R_CUT, SIZES, machine_info, make_basis, make_workload  # noqa: E402

BASES = ("pace", "small")
PATHS = ("describe", "desc+grad", "linear")
DTYPES = {"float64": np.float64, "float32": np.float32}
RTOL = {"float64": 1e-10, "float32": 1e-4}  # what the check is held against (reported, not fatal)


def max_rel_diff(got, ref) -> float:
    """max |got − ref| / scale, scale = largest |ref| per feature (last axis) or overall."""
    from minbasis.kernels.gpu import to_numpy

    got = np.asarray(to_numpy(got), dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ref.size == 0:
        return 0.0
    top = np.abs(ref).max()
    scale = np.abs(ref).reshape(-1, ref.shape[-1]).max(axis=0) if ref.ndim > 1 else top
    return float((np.abs(got - ref) / np.maximum(scale, 1e-12 * max(top, 1e-300))).max())


class Runner:
    """Calls of one array module, with device synchronisation and memory-pool accounting."""

    def __init__(self, xp):
        self.xp = xp
        self.gpu = xp is not np

    def sync(self) -> None:
        if self.gpu:
            self.xp.cuda.Device().synchronize()

    def free(self) -> None:
        if self.gpu:
            self.xp.get_default_memory_pool().free_all_blocks()

    def pool_mb(self) -> float | None:
        return self.xp.get_default_memory_pool().total_bytes() / 2**20 if self.gpu else None

    def device_name(self) -> str:
        if not self.gpu:
            return "numpy-reference (host)"
        props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def time(self, fn, repeats: int) -> tuple[float, list[float], object]:
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        warm = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            del out
            self.sync()
            t0 = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return warm, times, out


def backend_of(xp):
    """The kernel backend of an array module: CuPy → the GPU backend, NumPy → its NumPy reference."""
    from minbasis.kernels import get_backend

    return get_backend("numpy-reference" if xp is np else "gpu")


def path_calls(path: str, atoms: list, basis, xp, dtype, batch_mb: float | None):
    """(call, nlist_call) of one path: the timed function and its neighbour lists alone."""
    from minbasis.describe import GRADIENT_BATCH_BYTES, iter_batches
    from minbasis.kernels import describe_structures, gpu

    F = basis.n_features
    plan = basis.plan
    item = np.dtype(dtype).itemsize
    if path == "linear":
        budget, per_pair = 256 * 1024**2, 64.0  # as LinearModel.predict
        rng = np.random.default_rng(0)
        weights = rng.normal(size=(len(basis.species), F))
        e0 = np.zeros(len(basis.species))

        def call():
            out = []
            for _, _, batch in iter_batches(atoms, basis, budget, per_pair):
                E, Fo, W = gpu.xp_linear_energy_forces(plan, batch, weights, e0, xp, dtype)
                out.append((gpu.to_numpy(E), gpu.to_numpy(Fo), gpu.to_numpy(W)))
            return out
    else:
        grad = path == "desc+grad"
        budget = batch_mb * 2**20 if batch_mb else (4 * GRADIENT_BATCH_BYTES if grad else 1024**3)  # the GPU backend's
        per_pair = 3 * F * item * (1.0 if grad else 0.0) + 64

        def call():
            return describe_structures(atoms, plan, backend_of(xp), gradients=grad, dtype=dtype, batch_bytes=budget)

    def nlist():
        return [b for _, _, b in iter_batches(atoms, basis, budget, per_pair)]

    return call, nlist


def check(path: str, workload: str, basis, xp, dtype, quick_size: int, result, atoms) -> dict:
    """GPU vs Numba CPU: max relative differences of every output."""
    import minbasis as mb
    from minbasis.fit import LinearModel
    from minbasis.kernels import describe_structures, gpu

    if path == "describe":
        return {"features": max_rel_diff(result, mb.describe(atoms, basis))}
    if path == "desc+grad":
        small = make_workload(workload, quick_size)
        got = describe_structures(small, basis.plan, backend_of(xp), gradients=True, dtype=dtype)
        ref = mb.describe(small, basis, gradients=True)
        same = np.array_equal(gpu.to_numpy(got.gradient_samples), ref.gradient_samples)
        return {"checked_on_atoms": int(sum(len(a) for a in small)), "samples_equal": bool(same),
                "features": max_rel_diff(got.features, ref.features),
                "position_gradients": max_rel_diff(got.position_gradients, ref.position_gradients) if same else None}
    rng = np.random.default_rng(0)
    model = LinearModel(basis, weights=rng.normal(size=(len(basis.species), basis.n_features)),
                        e0=np.zeros(len(basis.species)))
    ref = model.predict(atoms)
    E = np.concatenate([r[0] for r in result])
    Fo = np.concatenate([r[1] for r in result])
    W = np.concatenate([r[2] for r in result])
    return {"energies": max_rel_diff(E, np.concatenate(ref.atomic_energies)),
            "forces": max_rel_diff(Fo.ravel(), np.concatenate(ref.forces).ravel()),
            "virial_vs_stress": max_rel_diff(
                np.array([-W[m] / abs(a.get_volume()) for m, a in enumerate(atoms) if a.pbc.all()]).ravel(),
                np.array([_voigt_to_matrix(ref.stress[m]) for m, a in enumerate(atoms) if a.pbc.all()]).ravel())}


def _voigt_to_matrix(v):
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (Cu 3×3×3, Si 2×2×2, 20 ethanol)")
    p.add_argument("--workloads", default="cu,si,ethanol", help="subset of cu,si,ethanol")
    p.add_argument("--bases", default=",".join(BASES), help=f"subset of {','.join(BASES)}")
    p.add_argument("--paths", default=",".join(PATHS), help=f"subset of {','.join(PATHS)}")
    p.add_argument("--dtypes", default="float64,float32", help="subset of float64,float32")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case after the warm-up")
    p.add_argument("--batch-mb", type=float, default=None,
                   help="neighbour-batch budget of describe in MiB (default: describe's own)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with the CPU kernels")
    p.add_argument("--device", default="gpu", choices=["gpu", "numpy-reference"],
                   help="numpy-reference: smoke-test this script without a GPU (timings meaningless)")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/gpu_speed.json; "
                                               "gpu_speed_quick.json with --quick)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from minbasis.errors import MinbasisError
    from minbasis.kernels.gpu import array_module

    try:
        xp = array_module(args.device)
    except MinbasisError as exc:
        print(f"gpu_speed.py: no GPU to measure: {exc}", file=sys.stderr)
        return 2
    run = Runner(xp)
    workloads = [w for w in args.workloads.split(",") if w]
    bases = [b for b in args.bases.split(",") if b]
    paths = [q for q in args.paths.split(",") if q]
    dtypes = [d for d in args.dtypes.split(",") if d]
    for name, given, allowed in (("workload", workloads, SIZES), ("basis", bases, BASES),
                                 ("path", paths, PATHS), ("dtype", dtypes, DTYPES)):
        bad = [x for x in given if x not in allowed]
        if bad:
            print(f"error: unknown {name} {bad}; choose from {', '.join(allowed)}", file=sys.stderr)
            return 2
    default_out = HERE / "results" / ("gpu_speed_quick.json" if args.quick else "gpu_speed.json")
    out = Path(args.out) if args.out else default_out
    info = machine_info()
    info["device"] = run.device_name()
    info["array_module"] = f"{xp.__name__} {xp.__version__}"
    print(f"{info['device']} ({info['array_module']}); host {info['cpu_model']}, {info['cpu_count']} CPUs", flush=True)

    records = []
    t_start = time.perf_counter()
    for w in workloads:
        size = SIZES[w][1 if args.quick else 0]
        atoms = make_workload(w, size)
        n_atoms = sum(len(a) for a in atoms)
        for bname in bases:
            basis = make_basis(w, bname)
            for path in paths:
                for dname in dtypes:
                    rec = {"workload": w, "size": size, "n_atoms": n_atoms, "basis": bname,
                           "n_features": basis.n_features, "path": path, "dtype": dname}
                    label = f"{w} {bname} {path} {dname}"
                    try:
                        call, nlist = path_calls(path, atoms, basis, xp, DTYPES[dname], args.batch_mb)
                        run.free()
                        warm, times, result = run.time(call, args.repeats)
                        rec["pool_mb"] = run.pool_mb()
                        _, nl_times, _ = run.time(nlist, 1)
                        best = min(times)
                        rec.update(status="ok", warmup_s=warm, times_s=times, best_s=best,
                                   us_per_atom=best / n_atoms * 1e6, nlist_s=min(nl_times),
                                   nlist_fraction=min(nl_times) / best)
                        if not args.no_check:
                            diffs = check(path, w, basis, xp, DTYPES[dname], SIZES[w][1], result, atoms)
                            rec["max_rel_diff"] = diffs
                            vals = [v for k, v in diffs.items() if isinstance(v, float)]
                            rec["check_ok"] = bool(diffs.get("samples_equal", True)) and \
                                all(v <= RTOL[dname] for v in vals)
                        del result
                        print(f"{label}: {rec['us_per_atom']:.2f} µs/atom (warm-up {warm:.2f} s), "
                              f"neighbour list {100 * rec['nlist_fraction']:.0f} % of it, "
                              f"pool {rec['pool_mb'] or 0:.0f} MB"
                              + (f", GPU vs CPU {rec['max_rel_diff']}" if "max_rel_diff" in rec else ""), flush=True)
                    except Exception as exc:  # noqa: BLE001 - out of device memory and the like
                        rec.update(status="error", reason=f"{type(exc).__name__}: {exc}")
                        print(f"{label}: error: {rec['reason']}", flush=True)
                    run.free()
                    records.append(rec)
                    _write(out, info, args, records, time.perf_counter() - t_start)
    print(f"\n{len(records)} cases in {time.perf_counter() - t_start:.0f} s; results in {out}")
    return 0


def _write(out: Path, info: dict, args, records: list, elapsed: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "gpu_speed",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": info,
           "settings": {"quick": args.quick, "repeats": args.repeats, "r_cut": R_CUT, "batch_mb": args.batch_mb,
                        "device": args.device, "check_rtol": RTOL, "argv": sys.argv[1:]},
           "elapsed_s": elapsed, "results": records}
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
