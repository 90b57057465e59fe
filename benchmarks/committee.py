"""Uncertainty of linear fits from the Bayesian posterior committee: calibration and cost.

For each data set (``../shared/data``): fit a linear ACE model with the Bayesian solver on the
training frames (the split of every benchmark here: the first 20 % of
``default_rng(0).permutation`` are the held-out test frames, never used for any choice), with a
committee of K = 32 posterior draws, and report on the test frames the fraction of errors
within 1σ and 2σ of the predictive std

    σ² = s² · (1/K) Σ_k δ_k² + σ_noise²    (s = 1: the posterior as it is)

where σ_noise is the RMS training residual of each observable (the default noise term,
``LinearFitConfig.uncertainty_noise="residuals"``), and, for comparison, with the evidence's
noise level 1/√α divided by the row weight (``"evidence"``) and with the committee spread
alone (``"none"``); and with a factor t on the whole σ chosen on 20 % of the training
frames (``LinearFitConfig.calibration_fraction=0.2``; one factor each for forces, energies and
stresses). Then time one ASE
calculator step (energy + forces) of the fast MD path with and without the committee
(``committee=True``: energy_std every step; ``committee="all"``: forces and stress std too, K = 32
and 8) on a 108-atom Cu-Ni-Al cell and on ethanol.

Usage::

    python benchmarks/committee.py                       # both data sets
    python benchmarks/committee.py --dataset ethanol --out /tmp/c.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import minbasis as mb
from minbasis.fit import LinearFitConfig, fit_linear, get_labels, read_structures
from minbasis.fit.compare import holdout_split
from minbasis.fit.linear import calibration_factor
from minbasis.fit.metrics import calibration

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from accuracy import DATA, DATASETS  # noqa: E402 - the shared data sets
#: Basis per data set: (r_cut Å, n_max per order, l_max per order, order).
BASES = {"ethanol": (5.0, [6, 4, 2], [0, 3, 2], 3), "alloy": (5.0, [6, 4, 2], [0, 3, 2], 3)}


def step_times(calculators: dict, atoms, steps: int = 300) -> dict:
    """Per calculator, the median CPU time and wall time (s) of one step (energy + forces after a
    small displacement, plus ``energy_std`` or ``forces_std`` where the calculator is asked for
    them). The calculators take turns step by step (each on its own copy of ``atoms``, the same
    displacements), so a slow spell of the machine hits all of them alike; ``paired_ratio`` and
    ``paired_ratio_wall``: the median over steps of each one's time over the first one's. CPU time
    is what the step costs with one Numba thread on a shared machine; wall time is what a user
    waits (the two ratios differ by the share of the step that is Python rather than kernel)."""
    rng = np.random.default_rng(0)
    copies = {}
    for name, (calc, _) in calculators.items():
        copies[name] = atoms.copy()
        copies[name].calc = calc
    cpu = {name: [] for name in calculators}
    wall = {name: [] for name in calculators}
    for step in range(steps + 5):
        d = 1e-4 * rng.standard_normal(atoms.positions.shape)
        for name, (_, props) in calculators.items():
            a = copies[name]
            a.positions += d
            t, w = time.process_time(), time.perf_counter()
            a.get_potential_energy()
            a.get_forces()
            for p in props:
                a.calc.get_property(p, a)
            if step >= 5:
                cpu[name].append(time.process_time() - t)
                wall[name].append(time.perf_counter() - w)
    first = next(iter(calculators))
    out = {}
    for name in calculators:
        c, w = np.asarray(cpu[name]), np.asarray(wall[name])
        out[name] = {"cpu_seconds": float(np.median(c)), "wall_seconds": float(np.median(w)),
                     "paired_ratio": float(np.median(c / np.maximum(np.asarray(cpu[first]), 1e-9))),
                     "paired_ratio_wall": float(np.median(w / np.asarray(wall[first])))}
    return out


def run(name: str, committee: int) -> dict:
    """Fit, calibration on the test frames and calculator timing of one data set."""
    ds = DATASETS[name]
    frames = read_structures(DATA / ds["file"])
    test_idx, train_idx = holdout_split(len(frames), 0, 0.2)  # the split of accuracy.shared_split
    train, test = [frames[i] for i in train_idx], [frames[i] for i in test_idx]
    r_cut, n_max, l_max, order = BASES[name]
    basis = mb.Basis.ace(species=ds["species"], r_cut=r_cut, n_max=n_max, l_max=l_max, order=order)
    K = committee
    t0 = time.perf_counter()
    model = fit_linear(basis, train, config=LinearFitConfig(committee=committee), **ds["keys"])
    t_fit = time.perf_counter() - t0
    labels = get_labels(test, **ds["keys"])
    pred = model.predict(test)
    out = {"basis": {"r_cut": r_cut, "n_max": n_max, "l_max": l_max, "order": order,
                     "n_features": basis.n_features},
           "n_train": len(train), "n_test": len(test), "fit_seconds": round(t_fit, 1),
           "committee": model.committee_size, "uncertainty": model.uncertainty,
           "alpha_noise": model.info["alpha_noise"],
           "test_calibration": calibration(np.arange(len(test)), labels, pred)}
    dF = np.concatenate([(pred.forces[k] - labels.forces[k]).ravel() for k in range(len(test))])
    out["test_forces_rmse"] = float(np.sqrt(np.mean(dF**2)))
    # the other noise terms (LinearFitConfig.uncertainty_noise), same committee: evidence, none
    sig = 1.0 / np.sqrt(model.info["alpha_noise"])
    w = model.info["weights"]
    alternatives = {"evidence": {"noise_energy_per_atom": sig / w["energy"], "noise_forces": sig / w["forces"],
                                 "noise_stress_per_atom": sig / w["stress"]},
                    "none": {"noise_energy_per_atom": 0.0, "noise_forces": 0.0, "noise_stress_per_atom": 0.0}}
    for noise, u in alternatives.items():
        alt = dataclasses.replace(model, uncertainty=dict(model.uncertainty, **u))
        cal = calibration(np.arange(len(test)), labels, alt.predict(test))
        out[f"test_calibration_noise_{noise}"] = dict(cal, **u)
    # factors on σ chosen on a validation split inside the training frames (forces, energies,
    # stresses; LinearFitConfig(calibration_fraction=0.2): the same final model, t from a sub-fit)
    cfg = LinearFitConfig(committee=committee, calibration_fraction=0.2)
    t_cal = calibration_factor(basis, train, get_labels(train, **ds["keys"]), tuple(ds["keys"].values()), cfg)
    cal_model = dataclasses.replace(model, uncertainty=dict(model.uncertainty, **t_cal))
    out["test_calibration_validation_factor"] = dict(
        calibration(np.arange(len(test)), labels, cal_model.predict(test)), **t_cal)
    out["per_config_type_forces_within_1sigma"] = {
        ct: calibration(np.flatnonzero(labels.config_type == ct), labels, pred).get("forces_within_1sigma")
        for ct in sorted(set(labels.config_type.tolist()))}
    # calculator step with and without the committee
    if name == "alloy":
        atoms = next(a for a in frames if len(a) == 108)
    else:
        atoms = frames[int(test_idx[0])]
    k8 = dataclasses.replace(model, committee_weights=model.committee_weights[:8],
                             committee_e0=model.committee_e0[:8])
    steps = step_times({"mean": (model.calculator(committee=False), ()),
                        "energy_std": (model.calculator(committee=True), ("energy_std",)),
                        "all_stds": (model.calculator(committee="all"), ("forces_std",)),
                        "all_stds_8_members": (k8.calculator(committee="all"), ("forces_std",))}, atoms)
    out["calculator_step"] = {"n_atoms": len(atoms), "formula": atoms.get_chemical_formula(), "committee": K,
                              "cpu_seconds": {k: v["cpu_seconds"] for k, v in steps.items()},
                              "wall_seconds": {k: v["wall_seconds"] for k, v in steps.items()},
                              "extra_fraction": {k: v["paired_ratio"] - 1.0 for k, v in steps.items() if k != "mean"},
                              "extra_fraction_wall": {k: v["paired_ratio_wall"] - 1.0 for k, v in steps.items()
                                                      if k != "mean"}}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS), action="append", default=None)
    ap.add_argument("--committee", type=int, default=32)
    ap.add_argument("--out", default=str(HERE / "results" / "committee.json"))
    ap.add_argument("--threads", type=int, default=1,
                    help="Numba threads (default 1: timings on a shared machine are meaningless with more)")
    args = ap.parse_args(argv)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    res = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                       "numba_threads": numba.get_num_threads(), "cpu_count": os.cpu_count()},
           "uncertainty_model": "sigma^2 = s^2 * mean_k(member - mean)^2 + noise^2, s = 1, noise = "
                                "1/sqrt(alpha_noise)/row weight (Bayesian ridge evidence)"}
    for name in args.dataset or ["ethanol", "alloy"]:
        print(f"{name} ...", flush=True)
        res[name] = run(name, args.committee)
        print(json.dumps(res[name], indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
