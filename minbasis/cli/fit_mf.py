"""The multi-fidelity part of ``minbasis fit``: ``--data FILE:fidelity=...`` specs and ``[[data]]`` tables of a
``--config`` TOML file, fitted with ``--model linear-mf`` or ``mlp-mf``.

Settings come from, in order of precedence: the command line, the ``--config`` file (its keys set
the options' defaults, :mod:`minbasis.cli._config`), and the defaults of the configuration
dataclasses (:class:`~minbasis.fit.mlp_mf.MLPMultiFidelityConfig`,
:class:`~minbasis.fit.multifidelity.PIWSLConfig`) and of
:func:`~minbasis.fit.multifidelity.fit_linear_mf` — no default is restated here.
"""

from __future__ import annotations

import argparse
import time

from ..errors import MinbasisError
from ..files import check_not_input

__all__ = ["fit_multifidelity", "NN_FIT_OPTIONS"]

#: ``fit`` options of the neural-network models: option dest → config field (MLPFitConfig, MLPMultiFidelityConfig).
NN_FIT_OPTIONS = {"hidden": "hidden", "activation": "activation", "optimizer": "optimizer", "max_iter": "max_iter",
                  "l2": "l2", "validation_fraction": "validation_fraction", "patience": "patience", "seed": "seed",
                  "energy_weight": "energy_weight", "forces_weight": "forces_weight",
                  "stress_weight": "stress_weight"}

#: Values of ``--model`` that fit multi-fidelity data, and the model each one means (``linear`` is the default).
MF_MODELS = {"linear": "linear-mf", "linear-mf": "linear-mf", "mlp-mf": "mlp-mf"}


def fit_multifidelity(args: argparse.Namespace) -> int:
    """Run ``minbasis fit`` for fidelity-aware data (``--data`` specs or ``[[data]]`` tables of ``--config``).

    Raises
    ------
    MinbasisError
        No data, no basis, a positional DATA mixed with --data, or a single-fidelity model.
    """
    from ..basis import Basis
    from ..fit.fidelity import data_tables, parse_data_spec
    from ..fit.multifidelity import PIWSLConfig, fit_linear_mf
    from ._config import config_kwargs

    if args.data is not None:
        raise MinbasisError("give training data either as a positional file or as --data FILE:fidelity=..., not both")
    cache: dict = {}
    data = []
    if args.config_data is not None:
        data += data_tables(args.config_data, args.config, cache)
    for spec in args.fidelity_data or []:
        data.append(parse_data_spec(spec, cache))
    if not data:
        raise MinbasisError("multi-fidelity fit needs --data FILE:fidelity=NAME:energy_key=K ... or --config")
    model_kind = MF_MODELS.get(args.model)
    if model_kind is None:
        raise MinbasisError(f"unknown multi-fidelity model {args.model!r}; use linear-mf or mlp-mf")
    if not args.basis or args.basis == "auto":
        raise MinbasisError("no basis: give --basis basis.json (or basis = \"...\" in the config)")
    check_not_input([args.output], [args.basis, args.config] + list(cache))
    basis = Basis.load(args.basis)
    tc, sc = float(args.piwsl_tc), float(args.piwsl_sc)
    piwsl = (PIWSLConfig(lambda_tc=tc, lambda_sc=sc, delta=float(args.piwsl_delta),
                         **({} if args.seed is None else {"seed": int(args.seed)})) if (tc > 0 or sc > 0) else None)
    t0 = time.perf_counter()
    output = args.output
    if model_kind == "mlp-mf":
        from ..fit.mlp_mf import MLPMultiFidelityConfig, fit_mlp_mf

        opts = config_kwargs(args, MLPMultiFidelityConfig, NN_FIT_OPTIONS)
        if isinstance(opts.get("hidden"), (list, tuple)):
            if len(opts["hidden"]) != 1:
                raise MinbasisError(f"mlp-mf has one (shared) hidden layer: give one width, e.g. --hidden 64; "
                                    f"got {opts['hidden']}")
            opts["hidden"] = opts["hidden"][0]
        cfg = MLPMultiFidelityConfig(**opts, shared=args.coupling != "none", piwsl=piwsl)
        model = fit_mlp_mf(basis, data, cfg)
        model.save(output)
        print(f"trained a {'shared' if cfg.shared else 'uncoupled'} MLP (hidden {cfg.hidden}) with heads "
              f"{model.fidelities} in {time.perf_counter() - t0:.1f} s (best iteration "
              f"{model.info['best_iteration']} of {model.info['n_iter']}); wrote {output}")
        return 0
    model = fit_linear_mf(basis, data, coupling=args.coupling, piwsl=piwsl, noise=args.noise, progress=True)
    model.save(output)
    extra = (f", r_c {model.info['r_c']:.3g}, r_d {model.info['r_d']:.3g}, noise weights "
             + ", ".join(f"{k} {v:.3g}" for k, v in model.info["noise_weights"].items()) + " (evidence)"
             if "r_c" in model.info else "")
    print(f"fitted {len(model.fidelities)} fidelities {model.fidelities} ({model.info['coupling']} coupling{extra}) "
          f"on {sum(len(d.structures) for d in data)} labelled structure sets in {time.perf_counter() - t0:.1f} s; "
          f"wrote {output}")
    return 0
