"""Multi-fidelity, PIWSL and meta-learned linear ACE fits on ethanol at four levels of theory (issue 4).

Data: ``ethanol_mf.extxyz`` (``../shared/data``; 800 MD frames, each labelled with MP2/cc-pVDZ
= "high", B3LYP/6-31G* = "dft", RHF/6-31G = "low"/HF and GFN2-xTB = "gfn2" energies and forces).

Split (fixed, the one of ``benchmarks/accuracy.py``): ``default_rng(0).permutation(800)``, the
first 20 % (160 frames) are the held-out test set, scored only on MP2 energies and forces and
never used for any choice. The 640 training frames carry all low-level labels; the first n of
``default_rng(1).permutation(640)`` (nested subsets) carry MP2 labels, n ∈ {25, 50, 100, 200, 640}.

Methods (all linear ACE on one basis; regularisation chosen by Bayesian evidence inside the
training data, minbasis.fit.multifidelity):

* ``SF_E``      MP2 energies of n frames only
* ``SF_EF``     MP2 energies and forces of the same n frames
* ``MF_<lvl>``  n MP2 energies + energies and forces of all 640 frames at lvl ∈ {dft, hf, gfn2},
                Δ-coupled (c_f = c_ref + d_f, per-fidelity E0; r_c, r_d and the low level's noise
                precision relative to MP2's, ω, by evidence)
* ``MF_<lvl>_shared_noise``  the same with one noise level for both fidelities (ω = 1)
* ``pooled_<lvl>``   same data, r_d = ∞ (one shared coefficient vector, own E0, one noise level): "naive mixing"
* ``uncoupled_dft``  same data as MF_dft, separate heads (the control; identical to SF_E for a fixed descriptor)
* ``SF_E+PIWSL``     SF_E plus PIWSL Taylor/path rows (λ_TC 1.2, λ_SC 0.01, δ 0.05 Å, seed 0) on the n frames
* ``MLP_*``     MLP on the minimal (174-feature) subset of the basis, hidden layer 64 SiLU shared by one
                energy head per fidelity; L-BFGS with a cap of 4000 iterations and early stopping
                (patience 150 checks × 10 iterations) on a seeded 10 % validation split of each training
                entry — cap and patience chosen from validation curves only (``--validation-only``,
                results/multifidelity_ethanol_mlp_selection.json). SF_E, SF_EF, MF_dft and the uncoupled
                control (one independent network per fidelity) at the largest size, seeds 0..N-1
                (seed = initial weights and validation split): mean ± std over seeds
* ``MLP_reptile``  Reptile (Allen et al. 2024) over dft, hf, gfn2 (energies + forces, 640 frames; 15 outer
                steps of 10 L-BFGS iterations, ε 0.5 → 0), then fine-tuning on n ≤ 50 MP2 energies;
                compared with ``MLP_SF_E`` at the same n
* ``meta``      prior mean = average of the single-level fits on all 640 frames of dft, hf, gfn2
                (energies + forces); MP2 head = ridge towards it on n MP2 energies (λ by evidence)

Usage::

    python benchmarks/multifidelity_ethanol.py            # full run (prints its runtime)
    python benchmarks/multifidelity_ethanol.py --mlp-only --seeds 3       # MLP seed study alone
    python benchmarks/multifidelity_ethanol.py --mlp-from benchmarks/results/multifidelity_ethanol_mlp.json
                                                          # full run reusing that seed study
    python benchmarks/multifidelity_ethanol.py --mlp-only --validation-only --seeds 1 --mlp-iter 5000 \
        --mlp-patience 10000                              # validation curves (how cap/patience were chosen)
    python benchmarks/multifidelity_ethanol.py --quick    # smoke test: tiny basis, 2 sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import minbasis as mb
from minbasis.fit.multifidelity import (FidelityBlock, PIWSLConfig, block_from_rows, design_rows, fit_blocks,
                                        piwsl_rows)

from accuracy import shared_split  # noqa: E402  (the split of every shared-data benchmark)

HERE = Path(__file__).resolve().parent
LEVELS = {"dft": "dft", "hf": "low", "gfn2": "gfn2"}  # name in the table → key suffix in the file
W_E, W_F = 30.0, 1.0  # default observable weights (1/(eV/atom), Å/eV)


class Rows:
    """Cached unweighted rows of the training frames and label-dependent blocks."""

    def __init__(self, basis, frames, piwsl: PIWSLConfig):
        t = time.perf_counter()
        self.r = design_rows(basis, frames, progress=True)
        self.P = self.r.XE.shape[1]
        self.frames = frames
        self.atom_ptr = self.r.atom_ptr
        XF = self.r.XF.reshape(-1, self.P)
        self.XF = XF
        self.GF_all = XF.T @ XF
        self.tay, self.path = piwsl_rows(basis, frames, piwsl, rows0=self.r)
        self.piwsl = piwsl
        self.seconds = time.perf_counter() - t

    def energy(self, key, idx):
        return np.array([self.frames[i].info[f"energy_{key}"] for i in idx])

    def forces(self, key, idx):
        return np.concatenate([self.frames[i].arrays[f"forces_{key}"].reshape(-1) for i in idx])

    def force_rows(self, idx):
        sel = np.concatenate([np.arange(3 * self.atom_ptr[i], 3 * self.atom_ptr[i + 1]) for i in idx])
        return self.XF[sel]

    def block(self, fid: str, key: str, idx_e, idx_f=None, piwsl: bool = False) -> FidelityBlock:
        """Weighted block: energies of idx_e, forces of idx_f (all frames reuse the cached Gram)."""
        n = self.r.n_atoms[idx_e].astype(float)
        we = W_E / n
        AE, yE, cnt = we[:, None] * self.r.XE[idx_e], we * self.energy(key, idx_e), we[:, None] * self.r.counts[idx_e]
        AO, yO = np.zeros((0, self.P)), np.zeros(0)
        if piwsl:
            AO = np.vstack([np.sqrt(self.piwsl.lambda_tc) * W_E * self.tay[idx_e],
                            np.sqrt(self.piwsl.lambda_sc) * W_E * self.path[idx_e]])
            yO = np.zeros(len(AO))
        full_f = idx_f is not None and len(idx_f) == len(self.frames)
        if idx_f is not None and not full_f:
            AO = np.vstack([AO, W_F * self.force_rows(idx_f)])
            yO = np.concatenate([yO, W_F * self.forces(key, idx_f)])
        blk = block_from_rows(fid, AE, yE, cnt, AO, yO)
        if full_f:
            y = W_F * self.forces(key, idx_f)
            blk.G += W_F**2 * self.GF_all
            blk.b += W_F * (self.XF.T @ y)
            blk.yy += float(y @ y)
            blk.n_rows += len(y)
        return blk


def score(coef, e0, rows_test, frames_test, C):
    """Held-out MP2 errors: energy MAE (meV/atom), force MAE and RMSE (eV/Å)."""
    E = rows_test.XE @ coef + rows_test.counts @ e0
    F = rows_test.XF.reshape(-1, len(coef)) @ coef
    Eref = np.array([a.info["energy_high"] for a in frames_test])
    Fref = np.concatenate([a.arrays["forces_high"].reshape(-1) for a in frames_test])
    n = rows_test.n_atoms
    return {"energy_mae_meV_atom": float(1e3 * np.mean(np.abs((E - Eref) / n))),
            "forces_mae": float(np.mean(np.abs(F - Fref))), "forces_rmse": float(np.sqrt(np.mean((F - Fref) ** 2)))}


MLP_METHODS = ("MLP_SF_E", "MLP_SF_EF", "MLP_MF_dft", "MLP_uncoupled_dft")


def mlp_test_metrics(model, test, n_atoms) -> dict:
    """Held-out MP2 errors of an MLP's ``high`` head."""
    p = model.predict(test, "high")
    Eref = np.array([a.info["energy_high"] for a in test])
    Fref = np.concatenate([a.arrays["forces_high"].reshape(-1) for a in test])
    Fp = np.concatenate([f.reshape(-1) for f in p.forces])
    return {"energy_mae_meV_atom": float(1e3 * np.mean(np.abs((p.energy - Eref) / n_atoms))),
            "forces_mae": float(np.mean(np.abs(Fp - Fref))), "forces_rmse": float(np.sqrt(np.mean((Fp - Fref) ** 2)))}


def _fit_summary(model) -> dict:
    """Iterations, stopping and the validation curve of one fit (per fidelity for the uncoupled control)."""
    infos = model.info.get("per_fidelity", {"": model.info})
    out = {}
    for f, info in infos.items():
        hist = info["history"]
        out[f or "shared"] = {"best_iteration": info["best_iteration"], "n_iter": info["n_iter"],
                              "stopped_early": info["stopped_early"], "message": info["message"],
                              "best_val_loss": min(h["val_loss"] for h in hist),
                              "val_curve": [[h["iteration"], h["val_loss"]] for h in hist]}
    return out


def mlp_seed_study(basis, train, test, order, n, seeds, mcfg, validation_only=False, log=print,
                   uncoupled_seeds=None) -> dict:
    """MLP SF_E, SF_EF, MF_dft and the uncoupled control at n MP2 energies, for every seed.

    Seed s sets both the initial weights and the validation split (``seed = validation_seed = s``).
    With ``validation_only`` the test frames are never predicted (used to choose the iteration
    cap and patience from validation curves alone). The uncoupled control trains one independent
    network per fidelity, so its MP2 head *is* the SF_E network of the same seed; it is fitted in
    full for the first ``uncoupled_seeds`` seeds (default all), which checks that identity on this
    data, and taken from SF_E (marked ``"identical_to": "MLP_SF_E"``) for the others to save the
    cost of the DFT network that does not enter the MP2 predictions."""
    from minbasis.fit.fidelity import FidelityData
    from minbasis.fit.mlp_mf import MLPMultiFidelityConfig, fit_mlp_mf

    idx = np.sort(order[:n])
    hi = [train[i] for i in idx]
    n_atoms = np.array([len(a) for a in test], dtype=float)
    hiE = FidelityData(hi, "high", energy_key="energy_high")
    hiEF = FidelityData(hi, "high", energy_key="energy_high", forces_key="forces_high")
    dft = FidelityData(train, "dft", energy_key="energy_dft", forces_key="forces_dft")
    jobs = {"MLP_SF_E": ([hiE], True), "MLP_SF_EF": ([hiEF], True), "MLP_MF_dft": ([hiE, dft], True),
            "MLP_uncoupled_dft": ([hiE, dft], False)}
    # validation-only runs skip the uncoupled control: its networks are SF_E's and an SF_EF-type fit on DFT
    methods = MLP_METHODS[:3] if validation_only else MLP_METHODS
    runs: dict = {m: {} for m in methods}
    for seed in seeds:
        for method in methods:
            data, shared = jobs[method]
            if (method == "MLP_uncoupled_dft" and uncoupled_seeds is not None
                    and seeds.index(seed) >= uncoupled_seeds):
                runs[method][str(seed)] = dict(runs["MLP_SF_E"][str(seed)], identical_to="MLP_SF_E")
                log(f"  n={n} seed {seed} {method:18} = MLP_SF_E of this seed (independent networks; not refitted)")
                continue
            t = time.perf_counter()
            model = fit_mlp_mf(basis, data, MLPMultiFidelityConfig(shared=shared, seed=seed, validation_seed=seed,
                                                                  **mcfg))
            r = {"fit_seconds": time.perf_counter() - t, "fits": _fit_summary(model)}
            if not validation_only:
                r.update(mlp_test_metrics(model, test, n_atoms))
            if method == "MLP_uncoupled_dft" and not validation_only:
                same = runs["MLP_SF_E"][str(seed)]
                r["max_abs_diff_forces_mae_vs_SF_E"] = abs(r["forces_mae"] - same["forces_mae"])
            runs[method][str(seed)] = r
            stops = "; ".join(f"{k}: best {v['best_iteration']} of {v['n_iter']} ({v['message']}), val loss "
                              f"{v['best_val_loss']:.4g}" for k, v in r["fits"].items())
            score = "" if validation_only else f"F MAE {r['forces_mae']:.4f} eV/Å  "
            log(f"  n={n} seed {seed} {method:18} {score}({r['fit_seconds']:.0f} s; {stops})")
    summary = {} if validation_only else summarise_seed_study(runs, seeds)
    return {"n": n, "seeds": list(seeds), "config": mcfg, "runs": runs, "summary": summary,
            "validation_only": validation_only}


def summarise_seed_study(runs: dict, seeds) -> dict:
    """Mean ± std over seeds of each MLP method's held-out force and energy MAE, and the
    acceptance ratios per seed (SF_E, SF_EF, uncoupled against MF_dft)."""
    summary: dict = {}
    for method in MLP_METHODS:
        v = np.array([runs[method][str(s)]["forces_mae"] for s in seeds])
        e = np.array([runs[method][str(s)]["energy_mae_meV_atom"] for s in seeds])
        summary[method] = {"forces_mae_mean": float(v.mean()), "forces_mae_std": float(v.std(ddof=1)) if len(v) > 1
                           else 0.0, "forces_mae_min": float(v.min()), "forces_mae_max": float(v.max()),
                           "energy_mae_meV_atom_mean": float(e.mean()),
                           "energy_mae_meV_atom_std": float(e.std(ddof=1)) if len(e) > 1 else 0.0}

    def ratios(a, b):
        r = np.array([runs[a][str(s)]["forces_mae"] / runs[b][str(s)]["forces_mae"] for s in seeds])
        return {"per_seed": r.tolist(), "mean": float(r.mean()), "std": float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                "ratio_of_means": summary[a]["forces_mae_mean"] / summary[b]["forces_mae_mean"]}

    summary["ratios"] = {"MF_dft_over_SF_E": ratios("MLP_MF_dft", "MLP_SF_E"),
                         "MF_dft_over_SF_EF": ratios("MLP_MF_dft", "MLP_SF_EF"),
                         "uncoupled_over_SF_E": ratios("MLP_uncoupled_dft", "MLP_SF_E")}
    return summary


def merge_seed_studies(paths) -> dict:
    """One seed study from several --mlp-only JSON files of the same settings (seeds split over
    processes with --seed-list); raises SystemExit if their settings differ or a seed repeats."""
    studies = [json.loads(Path(q).read_text()) for q in paths]
    first = studies[0]
    runs: dict = {m: {} for m in first["runs"]}
    seeds: list = []
    for st in studies:
        if st["config"] != first["config"] or st["n"] != first["n"] or st.get("validation_only"):
            sys.exit("--merge: the studies differ in settings or are validation-only")
        for sd in st["seeds"]:
            if sd in seeds:
                sys.exit(f"--merge: seed {sd} appears twice")
            seeds.append(sd)
        for m, per in st["runs"].items():
            runs[m].update(per)
    seeds.sort()
    meta = dict(first.get("meta", {}), merged_from=[str(q) for q in paths],
                seconds=sum(st.get("meta", {}).get("seconds", 0.0) for st in studies))
    return {"n": first["n"], "seeds": seeds, "config": first["config"], "runs": runs,
            "summary": summarise_seed_study(runs, seeds), "validation_only": False, "meta": meta}


def mlp_acceptance(study: dict) -> dict:
    """Issue-4 MLP targets from a seed study: ratios of the seed means (and per-seed spread)."""
    r = study["summary"]["ratios"]
    sm = study["summary"]
    acc = {"MLP_MF_dft_over_MLP_SF_E": r["MF_dft_over_SF_E"]["ratio_of_means"],
           "MLP_MF_dft_over_MLP_SF_EF": r["MF_dft_over_SF_EF"]["ratio_of_means"],
           "MLP_uncoupled_over_MLP_SF_E": r["uncoupled_over_SF_E"]["ratio_of_means"],
           "MLP_ratios_per_seed": {k: v["per_seed"] for k, v in r.items()}}
    acc["MLP_MF_dft_pass"] = bool(acc["MLP_MF_dft_over_MLP_SF_E"] <= 0.5 and acc["MLP_MF_dft_over_MLP_SF_EF"] <= 1.5)
    # "no better than SF_E within noise": the control's mean is not below SF_E's mean by more than 2 standard errors
    d = sm["MLP_uncoupled_dft"]["forces_mae_mean"] - sm["MLP_SF_E"]["forces_mae_mean"]
    se = np.sqrt((sm["MLP_uncoupled_dft"]["forces_mae_std"] ** 2 + sm["MLP_SF_E"]["forces_mae_std"] ** 2)
                 / len(study["seeds"]))
    acc["MLP_uncoupled_minus_SF_E"] = {"mean_difference": float(d), "standard_error": float(se),
                                       "no_better_within_noise": bool(d >= -2.0 * se)}
    return acc


def print_mlp_summary(study: dict) -> None:
    """Mean ± std over seeds of the held-out MP2 force MAE and the acceptance ratios."""
    if study.get("validation_only"):
        return
    print(f"\nMLP, n = {study['n']} MP2 energies, seeds {study['seeds']}: held-out MP2 force MAE (eV/Å), mean ± std")
    for method in MLP_METHODS:
        sm = study["summary"][method]
        per = [study["runs"][method][str(s)]["forces_mae"] for s in study["seeds"]]
        print(f"  {method:18} {sm['forces_mae_mean']:.4f} ± {sm['forces_mae_std']:.4f}   per seed "
              + ", ".join(f"{v:.4f}" for v in per))
    for k, v in study["summary"]["ratios"].items():
        print(f"  {k:22} per seed " + ", ".join(f"{x:.3f}" for x in v["per_seed"])
              + f"; mean {v['mean']:.3f} ± {v['std']:.3f}; ratio of means {v['ratio_of_means']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny basis, 160 training frames, 2 sizes")
    ap.add_argument("--mlp-hidden", type=int, default=64, help="MLP hidden width (default 64)")
    ap.add_argument("--mlp-iter", type=int, default=4000, help="MLP L-BFGS iteration cap (default 4000)")
    ap.add_argument("--mlp-patience", type=int, default=150,
                    help="MLP early stopping: validation checks (every 10 iterations) without improvement (default "
                         "150)")
    ap.add_argument("--uncoupled-seeds", type=int, default=None,
                    help="fit the MLP uncoupled control in full for the first K seeds only; for the others its MP2 "
                         "head is the SF_E network of that seed (default: all seeds)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="MLP seed study: seeds 0..N-1, each the initial weights and the validation split (default 3)")
    ap.add_argument("--mlp-only", action="store_true",
                    help="run only the MLP seed study (SF_E, SF_EF, MF_dft, uncoupled at the largest size); writes "
                         "benchmarks/results/multifidelity_ethanol_mlp.json")
    ap.add_argument("--validation-only", action="store_true",
                    help="with --mlp-only: record validation curves only, never predict the test frames (how the "
                         "iteration cap and patience were chosen); writes ..._mlp_selection.json")
    ap.add_argument("--mlp-from", default=None,
                    help="full run: take the MLP seed study from this --mlp-only JSON (same settings) instead of "
                         "refitting it")
    ap.add_argument("--seed-list", default=None,
                    help="with --mlp-only: comma-separated seeds instead of 0..N-1 (to split a study over processes)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="merge --mlp-only studies of the same settings into --out and print the summary")
    ap.add_argument("--reptile-outer", type=int, default=15, help="Reptile outer steps (default 15)")
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/multifidelity_ethanol.json)")
    args = ap.parse_args()
    if args.merge:
        study = merge_seed_studies(args.merge)
        print_mlp_summary(study)
        out = Path(args.out or HERE / "results" / "multifidelity_ethanol_mlp.json")
        out.write_text(json.dumps(study, indent=1))
        print(f"wrote {out}")
        return
    t0 = time.perf_counter()
    train, test = shared_split("ethanol_mf.extxyz")
    if args.quick:
        basis = mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2)
        train, test = train[:160], test[:40]
        sizes = [25, 160]
    else:
        basis = mb.Basis.ace(["H", "C", "O"], 5.0, [6, 4, 2], [0, 3, 2], 3)
        sizes = [25, 50, 100, 200, len(train)]
    # MLPs read the minimal (functionally independent) subset of the same basis, as in
    # benchmarks/linear_vs_nonlinear.py (174 of 820 features per species; 4.7x cheaper descriptor gradients)
    basis_mlp = basis.minimal()
    C = len(basis.species)
    suffix = ("_quick" if args.quick else "") + ("_mlp" if args.mlp_only else "") + (
        "_selection" if args.validation_only else "")
    out_path = Path(args.out) if args.out else HERE / "results" / f"multifidelity_ethanol{suffix}.json"
    mcfg = dict(hidden=args.mlp_hidden, max_iter=30 if args.quick else args.mlp_iter, l2=1e-6, activation="silu",
                patience=args.mlp_patience, validate_every=10)
    seeds = [int(v) for v in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    order = np.random.default_rng(1).permutation(len(train))
    meta = {"minbasis_version": mb.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_start": list(os.getloadavg()), "date": time.strftime("%Y-%m-%d"),
            "threads": {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
            "basis": {"species": list(basis.species), "features_per_species": basis.n_features,
                      "hash": basis.spec.hash},
            "basis_mlp": {"minimal_of": basis.spec.hash, "features_per_species": basis_mlp.n_features},
            "n_train": len(train), "n_test": len(test),
            "split": "test = first 20% of default_rng(0).permutation(800); MP2 subsets = first n of "
                     "default_rng(1).permutation(640); MLP validation: 10% of each training entry, "
                     "default_rng(seed + entry index)", "quick": args.quick, "command": " ".join(["python"] + sys.argv)}
    if args.mlp_only:
        print(f"MLP seed study: {basis_mlp.n_features} features/species, seeds {seeds}, n = {sizes[-1]} MP2 energies, "
              f"{mcfg}" + (" (validation only: test frames not scored)" if args.validation_only else ""), flush=True)
        study = mlp_seed_study(basis_mlp, train, test, order, sizes[-1], seeds, mcfg, args.validation_only,
                               log=lambda m: print(m, flush=True), uncoupled_seeds=args.uncoupled_seeds)
        meta.update(seconds=time.perf_counter() - t0, load_average_end=list(os.getloadavg()))
        study["meta"] = meta
        print_mlp_summary(study)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(study, indent=1))
        print(f"wrote {out_path}; total runtime {time.perf_counter() - t0:.0f} s")
        return
    print(f"basis: {basis.n_features} features/species × {C} species; {len(train)} training, {len(test)} test frames",
          flush=True)
    piwsl = PIWSLConfig(lambda_tc=1.2, lambda_sc=0.01, delta=0.05, seed=0)
    rows = Rows(basis, train, piwsl)
    rows_test = design_rows(basis, test)
    print(f"design rows and PIWSL rows in {rows.seconds:.0f} s", flush=True)
    M = len(train)
    all_idx = np.arange(M)
    # single-level fits of the cheaper levels on all training frames: the meta-learning prior
    low_blocks = {name: rows.block(name, key, all_idx, all_idx) for name, key in LEVELS.items()}
    low_coefs = {}
    results: dict = {"sizes": sizes, "methods": {}, "fits": {}}
    for name, blk in low_blocks.items():
        c, e0, info = fit_blocks([blk], coupling="none", n_channels=C)
        low_coefs[name] = c[0]
        results["fits"][f"single_{name}"] = {"mp2_test": score(c[0], e0[0], rows_test, test, C),
                                             "ridge": info["per_fidelity"][name]["ridge"]}
        print(f"  {name:5} single-level model scored against MP2: {results['fits'][f'single_{name}']['mp2_test']}",
              flush=True)
    prior = np.mean([low_coefs[n] for n in LEVELS], axis=0)

    def record(method, n, coef, e0, info, seconds):
        m = score(coef, e0, rows_test, test, C)
        m.update(seconds=seconds, **{k: info[k] for k in ("r_c", "r_d", "d_norm_ratio", "noise", "noise_weights",
                                                           "noise_rms", "evidence_evaluations") if k in info})
        if "per_fidelity" in info and "high" in info["per_fidelity"]:
            m["ridge_high"] = info["per_fidelity"]["high"]["ridge"]
        results["methods"].setdefault(method, {})[str(n)] = m
        print(f"  n={n:4} {method:14} F MAE {m['forces_mae']:.4f} eV/Å  E MAE {m['energy_mae_meV_atom']:.3f} "
              f"meV/atom  ({seconds:.1f} s)", flush=True)

    for n in sizes:
        idx = np.sort(order[:n])
        hi_E = rows.block("high", "high", idx)
        jobs = [("SF_E", [hi_E], "none", None), ("SF_EF", [rows.block("high", "high", idx, idx)], "none", None),
                ("SF_E+PIWSL", [rows.block("high", "high", idx, piwsl=True)], "none", None),
                ("meta", [hi_E], "none", {"high": prior}),
                ("uncoupled_dft", [hi_E, low_blocks["dft"]], "none", None)]
        jobs += [(f"MF_{name}", [hi_E, low_blocks[name]], "delta", None) for name in LEVELS]
        jobs += [(f"MF_{name}_shared_noise", [hi_E, low_blocks[name]], "delta", None) for name in LEVELS]
        jobs += [(f"pooled_{name}", [hi_E, low_blocks[name]], "pooled", None) for name in ("dft", "hf")]
        for method, blocks, coupling, pr in jobs:
            t = time.perf_counter()
            # one noise level for the naive pooled control and the *_shared_noise comparison
            noise = "shared" if (method.startswith("pooled") or method.endswith("shared_noise")) else "per_fidelity"
            coefs, e0, info = fit_blocks(blocks, coupling=coupling, prior=pr, n_channels=C, noise=noise)
            record(method, n, coefs[0], e0[0], info, time.perf_counter() - t)

    # MLP seed study (shared hidden layer + heads; uncoupled = separate networks) at the largest size
    from minbasis.fit.fidelity import FidelityData
    from minbasis.fit.mlp_mf import MLPMultiFidelityConfig, fit_mlp_mf

    if args.mlp_from:
        study = json.loads(Path(args.mlp_from).read_text())
        same = {k: study["config"].get(k) for k in mcfg} == mcfg and study["n"] == sizes[-1]
        if not same or study.get("validation_only"):
            sys.exit(f"{args.mlp_from}: not a scored MLP seed study with these settings ({mcfg}, n = {sizes[-1]})")
        study["source"] = str(args.mlp_from)
        print(f"MLP seed study taken from {args.mlp_from} (seeds {study['seeds']})", flush=True)
    else:
        study = mlp_seed_study(basis_mlp, train, test, order, sizes[-1], seeds, mcfg,
                               log=lambda m: print(m, flush=True), uncoupled_seeds=args.uncoupled_seeds)
    results["mlp"] = study
    results["mlp_config"] = mcfg
    for method, sm in study["summary"].items():
        if method.startswith("MLP_"):
            results["methods"].setdefault(method, {})[str(study["n"])] = {
                "forces_mae": sm["forces_mae_mean"], "forces_mae_std": sm["forces_mae_std"],
                "energy_mae_meV_atom": sm["energy_mae_meV_atom_mean"], "seeds": study["seeds"]}

    # MLP meta-learning: Reptile over the three cheaper levels, then fine-tuning on n ≤ 50 MP2 energies
    from minbasis.fit.mlp_mf import reptile_pretrain

    meta_sizes = [n for n in sizes if n <= 50] or sizes[:1]
    t = time.perf_counter()
    levels = [FidelityData(train, name, energy_key=f"energy_{key}", forces_key=f"forces_{key}")
              for name, key in LEVELS.items()]
    outer, inner = (3, 3) if args.quick else (args.reptile_outer, 10)
    init = reptile_pretrain(basis_mlp, levels, MLPMultiFidelityConfig(**mcfg), outer=outer, inner=inner, epsilon=0.5,
                            seed=0)
    results["reptile"] = {"outer": outer, "inner": inner, "epsilon": 0.5, "schedule": init["levels"],
                          "seconds": time.perf_counter() - t}
    print(f"  Reptile pretraining ({outer} outer × {inner} inner L-BFGS steps) in {time.perf_counter() - t:.0f} s",
          flush=True)
    for n in meta_sizes:
        idx = np.sort(order[:n])
        hi = [FidelityData([train[i] for i in idx], "high", energy_key="energy_high")]
        for method, kw in (("MLP_SF_E", {}), ("MLP_reptile", {"init": init})):
            if method == "MLP_SF_E" and str(n) in results["methods"].get(method, {}):
                continue
            t = time.perf_counter()
            model = fit_mlp_mf(basis_mlp, hi, MLPMultiFidelityConfig(**mcfg), **kw)
            m = mlp_test_metrics(model, test, rows_test.n_atoms)
            m.update(seconds=time.perf_counter() - t, best_iteration=model.info["best_iteration"],
                     n_iter=model.info["n_iter"], seed=0)
            results["methods"].setdefault(method, {})[str(n)] = m
            print(f"  n={n:4} {method:18} F MAE {m['forces_mae']:.4f} eV/Å  E MAE {m['energy_mae_meV_atom']:.3f} "
                  f"meV/atom  ({m['seconds']:.0f} s)", flush=True)

    seconds = time.perf_counter() - t0
    meth = results["methods"]
    nmax = str(sizes[-1])
    acc = {"largest_n": sizes[-1],
           "MF_dft_over_SF_E": meth["MF_dft"][nmax]["forces_mae"] / meth["SF_E"][nmax]["forces_mae"],
           "MF_dft_over_SF_EF": meth["MF_dft"][nmax]["forces_mae"] / meth["SF_EF"][nmax]["forces_mae"],
           "uncoupled_over_SF_E": meth["uncoupled_dft"][nmax]["forces_mae"] / meth["SF_E"][nmax]["forces_mae"],
           "piwsl_change_forces_mae": {k: meth["SF_E+PIWSL"][k]["forces_mae"] - meth["SF_E"][k]["forces_mae"]
                                       for k in meth["SF_E"]},
           "meta_over_SF_E_forces": {k: meth["meta"][k]["forces_mae"] / meth["SF_E"][k]["forces_mae"]
                                     for k in meth["SF_E"]},
           "meta_over_SF_E_energy": {k: meth["meta"][k]["energy_mae_meV_atom"] / meth["SF_E"][k]["energy_mae_meV_atom"]
                                     for k in meth["SF_E"]}}
    acc["MF_dft_pass"] = bool(acc["MF_dft_over_SF_E"] <= 0.5 and acc["MF_dft_over_SF_EF"] <= 1.5)
    acc.update(mlp_acceptance(study))
    results["acceptance"] = acc
    meta.update(seconds=seconds, load_average_end=list(os.getloadavg()),
                weights={"energy": W_E, "forces": W_F}, piwsl=vars(piwsl))
    results["meta"] = meta
    # table
    names = list(meth)
    print("\nheld-out MP2 force MAE (eV/Å) / energy MAE (meV/atom) vs number of MP2 energies n")
    print(f"{'method':18}" + "".join(f"{'n=' + str(n):>18}" for n in sizes))
    for name in names:
        print(f"{name:18}" + "".join((f"{meth[name][str(n)]['forces_mae']:>9.4f} /"
                                       f"{meth[name][str(n)]['energy_mae_meV_atom']:>7.2f}") if str(n) in meth[name]
                                      else f"{'–':>17}" for n in sizes))
    print_mlp_summary(study)
    print(f"\nacceptance at n={nmax}: MF_dft/SF_E = {acc['MF_dft_over_SF_E']:.3f} (target ≤ 0.5), MF_dft/SF_EF = "
          f"{acc['MF_dft_over_SF_EF']:.3f} (target ≤ 1.5), uncoupled/SF_E = {acc['uncoupled_over_SF_E']:.3f}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1))
    plot(results, out_path.with_suffix(".png"))
    print(f"wrote {out_path} and {out_path.with_suffix('.png')}; total runtime {seconds:.0f} s")


def plot(results: dict, path: Path) -> None:
    """Learning curves: held-out MP2 force and energy MAE against the number of MP2 energies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = results["sizes"]
    style = {"SF_E": ("k", "o", "-"), "SF_EF": ("k", "s", "--"), "MF_dft": ("tab:blue", "o", "-"),
             "MF_hf": ("tab:orange", "o", "-"), "MF_gfn2": ("tab:green", "o", "-"),
             "MF_dft_shared_noise": ("tab:blue", ".", "--"), "MF_hf_shared_noise": ("tab:orange", ".", "--"),
             "MF_gfn2_shared_noise": ("tab:green", ".", "--"),
             "pooled_dft": ("tab:blue", "x", ":"), "pooled_hf": ("tab:orange", "x", ":"),
             "uncoupled_dft": ("tab:gray", "+", ":"), "SF_E+PIWSL": ("tab:purple", "^", "-."),
             "meta": ("tab:red", "D", "-."), "MLP_SF_E": ("k", "*", "none"), "MLP_SF_EF": ("k", "P", "none"),
             "MLP_MF_dft": ("tab:blue", "*", "none"), "MLP_uncoupled_dft": ("tab:gray", "*", "none"),
             "MLP_reptile": ("tab:red", "*", "-")}
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    for ax, key, label in ((axes[0], "forces_mae", "held-out MP2 force MAE (eV/Å)"),
                           (axes[1], "energy_mae_meV_atom", "held-out MP2 energy MAE (meV/atom)")):
        for name, vals in results["methods"].items():
            c, mk, ls = style.get(name, ("tab:brown", ".", "-"))
            xs = [n for n in sizes if str(n) in vals]
            ax.plot(xs, [vals[str(n)][key] for n in xs], color=c, marker=mk, ls=ls if len(xs) > 1 else "none",
                    label=name, ms=9 if name.startswith("MLP") else 5, mfc="none" if name.startswith("MLP") else None)
            err = [(n, vals[str(n)][key], vals[str(n)].get(key.replace("_mae", "_mae_std"))) for n in xs]
            err = [e for e in err if key == "forces_mae" and e[2] is not None]
            if err:  # MLP seed study: mean ± std over seeds
                ax.errorbar([e[0] for e in err], [e[1] for e in err], yerr=[e[2] for e in err], color=c, ls="none",
                            capsize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("number of MP2 energies in training (low levels: all frames)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    b = results["meta"]["basis"]
    fig.suptitle(f"ethanol, ACE basis ({b['features_per_species']} features/species): linear fits (lines) and "
                 f"MLPs (large open markers; at n = {results.get('mlp', {}).get('n', '')} mean ± std over seeds); "
                 f"test: {results['meta']['n_test']} held-out frames, MP2 labels")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
