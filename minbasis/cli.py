"""The ``minbasis`` command line (user guide: docs/guide/).

Every subcommand has ``--help``. Errors end with exit code 2 and a single line
``minbasis: error: <reason>`` on standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import MinbasisError
from .files import check_not_input

__all__ = ["main", "build_parser"]


def _int_list(text: str) -> int | list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or a comma-separated list such as 8,6,3, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    return values[0] if len(values) == 1 else values


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {value}")
    return value


def _data_spec_file(spec: str) -> str:
    """The FILE part of a ``--data FILE:key=value:...`` spec (as :func:`minbasis.fit.fidelity.parse_data_spec`)."""
    parts = spec.split(":")
    k = 1
    while k < len(parts) and "=" not in parts[k]:
        k += 1
    return ":".join(parts[:k])


def _species(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated chemical symbols, e.g. H,C,O")
    return values


def _add_label_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("--energy-key", default="energy",
                   help="info key of the energy in eV (default: energy; falls back to an attached calculator)")
    p.add_argument("--forces-key", default="forces", help="arrays key of the forces in eV/Å (default: forces)")
    p.add_argument("--stress-key", default=None,
                   help="info key of the stress in eV/Å³ (Voigt or 3×3, ASE sign). Default: use 'stress' "
                        "where periodic structures carry it, skip otherwise")
    p.add_argument("--no-forces", action="store_true", help="ignore forces")
    p.add_argument("--no-energy", action="store_true", help="ignore energies")


def _keys(args) -> tuple[str | None, str | None, str | None]:
    """Resolve label keys; the default stress key is used only when some structure has it."""
    return (None if args.no_energy else args.energy_key, None if args.no_forces else args.forces_key,
            args.stress_key)


def _resolve_stress(frames, key: str | None) -> str | None:
    if key is not None:
        return key
    from .fit.data import _calc_value

    for a in frames:
        if a.pbc.all() and (a.info.get("stress") is not None or _calc_value(a, "stress") is not None):
            return "stress"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``minbasis`` command."""
    from .fit.compare import CompareConfig
    from .fit.linear import LinearFitConfig
    from .fit.mf_cli import config_defaults
    from .fit.mlp import MLPFitConfig
    from .fit.mlp_mf import MLPMultiFidelityConfig
    from .fit.multifidelity import PIWSLConfig

    # every default below is read from a configuration dataclass (tests/test_mlp.py checks that they agree)
    lin, mlp, mf, cmp, piwsl = (config_defaults(LinearFitConfig), config_defaults(MLPFitConfig),
                                config_defaults(MLPMultiFidelityConfig), config_defaults(CompareConfig),
                                config_defaults(PIWSLConfig))

    def both(name: str, fmt=str) -> str:
        a, b = fmt(mlp[name]), fmt(mf[name])
        return f"default {a}" if a == b else f"default {a} for mlp, {b} for mlp-mf"

    def widths(h) -> str:
        return ",".join(map(str, h)) if isinstance(h, (tuple, list)) else str(h)

    parser = argparse.ArgumentParser(
        prog="minbasis",
        description="Minimal complete ACE descriptor bases: build a basis, compute descriptors, fit and "
                    "evaluate linear ACE potentials. Units: eV, Å, eV/Å, eV/Å³.",
        epilog="Typical session:\n"
               "  minbasis basis --species H,C,O --r-cut 5 --n-max 6,4,2 --l-max 0,3,2 --order 3 -o basis.json\n"
               "  minbasis fit train.extxyz --basis basis.json --energy-key energy_high --forces-key forces_high -o model.npz\n"
               "  minbasis evaluate model.npz test.extxyz --energy-key energy_high --forces-key forces_high\n"
               "  minbasis demo            # all of the above on bundled ethanol MP2 data",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"minbasis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("basis", help="build an ACE or Cartesian basis specification (JSON)",
                       description="Enumerate the linearly independent ACE invariants (B-basis) for the given "
                                   "species and hyper-parameters; with --minimal, prune them to a functionally "
                                   "independent set by Jacobian rank. --n-max and --l-max take one value or one "
                                   "per correlation order (e.g. --n-max 8,6,3 --l-max 0,4,2 for --order 3). "
                                   "With --family cartesian --max-factors K, enumerate the contraction graphs of "
                                   "up to K moment tensors instead (e.g. --n-max 1 --l-max 3 --max-factors 4 "
                                   "--minimal gives 13 invariants).")
    p.add_argument("--species", type=_species, required=True, help="comma-separated chemical symbols, e.g. H,C,O")
    p.add_argument("--r-cut", type=float, required=True, help="cutoff radius in Å")
    p.add_argument("--n-max", type=_int_list, required=True, help="radial functions per order (int or list)")
    p.add_argument("--l-max", type=_int_list, required=True, help="largest l per order (int or list)")
    p.add_argument("--order", type=int, default=None,
                   help="correlation order ν (1..4); body order ν+1 (required with --family ace)")
    p.add_argument("--family", choices=["ace", "cartesian"], default="ace",
                   help="ace: coupled spherical moments (default); cartesian: full contractions of moment "
                        "tensors, one per contraction graph (MTP / CACE / HIP-HOP-NN style)")
    p.add_argument("--max-factors", type=int, default=None,
                   help="cartesian: largest number of tensor factors per invariant (1..6; required with "
                        "--family cartesian); --n-max/--l-max then take one value or one per number of factors")
    p.add_argument("--symmetric", choices=["stf", "plain"], default="stf",
                   help="cartesian: symmetric trace-free tensors (default) or plain symmetric tensors")
    p.add_argument("--include-products", action="store_true",
                   help="cartesian: also keep disconnected graphs (products), the linearly complete set")
    p.add_argument("--total-degree", type=float, default=None, help="keep products with Σ(n+1+l) ≤ this")
    p.add_argument("--radial-scale", type=float, default=5.0, help="distance-transform exponent (0: linear)")
    p.add_argument("--minimal", action="store_true", help="keep only functionally independent invariants")
    p.add_argument("--max-basis-size", type=float, default=None,
                   help="refuse ACE enumerations whose size estimate (coupling-tensor entries) exceeds this "
                        "(default 2e7, or $MINBASIS_MAX_BASIS_SIZE)")
    p.add_argument("-o", "--output", required=True, help="output JSON file")

    p = sub.add_parser("describe", help="compute per-atom descriptors (and gradients) to .npz",
                       description="Evaluate a basis on every atom of every structure in DATA (any format ASE "
                                   "reads). Writes features (n_atoms, n_features) in input order, atom_ptr (offsets "
                                   "of each structure) and, with --gradients, gradient_samples (G, 2) [i, k], "
                                   "position_gradients (G, 3, F) = ∂B_i/∂r_k in 1/Å and strain_gradients (N,3,3,F).")
    p.add_argument("data", help="structures file (extxyz, …)")
    p.add_argument("--basis", required=True, help="basis JSON written by `minbasis basis`")
    p.add_argument("--gradients", action="store_true", help="also write position and strain gradients")
    p.add_argument("--dask", default=None, metavar="CLUSTER",
                   help="describe on Dask (local:N or tcp://HOST:PORT) into a folder of .npz shards (format: "
                        "docs of minbasis.cluster; a rerun resumes); needs pip install 'minbasis[dask]'")
    p.add_argument("--shards", action="store_true", help="write a folder of shards without Dask (resumable)")
    p.add_argument("--shard-atoms", type=int, default=None, help="atoms per shard (default 2048)")
    p.add_argument("-o", "--output", required=True, help="output .npz (a folder with --dask or --shards)")

    p = sub.add_parser("fit", help="fit a linear ACE potential (or --model mlp|poly) to energies, forces and stress",
                       description="Fit E = Σ_i [E0(Z_i) + c_Z · B_i] by weighted least squares on energies (per "
                                   "atom), forces and virials. Regularisation is chosen automatically (Bayesian "
                                   "evidence) unless --solver ridge --alpha A is given. --model poly fits the same "
                                   "rows on polynomial features (products up to --degree) of the standardised "
                                   "features; --model mlp trains one small neural network per species "
                                   "(Behler-Parrinello form, --hidden 64 or 64,64) with forces through dB/dr, "
                                   "L-BFGS and early stopping on a seeded validation split. Both are meant for the "
                                   "minimal basis (`minbasis basis ... --minimal`).")
    p.add_argument("data", nargs="?", default=None,
                   help="training structures with labels (or give --data FILE:fidelity=... / --config)")
    p.add_argument("--basis", default=None,
                   help="basis JSON; leave out (or 'auto') to let fit choose the basis, the observable weights and "
                        "a smoothness prior on a validation split inside the training data (linear model)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="automatic basis: wall-time budget of the selection and the final fit (default 15)")
    p.add_argument("--r-cut", type=float, default=None, help="automatic basis: cutoff radius in Å (default 5)")
    p.add_argument("--data", dest="fidelity_data", action="append", default=None, metavar="FILE:fidelity=F:...",
                   help="multi-fidelity training data, repeatable: FILE:fidelity=NAME[:energy_key=K][:forces_key=K]"
                        "[:stress_key=K][:energy_weight=W][:forces_weight=W][:stress_weight=W]; labels not named "
                        "are absent and contribute nothing (implies --model linear-mf)")
    p.add_argument("--config", default=None,
                   help="TOML file with [[data]] tables (file, fidelity, energy_key, forces_key, stress_key, "
                        "weights) and optional model, basis, output, coupling (see minbasis.fit.fidelity)")
    p.add_argument("--coupling", choices=["delta", "none", "pooled"], default="delta",
                   help="linear-mf: delta (c_f = c_ref + d_f, ridges chosen by evidence; default), none "
                        "(independent fits per fidelity, a control) or pooled (one shared vector)")
    p.add_argument("--piwsl-tc", type=float, default=0.0,
                   help="weight of the PIWSL Taylor rows for energy-labelled structures (0: off; paper 1.2)")
    p.add_argument("--piwsl-sc", type=float, default=0.0,
                   help="weight of the PIWSL path-independence rows (0: off; paper 0.01)")
    p.add_argument("--piwsl-delta", type=float, default=piwsl["delta"],
                   help=f"PIWSL displacement size in Å (default {piwsl['delta']})")
    _add_label_keys(p)
    p.add_argument("--energy-weight", type=float, default=lin["energy_weight"],
                   help=f"weight of per-atom energy rows (1/eV; default {lin['energy_weight']})")
    p.add_argument("--forces-weight", type=float, default=lin["forces_weight"],
                   help=f"weight of force rows (Å/eV; default {lin['forces_weight']})")
    p.add_argument("--stress-weight", type=float, default=lin["stress_weight"],
                   help=f"weight of per-atom virial rows (1/eV; default {lin['stress_weight']})")
    p.add_argument("--config-type-weights", default=None,
                   help='JSON object of extra weights per config_type, e.g. \'{"surface": 2.0}\'')
    p.add_argument("--solver", default="bayesian", choices=["bayesian", "ridge", "ard"])
    p.add_argument("--alpha", type=float, default=1e-8, help="ridge strength for --solver ridge")
    p.add_argument("--dask", default=None, metavar="CLUSTER",
                   help="assemble the linear fit on Dask: local:N (N worker processes here) or tcp://HOST:PORT "
                        "(a running 'dask scheduler'); needs pip install 'minbasis[dask]'")
    p.add_argument("--model", choices=["linear", "mlp", "poly", "linear-mf", "mlp-mf"], default="linear",
                   help="linear (default): linear in the features; poly: linear in polynomial features; "
                        "mlp: per-species neural network; linear-mf: one linear head per fidelity (--data); "
                        "mlp-mf: shared hidden layer (--hidden) with one energy head per fidelity "
                        "(--coupling none: separate hidden layers, the uncoupled control)")
    p.add_argument("--degree", type=int, default=2, help="poly: largest monomial degree (default 2)")
    p.add_argument("--poly-inputs", type=int, default=None,
                   help="poly: form products among the first K features only (default: all)")
    # defaults None: the model's config dataclass decides (MLPFitConfig, MLPMultiFidelityConfig)
    p.add_argument("--hidden", type=_int_list, default=None,
                   help=f"mlp: hidden-layer widths, one or two comma-separated values; mlp-mf: one width "
                        f"({both('hidden', widths)})")
    p.add_argument("--activation", choices=["tanh", "silu"], default=None,
                   help=f"mlp, mlp-mf: activation ({both('activation')})")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default=None,
                   help=f"mlp: optimiser (default {mlp['optimizer']}; mlp-mf always uses lbfgs)")
    p.add_argument("--max-iter", type=int, default=None,
                   help=f"mlp, mlp-mf: L-BFGS iterations or Adam epochs ({both('max_iter')})")
    p.add_argument("--l2", type=float, default=None,
                   help=f"mlp, mlp-mf: weight decay on the weight matrices ({both('l2')})")
    p.add_argument("--validation-fraction", type=float, default=None,
                   help=f"mlp, mlp-mf: fraction of the structures held out for early stopping; 0 disables "
                        f"({both('validation_fraction')}); linear, poly: fraction held out (seeded, stratified "
                        f"by config_type) for the validation errors printed at the end only; the model is "
                        f"fitted on the rest (default 0: none)")
    p.add_argument("--committee", type=int, default=lin["committee"], metavar="K",
                   help="linear: committee of K coefficient vectors drawn from the Bayesian posterior, stored "
                        "with the model for energy_std/forces_std (default 32 with --solver bayesian; 0 "
                        "disables)")
    p.add_argument("--calibrate", type=float, default=lin["calibration_fraction"], metavar="F",
                   help="linear with committee: choose a factor on the predicted std on a held-out fraction F of "
                        "the training frames (stratified by config_type), so that 68.3 %% of its force errors "
                        "lie within 1σ; the final model is fitted on all frames (default 0: the posterior and "
                        "the training residuals as they are)")
    p.add_argument("--patience", type=int, default=None,
                   help=f"mlp, mlp-mf: validation checks (every {mlp['validate_every']} iterations) without "
                        f"improvement before stopping ({both('patience')})")
    p.add_argument("--seed", type=_seed, default=None,
                   help=f"mlp, mlp-mf: seed of the initial weights and the validation split ({both('seed')})")
    p.add_argument("--repulsion", choices=["auto", "zbl", "none"], default="auto",
                   help="linear: a fixed ZBL repulsive core below an inner cutoff per species pair (1.1 × the "
                        "shortest distance in the data), fitted as a baseline; auto (default) adds it when every "
                        "training structure is periodic (solids), none never (minbasis.repulsion)")
    p.add_argument("-o", "--output", required=True, help="output model .npz")

    p = sub.add_parser("compare", help="linear or nonlinear? learning curves of linear, polynomial and MLP fits",
                       description="Fit, on the same folds and training sizes, a linear model on the full basis, "
                                   "a linear model on its minimal subset, a linear model on polynomial features of "
                                   "the minimal basis and a per-species MLP on the minimal basis; score each on the "
                                   "same held-out structures (energy and force MAE, features per species, "
                                   "parameters, fit time, evaluation µs/atom). Prints a table and writes JSON + PNG "
                                   "(learning curves, accuracy vs cost). Nothing is chosen on the held-out "
                                   "structures: the MLP early-stops on a validation part of each training subset.",
                       epilog="example: minbasis compare train.extxyz --basis basis.json --test-fraction 0.2 "
                              "--energy-key energy_high --forces-key forces_high --sizes 50,100,200,640 -o cmp.json")
    p.add_argument("data", help="labelled structures: the training pool (and the held-out part unless --test is given)")
    p.add_argument("--basis", required=True, help="the FULL basis JSON; its minimal subset is computed")
    p.add_argument("--test", default=None, help="held-out structures (default: a seeded --test-fraction of DATA)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="held-out fraction of DATA when --test is not given (default 0.2)")
    _add_label_keys(p)
    p.add_argument("--models", default="linear_full,linear_minimal,poly,mlp",
                   help="comma-separated subset of linear_full, linear_minimal, poly, mlp (default: all)")
    p.add_argument("--sizes", type=_int_list, default=None,
                   help="training sizes, comma-separated (default: pool/8, pool/4, pool/2, pool)")
    p.add_argument("--folds", type=int, default=3, help="folds per training size (default 3)")
    p.add_argument("--degree", type=int, default=2, help="poly: largest monomial degree (default 2)")
    p.add_argument("--poly-inputs", type=int, default=None,
                   help="poly: products among the first K minimal features only (default: all)")
    p.add_argument("--hidden", type=_int_list, default=list(cmp["mlp_hidden"]),
                   help=f"mlp: hidden widths (default {widths(cmp['mlp_hidden'])})")
    p.add_argument("--activation", choices=["tanh", "silu"], default=cmp["mlp_activation"],
                   help=f"mlp: activation (default {cmp['mlp_activation']})")
    p.add_argument("--l2", type=float, default=cmp["mlp_l2"], help=f"mlp: weight decay (default {cmp['mlp_l2']})")
    p.add_argument("--max-iter", type=int, default=cmp["mlp_max_iter"],
                   help=f"mlp: L-BFGS iterations (default {cmp['mlp_max_iter']})")
    p.add_argument("--patience", type=int, default=cmp["mlp_patience"],
                   help=f"mlp: validation checks (every 10 iterations) without improvement before stopping "
                        f"(default {cmp['mlp_patience']})")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the held-out split and of the folds")
    p.add_argument("--threads", type=int, default=None,
                   help="Numba and BLAS threads (default: all; 1 gives per-core timings)")
    p.add_argument("-o", "--output", required=True, help="output JSON; the plot is written next to it (.png)")

    p = sub.add_parser("evaluate", help="errors of a fitted model on labelled structures",
                       description="Print energy, force and stress MAE/RMSE overall and per config_type; with "
                                   "--json print one JSON object (n_structures, energy_mae, energy_rmse [eV per "
                                   "structure], energy_mae_per_atom [eV/atom], forces_mae, forces_rmse [eV/Å], "
                                   "stress_mae, stress_rmse [eV/Å³], per_config_type). For a model with a "
                                   "committee (linear, Bayesian solver) the JSON also has calibration: the "
                                   "fractions of errors within 1σ and 2σ of the predicted std "
                                   "(forces_within_1sigma, forces_within_2sigma, energy_within_1sigma, "
                                   "energy_within_2sigma; 0.68 and 0.95 when calibrated).")
    p.add_argument("model", help="model .npz written by `minbasis fit`")
    p.add_argument("data", help="labelled structures")
    _add_label_keys(p)
    p.add_argument("--fidelity", default=None,
                   help="multi-fidelity models: the level of theory to predict (e.g. high); an unknown one is an error")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--parity", default=None, metavar="PLOT.png",
                   help="also write a parity plot (predicted vs reference energy per atom and force components, "
                        "coloured by config_type, PNG)")

    p = sub.add_parser("demo", help="end-to-end example on bundled ethanol MP2 data",
                       description="Build an ACE basis for H, C, O, prune it to its minimal functionally independent "
                                   "subset, fit MP2 energies and forces of bundled ethanol frames, and print held-out "
                                   "errors of the full and minimal bases.")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the train/test split")
    p.add_argument("--n-train", type=int, default=180, help="training frames (rest of the 240 are held out)")

    p = sub.add_parser("report", help="completeness analysis report (HTML page + JSON)",
                       description="Analyse what a basis can and cannot tell apart and write a self-contained HTML "
                                   "page (plots embedded, printable, no network needed) plus a JSON file with every "
                                   "number on it (same name, .json; layout in minbasis/report/schema.md). Shows LOCAL "
                                   "completeness (Jacobian rank in moment space and w.r.t. neighbour positions, which "
                                   "invariants were dropped and what they depend on) and GLOBAL distinguishability on "
                                   "environment pairs that fool low correlation orders (Pozdnyakov et al. 2020, "
                                   "Nigam et al. 2024) or on your own pair. With --data: effective rank, variance per "
                                   "order, Jacobian condition numbers, closest environments and cost per atom.",
                       epilog="example: minbasis report --species H,C,O --r-cut 5 --n-max 6,4,2 --l-max 0,3,2 "
                              "--order 3 --data ethanol.extxyz -o report.html")
    p.add_argument("--basis", default=None, help="basis JSON (full or minimal) written by `minbasis basis`; "
                                                 "or give the ACE settings below")
    p.add_argument("--species", type=_species, default=None, help="comma-separated chemical symbols, e.g. H,C,O")
    p.add_argument("--r-cut", type=float, default=None, help="cutoff radius in Å")
    p.add_argument("--n-max", type=_int_list, default=None, help="radial functions per order (int or list)")
    p.add_argument("--l-max", type=_int_list, default=None, help="largest l per order (int or list)")
    p.add_argument("--order", type=int, default=None, help="correlation order ν (1..4)")
    p.add_argument("--data", default=None, help="structures (extxyz, …) for the data and cost sections")
    p.add_argument("--pair", nargs=2, metavar=("A", "B"), default=None,
                   help="your own pair of structures (one per file, same atoms) to test whether the basis tells "
                        "them apart")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the random neighbour environments")
    p.add_argument("-o", "--output", required=True, help="output HTML file; the JSON is written next to it")

    # -- export (issue 12): a self-contained block ---------------------------------------------
    p = sub.add_parser("export", help="write a linear model in the ML-PACE .yace format (LAMMPS pair_style pace)",
                       description="Convert a fitted linear ACE model (full or minimal basis, any species) into the "
                                   "ML-PACE C-tilde format read by LAMMPS `pair_style pace` (and pace/kk) and by "
                                   "python-ace: radial functions expanded in PACE's ChebLinear base functions, "
                                   "invariants rewritten in complex-harmonic moments times the fitted weights, E0 and "
                                   "the ZBL repulsive core included. MLP and polynomial models cannot be exported "
                                   "(they are nonlinear in the ACE functions). Prints a JSON summary with the radial "
                                   "expansion errors.",
                       epilog="example: minbasis export model.npz --format yace -o model.yace; then in LAMMPS: "
                              "pair_style pace; pair_coeff * * model.yace Cu Ni Al")
    p.add_argument("model", help="model .npz written by `minbasis fit`")
    p.add_argument("--format", choices=["yace"], default="yace", help="output format (yace: ML-PACE C-tilde YAML)")
    p.add_argument("--radial-base", type=int, default=80,
                   help="number of ChebLinear base functions the radial functions are expanded in (default 80)")
    p.add_argument("-o", "--output", required=True, help="output file, e.g. model.yace")
    quiet_help = ("no progress bars and no informational messages on standard output (results such as evaluate's "
                  "table or JSON, compare's table, report's findings and errors still print). Without it, bars are "
                  "drawn only when standard error is a terminal (MINBASIS_PROGRESS=1 forces them, =0 hides them)")
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    for sp in sub.choices.values():  # also after the subcommand; SUPPRESS keeps a top-level --quiet
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=quiet_help)
    return parser


_QUIET = False


def _info(*args, **kwargs) -> None:
    """print() for informational messages: silent under --quiet."""
    if not _QUIET:
        print(*args, **kwargs)


def _cmd_export(args) -> int:
    from .export import export_yace
    from .fit import load_model

    model = load_model(args.model)
    summary = export_yace(model, args.output, n_radial_base=args.radial_base)
    print(json.dumps(summary))
    return 0


# ---------------------------------------------------------------------------------------------
def _cmd_basis(args) -> int:
    from .basis import Basis

    t0 = time.perf_counter()
    if args.family == "cartesian":
        if args.max_factors is None:
            raise MinbasisError("--family cartesian needs --max-factors (number of tensor factors, e.g. 4)")
        if args.order is not None or args.total_degree is not None:
            raise MinbasisError("--order and --total-degree belong to --family ace; use --max-factors for cartesian")
        basis = Basis.cartesian(args.species, args.r_cut, args.n_max, args.l_max, args.max_factors,
                                symmetric=args.symmetric, include_products=args.include_products,
                                radial_scale=args.radial_scale, max_size=args.max_basis_size)
    else:
        if args.order is None:
            raise MinbasisError("--family ace needs --order (correlation order ν, 1..4)")
        if args.max_factors is not None:
            raise MinbasisError("--max-factors belongs to --family cartesian; use --order for ace")
        basis = Basis.ace(args.species, args.r_cut, args.n_max, args.l_max, args.order,
                          total_degree=args.total_degree, radial_scale=args.radial_scale,
                          max_size=args.max_basis_size)
    print(f"full basis: {basis.n_features} invariants, per order {basis.counts_by_order()}")
    if args.minimal:
        basis = basis.minimal()
        rec = basis.spec.pruning
        print(f"minimal basis: {basis.n_features} functionally independent invariants "
              f"(V = {rec['n_variables']} moment components, maximum {rec['max_rank']}), per order {basis.counts_by_order()}")
    basis.save(args.output)
    print(f"wrote {args.output} (hash {basis.spec.hash[:12]}, {time.perf_counter() - t0:.1f} s)")
    return 0


def _cmd_describe(args) -> int:
    from .basis import Basis
    from .describe import describe
    from .fit.data import read_structures
    from .io import atomic_save_npz

    check_not_input([args.output], [args.data, args.basis])
    basis = Basis.load(args.basis)
    if args.dask or args.shards:
        from .cluster import describe_shards

        index = describe_shards(args.data, basis, args.output, gradients=args.gradients, dask=args.dask,
                                shard_atoms=args.shard_atoms)
        print(f"wrote {args.output}/: {len(index['shards'])} shards, {index['n_atoms']} atoms × "
              f"{index['n_features']} features" + (" with gradients" if args.gradients else ""))
        return 0
    frames = read_structures(args.data)
    res = describe(frames, basis, gradients=args.gradients, strain_gradients=args.gradients, progress=True)
    out = {"basis_hash": np.array(basis.spec.hash)}
    if args.gradients:
        out.update(features=res.features, atom_ptr=res.atom_ptr, gradient_samples=res.gradient_samples,
                   position_gradients=res.position_gradients, strain_gradients=res.strain_gradients)
        X = res.features
    else:
        X = res
        out.update(features=X, atom_ptr=np.cumsum([0] + [len(a) for a in frames]))
    out["numbers"] = np.concatenate([a.numbers for a in frames])
    atomic_save_npz(args.output, out)
    print(f"wrote {args.output}: features {X.shape[0]} atoms × {X.shape[1]}" + (" with gradients" if args.gradients else ""))
    return 0


def _cmd_fit(args) -> int:
    from .basis import Basis
    from .fit import LinearFitConfig, fit_linear, read_structures

    check_not_input([args.output], [args.data, args.basis, args.config]
                    + [_data_spec_file(spec) for spec in args.fidelity_data or []])
    if args.fidelity_data or args.config or args.model.endswith("-mf"):
        from .fit.mf_cli import fit_multifidelity_cli

        return fit_multifidelity_cli(args)
    if args.data is None:
        raise MinbasisError("fit needs DATA (or --data FILE:fidelity=... / --config for multi-fidelity)")
    if args.basis in (None, "auto"):
        return _fit_auto(args)
    basis = Basis.load(args.basis)
    frames = read_structures(args.data)
    e_key, f_key, s_key = _keys(args)
    s_key = _resolve_stress(frames, s_key)
    ctw = {}
    if args.config_type_weights:
        from .fit.data import check_config_type_weights

        try:
            ctw = json.loads(args.config_type_weights)
        except ValueError as exc:
            raise MinbasisError(f"--config-type-weights must be a JSON object of numbers ({exc})") from exc
        ctw = check_config_type_weights(ctw, [str(a.info.get("config_type", "default")) for a in frames])
    committee = args.committee
    if committee is None and args.solver != "bayesian":
        committee = 0
    cfg = LinearFitConfig(energy_weight=args.energy_weight, forces_weight=args.forces_weight,
                          stress_weight=args.stress_weight, config_type_weights=ctw, solver=args.solver,
                          alpha=args.alpha, committee=committee, calibration_fraction=args.calibrate)
    t0 = time.perf_counter()
    if args.dask and args.model != "linear":
        raise MinbasisError(f"--dask distributes linear fits only; --model {args.model} runs in one process")
    if args.model == "mlp":
        return _fit_mlp(args, basis, frames, (e_key, f_key, s_key), ctw, t0)
    from .fit.metrics import stratified_holdout

    vf = float(args.validation_fraction or 0.0)
    config_types = [str(a.info.get("config_type", "default")) for a in frames]
    val_idx, fit_idx = stratified_holdout(config_types, vf, 0 if args.seed is None else args.seed)
    fit_frames = [frames[i] for i in fit_idx]
    val_frames = [frames[i] for i in val_idx]
    if args.dask and len(val_idx):
        raise MinbasisError("--validation-fraction with --dask: split the file yourself (workers read it whole)")
    if args.model == "poly":
        from .fit import fit_polynomial

        model = fit_polynomial(basis, fit_frames, degree=args.degree, n_product_inputs=args.poly_inputs,
                               energy_key=e_key, forces_key=f_key, stress_key=s_key, config=cfg, progress=True)
        model.save(args.output)
        print(f"fitted {len(basis.species)}×{model.n_features} coefficients (degree-{args.degree} polynomial features "
              f"of {basis.n_features}) on {len(fit_frames)} structures ({model.info['n_rows']} rows, solver "
              f"{model.info['solver']}) in {time.perf_counter() - t0:.1f} s; wrote {args.output}")
    else:
        use_core = args.repulsion == "zbl" or (args.repulsion == "auto" and all(a.pbc.all() for a in frames))
        if use_core and args.dask:
            _info("--dask: the repulsive core is left out (fit without --dask to add it)")
        if use_core and not args.dask:
            from .fit.core import fit_linear_with_core

            model = fit_linear_with_core(basis, fit_frames, energy_key=e_key, forces_key=f_key, stress_key=s_key,
                                         config=cfg, progress=True)
            r_in = model.repulsion.r_in
            _info(f"repulsive ZBL core: r_in {r_in.min():.2f}–{r_in.max():.2f} Å (--repulsion none to leave it out)")
        else:
            model = fit_linear(basis, fit_frames, energy_key=e_key, forces_key=f_key, stress_key=s_key, config=cfg,
                               progress=True, dask=args.dask, source_file=args.data if args.dask else None)
        model.save(args.output)
        print(f"fitted {len(basis.species)}×{basis.n_features} coefficients on {len(fit_frames)} structures "
              f"({model.info['n_rows']} rows, solver {model.info['solver']}"
              f"{', committee of ' + str(model.committee_size) if model.committee_size else ''}) in "
              f"{time.perf_counter() - t0:.1f} s; wrote {args.output}")
    _print_fit_errors(model, fit_frames, val_frames, (e_key, f_key, s_key))
    return 0


def _print_fit_errors(model, fit_frames, val_frames, keys) -> None:
    """Print the training (and validation) error tables of a fitted model, per config_type."""
    from .fit import error_metrics, get_labels
    from .fit.metrics import format_metrics_table

    def table(frames, committee):
        kw = {"committee": committee} if committee is not None else {}
        pred = model.predict(frames, progress=True, **kw)
        return error_metrics(frames, get_labels(frames, *keys), pred)

    is_linear = hasattr(model, "committee_size")
    print(f"\ntraining errors ({len(fit_frames)} structures):")
    print(format_metrics_table(table(fit_frames, False if is_linear else None)))
    if val_frames:
        m = table(val_frames, True if is_linear else None)
        print(f"\nvalidation errors ({len(val_frames)} structures, not used in the fit):")
        print(format_metrics_table(m))


def _fit_auto(args) -> int:
    """``minbasis fit DATA -o M`` without --basis: :func:`minbasis.fit.auto.fit_auto`."""
    from .fit import read_structures
    from .fit.auto import AutoFitConfig, fit_auto

    if args.model != "linear":
        raise MinbasisError(f"the automatic basis is for linear fits; --model {args.model} needs --basis")
    if args.dask:
        raise MinbasisError("--dask needs an explicit --basis (the automatic selection runs in one process)")
    frames = read_structures(args.data)
    e_key, f_key, s_key = _keys(args)
    s_key = _resolve_stress(frames, s_key)
    kw = {}
    if args.budget_minutes is not None:
        kw["budget_minutes"] = args.budget_minutes
    if args.r_cut is not None:
        kw["r_cut"] = args.r_cut
    if args.validation_fraction is not None:
        kw["validation_fraction"] = args.validation_fraction
    if args.seed is not None:
        kw["seed"] = args.seed
    t0 = time.perf_counter()
    cfg = AutoFitConfig(**kw)

    def fit(fr, ek, fk, sk):
        return fit_auto(fr, energy_key=ek, forces_key=fk, stress_key=sk, config=cfg, progress=True,
                        log=lambda msg: print(msg, flush=True))

    use_core = args.repulsion == "zbl" or (args.repulsion == "auto" and all(a.pbc.all() for a in frames))
    if use_core:
        from .fit.auto import data_species
        from .fit.core import fit_with_core

        model = fit_with_core(fit, data_species(frames), frames, energy_key=e_key, forces_key=f_key, stress_key=s_key)
        r_in = model.repulsion.r_in
        _info(f"repulsive ZBL core: r_in {r_in.min():.2f}–{r_in.max():.2f} Å (--repulsion none to leave it out)")
    else:
        model = fit(frames, e_key, f_key, s_key)
    model.save(args.output)
    print(f"fitted {len(model.basis.species)}×{model.basis.n_features} coefficients on {len(frames)} structures in "
          f"{time.perf_counter() - t0:.0f} s; wrote {args.output}")
    return 0


def _fit_mlp(args, basis, frames, keys, ctw, t0) -> int:
    from .fit import MLPFitConfig, fit_mlp
    from .fit.mf_cli import nn_fit_options

    cfg = MLPFitConfig(**nn_fit_options(args, MLPFitConfig), energy_weight=args.energy_weight,
                       forces_weight=args.forces_weight, stress_weight=args.stress_weight, config_type_weights=ctw)
    model = fit_mlp(basis, frames, energy_key=keys[0], forces_key=keys[1], stress_key=keys[2], config=cfg,
                    progress=True)
    model.save(args.output)
    info = model.info
    print(f"trained {len(basis.species)} networks {basis.n_features}→{'→'.join(map(str, model.hidden))}→1 "
          f"({model.n_parameters} parameters) on {info['n_train']} structures, validated on {info['n_validation']} "
          f"(best iteration {info['best_iteration']} of {info['n_iter']}) in {time.perf_counter() - t0:.1f} s; "
          f"wrote {args.output}")
    _print_fit_errors(model, frames, [], keys)
    return 0


def _cmd_evaluate(args) -> int:
    from .fit import error_metrics, get_labels, load_model, read_structures
    from .fit.metrics import format_metrics_table

    model = load_model(args.model)
    frames = read_structures(args.data)
    e_key, f_key, s_key = _keys(args)
    s_key = _resolve_stress(frames, s_key)
    labels = get_labels(frames, e_key, f_key, s_key)
    pred = model.predict(frames, fidelity=args.fidelity, progress=not args.json)
    metrics = error_metrics(frames, labels, pred)
    if args.parity:
        from .fit.metrics import parity_plot

        parity_plot(frames, labels, pred, args.parity, title=f"{Path(args.model).name} on {Path(args.data).name}")
        if not args.json:
            _info(f"wrote {args.parity}")
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_metrics_table(metrics))
    return 0


def _cmd_compare(args) -> int:
    from .basis import Basis
    from .fit import read_structures
    from .fit.compare import CompareConfig, compare_models, format_comparison, holdout_split, plot_comparison
    from .io import atomic_write_text

    t0 = time.perf_counter()
    if args.threads is not None:
        import numba
        from threadpoolctl import threadpool_limits

        if args.threads < 1:
            raise MinbasisError(f"--threads must be >= 1, got {args.threads}")
        threadpool_limits(limits=args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    check_not_input([args.output, Path(args.output).with_suffix(".png")], [args.data, args.test, args.basis])
    basis = Basis.load(args.basis)
    frames = read_structures(args.data)
    if args.test is not None:
        pool, test = frames, read_structures(args.test)
    else:
        if not 0.0 < args.test_fraction < 1.0:
            raise MinbasisError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
        test_idx, pool_idx = holdout_split(len(frames), args.seed, args.test_fraction)
        pool, test = [frames[i] for i in pool_idx], [frames[i] for i in test_idx]
    e_key, f_key, s_key = _keys(args)
    sizes = args.sizes if isinstance(args.sizes, list) or args.sizes is None else [args.sizes]
    hidden = args.hidden if isinstance(args.hidden, list) else [args.hidden]
    cfg = CompareConfig(models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
                        sizes=tuple(sizes) if sizes else None, folds=args.folds, seed=args.seed,
                        poly_degree=args.degree, poly_inputs=args.poly_inputs, mlp_hidden=tuple(hidden),
                        mlp_activation=args.activation, mlp_l2=args.l2, mlp_max_iter=args.max_iter,
                        mlp_patience=args.patience,
                        keys={"energy_key": e_key, "forces_key": f_key, "stress_key": _resolve_stress(pool, s_key)})
    _info(f"pool {len(pool)} structures, held out {len(test)}; full basis {basis.n_features} features per species",
          flush=True)
    results = compare_models(basis, pool, test, cfg, log=lambda line: _info(line, flush=True))
    results["meta"] = {"data": str(args.data), "test": args.test, "basis": str(args.basis),
                       "seconds": time.perf_counter() - t0, "date": time.strftime("%Y-%m-%d %H:%M")}
    print("\n" + format_comparison(results))
    out = Path(args.output)
    atomic_write_text(out, json.dumps(results, indent=1))
    png = plot_comparison(results, out.with_suffix(".png"),
                          f"Linear or nonlinear? {Path(args.data).name}, {len(pool)}-structure pool, {len(test)} held "
                          f"out; bars: min–max over folds")
    _info(f"wrote {out} and {png} in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(seed=args.seed, n_train=args.n_train)
    return 0


def _cmd_report(args) -> int:
    from .report import completeness, write_report

    from .report import json_path_for

    check_not_input([args.output, json_path_for(args.output)],
                    [args.basis, args.data] + list(args.pair or []))
    t0 = time.perf_counter()
    rep = completeness(args.basis, species=args.species, r_cut=args.r_cut, n_max=args.n_max, l_max=args.l_max,
                       order=args.order, data=args.data, pair=args.pair, seed=args.seed, progress=True)
    html_path, json_path = write_report(rep, args.output)
    for line in rep["findings"]:
        print(f"- {line}")
    _info(f"wrote {html_path} and {json_path} in {time.perf_counter() - t0:.1f} s")
    return 0


COMMANDS = {"basis": _cmd_basis, "describe": _cmd_describe, "fit": _cmd_fit, "compare": _cmd_compare,
            "evaluate": _cmd_evaluate,
            "demo": _cmd_demo, "report": _cmd_report, "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minbasis`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    global _QUIET
    from . import progress as _progress

    quiet = bool(getattr(args, "quiet", False))
    was_quiet, was_progress_quiet = _QUIET, _progress._QUIET
    try:
        _QUIET = quiet
        if quiet:
            _progress.set_quiet(True)
        if quiet and args.command in ("basis", "describe", "fit"):  # their standard output is informational only
            import contextlib
            import os

            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                return COMMANDS[args.command](args)
        return COMMANDS[args.command](args)
    except (MinbasisError, OSError) as exc:
        msg = " ".join(str(exc).split())
        print(f"minbasis: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minbasis: error: interrupted", file=sys.stderr)
        return 130
    finally:
        _QUIET = was_quiet
        _progress.set_quiet(was_progress_quiet)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
