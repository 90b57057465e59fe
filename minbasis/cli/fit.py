"""``minbasis fit``: linear, polynomial and MLP fits, the automatic basis, and (through
:mod:`minbasis.cli.fit_mf`) multi-fidelity fits.

The model options are grouped per model in ``--help``; their defaults are read from the model
configurations (:class:`~minbasis.fit.linear.LinearFitConfig`, :class:`~minbasis.fit.mlp.MLPFitConfig`,
:class:`~minbasis.fit.mlp_mf.MLPMultiFidelityConfig`, :class:`~minbasis.fit.auto.AutoFitConfig`,
:class:`~minbasis.fit.multifidelity.PIWSLConfig`, and the keyword defaults of
:func:`~minbasis.fit.poly.fit_polynomial` and :func:`~minbasis.fit.multifidelity.fit_linear_mf`)
by :func:`minbasis.cli._config.add_config_flags`. Options whose default differs between the
models they apply to default to None: :func:`~minbasis.cli._config.config_kwargs` then leaves them
out and the model's configuration decides.
"""

from __future__ import annotations

import argparse
import json
import time

from ..errors import MinbasisError
from ..files import check_not_input
from ._common import add_label_keys, data_spec_file, info, int_list, label_keys, path_option, resolve_stress, seed
from ._config import add_config_flags, add_config_option, config_defaults, config_kwargs, format_default
from .fit_mf import NN_FIT_OPTIONS

__all__ = ["add_parser", "run", "LINEAR_FIT_OPTIONS"]

#: ``fit`` options of the linear and polynomial models: option dest → LinearFitConfig field.
LINEAR_FIT_OPTIONS = {"energy_weight": "energy_weight", "forces_weight": "forces_weight",
                      "stress_weight": "stress_weight", "solver": "solver", "alpha": "alpha",
                      "calibrate": "calibration_fraction", "smoothness_prior": "smoothness_prior",
                      "smoothness_power": "smoothness_power"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``fit`` subcommand to ``sub``; returns its parser."""
    from ..fit.auto import AutoFitConfig
    from ..fit.linear import COMMITTEE_SIZE, LinearFitConfig
    from ..fit.metrics import stratified_holdout
    from ..fit.mlp import OPTIMIZERS, MLPFitConfig
    from ..fit.mlp_mf import MLPMultiFidelityConfig
    from ..fit.multifidelity import COUPLINGS, NOISE_MODELS, PIWSLConfig, fit_linear_mf
    from ..fit.network import ACTIVATIONS
    from ..fit.poly import fit_polynomial
    from ..fit.solvers import SOLVERS

    piwsl = config_defaults(PIWSLConfig)
    nn = {"mlp": MLPFitConfig, "mlp-mf": MLPMultiFidelityConfig}

    p = sub.add_parser("fit", help="fit a linear ACE potential (or --model mlp|poly) to energies, forces and stress",
                       description="Fit E = Σ_i [E0(Z_i) + c_Z · B_i] by weighted least squares on energies (per "
                                   "atom), forces and virials. Regularisation is chosen automatically (Bayesian "
                                   "evidence) unless --solver ridge --alpha A is given. --model poly fits the same "
                                   "rows on polynomial features (products up to --degree) of the standardised "
                                   "features; --model mlp trains one small neural network per species "
                                   "(Behler-Parrinello form, --hidden 64 or 64,64) with forces through dB/dr, "
                                   "L-BFGS and early stopping on a seeded validation split. Both are meant for the "
                                   "minimal basis (`minbasis basis ... --minimal`).")
    p.config_tables = ("data",)  # [[data]] tables of a --config file: multi-fidelity training data
    p.set_defaults(config_data=None)
    p.add_argument("data", nargs="?", default=None,
                   help="training structures with labels (or give --data FILE:fidelity=... / --config)")
    path_option(p.add_argument("--basis", default=None,
                               help="basis JSON; leave out (or 'auto') to let fit choose the basis, the observable "
                                    "weights and a smoothness prior on a validation split inside the training data "
                                    "(linear model)")).config_path_keep = ("auto",)
    p.add_argument("--data", dest="fidelity_data", action="append", default=None, metavar="FILE:fidelity=F:...",
                   help="multi-fidelity training data, repeatable: FILE:fidelity=NAME[:energy_key=K][:forces_key=K]"
                        "[:stress_key=K][:energy_weight=W][:forces_weight=W][:stress_weight=W]; labels not named "
                        "are absent and contribute nothing (implies --model linear-mf)")
    add_config_option(p, help="TOML file of settings: keys are the long option names (energy_weight or "
                              "energy-weight for --energy-weight), at the top level or in a [fit] table; options "
                              "on the command line override the file; relative file names are read relative to "
                              "the file's folder. [[data]] tables (file, fidelity, energy_key, forces_key, "
                              "stress_key, weights) give multi-fidelity training data (see minbasis.fit.fidelity)")
    p.add_argument("--model", choices=["linear", "mlp", "poly", "linear-mf", "mlp-mf"], default="linear",
                   help="linear (default): linear in the features; poly: linear in polynomial features; "
                        "mlp: per-species neural network; linear-mf: one linear head per fidelity (--data); "
                        "mlp-mf: shared hidden layer (--hidden) with one energy head per fidelity "
                        "(--coupling none: separate hidden layers, the uncoupled control)")
    path_option(p.add_argument("-o", "--output", required=True, help="output model .npz"))

    g = p.add_argument_group("labels, weights and validation split")
    add_label_keys(g)
    add_config_flags(g, {"linear": LinearFitConfig, "mlp": MLPFitConfig}, {
        "energy_weight": dict(type=float, help="weight of per-atom energy rows (1/eV; {default})"),
        "forces_weight": dict(type=float, help="weight of force rows (Å/eV; {default})"),
        "stress_weight": dict(type=float, help="weight of per-atom virial rows (1/eV; {default})"),
    })
    g.add_argument("--config-type-weights", default=None,
                   help='JSON object of extra weights per config_type, e.g. \'{"surface": 2.0}\'').config_json = True
    add_config_flags(g, {"mlp": MLPFitConfig, "mlp-mf": MLPMultiFidelityConfig, "auto": AutoFitConfig}, {
        "validation_fraction": dict(
            type=float,
            help="mlp, mlp-mf: fraction of the structures held out for early stopping; 0 disables "
                 "({default:mlp,mlp-mf}); automatic basis: share of each config_type held out to choose the basis "
                 "({default:auto}); linear, poly: fraction held out (seeded, stratified by config_type) for the "
                 "validation errors printed at the end only; the model is fitted on the rest (default 0: none)"),
    })
    add_config_flags(g, None, {
        "seed": dict(type=seed, sources={"mlp": (MLPFitConfig, "seed"), "mlp-mf": (MLPMultiFidelityConfig, "seed"),
                                         "auto": (AutoFitConfig, "seed"), "linear": (stratified_holdout, "seed"),
                                         "PIWSL": (PIWSLConfig, "seed")},
                     help="mlp, mlp-mf: seed of the initial weights and the validation split; automatic basis, "
                          "linear, poly: seed of the validation split; PIWSL: seed of the displacements ({default})"),
    })

    g = p.add_argument_group("linear model (--model linear)")
    add_config_flags(g, LinearFitConfig, {
        "solver": dict(choices=list(SOLVERS), help="bayesian: regularisation by evidence; ridge: fixed --alpha; "
                                                   "ard: one prior per coefficient ({default})"),
        "alpha": dict(type=float, help="ridge strength for --solver ridge ({default})"),
        "committee": dict(type=int, metavar="K",
                          help=f"linear: committee of K coefficient vectors drawn from the Bayesian posterior, stored "
                               f"with the model for energy_std/forces_std (default {COMMITTEE_SIZE} with --solver "
                               f"bayesian; 0 disables)"),
        "calibration_fraction": dict(
            flag="--calibrate", type=float, metavar="F",
            help="linear with committee: choose a factor on the predicted std on a held-out fraction F of the "
                 "training frames (stratified by config_type), the one of least mean CRPS of its errors (one "
                 "factor each for forces, energies, stresses); "
                 "the final model is fitted on all frames ({default}: the posterior and the training residuals as "
                 "they are)"),
        "smoothness_prior": dict(
            choices=["none", "algebraic", "exponential"],
            help="linear: prior precision of a coefficient growing with the total degree d of its basis function, "
                 "(1 + d)^p (algebraic) or exp(p·d) (exponential), as ACEpotentials' smoothness priors ({default})"),
        "smoothness_power": dict(
            type=float, metavar="P",
            help="linear: p of --smoothness-prior (default: chosen by the Bayesian evidence among 0 and three "
                 "positive powers)"),
    })
    g.add_argument("--repulsion", choices=["auto", "zbl", "none"], default="auto",
                   help="linear: a fixed ZBL repulsive core below an inner cutoff per species pair (1.1 × the "
                        "shortest distance in the data), fitted as a baseline; auto (default) adds it when every "
                        "training structure is periodic (solids), none never (minbasis.repulsion)")
    g.add_argument("--dask", default=None, metavar="CLUSTER",
                   help="assemble the linear fit on Dask: local:N (N worker processes here) or tcp://HOST:PORT "
                        "(a running 'dask scheduler'); needs pip install 'minbasis[dask]'")

    g = p.add_argument_group("automatic basis (linear model without --basis)")
    add_config_flags(g, AutoFitConfig, {
        "budget_minutes": dict(type=float, help="automatic basis: wall-time budget of the selection and the final "
                                                "fit ({default})"),
        "r_cut": dict(type=float, help="automatic basis: cutoff radius in Å (default: 5 and 6 Å are tried on the "
                                       "smallest candidate basis and the one that validates better is kept)"),
    })

    g = p.add_argument_group("polynomial model (--model poly)")
    add_config_flags(g, fit_polynomial, {
        "degree": dict(type=int, help="poly: largest monomial degree ({default})"),
        "n_product_inputs": dict(flag="--poly-inputs", type=int,
                                 help="poly: form products among the first K features only (default: all)"),
    })

    g = p.add_argument_group(
        "neural networks (--model mlp, mlp-mf)",
        "Options left out take the defaults of MLPFitConfig (mlp) and MLPMultiFidelityConfig (mlp-mf).")
    add_config_flags(g, nn, {
        "hidden": dict(type=int_list, help="mlp: hidden-layer widths, one or two comma-separated values; mlp-mf: one "
                                           "width ({default})"),
        "activation": dict(choices=list(ACTIVATIONS), help="mlp, mlp-mf: activation ({default})"),
        "optimizer": dict(choices=list(OPTIMIZERS), help="mlp: optimiser ({default}; mlp-mf always uses lbfgs)"),
        "max_iter": dict(type=int, help="mlp, mlp-mf: L-BFGS iterations or Adam epochs ({default})"),
        "l2": dict(type=float, help="mlp, mlp-mf: weight decay on the weight matrices ({default})"),
        "patience": dict(type=int, help="mlp, mlp-mf: validation checks (every "
                                        f"{format_default(config_defaults(MLPFitConfig)['validate_every'])} "
                                        "iterations) without improvement before stopping ({default})"),
    })

    g = p.add_argument_group("multi-fidelity (--data, [[data]] tables; --model linear-mf, mlp-mf)")
    add_config_flags(g, fit_linear_mf, {
        "coupling": dict(choices=list(COUPLINGS),
                         help="linear-mf: delta (c_f = c_ref + d_f, ridges chosen by evidence), none (independent "
                              "fits per fidelity, a control) or pooled (one shared vector); mlp-mf: none trains "
                              "separate hidden layers ({default})"),
        "noise": dict(choices=list(NOISE_MODELS),
                      help="linear-mf: per_fidelity (one noise level per fidelity, chosen by evidence) or shared "
                           "({default})"),
    })
    g.add_argument("--piwsl-tc", type=float, default=0.0,
                   help=f"weight of the PIWSL Taylor rows for energy-labelled structures (0: off; paper "
                        f"{format_default(piwsl['lambda_tc'])})")
    g.add_argument("--piwsl-sc", type=float, default=0.0,
                   help=f"weight of the PIWSL path-independence rows (0: off; paper "
                        f"{format_default(piwsl['lambda_sc'])})")
    add_config_flags(g, PIWSLConfig, {
        "delta": dict(flag="--piwsl-delta", type=float, help="PIWSL displacement size in Å ({default})"),
    })
    return p


def run(args: argparse.Namespace) -> int:
    """Fit the model the options ask for and write it; returns the exit code."""
    from ..basis import Basis
    from ..fit import LinearFitConfig, fit_linear, read_structures

    check_not_input([args.output], [args.data, args.basis, args.config]
                    + [data_spec_file(spec) for spec in args.fidelity_data or []])
    if args.fidelity_data or args.config_data is not None or args.model.endswith("-mf"):
        from .fit_mf import fit_multifidelity

        return fit_multifidelity(args)
    if args.data is None:
        raise MinbasisError("fit needs DATA (or --data FILE:fidelity=... / --config for multi-fidelity)")
    if args.basis in (None, "auto"):
        return _fit_auto(args)
    basis = Basis.load(args.basis)
    frames = read_structures(args.data)
    e_key, f_key, s_key = label_keys(args)
    s_key = resolve_stress(frames, s_key)
    ctw = {}
    if args.config_type_weights:
        from ..fit.data import check_config_type_weights

        try:
            ctw = json.loads(args.config_type_weights)
        except ValueError as exc:
            raise MinbasisError(f"--config-type-weights must be a JSON object of numbers ({exc})") from exc
        ctw = check_config_type_weights(ctw, [str(a.info.get("config_type", "default")) for a in frames])
    committee = args.committee
    if committee is None and args.solver != "bayesian":
        committee = 0
    cfg = LinearFitConfig(**config_kwargs(args, LinearFitConfig, LINEAR_FIT_OPTIONS), config_type_weights=ctw,
                          committee=committee)
    t0 = time.perf_counter()
    if args.dask and args.model != "linear":
        raise MinbasisError(f"--dask distributes linear fits only; --model {args.model} runs in one process")
    if args.model == "mlp":
        return _fit_mlp(args, basis, frames, (e_key, f_key, s_key), ctw, t0)
    from ..fit.metrics import stratified_holdout

    vf = float(args.validation_fraction or 0.0)
    config_types = [str(a.info.get("config_type", "default")) for a in frames]
    val_idx, fit_idx = stratified_holdout(config_types, vf, *([] if args.seed is None else [args.seed]))
    fit_frames = [frames[i] for i in fit_idx]
    val_frames = [frames[i] for i in val_idx]
    if args.dask and len(val_idx):
        raise MinbasisError("--validation-fraction with --dask: split the file yourself (workers read it whole)")
    if args.model == "poly":
        from ..fit import fit_polynomial

        model = fit_polynomial(basis, fit_frames, degree=args.degree, n_product_inputs=args.poly_inputs,
                               energy_key=e_key, forces_key=f_key, stress_key=s_key, config=cfg, progress=True)
        model.save(args.output)
        print(f"fitted {len(basis.species)}×{model.n_features} coefficients (degree-{args.degree} polynomial "
              f"features of {basis.n_features}) on {len(fit_frames)} structures ({model.info['n_rows']} rows, solver "
              f"{model.info['solver']}) in {time.perf_counter() - t0:.1f} s; wrote {args.output}")
    else:
        use_core = args.repulsion == "zbl" or (args.repulsion == "auto" and all(a.pbc.all() for a in frames))
        if use_core and args.dask:
            info("--dask: the repulsive core is left out (fit without --dask to add it)")
        if use_core and not args.dask:
            from ..fit.core import fit_linear_with_core

            model = fit_linear_with_core(basis, fit_frames, energy_key=e_key, forces_key=f_key, stress_key=s_key,
                                         config=cfg, progress=True)
            r_in = model.repulsion.r_in
            info(f"repulsive ZBL core: r_in {r_in.min():.2f}–{r_in.max():.2f} Å (--repulsion none to leave it out)")
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


def _print_fit_errors(model, fit_frames: list, val_frames: list, keys: tuple) -> None:
    """Print the training (and validation) error tables of a fitted model, per config_type."""
    from ..fit import error_metrics, get_labels
    from ..fit.metrics import format_metrics_table

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


def _fit_auto(args: argparse.Namespace) -> int:
    """``minbasis fit DATA -o M`` without --basis: :func:`minbasis.fit.auto.fit_auto`."""
    from ..fit import read_structures
    from ..fit.auto import AutoFitConfig, fit_auto

    if args.model != "linear":
        raise MinbasisError(f"the automatic basis is for linear fits; --model {args.model} needs --basis")
    if args.dask:
        raise MinbasisError("--dask needs an explicit --basis (the automatic selection runs in one process)")
    frames = read_structures(args.data)
    e_key, f_key, s_key = label_keys(args)
    s_key = resolve_stress(frames, s_key)
    t0 = time.perf_counter()
    cfg = AutoFitConfig(**config_kwargs(args, AutoFitConfig, {"budget_minutes": "budget_minutes", "r_cut": "r_cut",
                                                              "validation_fraction": "validation_fraction",
                                                              "seed": "seed"}))

    def fit(fr, ek, fk, sk):
        return fit_auto(fr, energy_key=ek, forces_key=fk, stress_key=sk, config=cfg, progress=True,
                        log=lambda msg: print(msg, flush=True))

    use_core = args.repulsion == "zbl" or (args.repulsion == "auto" and all(a.pbc.all() for a in frames))
    if use_core:
        from ..fit.auto import data_species
        from ..fit.core import fit_with_core

        model = fit_with_core(fit, data_species(frames), frames, energy_key=e_key, forces_key=f_key, stress_key=s_key)
        r_in = model.repulsion.r_in
        info(f"repulsive ZBL core: r_in {r_in.min():.2f}–{r_in.max():.2f} Å (--repulsion none to leave it out)")
    else:
        model = fit(frames, e_key, f_key, s_key)
    model.save(args.output)
    print(f"fitted {len(model.basis.species)}×{model.basis.n_features} coefficients on {len(frames)} structures in "
          f"{time.perf_counter() - t0:.0f} s; wrote {args.output}")
    return 0


def _fit_mlp(args: argparse.Namespace, basis, frames: list, keys: tuple, ctw: dict, t0: float) -> int:
    from ..fit import MLPFitConfig, fit_mlp

    cfg = MLPFitConfig(**config_kwargs(args, MLPFitConfig, NN_FIT_OPTIONS), config_type_weights=ctw)
    model = fit_mlp(basis, frames, energy_key=keys[0], forces_key=keys[1], stress_key=keys[2], config=cfg,
                    progress=True)
    model.save(args.output)
    info_ = model.info
    print(f"trained {len(basis.species)} networks {basis.n_features}→{'→'.join(map(str, model.hidden))}→1 "
          f"({model.n_parameters} parameters) on {info_['n_train']} structures, validated on {info_['n_validation']} "
          f"(best iteration {info_['best_iteration']} of {info_['n_iter']}) in {time.perf_counter() - t0:.1f} s; "
          f"wrote {args.output}")
    _print_fit_errors(model, frames, [], keys)
    return 0
