"""Sensitivity of linear SF_E + PIWSL to the displacement size δ (companion of multifidelity_ethanol.py).

Same split, basis and nested MP2-energy subsets as ``multifidelity_ethanol.py``. For each δ it
reports (a) the RMS Taylor and path residuals (meV/atom) that an accurate MP2 model — the SF_EF
fit on all 640 training frames — has on the training frames, i.e. how far the PIWSL targets
(residual = 0) are from the true surface, and (b) held-out MP2 errors of SF_E + PIWSL
(λ_TC 1.2, λ_SC 0.01). This is a sensitivity analysis on the test set: no value of δ is
selected from it.

Usage::

    python benchmarks/piwsl_sensitivity.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import minbasis as mb  # noqa: E402
from minbasis.fit.multifidelity import PIWSLConfig, design_rows, fit_blocks  # noqa: E402
from accuracy import shared_split  # noqa: E402
from multifidelity_ethanol import HERE, Rows, score  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    train, test = shared_split("ethanol_mf.extxyz")
    if args.quick:
        basis = mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2)
        train, test, sizes, deltas = train[:160], test[:40], [25, 160], [0.05, 0.01]
    else:
        basis = mb.Basis.ace(["H", "C", "O"], 5.0, [6, 4, 2], [0, 3, 2], 3)
        sizes, deltas = [25, 50, 100, 200, len(train)], [0.05, 0.02, 0.01, 0.005]
    C = len(basis.species)
    rows_test = design_rows(basis, test)
    order = np.random.default_rng(1).permutation(len(train))
    out: dict = {"sizes": sizes, "deltas": {}}
    ref = None
    for delta in deltas:
        rows = Rows(basis, train, PIWSLConfig(lambda_tc=1.2, lambda_sc=0.01, delta=delta, seed=0))
        if ref is None:
            all_idx = np.arange(len(train))
            c, e0, _ = fit_blocks([rows.block("high", "high", all_idx, all_idx)], coupling="none", n_channels=C)
            ref = c[0]
        res = {"taylor_rms_meV_atom": float(1e3 * np.sqrt(np.mean((rows.tay @ ref) ** 2))),
               "path_rms_meV_atom": float(1e3 * np.sqrt(np.mean((rows.path @ ref) ** 2))), "SF_E+PIWSL": {}}
        for n in sizes:
            idx = np.sort(order[:n])
            c, e0, _ = fit_blocks([rows.block("high", "high", idx, piwsl=True)], coupling="none", n_channels=C)
            res["SF_E+PIWSL"][str(n)] = score(c[0], e0[0], rows_test, test, C)
        out["deltas"][str(delta)] = res
        print(f"δ = {delta:5.3f} Å: true Taylor residual {res['taylor_rms_meV_atom']:.2f} meV/atom, path "
              f"{res['path_rms_meV_atom']:.2f}; SF_E+PIWSL force MAE " +
              ", ".join(f"n={n}: {res['SF_E+PIWSL'][str(n)]['forces_mae']:.4f}" for n in sizes), flush=True)
    out["seconds"] = time.perf_counter() - t0
    path = HERE / "results" / ("piwsl_sensitivity" + ("_quick" if args.quick else "") + ".json")
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
