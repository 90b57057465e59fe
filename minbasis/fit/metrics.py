"""Error metrics of predictions against labels (the numbers of ``minbasis evaluate``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from .data import Labels
from .model import Prediction

__all__ = ["error_metrics", "format_metrics_table"]


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
    return out


def error_metrics(atoms_list: Sequence[Atoms], labels: Labels, pred: Prediction) -> dict:
    """MAE and RMSE of energy (eV per structure and eV/atom), forces (eV/Å, over Cartesian
    components) and stress (eV/Å³, over Voigt components), overall and per config_type.

    Returns
    -------
    dict with keys n_structures, energy_mae, energy_rmse, energy_mae_per_atom,
    energy_rmse_per_atom, forces_mae, forces_rmse, stress_mae, stress_rmse (those available)
    and ``per_config_type``: {config_type: same keys}.
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
    return "\n".join(lines)
