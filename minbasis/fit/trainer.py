"""Training of the neural-network models: validation split, output scale, optimisers with early stopping.

One implementation, used by the single-fidelity MLP (:mod:`minbasis.fit.mlp`) and the
multi-fidelity MLP (:mod:`minbasis.fit.mlp_mf`):

* :func:`validation_split`: a seeded hold-out of structures for early stopping. Rule: the
  first ``round(fraction · M)`` structures (at least 1, at most M − 1) of
  ``numpy.random.default_rng(seed).permutation(M)``; no split when ``fraction`` is 0 or M < 4
  (holding out one of 2–3 structures would remove a third or more of the training data and
  leave a validation loss on one structure). Indices are returned sorted.
* :func:`output_scale`: the unit s (eV) of the network outputs, so that the networks fit
  O(1) numbers: the RMS force component of the training labels times 1 Å; without forces, the
  spread of the per-atom energies after E0 times √(mean atoms per structure) (so that s has
  the size of a per-structure energy fluctuation per √atom, as a force times 1 Å has).
* :func:`train`: minimise a loss over a flat parameter vector with scipy's L-BFGS-B (full
  batch; Nocedal, Math. Comput. 35, 773, 1980) or Adam on mini-batches (Kingma and Ba, ICLR
  2015). Early stopping (Prechelt, "Early stopping — but when?", 1998): every
  ``validate_every`` iterations (L-BFGS) or epochs (Adam), and at the start, the validation
  loss is evaluated; the parameters with the lowest validation loss are kept and training
  stops after ``patience`` checks without improvement. Without a validation loss the last
  checked parameters are returned.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import MinbasisError

__all__ = ["NetworkFitConfig", "validation_split", "output_scale", "blas_threads", "TrainResult", "train",
           "MIN_SPLIT_STRUCTURES"]

#: Fewest structures for which :func:`validation_split` holds any out.
MIN_SPLIT_STRUCTURES = 4


@dataclass
class NetworkFitConfig:
    """Settings shared by the neural-network fits (base of :class:`~minbasis.fit.mlp.MLPFitConfig` and
    :class:`~minbasis.fit.mlp_mf.MLPMultiFidelityConfig`, which may change the defaults).

    Attributes
    ----------
    activation : str
        φ of the hidden layers, ``"tanh"`` or ``"silu"`` (:data:`minbasis.fit.network.ACTIVATIONS`).
    l2 : float
        Weight decay λ on the weight matrices (not the biases), in units of the loss.
    max_iter : int
        L-BFGS iterations or Adam epochs (cap).
    validation_fraction, validation_seed : float, int
        Seeded validation split for early stopping (:func:`validation_split`; 0 disables it and
        the final parameters are kept).
    validate_every, patience : int
        Iterations/epochs between validation checks; checks without improvement before stopping.
    seed : int
        Seed of the initial weights (:meth:`minbasis.fit.network.Architecture.init`).
    cache_bytes : float
        Memory budget for the cached descriptor gradients (bytes); beyond it chunks are recomputed.

    Raises
    ------
    MinbasisError
        Unknown activation, negative or non-finite l2 or cache_bytes, counts < 1, fraction outside [0, 1).
    """

    activation: str = "silu"
    l2: float = 1e-6
    max_iter: int = 3000
    validation_fraction: float = 0.1
    validation_seed: int = 0
    validate_every: int = 10
    patience: int = 50
    seed: int = 0
    cache_bytes: float = 2 * 1024**3

    def __post_init__(self) -> None:
        from .network import ACTIVATIONS

        if self.activation not in ACTIVATIONS:
            raise MinbasisError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        for name in ("l2", "cache_bytes"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise MinbasisError(f"{name} must be a finite number >= 0, got {v}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise MinbasisError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        for name in ("max_iter", "validate_every", "patience"):
            if int(getattr(self, name)) < 1:
                raise MinbasisError(f"{name} must be >= 1, got {getattr(self, name)}")


def validation_split(M: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation indices, training indices) of M structures, both sorted int arrays (module docstring).

    Parameters
    ----------
    M : number of structures; fraction : float in [0, 1); seed : int (``numpy.random.default_rng``)
    """
    if fraction <= 0 or M < MIN_SPLIT_STRUCTURES:
        return np.zeros(0, dtype=int), np.arange(M)
    perm = np.random.default_rng(seed).permutation(M)
    k = min(max(int(round(fraction * M)), 1), M - 1)
    return np.sort(perm[:k]), np.sort(perm[k:])


def output_scale(forces: np.ndarray | None = None, energy_residual_per_atom: np.ndarray | None = None,
                 atoms_per_structure: np.ndarray | None = None) -> float:
    """Output unit s of the networks, eV (module docstring).

    Parameters
    ----------
    forces : all force components of the training labels (any shape), eV/Å, or None
    energy_residual_per_atom : (M,) (E_m − Σ_i E0(Z_i)) / n_m, eV/atom, or None (used without forces)
    atoms_per_structure : (M,) n_m, with ``energy_residual_per_atom``

    Returns
    -------
    s > 0 (1.0 when neither label gives a finite, positive value)
    """
    if forces is not None:
        s = float(np.sqrt(np.mean(np.asarray(forces) ** 2)))
    elif energy_residual_per_atom is not None:
        s = float(np.std(energy_residual_per_atom) * np.sqrt(np.mean(atoms_per_structure)))
    else:
        s = 1.0
    return s if np.isfinite(s) and s > 1e-12 else 1.0


def blas_threads(n: int | None):
    """Context limiting BLAS threads to ``n`` (no-op for None or without threadpoolctl)."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    theta : (P,) the kept parameters (lowest validation loss, or the last checked ones)
    history : list of {"iteration", "train_loss"[, "val_loss"]} per check
    best_iteration, n_iter : int (iterations or epochs)
    stopped_early : bool
    message : str ("early stopping", "max_iter reached" or the optimiser's message)
    best_val_loss : float or None (None without validation)
    """

    theta: np.ndarray
    history: list = field(default_factory=list)
    best_iteration: int = 0
    n_iter: int = 0
    stopped_early: bool = False
    message: str = ""
    best_val_loss: float | None = None


def train(loss: Callable, theta0: np.ndarray, *, max_iter: int, validate_every: int, patience: int,
          val_loss: Callable | None = None, optimizer: str = "lbfgs", batch_loss: Callable | None = None,
          n_batches: int = 0, learning_rate: float = 1e-3, batch_seed: int = 0, progress: str | None = None
          ) -> TrainResult:
    """Minimise ``loss`` from ``theta0`` with early stopping on ``val_loss`` (module docstring).

    Parameters
    ----------
    loss : theta (P,) → (loss float, gradient (P,)); with ``gradient=False`` keyword → (loss, None, ...)
        (only the first element is read). The full training loss.
    theta0 : (P,) float64 initial parameters
    max_iter : L-BFGS iterations or Adam epochs
    validate_every, patience : iterations/epochs between checks; checks without improvement before stopping
    val_loss : theta → float, the validation loss (without penalty terms), or None (no early stopping)
    optimizer : ``"lbfgs"`` (scipy L-BFGS-B, maxcor 20, ftol 1e-14, gtol 1e-10) or ``"adam"``
        (β₁ 0.9, β₂ 0.999, ε 1e-8)
    batch_loss : Adam only: (theta, batch index) → (that batch's share of the epoch loss, gradient (P,)
        of the batch loss the step follows)
    n_batches : Adam: number of batches; the order per epoch is a permutation from
        ``default_rng(batch_seed)``
    learning_rate : Adam step size
    progress : tqdm bar label, or None for no bar

    Returns
    -------
    :class:`TrainResult`

    Raises
    ------
    MinbasisError
        Unknown optimiser.
    """
    history: list[dict] = []
    best = {"val": np.inf, "theta": np.array(theta0, dtype=np.float64), "iteration": 0, "since": 0}
    state = {"it": 0}
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(total=max_iter, desc=progress, unit="it")

    def check(th: np.ndarray, train_loss: float) -> bool:
        """Record a validation point; True when training should stop."""
        entry = {"iteration": state["it"], "train_loss": float(train_loss)}
        if val_loss is not None:
            v = val_loss(th)
            entry["val_loss"] = float(v)
            if v < best["val"]:
                best.update(val=v, theta=th.copy(), iteration=state["it"], since=0)
            else:
                best["since"] += 1
        else:
            best.update(theta=th.copy(), iteration=state["it"])
        history.append(entry)
        if bar is not None:
            bar.set_postfix({k: f"{v:.3g}" for k, v in entry.items() if k != "iteration"}, refresh=False)
        return val_loss is not None and best["since"] >= patience

    theta = np.array(theta0, dtype=np.float64)
    stopped = False
    try:
        check(theta, loss(theta, gradient=False)[0])
        if optimizer == "lbfgs":
            from scipy.optimize import minimize

            last = {"loss": np.inf}

            def fun(th):
                value, grad = loss(th)[:2]
                last["loss"] = value
                return value, grad

            def callback(intermediate_result):
                # scipy >= 1.11 passes an OptimizeResult; older versions pass the parameter vector
                state["it"] += 1
                if bar is not None:
                    bar.update(1)
                if state["it"] % validate_every == 0:
                    x = np.asarray(getattr(intermediate_result, "x", intermediate_result))
                    if check(x.copy(), float(getattr(intermediate_result, "fun", last["loss"]))):
                        raise StopIteration

            try:
                res = minimize(fun, theta, jac=True, method="L-BFGS-B", callback=callback,
                               options={"maxiter": max_iter, "maxfun": 2 * max_iter + 20, "maxcor": 20,
                                        "ftol": 1e-14, "gtol": 1e-10})
                theta, message, final_loss = np.asarray(res.x), str(res.message), float(res.fun)
            except StopIteration:  # scipy < 1.11 lets the callback's StopIteration through
                theta, message, final_loss = best["theta"], "early stopping", last["loss"]
            stopped = val_loss is not None and best["since"] >= patience
            if stopped:
                message = "early stopping"
            elif state["it"] % validate_every != 0:
                check(theta, final_loss)
        elif optimizer == "adam":
            rng = np.random.default_rng(batch_seed)
            m1 = np.zeros_like(theta)
            m2 = np.zeros_like(theta)
            b1, b2, eps = 0.9, 0.999, 1e-8
            step = 0
            message = "max_iter reached"
            for epoch in range(1, max_iter + 1):
                state["it"] = epoch
                epoch_loss = 0.0
                for bi in rng.permutation(n_batches):
                    share, grad = batch_loss(theta, int(bi))
                    epoch_loss += share
                    step += 1
                    m1 = b1 * m1 + (1 - b1) * grad
                    m2 = b2 * m2 + (1 - b2) * grad * grad
                    theta = theta - learning_rate * (m1 / (1 - b1**step)) / (np.sqrt(m2 / (1 - b2**step)) + eps)
                if bar is not None:
                    bar.update(1)
                if epoch % validate_every == 0 or epoch == max_iter:
                    if check(theta, epoch_loss):
                        stopped, message = True, "early stopping"
                        break
        else:
            raise MinbasisError(f"unknown optimizer {optimizer!r}; choose lbfgs or adam")
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(theta=best["theta"], history=history, best_iteration=int(best["iteration"]),
                       n_iter=int(state["it"]), stopped_early=bool(stopped), message=message,
                       best_val_loss=float(best["val"]) if val_loss is not None else None)
