#!/usr/bin/env python
"""Hardware limit: floating-point operations per stage and achieved GFLOP/s (issue 6, item 3).

For one workload and basis (default: Cu fcc, the pacemaker-style basis of benchmarks/README.md), on
one thread, this script

1. counts the floating-point operations per atom of each stage of the CPU kernels, from the
   evaluation plan and the neighbour counts (the formulas below follow the loops of
   ``minbasis/kernels/primitives.py`` and ``ace.py`` operation by operation; a fused
   multiply-add counts as 2, a division or square root as 1, ``exp`` as 1);
2. times each stage by differences of kernel calls: ``moments`` = features with an empty term
   list (pair geometry, radial basis, Y_lm, Σ_pairs R Y), ``contraction`` = features − moments,
   ``linear`` = energies and forces of a linear model with all weights non-zero, ``force
   back-propagation`` = linear with an empty term list − moments, ``Jacobian`` =
   per-sample gradients − features;
3. measures the machine's peak: a large float64 matrix product (one thread, BLAS) for
   GFLOP/s, and a large array copy for memory bandwidth (GB/s);
4. prints the achieved GFLOP/s per stage, its fraction of the peak, and the bytes each path
   must write (the Jacobian is bound by its output: samples × 3 × F × 8 bytes per atom),
   and writes ``benchmarks/results/flops.json``.

Stage flop formulas (per pair unless noted; n = n_r, L = l_max, K = (L+1)², Q = (L+1)(L+2)/2):

* geometry 11 (3 squares, 2 adds, sqrt, division, 3 multiplies) + radial 16 + 9·n
* harmonics without gradients: 4·Q + 6·L + 2·K; gradient part: 5·Q + ~20·K
* moments: 2·n·K (one FMA per (n, lm))
* contraction (per atom): Σ_t (o_t + 1)  (o_t − 1 products, × t_coef, + into the feature)
* linear back-propagation (per atom): Σ_t {1: 4, 2: 7, 3: 11, 4: 15}[o_t]; per pair 4·n·K + 8·K + 6
* Jacobian (per pair): 15·n·K for D = ∂A/∂r, 6 per slot of the pair's channel, and per feature
  6 (sample and self rows) + 18 with strain
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from describe_speed import machine_info, make_basis, make_workload  # noqa: E402


def measure_peak(n: int = 2048, repeats: int = 3) -> dict:
    """Single-thread peak: GFLOP/s of an n×n float64 matrix product and GB/s of a 256 MB copy."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n)), rng.random((n, n))
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    gflops = 2 * n**3 / best / 1e9
    x = np.ones(32 * 1024**2)
    y = np.empty_like(x)
    best_c = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(y, x)
        best_c = min(best_c, time.perf_counter() - t0)
    return {"matmul_gflops": gflops, "matmul_n": n, "copy_gb_per_s": 2 * x.nbytes / best_c / 1e9}


def flop_counts(plan, batch) -> dict:
    """Floating-point operations per atom of each stage (module docstring)."""
    N = batch.n_atoms
    P = len(batch.pair_i)
    ppa = P / N
    n, L = plan.n_r, plan.l_max
    K = (L + 1) ** 2
    Qn = (L + 1) * (L + 2) // 2
    orders = np.asarray(plan.t_order)
    per_pair_moments = 11 + 16 + 9 * n + 4 * Qn + 6 * L + 2 * K + 2 * n * K
    per_pair_grad_harm = 5 * Qn + 20 * K
    contraction = float(np.sum(orders + 1))
    bp = {1: 4, 2: 7, 3: 11, 4: 15}
    backprop_terms = float(sum(bp.get(int(o), 4 * int(o)) for o in orders))
    per_pair_force = 4 * n * K + 8 * K + 6
    # slots of each channel (pairs see the slots of their neighbour channel)
    C, F = plan.n_channels, plan.n_features
    cf = np.asarray(plan.cf_ptr)
    slots_of_ch = np.array([cf[(c + 1) * F] - cf[c * F] for c in range(C)], dtype=float)
    ch_frac = np.bincount(batch.pair_ch, minlength=C) / max(P, 1)
    slots_per_pair = float(ch_frac @ slots_of_ch)
    per_pair_jac = 15 * n * K + 6 * slots_per_pair + 6 * F
    return {"pairs_per_atom": ppa,
            "moments": ppa * per_pair_moments,
            "contraction": contraction,
            "linear_backprop": backprop_terms + ppa * (per_pair_grad_harm + per_pair_force),
            "jacobian": ppa * per_pair_jac + backprop_terms,
            "jacobian_strain_extra": ppa * 18 * F}


def time_call(fn, repeats: int) -> float:
    """Best CPU time (s) of ``repeats`` calls of fn after one warm-up call (thread CPU time, so
    that other processes on a shared machine distort it less than wall time)."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="cu", choices=["cu", "si", "ethanol"])
    ap.add_argument("--size", type=int, default=6, help="conventional cells per side (crystals) or molecules")
    ap.add_argument("--basis", default="pace", choices=["pace", "pace-minimal", "small"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "flops.json"))
    args = ap.parse_args(argv)

    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    threadpool_limits(1)
    from minbasis.kernels.evaluate import features, linear_energy_forces, sample_gradients
    from minbasis.kernels.neighbours import build_batch

    atoms = make_workload(args.workload, args.size)
    basis = make_basis(args.workload, args.basis)
    plan = basis.plan
    batch = build_batch(atoms, plan.species, plan.numbers, plan.r_cut)
    N = batch.n_atoms
    empty = dataclasses.replace(plan, t_order=plan.t_order[:0], t_idx=plan.t_idx[:0], t_coef=plan.t_coef[:0],
                                t_feat=plan.t_feat[:0], t_pack=plan.t_pack[:0], o_ptr=np.zeros_like(plan.o_ptr))
    w = np.random.default_rng(0).normal(size=(plan.n_channels, plan.n_features))
    e0 = np.zeros(plan.n_channels)
    t = {"moments": time_call(lambda: features(empty, batch), args.repeats),
         "features": time_call(lambda: features(plan, batch), args.repeats),
         "linear_empty": time_call(lambda: linear_energy_forces(empty, batch, w[:, :0], e0), args.repeats),
         "linear": time_call(lambda: linear_energy_forces(plan, batch, w, e0), args.repeats),
         "samples": time_call(lambda: sample_gradients(plan, batch), max(2, args.repeats // 2)),
         "samples_strain": time_call(lambda: sample_gradients(plan, batch, strain=True), max(2, args.repeats // 2))}
    us = {k: 1e6 * v / N for k, v in t.items()}
    fl = flop_counts(plan, batch)
    peak = measure_peak()
    X, samples, G, _ = sample_gradients(plan, batch)
    out_bytes = G.nbytes / N
    stages = [
        ("moments (pair basis, Y_lm, Σ R Y)", us["moments"], fl["moments"]),
        ("contraction (features)", us["features"] - us["moments"], fl["contraction"]),
        ("describe = moments + contraction", us["features"], fl["moments"] + fl["contraction"]),
        ("linear E+F (all stages)", us["linear"], fl["moments"] + fl["linear_backprop"]),
        ("  of which back-propagation", us["linear"] - us["moments"], fl["linear_backprop"]),
        ("Jacobian (sample gradients − describe)", us["samples"] - us["features"], fl["jacobian"]),
        ("describe + gradients", us["samples"], fl["moments"] + fl["contraction"] + fl["jacobian"]),
        ("describe + gradients + strain", us["samples_strain"],
         fl["moments"] + fl["contraction"] + fl["jacobian"] + fl["jacobian_strain_extra"]),
    ]
    rows = []
    print(f"{args.workload} ({N} atoms, {fl['pairs_per_atom']:.1f} pairs/atom), basis {args.basis}: "
          f"{plan.n_features} features, {len(plan.t_order)} terms, {plan.n_moments} moments; one thread")
    print(f"peak: matmul {peak['matmul_gflops']:.1f} GFLOP/s, copy {peak['copy_gb_per_s']:.1f} GB/s")
    print(f"{'stage':42s} {'µs/atom':>9s} {'kflop/atom':>11s} {'GFLOP/s':>8s} {'% peak':>7s}")
    for name, u, f in stages:
        g = f / (u * 1e3) if u > 0 else float("nan")
        rows.append({"stage": name, "us_per_atom": u, "flop_per_atom": f, "gflops": g,
                     "fraction_of_peak": g / peak["matmul_gflops"]})
        print(f"{name:42s} {u:9.2f} {f / 1e3:11.1f} {g:8.2f} {100 * g / peak['matmul_gflops']:6.1f}%")
    bw_us = 2 * out_bytes / (peak["copy_gb_per_s"] * 1e3)
    print(f"Jacobian output: {out_bytes / 1e3:.0f} kB/atom written (samples × 3 × F × 8 B); at the copy "
          f"bandwidth (read + write) that alone takes {bw_us:.0f} µs/atom")
    result = {"workload": args.workload, "size": args.size, "atoms": N, "basis": args.basis,
              "features": plan.n_features, "terms": int(len(plan.t_order)), "moments": plan.n_moments,
              "flops": fl, "times_us_per_atom": us, "peak": peak, "stages": rows,
              "jacobian_output_bytes_per_atom": out_bytes, "jacobian_output_bound_us_per_atom": bw_us,
              "machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
