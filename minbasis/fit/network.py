"""Per-species multilayer perceptrons with K linear output heads: the network math of every
neural-network model in minbasis (:mod:`minbasis.fit.mlp`, :mod:`minbasis.fit.mlp_mf`).

Network (Behler and Parrinello, Phys. Rev. Lett. 98, 146401, 2007: one network per chemical
species; K heads on one hidden representation as in Messerly et al., arXiv 2505.01590)::

    h_0 = x,   h_l = φ(h_{l-1} W_{s,c,l} + b_{s,c,l})   (l = 1 … L hidden layers)
    y_k(x) = w_{k,c} · h_L + β_{k,c} [+ v_{k,c} · x]      (head k = 1 … K, optional linear skip term)

for centre species c. The hidden layers ("trunks") are indexed by s: one trunk shared by all
heads (S = 1) or one per head (S = K, heads then share nothing). φ is tanh or SiLU
(a · sigmoid(a), Elfwing et al., Neural Netw. 107, 3, 2018).

Three derivatives are provided, all exact:

* :func:`head_output` and :func:`input_gradient`: y_k and ∂y_k/∂x (forward pass, then reverse
  mode through the cached forward pass) — energies and, through ∂B/∂r, forces;
* :func:`param_gradient`: ∂/∂θ of Σ_k Σ_i [ȳ_{k,i} y_k(x_i) + (∂y_k/∂x)(x_i) · u_{k,i}] for given
  adjoints ȳ (of the outputs) and u (of the input gradients). The second term is what force
  and stress losses need: reverse mode through the forward-mode directional derivative
  ("double back-propagation", Drucker and Le Cun, IEEE Trans. Neural Netw. 3, 991, 1992).
  For a = h W + b, h' = φ(a) and tangents ȧ = ḣ W, ḣ' = φ'(a) ȧ, the adjoints are
  ā = h̄' φ'(a) + ḣ̄' φ''(a) ȧ, ǡ = ḣ̄' φ'(a), ∂W = hᵀ ā + ḣᵀ ǡ, ∂b = Σ ā. The primal stream
  is shared by the heads, so ā is summed over heads; the tangent streams are per head.

Parameters of all species, trunks and heads are stacked in arrays (:class:`Architecture`):
per hidden layer W (S, C, fan_in, width) and b (S, C, width); then w (K, C, H_L), β (K, C) and
optionally v (K, C, F). A flat parameter vector is their concatenation in that order
(C-order ravel), as scipy's optimisers need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import MinbasisError

__all__ = ["ACTIVATIONS", "activation", "Architecture", "Trunk", "trunk_forward", "head_output", "input_gradient",
           "param_gradient", "HeadGradient"]

#: Activation functions φ of the hidden layers.
ACTIVATIONS = ("tanh", "silu")


def activation(name: str, a: np.ndarray, order: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """φ(a), φ'(a) and (``order`` 2) φ''(a), elementwise.

    Parameters
    ----------
    name : ``"tanh"`` or ``"silu"`` (a · sigmoid(a), evaluated overflow-free via tanh)
    a : float64 array of any shape (pre-activations)
    order : 1 or 2; with 1 the third result is None

    Returns
    -------
    (φ, φ', φ'' or None), arrays of the shape of ``a``.

    Raises
    ------
    MinbasisError
        Unknown activation name.
    """
    if name == "tanh":
        t = np.tanh(a)
        d1 = 1.0 - t * t
        return t, d1, (-2.0 * t * d1 if order > 1 else None)
    if name != "silu":
        raise MinbasisError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")
    sig = 0.5 * (1.0 + np.tanh(0.5 * a))  # overflow-free sigmoid
    d1 = sig * (1.0 + a * (1.0 - sig))
    d2 = sig * (1.0 - sig) * (2.0 + a * (1.0 - 2.0 * sig)) if order > 1 else None
    return a * sig, d1, d2


@dataclass(frozen=True)
class Architecture:
    """Shapes of a stack of per-species networks with K heads (module docstring).

    Attributes
    ----------
    n_species : int, C (one network per centre species)
    n_features : int, F (inputs: standardised features)
    hidden : tuple of int, widths of the L ≥ 1 hidden layers
    n_heads : int, K output heads (fidelities)
    n_trunks : int, S = 1 (hidden layers shared by the heads) or K (one per head)
    linear_term : bool, whether every head has a linear skip term v · x

    Raises
    ------
    MinbasisError
        Non-positive sizes, no hidden layer, or S not in {1, K}.
    """

    n_species: int
    n_features: int
    hidden: tuple
    n_heads: int = 1
    n_trunks: int = 1
    linear_term: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1 or self.n_species < 1 or self.n_features < 1 or self.n_heads < 1:
            raise MinbasisError(f"network sizes must be positive with at least one hidden layer; got C={self.n_species}, "
                                f"F={self.n_features}, hidden={self.hidden}, K={self.n_heads}")
        if self.n_trunks not in (1, self.n_heads):
            raise MinbasisError(f"n_trunks must be 1 (shared) or n_heads={self.n_heads}, got {self.n_trunks}")

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Array shapes in parameter order: per layer W (S, C, in, out), b (S, C, out); w (K, C, H_L), β (K, C);
        [v (K, C, F)]."""
        S, K, C, F = self.n_trunks, self.n_heads, self.n_species, self.n_features
        out, fan_in = [], F
        for h in self.hidden:
            out += [(S, C, fan_in, h), (S, C, h)]
            fan_in = h
        return out + [(K, C, fan_in), (K, C)] + ([(K, C, F)] if self.linear_term else [])

    @property
    def n_parameters(self) -> int:
        """Length of the flat parameter vector."""
        return int(sum(np.prod(s) for s in self.shapes))

    @property
    def weight_mask(self) -> list[bool]:
        """Per array: True for weights (W, w, v: decayed by an l2 penalty), False for biases."""
        L = len(self.hidden)
        return [k % 2 == 0 for k in range(2 * L + 2)] + ([True] if self.linear_term else [])

    def unpack(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views of the flat vector ``theta`` (n_parameters,) as arrays of :attr:`shapes`.

        Raises
        ------
        MinbasisError
            ``theta`` of the wrong length.
        """
        theta = np.asarray(theta)
        if theta.shape != (self.n_parameters,):
            raise MinbasisError(f"parameter vector of shape {theta.shape}, expected ({self.n_parameters},)")
        out, k = [], 0
        for s in self.shapes:
            n = int(np.prod(s))
            out.append(theta[k:k + n].reshape(s))
            k += n
        return out

    def pack(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """The flat float64 vector (n_parameters,) of arrays of :attr:`shapes` (or of the same sizes)."""
        return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in arrays])

    def init(self, seed: int) -> np.ndarray:
        """Initial flat parameters from ``numpy.random.default_rng(seed)``.

        LeCun-normal hidden weights (variance 1/fan_in; LeCun et al., "Efficient BackProp", 1998),
        zero biases, head weights 0.1 · N(0, 1/H_L) (exactly 0 with a linear term, so that the
        initial model is the linear one; the draws are made either way), zero linear term.
        """
        rng = np.random.default_rng(seed)
        shapes = self.shapes
        L = len(self.hidden)
        arrays = []
        for l in range(L):
            W, b = shapes[2 * l], shapes[2 * l + 1]
            arrays += [rng.standard_normal(W) / np.sqrt(W[2]), np.zeros(b)]
        wo, bo = shapes[2 * L], shapes[2 * L + 1]
        arrays += [(0.0 if self.linear_term else 0.1) * rng.standard_normal(wo) / np.sqrt(wo[2]), np.zeros(bo)]
        arrays += [np.zeros(shapes[-1])] if self.linear_term else []
        return self.pack(arrays)

    def l2_penalty(self, arrays: Sequence[np.ndarray], l2: float, grads: list[np.ndarray] | None = None) -> float:
        """l2 · Σ |weights|² over the weight arrays (not the biases); adds its gradient to ``grads`` if given."""
        total = 0.0
        for k, is_w in enumerate(self.weight_mask):
            if is_w:
                total += l2 * float(np.sum(arrays[k] ** 2))
                if grads is not None:
                    grads[k] += 2.0 * l2 * arrays[k]
        return total

    def hidden_of(self, arrays: Sequence[np.ndarray], s: int, c: int) -> list[np.ndarray]:
        """[W_1, b_1, …, W_L, b_L] of trunk s and species c (views)."""
        return [arrays[k][s, c] for k in range(2 * len(self.hidden))]

    def head_of(self, arrays: Sequence[np.ndarray], k: int, c: int) -> tuple[np.ndarray, float, np.ndarray | None]:
        """(w (H_L,), β, v (F,) or None) of head k and species c (views)."""
        L = len(self.hidden)
        return arrays[2 * L][k, c], arrays[2 * L + 1][k, c], (arrays[-1][k, c] if self.linear_term else None)


@dataclass
class Trunk:
    """The cached forward pass of one species' hidden layers on n inputs.

    Attributes
    ----------
    x : (n, F) inputs
    layers : list of (h_prev (n, in), φ'(a) (n, out), φ''(a) (n, out)) per hidden layer
    h : (n, H_L) last hidden layer
    """

    x: np.ndarray
    layers: list
    h: np.ndarray


def trunk_forward(hidden: Sequence[np.ndarray], x: np.ndarray, act: str) -> Trunk:
    """Forward pass of hidden layers [W_1 (F, H_1), b_1 (H_1), …] on inputs x (n, F), caching φ' and φ''."""
    h = x
    layers = []
    for l in range(len(hidden) // 2):
        a = h @ hidden[2 * l] + hidden[2 * l + 1]
        hn, d1, d2 = activation(act, a)
        layers.append((h, d1, d2))
        h = hn
    return Trunk(x=x, layers=layers, h=h)


def head_output(trunk: Trunk, w: np.ndarray, bo, v: np.ndarray | None = None) -> np.ndarray:
    """y (n,) = h_L · w + β [+ x · v] of one head on a cached trunk."""
    y = trunk.h @ w + bo
    if v is not None:
        y = y + trunk.x @ v
    return y


def input_gradient(hidden: Sequence[np.ndarray], trunk: Trunk, w: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
    """∂y/∂x (n, F) of one head (weights w (H_L,), linear term v (F,) or None), by reverse mode."""
    delta = np.broadcast_to(w, (trunk.x.shape[0], w.shape[0]))
    for l in range(len(trunk.layers) - 1, -1, -1):
        delta = (delta * trunk.layers[l][1]) @ hidden[2 * l].T
    if v is not None:
        delta = delta + v
    return delta


@dataclass
class HeadGradient:
    """Gradient of one head's parameters: w (H_L,), β (scalar array), v (F,) or None."""

    w: np.ndarray
    bo: np.ndarray
    v: np.ndarray | None


def param_gradient(hidden: Sequence[np.ndarray], trunk: Trunk, heads: Sequence[tuple]
                   ) -> tuple[list[np.ndarray], list[HeadGradient]]:
    """∂/∂θ of Σ_k Σ_i [ȳ_{k,i} y_k(x_i) + (∂y_k/∂x)(x_i) · u_{k,i}] for heads on one cached trunk.

    Parameters
    ----------
    hidden : [W_1, b_1, …] of the trunk (as :func:`trunk_forward`)
    trunk : the cached forward pass
    heads : sequence of (w (H_L,), has_linear_term (bool), ȳ (n,), u (n, F) or None); u None means
        no input-gradient term (e.g. an energy-only loss) and skips the tangent stream; no heads
        gives zero gradients

    Returns
    -------
    (gradients of [W_1, b_1, …] (same shapes as ``hidden``), one :class:`HeadGradient` per head)
    """
    L = len(trunk.layers)
    if not heads:
        return [np.zeros_like(p) for p in hidden], []
    head_grads = []
    abar = None
    tangents = []  # per head with u: (tangent inputs ḣ_l per layer, ȧ_l per layer, ḣ̄ at the top)
    for w, linear, ybar, u in heads:
        gw = ybar @ trunk.h
        gv = None
        hbar = ybar[:, None] * w[None, :]
        if u is not None:
            hdots, adots, hd = [u], [], u
            for l in range(L):
                ad = hd @ hidden[2 * l]
                adots.append(ad)
                hd = trunk.layers[l][1] * ad
                hdots.append(hd)
            gw = gw + hd.sum(axis=0)
            tangents.append((hdots, adots, np.broadcast_to(w, hbar.shape)))
            if linear:
                gv = ybar @ trunk.x + u.sum(axis=0)
        elif linear:
            gv = ybar @ trunk.x
        head_grads.append(HeadGradient(w=gw, bo=np.asarray(ybar.sum()), v=gv))
        # primal adjoint at the top layer, summed over heads (the primal stream is shared)
        a_top = hbar * trunk.layers[L - 1][1]
        abar = a_top if abar is None else abar + a_top
    grads: list = [None] * (2 * L)
    for l in range(L - 1, -1, -1):
        h_prev, d1, d2 = trunk.layers[l]
        if l < L - 1:
            abar = abar * d1
        adbars = []
        for hdots, adots, hdbar in tangents:
            abar = abar + hdbar * d2 * adots[l]
            adbars.append(hdbar * d1)
        gW = h_prev.T @ abar
        for (hdots, _, _), adbar in zip(tangents, adbars):
            gW = gW + hdots[l].T @ adbar
        grads[2 * l] = gW
        grads[2 * l + 1] = abar.sum(axis=0)
        if l > 0:
            W = hidden[2 * l]
            abar = abar @ W.T  # becomes h̄ of layer l-1; multiplied by φ' at the top of the loop
            tangents = [(hd, ad, adbar @ W.T) for (hd, ad, _), adbar in zip(tangents, adbars)]
    return grads, head_grads
