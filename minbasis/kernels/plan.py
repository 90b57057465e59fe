"""Compile a :class:`~minbasis.spec.BasisSpec` into flat arrays for the kernels.

The plan is derived data: it is rebuilt from the specification whenever needed (and cached
on the owning :class:`~minbasis.Basis` object), never stored in files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.data import atomic_numbers

from ..errors import FileFormatError
from ..spec import BasisSpec, invariant_monomials
from .primitives import sph_normalisation, sph_recurrence

__all__ = ["EvaluationPlan", "compile_plan"]


@dataclass(frozen=True)
class EvaluationPlan:
    """Arrays consumed by :mod:`minbasis.kernels.ace` (see its docstring for their meaning)."""

    species: tuple[str, ...]
    numbers: np.ndarray  # (n_channels,) atomic numbers of the channels
    r_cut: float
    scale: float
    n_r: int
    l_max: int
    n_features: int
    sph_norm: np.ndarray  # (l_max+1, l_max+1) Y_lm normalisation factors F_lm (primitives.sph_normalisation)
    t_order: np.ndarray
    t_idx: np.ndarray
    t_coef: np.ndarray
    t_feat: np.ndarray
    t_slot: np.ndarray
    slot_v: np.ndarray
    cf_ptr: np.ndarray
    sph_rec: np.ndarray  # (2, l_max+1, l_max+1) recurrence coefficients (primitives.sph_recurrence)
    o_ptr: np.ndarray  # (6,) terms of order o are o_ptr[o]:o_ptr[o+1] (o ≤ 4; terms sorted by order)
    t_pack: np.ndarray  # (T,) int64 moment indices packed 16 bits each (empty when not packable)

    @property
    def n_channels(self) -> int:
        return len(self.species)

    @property
    def n_moments(self) -> int:
        return self.n_channels * self.n_r * (self.l_max + 1) ** 2


def compile_plan(spec: BasisSpec) -> EvaluationPlan:
    """Build the evaluation plan of a basis specification.

    Raises
    ------
    FileFormatError
        If the specification names an unknown radial basis or species, or an invariant
        refers to a moment outside its own channels.
    """
    radial = spec.radial
    if radial.get("type") != "chebyshev_exp" or radial.get("envelope", "poly3") != "poly3":
        raise FileFormatError(f"unsupported radial basis {radial!r}: this minbasis knows "
                              "{'type': 'chebyshev_exp', 'envelope': 'poly3'}")
    try:
        numbers = np.array([atomic_numbers[s] for s in spec.species], dtype=np.int64)
    except KeyError as exc:
        raise FileFormatError(f"unknown chemical symbol {exc.args[0]!r} in basis species {spec.species}") from exc
    n_ch = len(spec.species)
    n_r = max(spec.n_radial, 1)
    l_max = spec.l_max
    nlm = (l_max + 1) ** 2
    orders, idx, coefs, feats = [], [], [], []
    for f, inv in enumerate(spec.invariants):
        try:
            monomials = invariant_monomials(inv)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FileFormatError(f"invariant {f} ({inv.get('label')}) has neither valid 'terms' nor "
                                  f"'monomials' ({type(exc).__name__}: {exc})") from exc
        for coef, variables in monomials:
            row = []
            for z, n, l, mu in variables:
                if not (0 <= z < n_ch and 0 <= n < n_r and 0 <= l <= l_max and 0 <= mu <= 2 * l):
                    raise FileFormatError(f"invariant {f} ({inv.get('label')}) refers to moment "
                                          f"(z={z}, n={n}, l={l}, μ={mu}) outside the basis")
                row.append((z * n_r + n) * nlm + l * l + mu)
            orders.append(len(row))
            idx.append(row)
            coefs.append(coef)
            feats.append(f)
    width = max(orders, default=1)  # the largest number of factors of a term (4 for ACE ν ≤ 4)
    # terms sorted by their number of factors (stable): the kernels branch on it once per term,
    # and a sorted order makes that branch predictable
    order = np.argsort(np.asarray(orders, dtype=np.int64), kind="stable")
    t_order = np.asarray(orders, dtype=np.int64)[order]
    t_idx = np.asarray([idx[k] + [-1] * (width - len(idx[k])) for k in order], dtype=np.int64).reshape(-1, width)
    t_coef = np.asarray(coefs, dtype=np.float64)[order]
    t_feat = np.asarray(feats, dtype=np.int64)[order]
    n_features = spec.n_features
    n_mom = n_ch * n_r * nlm
    # sparse ∂B_f/∂A_v slots: one per distinct (v, f), sorted by (channel of v, f, v), with CSR
    # offsets cf_ptr[c·F + f] of the slots of feature f in channel c's moments
    nblock = n_r * nlm
    F1 = max(n_features, 1)
    mask = np.arange(width)[None, :] < t_order[:, None]
    v_all = t_idx[mask]
    f_all = np.broadcast_to(t_feat[:, None], t_idx.shape)[mask]
    keys = ((v_all // nblock) * F1 + f_all) * nblock + v_all % nblock
    uniq, inverse = np.unique(keys, return_inverse=True)
    t_slot = np.full(t_idx.shape, -1, dtype=np.int64)
    t_slot[mask] = inverse
    cf = uniq // nblock  # c·F + f
    slot_v = ((cf // F1) * nblock + uniq % nblock).astype(np.int64)
    cf_ptr = np.searchsorted(cf, np.arange(n_ch * F1 + 1)).astype(np.int64)
    # packed indices for the unrolled kernels: up to 4 factors of 16 bits (moments < 2^15)
    o_ptr = np.searchsorted(t_order, np.arange(6)).astype(np.int64)
    packable = n_mom < 2**15 and (len(t_order) == 0 or (t_order.max() <= 4 and t_order.min() >= 1))
    if packable:
        ti = np.where(t_idx < 0, 0, t_idx).astype(np.int64)
        ti = np.pad(ti, ((0, 0), (0, 4 - width))) if width < 4 else ti
        t_pack = ti[:, 0] | (ti[:, 1] << 16) | (ti[:, 2] << 32) | (ti[:, 3] << 48)
    else:
        t_pack = np.zeros(0, dtype=np.int64)
    return EvaluationPlan(species=spec.species, numbers=numbers, r_cut=float(spec.r_cut),
                          scale=float(radial.get("scale", 0.0)), n_r=n_r, l_max=l_max,
                          n_features=n_features, sph_norm=sph_normalisation(l_max), t_order=t_order,
                          t_idx=t_idx, t_coef=t_coef, t_feat=t_feat, t_slot=t_slot,
                          slot_v=slot_v, cf_ptr=cf_ptr, sph_rec=sph_recurrence(l_max), o_ptr=o_ptr,
                          t_pack=np.ascontiguousarray(t_pack, dtype=np.int64))
