"""Command-line glue for multi-fidelity fits (``minbasis fit --data ... --model linear-mf``)."""

from __future__ import annotations

import os
import time

from ..errors import MinbasisError

__all__ = ["fit_multifidelity_cli", "predict_at"]


def predict_at(model, frames, fidelity: str | None, progress: bool = False):
    """``model.predict(frames)`` at ``fidelity`` for multi-fidelity models.

    Raises
    ------
    MinbasisError
        A fidelity given for a single-fidelity model, none given for a model with several, or
        a fidelity the model never saw (the message lists the known ones).
    """
    from .mlp_mf import MLPMultiFidelityModel
    from .multifidelity import MultiFidelityModel

    if isinstance(model, (MultiFidelityModel, MLPMultiFidelityModel)):
        if fidelity is None and len(model.fidelities) > 1:
            raise MinbasisError(f"this model has several fidelities {model.fidelities}: choose one with --fidelity")
        return model.predict(frames, fidelity=fidelity, progress=progress)
    if fidelity is not None:
        raise MinbasisError(f"--fidelity {fidelity!r} given but this is a single-fidelity "
                            f"{type(model).__name__}")
    return model.predict(frames, progress=progress)


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
    piwsl = PIWSLConfig(lambda_tc=tc, lambda_sc=sc, delta=float(settings.get("piwsl_delta", args.piwsl_delta)),
                        seed=int(settings.get("seed", args.seed))) if (tc > 0 or sc > 0) else None
    t0 = time.perf_counter()
    if model_kind == "mlp-mf":
        from .mlp_mf import MLPMultiFidelityConfig, fit_mlp_mf

        hidden = args.hidden if isinstance(args.hidden, int) else args.hidden[0]
        cfg = MLPMultiFidelityConfig(hidden=int(settings.get("hidden", hidden)),
                                     shared=settings.get("coupling", args.coupling) != "none",
                                     l2=float(settings.get("l2", args.l2)),
                                     max_iter=int(settings.get("max_iter", args.max_iter)),
                                     validation_fraction=float(settings.get("validation_fraction",
                                                                            args.validation_fraction)),
                                     patience=int(settings.get("patience", getattr(args, "patience", 50))),
                                     activation=str(settings.get("activation", getattr(args, "activation", "silu"))),
                                     seed=int(settings.get("seed", args.seed)),
                                     validation_seed=int(settings.get("seed", args.seed)), piwsl=piwsl)
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
