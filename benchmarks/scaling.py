#!/usr/bin/env python
"""Scaling of the CPU kernels (issue 6, item 5): time per atom against the number of atoms
(to 10^5), neighbours per atom, n_max, l_max, correlation order ν and number of species.

One thread (``numba.set_num_threads(1)``, BLAS limited to 1), thread CPU time (best of
``--repeats`` calls after one warm-up call; on a machine shared with other jobs thread CPU
time is far steadier than wall time), one process. Paths: ``describe`` (features),
``linear`` (energies, forces and stress of a linear model; no Jacobian) and, in the atom
sweep up to ``--max-grad-atoms``, ``desc+grad`` (features and per-sample position gradients).
Peak memory per case: resident-set peak minus the resident set before the calls (the peak
is reset through ``/proc/self/clear_refs`` first; see describe_speed.py).

Sweeps (r_cut 5 Å unless swept; crystals rattled 0.02 Å, seed 42):

* ``atoms``     fcc Cu, 3³ … 29³ conventional cells (108 … 97 556 atoms), basis ``pace``
                (order 3, n_max [8, 8, 3], l_max [0, 6, 3]);
* ``neighbours`` fcc Cu 6³ cells, basis ``pace`` at r_cut 3.5 … 7 Å;
* ``n_max``     fcc Cu 6³, order 3, n_max [n, n, 3] (ν ≤ 2 radial functions n), l_max [0, 6, 3];
* ``l_max``     fcc Cu 6³, order 3, n_max [8, 8, 3], l_max [0, L, min(L, 3)];
* ``order``     fcc Cu 6³, ν = 1 … 4, n_max [8, 8, 3, 2], l_max [0, 6, 3, 2] (truncated to ν);
* ``species``   fcc 6³ with 1 … 4 species (Cu, Ni, Al, Ag assigned at random, seed 0), basis
                order 3, n_max [6, 4, 2], l_max [0, 3, 2].

Writes benchmarks/results/scaling.json and scaling.png.

Usage::

    python benchmarks/scaling.py               # all sweeps (about 10 minutes on one core)
    python benchmarks/scaling.py --sweeps atoms --max-atoms 20000
    python benchmarks/scaling.py --plot-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from describe_speed import current_rss_bytes, machine_info, maxrss_bytes, reset_peak_rss  # noqa: E402

ATOM_SIZES = [3, 5, 8, 12, 18, 23, 29]
SWEEPS = ("atoms", "neighbours", "n_max", "l_max", "order", "species")


def cu(size: int, species=("Cu",), seed: int = 0):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((size, size, size))
    atoms.rattle(stdev=0.02, seed=42)
    if len(species) > 1:
        atoms.set_chemical_symbols(np.random.default_rng(seed).choice(list(species), size=len(atoms)).tolist())
    return atoms


def measure(atoms, basis, paths, repeats: int) -> dict:
    """µs/atom (thread CPU time, best of ``repeats``) and peak MB per path."""
    import minbasis as mb
    from minbasis.fit import LinearModel

    w = np.random.default_rng(0).normal(size=(len(basis.species), basis.n_features))
    model = LinearModel(basis, w, np.zeros(len(basis.species)))
    calls = {"describe": lambda: mb.describe(atoms, basis),
             "linear": lambda: model.predict(atoms),
             "desc+grad": lambda: mb.describe(atoms, basis, gradients=True)}
    out = {"atoms": len(atoms), "features": basis.n_features}
    for path in paths:
        fn = calls[path]
        fn()  # compile / warm-up
        best = np.inf
        for _ in range(repeats):
            reset_peak_rss()
            before = current_rss_bytes() or 0
            t0 = time.thread_time()
            res = fn()
            best = min(best, time.thread_time() - t0)
            del res
        peak = max(maxrss_bytes() - before, 0)
        out[path] = {"us_per_atom": 1e6 * best / len(atoms), "peak_mb": peak / 2**20,
                     "peak_bytes_per_atom": peak / len(atoms)}
    return out


def run(args) -> dict:
    import minbasis as mb
    from minbasis.kernels.neighbours import build_batch

    results = {}
    ace = mb.Basis.ace
    if "atoms" in args.sweeps:
        basis = ace(["Cu"], 5.0, n_max=[8, 8, 3], l_max=[0, 6, 3], order=3)
        rows = []
        for s in ATOM_SIZES:
            atoms = cu(s)
            if len(atoms) > args.max_atoms:
                break
            paths = ["describe", "linear"] + (["desc+grad"] if len(atoms) <= args.max_grad_atoms else [])
            rows.append({"size": s, **measure(atoms, basis, paths, args.repeats if len(atoms) < 20000 else 2)})
            print(_line("atoms", len(atoms), rows[-1]), flush=True)
        results["atoms"] = rows

    def sweep(name, values, make):
        rows = []
        for v in values:
            atoms, basis = make(v)
            batch = build_batch([atoms], basis.plan.species, basis.plan.numbers, basis.plan.r_cut)
            row = {"value": v, "pairs_per_atom": len(batch.pair_i) / batch.n_atoms,
                   **measure(atoms, basis, ["describe", "linear"], args.repeats)}
            rows.append(row)
            print(_line(name, v, row), flush=True)
        results[name] = rows

    base = cu(6)
    if "neighbours" in args.sweeps:
        sweep("neighbours", [3.5, 4.0, 5.0, 6.0, 7.0],
              lambda rc: (base, ace(["Cu"], rc, n_max=[8, 8, 3], l_max=[0, 6, 3], order=3)))
    if "n_max" in args.sweeps:
        sweep("n_max", [2, 4, 6, 8, 10], lambda n: (base, ace(["Cu"], 5.0, n_max=[n, n, 3], l_max=[0, 6, 3], order=3)))
    if "l_max" in args.sweeps:
        sweep("l_max", [2, 4, 6, 8],
              lambda L: (base, ace(["Cu"], 5.0, n_max=[8, 8, 3], l_max=[0, L, min(L, 3)], order=3)))
    if "order" in args.sweeps:
        sweep("order", [1, 2, 3, 4], lambda nu: (base, ace(["Cu"], 5.0, n_max=[8, 8, 3, 2][:nu],
                                                              l_max=[0, 6, 3, 2][:nu], order=nu)))
    if "species" in args.sweeps:
        names = ["Cu", "Ni", "Al", "Ag"]
        sweep("species", [1, 2, 3, 4], lambda k: (cu(6, tuple(names[:k])),
                                                  ace(names[:k], 5.0, n_max=[6, 4, 2], l_max=[0, 3, 2], order=3)))
    return results


def _line(name, v, row) -> str:
    cells = [f"{p} {row[p]['us_per_atom']:8.1f} µs/atom ({row[p]['peak_bytes_per_atom'] / 1e3:6.1f} kB/atom peak)"
             for p in ("describe", "linear", "desc+grad") if p in row]
    extra = f" {row['pairs_per_atom']:.0f} pairs/atom" if "pairs_per_atom" in row else ""
    return f"{name:10s} {v!s:>7s} {row['atoms']:6d} atoms {row['features']:5d} feats{extra}: " + ", ".join(cells)


def plot(results: dict, path: Path) -> None:
    """2 × 3 panels, one per sweep: µs/atom of each path (log axes for the atom sweep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {"describe": ("#1f77b4", "o"), "linear": ("#d62728", "s"), "desc+grad": ("#2ca02c", "^")}
    titles = {"atoms": ("atoms (fcc Cu)", "atoms"), "neighbours": ("neighbours per atom (r_cut 3.5–7 Å)", "pairs_per_atom"),
              "n_max": ("n_max of ν ≤ 2", "value"), "l_max": ("l_max of ν = 2", "value"),
              "order": ("correlation order ν", "value"), "species": ("species", "value")}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), constrained_layout=True)
    for ax, (name, (label, key)) in zip(axes.ravel(), titles.items()):
        rows = results.get(name, [])
        if not rows:
            ax.set_visible(False)
            continue
        for p, (color, marker) in style.items():
            pts = [(r[key] if key != "atoms" else r["atoms"], r[p]["us_per_atom"]) for r in rows if p in r]
            if pts:
                ax.plot(*zip(*pts), color=color, marker=marker, label=p)
        if name == "atoms":
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax2 = ax.twinx()
            pts = [(r["atoms"], r["describe"]["peak_bytes_per_atom"] / 1e3) for r in rows]
            ax2.plot(*zip(*pts), color="#7f7f7f", ls="--", marker=".", label="describe peak memory")
            ax2.set_ylabel("describe peak memory (kB/atom)", color="#7f7f7f")
            ax2.set_ylim(0, max(p[1] for p in pts) * 1.5)
        else:
            for r in rows:
                ax.annotate(f"{r['features']}", (r[key], r["describe"]["us_per_atom"]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=7, color="#1f77b4")
        ax.set_xlabel(label)
        ax.set_ylabel("µs per atom (one thread)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("minbasis CPU kernels, one thread: cost per atom vs system size and basis size "
                 "(numbers above points: features per species)", fontsize=11)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweeps", default=",".join(SWEEPS))
    ap.add_argument("--max-atoms", type=int, default=100_000)
    ap.add_argument("--max-grad-atoms", type=int, default=7_000,
                    help="largest system for desc+grad (its output is ~410 kB/atom for the pace basis)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "scaling.json"))
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args(argv)
    args.sweeps = [s for s in args.sweeps.split(",") if s]
    out = Path(args.out)
    if args.plot_only:
        plot(json.loads(out.read_text())["results"], out.with_suffix(".png"))
        return 0
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    threadpool_limits(1)
    t0 = time.perf_counter()
    results = run(args)
    data = {"results": results, "machine": machine_info(), "seconds": time.perf_counter() - t0,
            "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["python"] + sys.argv)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')} ({data['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
