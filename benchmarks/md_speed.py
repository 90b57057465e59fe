#!/usr/bin/env python
"""Molecular-dynamics speed (issue 12, item 4): µs per atom per MD step with ASE's VelocityVerlet.

Calculators, side by side in one run, on the same structures:

* ``minbasis_old``: :class:`~minbasis.fit.model.MinbasisCalculator` with ``fast=False`` — the
  calculator as it was before issue 12 (``model.predict`` on every step: neighbour list from
  scratch, weights folded on every call);
* ``minbasis``: the same calculator with the MD path (weights folded once, neighbour list with a
  1 Å skin, buffers reused);
* ``pyace``: python-ace's ASE calculator (``pyace.PyACECalculator``) on the ``.yace`` export of
  the same model (:mod:`minbasis.export`; the C++ evaluator of LAMMPS' ``pair_style pace``),
  skipped when python-ace is not installed;
* ``emt``: ASE's EMT (alloys only: its H/C/O parameters are not meant for molecules, but they
  run, so it is timed on ethanol too as a cost reference).

Systems: fcc Cu–Ni–Al cells of 108 and 864 atoms (3³ and 6³ conventional cells, a = 3.6 Å,
species random with seed 0, rattled 0.05 Å, 300 K Maxwell–Boltzmann velocities, seed 1), one
ethanol molecule in vacuum, and 100 ethanol molecules (900 atoms) on an 11 Å grid in a periodic box (so the molecules do not
interact within r_cut + skin, as in the training data). Models: linear ACE, ν 3,
n_max [6, 4, 2], l_max [0, 3, 2], r_cut 5 Å (820 features per species), fitted in the script on
60 alloy frames (EMT labels) and 150 ethanol frames (MP2) of the shared data.

Per case: ``--warmup`` steps (compilation, first neighbour list), then ``--repeats`` segments of
``--steps`` timed steps of 1 fs; µs/atom/step = wall time of the fastest segment / (steps · atoms)
(the least disturbed by other jobs on a shared machine). The fraction of time in the compiled
kernel is the time spent in :func:`minbasis.kernels.ace.ace_linear` (wrapped with a timer)
over the whole step. Also records the number of neighbour-list builds and, for the
two minbasis calculators, the largest difference of their trajectories.

Usage::

    python benchmarks/md_speed.py                      # all systems, writes results/md_speed.json
    python benchmarks/md_speed.py --steps 20 --repeats 3 --systems alloy108
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

DATA = HERE.parent.parent / "shared" / "data"


def alloy_cell(reps: int, seed: int = 0):
    """fcc Cu–Ni–Al, reps³ conventional cells, a = 3.6 Å, random species, rattled 0.05 Å."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((reps, reps, reps))
    rng = np.random.default_rng(seed)
    atoms.symbols = rng.choice(["Cu", "Ni", "Al"], size=len(atoms), p=[0.5, 0.3, 0.2])
    atoms.rattle(0.05, seed=seed + 1)
    return atoms


def ethanol_box(n_side=(5, 5, 4), spacing: float = 11.0, seed: int = 0):
    """100 ethanol molecules (rattled 0.05 Å, random orientations) on a grid in a periodic box."""
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    out = Atoms(cell=np.diag(np.asarray(n_side, dtype=float) * spacing), pbc=True)
    for ix in range(n_side[0]):
        for iy in range(n_side[1]):
            for iz in range(n_side[2]):
                m = molecule("CH3CH2OH")
                m.rotate(float(rng.uniform(0, 360)), rng.normal(size=3), center="COP")
                m.rattle(0.05, seed=int(rng.integers(1 << 30)))
                m.translate(np.array([ix, iy, iz]) * spacing + spacing / 2 - m.get_center_of_mass())
                out += m
    return out


def ethanol_one(seed: int = 0):
    """One ethanol molecule in vacuum (not periodic), rattled 0.05 Å."""
    from ase.build import molecule

    m = molecule("CH3CH2OH")
    m.rattle(0.05, seed=seed)
    return m


def fit_models(folder: Path) -> dict:
    """Fit (or reuse) the alloy and ethanol models; returns {name: path}. The models carry no
    committee, so the ``fast=False`` path is the mean-model ``predict`` of the issue's baseline
    (a committee would add its members to every step; ``benchmarks/committee.py`` times that)."""
    import ase.io

    import minbasis as mb
    from minbasis.fit import LinearFitConfig, fit_linear

    paths = {"alloy": folder / "alloy.npz", "ethanol": folder / "ethanol.npz"}
    if not paths["alloy"].exists():
        frames = ase.io.read(DATA / "cu_alloy_emt.extxyz", index=":")
        b = mb.Basis.ace(["Cu", "Ni", "Al"], 5.0, [6, 4, 2], [0, 3, 2], 3)
        fit_linear(b, frames[:60], config=LinearFitConfig(committee=0)).save(paths["alloy"])
    if not paths["ethanol"].exists():
        frames = ase.io.read(DATA / "ethanol_mf.extxyz", index=":")
        b = mb.Basis.ace(["H", "C", "O"], 5.0, [6, 4, 2], [0, 3, 2], 3)
        fit_linear(b, frames[:150], energy_key="energy_high", forces_key="forces_high",
                   config=LinearFitConfig(energy_weight=30, forces_weight=1, committee=0)).save(paths["ethanol"])
    return paths


class KernelTimer:
    """Wraps minbasis' compiled linear kernel to accumulate the wall time spent inside it."""

    def __init__(self):
        import minbasis.kernels.ace as ace
        import minbasis.kernels.evaluate as ev

        self.ace, self.ev = ace, ev
        self.orig = ace.ace_linear
        self.seconds = 0.0

        def timed(*args):
            t = time.perf_counter()
            self.orig(*args)
            self.seconds += time.perf_counter() - t

        ace.ace_linear = timed
        ev.ace_linear = timed

    def restore(self):
        self.ace.ace_linear = self.orig
        self.ev.ace_linear = self.orig


def run_md(atoms, calc, steps: int, warmup: int, timer: KernelTimer | None = None, seed: int = 1, repeats: int = 1):
    """VelocityVerlet, 1 fs; ``repeats`` timed segments of ``steps`` steps one after the other; returns
    (µs/atom/step of the fastest segment, its kernel fraction or None, final positions). The
    fastest of several segments is the number least disturbed by other jobs on the machine."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    dyn.run(warmup)
    best = (np.inf, None)
    for _ in range(repeats):
        if timer is not None:
            timer.seconds = 0.0
        t = time.perf_counter()
        dyn.run(steps)
        wall = time.perf_counter() - t
        if wall < best[0]:
            best = (wall, None if timer is None else timer.seconds / wall)
    return 1e6 * best[0] / (steps * len(atoms)), best[1], atoms.positions.copy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="timed segments per case; the fastest is reported")
    ap.add_argument("--systems", default="alloy108,alloy864,ethanol1,ethanol100")
    ap.add_argument("--models", default=None, help="folder for the fitted models (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=None, help="Numba threads (default: all)")
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "md_speed.json"))
    args = ap.parse_args(argv)

    import numba
    from ase.calculators.emt import EMT

    from minbasis.fit.model import LinearModel, MinbasisCalculator

    if args.threads:
        numba.set_num_threads(args.threads)
    folder = Path(args.models) if args.models else Path(tempfile.mkdtemp(prefix="md_speed_"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = fit_models(folder)
    try:
        from pyace import PyACECalculator

        from minbasis.export import export_yace
    except ImportError:
        PyACECalculator = None
    systems = {"alloy108": ("alloy", lambda: alloy_cell(3)), "alloy864": ("alloy", lambda: alloy_cell(6)),
               "ethanol1": ("ethanol", ethanol_one), "ethanol100": ("ethanol", ethanol_box)}
    results = []
    for name in args.systems.split(","):
        kind, make = systems[name]
        atoms = make()
        model = LinearModel.load(paths[kind])
        row = {"system": name, "atoms": len(atoms), "steps": args.steps, "model": kind,
               "features_per_species": model.basis.n_features}
        timer = KernelTimer()
        try:
            old_calc = MinbasisCalculator(model, fast=False)
            row["minbasis_old_us"], row["minbasis_old_kernel_fraction"], x_old = run_md(
                atoms, old_calc, args.steps, args.warmup, timer, repeats=args.repeats)
            new_calc = MinbasisCalculator(model)
            row["minbasis_us"], row["minbasis_kernel_fraction"], x_new = run_md(
                atoms, new_calc, args.steps, args.warmup, timer, repeats=args.repeats)
            row["minbasis_neighbour_builds"] = new_calc.n_neighbour_builds
        finally:
            timer.restore()
        row["speedup"] = row["minbasis_old_us"] / row["minbasis_us"]
        row["trajectory_max_diff_A"] = float(np.abs(x_old - x_new).max())
        if PyACECalculator is not None:
            yace = folder / f"{kind}.yace"
            export_yace(model, yace)
            pcalc = PyACECalculator(str(yace))
            row["pyace_us"], _, x_p = run_md(atoms, pcalc, args.steps, args.warmup, repeats=args.repeats)
            row["pyace_vs_minbasis_trajectory_max_diff_A"] = float(np.abs(x_p - x_new).max())
        row["emt_us"], _, _ = run_md(atoms, EMT(), args.steps, args.warmup, repeats=args.repeats)
        print(json.dumps(row), flush=True)
        results.append(row)
    try:
        from describe_speed import machine_info

        machine = machine_info()
    except Exception as exc:  # noqa: BLE001 - best effort provenance
        machine = {"error": repr(exc)}
    out = {"results": results, "threads": numba.get_num_threads(), "machine": machine,
           "seconds": time.perf_counter() - t0}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
