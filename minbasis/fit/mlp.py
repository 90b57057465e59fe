"""Shallow neural-network potentials on minbasis descriptors (design.md 4, "Shallow NN").

Model (Behler and Parrinello, Phys. Rev. Lett. 98, 146401, 2007: one network per chemical
species, atomic energies summed)::

    E = Σ_i [ E0(Z_i) + s · NN_{Z_i}(x_i) ],   x_i = (B_i − μ_{Z_i}) / σ_{Z_i}

B_i are the features of any :class:`~minbasis.Basis` (typically the minimal, functionally
independent basis, design.md 3.4), standardised per species with the training mean μ and
standard deviation σ; NN_Z is a multilayer perceptron with one or two hidden layers (tanh or
SiLU) and a linear output; s (eV) is a fixed output unit (the RMS force component of the
training labels times 1 Å, or the spread of per-atom energies when there are no forces).
E0 is fitted by least squares on composition before training (as the linear fit does) or
given as isolated-atom energies.

Forces follow by the chain rule through the descriptor gradients,
F_k = −Σ_{(i,k)} ∂E_i/∂B_i · ∂B_i/∂r_k, and stress through the strain gradients
(σ = (1/V) Σ_i ∂E_i/∂B_i · ∂B_i/∂ε). For training, ∂B/∂r is computed once for the training
set (:class:`~minbasis.fit.atomic.DescriptorSet`, memory-bounded); for prediction it is never
built (:func:`~minbasis.fit.atomic.predict_atomic`).

The parameter gradient of the force loss needs the derivative of ∂NN/∂x with respect to
the weights ("double back-propagation", Drucker and Le Cun, IEEE Trans. Neural Netw. 3, 991,
1992); it is computed exactly, as described below.

Loss (the rows of the linear fit, :mod:`minbasis.fit.linear`, squared and averaged over the
M training structures)::

    L = (1/M) Σ_m w_ct(m)² [ w_E² ((E_m − Ê_m)/n_m)² + w_F² Σ_{k∈m} |F_k − F̂_k|²
                              + w_S² |V_m (σ_m − σ̂_m)|² / n_m² ] + λ Σ_layers |W|²

with weights ``energy_weight`` (1/(eV/atom)), ``forces_weight`` (Å/eV), ``stress_weight``
(1/(eV/atom)) and the ``config_type_weights``. Its gradient with respect to the network
parameters is analytic: forward pass, reverse pass for ∂NN/∂x, then reverse-mode through the
forward-mode directional derivative ∂NN/∂x · u ("double back-propagation"); it is checked
against finite differences in the tests.

Optimisers: scipy's L-BFGS-B on the full training set (default), or Adam (Kingma and Ba,
ICLR 2015) on mini-batches of structures. Early stopping: every ``validate_every`` iterations
(L-BFGS) or epochs (Adam) the loss without the λ term is evaluated on a validation split; the
parameters with the lowest validation loss are kept and training stops after ``patience``
checks without improvement. Unless a validation list is given, the split takes the first
``round(validation_fraction · M)`` structures of ``numpy.random.default_rng(validation_seed)
.permutation(M)`` (at least one when the fraction is > 0 and M ≥ 2), the convention of
``benchmarks/accuracy.py``. Initial weights are drawn from ``default_rng(seed)``, so a fit is
reproducible for a given machine and library versions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..errors import LabelError, MinbasisError
from ..kernels import as_atoms_list
from .atomic import (AtomicEnergyModel, DescriptorSet, check_finite, fit_e0, fit_standardiser, forces_from_gradients, gradient_adjoint,
                     labels_weights, read_model_file, write_model_file)
from .data import Labels, get_labels, matrix_to_voigt

__all__ = ["MLPFitConfig", "MLPModel", "fit_mlp", "mlp_loss", "ACTIVATIONS", "OPTIMIZERS"]

ACTIVATIONS = ("tanh", "silu")
OPTIMIZERS = ("lbfgs", "adam")


# -- activations -----------------------------------------------------------------------------------
def _activation(name: str, a: np.ndarray, order: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """φ(a), φ'(a) and (order 2) φ''(a) of tanh or SiLU (a · sigmoid(a))."""
    if name == "tanh":
        t = np.tanh(a)
        d1 = 1.0 - t * t
        return t, d1, (-2.0 * t * d1 if order > 1 else None)
    sig = 0.5 * (1.0 + np.tanh(0.5 * a))  # overflow-free sigmoid
    d1 = sig * (1.0 + a * (1.0 - sig))
    d2 = sig * (1.0 - sig) * (2.0 + a * (1.0 - 2.0 * sig)) if order > 1 else None
    return a * sig, d1, d2


# -- configuration -----------------------------------------------------------------------------------
@dataclass
class MLPFitConfig:
    """Architecture, loss weights, optimiser and early stopping of an MLP fit (module docstring).

    Attributes
    ----------
    hidden : tuple of int
        Widths of the 1 or 2 hidden layers, e.g. ``(64,)`` or ``(64, 64)``.
    activation : str
        ``"tanh"`` or ``"silu"``.
    linear_term : bool
        Add a linear skip term w_lin · x to each network, initialised (with E0) by the Bayesian-
        ridge fit of the same rows on the standardised features; the hidden layers then start
        from, and learn a correction to, the linear model on the same features.
    energy_weight, forces_weight, stress_weight : float
        Per-observable weights as in :class:`~minbasis.fit.linear.LinearFitConfig` (0 drops one).
    config_type_weights : dict str → float
        Extra factor per ``atoms.info["config_type"]``.
    l2 : float
        Weight decay λ on the weight matrices (not the biases), in units of the loss.
    optimizer : str
        ``"lbfgs"`` (scipy L-BFGS-B, full batch) or ``"adam"`` (mini-batches).
    max_iter : int
        L-BFGS iterations or Adam epochs.
    learning_rate, batch_size : float, int
        Adam step size and structures per mini-batch.
    validation_fraction, validation_seed : float, int
        Seeded validation split for early stopping (0 disables it; the final parameters are kept).
    validate_every, patience : int
        Iterations/epochs between validation checks; checks without improvement before stopping
        (default 10 and 50: L-BFGS validation curves have plateaus of a few hundred iterations
        after which they fall again, so a short patience stops too early).
    seed : int
        Seed of the initial weights (and of the Adam batch order).
    e0 : dict str → float or None
        Isolated-atom energies, eV; None fits them by least squares on composition.
    cache_bytes : float
        Memory budget for the cached descriptor gradients (bytes); beyond it chunks are recomputed.
    blas_threads : int or None
        BLAS threads during training (threadpoolctl; None leaves them alone). The matrices of a
        shallow network are small, and a multi-threaded BLAS on a loaded machine can be many
        times slower than one thread (measured 3.7× on a 2-core machine at load 5).
    """

    hidden: tuple = (64,)
    activation: str = "silu"
    linear_term: bool = False
    energy_weight: float = 30.0
    forces_weight: float = 1.0
    stress_weight: float = 30.0
    config_type_weights: dict = field(default_factory=dict)
    l2: float = 1e-6
    optimizer: str = "lbfgs"
    max_iter: int = 3000
    learning_rate: float = 1e-3
    batch_size: int = 16
    validation_fraction: float = 0.1
    validation_seed: int = 0
    validate_every: int = 10
    patience: int = 50
    seed: int = 0
    e0: dict | None = None
    cache_bytes: float = 2 * 1024**3
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        """Validate every field.

        Raises
        ------
        MinbasisError
            Bad architecture, activation, optimiser, weights or split settings.
        """
        self.hidden = tuple(int(h) for h in (self.hidden if not isinstance(self.hidden, int) else (self.hidden,)))
        if not 1 <= len(self.hidden) <= 2 or min(self.hidden) < 1:
            raise MinbasisError(f"hidden must list 1 or 2 positive layer widths, e.g. (64,) or (64, 64); got {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise MinbasisError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        if self.optimizer not in OPTIMIZERS:
            raise MinbasisError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        for name in ("energy_weight", "forces_weight", "stress_weight", "l2", "learning_rate", "cache_bytes"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise MinbasisError(f"{name} must be a finite number >= 0, got {v}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise MinbasisError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        for name in ("max_iter", "batch_size", "validate_every", "patience"):
            if int(getattr(self, name)) < 1:
                raise MinbasisError(f"{name} must be >= 1, got {getattr(self, name)}")


# -- the network ------------------------------------------------------------------------------------
# Parameter layout per species (stacked over species in arrays with a leading axis C):
#   W_1 (F, H_1), b_1 (H_1), [W_2 (H_1, H_2), b_2 (H_2)], w_out (H_L), b_out (), [w_lin (F)]
# y(x) = w_out · h_L(x) + b_out [+ w_lin · x]: the optional linear term is a skip connection
# from the standardised features to the output.
def _layout(n_arrays: int) -> tuple[int, bool]:
    """(number of hidden layers, has linear term) of a parameter list of this length."""
    linear = n_arrays % 2 == 1
    return (n_arrays - 3 if linear else n_arrays - 2) // 2, linear


def _shapes(n_channels: int, n_features: int, hidden: Sequence[int], linear: bool = False) -> list[tuple[int, ...]]:
    """Parameter shapes: per hidden layer W (C, in, out), b (C, out); w_out (C, H), b_out (C,); [w_lin (C, F)]."""
    shapes = []
    fan_in = n_features
    for h in hidden:
        shapes += [(n_channels, fan_in, h), (n_channels, h)]
        fan_in = h
    return shapes + [(n_channels, fan_in), (n_channels,)] + ([(n_channels, n_features)] if linear else [])


def _unpack(theta: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    out, k = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(theta[k:k + n].reshape(s))
        k += n
    return out


def _pack(params: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in params])


def _init_params(shapes, seed: int) -> list[np.ndarray]:
    """LeCun-normal weights (variance 1/fan_in), zero biases, output weights scaled by 0.1 (0 with a
    linear term), zero linear term (set by the caller)."""
    rng = np.random.default_rng(seed)
    params = []
    n_hidden, linear = _layout(len(shapes))
    for l in range(n_hidden):
        W, b = shapes[2 * l], shapes[2 * l + 1]
        params += [rng.standard_normal(W) / np.sqrt(W[1]), np.zeros(b)]
    wo, bo = shapes[2 * n_hidden], shapes[2 * n_hidden + 1]
    # with a linear term the output weights start at 0, so the initial model is the linear one
    params += [(0.0 if linear else 0.1) * rng.standard_normal(wo) / np.sqrt(wo[1]), np.zeros(bo)]
    return params + ([np.zeros(shapes[-1])] if linear else [])


def _is_weight(k: int, n_arrays: int) -> bool:
    """True for weight arrays (decayed by l2): W_l, w_out and w_lin; False for biases."""
    n_hidden, linear = _layout(n_arrays)
    return k % 2 == 0 or (linear and k == n_arrays - 1)


def _net_forward(params_c: list[np.ndarray], x: np.ndarray, act: str):
    """Forward pass of one species' network; returns (y (n,), layers [(h_prev, a, φ', φ'')], h_L)."""
    n_hidden, linear = _layout(len(params_c))
    h = x
    layers = []
    for l in range(n_hidden):
        a = h @ params_c[2 * l] + params_c[2 * l + 1]
        hn, d1, d2 = _activation(act, a)
        layers.append((h, a, d1, d2))
        h = hn
    y = h @ params_c[2 * n_hidden] + params_c[2 * n_hidden + 1]
    if linear:
        y = y + x @ params_c[-1]
    return y, layers, h


def _net_input_gradient(params_c, layers) -> np.ndarray:
    """∂y/∂x (n, F) by reverse mode through the cached forward pass."""
    n_hidden, linear = _layout(len(params_c))
    wo = params_c[2 * n_hidden]
    delta = np.broadcast_to(wo, (layers[0][0].shape[0], wo.shape[0]))
    for l in range(n_hidden - 1, -1, -1):
        _, _, d1, _ = layers[l]
        delta = (delta * d1) @ params_c[2 * l].T
    if linear:
        delta = delta + params_c[-1]
    return delta


def _net_param_gradient(params_c, layers, h_last, ybar: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
    """∂/∂θ of Σ_i [ybar_i y_i + (∂y/∂x)(x_i) · u_i] for one species' network.

    Forward-mode tangents (ȧ, ḣ) seeded with u, then reverse mode through both streams
    ("double back-propagation"): for a = h W + b, h' = φ(a) and tangents ȧ = ḣ W, ḣ' = φ'(a) ȧ,
    the adjoints are ā = h̄' φ'(a) + ḣ̄' φ''(a) ȧ, ǡ = ḣ̄' φ'(a), ∂W = hᵀ ā + ḣᵀ ǡ, ∂b = Σ ā.
    """
    n_hidden, linear = _layout(len(params_c))
    hdots = [u]
    adots = []
    hd = u
    for l in range(n_hidden):
        _, _, d1, _ = layers[l]
        ad = hd @ params_c[2 * l]
        adots.append(ad)
        hd = d1 * ad
        hdots.append(hd)
    grads = [None] * len(params_c)
    wo = params_c[2 * n_hidden]
    grads[2 * n_hidden] = ybar @ h_last + hd.sum(axis=0)
    grads[2 * n_hidden + 1] = np.asarray(ybar.sum())
    if linear:
        grads[-1] = ybar @ layers[0][0] + u.sum(axis=0)
    hbar = ybar[:, None] * wo[None, :]
    hdbar = np.broadcast_to(wo, hbar.shape)
    for l in range(n_hidden - 1, -1, -1):
        h_prev, _, d1, d2 = layers[l]
        abar = hbar * d1 + hdbar * d2 * adots[l]
        adbar = hdbar * d1
        grads[2 * l] = h_prev.T @ abar + hdots[l].T @ adbar
        grads[2 * l + 1] = abar.sum(axis=0)
        if l > 0:
            W = params_c[2 * l]
            hbar = abar @ W.T
            hdbar = adbar @ W.T
    return grads


def _per_species(params: list[np.ndarray], c: int) -> list[np.ndarray]:
    return [p[c] for p in params]


def atomic_energy_gradient(params: list[np.ndarray], mean: np.ndarray, std: np.ndarray, scale: float, e0: np.ndarray,
                           activation: str, X: np.ndarray, ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atomic energies and their feature gradients of per-species networks.

    Parameters
    ----------
    params : list of stacked parameter arrays (see :class:`MLPModel`)
    mean, std : (C, F) standardisation; scale : float, eV; e0 : (C,) eV; activation : str
    X : (N, F) raw features; ch : (N,) channel of each atom

    Returns
    -------
    E : (N,) E_i = e0[s_i] + s · NN_{s_i}(x_i), eV
    g : (N, F) ∂E_i/∂B_i, eV per feature unit
    """
    E = np.empty(len(ch))
    g = np.zeros_like(X)
    for c in range(len(e0)):
        idx = np.flatnonzero(ch == c)
        if not len(idx):
            continue
        pc = _per_species(params, c)
        x = (X[idx] - mean[c]) / std[c]
        y, layers, _ = _net_forward(pc, x, activation)
        E[idx] = e0[c] + scale * y
        g[idx] = scale * _net_input_gradient(pc, layers) / std[c]
    return E, g


# -- the fitted model ------------------------------------------------------------------------------
@dataclass
class MLPModel(AtomicEnergyModel):
    """A per-species MLP potential on a minbasis basis (Behler–Parrinello form; module docstring).

    Attributes
    ----------
    basis : Basis
    params : list of arrays
        Per hidden layer l: W_l (C, fan_in, width), b_l (C, width); then w_out (C, H) and
        b_out (C,), C = number of species (one network per centre species); optionally
        w_lin (C, F), a linear skip term y += w_lin · x.
    mean, std : (C, F) float64
        Feature standardisation per species (x = (B − mean) / std).
    scale : float
        Output unit s of the networks, eV.
    e0 : (C,) float64, eV
    activation : str, ``"tanh"`` or ``"silu"``
    info : dict
        Provenance: configuration, history of training and validation losses, best iteration.
    """

    basis: Basis
    params: list
    mean: np.ndarray
    std: np.ndarray
    scale: float
    e0: np.ndarray
    activation: str = "silu"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check shapes and values.

        Raises
        ------
        MinbasisError
            Parameter shapes that do not form a 1–2 hidden-layer network on this basis,
            non-finite values, non-positive std or scale, unknown activation.
        """
        if not isinstance(self.basis, Basis):
            raise TypeError(f"basis must be a minbasis.Basis, got {type(self.basis).__name__}")
        if self.activation not in ACTIVATIONS:
            raise MinbasisError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        C, F = len(self.basis.species), self.basis.n_features
        self.params = [np.ascontiguousarray(p, dtype=np.float64) for p in self.params]
        if len(self.params) not in (4, 5, 6, 7):
            raise MinbasisError(f"params must hold 4 or 6 arrays (one or two hidden layers), plus one for a linear "
                                f"term; got {len(self.params)}")
        n_hidden, linear = _layout(len(self.params))
        hidden = tuple(int(self.params[2 * l].shape[-1]) for l in range(n_hidden))
        expected = _shapes(C, F, hidden, linear)
        got = [p.shape for p in self.params]
        if got != expected:
            raise MinbasisError(f"parameter shapes {got} do not match a network on {F} features for {C} species "
                                f"with hidden widths {hidden} (expected {expected})")
        self.mean = np.ascontiguousarray(self.mean, dtype=np.float64)
        self.std = np.ascontiguousarray(self.std, dtype=np.float64)
        self.e0 = np.ascontiguousarray(self.e0, dtype=np.float64)
        self.scale = float(self.scale)
        if self.mean.shape != (C, F) or self.std.shape != (C, F) or self.e0.shape != (C,):
            raise MinbasisError(f"mean/std must be ({C}, {F}) and e0 ({C},); got {self.mean.shape}, "
                                f"{self.std.shape}, {self.e0.shape}")
        check_finite("MLPModel", self.mean, self.std, self.e0, np.asarray(self.scale), *self.params)
        if (self.std <= 0).any() or self.scale <= 0:
            raise MinbasisError("std and scale must be positive")

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden-layer widths."""
        return tuple(int(self.params[2 * l].shape[-1]) for l in range(_layout(len(self.params))[0]))

    @property
    def linear_term(self) -> bool:
        """Whether the networks have a linear skip term w_lin · x."""
        return _layout(len(self.params))[1]

    @property
    def n_parameters(self) -> int:
        """Number of trained parameters (all species)."""
        return int(sum(p.size for p in self.params))

    def atomic_energies_and_gradients(self, X: np.ndarray, ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-atom energies (N,) eV and ∂E_i/∂B_i (N, F) for raw features X (N, F) of channels ch (N,)."""
        return atomic_energy_gradient(self.params, self.mean, self.std, self.scale, self.e0, self.activation,
                                      np.asarray(X, dtype=np.float64), np.asarray(ch))

    # -- files -------------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"p{k}": p for k, p in enumerate(self.params)}
        arrays.update(mean=self.mean, std=self.std, e0=self.e0, scale=np.asarray([self.scale]))
        return arrays

    def save(self, path: str | os.PathLike) -> None:
        """Write the model (basis included) as a versioned, hashed ``.npz`` (kind ``"mlp"``), atomically."""
        write_model_file(path, "mlp", self.basis, self._arrays(),
                         {"activation": self.activation, "n_params": len(self.params)}, self.info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MLPModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileFormatError
            Missing or corrupt file, another format version or kind, or content hash mismatch.
        """
        from ..errors import FileFormatError
        from .atomic import read_model_meta

        meta, _ = read_model_meta(path)
        n = int(meta.get("hyper", {}).get("n_params", 0)) if isinstance(meta.get("hyper"), dict) else 0
        names = [f"p{k}" for k in range(n)] + ["mean", "std", "e0", "scale"]
        basis, arrays, hyper, info = read_model_file(path, "mlp", names)
        try:
            return cls(basis=basis, params=[arrays[f"p{k}"] for k in range(n)], mean=arrays["mean"],
                       std=arrays["std"], scale=float(arrays["scale"].ravel()[0]), e0=arrays["e0"],
                       activation=hyper.get("activation", "silu"), info=info)
        except (MinbasisError, IndexError, TypeError) as exc:
            raise FileFormatError(f"{path}: {exc}") from exc


# -- training ----------------------------------------------------------------------------------------
class _Objective:
    """Loss and analytic gradient of an MLP on a :class:`DescriptorSet` (module docstring)."""

    def __init__(self, data: DescriptorSet, labels: Labels, cfg: MLPFitConfig, shapes, mean, std, scale, e0,
                 n_norm: int):
        self.data, self.cfg, self.shapes = data, cfg, shapes
        self.mean, self.std, self.scale, self.e0 = mean, std, scale, e0
        self.n_norm = n_norm
        self.C = len(e0)
        self.use_e = labels.energy is not None and cfg.energy_weight > 0
        self.use_f = labels.forces is not None and cfg.forces_weight > 0
        self.use_s = labels.stress is not None and cfg.stress_weight > 0 and data.strain
        self.labels = labels
        self.wct = labels_weights(labels, cfg)
        self.forces = np.concatenate(labels.forces) if self.use_f else None
        self._rows: dict[int, list] = {}

    def _chunk(self, ci: int):
        """Chunk ``ci`` with ``species_rows`` [(atom indices, standardised features)] per species,
        cached while the chunk itself is cached by the DescriptorSet."""
        chunk = self.data.chunk(ci)
        rows = self._rows.get(ci)
        if rows is None:
            rows = []
            for c in range(self.C):
                idx = np.flatnonzero(chunk.ch == c)
                rows.append((idx, (chunk.X[idx] - self.mean[c]) / self.std[c]))
            if self.data._cache[ci] is not None:
                self._rows[ci] = rows
        chunk.species_rows = rows
        return chunk

    def __call__(self, theta: np.ndarray, chunks=None, gradient: bool = True, norm: float | None = None,
                 l2: bool = True) -> tuple[float, np.ndarray | None, dict]:
        """(loss, ∂loss/∂θ or None, parts {"energy", "forces", "stress", "l2"}) over ``chunks``."""
        cfg = self.cfg
        params = _unpack(theta, self.shapes)
        grads = [np.zeros(s) for s in self.shapes] if gradient else None
        norm = 1.0 / self.n_norm if norm is None else norm
        parts = {"energy": 0.0, "forces": 0.0, "stress": 0.0, "l2": 0.0}
        data = self.data
        indices = range(len(data)) if chunks is None else chunks
        for ci in indices:
            ch_ = self._chunk(ci)
            m0 = ch_.start
            m_idx = np.arange(ch_.start, ch_.stop)
            nat = np.diff(ch_.atom_ptr).astype(float)
            a0 = data.atom_ptr[m0]
            n = ch_.n_atoms
            E_at = np.zeros(n)
            gB = np.zeros((n, data.n_features))
            cache = {}
            for c, (idx, x) in enumerate(ch_.species_rows):
                if not len(idx):
                    continue
                pc = _per_species(params, c)
                y, layers, h_last = _net_forward(pc, x, cfg.activation)
                E_at[idx] = self.e0[c] + self.scale * y
                gB[idx] = self.scale * _net_input_gradient(pc, layers) / self.std[c]
                cache[c] = (idx, pc, x, layers, h_last)
            ybar_atoms = np.zeros(n)
            gbar = np.zeros((n, data.n_features))
            w_ct = self.wct[m_idx]
            if self.use_e:
                E = np.bincount(ch_.struct, weights=E_at, minlength=ch_.n_structures)
                rho = cfg.energy_weight * w_ct * (E - self.labels.energy[m_idx]) / nat
                parts["energy"] += norm * float(rho @ rho)
                if gradient:
                    dE = 2.0 * norm * rho * cfg.energy_weight * w_ct / nat
                    ybar_atoms += dE[ch_.struct]
            if self.use_f:
                Fp = forces_from_gradients(ch_.samples, ch_.J, gB, n)
                wf = (cfg.forces_weight * w_ct)[ch_.struct][:, None]
                r = wf * (Fp - self.forces[a0:a0 + n])
                parts["forces"] += norm * float(np.sum(r * r))
                if gradient:
                    gbar -= gradient_adjoint(ch_.samples, ch_.J, 2.0 * norm * wf * r, n)
            if self.use_s:
                ref = self.labels.stress[m_idx]
                has = np.isfinite(ref).all(axis=1)
                if has.any():
                    Vs = np.zeros((ch_.n_structures, 3, 3))
                    np.add.at(Vs, ch_.struct, np.einsum("iabf,if->iab", ch_.S, gB))
                    wv = np.where(has, cfg.stress_weight * w_ct / nat, 0.0)
                    target = np.where(has[:, None], ch_.volume[:, None] * np.nan_to_num(ref), 0.0)
                    rho = wv[:, None] * (matrix_to_voigt(Vs) - target)
                    parts["stress"] += norm * float(np.sum(rho * rho))
                    if gradient:
                        rb = 2.0 * norm * wv[:, None] * rho
                        Ab = np.zeros((ch_.n_structures, 3, 3))
                        Ab[:, 0, 0], Ab[:, 1, 1], Ab[:, 2, 2] = rb[:, 0], rb[:, 1], rb[:, 2]
                        Ab[:, 1, 2] = Ab[:, 2, 1] = 0.5 * rb[:, 3]
                        Ab[:, 0, 2] = Ab[:, 2, 0] = 0.5 * rb[:, 4]
                        Ab[:, 0, 1] = Ab[:, 1, 0] = 0.5 * rb[:, 5]
                        gbar += np.einsum("iabf,iab->if", ch_.S, Ab[ch_.struct])
            if gradient:
                for c, (idx, pc, x, layers, h_last) in cache.items():
                    ybar = self.scale * ybar_atoms[idx]
                    u = self.scale * gbar[idx] / self.std[c]
                    gc = _net_param_gradient(pc, layers, h_last, ybar, u)
                    for k in range(len(grads)):
                        grads[k][c] += gc[k]
        loss = parts["energy"] + parts["forces"] + parts["stress"]
        if l2 and cfg.l2 > 0:
            for k in range(len(params)):
                if _is_weight(k, len(params)):  # weight matrices, w_out, w_lin (not biases)
                    parts["l2"] += cfg.l2 * float(np.sum(params[k] ** 2))
                    if gradient:
                        grads[k] += 2.0 * cfg.l2 * params[k]
            loss += parts["l2"]
        return loss, (_pack(grads) if gradient else None), parts


def _linear_start(data: DescriptorSet, labels: Labels, cfg: MLPFitConfig, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Linear term (C, F) in eV per standardised feature and E0 (C,) from a Bayesian-ridge fit of
    the training rows on the standardised features (degree-1 polynomial features)."""
    from .linear import LinearFitConfig, solve
    from .poly import PolynomialFeatures, _poly_design

    lcfg = LinearFitConfig(energy_weight=cfg.energy_weight, forces_weight=cfg.forces_weight,
                           stress_weight=cfg.stress_weight, config_type_weights=dict(cfg.config_type_weights),
                           e0=cfg.e0)
    dm = _poly_design(data, labels, lcfg, PolynomialFeatures(data.n_features, 1), mean, std)
    coef, e0_fit, _ = solve(dm, lcfg)
    C = data.n_channels
    if cfg.e0 is not None:
        e0 = np.array([float(cfg.e0[s]) for s in data.basis.species])
    else:
        e0 = e0_fit if len(e0_fit) else np.zeros(C)
    return coef.reshape(C, data.n_features), e0


def _validation_split(M: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation indices, training indices), both sorted: the first round(fraction·M) of a seeded permutation."""
    if fraction <= 0 or M < 2:
        return np.zeros(0, dtype=int), np.arange(M)
    perm = np.random.default_rng(seed).permutation(M)
    k = min(max(int(round(fraction * M)), 1), M - 1)
    return np.sort(perm[:k]), np.sort(perm[k:])


def fit_mlp(basis: Basis, atoms_or_list, *, energy_key: str | None = "energy", forces_key: str | None = "forces",
            stress_key: str | None = None, config: MLPFitConfig | None = None,
            validation: Sequence[Atoms] | None = None, progress: bool = False) -> MLPModel:
    """Train a per-species MLP potential (Behler–Parrinello form) on a basis; returns an :class:`MLPModel`.

    Parameters
    ----------
    basis : Basis
        Any basis; the minimal (functionally independent) basis is the intended input.
    atoms_or_list : ase.Atoms or list
        Training structures with labels under the given keys (eV, eV/Å, eV/Å³).
    energy_key, forces_key, stress_key : str or None
        Label keys (None skips an observable), as :func:`~minbasis.fit.data.get_labels`.
    config : MLPFitConfig
    validation : list of ase.Atoms, optional
        Structures for early stopping; by default a seeded split of the training structures
        (``config.validation_fraction``, ``config.validation_seed``).
    progress : bool
        tqdm bars for the descriptor gradients and the optimiser iterations.

    Returns
    -------
    MLPModel with ``info`` holding the configuration, ``history`` (iteration, train and
    validation loss), ``best_iteration``, ``n_iter``, ``stopped_early``, the split sizes and
    the fit time.

    Raises
    ------
    LabelError
        Missing or malformed labels, or nothing to fit.
    StructureError / SpeciesError
        For invalid structures or species outside the basis.
    """
    cfg = config or MLPFitConfig()
    with _blas_threads(cfg.blas_threads):
        return _fit_mlp(basis, atoms_or_list, energy_key, forces_key, stress_key, cfg, validation, progress)


def _blas_threads(n: int | None):
    """Context limiting BLAS threads to ``n`` (no-op for None or without threadpoolctl)."""
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


def _fit_mlp(basis, atoms_or_list, energy_key, forces_key, stress_key, cfg: MLPFitConfig, validation, progress):
    t_start = time.perf_counter()
    atoms_list = as_atoms_list(atoms_or_list)
    if validation is None:
        val_idx, fit_idx = _validation_split(len(atoms_list), cfg.validation_fraction, cfg.validation_seed)
        val_list = [atoms_list[i] for i in val_idx]
        fit_list = [atoms_list[i] for i in fit_idx]
    else:
        val_list = as_atoms_list(validation) if len(validation) else []
        fit_list = atoms_list
    labels = get_labels(fit_list, energy_key, forces_key, stress_key)
    use_e = labels.energy is not None and cfg.energy_weight > 0
    use_f = labels.forces is not None and cfg.forces_weight > 0
    use_s = labels.stress is not None and cfg.stress_weight > 0
    if not (use_e or use_f or use_s):
        raise LabelError("nothing to fit: give energies, forces or stress with a weight > 0")
    C, F = len(basis.species), basis.n_features
    max_structures = cfg.batch_size if cfg.optimizer == "adam" else None
    data = DescriptorSet(basis, fit_list, strain=use_s, cache_bytes=cfg.cache_bytes, max_structures=max_structures,
                         progress=progress)
    mean, std = fit_standardiser(data.features, data.channels, C)
    e0 = fit_e0(fit_list, data.channels, labels.energy if use_e else None, C, cfg.e0, basis.species)
    if use_f:
        scale = float(np.sqrt(np.mean(np.concatenate(labels.forces) ** 2)))
    elif use_e:
        resid = (labels.energy - np.array([e0[data.channels[data.atom_ptr[m]:data.atom_ptr[m + 1]]].sum()
                                           for m in range(len(fit_list))])) / np.diff(data.atom_ptr)
        scale = float(np.std(resid) * np.sqrt(np.mean(np.diff(data.atom_ptr))))
    else:
        scale = 1.0
    scale = scale if np.isfinite(scale) and scale > 1e-12 else 1.0
    shapes = _shapes(C, F, cfg.hidden, cfg.linear_term)
    params0 = _init_params(shapes, cfg.seed)
    if cfg.linear_term:
        w_lin, e0 = _linear_start(data, labels, cfg, mean, std)
        params0[-1] = w_lin / scale
    obj = _Objective(data, labels, cfg, shapes, mean, std, scale, e0, len(fit_list))
    val_obj = None
    if val_list:
        val_labels = get_labels(val_list, energy_key, forces_key, stress_key)
        val_data = DescriptorSet(basis, val_list, strain=use_s, cache_bytes=cfg.cache_bytes, progress=False)
        val_obj = _Objective(val_data, val_labels, cfg, shapes, mean, std, scale, e0, len(val_list))
    theta = _pack(params0)

    history: list[dict] = []
    best = {"val": np.inf, "theta": theta.copy(), "iteration": 0, "since": 0}
    state = {"it": 0}
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(total=cfg.max_iter, desc=f"MLP {cfg.optimizer}", unit="it")

    def check(th: np.ndarray, train_loss: float) -> bool:
        """Record a validation point; True when training should stop."""
        it = state["it"]
        entry = {"iteration": it, "train_loss": float(train_loss)}
        if val_obj is not None:
            v = val_obj(th, gradient=False, l2=False)[0]
            entry["val_loss"] = float(v)
            if v < best["val"]:
                best.update(val=v, theta=th.copy(), iteration=it, since=0)
            else:
                best["since"] += 1
        else:
            best.update(theta=th.copy(), iteration=it)
        history.append(entry)
        if bar is not None:
            bar.set_postfix({k: f"{v:.3g}" for k, v in entry.items() if k != "iteration"}, refresh=False)
        return val_obj is not None and best["since"] >= cfg.patience

    stopped = False
    if cfg.optimizer == "lbfgs":
        from scipy.optimize import minimize

        last = {"loss": np.inf}

        def fun(th):
            loss, grad, _ = obj(th)
            last["loss"] = loss
            return loss, grad

        def callback(intermediate_result):
            # scipy >= 1.11 passes an OptimizeResult; older versions pass the parameter vector
            state["it"] += 1
            if bar is not None:
                bar.update(1)
            if state["it"] % cfg.validate_every == 0:
                x = np.asarray(getattr(intermediate_result, "x", intermediate_result))
                if check(x.copy(), float(getattr(intermediate_result, "fun", last["loss"]))):
                    raise StopIteration

        check(theta, obj(theta, gradient=False)[0])
        try:
            res = minimize(fun, theta, jac=True, method="L-BFGS-B", callback=callback,
                           options={"maxiter": cfg.max_iter, "maxfun": 2 * cfg.max_iter + 20, "maxcor": 20,
                                    "ftol": 1e-14, "gtol": 1e-10})
            theta, message, final_loss = np.asarray(res.x), str(res.message), float(res.fun)
        except StopIteration:  # scipy < 1.11 lets the callback's StopIteration through
            theta, message, final_loss = best["theta"], "early stopping", last["loss"]
        stopped = best["since"] >= cfg.patience
        if not stopped and state["it"] % cfg.validate_every != 0:
            check(theta, final_loss)
    else:
        rng = np.random.default_rng(cfg.seed + 1)
        m1 = np.zeros_like(theta)
        m2 = np.zeros_like(theta)
        b1, b2, eps = 0.9, 0.999, 1e-8
        step = 0
        check(theta, obj(theta, gradient=False)[0])
        message = "max_iter reached"
        for epoch in range(1, cfg.max_iter + 1):
            state["it"] = epoch
            epoch_loss = 0.0
            for ci in rng.permutation(len(data)):
                c = data.chunk(ci)
                loss, grad, _ = obj(theta, chunks=[ci], norm=1.0 / c.n_structures)
                epoch_loss += loss * c.n_structures / len(fit_list)
                step += 1
                m1 = b1 * m1 + (1 - b1) * grad
                m2 = b2 * m2 + (1 - b2) * grad * grad
                theta = theta - cfg.learning_rate * (m1 / (1 - b1**step)) / (np.sqrt(m2 / (1 - b2**step)) + eps)
            if bar is not None:
                bar.update(1)
            if epoch % cfg.validate_every == 0 or epoch == cfg.max_iter:
                if check(theta, epoch_loss):
                    stopped = True
                    message = "early stopping"
                    break
    if bar is not None:
        bar.close()
    final = best["theta"]
    params = _unpack(final, shapes)
    info = {"model": "mlp", "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
            "history": history, "best_iteration": int(best["iteration"]), "n_iter": int(state["it"]),
            "stopped_early": bool(stopped), "optimizer_message": message,
            "best_val_loss": float(best["val"]) if val_obj is not None else None,
            "train_loss": float(obj(final, gradient=False)[0]), "n_train": len(fit_list), "n_validation": len(val_list),
            "energy_key": energy_key, "forces_key": forces_key, "stress_key": stress_key,
            "n_parameters": int(final.size), "fit_seconds": time.perf_counter() - t_start,
            "cached_gradient_bytes": float(data.cached_bytes)}
    return MLPModel(basis=basis, params=[p.copy() for p in params], mean=mean, std=std, scale=scale, e0=e0,
                    activation=cfg.activation, info=info)


def mlp_loss(model: MLPModel, atoms_or_list, *, energy_key: str | None = "energy", forces_key: str | None = "forces",
             stress_key: str | None = None, config: MLPFitConfig | None = None) -> dict:
    """The training loss of ``model`` on labelled structures, without the weight-decay term.

    This is the quantity the early stopping of :func:`fit_mlp` monitors on its validation
    split (module docstring; weights from ``config``, default :class:`MLPFitConfig`).

    Returns
    -------
    dict with ``loss`` and its parts ``energy``, ``forces``, ``stress`` (dimensionless).

    Raises
    ------
    LabelError, StructureError, SpeciesError
        As :func:`fit_mlp`.
    """
    from dataclasses import replace

    cfg = replace(config or MLPFitConfig(), activation=model.activation, hidden=model.hidden)
    atoms_list = as_atoms_list(atoms_or_list)
    labels = get_labels(atoms_list, energy_key, forces_key, stress_key)
    use_s = labels.stress is not None and cfg.stress_weight > 0
    data = DescriptorSet(model.basis, atoms_list, strain=use_s, cache_bytes=cfg.cache_bytes)
    shapes = [p.shape for p in model.params]
    obj = _Objective(data, labels, cfg, shapes, model.mean, model.std, model.scale, model.e0, len(atoms_list))
    loss, _, parts = obj(_pack(model.params), gradient=False, l2=False)
    return {"loss": float(loss), **{k: float(v) for k, v in parts.items() if k != "l2"}}
