#!/usr/bin/env python
"""Repulsive core (issue 12, item 2): short-range behaviour and hot MD of a fitted alloy model.

Fits the linear ACE model of the accuracy benchmark's alloy basis (ν 3, n_max [6, 4, 2],
l_max [0, 3, 2], r_cut 5 Å) on the first ``--train`` frames of the shared Cu–Ni–Al EMT data
(energies, forces, stress), once without and once with the default ZBL core
(:func:`minbasis.repulsion.fit_linear_with_core`), and records for both:

* held-out errors on the last 60 frames (the core is a baseline inside the data's closest
  pairs, so its cost in accuracy is measured, not assumed);
* compressed fcc Cu, E(a)/atom for a = 0.5 … 1.1 a0 (a0 = 3.61 Å), and the Cu dimer E(r) for
  r = 0.5 … 4 Å: the smallest a (r) down to which the energy rises monotonically from its minimum;
* NVE molecular dynamics at 3000 K (Maxwell–Boltzmann, seed 1; VelocityVerlet, 1 fs,
  ``--steps`` steps) on the 108-atom random Cu–Ni–Al cell of ``md_speed.py``: the smallest
  interatomic distance seen, the total-energy drift, and whether the run finished.

Usage::

    python benchmarks/core_md.py                 # writes benchmarks/results/core_md.json
    python benchmarks/core_md.py --steps 500     # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
DATA = HERE.parent.parent / "shared" / "data"


def monotone_down_to(x, e, lo):
    """Smallest x such that e rises monotonically from its minimum over x ≥ lo (the equilibrium,
    not a collapse at short range) down to x (x ascending); returns (that x, the minimum's x)."""
    k = int(np.argmin(np.where(x >= lo, e, np.inf)))
    j = k
    while j > 0 and e[j - 1] > e[j]:
        j -= 1
    return float(x[j]), float(x[k])


def curves(model):
    from ase import Atoms
    from ase.build import bulk

    fs = np.round(np.linspace(0.5, 1.1, 61), 4)
    fcc = np.array([model.predict(bulk("Cu", "fcc", a=3.61 * f, cubic=True)).energy[0] / 4 for f in fs])
    rs = np.round(np.linspace(0.5, 4.0, 141), 4)
    dimer = np.array([model.predict(Atoms("Cu2", positions=[[0, 0, 0], [r, 0, 0]])).energy[0] for r in rs])
    return {"fcc_a_over_a0": fs.tolist(), "fcc_energy_per_atom": fcc.tolist(),
            "fcc_monotone_down_to_a_over_a0": monotone_down_to(fs, fcc, 0.85)[0],
            "fcc_minimum_at": monotone_down_to(fs, fcc, 0.85)[1],
            "dimer_r": rs.tolist(), "dimer_energy": dimer.tolist(),
            "dimer_monotone_down_to_r": monotone_down_to(rs, dimer, 1.8)[0],
            "dimer_minimum_at": monotone_down_to(rs, dimer, 1.8)[1]}


def hot_nve(model, steps: int, temperature: float = 3000.0):
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet
    from md_speed import alloy_cell

    from minbasis.fit.model import MinbasisCalculator

    atoms = alloy_cell(3)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(1))
    atoms.calc = MinbasisCalculator(model)
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    rec = {"dmin": [], "etot": [], "temperature": []}

    def observe():
        d = atoms.get_all_distances(mic=True)
        rec["dmin"].append(float(d[np.triu_indices(len(atoms), 1)].min()))
        rec["etot"].append(float(atoms.get_total_energy()))
        rec["temperature"].append(float(atoms.get_temperature()))

    dyn.attach(observe, interval=10)
    observe()
    t = time.perf_counter()
    status = "finished"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dyn.run(steps)
    except Exception as exc:  # noqa: BLE001 - the point is to record how a run without core ends
        status = f"stopped at step {dyn.nsteps}: {type(exc).__name__}: {str(exc)[:200]}"
    e = np.array(rec["etot"])
    n = len(atoms)
    return {"status": status, "steps_done": int(dyn.nsteps), "seconds": time.perf_counter() - t,
            "min_distance_A": float(min(rec["dmin"])), "min_distance_trace_every_10": rec["dmin"],
            "energy_drift_meV_per_atom": float(1000 * (e[-1] - e[0]) / n),
            "energy_max_dev_meV_per_atom": float(1000 * np.abs(e - e[0]).max() / n),
            "mean_temperature_K": float(np.mean(rec["temperature"][len(rec["temperature"]) // 2:]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=120)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "core_md.json"))
    args = ap.parse_args(argv)

    import ase.io

    import minbasis as mb
    from minbasis.fit import error_metrics, fit_linear
    from minbasis.fit.core import fit_linear_with_core

    t0 = time.perf_counter()
    frames = ase.io.read(DATA / "cu_alloy_emt.extxyz", index=":")
    train, test = frames[:args.train], frames[-60:]
    basis = mb.Basis.ace(["Cu", "Ni", "Al"], 5.0, [6, 4, 2], [0, 3, 2], 3)
    out = {"train_frames": len(train), "test_frames": len(test), "basis_features": basis.n_features, "models": {}}
    for name in ("no_core", "zbl_core"):
        t = time.perf_counter()
        if name == "no_core":
            model = fit_linear(basis, train, stress_key="stress")
        else:
            model = fit_linear_with_core(basis, train, stress_key="stress")
        fit_s = time.perf_counter() - t
        pred = model.predict(test)
        from minbasis.fit import get_labels

        metrics = error_metrics(test, get_labels(test, "energy", "forces", "stress"), pred)
        row = {"fit_seconds": fit_s, "held_out": {k: v for k, v in metrics.items() if not isinstance(v, dict)}}
        if model.repulsion is not None:
            row["core"] = model.repulsion.to_dict()
        row.update(curves(model))
        row["nve_3000K"] = hot_nve(model, args.steps)
        print(name, json.dumps({k: v for k, v in row.items() if not isinstance(v, list)})[:1500], flush=True)
        out["models"][name] = row
    try:
        from describe_speed import machine_info

        out["machine"] = machine_info()
    except Exception as exc:  # noqa: BLE001
        out["machine"] = {"error": repr(exc)}
    out["seconds"] = time.perf_counter() - t0
    Path(args.output).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
