"""Linear or nonlinear? Learning curves of model families on the same folds (docs/theory/fitting.md#linear-or-nonlinear).

:func:`compare_models` fits, for a list of training sizes and folds, any of

* ``linear_full``    — linear model on the full ACE basis (Bayesian ridge, :func:`~minbasis.fit.fit_linear`);
* ``linear_minimal`` — the same on the minimal, functionally independent subset;
* ``poly``           — linear model on polynomial features (products up to ``poly_degree`` of the first
  ``poly_inputs``) of the standardised minimal basis (:func:`~minbasis.fit.fit_polynomial`);
* ``mlp``            — one MLP per species on the standardised minimal features, energy and force loss,
  L-BFGS with early stopping (:func:`~minbasis.fit.fit_mlp`),

and scores each on the same held-out structures: energy MAE/RMSE (meV/atom), force MAE/RMSE
(eV/Å), features per species, parameters, fit seconds and evaluation time (µs/atom, energy +
forces, best of ``repeats`` calls). ``minbasis compare`` is the command-line front end and
``benchmarks/linear_vs_nonlinear.py`` the ethanol benchmark built on it.

Folds (nothing is ever chosen on the held-out structures): fold r draws
``perm = default_rng(seed + 1 + r).permutation(n_pool)`` of the training pool; its first
``V = round(validation_fraction · n_pool)`` structures are the validation pool. A training
size n uses ``perm[:v] ∪ perm[V : V + n − v]`` with ``v = round(validation_fraction · n)``: the
linear models fit all n structures (their regularisation comes from the Bayesian evidence),
the MLP fits the n − v and early-stops on the v. Sizes are nested within a fold; at n = n_pool
every fold holds the same structures, so the deterministic linear fits are done once there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..errors import MinbasisError
from .data import get_labels
from .linear import LinearFitConfig, fit_linear
from .metrics import error_metrics
from .mlp import MLPFitConfig, fit_mlp
from .poly import fit_polynomial

__all__ = ["COMPARED_MODELS", "CompareConfig", "holdout_split", "fold_subsets", "default_sizes", "fit_one",
           "compare_models", "format_comparison", "plot_comparison"]

#: The model families :func:`compare_models` knows, in the order of its tables (not the model-file
#: kinds, which are the keys of :data:`minbasis.fit.registry.MODEL_CLASSES`).
COMPARED_MODELS = ("linear_full", "linear_minimal", "poly", "mlp")


def __getattr__(name: str):
    """``MODEL_KINDS``: deprecated alias of :data:`COMPARED_MODELS`."""
    if name == "MODEL_KINDS":
        import warnings

        warnings.warn("minbasis.fit.compare.MODEL_KINDS is renamed COMPARED_MODELS", DeprecationWarning, stacklevel=2)
        return COMPARED_MODELS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class CompareConfig:
    """Settings of :func:`compare_models`.

    Attributes
    ----------
    models : tuple of str
        Families to fit, a subset of :data:`COMPARED_MODELS`.
    sizes : tuple of int or None
        Training sizes (structures); None: :func:`default_sizes` of the pool (4 sizes).
    folds : int
        Folds for every size in ``fold_sizes`` (other sizes: fold 0 only).
    fold_sizes : tuple of int or None
        Sizes repeated over ``folds`` folds; None: all sizes.
    validation_fraction : float
        Fraction of each training subset the MLP holds out for early stopping (0 < f < 1).
    seed : int
        Fold r uses ``default_rng(seed + 1 + r)``; the MLP of fold r starts from seed r.
    poly_degree, poly_inputs : int, int or None
        ``poly``: largest monomial degree, and how many leading minimal features form products
        (None: all).
    mlp_hidden, mlp_activation, mlp_l2, mlp_max_iter, mlp_patience :
        ``mlp``: hidden widths, activation (``"silu"``/``"tanh"``), weight decay, L-BFGS iterations
        and validation checks (every 10 iterations) without improvement before stopping.
    repeats : int
        Timed prediction calls on the held-out structures (the best is kept).
    keys : dict
        ``energy_key``, ``forces_key``, ``stress_key`` for :func:`~minbasis.fit.get_labels`.
    """

    models: tuple[str, ...] = COMPARED_MODELS
    sizes: tuple[int, ...] | None = None
    folds: int = 3
    fold_sizes: tuple[int, ...] | None = None
    validation_fraction: float = 0.2
    seed: int = 0
    poly_degree: int = 2
    poly_inputs: int | None = None
    mlp_hidden: tuple[int, ...] = (64,)
    mlp_activation: str = "silu"
    mlp_l2: float = 1e-6
    mlp_max_iter: int = 3000
    mlp_patience: int = 50
    repeats: int = 3
    keys: dict = field(default_factory=lambda: {"energy_key": "energy", "forces_key": "forces", "stress_key": None})

    def __post_init__(self) -> None:
        """Raises MinbasisError for an unknown model, a bad fraction, or non-positive counts."""
        self.models = tuple(self.models)
        unknown = [m for m in self.models if m not in COMPARED_MODELS]
        if unknown or not self.models:
            raise MinbasisError(f"unknown model(s) {unknown or '(none given)'}; choose from {', '.join(COMPARED_MODELS)}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise MinbasisError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.folds < 1 or self.repeats < 1 or self.mlp_max_iter < 1:
            raise MinbasisError("folds, repeats and mlp_max_iter must be >= 1")

    def mlp_config(self, seed: int) -> MLPFitConfig:
        """The :class:`~minbasis.fit.MLPFitConfig` of the MLP fits (validation every 10 iterations)."""
        return MLPFitConfig(hidden=tuple(self.mlp_hidden), l2=self.mlp_l2, activation=self.mlp_activation,
                            max_iter=self.mlp_max_iter, validate_every=10, patience=self.mlp_patience, seed=seed)


def holdout_split(n: int, seed: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(held-out indices, remaining indices), both sorted, of ``default_rng(seed).permutation(n)``:
    the first ``round(fraction · n)`` are held out (the split of ``benchmarks/accuracy.py``)."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(fraction * n))
    return np.sort(perm[:k]), np.sort(perm[k:])


def default_sizes(n_pool: int) -> tuple[int, ...]:
    """Four training sizes n_pool/8, n_pool/4, n_pool/2, n_pool (at least 5 structures each).

    Raises
    ------
    MinbasisError
        If the pool has fewer than 20 structures (too few for a learning curve).
    """
    if n_pool < 20:
        raise MinbasisError(f"a learning curve needs at least 20 training structures, got {n_pool}")
    return tuple(sorted({max(5, int(round(n_pool / d))) for d in (8, 4, 2, 1)}))


def fold_subsets(n_pool: int, fold: int, n: int, validation_fraction: float = 0.2, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(validation part, fitting part) of the size-n subset of fold ``fold`` (pool indices; module docstring).

    Raises
    ------
    MinbasisError
        If n does not fit the pool (n > n_pool, or its validation part exceeds the validation pool).
    """
    perm = np.random.default_rng(seed + 1 + fold).permutation(n_pool)
    V = int(round(validation_fraction * n_pool))
    v = int(round(validation_fraction * n))
    if n > n_pool or n - v > n_pool - V or v > V or n < 2:
        raise MinbasisError(f"training size {n} does not fit the pool of {n_pool} structures")
    return perm[:v], perm[V:V + n - v]


def _summary(m: dict) -> dict:
    out = {}
    if "energy_mae_per_atom" in m:
        out.update(energy_mae_meV_per_atom=1e3 * m["energy_mae_per_atom"],
                   energy_rmse_meV_per_atom=1e3 * m["energy_rmse_per_atom"])
    if "forces_mae" in m:
        out.update(forces_mae=m["forces_mae"], forces_rmse=m["forces_rmse"])
    return out


def _score(model, frames: Sequence[Atoms], labels, repeats: int) -> tuple[dict, float]:
    """Metrics on ``frames`` and the best-of-``repeats`` prediction time (µs/atom) after a warm-up call."""
    model.predict(frames[:2])
    best, pred = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        pred = model.predict(frames)
        best = min(best, time.perf_counter() - t0)
    return _summary(error_metrics(frames, labels, pred)), 1e6 * best / sum(len(a) for a in frames)


def fit_one(kind: str, bases: dict, train: Sequence[Atoms], fit_part: Sequence[Atoms] | None,
            val_part: Sequence[Atoms] | None, config: CompareConfig, seed: int = 0):
    """Fit one model of family ``kind``.

    ``bases`` maps ``"full"`` and ``"minimal"`` to :class:`~minbasis.Basis`; linear and poly fit
    ``train``, the MLP fits ``fit_part`` and early-stops on ``val_part``.

    Returns
    -------
    (model, fit seconds, dict of extra information: features, parameters, …)
    """
    t0 = time.perf_counter()
    keys = config.keys
    extra: dict = {}
    if kind in ("linear_full", "linear_minimal"):
        basis = bases["full" if kind == "linear_full" else "minimal"]
        model = fit_linear(basis, train, config=LinearFitConfig(), **keys)
        extra.update(features=basis.n_features, parameters=int(model.weights.size),
                     effective_alpha=model.info.get("effective_alpha"))
    elif kind == "poly":
        model = fit_polynomial(bases["minimal"], train, degree=config.poly_degree,
                               n_product_inputs=config.poly_inputs, config=LinearFitConfig(), **keys)
        extra.update(features=model.n_features, inputs=bases["minimal"].n_features,
                     parameters=int(model.weights.size), poly_inputs=config.poly_inputs,
                     effective_alpha=model.info.get("effective_alpha"))
    elif kind == "mlp":
        cfg = config.mlp_config(seed)
        model = fit_mlp(bases["minimal"], fit_part, validation=val_part, config=cfg, **keys)
        i = model.info
        extra.update(features=bases["minimal"].n_features, parameters=model.n_parameters, hidden=list(model.hidden),
                     l2=cfg.l2, best_iteration=i["best_iteration"], n_iter=i["n_iter"],
                     stopped_early=i["stopped_early"], n_fit=len(fit_part), n_validation=len(val_part),
                     history=i["history"])
    else:
        raise MinbasisError(f"unknown model {kind!r}; choose from {', '.join(COMPARED_MODELS)}")
    return model, time.perf_counter() - t0, extra


def compare_models(full: Basis, pool: Sequence[Atoms], test: Sequence[Atoms], config: CompareConfig | None = None,
                   minimal: Basis | None = None, log: Callable[[str], None] | None = print) -> dict:
    """Learning curves of the model families of ``config.models`` on the same folds.

    Parameters
    ----------
    full : Basis
        The full basis (``linear_full``); its :meth:`~minbasis.Basis.minimal` subset feeds the others
        unless ``minimal`` is given.
    pool, test : list of ase.Atoms
        Training pool and held-out structures, labelled under ``config.keys`` (eV, eV/Å).
    config : CompareConfig
    log : callable or None
        Receives one line per fit (default ``print``).

    Returns
    -------
    dict with ``runs`` (one entry per fit: model, n_train, fold, fit_seconds, predict_us_per_atom,
    test metrics, features, parameters, MLP train/validation metrics and iterations), ``table``
    (mean over folds per model and size, with the force-MAE spread max − min), ``eval_cost``
    (median/min/max µs/atom per model), ``sizes``, ``basis`` (feature counts) and ``config``.

    Raises
    ------
    MinbasisError / LabelError
        Bad configuration, sizes that do not fit the pool, missing labels.
    """
    cfg = config or CompareConfig()
    if len(test) == 0:
        raise MinbasisError("no held-out structures to score on")
    sizes = tuple(cfg.sizes) if cfg.sizes else default_sizes(len(pool))
    fold_sizes = set(cfg.fold_sizes) if cfg.fold_sizes is not None else set(sizes)
    for n in sizes:
        fold_subsets(len(pool), 0, n, cfg.validation_fraction, cfg.seed)  # raises early for a size that does not fit
    bases = {"full": full, "minimal": minimal if minimal is not None else full.minimal()}
    test_labels = get_labels(test, **cfg.keys)
    runs = []
    for n in sizes:
        for fold in range(cfg.folds if n in fold_sizes else 1):
            val_i, fit_i = fold_subsets(len(pool), fold, n, cfg.validation_fraction, cfg.seed)
            val_part = [pool[i] for i in val_i]
            fit_part = [pool[i] for i in fit_i]
            train = val_part + fit_part
            for kind in cfg.models:
                if fold > 0 and kind != "mlp" and n == len(pool):
                    continue  # every fold holds the whole pool: a linear fit is deterministic
                model, sec, extra = fit_one(kind, bases, train, fit_part, val_part, cfg, seed=fold)
                metrics, us = _score(model, test, test_labels, cfg.repeats)
                row = {"model": kind, "n_train": n, "fold": fold, "fit_seconds": sec, "predict_us_per_atom": us,
                       "test": metrics, **extra}
                if kind == "mlp":
                    for name, part in (("train", fit_part), ("validation", val_part)):
                        row[name] = _summary(error_metrics(part, get_labels(part, **cfg.keys), model.predict(part)))
                runs.append(row)
                if log is not None:
                    log(_run_line(row))
    return {"sizes": list(sizes), "n_pool": len(pool), "n_test": len(test),
            "basis": {"full": full.n_features, "minimal": bases["minimal"].n_features},
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
            "runs": runs, "table": _table(runs, cfg.models, sizes), "eval_cost": eval_cost(runs)}


def _fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _run_line(row: dict) -> str:
    t = row["test"]
    line = (f"n={row['n_train']:4d} fold {row['fold']} {row['model']:15s} F MAE {_fmt(t.get('forces_mae'), '.4f')} eV/Å  "
            f"E MAE {_fmt(t.get('energy_mae_meV_per_atom'), '7.3f')} meV/atom  fit {row['fit_seconds']:6.1f} s  "
            f"{row['predict_us_per_atom']:7.1f} µs/atom")
    if row["model"] == "mlp":
        line += (f"  (train F {_fmt(row['train'].get('forces_mae'), '.4f')}, val F "
                 f"{_fmt(row['validation'].get('forces_mae'), '.4f')}, best it {row['best_iteration']}/{row['n_iter']})")
    return line


def _mean(rows: list[dict], key: str):
    vals = [r["test"][key] for r in rows if key in r["test"]]
    return (float(np.mean(vals)), float(np.ptp(vals))) if vals else (None, None)


def _table(runs: list[dict], kinds: Sequence[str], sizes: Sequence[int]) -> list[dict]:
    table = []
    for kind in kinds:
        for n in sizes:
            rows = [r for r in runs if r["model"] == kind and r["n_train"] == n]
            if not rows:
                continue
            f_mean, f_spread = _mean(rows, "forces_mae")
            e_mean, _ = _mean(rows, "energy_mae_meV_per_atom")
            table.append({"model": kind, "n_train": n, "folds": len(rows), "features": rows[0]["features"],
                          "parameters": rows[0]["parameters"], "energy_mae_meV_per_atom": e_mean,
                          "forces_mae": f_mean, "forces_mae_spread": f_spread,
                          "fit_seconds": float(np.mean([r["fit_seconds"] for r in rows])),
                          "predict_us_per_atom": float(np.mean([r["predict_us_per_atom"] for r in rows]))})
    return table


def eval_cost(runs: list[dict]) -> dict:
    """Per model: median, min and max prediction time (µs/atom) over all its fits (the cost does
    not depend on the training size, so the median is the robust number on a shared machine)."""
    out = {}
    for kind in sorted({r["model"] for r in runs}):
        t = [r["predict_us_per_atom"] for r in runs if r["model"] == kind]
        out[kind] = {"median_us_per_atom": float(np.median(t)), "min_us_per_atom": float(np.min(t)),
                     "max_us_per_atom": float(np.max(t)), "n": len(t)}
    return out


def format_comparison(results: dict) -> str:
    """Plain-text table of :func:`compare_models` results (one line per model and size; ± is half
    the spread over folds)."""
    lines = [f"{'model':16s} {'n':>5s} {'folds':>5s} {'feat/species':>12s} {'params':>7s} {'E MAE meV/at':>13s} "
             f"{'F MAE eV/Å':>11s} {'':8s} {'fit s':>7s} {'µs/atom':>8s}"]
    for e in results["table"]:
        spread = f"±{e['forces_mae_spread'] / 2:.4f}" if e["folds"] > 1 and e["forces_mae_spread"] is not None else ""
        lines.append(f"{e['model']:16s} {e['n_train']:5d} {e['folds']:5d} {e['features']:12d} {e['parameters']:7d} "
                     f"{_fmt(e['energy_mae_meV_per_atom'], '13.3f')} {_fmt(e['forces_mae'], '11.4f')} {spread:8s} "
                     f"{e['fit_seconds']:7.1f} {e['predict_us_per_atom']:8.1f}")
    cost = results.get("eval_cost", {})
    if cost:
        lines.append("evaluation µs/atom (median over fits): " +
                     ", ".join(f"{k} {v['median_us_per_atom']:.1f}" for k, v in cost.items()))
    return "\n".join(lines)


_STYLE = {"linear_full": ("#1f77b4", "o", "linear, full ACE"),
          "linear_minimal": ("#7f7f7f", "v", "linear, minimal"),
          "poly": ("#2ca02c", "s", "linear, poly(minimal)"),
          "mlp": ("#d62728", "D", "MLP, minimal")}


def plot_comparison(results: dict, path: str | Path, title: str = "Linear or nonlinear?") -> Path:
    """Write a PNG: learning curves of force and energy MAE vs training size (bars: min–max over
    folds) and accuracy vs evaluation cost at the largest size (median time over a model's fits).

    Returns the path written. Needs matplotlib (a dependency of minbasis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    runs = results["runs"]
    sizes = sorted({r["n_train"] for r in runs})
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.0), constrained_layout=True,
                             gridspec_kw={"width_ratios": [1, 1, 1.05]})
    offsets = {"mlp": (-12, -36), "poly": (10, -8), "linear_full": (10, 16)}
    for kind, (color, marker, label) in _STYLE.items():
        rows = [r for r in runs if r["model"] == kind]
        if not rows:
            continue
        unit = "inputs" if kind == "mlp" else "features"
        lab = f"{label}: {rows[0]['features']} {unit}/species"
        for ax, key in ((axes[0], "forces_mae"), (axes[1], "energy_mae_meV_per_atom")):
            xs, ys, lo, hi = [], [], [], []
            for n in sizes:
                vals = [r["test"][key] for r in rows if r["n_train"] == n and key in r["test"]]
                if vals:
                    xs.append(n)
                    ys.append(np.mean(vals))
                    lo.append(np.mean(vals) - np.min(vals))
                    hi.append(np.max(vals) - np.mean(vals))
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], color=color, marker=marker, ms=6, lw=1.8, capsize=3, label=lab)
        full = [r for r in rows if r["n_train"] == max(sizes) and "forces_mae" in r["test"]]
        if full:
            r = full[0]
            us = float(np.median([q["predict_us_per_atom"] for q in rows]))
            f_mae = float(np.mean([q["test"]["forces_mae"] for q in full]))
            e_mae = np.mean([q["test"].get("energy_mae_meV_per_atom", np.nan) for q in full])
            axes[2].scatter(us, f_mae, color=color, marker=marker, s=110, zorder=3)
            folds = f" (mean of {len(full)} folds)" if len(full) > 1 else ""
            axes[2].annotate(f"{label}\n{r['features']} {unit}/species, {r['parameters']} parameters\n"
                             f"F {f_mae:.4f} eV/Å, E {e_mae:.2f} meV/atom{folds}", (us, f_mae),
                             textcoords="offset points", xytext=offsets.get(kind, (10, 0)), va="center", fontsize=8,
                             color=color, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
    n_test = results.get("n_test", "")
    for ax, ylabel, name in ((axes[0], "force MAE (eV/Å)", "Forces"), (axes[1], "energy MAE (meV/atom)", "Energies")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training structures")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name} ({n_test} held-out structures)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8.5, loc="upper right", framealpha=0.9)
    ax = axes[2]
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("evaluation time, energy + forces (µs/atom, median over fits)")
    ax.set_ylabel("force MAE (eV/Å)")
    ax.set_title(f"Accuracy vs cost, {max(sizes)} training structures")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlim(ax.get_xlim()[0] / 1.25, ax.get_xlim()[1] * 3.5)
    ax.set_ylim(ax.get_ylim()[0] / 1.3, ax.get_ylim()[1] * 1.15)
    fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
