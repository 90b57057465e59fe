"""Shallow neural-network potentials on minbasis descriptors (docs/theory/fitting.md#shallow-neural-networks).

Model (Behler and Parrinello, Phys. Rev. Lett. 98, 146401, 2007: one network per chemical
species, atomic energies summed)::

    E = Σ_i [ E0(Z_i) + s · NN_{Z_i}(x_i) ],   x_i = (B_i − μ_{Z_i}) / σ_{Z_i}

B_i are the features of any :class:`~minbasis.Basis` (typically the minimal, functionally
independent basis, docs/theory/completeness.md), standardised per species with the training mean μ and
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
1992); it is computed exactly (:func:`minbasis.fit.network.param_gradient`).

Loss (the rows of the linear fit, :mod:`minbasis.fit.linear`, squared and averaged over the
M training structures)::

    L = (1/M) Σ_m w_ct(m)² [ w_E² ((E_m − Ê_m)/n_m)² + w_F² Σ_{k∈m} |F_k − F̂_k|²
                              + w_S² |V_m (σ_m − σ̂_m)|² / n_m² ] + λ Σ_layers |W|²

with weights ``energy_weight`` (1/(eV/atom)), ``forces_weight`` (Å/eV), ``stress_weight``
(1/(eV/atom)) and the ``config_type_weights``. Its gradient with respect to the network
parameters is analytic: forward pass, reverse pass for ∂NN/∂x, then reverse-mode through the
forward-mode directional derivative ∂NN/∂x · u ("double back-propagation"); it is checked
against finite differences in the tests.

The network math (forward pass, input gradient, double back-propagation) is
:mod:`minbasis.fit.network` (one head, one trunk per species); the optimisation is
:func:`minbasis.fit.trainer.train`: scipy's L-BFGS-B on the full training set (default), or
Adam (Kingma and Ba, ICLR 2015) on mini-batches of structures, with early stopping: every
``validate_every`` iterations (L-BFGS) or epochs (Adam) the loss without the λ term is
evaluated on a validation split; the parameters with the lowest validation loss are kept and
training stops after ``patience`` checks without improvement. Unless a validation list is
given, the split is :func:`minbasis.fit.trainer.validation_split` (the first
``round(validation_fraction · M)`` structures of ``numpy.random.default_rng(validation_seed)
.permutation(M)``, at least one; none for M < 4). Initial weights are drawn from
``default_rng(seed)``, so a fit is reproducible for a given machine and library versions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis, require_basis
from ..errors import LabelError, MinbasisError
from ..kernels import as_atoms_list
from .atomic import (AtomicEnergyModel, DescriptorSet, check_finite, fit_e0, fit_standardiser, forces_from_gradients,
                     gradient_adjoint, labels_weights)
from .data import DEFAULT_WEIGHTS, Labels, get_labels, matrix_to_voigt
from .fileio import load_model_file, read_model_meta, write_model_file
from .network import (ACTIVATIONS, Architecture, head_output, input_gradient, param_gradient, trunk_forward)
from .trainer import NetworkFitConfig, blas_threads, output_scale, train, validation_split

__all__ = ["MLPFitConfig", "MLPModel", "fit_mlp", "mlp_loss", "ACTIVATIONS", "OPTIMIZERS"]

OPTIMIZERS = ("lbfgs", "adam")


# -- configuration -----------------------------------------------------------------------------------
@dataclass
class MLPFitConfig(NetworkFitConfig):
    """Architecture, loss weights, optimiser and early stopping of an MLP fit (module docstring).

    Attributes
    ----------
    activation, l2, max_iter, validation_fraction, validation_seed, validate_every, patience, seed, cache_bytes
        As :class:`~minbasis.fit.trainer.NetworkFitConfig` (defaults silu, 1e-6, 3000, 0.1, 0, 10, 50,
        0, 2 GiB). Patience 50 checks: L-BFGS validation curves have plateaus of a few hundred
        iterations after which they fall again, so a short patience stops too early.
    hidden : tuple of int
        Widths of the 1 or 2 hidden layers, e.g. ``(64,)`` or ``(64, 64)``.
    linear_term : bool
        Add a linear skip term w_lin · x to each network, initialised (with E0) by the Bayesian-
        ridge fit of the same rows on the standardised features; the hidden layers then start
        from, and learn a correction to, the linear model on the same features.
    energy_weight, forces_weight, stress_weight : float
        Per-observable weights as in :class:`~minbasis.fit.linear.LinearFitConfig` (0 drops one).
    config_type_weights : dict str → float
        Extra factor per ``atoms.info["config_type"]``.
    optimizer : str
        ``"lbfgs"`` (scipy L-BFGS-B, full batch) or ``"adam"`` (mini-batches; seed + 1 orders them).
    learning_rate, batch_size : float, int
        Adam step size and structures per mini-batch.
    e0 : dict str → float or None
        Isolated-atom energies, eV; None fits them by least squares on composition.
    blas_threads : int or None
        BLAS threads during training (threadpoolctl; None leaves them alone). The matrices of a
        shallow network are small, and a multi-threaded BLAS on a loaded machine can be many
        times slower than one thread (measured 3.7× on a 2-core machine at load 5).
    """

    hidden: tuple = (64,)
    linear_term: bool = False
    energy_weight: float = DEFAULT_WEIGHTS["energy"]
    forces_weight: float = DEFAULT_WEIGHTS["forces"]
    stress_weight: float = DEFAULT_WEIGHTS["stress"]
    config_type_weights: dict = field(default_factory=dict)
    optimizer: str = "lbfgs"
    learning_rate: float = 1e-3
    batch_size: int = 16
    e0: dict | None = None
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        """Validate every field.

        Raises
        ------
        MinbasisError
            Bad architecture, activation, optimiser, weights or split settings.
        """
        super().__post_init__()
        self.hidden = tuple(int(h) for h in (self.hidden if not isinstance(self.hidden, int) else (self.hidden,)))
        if not 1 <= len(self.hidden) <= 2 or min(self.hidden) < 1:
            raise MinbasisError(f"hidden must list 1 or 2 positive layer widths, e.g. (64,) or (64, 64); got {self.hidden}")
        if self.optimizer not in OPTIMIZERS:
            raise MinbasisError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        for name in ("energy_weight", "forces_weight", "stress_weight", "learning_rate"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise MinbasisError(f"{name} must be a finite number >= 0, got {v}")
        if int(self.batch_size) < 1:
            raise MinbasisError(f"batch_size must be >= 1, got {self.batch_size}")


# -- the network: a one-head, one-trunk minbasis.fit.network.Architecture --------------------------
# MLPModel.params holds the network's arrays without the leading head/trunk axis of length 1:
#   W_1 (C, F, H_1), b_1 (C, H_1), [W_2 (C, H_1, H_2), b_2 (C, H_2)], w_out (C, H_L), b_out (C,), [w_lin (C, F)]
def _architecture(n_species: int, n_features: int, hidden: Sequence[int] = (), linear: bool = False,
                  params: Sequence[np.ndarray] | None = None) -> Architecture:
    """The one-head :class:`~minbasis.fit.network.Architecture` of an MLPModel: from ``hidden`` and
    ``linear``, or read off a parameter list (an odd number of arrays has a linear term)."""
    if params is not None:
        linear = len(params) % 2 == 1
        n_hidden = (len(params) - (3 if linear else 2)) // 2
        hidden = tuple(int(params[2 * l].shape[-1]) for l in range(n_hidden))
    return Architecture(n_species, n_features, tuple(hidden), linear_term=bool(linear))


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
    arch = _architecture(len(e0), X.shape[1], params=params)
    arrays = [p[None] for p in params]
    E = np.empty(len(ch))
    g = np.zeros_like(X)
    for c in range(len(e0)):
        idx = np.flatnonzero(ch == c)
        if not len(idx):
            continue
        hidden = arch.hidden_of(arrays, 0, c)
        w, bo, v = arch.head_of(arrays, 0, c)
        trunk = trunk_forward(hidden, (X[idx] - mean[c]) / std[c], activation)
        E[idx] = e0[c] + scale * head_output(trunk, w, bo, v)
        g[idx] = scale * input_gradient(hidden, trunk, w, v) / std[c]
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

    #: Model kind in files and in :mod:`minbasis.fit.registry`.
    kind: ClassVar[str] = "mlp"

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
        require_basis(self.basis)
        if self.activation not in ACTIVATIONS:
            raise MinbasisError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        C, F = len(self.basis.species), self.basis.n_features
        self.params = [np.ascontiguousarray(p, dtype=np.float64) for p in self.params]
        if len(self.params) not in (4, 5, 6, 7):
            raise MinbasisError(f"params must hold 4 or 6 arrays (one or two hidden layers), plus one for a linear "
                                f"term; got {len(self.params)}")
        arch = _architecture(C, F, params=self.params)
        hidden = arch.hidden
        expected = [s[1:] for s in arch.shapes]
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
        return _architecture(len(self.basis.species), self.basis.n_features, params=self.params).hidden

    @property
    def linear_term(self) -> bool:
        """Whether the networks have a linear skip term w_lin · x."""
        return len(self.params) % 2 == 1

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
        """The arrays of the model file: p0, p1, … (params), mean, std, e0, scale (1,)."""
        arrays = {f"p{k}": p for k, p in enumerate(self.params)}
        arrays.update(mean=self.mean, std=self.std, e0=self.e0, scale=np.asarray([self.scale]))
        return arrays

    def save(self, path: str | os.PathLike) -> None:
        """Write the model (basis included) as a versioned, hashed ``.npz`` (kind ``"mlp"``), atomically
        (:func:`minbasis.fit.fileio.write_model_file`).

        Raises
        ------
        OSError
            The file cannot be written.
        """
        write_model_file(path, self.kind, self.basis, self._arrays(),
                         {"activation": self.activation, "n_params": len(self.params)}, self.info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MLPModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileFormatError
            Missing or corrupt file, another format version or kind, or content hash mismatch.
        """
        meta, _ = read_model_meta(path)
        n = int(meta.get("hyper", {}).get("n_params", 0)) if isinstance(meta.get("hyper"), dict) else 0
        return load_model_file(path, cls.kind, [f"p{k}" for k in range(n)] + ["mean", "std", "e0", "scale"],
                               lambda basis, a, hyper, info: cls(
                                   basis=basis, params=[a[f"p{k}"] for k in range(n)], mean=a["mean"], std=a["std"],
                                   scale=float(a["scale"].ravel()[0]), e0=a["e0"],
                                   activation=hyper.get("activation", "silu"), info=info))


# -- training ----------------------------------------------------------------------------------------
class _Objective:
    """Loss and analytic gradient of an MLP on a :class:`DescriptorSet` (module docstring)."""

    def __init__(self, data: DescriptorSet, labels: Labels, cfg: MLPFitConfig, arch: Architecture, mean, std, scale,
                 e0, n_norm: int):
        self.data, self.cfg, self.arch = data, cfg, arch
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
        arch = self.arch
        params = arch.unpack(theta)
        grads = [np.zeros(s) for s in arch.shapes] if gradient else None
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
                hidden = arch.hidden_of(params, 0, c)
                w, bo, v = arch.head_of(params, 0, c)
                trunk = trunk_forward(hidden, x, cfg.activation)
                E_at[idx] = self.e0[c] + self.scale * head_output(trunk, w, bo, v)
                gB[idx] = self.scale * input_gradient(hidden, trunk, w, v) / self.std[c]
                cache[c] = (idx, hidden, w, v, trunk)
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
                L = len(arch.hidden)
                for c, (idx, hidden, w, v, trunk) in cache.items():
                    ybar = self.scale * ybar_atoms[idx]
                    u = self.scale * gbar[idx] / self.std[c]
                    gh, (gw,) = param_gradient(hidden, trunk, [(w, v is not None, ybar, u)])
                    for k in range(2 * L):
                        grads[k][0, c] += gh[k]
                    grads[2 * L][0, c] += gw.w
                    grads[2 * L + 1][0, c] += gw.bo
                    if v is not None:
                        grads[-1][0, c] += gw.v
        loss = parts["energy"] + parts["forces"] + parts["stress"]
        if l2 and cfg.l2 > 0:  # weight matrices, w_out, w_lin (not biases)
            parts["l2"] = arch.l2_penalty(params, cfg.l2, grads)
            loss += parts["l2"]
        return loss, (arch.pack(grads) if gradient else None), parts


def _linear_start(data: DescriptorSet, labels: Labels, cfg: MLPFitConfig, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Linear term (C, F) in eV per standardised feature and E0 (C,) from a Bayesian-ridge fit of
    the training rows on the standardised features (degree-1 polynomial features)."""
    from .linear import LinearFitConfig, solve_equations
    from .poly import PolynomialFeatures, _poly_equations

    lcfg = LinearFitConfig(energy_weight=cfg.energy_weight, forces_weight=cfg.forces_weight,
                           stress_weight=cfg.stress_weight, config_type_weights=dict(cfg.config_type_weights),
                           e0=cfg.e0)
    eq = _poly_equations(data, labels, lcfg, PolynomialFeatures(data.n_features, 1), mean, std)
    coef, e0_fit, _ = solve_equations(eq, lcfg)
    C = data.n_channels
    if cfg.e0 is not None:
        e0 = np.array([float(cfg.e0[s]) for s in data.basis.species])
    else:
        e0 = e0_fit if len(e0_fit) else np.zeros(C)
    return coef.reshape(C, data.n_features), e0


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
    with blas_threads(cfg.blas_threads):
        return _fit_mlp(basis, atoms_or_list, energy_key, forces_key, stress_key, cfg, validation, progress)


def _fit_mlp(basis, atoms_or_list, energy_key, forces_key, stress_key, cfg: MLPFitConfig, validation, progress):
    t_start = time.perf_counter()
    atoms_list = as_atoms_list(atoms_or_list)
    if validation is None:
        val_idx, fit_idx = validation_split(len(atoms_list), cfg.validation_fraction, cfg.validation_seed)
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
    resid = None
    if use_e and not use_f:  # the energy spread sets the output unit only without forces
        resid = (labels.energy - np.array([e0[data.channels[data.atom_ptr[m]:data.atom_ptr[m + 1]]].sum()
                                           for m in range(len(fit_list))])) / np.diff(data.atom_ptr)
    scale = output_scale(np.concatenate(labels.forces) if use_f else None, resid, np.diff(data.atom_ptr))
    arch = _architecture(C, F, cfg.hidden, cfg.linear_term)
    theta = arch.init(cfg.seed)
    if cfg.linear_term:
        w_lin, e0 = _linear_start(data, labels, cfg, mean, std)
        arch.unpack(theta)[-1][0] = w_lin / scale
    obj = _Objective(data, labels, cfg, arch, mean, std, scale, e0, len(fit_list))
    val_obj = None
    if val_list:
        val_labels = get_labels(val_list, energy_key, forces_key, stress_key)
        val_data = DescriptorSet(basis, val_list, strain=use_s, cache_bytes=cfg.cache_bytes, progress=False)
        val_obj = _Objective(val_data, val_labels, cfg, arch, mean, std, scale, e0, len(val_list))

    def batch_loss(th, ci):
        c = data.chunk(ci)
        loss, grad, _ = obj(th, chunks=[ci], norm=1.0 / c.n_structures)
        return loss * c.n_structures / len(fit_list), grad

    res = train(obj, theta, max_iter=cfg.max_iter, validate_every=cfg.validate_every, patience=cfg.patience,
                val_loss=(lambda th: val_obj(th, gradient=False, l2=False)[0]) if val_obj is not None else None,
                optimizer=cfg.optimizer, batch_loss=batch_loss, n_batches=len(data), learning_rate=cfg.learning_rate,
                batch_seed=cfg.seed + 1, progress=f"MLP {cfg.optimizer}" if progress else None)
    final = res.theta
    params = [p[0] for p in arch.unpack(final)]
    info = {"model": "mlp", "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
            "history": res.history, "best_iteration": res.best_iteration, "n_iter": res.n_iter,
            "stopped_early": res.stopped_early, "optimizer_message": res.message,
            "best_val_loss": res.best_val_loss,
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
    arch = _architecture(len(model.basis.species), model.basis.n_features, params=model.params)
    obj = _Objective(data, labels, cfg, arch, model.mean, model.std, model.scale, model.e0, len(atoms_list))
    loss, _, parts = obj(arch.pack(model.params), gradient=False, l2=False)
    return {"loss": float(loss), **{k: float(v) for k, v in parts.items() if k != "l2"}}
