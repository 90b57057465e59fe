"""Error metrics of predictions against labels (the numbers of ``minbasis evaluate``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from .data import Labels
from .model import Prediction

__all__ = ["error_metrics", "calibration", "within_sigma", "parity_plot", "stratified_holdout",
           "format_metrics_table"]


def within_sigma(errors: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    """Fractions of |errors| ≤ 1σ and ≤ 2σ (same shapes; NaN entries are ignored).

    For a calibrated Gaussian predictive distribution these are 0.683 and 0.954.

    Raises
    ------
    ValueError
        Shapes that differ.
    """
    errors, sigma = np.asarray(errors, dtype=float), np.asarray(sigma, dtype=float)
    if errors.shape != sigma.shape:
        raise ValueError(f"errors and sigma must have the same shape, got {errors.shape} and {sigma.shape}")
    ok = np.isfinite(errors) & np.isfinite(sigma)
    if not ok.any():
        return float("nan"), float("nan")
    z = np.abs(errors[ok]) / np.maximum(sigma[ok], 1e-300)
    return float(np.mean(z <= 1.0)), float(np.mean(z <= 2.0))


def calibration(idx: np.ndarray, labels: Labels, pred: Prediction) -> dict:
    """Calibration of a prediction's standard deviations on structures ``idx``.

    Returns
    -------
    dict with ``energy_within_1sigma``, ``energy_within_2sigma`` (energies per structure),
    ``forces_within_1sigma``, ``forces_within_2sigma`` (Cartesian force components),
    ``stress_within_1sigma``, ``stress_within_2sigma`` (Voigt components) for the observables
    that have labels, and ``forces_mean_sigma`` (RMS of the force σ, eV/Å); empty when the
    prediction has no standard deviations (a model without committee).
    """
    if pred.energy_std is None or len(idx) == 0:
        return {}
    out: dict = {}
    if labels.energy is not None:
        out["energy_within_1sigma"], out["energy_within_2sigma"] = within_sigma(
            pred.energy[idx] - labels.energy[idx], pred.energy_std[idx])
    if labels.forces is not None and pred.forces_std is not None:
        dF = np.concatenate([(pred.forces[k] - labels.forces[k]).ravel() for k in idx])
        sF = np.concatenate([pred.forces_std[k].ravel() for k in idx])
        out["forces_within_1sigma"], out["forces_within_2sigma"] = within_sigma(dF, sF)
        out["forces_mean_sigma"] = float(np.sqrt(np.mean(sF**2)))
    if labels.stress is not None and pred.stress_std is not None:
        has = [k for k in idx if np.isfinite(labels.stress[k]).all() and np.isfinite(pred.stress_std[k]).all()]
        if has:
            out["stress_within_1sigma"], out["stress_within_2sigma"] = within_sigma(
                pred.stress[has] - labels.stress[has], pred.stress_std[has])
    return out


def _block(idx: np.ndarray, atoms_list: Sequence[Atoms], labels: Labels, pred: Prediction) -> dict:
    out: dict = {"n_structures": int(len(idx))}
    n_atoms = np.array([len(atoms_list[k]) for k in idx], dtype=float)
    if labels.energy is not None:
        dE = pred.energy[idx] - labels.energy[idx]
        out.update(energy_mae=float(np.mean(np.abs(dE))), energy_rmse=float(np.sqrt(np.mean(dE**2))),
                   energy_mae_per_atom=float(np.mean(np.abs(dE / n_atoms))),
                   energy_rmse_per_atom=float(np.sqrt(np.mean((dE / n_atoms) ** 2))))
    if labels.forces is not None:
        dF = np.concatenate([(pred.forces[k] - labels.forces[k]).ravel() for k in idx])
        out.update(forces_mae=float(np.mean(np.abs(dF))), forces_rmse=float(np.sqrt(np.mean(dF**2))))
    if labels.stress is not None:
        has = [k for k in idx if np.isfinite(labels.stress[k]).all()]
        if has:
            dS = (pred.stress[has] - labels.stress[has]).ravel()
            out.update(stress_mae=float(np.mean(np.abs(dS))), stress_rmse=float(np.sqrt(np.mean(dS**2))),
                       n_stress=len(has))
    cal = calibration(idx, labels, pred)
    if cal:
        out["calibration"] = cal
    return out


def error_metrics(atoms_list: Sequence[Atoms], labels: Labels, pred: Prediction) -> dict:
    """MAE and RMSE of energy (eV per structure and eV/atom), forces (eV/Å, over Cartesian
    components) and stress (eV/Å³, over Voigt components), overall and per config_type.

    Returns
    -------
    dict with keys n_structures, energy_mae, energy_rmse, energy_mae_per_atom,
    energy_rmse_per_atom, forces_mae, forces_rmse, stress_mae, stress_rmse (those available)
    and ``per_config_type``: {config_type: same keys}. When the prediction has standard
    deviations (a model with a committee), every block also has ``calibration``
    (:func:`calibration`: fractions of errors within 1σ and 2σ).
    """
    idx = np.arange(len(atoms_list))
    out = _block(idx, atoms_list, labels, pred)
    out["per_config_type"] = {ct: _block(idx[labels.config_type == ct], atoms_list, labels, pred)
                              for ct in sorted(set(labels.config_type.tolist()))}
    return out


def format_metrics_table(metrics: dict) -> str:
    """A plain-text table of :func:`~minbasis.fit.error_metrics` output (meV units for readability)."""
    cols = [("n", "n_structures", 1, "d"), ("E MAE meV/at", "energy_mae_per_atom", 1e3, ".3f"),
            ("E RMSE meV/at", "energy_rmse_per_atom", 1e3, ".3f"), ("F MAE meV/Å", "forces_mae", 1e3, ".2f"),
            ("F RMSE meV/Å", "forces_rmse", 1e3, ".2f"), ("S MAE meV/Å³", "stress_mae", 1e3, ".4f"),
            ("S RMSE meV/Å³", "stress_rmse", 1e3, ".4f")]
    cols = [c for c in cols if c[1] in metrics]
    rows = [("all", metrics)] + list(metrics.get("per_config_type", {}).items())
    width = max(len(r[0]) for r in rows) + 2
    lines = ["config_type".ljust(width) + "".join(c[0].rjust(15) for c in cols)]
    for name, m in rows:
        cells = []
        for _, key, scale, fmt in cols:
            v = m.get(key)
            cells.append((format(v * scale if fmt != "d" else int(v), fmt) if v is not None else "–").rjust(15))
        lines.append(name.ljust(width) + "".join(cells))
    cal = metrics.get("calibration")
    if cal:
        parts = [f"{obs} {100 * cal[obs + '_within_1sigma']:.1f} % / {100 * cal[obs + '_within_2sigma']:.1f} %"
                 for obs in ("energy", "forces", "stress") if obs + "_within_1sigma" in cal]
        lines.append("calibration (errors within 1σ / 2σ; 68.3 % / 95.4 % if Gaussian and calibrated): "
                     + ", ".join(parts))
    return "\n".join(lines)


def parity_plot(atoms_list: Sequence[Atoms], labels: Labels, pred: Prediction, path, title: str | None = None) -> str:
    """Parity plot (PNG): predicted against reference energy per atom and force components,
    coloured by ``config_type``, with the line y = x and the MAE of each config_type in the legend.

    Parameters
    ----------
    atoms_list, labels, pred : the structures, their labels and a :class:`Prediction` of them
    path : output file (PNG); title : optional figure title

    Returns
    -------
    The path written.

    Raises
    ------
    MinbasisError
        Neither energies nor forces are labelled.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..errors import MinbasisError

    panels = [p for p in ("energy", "forces") if getattr(labels, p) is not None]
    if not panels:
        raise MinbasisError("a parity plot needs energy or force labels")
    cts = sorted(set(labels.config_type.tolist()))
    cmap = plt.get_cmap("tab10" if len(cts) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), squeeze=False)
    n_atoms = np.array([len(a) for a in atoms_list], dtype=float)
    for ax, panel in zip(axes[0], panels):
        lo, hi = np.inf, -np.inf
        for c, ct in enumerate(cts):
            idx = np.flatnonzero(labels.config_type == ct)
            if panel == "energy":
                ref, prd = labels.energy[idx] / n_atoms[idx], pred.energy[idx] / n_atoms[idx]
                mae, unit = 1e3 * np.mean(np.abs(prd - ref)), "meV/atom"
            else:
                ref = np.concatenate([labels.forces[k].ravel() for k in idx])
                prd = np.concatenate([pred.forces[k].ravel() for k in idx])
                mae, unit = 1e3 * np.mean(np.abs(prd - ref)), "meV/Å"
            if not len(ref):
                continue
            lo, hi = min(lo, ref.min(), prd.min()), max(hi, ref.max(), prd.max())
            ax.scatter(ref, prd, s=6 if panel == "energy" else 2, alpha=0.6, color=cmap(c % cmap.N),
                       label=f"{ct} (MAE {mae:.3g} {unit})", rasterized=True)
        pad = 0.03 * (hi - lo if hi > lo else 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.8, label="y = x")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        if panel == "energy":
            ax.set_xlabel("reference energy (eV/atom)")
            ax.set_ylabel("predicted energy (eV/atom)")
        else:
            ax.set_xlabel("reference force component (eV/Å)")
            ax.set_ylabel("predicted force component (eV/Å)")
        ax.legend(fontsize=7, loc="upper left", markerscale=3)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return str(path)


def stratified_holdout(config_types: Sequence[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split stratified by config_type: (held-out indices, remaining indices), both sorted.

    From every config_type, ``round(fraction · n_ct)`` structures are held out (chosen by
    ``default_rng(seed)``), but never all of them when fraction < 1.

    Raises
    ------
    MinbasisError
        ``fraction`` outside [0, 1).
    """
    from ..errors import MinbasisError

    if not (np.isfinite(fraction) and 0.0 <= fraction < 1.0):
        raise MinbasisError(f"validation fraction must be in [0, 1), got {fraction}")
    cts = np.asarray([str(c) for c in config_types])
    rng = np.random.default_rng(seed)
    held = []
    for ct in sorted(set(cts.tolist())):
        idx = np.flatnonzero(cts == ct)
        k = min(int(round(fraction * len(idx))), len(idx) - 1)
        if k > 0:
            held.append(rng.permutation(idx)[:k])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=int)
    rest = np.setdiff1d(np.arange(len(cts)), held)
    return held, rest
