"""Force training in PyTorch: minbasis.torch (kernel VJP/JVP) against the full ∂B/∂r array and featomic-torch.

One training step of a per-species MLP (one hidden layer of 32 per species, SiLU;
all species' hidden layers from one matrix product so that no path copies the features per species) with an energy + force
loss, F = −∂E/∂r by autograd (``create_graph=True``) and ``loss.backward()`` for the
parameters, on two workloads:

* ``ethanol``: 200 ethanol frames (``../shared/data/ethanol_mf.extxyz`` when present, else
  the bundled subset), basis ``Basis.ace(["H","C","O"], 5.0, [6,4,2], [0,3,2], 3)`` (820 features);
* ``alloy``: the first 24 Cu/Ni/Al cells of ``../shared/data/cu_alloy_emt.extxyz`` (skipped
  when absent), basis ``Basis.ace(["Cu","Ni","Al"], 5.0, [4,3,2], [0,2,1], 3)`` (329 features).

Paths (each case in its own subprocess, so that peak memories do not mix):

* ``kernels``: ``minbasis.torch.Structures.describe(positions, second_order=False)`` — the
  backward is the Numba VJP, the force loss is differentiated with the Numba JVP; nothing of
  size pairs × 3 × F is stored;
* ``kernels-2nd``: the same with ``second_order=True`` (also the Hessian–vector product, which
  force training with respect to parameters does not need);
* ``full``: ``minbasis.describe(gradients=True)`` (the full ∂B_i/∂r_k array, computed every
  step as positions would change) contracted in torch with ∂E/∂B;
* ``featomic``: featomic-torch's SOAP power spectrum (Gaussian density 0.3 Å, GTO radial basis,
  shifted-cosine cutoff 5 Å, width 0.5 Å), with ``max_radial``/``max_angular`` chosen for a
  feature count close to minbasis' (750 for ethanol, 288 for the alloy), when featomic-torch is
  installed.

Per case: one warm-up step (compilation), then the peak resident memory of one step above the
resident memory before it (``/proc/self/clear_refs`` resets the peak first, as in
describe_speed.py), then the best of ``--repeats`` timed steps. Threads: Numba's and torch's
default (``--threads`` to set both). Results: a table on stdout and
``benchmarks/results/torch_backward.json`` with the machine description.

    python benchmarks/torch_backward.py [--repeats 3] [--threads 1] [--workloads ethanol,alloy]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

WORKLOADS = {
    "ethanol": {"species": ["H", "C", "O"], "n_max": [6, 4, 2], "l_max": [0, 3, 2], "frames": 200,
                "featomic": {"max_radial": 4, "max_angular": 4}},
    "alloy": {"species": ["Cu", "Ni", "Al"], "n_max": [4, 3, 2], "l_max": [0, 2, 1], "frames": 24,
              "featomic": {"max_radial": 3, "max_angular": 2}},
}
PATHS = ["kernels", "kernels-2nd", "full", "featomic"]


def load_frames(name: str):
    import ase.io

    if name == "ethanol":
        path = SHARED / "ethanol_mf.extxyz"
        if not path.exists():
            from importlib.resources import files

            path = files("minbasis") / "data" / "ethanol_mf_subset.extxyz"
        frames = ase.io.read(str(path), index=f":{WORKLOADS[name]['frames']}")
        for a in frames:
            a.info["energy"], a.arrays["forces"] = a.info["energy_high"], a.arrays["forces_high"]
        return frames
    path = SHARED / "cu_alloy_emt.extxyz"
    if not path.exists():
        return None
    frames = ase.io.read(str(path), index=f":{WORKLOADS[name]['frames']}")
    for a in frames:
        a.info["energy"], a.arrays["forces"] = a.get_potential_energy(), a.get_forces()
    return frames


def worker(workload: str, path: str, repeats: int, threads: int | None) -> dict:
    import numpy as np
    import torch

    if threads:
        import numba

        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
    from describe_speed import current_rss_bytes, maxrss_bytes, reset_peak_rss

    import minbasis as mb

    cfg = WORKLOADS[workload]
    frames = load_frames(workload)
    if frames is None:
        return {"skipped": "data not found"}
    species = cfg["species"]
    n_sp = len(species)
    E_ref = torch.tensor([a.info["energy"] for a in frames], dtype=torch.float64)
    E_ref = E_ref - E_ref.mean()
    F_ref = torch.from_numpy(np.concatenate([a.arrays["forces"] for a in frames]))
    g = torch.Generator().manual_seed(0)

    def make_params(F):
        return [torch.nn.Parameter(torch.randn(F, n_sp * 32, generator=g, dtype=torch.float64) / F ** 0.5),
                torch.nn.Parameter(torch.zeros(n_sp * 32, dtype=torch.float64)),
                torch.nn.Parameter(torch.randn(n_sp, 32, generator=g, dtype=torch.float64) / 32 ** 0.5)]

    def mlp(params, B, sp):
        """Per-species one-hidden-layer MLP: every species' hidden layer from one matrix product (no
        per-species copies of B), the atom's own species picked at the end."""
        W1, b1, W2 = params
        h = torch.nn.functional.silu(B @ W1 + b1).view(-1, n_sp, 32)
        return (h * W2.unsqueeze(0)).sum(2).gather(1, sp.view(-1, 1)).squeeze(1)

    def loss_of(E, F):
        return ((E - E_ref) ** 2).mean() + ((F - F_ref) ** 2).mean()

    info = {}
    if path.startswith("kernels") or path == "full":
        import minbasis.torch as mbt

        basis = mb.Basis.ace(species, 5.0, cfg["n_max"], cfg["l_max"], 3)
        s = mbt.Structures(frames, basis)
        params = make_params(basis.n_features)
        info.update(n_features=basis.n_features, n_atoms=s.n_atoms, n_pairs=int(len(s.geometry.batch.pair_i)))
        if path.startswith("kernels"):
            second = path == "kernels-2nd"

            def step():
                pos = s.positions.clone().requires_grad_(True)
                B = s.describe(positions=pos, second_order=second)
                E = torch.zeros(s.n_structures, dtype=B.dtype).index_add(0, s.structure, mlp(params, B, s.species))
                (dE,) = torch.autograd.grad(E.sum(), pos, create_graph=True)
                loss = loss_of(E, -dE)
                loss.backward(inputs=params)
                return float(loss.detach())
        else:
            def step():
                d = mb.describe(frames, basis, gradients=True)
                B = torch.from_numpy(d.features).requires_grad_(True)
                J = torch.from_numpy(d.position_gradients)
                smp = torch.from_numpy(d.gradient_samples)
                E_at = mlp(params, B, s.species)
                E = torch.zeros(s.n_structures, dtype=B.dtype).index_add(0, s.structure, E_at)
                (gB,) = torch.autograd.grad(E_at.sum(), B, create_graph=True)
                contrib = torch.einsum("saf,sf->sa", J, gB.index_select(0, smp[:, 0]))
                F = -torch.zeros(s.n_atoms, 3, dtype=B.dtype).index_add(0, smp[:, 1], contrib)
                loss = loss_of(E, F)
                loss.backward(inputs=params)
                info["gradient_array_MB"] = J.numel() * 8 / 1e6
                return float(loss.detach())
    else:
        try:
            import featomic.torch as ft
        except ImportError:
            return {"skipped": "featomic-torch not installed"}
        hyp = cfg["featomic"]
        calc = ft.SoapPowerSpectrum(cutoff={"radius": 5.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
                                    density={"type": "Gaussian", "width": 0.3},
                                    basis={"type": "TensorProduct", "max_angular": hyp["max_angular"],
                                           "radial": {"type": "Gto", "max_radial": hyp["max_radial"]}})
        from ase.data import atomic_numbers

        numbers = [atomic_numbers[x] for x in species]
        n_prop = len(species) * (len(species) + 1) // 2 * (hyp["max_radial"] + 1) ** 2 * (hyp["max_angular"] + 1)
        params = make_params(n_prop)
        n_atoms = sum(len(a) for a in frames)
        info.update(n_features=n_prop, n_atoms=n_atoms, featomic_hypers=hyp)

        def step():
            systems = ft.systems_to_torch(frames, positions_requires_grad=True)
            tm = calc(systems, gradients=["positions"])
            from metatensor.torch import Labels

            tm = tm.keys_to_properties(Labels(["neighbor_1_type", "neighbor_2_type"],
                                              torch.tensor([[a, b] for i, a in enumerate(numbers)
                                                            for b in numbers[i:]], dtype=torch.int32)))
            E = torch.zeros(len(frames), dtype=torch.float64)
            for key, block in tm.items():
                c = numbers.index(int(key[0]))
                sp = torch.full((block.values.shape[0],), c, dtype=torch.long)
                sysidx = block.samples.values[:, 0].to(torch.long)
                E = E.index_add(0, sysidx, mlp(params, block.values, sp))
            grads = torch.autograd.grad(E.sum(), [sy.positions for sy in systems], create_graph=True)
            F = -torch.cat(grads)
            loss = loss_of(E, F)
            loss.backward(inputs=params)
            return float(loss.detach())

    step()  # warm-up: compilation, caches
    rss0 = current_rss_bytes()
    ok = reset_peak_rss()
    t = time.perf_counter()
    step()
    t_first = time.perf_counter() - t
    peak = maxrss_bytes() - (rss0 or 0)
    times = [t_first]
    for _ in range(max(0, repeats - 1)):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    info.update(step_s=min(times), times_s=times, peak_MB=peak / 1e6 if ok else None,
                peak_method="peak RSS reset via /proc/self/clear_refs, then ru_maxrss" if ok else "unavailable")
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workloads", default="ethanol,alloy")
    p.add_argument("--alloy-frames", type=int, default=24,
                   help="alloy cells used (default 24; all 300 need ≈ 7 GB for the full-gradient path)")
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "torch_backward.json"))
    args = p.parse_args(argv)
    WORKLOADS["alloy"]["frames"] = args.alloy_frames
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker[0], args.worker[1], args.repeats, args.threads)))
        return 0
    from describe_speed import machine_info

    results = {"machine": machine_info(), "threads": args.threads, "repeats": args.repeats,
               "alloy_frames": args.alloy_frames, "cases": {}}
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    for wl in [w for w in args.workloads.split(",") if w]:
        for path in [x for x in args.paths.split(",") if x]:
            cmd = [sys.executable, __file__, "--worker", wl, path, "--repeats", str(args.repeats),
                   "--alloy-frames", str(args.alloy_frames)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
            out = json.loads(line[-1][7:]) if line else {"error": res.stderr[-1500:]}
            results["cases"][f"{wl}/{path}"] = out
            rows.append((wl, path, out))
            print(f"{wl:8s} {path:12s} " + (f"F={out.get('n_features')}  step {out['step_s']:.3f} s  "
                                             f"peak {out['peak_MB'] or float('nan'):.0f} MB"
                                             if "step_s" in out else str(out.get("skipped") or out.get("error"))[:300]),
                  flush=True)
    print("\n| workload | path | features | step (s) | peak memory (MB) | vs full: time | vs full: memory |")
    print("|---|---|---|---|---|---|---|")
    for wl, path, out in rows:
        full = results["cases"].get(f"{wl}/full", {})
        if "step_s" not in out:
            print(f"| {wl} | {path} | – | – | – | {out.get('skipped') or 'error'} | |")
            continue
        rt = out["step_s"] / full["step_s"] if "step_s" in full else float("nan")
        rm = (out["peak_MB"] / full["peak_MB"]) if full.get("peak_MB") and out.get("peak_MB") else float("nan")
        print(f"| {wl} | {path} | {out['n_features']} | {out['step_s']:.3f} | {out['peak_MB']:.0f} | "
              f"{rt:.2f}× | {rm:.3f}× |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
