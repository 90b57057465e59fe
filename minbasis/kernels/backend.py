"""Kernel backends: the one interface through which the library evaluates an evaluation plan.

A :class:`KernelBackend` evaluates a compiled :class:`~minbasis.kernels.plan.EvaluationPlan` on a
host neighbour :class:`~minbasis.kernels.neighbours.Batch` (built by vesin on the host for every
backend) and returns arrays of its own array module. Its operations are what the rest of the
library needs:

* :meth:`~KernelBackend.features` — per-atom invariants B (N, F), optionally with the per-pair
  Jacobian ∂B/∂r_ij (P, 3, F);
* :meth:`~KernelBackend.sample_gradients` — B with ∂B_i/∂r_k per (centre i, atom k) sample and
  the strain gradients ∂B/∂ε (the layout of :class:`~minbasis.kernels.batching.Descriptors`);
* :meth:`~KernelBackend.linear_energy_forces` — energies, forces and virials of a linear model,
  back-propagated through the moments (no Jacobian), and
  :meth:`~KernelBackend.linear_energy_forces_committee`, the same for a committee of weights;
* :meth:`~KernelBackend.pair_features`, :meth:`~KernelBackend.pair_vjp`,
  :meth:`~KernelBackend.pair_jvp`, :meth:`~KernelBackend.pair_hvp` — B as a function of the pair
  vectors and its vector–Jacobian, Jacobian–vector and Hessian–vector products, for the autodiff
  front ends (:mod:`minbasis.torch`, :mod:`minbasis.jax`).

Two implementations:

* :class:`CpuBackend` — the Numba kernels (:mod:`minbasis.kernels.evaluate`,
  :mod:`minbasis.kernels.committee`, :mod:`minbasis.kernels.autodiff`), float64, NumPy arrays;
  every operation.
* :class:`GpuBackend` — the array-module code of :mod:`minbasis.kernels.gpu` with CuPy on the
  current CUDA device (float64 or float32, CuPy arrays). Features, sample gradients and the
  linear model; the committee and the autodiff products exist on the CPU only and raise
  :class:`~minbasis.errors.MinbasisError` saying so. Constructing it never imports CuPy: the first
  operation (or :meth:`~KernelBackend.require`) does, and raises a ``MinbasisError`` that names
  the missing package or device.

:func:`get_backend` maps a ``device`` argument to its backend; the loop over batches of
structures is :func:`minbasis.kernels.driver.describe_structures`, the same for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from ..errors import MinbasisError
from . import autodiff, committee, evaluate
from .neighbours import Batch
from .plan import EvaluationPlan

__all__ = ["DEVICES", "KernelBackend", "CpuBackend", "GpuBackend", "get_backend"]

#: Values of the ``device`` argument of :func:`minbasis.describe` (``"cuda"`` is a synonym of ``"gpu"``).
DEVICES = ("cpu", "gpu", "cuda")

_FLOAT64 = np.dtype(np.float64)
_FLOAT32 = np.dtype(np.float32)


class KernelBackend(ABC):
    """The operations of one evaluation device on a plan and a neighbour batch.

    Shapes: N centre atoms, P pairs, M structures, F features (``plan.n_features``), C centre
    channels (``plan.n_channels``), T plan terms, K committee members. Arrays returned are of the
    backend's array module (:meth:`to_numpy` copies them to the host); inputs may be NumPy arrays.
    Units: positions and pair vectors in Å, features unit-less, energies in eV, forces in eV/Å,
    virials in eV (W = −Σ_p r_p ⊗ ∂E/∂r_p, docs/theory/conventions.md).

    The public methods check their arguments and document the contract; a subclass implements
    the private hooks ``_features``, ``_sample_gradients`` and ``_linear_energy_forces`` (always)
    and ``_committee`` and ``_pair_*`` (where it has them; the defaults raise).

    Attributes
    ----------
    name : str
        The device name the backend serves ("cpu", "gpu").
    dtypes : tuple of numpy.dtype
        Floating-point precisions the backend evaluates in.
    feature_batch_bytes : float
        Default budget (bytes) of one neighbour batch of :func:`~minbasis.kernels.driver.describe_structures`
        without gradients.
    gradient_batch_factor : float
        Multiple of :data:`~minbasis.kernels.batching.GRADIENT_BATCH_BYTES` that one batch with
        gradients may use (a GPU wants larger batches to fill the device).
    dtype_hint : str
        Appended to the error of :meth:`check_dtype` (where else the dtype is available).
    operations : frozenset of str
        Names of the methods below that the backend implements (the others raise
        :class:`~minbasis.errors.MinbasisError`): a caller can choose before it calls, e.g. a
        prediction that skips the committee where there is no committee kernel.
    """

    name: str = ""
    dtypes: tuple[np.dtype, ...] = (_FLOAT64,)
    dtype_hint: str = ""
    operations: frozenset[str] = frozenset({"features", "sample_gradients", "linear_energy_forces"})
    feature_batch_bytes: float = 256 * 1024**2
    gradient_batch_factor: float = 1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # -- availability and arrays ------------------------------------------------------------------
    def require(self) -> None:
        """Check that the backend can run here (before any work is done).

        Raises
        ------
        MinbasisError
            The backend's package or device is missing (the message names it).
        """

    def check_dtype(self, dtype: Any) -> np.dtype:
        """The NumPy dtype of ``dtype`` if this backend evaluates in it.

        Raises
        ------
        MinbasisError
            A dtype outside :attr:`dtypes`.
        """
        dt = np.dtype(dtype)
        if dt not in self.dtypes:
            names = " or ".join(str(d) for d in self.dtypes)
            raise MinbasisError(f"the {self.name.upper()} kernels evaluate in {names} only, got {dt}{self.dtype_hint}")
        return dt

    @property
    def xp(self) -> Any:
        """The array module of the results (:mod:`numpy` or :mod:`cupy`).

        Raises
        ------
        MinbasisError
            As :meth:`require`.
        """
        return np

    def zeros(self, shape: tuple[int, ...], dtype: Any = np.float64) -> Any:
        """A zero-filled array of the backend's array module, of ``shape`` and ``dtype``."""
        return self.xp.zeros(shape, dtype=dtype)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` as an array of the backend's array module (a copy to the device where there is one)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray | None:
        """``a`` as a NumPy array on the host (NumPy arrays and None pass through unchanged)."""
        return a if a is None else np.asarray(a)

    def concatenate(self, arrays: Sequence[Any]) -> Any:
        """Arrays of the backend joined along axis 0 (the single array itself, without a copy, when
        there is one)."""
        return arrays[0] if len(arrays) == 1 else self.xp.concatenate(list(arrays), axis=0)

    # -- descriptors -----------------------------------------------------------------------------
    def features(self, plan: EvaluationPlan, batch: Batch, *, gradients: bool = False,
                 dtype: Any = np.float64) -> tuple[Any, Any | None]:
        """Per-atom invariants and, optionally, their per-pair gradients.

        Parameters
        ----------
        plan : EvaluationPlan
        batch : Batch
            Host neighbour batch (:func:`~minbasis.kernels.neighbours.build_batch`).
        gradients : bool
            Also return the per-pair Jacobian.
        dtype : float64 or float32
            Precision of the evaluation (one of :attr:`dtypes`).

        Returns
        -------
        X : array, ``dtype``, shape (N, F), unit-less features
        J : array, ``dtype``, shape (P, 3, F), J[p, a, f] = ∂B_{i,f}/∂(r_ij)_a in 1/Å for pair
            p = (i, j) in batch order, or None without ``gradients``

        Raises
        ------
        MinbasisError
            A dtype the backend does not evaluate in; the backend is not available here.
        """
        return self._features(plan, batch, bool(gradients), self.check_dtype(dtype))

    def sample_gradients(self, plan: EvaluationPlan, batch: Batch, *, strain: bool = False, dtype: Any = np.float64,
                         out: tuple | None = None) -> tuple[Any, Any, Any, Any | None]:
        """Features with their gradients per (centre i, atom k) sample, reduced on the backend.

        Parameters
        ----------
        plan, batch, dtype
            As in :meth:`features`.
        strain : bool
            Also return the strain gradients.
        out : (X, G, S), optional
            Zero-filled arrays of the backend, of ``dtype`` and the shapes below (S None without
            ``strain``), to write into — for example slices of a larger result, so that a caller
            assembling many batches never holds two copies. By default they are allocated.

        Returns
        -------
        X : array, ``dtype``, shape (N, F)
        samples : array, int64, shape (G, 2): rows [i, k] (batch-local atom indices), sorted;
            every i has a row k = i (:func:`~minbasis.kernels.batching.sample_keys`)
        grads : array, ``dtype``, shape (G, 3, F): ∂B_{i,f}/∂r_{k,a} in 1/Å
        strain : array, ``dtype``, shape (N, 3, 3, F): ∂B_{i,f}/∂ε_ab = Σ_j (r_ij)_a ∂B_{i,f}/∂(r_ij)_b
            (unit-less), or None without ``strain``

        Raises
        ------
        ValueError
            ``out`` arrays of the wrong shapes, or without a strain array when ``strain`` is True.
        MinbasisError
            As :meth:`features`.
        """
        return self._sample_gradients(plan, batch, bool(strain), self.check_dtype(dtype), out)

    # -- linear models ---------------------------------------------------------------------------
    def linear_energy_forces(self, plan: EvaluationPlan, batch: Batch, weights: np.ndarray, e0: np.ndarray, *,
                             folded: np.ndarray | None = None, dtype: Any = np.float64) -> tuple[Any, Any, Any]:
        """Energies, forces and virials of a linear model E = Σ_i e0[s_i] + weights[s_i] · B_i.

        ∂E_i/∂A is back-propagated through the contraction and the moments: no Jacobian is built.

        Parameters
        ----------
        plan, batch, dtype
            As in :meth:`features`.
        weights : float64 array (C, F), eV per unit feature
        e0 : float64 array (C,), eV
        folded : float64 array (C, T), optional
            ``weights[:, plan.t_feat] * plan.t_coef`` precomputed
            (:meth:`minbasis.fit.LinearModel.folded_weights`); folded here when absent (the GPU
            backend always folds on the host).

        Returns
        -------
        energies : array, ``dtype``, (N,) per-atom energies, eV
        forces : array, ``dtype``, (N, 3), eV/Å, F = −∂E/∂r
        virial : array, ``dtype``, (M, 3, 3), eV; stress = −W / V

        Raises
        ------
        MinbasisError
            ``weights`` or ``e0`` of the wrong shape (GPU); as :meth:`features`.
        """
        return self._linear_energy_forces(plan, batch, weights, e0, folded, self.check_dtype(dtype))

    def linear_energy_forces_committee(self, plan: EvaluationPlan, batch: Batch, weights: np.ndarray, e0: np.ndarray,
                                       dweights: np.ndarray, de0: np.ndarray) -> tuple[Any, ...]:
        """A linear model and K committee members (weights ``weights + dweights[k]``) in one pass, float64.

        Parameters
        ----------
        plan, batch
            As in :meth:`features`.
        weights : (C, F) eV per unit feature; e0 : (C,) eV
        dweights : (K, C, F) deviations of the members' weights; de0 : (K, C) eV

        Returns
        -------
        energies : (N,) eV; forces : (N, 3) eV/Å; virial : (M, 3, 3) eV — of the mean model
        d_energies : (K, N) eV; d_forces : (K, N, 3) eV/Å; d_virial : (K, M, 3, 3) eV — member deviations

        Raises
        ------
        ValueError
            ``dweights`` / ``de0`` of shapes that do not match ``weights``, or K = 0.
        MinbasisError
            The backend has no committee kernel (the GPU).
        """
        return self._committee(plan, batch, weights, e0, dweights, de0)

    # -- autodiff operators over pair vectors ----------------------------------------------------
    def pair_features(self, plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray) -> Any:
        """Features B (N, F) float64 of the batch's centres at pair vectors ``pair_vec`` (P, 3) in Å.

        Raises
        ------
        MinbasisError
            ``pair_vec`` of the wrong shape; the backend has no autodiff operators (the GPU).
        """
        return self._pair_features(plan, batch, pair_vec)

    def pair_vjp(self, plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray, cotangent: np.ndarray) -> Any:
        """Vector–Jacobian product ḡ_p = Σ_{i,f} Ḡ_{i,f} ∂B_{i,f}/∂r_p, float64 (P, 3) in 1/Å per unit of Ḡ.

        ``pair_vec`` (P, 3) float64 in Å, ``cotangent`` Ḡ (N, F) float64.

        Raises
        ------
        MinbasisError
            Arrays of the wrong shape; the backend has no autodiff operators (the GPU).
        """
        return self._pair_vjp(plan, batch, pair_vec, cotangent)

    def pair_jvp(self, plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray, tangent: np.ndarray,
                 values: bool = True) -> tuple[Any | None, Any]:
        """Features (N, F) (None unless ``values``) and δB = Σ_p ∂B/∂r_p · δr_p (N, F), float64, for a
        tangent δr (P, 3) in Å.

        Raises
        ------
        MinbasisError
            Arrays of the wrong shape; the backend has no autodiff operators (the GPU).
        """
        return self._pair_jvp(plan, batch, pair_vec, tangent, values)

    def pair_hvp(self, plan: EvaluationPlan, batch: Batch, pair_vec: np.ndarray, cotangent: np.ndarray,
                 tangent: np.ndarray) -> tuple[Any, Any]:
        """The VJP g (P, 3) and its derivative along δr, dg_p = Σ_q ∂²(Ḡ · B)/∂r_p ∂r_q · δr_q (P, 3) in
        1/Å², float64.

        Raises
        ------
        MinbasisError
            Arrays of the wrong shape; the backend has no autodiff operators (the GPU).
        """
        return self._pair_hvp(plan, batch, pair_vec, cotangent, tangent)

    # -- hooks of the implementations (arguments checked by the public methods) -------------------
    @abstractmethod
    def _features(self, plan, batch, gradients, dtype):
        """(X, J or None) of :meth:`features`."""

    @abstractmethod
    def _sample_gradients(self, plan, batch, strain, dtype, out):
        """(X, samples, grads, strain or None) of :meth:`sample_gradients`."""

    @abstractmethod
    def _linear_energy_forces(self, plan, batch, weights, e0, folded, dtype):
        """(energies, forces, virial) of :meth:`linear_energy_forces`."""

    def _unsupported(self, what: str) -> MinbasisError:
        return MinbasisError(f"{what} is not available on device {self.name!r}; use device='cpu'")

    def _committee(self, plan, batch, weights, e0, dweights, de0):
        raise self._unsupported("the committee linear model")

    def _pair_features(self, plan, batch, pair_vec):
        raise self._unsupported("pair_features")

    def _pair_vjp(self, plan, batch, pair_vec, cotangent):
        raise self._unsupported("pair_vjp")

    def _pair_jvp(self, plan, batch, pair_vec, tangent, values):
        raise self._unsupported("pair_jvp")

    def _pair_hvp(self, plan, batch, pair_vec, cotangent, tangent):
        raise self._unsupported("pair_hvp")


class CpuBackend(KernelBackend):
    """The Numba kernels on the host: float64, NumPy arrays, every operation.

    A thin wrapper of :func:`minbasis.kernels.evaluate.features`,
    :func:`~minbasis.kernels.evaluate.sample_gradients`,
    :func:`~minbasis.kernels.evaluate.linear_energy_forces`,
    :func:`minbasis.kernels.committee.linear_energy_forces_committee` and the operators of
    :mod:`minbasis.kernels.autodiff`; see :class:`KernelBackend` for shapes, units and errors.
    """

    name = "cpu"
    dtypes = (_FLOAT64,)
    dtype_hint = "; float32 is a GPU option (device='gpu')"
    operations = KernelBackend.operations | {"linear_energy_forces_committee", "pair_features", "pair_vjp", "pair_jvp",
                                             "pair_hvp"}
    feature_batch_bytes = 256 * 1024**2
    gradient_batch_factor = 1.0

    def _features(self, plan, batch, gradients, dtype):
        return evaluate.features(plan, batch, gradients=gradients)

    def _sample_gradients(self, plan, batch, strain, dtype, out):
        return evaluate.sample_gradients(plan, batch, strain=strain, out=out)

    def _linear_energy_forces(self, plan, batch, weights, e0, folded, dtype):
        return evaluate.linear_energy_forces(plan, batch, weights, e0, folded=folded)

    def _committee(self, plan, batch, weights, e0, dweights, de0):
        return committee.linear_energy_forces_committee(plan, batch, weights, e0, dweights, de0)

    def _pair_features(self, plan, batch, pair_vec):
        return autodiff.pair_features(plan, batch, pair_vec)

    def _pair_vjp(self, plan, batch, pair_vec, cotangent):
        return autodiff.pair_vjp(plan, batch, pair_vec, cotangent)

    def _pair_jvp(self, plan, batch, pair_vec, tangent, values):
        return autodiff.pair_jvp(plan, batch, pair_vec, tangent, values=values)

    def _pair_hvp(self, plan, batch, pair_vec, cotangent, tangent):
        return autodiff.pair_hvp(plan, batch, pair_vec, cotangent, tangent)


class GpuBackend(KernelBackend):
    """The array-module kernels of :mod:`minbasis.kernels.gpu` on CuPy (the current CUDA device).

    Features, sample gradients and the linear model, in float64 or float32 (every stage,
    accumulations included); results are CuPy arrays. The committee and the autodiff operators
    raise :class:`~minbasis.errors.MinbasisError` (CPU only). See :class:`KernelBackend` for
    shapes, units and errors.

    Parameters
    ----------
    name : str
        "gpu" (CuPy); the private testing value "numpy-reference" runs the same code with NumPy.
    chunk_bytes : int, optional
        Bound on the temporaries of one chunk of centres (:func:`~minbasis.kernels.gpu.xp_features`);
        default a quarter of the free device memory, at most 8 GiB (64 MiB with NumPy).

    Raises
    ------
    MinbasisError
        A ``name`` other than "gpu" or "numpy-reference".

    Constructing the backend imports nothing: CuPy is imported, and a missing package or CUDA
    device reported as a ``MinbasisError``, by the first operation or by :meth:`require`.
    """

    dtypes = (_FLOAT64, _FLOAT32)
    feature_batch_bytes = 1024**3
    gradient_batch_factor = 4.0

    def __init__(self, name: str = "gpu", chunk_bytes: int | None = None) -> None:
        if name not in ("gpu", "numpy-reference"):
            raise MinbasisError(f"GpuBackend serves 'gpu' (or the testing value 'numpy-reference'), not {name!r}")
        self.name = name
        self.chunk_bytes = chunk_bytes
        self._xp = None

    def require(self) -> None:
        """Import CuPy and check for a CUDA device.

        Raises
        ------
        MinbasisError
            CuPy cannot be imported (``pip install 'minbasis[gpu]'``, i.e. cupy-cuda12x) or no
            CUDA device is usable.
        """
        self.xp  # noqa: B018 - resolves the array module, raising when it is missing

    @property
    def xp(self) -> Any:
        """:mod:`cupy` (:mod:`numpy` for "numpy-reference"), imported on first use (errors: :meth:`require`)."""
        if self._xp is None:
            from .gpu import array_module

            self._xp = array_module(self.name)
        return self._xp

    def to_numpy(self, a: Any) -> np.ndarray | None:
        """``a`` copied to the host (``.get()`` of a CuPy array; NumPy arrays and None pass through)."""
        from .gpu import to_numpy

        return to_numpy(a)

    def _features(self, plan, batch, gradients, dtype):
        from .gpu import xp_features

        return xp_features(plan, batch, self.xp, dtype, gradients=gradients, chunk_bytes=self.chunk_bytes)

    def _sample_gradients(self, plan, batch, strain, dtype, out):
        from .gpu import xp_sample_gradients

        return xp_sample_gradients(plan, batch, self.xp, dtype, strain=strain, chunk_bytes=self.chunk_bytes, out=out)

    def _linear_energy_forces(self, plan, batch, weights, e0, folded, dtype):
        from .gpu import xp_linear_energy_forces

        return xp_linear_energy_forces(plan, batch, weights, e0, self.xp, dtype, chunk_bytes=self.chunk_bytes)


_CPU = CpuBackend()


def get_backend(device: str = "cpu") -> KernelBackend:
    """The kernel backend of a ``device`` name.

    Parameters
    ----------
    device : str
        "cpu" (the Numba kernels) or "gpu" / "cuda" (CuPy on the current CUDA device).

    Returns
    -------
    KernelBackend
        The shared :class:`CpuBackend`, or a new :class:`GpuBackend` (which imports CuPy only when
        first used: call :meth:`~KernelBackend.require` to fail before any work).

    Raises
    ------
    MinbasisError
        (a ``ValueError``) an unknown device name.
    """
    if device == "cpu":
        return _CPU
    if device in ("gpu", "cuda"):
        return GpuBackend("gpu")
    if device == "numpy-reference":  # private: the GPU code path with NumPy arrays (tests)
        return GpuBackend("numpy-reference")
    raise MinbasisError(f"unknown device {device!r}: use 'cpu' (Numba kernels) or 'gpu' / 'cuda' (CuPy)")
