"""Command-line glue of ``minbasis fit``: defaults of the neural-network options, multi-fidelity fits.

Settings come from, in order of precedence: the TOML config (``--config``), the command-line
options, and the defaults of the configuration dataclasses (:class:`~minbasis.fit.mlp_mf.MLPMultiFidelityConfig`,
:class:`~minbasis.fit.multifidelity.PIWSLConfig`) — the CLI restates no default of its own.
"""

from __future__ import annotations

import os
import time

from ..errors import MinbasisError

__all__ = ["fit_multifidelity_cli", "config_defaults", "nn_fit_options", "NN_FIT_OPTIONS"]


def config_defaults(cls) -> dict:
    """{field name: default} of a configuration dataclass: the one source of the CLI's defaults.

    Parameters
    ----------
    cls : a dataclass type (e.g. :class:`~minbasis.fit.MLPFitConfig`)

    Returns
    -------
    dict; fields without a default are left out, default factories are called.
    """
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


#: ``minbasis fit`` options of the neural-network models: option dest → config field. Their argparse
#: default is None, meaning "the default of the model's config dataclass" (:func:`nn_fit_options`).
NN_FIT_OPTIONS = {"hidden": "hidden", "activation": "activation", "optimizer": "optimizer", "max_iter": "max_iter",
                  "l2": "l2", "validation_fraction": "validation_fraction", "patience": "patience", "seed": "seed"}


def nn_fit_options(args, config_cls) -> dict:
    """The neural-network options given on the command line (not None) that ``config_cls`` has, by field name;
    ``seed`` also sets ``validation_seed``. Options left out take the dataclass defaults."""
    names = set(config_defaults(config_cls))
    out = {field: getattr(args, dest) for dest, field in NN_FIT_OPTIONS.items()
           if field in names and getattr(args, dest, None) is not None}
    if "seed" in out and "validation_seed" in names:
        out["validation_seed"] = out["seed"]
    return out



def fit_multifidelity_cli(args) -> int:
    """Run ``minbasis fit`` for fidelity-aware data (``--data`` specs or ``--config`` TOML).

    Raises
    ------
    MinbasisError
        No data, no basis, a positional DATA mixed with --data, or an unsupported model.
    """
    from ..basis import Basis
    from .fidelity import load_fit_config, parse_data_spec
    from .multifidelity import PIWSLConfig, fit_linear_mf

    settings: dict = {}
    data = []
    if args.config:
        settings = load_fit_config(args.config)
        data += settings.pop("data")
        base = os.path.dirname(os.path.abspath(args.config))
        for k in ("basis", "output"):
            if k in settings and not os.path.isabs(settings[k]):
                settings[k] = os.path.join(base, settings[k])
    if args.data is not None:
        raise MinbasisError("give training data either as a positional file or as --data FILE:fidelity=..., not both")
    cache: dict = {}
    for spec in args.fidelity_data or []:
        data.append(parse_data_spec(spec, cache))
    if not data:
        raise MinbasisError("multi-fidelity fit needs --data FILE:fidelity=NAME:energy_key=K ... or --config")
    model_kind = settings.get("model", args.model if args.model.endswith("-mf") else "linear-mf")
    if model_kind not in ("linear-mf", "mlp-mf"):
        raise MinbasisError(f"unknown multi-fidelity model {model_kind!r}; use linear-mf or mlp-mf")
    basis_path = args.basis or settings.get("basis")
    if not basis_path:
        raise MinbasisError("no basis: give --basis basis.json (or basis = \"...\" in the config)")
    output = args.output or settings.get("output")
    from ..files import check_not_input

    check_not_input([output], [basis_path, args.config] + list(cache) + settings.pop("data_files", []))
    basis = Basis.load(basis_path)
    tc = float(settings.get("piwsl_tc", args.piwsl_tc))
    sc = float(settings.get("piwsl_sc", args.piwsl_sc))
    seed = settings.get("seed", args.seed)
    piwsl = PIWSLConfig(lambda_tc=tc, lambda_sc=sc, delta=float(settings.get("piwsl_delta", args.piwsl_delta)),
                        **({} if seed is None else {"seed": int(seed)})) if (tc > 0 or sc > 0) else None
    t0 = time.perf_counter()
    if model_kind == "mlp-mf":
        from .mlp_mf import MLPMultiFidelityConfig, fit_mlp_mf

        opts = nn_fit_options(args, MLPMultiFidelityConfig)
        opts.update({k: settings[k] for k in ("hidden", "l2", "max_iter", "validation_fraction", "patience",
                                             "activation") if k in settings})
        if seed is not None:
            opts.update(seed=int(seed), validation_seed=int(seed))
        if isinstance(opts.get("hidden"), (list, tuple)):
            if len(opts["hidden"]) != 1:
                raise MinbasisError(f"mlp-mf has one (shared) hidden layer: give one width, e.g. --hidden 64; "
                                    f"got {opts['hidden']}")
            opts["hidden"] = opts["hidden"][0]
        cfg = MLPMultiFidelityConfig(**opts, shared=settings.get("coupling", args.coupling) != "none", piwsl=piwsl)
        model = fit_mlp_mf(basis, data, cfg)
        model.save(output)
        print(f"trained a {'shared' if cfg.shared else 'uncoupled'} MLP (hidden {cfg.hidden}) with heads "
              f"{model.fidelities} in {time.perf_counter() - t0:.1f} s (best iteration "
              f"{model.info['best_iteration']} of {model.info['n_iter']}); wrote {output}")
        return 0
    model = fit_linear_mf(basis, data, coupling=settings.get("coupling", args.coupling), piwsl=piwsl,
                          noise=str(settings.get("noise", "per_fidelity")), progress=True)
    model.save(output)
    extra = (f", r_c {model.info['r_c']:.3g}, r_d {model.info['r_d']:.3g}, noise weights "
             + ", ".join(f"{k} {v:.3g}" for k, v in model.info["noise_weights"].items()) + " (evidence)"
             if "r_c" in model.info else "")
    print(f"fitted {len(model.fidelities)} fidelities {model.fidelities} ({model.info['coupling']} coupling{extra}) "
          f"on {sum(len(d.structures) for d in data)} labelled structure sets in {time.perf_counter() - t0:.1f} s; "
          f"wrote {output}")
    return 0
