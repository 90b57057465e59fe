"""Differentiable minbasis descriptors in JAX (optional extra: ``pip install "minbasis[jax]"``).

The same operators as :mod:`minbasis.torch`, for ``jax.grad``: the features of a fixed
neighbour list are a function of the pair vectors, B = Φ(r), evaluated by the Numba kernels
through ``jax.pure_callback`` and differentiated with ``jax.custom_vjp``:

* the VJP of Φ is :func:`minbasis.kernels.autodiff.pair_vjp` (∂L/∂B back-propagated through
  the ACE contraction and the moments; no (pairs × 3 × F) Jacobian);
* the VJP operator is itself a ``custom_vjp`` function whose cotangents are the
  Jacobian–vector product (:func:`~minbasis.kernels.autodiff.pair_jvp`, with respect to ∂L/∂B)
  and the Hessian–vector product (:func:`~minbasis.kernels.autodiff.pair_hvp`, with respect
  to the pair vectors), so a loss on forces F = −∂E/∂r can be differentiated with
  ``jax.grad`` with respect to model parameters (force training) and positions.

Reverse mode only (``jax.grad``, ``jax.vjp``, ``jax.jacrev``); forward mode (``jax.jvp``,
``jax.jacfwd``) and third derivatives are not available (JAX raises its own error for
differentiating a ``pure_callback``). Works under ``jax.jit`` when the neighbour list comes
from a :class:`Structures` built outside the traced function.

Importing this module switches on ``jax_enable_x64`` (the kernels are float64).
Units: Å, eV, eV/Å; ∂E/∂ε at ε = 0 (strain applied as r → r(1 + ε)) is V·σ with σ the ASE
stress in eV/Å³ (sources: Drautz, PRB 99, 014104, 2019; ASE conventions).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from .basis import Basis, require_basis
from .errors import MinbasisError
from .kernels.autodiff import build_geometry
from .kernels.backend import get_backend
from .kernels.neighbours import as_atoms_list

jax.config.update("jax_enable_x64", True)

__all__ = ["describe", "Structures", "pair_features_op"]

#: The kernels behind the custom VJPs: the autodiff operators exist on the CPU backend.
_KERNELS = get_backend("cpu")


def _cb(fn, shape):
    """A pure_callback of a NumPy function returning one float64 array of ``shape``."""
    out = jax.ShapeDtypeStruct(shape, jnp.float64)

    def call(*args):
        return jax.pure_callback(lambda *a: np.asarray(fn(*[np.asarray(x, dtype=np.float64) for x in a]),
                                                        dtype=np.float64), out, *args)
    return call


def pair_features_op(plan, batch):
    """A JAX function r (P, 3) float64 Å → B (N, F) float64 for one neighbour batch, differentiable twice
    in reverse mode (the core of :func:`describe`).

    ``plan`` is ``basis.plan``; ``batch`` a :class:`~minbasis.kernels.neighbours.Batch`."""
    N, F, P = batch.n_atoms, plan.n_features, len(batch.pair_i)
    feats = _cb(lambda r: _KERNELS.pair_features(plan, batch, r), (N, F))
    vjp_raw = _cb(lambda r, g: _KERNELS.pair_vjp(plan, batch, r, g), (P, 3))
    jvp_raw = _cb(lambda r, u: _KERNELS.pair_jvp(plan, batch, r, u, values=False)[1], (N, F))
    hvp_raw = _cb(lambda r, g, u: _KERNELS.pair_hvp(plan, batch, r, g, u)[1], (P, 3))

    @jax.custom_vjp
    def vjp(r, g):
        return vjp_raw(r, g)

    @jax.custom_vjp
    def jvp(r, u):
        return jvp_raw(r, u)

    def vjp_fwd(r, g):
        return vjp(r, g), (r, g)

    def vjp_bwd(res, u):
        r, g = res
        return hvp_raw(r, g, u), jvp(r, u)

    def jvp_fwd(r, u):
        return jvp(r, u), (r, u)

    def jvp_bwd(res, gdX):
        r, u = res
        return hvp_raw(r, gdX, u), vjp(r, gdX)

    # each fwd returns its function's own (differentiable) output, so that the forward pass can be
    # differentiated again (reverse over reverse: a gradient of a gradient)
    vjp.defvjp(vjp_fwd, vjp_bwd)
    jvp.defvjp(jvp_fwd, jvp_bwd)

    @jax.custom_vjp
    def phi(r):
        return feats(r)

    def phi_fwd(r):
        return phi(r), r

    def phi_bwd(r, g):
        return (vjp(r, g),)

    phi.defvjp(phi_fwd, phi_bwd)
    return phi


def _concrete(x):
    """NumPy value of x, or None when x is a tracer (its value is not known while tracing)."""
    if x is None:
        return None
    try:
        return np.asarray(x, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


class Structures:
    """Structures with a fixed neighbour list, for repeated differentiable evaluation in JAX.

    Build it outside ``jax.jit``/``jax.grad`` (the neighbour list needs concrete positions);
    :meth:`describe` can then be traced. Call :meth:`update` to rebuild the list at new
    positions or cells (e.g. after an MD step).

    Parameters
    ----------
    atoms_or_list : ase.Atoms or list of ase.Atoms
    basis : :class:`minbasis.Basis`
    positions : (N, 3) array in Å, optional; cell : (M, 3, 3) array in Å, optional

    Attributes
    ----------
    n_atoms, n_structures : int
    positions : (N, 3) float64 jax array; cells : (M, 3, 3) (zeros when not periodic)
    species : (N,) int jax array, index into ``basis.species``; structure : (N,) structure of each atom
    volumes : (M,) float64 numpy array, Å³ (NaN unless periodic in all three directions)

    Raises
    ------
    StructureError / SpeciesError
        As :func:`minbasis.describe`.
    """

    def __init__(self, atoms_or_list: Atoms | Sequence[Atoms], basis: Basis, positions=None, cell=None):
        require_basis(basis)
        self.atoms_list = as_atoms_list(atoms_or_list)
        self.basis = basis
        self.update(positions, cell)

    def update(self, positions=None, cell=None) -> None:
        """Rebuild the neighbour list at these positions (N, 3) and cells (M, 3, 3) in Å (concrete arrays)."""
        pos = _concrete(positions)
        cel = _concrete(cell)
        if (positions is not None and pos is None) or (cell is not None and cel is None):
            raise MinbasisError("Structures.update needs concrete arrays; call it outside jax.jit / jax.grad")
        g = build_geometry(self.atoms_list, self.basis.plan, pos, cel)
        b = g.batch
        self.geometry = g
        self.n_atoms = b.n_atoms
        self.n_structures = b.n_structures
        self.positions = jnp.asarray(g.positions)
        self.cells = jnp.asarray(g.cells)
        self.species = jnp.asarray(b.centre_ch)
        self.structure = jnp.asarray(b.atom_struct)
        self.volumes = np.asarray(b.volumes, dtype=np.float64)
        self._pi = jnp.asarray(b.pair_i)
        self._pj = jnp.asarray(b.pair_j)
        self._ps = jnp.asarray(b.pair_struct)
        self._shifts = jnp.asarray(g.shifts)
        self._phi = pair_features_op(self.basis.plan, b)

    def pair_vectors(self, positions=None, cell=None, strain=None):
        """r_p = (r_j − r_i + S_p · cell)(1 + ε) (P, 3) float64 in Å, differentiable in every argument.

        Raises
        ------
        MinbasisError
            Arrays of the wrong shape.
        """
        pos = self.positions if positions is None else jnp.asarray(positions, dtype=jnp.float64)
        cel = self.cells if cell is None else jnp.asarray(cell, dtype=jnp.float64)
        if cel.ndim == 2 and self.n_structures == 1:
            cel = cel[None]
        if pos.shape != (self.n_atoms, 3):
            raise MinbasisError(f"positions must have shape ({self.n_atoms}, 3), got {tuple(pos.shape)}")
        if cel.shape != (self.n_structures, 3, 3):
            raise MinbasisError(f"cell must have shape ({self.n_structures}, 3, 3), got {tuple(cel.shape)}")
        r = pos[self._pj] - pos[self._pi] + jnp.einsum("pa,pab->pb", self._shifts, cel[self._ps])
        if strain is not None:
            eps = jnp.asarray(strain, dtype=jnp.float64)
            if eps.ndim == 2 and self.n_structures == 1:
                eps = eps[None]
            if eps.shape != (self.n_structures, 3, 3):
                raise MinbasisError(f"strain must have shape ({self.n_structures}, 3, 3), got {tuple(eps.shape)}")
            r = r + jnp.einsum("pa,pab->pb", r, eps[self._ps])
        return r

    def describe(self, positions=None, cell=None, strain=None):
        """Features (N, F) float64 jax array at these positions/cell/strain, with the stored neighbour list.

        Parameters
        ----------
        positions : (N, 3) Å; cell : (M, 3, 3) Å; strain : (M, 3, 3) ε (unit-less); each optional

        Raises
        ------
        MinbasisError
            Arrays of the wrong shape.
        """
        return self._phi(self.pair_vectors(positions, cell, strain))


def describe(atoms_or_list: Atoms | Sequence[Atoms], basis: Basis, positions=None, cell=None, strain=None):
    """Per-atom features as a float64 jax array (N_atoms, F), differentiable under ``jax.grad`` (twice).

    The neighbour list is built at ``positions``/``cell`` when they are concrete arrays and at
    the structures' own positions/cells when they are tracers (inside ``jax.grad``/``jax.jit``,
    where values are unknown): then pass values close to the atoms' own, or build a
    :class:`Structures` outside the transformation.

    Parameters
    ----------
    atoms_or_list : ase.Atoms or list of ase.Atoms
    basis : :class:`minbasis.Basis`
    positions : (N_atoms, 3) in Å, optional; cell : (M, 3, 3) in Å, optional
    strain : (M, 3, 3) displacement gradient ε, optional (r → r(1 + ε))

    Returns
    -------
    jax.Array float64 (N_atoms, F), equal to :func:`minbasis.describe`.

    Raises
    ------
    StructureError / SpeciesError / MinbasisError
        As :func:`minbasis.describe`; arrays of the wrong shape.
    """
    s = Structures(atoms_or_list, basis, positions=_concrete(positions), cell=_concrete(cell))
    return s.describe(positions=positions, cell=cell, strain=strain)
