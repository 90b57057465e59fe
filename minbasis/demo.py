"""``minbasis demo``: the whole pipeline on the bundled ethanol MP2 frames."""

from __future__ import annotations

import time
from importlib import resources

import numpy as np

from .errors import MinbasisError

__all__ = ["bundled_ethanol_path", "run_demo"]


def bundled_ethanol_path() -> str:
    """Path of the bundled ethanol subset (240 frames, four levels of theory; see data/README.md)."""
    return str(resources.files("minbasis") / "data" / "ethanol_mf_subset.extxyz")


def run_demo(seed: int = 0, n_train: int = 180, print_fn=print) -> dict:
    """Build, prune, fit and evaluate on bundled data; returns the held-out metrics.

    Steps: an ACE basis for H, C, O (r_cut 5 Å, ν ≤ 3, n_max [6, 4, 2], l_max [0, 3, 2]); its
    minimal functionally independent subset; linear fits of MP2/cc-pVDZ energies and forces
    (``energy_high``, ``forces_high``) on ``n_train`` frames chosen with ``seed``; errors on the
    remaining frames for both bases.

    Returns
    -------
    dict: {"full": metrics, "minimal": metrics, "n_features": {...}, "seconds": float}
    """
    from .basis import Basis
    from .fit.metrics import format_metrics_table
    from .fit import error_metrics, fit_linear, get_labels, read_structures

    t0 = time.perf_counter()
    frames = read_structures(bundled_ethanol_path())
    if not 1 <= n_train < len(frames):
        raise MinbasisError(f"n_train must be in 1..{len(frames) - 1}, got {n_train}")
    perm = np.random.default_rng(seed).permutation(len(frames))
    train = [frames[i] for i in perm[:n_train]]
    test = [frames[i] for i in perm[n_train:]]
    print_fn(f"ethanol, MP2/cc-pVDZ labels: {len(train)} training and {len(test)} held-out frames (seed {seed})")
    full = Basis.ace(["H", "C", "O"], 5.0, n_max=[6, 4, 2], l_max=[0, 3, 2], order=3)
    print_fn(f"ACE basis: {full.n_features} linearly independent invariants, per order {full.counts_by_order()}")
    mini = full.minimal()
    rec = mini.spec.pruning
    print_fn(f"minimal basis: {mini.n_features} functionally independent (of at most {rec['max_rank']} = "
             f"V − 3, V = {rec['n_variables']} moment components), per order {mini.counts_by_order()}")
    labels = get_labels(test, "energy_high", "forces_high")
    out: dict = {"n_features": {"full": full.n_features, "minimal": mini.n_features}}
    for name, basis in (("full", full), ("minimal", mini)):
        t = time.perf_counter()
        model = fit_linear(basis, train, energy_key="energy_high", forces_key="forces_high", progress=True)
        metrics = error_metrics(test, labels, model.predict(test))
        out[name] = metrics
        print_fn(f"\nlinear fit on the {name} basis ({basis.n_features} features per species, "
                 f"{time.perf_counter() - t:.1f} s); held-out errors:")
        print_fn(format_metrics_table(metrics))
    out["seconds"] = time.perf_counter() - t0
    print_fn(f"\ndemo finished in {out['seconds']:.0f} s. A linear model needs the full basis; the minimal one "
             "is the input for nonlinear models (docs/theory/completeness.md).")
    return out
