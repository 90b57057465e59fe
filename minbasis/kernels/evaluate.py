"""Python entry points of the CPU kernels: one function per output, batch in, arrays out.

The library calls them through :class:`~minbasis.kernels.backend.CpuBackend`
(``get_backend("cpu")``); all arrays are float64 NumPy arrays, N centre atoms, P pairs, M
structures, F features.
"""

from __future__ import annotations

import numpy as np

from .ace import ace_features, ace_linear, n_chunks_for, scatter_design, scatter_pair_gradients
from .batching import sample_keys
from .neighbours import Batch
from .plan import EvaluationPlan

__all__ = ["features", "sample_gradients", "linear_energy_forces", "design_blocks"]


def features(plan: EvaluationPlan, batch: Batch, gradients: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-atom invariants and, optionally, their per-pair gradients.

    Returns
    -------
    X : numpy.ndarray, float64, shape (N, n_features)
    J : numpy.ndarray, float64, shape (P, 3, n_features), J[p, a, f] = ∂B_{i,f}/∂(r_ij)_a in 1/Å
        (for unit-less features), or None when ``gradients`` is False.
    """
    P = len(batch.pair_i) if gradients else 0
    X, J, _ = _run_features(plan, batch, gradients, np.arange(P), np.full(batch.n_atoms, -1), P, False)
    return X, (J if gradients else None)


def sample_gradients(plan: EvaluationPlan, batch: Batch, strain: bool = False, out: tuple | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Features with gradients per (centre i, atom k) sample, reduced inside the kernel.

    ``out`` = (X, G, S): zero-filled arrays of the shapes below to write into (for example
    slices of larger arrays, so that a caller assembling many batches never holds two copies);
    by default they are allocated.

    Returns
    -------
    X : (N, F) features
    samples : (G, 2) int64 rows [i, k] (batch-local), sorted; each i has a row k = i
        (:func:`~minbasis.kernels.batching.sample_keys`)
    grads : (G, 3, F) ∂B_{i,f}/∂r_{k,a} in 1/Å
    strain : (N, 3, 3, F) ∂B_{i,f}/∂ε_ab, or None

    Raises
    ------
    ValueError
        ``out`` arrays of the wrong shapes, or without a strain array when ``strain`` is True.
    """
    N = batch.n_atoms
    P = len(batch.pair_i)
    uniq, inv = sample_keys(batch)
    X, G, S = _run_features(plan, batch, True, inv[:P], inv[P:], len(uniq), strain, out)
    samples = np.stack([uniq // N, uniq % N], axis=1).astype(np.int64)
    return X, samples, G, (S if strain else None)


def _run_features(plan, batch, gradients, pair_sample, self_sample, n_samples, strain, out=None):
    F = plan.n_features
    if out is None:
        X = np.zeros((batch.n_atoms, F))
        G = np.zeros((n_samples if gradients else 0, 3, F))
        S = np.zeros((batch.n_atoms if strain else 0, 3, 3, F))
    else:
        X, G, S = out
        if strain and S is None:
            raise ValueError("out must hold a strain array when strain=True")
        S = S if strain else np.zeros((0, 3, 3, F))
        if X.shape != (batch.n_atoms, F) or G.shape != (n_samples, 3, F) or (strain and S.shape != (batch.n_atoms, 3, 3, F)):
            raise ValueError("out arrays have the wrong shapes for this batch")
    ace_features(batch.centre_ptr, batch.pair_vec, batch.pair_ch, plan.n_channels, plan.r_cut, plan.scale,
                 plan.n_r, plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order, plan.t_idx, plan.o_ptr, plan.t_pack,
                 plan.t_coef, plan.t_feat,
                 plan.t_slot, plan.slot_v, plan.cf_ptr, gradients, np.ascontiguousarray(pair_sample, dtype=np.int64),
                 np.ascontiguousarray(self_sample, dtype=np.int64), strain, n_chunks_for(batch.n_atoms), X, G, S)
    return X, G, S


def linear_energy_forces(plan: EvaluationPlan, batch: Batch, weights: np.ndarray, e0: np.ndarray,
                         folded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energy, forces and virial of a linear model E = Σ_i e0[s_i] + weights[s_i] · B_i.

    Parameters
    ----------
    weights : float64 array (n_channels, n_features), eV per unit feature.
    e0 : float64 array (n_channels,), eV.
    folded : float64 array (n_channels, n_terms), optional
        weights[:, t_feat] · t_coef precomputed (:meth:`minbasis.fit.LinearModel.folded_weights`);
        folded here when absent.

    Returns
    -------
    energies : (N,) per-atom energies, eV
    forces : (N, 3), eV/Å, F = −∂E/∂r
    virial : (M, 3, 3), eV, W = −Σ_p r_p ⊗ ∂E/∂r_p (docs/theory/conventions.md); stress = −W / V.
    """
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    e0 = np.ascontiguousarray(e0, dtype=np.float64)
    E = np.zeros(batch.n_atoms)
    G = np.zeros((len(batch.pair_i), 3))
    if folded is None:
        wt = np.ascontiguousarray(weights[:, plan.t_feat] * plan.t_coef[None, :])  # (n_channels, T)
    else:
        wt = folded
    ace_linear(batch.centre_ptr, batch.centre_ch, batch.pair_vec, batch.pair_ch, plan.n_channels, plan.r_cut,
               plan.scale, plan.n_r, plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order, plan.t_idx, plan.o_ptr,
               plan.t_pack, wt, e0,
               n_chunks_for(batch.n_atoms), E, G)
    forces = np.zeros((batch.n_atoms, 3))
    virial = np.zeros((batch.n_structures, 3, 3))
    scatter_pair_gradients(batch.pair_i, batch.pair_j, batch.pair_vec, batch.pair_struct, G, forces, virial)
    return E, forces, virial


def design_blocks(plan: EvaluationPlan, batch: Batch, with_virial: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Blocks of a linear design matrix with one coefficient set per centre channel.

    Returns
    -------
    XE : (M, n_channels · n_features) Σ of features over the atoms of each centre channel
    XF : (N, 3, n_channels · n_features) force rows, −∂(Σ_i B_i)/∂r_{k,a}
    XV : (M, 3, 3, n_channels · n_features) rows of V·σ = Σ_p r_p ⊗ ∂/∂r_p, or None
    """
    X, J = features(plan, batch, gradients=True)
    C, F = plan.n_channels, plan.n_features
    XE = np.zeros((batch.n_structures, C * F))
    for c in range(C):
        mask = batch.centre_ch == c
        if mask.any():
            np.add.at(XE[:, c * F:(c + 1) * F], batch.atom_struct[mask], X[mask])
    XF = np.zeros((batch.n_atoms, 3, C * F))
    XV = np.zeros((batch.n_structures if with_virial else 0, 3, 3, C * F))
    scatter_design(batch.pair_i, batch.pair_j, batch.pair_vec, batch.pair_struct if with_virial else
                   np.zeros_like(batch.pair_struct), batch.centre_ch, J, F, XF,
                   XV if with_virial else np.zeros((1, 3, 3, C * F)))
    return XE, XF, (XV if with_virial else None)
