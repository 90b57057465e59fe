"""Differentiable minbasis descriptors in PyTorch (optional extra: ``pip install "minbasis[torch]"``).

:func:`describe` returns the per-atom invariants B (N_atoms, F) as a float64
:class:`torch.Tensor` that is differentiable with respect to atomic positions, cells and a
strain tensor, to second order, so that models can be trained on forces:

* backward (∂L/∂B → ∂L/∂r) is the vector–Jacobian product of the Numba kernels
  (:func:`minbasis.kernels.autodiff.pair_vjp`): ∂L/∂B is back-propagated through the ACE
  contraction to the moments and scattered over neighbour pairs, as minbasis' own linear
  model computes its forces — the (pairs × 3 × F) Jacobian ∂B/∂r is never stored;
* the backward is itself differentiable: with respect to ∂L/∂B it is the Jacobian–vector
  product (:func:`~minbasis.kernels.autodiff.pair_jvp`), with respect to the positions the
  Hessian–vector product (:func:`~minbasis.kernels.autodiff.pair_hvp`, exact second
  derivatives of the radial and angular functions). Losses on forces F = −∂E/∂r
  (``create_graph=True``) can therefore be differentiated with respect to model parameters
  and positions. Third derivatives with respect to positions are not implemented (an error
  says so);
* forward mode with dual tensors (``torch.autograd.forward_ad``) is the same JVP kernel
  (first order; the ``torch.func`` transforms are not supported).

Positions, cells and strain enter the pair vectors r_ij = (r_j − r_i + S_ij · cell)(1 + ε)
through ordinary torch operations; the neighbour list (vesin) is built at the current
values of positions and cell, so derivatives are those of the descriptors with that fixed
list (exact: every pair leaving the cutoff sphere has a vanishing contribution to second
order, the radial envelope being C²).

Units: Å for positions and cells, strain unit-less; with E in eV, ∂E/∂r is −forces (eV/Å) and
∂E/∂ε (at ε = 0) is V·σ, the ASE stress σ in eV/Å³ times the cell volume (sources: Drautz,
PRB 99, 014104, 2019 for ACE; ASE conventions for forces, virial and stress).

Example (energies and forces of a per-species model; see ``examples/torch_ethanol_training.py``)::

    import torch, minbasis as mb, minbasis.torch as mbt
    s = mbt.Structures(frames, basis)
    pos = s.positions.clone().requires_grad_(True)
    B = s.describe(positions=pos)                      # (N, F) float64
    E_atoms = model(B, s.species)                      # any torch model
    E = torch.zeros(s.n_structures, dtype=B.dtype).index_add(0, s.structure, E_atoms)
    F = -torch.autograd.grad(E.sum(), pos, create_graph=True)[0]
    loss = ((E - E_ref) ** 2).mean() + ((F - F_ref) ** 2).mean()
    loss.backward()                                    # gradients for the model's parameters
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from .basis import Basis, require_basis
from .errors import MinbasisError
from .kernels.autodiff import PairGeometry, build_geometry
from .kernels.backend import get_backend
from .kernels.neighbours import as_atoms_list

__all__ = ["describe", "Structures", "DescriptorModule", "pair_features_op"]

#: The kernels behind the autograd functions: the autodiff operators exist on the CPU backend.
_KERNELS = get_backend("cpu")


# -- autograd functions over pair vectors ------------------------------------------------------------
class _Op:
    """The fixed, non-tensor part of a call: evaluation plan and neighbour batch."""

    __slots__ = ("plan", "batch", "second_order")

    def __init__(self, plan, batch, second_order=True):
        self.plan = plan
        self.batch = batch
        self.second_order = second_order


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(dtype=torch.float64, device="cpu").contiguous().numpy()


def _t(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=like.device)


class _Features(torch.autograd.Function):
    """B = Φ(r): pair vectors (P, 3) → features (N, F); reverse mode (backward: the VJP kernel) and forward
    mode (jvp: the JVP kernel, for ``torch.autograd.forward_ad``)."""

    @staticmethod
    def forward(r, op):
        return _t(_KERNELS.pair_features(op.plan, op.batch, _np(r)), r)

    @staticmethod
    def setup_context(ctx, inputs, output):
        r, op = inputs
        ctx.op = op
        ctx.save_for_backward(r)
        ctx.save_for_forward(r)

    @staticmethod
    def backward(ctx, gX):
        (r,) = ctx.saved_tensors
        # second_order=False: the gradient does not depend on r in the graph, so differentiating it
        # again (force training) needs no Hessian-vector product — only the JVP with respect to gX
        return _VJP.apply(r if ctx.op.second_order else r.detach(), gX, ctx.op), None

    @staticmethod
    def jvp(ctx, r_t, _op_t):
        (r,) = ctx.saved_tensors
        return _t(_KERNELS.pair_jvp(ctx.op.plan, ctx.op.batch, _np(r), _np(r_t), values=False)[1], r)


class _VJP(torch.autograd.Function):
    """ḡ = Σ Ḡ ∂B/∂r: (pair vectors (P, 3), cotangent (N, F)) → (P, 3)."""

    @staticmethod
    def forward(ctx, r, gX, op):
        ctx.op = op
        ctx.save_for_backward(r, gX)
        return _t(_KERNELS.pair_vjp(op.plan, op.batch, _np(r), _np(gX)), r)

    @staticmethod
    def backward(ctx, u):
        r, gX = ctx.saved_tensors
        need_r, need_g = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dr = _HVP.apply(r, gX, u, ctx.op) if need_r else None
        dg = _JVP.apply(r, u, ctx.op) if need_g else None
        return dr, dg, None


class _JVP(torch.autograd.Function):
    """δB = Σ ∂B/∂r δr: (pair vectors, tangent (P, 3)) → (N, F); its adjoint in δr is the VJP and its
    derivative in r the Hessian–vector product."""

    @staticmethod
    def forward(ctx, r, u, op):
        ctx.op = op
        ctx.save_for_backward(r, u)
        return _t(_KERNELS.pair_jvp(op.plan, op.batch, _np(r), _np(u), values=False)[1], r)

    @staticmethod
    def backward(ctx, gdX):
        r, u = ctx.saved_tensors
        need_r, need_u = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dr = _HVP.apply(r, gdX, u, ctx.op) if need_r else None
        du = _VJP.apply(r, gdX, ctx.op) if need_u else None
        return dr, du, None


class _HVP(torch.autograd.Function):
    """Σ_q ∂²(Ḡ · B)/∂r_p ∂r_q δr_q: (pair vectors, cotangent (N, F), tangent (P, 3)) → (P, 3)."""

    @staticmethod
    def forward(ctx, r, gX, u, op):
        return _t(_KERNELS.pair_hvp(op.plan, op.batch, _np(r), _np(gX), _np(u))[1], r)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("minbasis.torch: third derivatives of the descriptors with respect to positions, cell or "
                           "strain are not implemented (first and second derivatives are)")


def pair_features_op(plan, batch, pair_vec: torch.Tensor, second_order: bool = True) -> torch.Tensor:
    """Features (N, F) float64 of a neighbour batch at pair vectors ``pair_vec`` (P, 3) float64 Å,
    differentiable twice (the autograd core of :func:`describe`).

    ``plan`` is ``basis.plan``; ``batch`` a :class:`~minbasis.kernels.neighbours.Batch`.
    ``second_order=False`` keeps the first derivative exact but treats it as independent of the
    pair vectors when differentiated again: second derivatives with respect to the model's
    inputs ∂L/∂B stay exact (force training), those with respect to positions become zero."""
    return _Features.apply(pair_vec, _Op(plan, batch, second_order))


# -- structures and describe ------------------------------------------------------------------------
class Structures:
    """A list of structures prepared for repeated differentiable evaluation.

    Builds the neighbour list once (at the structures' positions and cells) and keeps index
    tensors that models need for per-species networks and per-structure sums.

    Parameters
    ----------
    atoms_or_list : ase.Atoms or list of ase.Atoms
    basis : :class:`minbasis.Basis`
    positions : (N, 3) array or tensor in Å, optional; cell : (M, 3, 3), optional
        Build the list at these values instead of the atoms' own.

    Attributes
    ----------
    n_atoms, n_structures : int
    positions : (N, 3) float64 tensor (Å), no grad; cells : (M, 3, 3) float64 tensor (Å; zeros
        when not periodic)
    species : (N,) int64 tensor, index into ``basis.species`` of every atom
    structure : (N,) int64 tensor, structure of every atom; atom_ptr : (M+1,) int64 offsets
    volumes : (M,) float64 tensor, Å³ (NaN unless periodic in all three directions)

    Raises
    ------
    StructureError / SpeciesError
        As :func:`minbasis.describe`.
    """

    def __init__(self, atoms_or_list: Atoms | Sequence[Atoms], basis: Basis, positions=None, cell=None):
        require_basis(basis)
        self.atoms_list = as_atoms_list(atoms_or_list)
        self.basis = basis
        self._build(None if positions is None else _np(torch.as_tensor(positions)),
                    None if cell is None else _np(torch.as_tensor(cell)))

    def _build(self, positions, cells) -> None:
        self.geometry: PairGeometry = build_geometry(self.atoms_list, self.basis.plan, positions, cells)
        b = self.geometry.batch
        self.n_atoms = b.n_atoms
        self.n_structures = b.n_structures
        self.positions = torch.from_numpy(self.geometry.positions.copy())
        self.cells = torch.from_numpy(self.geometry.cells.copy())
        self.species = torch.from_numpy(b.centre_ch.astype(np.int64))
        self.structure = torch.from_numpy(b.atom_struct.astype(np.int64))
        self.atom_ptr = torch.from_numpy(b.atom_ptr.astype(np.int64))
        self.volumes = torch.from_numpy(np.asarray(b.volumes, dtype=np.float64))
        self._pi = torch.from_numpy(b.pair_i)
        self._pj = torch.from_numpy(b.pair_j)
        self._ps = torch.from_numpy(b.pair_struct)
        self._shifts = torch.from_numpy(self.geometry.shifts)

    def pair_vectors(self, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None,
                     strain: torch.Tensor | None = None) -> torch.Tensor:
        """r_p = (r_j − r_i + S_p · cell)(1 + ε) (P, 3) float64 in Å, differentiable in every argument.

        The neighbour list is rebuilt first when ``positions`` or ``cell`` differ from the values
        it was built at (by more than 1e-12 Å)."""
        pos = self.positions if positions is None else torch.as_tensor(positions, dtype=torch.float64)
        cel = self.cells if cell is None else torch.as_tensor(cell, dtype=torch.float64)
        if cel.dim() == 2 and self.n_structures == 1:
            cel = cel.unsqueeze(0)
        if pos.shape != (self.n_atoms, 3):
            raise MinbasisError(f"positions must have shape ({self.n_atoms}, 3), got {tuple(pos.shape)}")
        if cel.shape != (self.n_structures, 3, 3):
            raise MinbasisError(f"cell must have shape ({self.n_structures}, 3, 3), got {tuple(cel.shape)}")
        moved = (positions is not None and not torch.allclose(pos.detach().cpu(), self.positions, rtol=0, atol=1e-12))
        strained = (cell is not None and not torch.allclose(cel.detach().cpu(), self.cells, rtol=0, atol=1e-12))
        if moved or strained:
            self._build(_np(pos), _np(cel))
        r = pos.index_select(0, self._pj.to(pos.device)) - pos.index_select(0, self._pi.to(pos.device))
        ps = self._ps.to(pos.device)
        r = r + torch.einsum("pa,pab->pb", self._shifts.to(pos.device), cel.index_select(0, ps))
        if strain is not None:
            eps = torch.as_tensor(strain, dtype=torch.float64)
            if eps.dim() == 2 and self.n_structures == 1:
                eps = eps.unsqueeze(0)
            if eps.shape != (self.n_structures, 3, 3):
                raise MinbasisError(f"strain must have shape ({self.n_structures}, 3, 3), got {tuple(eps.shape)}")
            r = r + torch.einsum("pa,pab->pb", r, eps.index_select(0, ps))
        return r

    def describe(self, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None,
                 strain: torch.Tensor | None = None, second_order: bool = True) -> torch.Tensor:
        """Features (N, F) float64, differentiable twice with respect to the given tensors.

        Parameters
        ----------
        positions : (N, 3) tensor in Å or None (the structures' positions, constant)
        cell : (M, 3, 3) tensor in Å (rows are cell vectors) or None
        strain : (M, 3, 3) tensor ε (unit-less, applied as r → r(1 + ε)) or None; at ε = 0,
            ∂E/∂ε = V·σ (ASE stress in eV/Å³ times the volume in Å³)
        second_order : bool, default True. False skips the Hessian–vector product when a
            gradient is differentiated again: exact for force training (derivatives of a force
            loss with respect to model parameters), but second derivatives with respect to
            positions, cell or strain become zero. Saves about a third of a training step.

        Raises
        ------
        MinbasisError
            Tensors of the wrong shape.
        """
        r = self.pair_vectors(positions, cell, strain)
        return pair_features_op(self.basis.plan, self.geometry.batch, r, second_order)


def describe(atoms_or_list: Atoms | Sequence[Atoms], basis: Basis, positions: torch.Tensor | None = None,
             cell: torch.Tensor | None = None, strain: torch.Tensor | None = None) -> torch.Tensor:
    """Per-atom features as a differentiable float64 tensor (N_atoms, F), rows in input order.

    Parameters
    ----------
    atoms_or_list : ase.Atoms or list of ase.Atoms (species, pbc; positions and cells by default)
    basis : :class:`minbasis.Basis`
    positions : (N_atoms, 3) tensor in Å, optional, may require grad (all structures concatenated)
    cell : (M, 3, 3) tensor in Å, optional, may require grad (a (3, 3) tensor for one structure)
    strain : (M, 3, 3) tensor, optional, the displacement gradient ε applied to the pair vectors,
        r → r(1 + ε); ∂E/∂ε at ε = 0 is the virial-like V·σ (eV), σ the ASE stress (eV/Å³)

    Returns
    -------
    torch.Tensor float64 (N_atoms, F), equal to :func:`minbasis.describe`; first and second
    derivatives by the Numba kernels (see the module docstring).

    Raises
    ------
    StructureError / SpeciesError / MinbasisError
        As :func:`minbasis.describe`; tensors of the wrong shape.
    """
    s = Structures(atoms_or_list, basis,
                   positions=None if positions is None else positions.detach(),
                   cell=None if cell is None else cell.detach())
    return s.describe(positions=positions, cell=cell, strain=strain)


class DescriptorModule(torch.nn.Module):
    """``torch.nn.Module`` wrapper of :func:`describe` for a fixed basis (no trainable parameters).

    ``forward(structures, positions=None, cell=None, strain=None)`` takes a
    :class:`Structures` (neighbour list reused) or ase.Atoms / a list of them and returns the
    features (N, F) float64. ``n_features`` and ``species`` describe the output.

    Parameters
    ----------
    basis : :class:`minbasis.Basis`
    """

    def __init__(self, basis: Basis):
        super().__init__()
        require_basis(basis)
        self.basis = basis
        self.n_features = basis.n_features
        self.species = tuple(basis.species)

    def forward(self, structures, positions=None, cell=None, strain=None) -> torch.Tensor:
        if isinstance(structures, Structures):
            if structures.basis is not self.basis and structures.basis.spec.hash != self.basis.spec.hash:
                raise MinbasisError("structures were prepared for another basis")
            return structures.describe(positions=positions, cell=cell, strain=strain)
        return describe(structures, self.basis, positions=positions, cell=cell, strain=strain)

    def extra_repr(self) -> str:
        return f"species={list(self.species)}, n_features={self.n_features}"
