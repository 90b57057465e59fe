"""Multi-fidelity shallow neural networks: a shared hidden layer with one linear energy head per fidelity.

Model (Messerly et al., arXiv 2505.01590: one shared representation, one energy head per
fidelity with its own E0; here on a fixed minbasis descriptor, Behler–Parrinello form)::

    E_f = Σ_i [ E0_f(Z_i) + s · (w_{f,Z_i} · h_i + b_{f,Z_i}) ],   h_i = φ(x_i W_{Z_i} + β_{Z_i})

x_i = (B_i − μ_Z)/σ_Z are standardised features (over all training structures), s (eV) is the
RMS force component of all force labels times 1 Å (or the energy spread without forces;
:func:`~minbasis.fit.trainer.output_scale`). The
hidden layer (W, β) is shared by all fidelities (``shared=True``); ``shared=False`` gives every
fidelity its own hidden layer — the uncoupled control, in which low-level labels cannot inform
the high-level head (each fidelity's network is then trained on its own, :func:`fit_mlp_mf`).
φ is SiLU (default) or tanh. Forces of each head are its own gradients, F = −∂E_f/∂r, by the chain rule
through the descriptor gradients (:class:`~minbasis.fit.atomic.DescriptorSet`).

Loss: for every :class:`~minbasis.fit.fidelity.FidelityData` entry e with M_e structures and
each label it carries (absent labels contribute nothing)::

    L_e = (1/M_e) Σ_m w_ct² [ w_E² ((E_m − Ê_{f,m})/n_m)² + w_F² Σ_k |F_k − F̂_{f,k}|² ]

plus, with PIWSL (Takamoto et al., arXiv 2408.05215), for entries with energies
λ_TC·(1/M_e) Σ_m w_E² ((Ê(R+δ₁) − Ê(R) + F̂(R)·δ₁)/n_m)² and λ_SC·(1/M_e) Σ_m w_E²
((Ê(R+δ₁) − Ê(R+δ₂) + F̂(R+δ₂)·(δ₁−δ₂))/n_m)², plus l2 Σ|W|² + l2 Σ|w|². Minimised with
scipy's L-BFGS-B from LeCun-normal initial weights (``default_rng(seed)``); early stopping on
the same loss over a seeded validation split of every entry (the parameters with the lowest
validation loss are kept; :func:`~minbasis.fit.trainer.train`, split rule
:func:`~minbasis.fit.trainer.validation_split` with seed ``validation_seed + e`` for entry e).
The network math — a per-species MLP with K heads on one shared trunk (or K trunks) — is
:mod:`minbasis.fit.network`. Gradients are analytic and checked against finite differences.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import ClassVar, Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..errors import LabelError, MinbasisError
from .atomic import (DescriptorSet, check_finite, fit_e0, fit_standardiser, forces_from_gradients, gradient_adjoint,
                     predict_atomic)
from .fidelity import FidelityData, fidelity_names, resolve_fidelity
from .fileio import load_model_file, write_model_file
from .model import MinbasisCalculator, Prediction
from .network import ACTIVATIONS, Architecture, head_output, input_gradient, param_gradient, trunk_forward
from .trainer import NetworkFitConfig, output_scale, train, validation_split

__all__ = ["MLPMultiFidelityConfig", "MLPMultiFidelityModel", "fit_mlp_mf", "reptile_pretrain"]


@dataclass
class MLPMultiFidelityConfig(NetworkFitConfig):
    """Settings of :func:`fit_mlp_mf` (module docstring).

    Attributes
    ----------
    activation, l2, validation_fraction, validation_seed, validate_every, seed, cache_bytes :
        as :class:`~minbasis.fit.trainer.NetworkFitConfig` (silu, 1e-6, 0.1, 0, 10, 0, 2 GiB); the
        validation split is per entry (seed ``validation_seed + e`` for entry e)
    max_iter, patience : L-BFGS iteration cap (default 4000) and checks without improvement before
        stopping (default 150 checks = 1500 iterations). These defaults come from the validation curves
        of ``benchmarks/multifidelity_ethanol.py --validation-only`` (validation frames inside the
        training set only): energy-only fits have validation plateaus of up to 1400 iterations
        before falling again, and energy+force fits still improve slowly at 5000 iterations, so the
        cap, not the patience, usually ends them (README "Multi-fidelity fits")
    hidden : int, width H of the (shared) hidden layer
    shared : bool, share the hidden layer across fidelities (False: uncoupled control, every
        fidelity trained as its own network, see :func:`fit_mlp_mf`)
    piwsl : PIWSLConfig or None, extra Taylor / path-independence loss terms

    Raises
    ------
    MinbasisError
        Non-positive width or counts, negative l2, fraction outside [0, 1), unknown activation.
    """

    max_iter: int = 4000
    patience: int = 150
    hidden: int = 64
    shared: bool = True
    piwsl: object = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.hidden) < 1:
            raise MinbasisError(f"hidden must be >= 1, got {self.hidden}")


@dataclass
class MLPMultiFidelityModel:
    """Shared-hidden-layer (or uncoupled) MLP with one energy head per fidelity.

    Attributes
    ----------
    basis : Basis (C species, F features); fidelities : list of K names
    W : (S, C, F, H), b : (S, C, H) hidden layer(s), S = 1 (shared) or K (uncoupled)
    w : (K, C, H), bo : (K, C) heads; mean, std : (C, F); scale : float eV; e0 : (K, C) eV
    info : dict, provenance
    activation : str, ``"tanh"`` (files written before the option existed) or ``"silu"``

    Raises
    ------
    MinbasisError
        Inconsistent shapes, non-finite values, duplicate fidelities.
    """

    basis: Basis
    fidelities: list
    W: np.ndarray
    b: np.ndarray
    w: np.ndarray
    bo: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    scale: float
    e0: np.ndarray
    info: dict = field(default_factory=dict)
    activation: str = "tanh"

    #: Model kind in files and in :mod:`minbasis.fit.registry`.
    kind: ClassVar[str] = "mlp-mf"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise MinbasisError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        self.fidelities = [str(f) for f in self.fidelities]
        K, C, F = len(self.fidelities), len(self.basis.species), self.basis.n_features
        if K == 0 or len(set(self.fidelities)) != K:
            raise MinbasisError(f"fidelities must be distinct names, got {self.fidelities}")
        for name in ("W", "b", "w", "bo", "mean", "std", "e0"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        S, H = self.W.shape[0], self.W.shape[-1]
        ok = (self.W.shape == (S, C, F, H) and S in (1, K) and self.b.shape == (S, C, H) and self.w.shape == (K, C, H)
              and self.bo.shape == (K, C) and self.mean.shape == (C, F) and self.std.shape == (C, F)
              and self.e0.shape == (K, C))
        if not ok:
            raise MinbasisError("MLPMultiFidelityModel: array shapes do not match the basis and fidelities")
        self.scale = float(self.scale)
        check_finite("MLPMultiFidelityModel", self.W, self.b, self.w, self.bo, self.mean, self.std, self.e0)

    @property
    def shared(self) -> bool:
        """Whether the hidden layer is shared by all fidelities."""
        return self.W.shape[0] == 1

    @property
    def architecture(self) -> Architecture:
        """The network shapes (:class:`~minbasis.fit.network.Architecture`): K heads on S trunks."""
        return Architecture(len(self.basis.species), self.basis.n_features, (self.W.shape[-1],),
                            n_heads=len(self.fidelities), n_trunks=self.W.shape[0])

    def energies_and_gradients(self, X: np.ndarray, ch: np.ndarray, k: int):
        """Atomic energies (N,) eV and ∂E_i/∂B_i (N, F) at fidelity index k for raw features X (N, F)."""
        E = np.zeros(len(ch))
        g = np.zeros_like(X, dtype=float)
        s = 0 if self.shared else k
        arrays = [self.W, self.b, self.w, self.bo]
        arch = self.architecture
        for c in range(len(self.basis.species)):
            idx = np.flatnonzero(ch == c)
            if len(idx):
                hidden = arch.hidden_of(arrays, s, c)
                w, bo, _ = arch.head_of(arrays, k, c)
                trunk = trunk_forward(hidden, (X[idx] - self.mean[c]) / self.std[c], self.activation)
                E[idx] = self.e0[k, c] + self.scale * head_output(trunk, w, bo)
                g[idx] = self.scale * input_gradient(hidden, trunk, w) / self.std[c]
        return E, g

    def predict(self, atoms_or_list: Atoms | Sequence[Atoms], fidelity: str | None = None, progress: bool = False
                ) -> Prediction:
        """Energies (eV), forces (eV/Å), stress (eV/Å³) at ``fidelity`` (None: the only one of a
        single-fidelity model; :func:`~minbasis.fit.fidelity.resolve_fidelity`).

        Raises
        ------
        MinbasisError
            Unknown fidelity, or None for a model with several (lists the known ones).
            StructureError / SpeciesError for structures.
        """
        k = resolve_fidelity(self.fidelities, fidelity)
        return predict_atomic(self.basis, atoms_or_list, lambda X, ch: self.energies_and_gradients(X, ch, k), progress)

    def calculator(self, fidelity: str | None = None) -> MinbasisCalculator:
        """ASE calculator at ``fidelity`` (checked now, as :meth:`predict`)."""
        k = resolve_fidelity(self.fidelities, fidelity)

        class _Head:
            def predict(inner, atoms, progress=False):
                return self.predict(atoms, self.fidelities[k], progress)

        return MinbasisCalculator(_Head())

    def _arrays(self):
        return {"W": self.W, "b": self.b, "w": self.w, "bo": self.bo, "mean": self.mean, "std": self.std,
                "e0": self.e0, "scale": np.asarray([self.scale])}

    def save(self, path) -> None:
        """Versioned, hashed ``.npz`` (kind ``"mlp-mf"``), written atomically (:func:`~minbasis.fit.fileio.write_model_file`).

        Raises
        ------
        OSError
            The file cannot be written.
        """
        write_model_file(path, self.kind, self.basis, self._arrays(),
                         {"fidelities": self.fidelities, "activation": self.activation}, self.info)

    @classmethod
    def load(cls, path) -> "MLPMultiFidelityModel":
        """Read a file written by :meth:`save`.

        Raises
        ------
        FileFormatError
            Missing, corrupt or edited file, other version or kind.
        """
        return load_model_file(path, cls.kind, ("W", "b", "w", "bo", "mean", "std", "e0", "scale"),
                               lambda basis, a, hyper, info: cls(
                                   basis, list(hyper.get("fidelities", [])), a["W"], a["b"], a["w"], a["bo"], a["mean"],
                                   a["std"], float(a["scale"][0]), a["e0"], info,
                                   activation=hyper.get("activation", "tanh")))


# -- training -----------------------------------------------------------------------------------------
class _Geo:
    """Descriptors of one structure list (full arrays; gradients per chunk)."""

    def __init__(self, basis, frames, cache_bytes):
        self.ds = DescriptorSet(basis, frames, cache_bytes=cache_bytes)
        self.X = self.ds.features
        self.ch = self.ds.channels
        self.ptr = self.ds.atom_ptr
        self.struct = np.repeat(np.arange(self.ds.n_structures), np.diff(self.ptr))
        self.n = np.diff(self.ptr).astype(float)

    def forces(self, g):
        out = np.zeros((len(self.ch), 3))
        for chk in self.ds:
            a0, a1 = self.ptr[chk.start], self.ptr[chk.stop]
            out[a0:a1] = forces_from_gradients(chk.samples, chk.J, g[a0:a1], a1 - a0)
        return out

    def adjoint(self, r):
        out = np.zeros_like(self.X)
        for chk in self.ds:
            a0, a1 = self.ptr[chk.start], self.ptr[chk.stop]
            out[a0:a1] = gradient_adjoint(chk.samples, chk.J, r[a0:a1], a1 - a0)
        return out


class _Problem:
    """Loss and gradient over entries (each: geometries, head, labels, weights, optional PIWSL).

    ``arch`` is the :class:`~minbasis.fit.network.Architecture` (K heads on S trunks). The hidden
    layers of a (geometry set, trunk) pair are evaluated once per call and shared by every head
    that reads them; ∂E/∂B (needed for forces and PIWSL only) is formed only for the heads that
    need it. Standardised features are cached per geometry set.
    """

    def __init__(self, entries, arch: Architecture, mean, std, scale, e0, l2, activation="tanh"):
        self.entries, self.arch = entries, arch
        self.mean, self.std, self.scale, self.e0, self.l2 = mean, std, scale, e0, l2
        self.activation = activation
        self._rows: dict = {}

    def _species_rows(self, geo):
        """[(atom indices, standardised features) per species] of one geometry set (cached)."""
        key = id(geo)
        if key not in self._rows:
            rows = []
            for c in range(self.arch.n_species):
                idx = np.flatnonzero(geo.ch == c)
                rows.append((idx, (geo.X[idx] - self.mean[c]) / self.std[c] if len(idx) else None))
            self._rows[key] = (geo, rows)
        return self._rows[key][1]

    def __call__(self, theta, gradient=True):
        arch = self.arch
        arrays = arch.unpack(theta)
        L = len(arch.hidden)
        total = 0.0
        hidden: dict = {}
        evals: dict = {}
        scale = self.scale

        def hid(geo, s):
            key = (id(geo), s)
            if key not in hidden:
                out = []
                for c, (idx, x) in enumerate(self._species_rows(geo)):
                    out.append(None if x is None else (idx, trunk_forward(arch.hidden_of(arrays, s, c), x,
                                                                          self.activation)))
                hidden[key] = (geo, s, out)
            return hidden[key][2]

        def evaluate(geo, k):
            key = (id(geo), k)
            if key not in evals:
                s = 0 if arch.n_trunks == 1 else k
                E_at = np.zeros(len(geo.ch))
                for c, t in enumerate(hid(geo, s)):
                    if t is not None:
                        w, bo, _ = arch.head_of(arrays, k, c)
                        E_at[t[0]] = self.e0[k, c] + scale * head_output(t[1], w, bo)
                E = np.bincount(geo.struct, weights=E_at, minlength=len(geo.n))
                evals[key] = {"geo": geo, "k": k, "s": s, "E": E, "g": None, "F": None,
                              "ybar": np.zeros(len(geo.n)), "gbar": None}
            return evals[key]

        def grad_b(ev):
            """∂E_i/∂B_i (N, F) of one head."""
            if ev["g"] is None:
                geo, k, s = ev["geo"], ev["k"], ev["s"]
                g = np.zeros_like(geo.X)
                for c, t in enumerate(hid(geo, s)):
                    if t is not None:
                        g[t[0]] = (scale / self.std[c]) * input_gradient(arch.hidden_of(arrays, s, c), t[1],
                                                                         arch.head_of(arrays, k, c)[0])
                ev["g"] = g
            return ev["g"]

        def gbar(ev):
            if ev["gbar"] is None:
                ev["gbar"] = np.zeros_like(ev["geo"].X)
            return ev["gbar"]

        for e in self.entries:
            k, geo, M = e["k"], e["geo"], len(e["geo"].n)
            ev = evaluate(geo, k)
            wct = e["wct"]
            if e["E"] is not None:
                wE = e["wE"] * wct / geo.n
                r = wE * (ev["E"] - e["E"])
                total += float(r @ r) / M
                ev["ybar"] += 2.0 * r * wE / M
            if e["F"] is not None:
                if ev["F"] is None:
                    ev["F"] = geo.forces(grad_b(ev))
                wF = (e["wF"] * wct)[geo.struct][:, None]
                r = wF * (ev["F"] - e["F"])
                total += float(np.sum(r * r)) / M
                if gradient:
                    gbar(ev)[:] -= geo.adjoint(2.0 * wF * r / M)
            if e.get("piwsl") is not None:
                p = e["piwsl"]
                w0 = e["wE"] * wct / geo.n
                e1, e2 = evaluate(p["g1"], k), evaluate(p["g2"], k)
                # F(R)·δ = −Σ_i g_i · v_i with v = adjoint(J, δ) fixed
                proj0 = -np.bincount(geo.struct, weights=np.sum(grad_b(ev) * p["v1"], axis=1), minlength=M)
                proj2 = -np.bincount(p["g2"].struct, weights=np.sum(grad_b(e2) * p["v12"], axis=1), minlength=M)
                for lam, res, parts in ((p["tc"], e1["E"] - ev["E"] + proj0, ((e1, 1.0), (ev, -1.0))),
                                        (p["sc"], e1["E"] - e2["E"] + proj2, ((e1, 1.0), (e2, -1.0)))):
                    if lam <= 0:
                        continue
                    r = np.sqrt(lam) * w0 * res
                    total += float(r @ r) / M
                    coef = 2.0 * r * np.sqrt(lam) * w0 / M
                    for tgt, sign in parts:
                        tgt["ybar"] += sign * coef
                    if gradient:
                        if parts[1][0] is ev:  # Taylor: force term at R
                            gbar(ev)[:] -= coef[geo.struct][:, None] * p["v1"]
                        else:
                            gbar(e2)[:] -= coef[p["g2"].struct][:, None] * p["v12"]
        if not gradient:
            return total + (arch.l2_penalty(arrays, self.l2) if self.l2 > 0 else 0.0), None
        grads = [np.zeros_like(a) for a in arrays]
        heads: dict = {}
        for ev in evals.values():
            heads.setdefault((id(ev["geo"]), ev["s"]), []).append(ev)
        for key, (geo, s, rows) in hidden.items():
            for c, t in enumerate(rows):
                if t is None:
                    continue
                idx, trunk = t
                evs = heads.get(key, [])
                spec = [(arch.head_of(arrays, ev["k"], c)[0], False, scale * ev["ybar"][geo.struct[idx]],
                         None if ev["gbar"] is None else (scale / self.std[c]) * ev["gbar"][idx]) for ev in evs]
                gh, gheads = param_gradient(arch.hidden_of(arrays, s, c), trunk, spec)
                for j, g in enumerate(gh):
                    grads[j][s, c] += g
                for ev, g in zip(evs, gheads):
                    grads[2 * L][ev["k"], c] += g.w
                    grads[2 * L + 1][ev["k"], c] += g.bo
        if self.l2 > 0:
            total += arch.l2_penalty(arrays, self.l2, grads)
        return total, arch.pack(grads)


def _entries(basis, data, fids, cfg, idx_of, geo_cache):
    from .multifidelity import _displaced, piwsl_displacements

    out = []
    for d, idx in zip(data, idx_of):
        if not len(idx):
            continue
        frames = [d.structures[i] for i in idx]
        key = (id(d.structures), tuple(idx))
        if key not in geo_cache:
            geo_cache[key] = _Geo(basis, frames, cfg.cache_bytes)
        geo = geo_cache[key]
        lab = d.labels()
        wct = d.config_weights(lab)[idx]
        use_e = lab.energy is not None and d.weights["energy"] > 0
        use_f = lab.forces is not None and d.weights["forces"] > 0
        e = {"k": fids.index(d.fidelity), "geo": geo, "wct": wct, "wE": d.weights["energy"], "wF": d.weights["forces"],
             "E": lab.energy[idx] if use_e else None,
             "F": np.concatenate([lab.forces[i] for i in idx]) if use_f else None, "piwsl": None}
        p = cfg.piwsl
        if use_e and p is not None and (p.lambda_tc > 0 or p.lambda_sc > 0):
            d1, d2 = piwsl_displacements(frames, p)
            g1 = _Geo(basis, _displaced(frames, d1), cfg.cache_bytes)
            g2 = _Geo(basis, _displaced(frames, d2), cfg.cache_bytes)
            e["piwsl"] = {"g1": g1, "g2": g2, "tc": p.lambda_tc, "sc": p.lambda_sc,
                          "v1": geo.adjoint(np.concatenate(d1)),
                          "v12": g2.adjoint(np.concatenate(d1) - np.concatenate(d2))}
        if use_e or use_f:
            out.append(e)
    return out


def fit_mlp_mf(basis: Basis, data: Sequence[FidelityData], config: MLPMultiFidelityConfig | None = None,
               progress: bool = False, init: dict | None = None) -> MLPMultiFidelityModel:
    """Train a multi-fidelity MLP (module docstring) on fidelity-aware data.

    With ``config.shared=False`` (the uncoupled control) every fidelity is trained as its own
    one-head network — own output scale, own validation split and early stopping, own
    standardisation — and the networks are assembled into one model (the standardisation is
    folded exactly into each hidden layer). Nothing is shared, so the high-level head equals the
    network trained on the high-level data alone (same seed).

    Parameters
    ----------
    basis : Basis; data : list of FidelityData (energy and force labels; stress is not used)
    config : MLPMultiFidelityConfig (``shared=False`` for the uncoupled control)
    init : dict with ``theta`` (packed W, b, w, bo of a one-head shared network), ``mean``, ``std``,
        ``scale`` — start from these (fine-tuning after :func:`reptile_pretrain`); every head
        starts from the same head weights

    Returns
    -------
    MLPMultiFidelityModel with heads in order of first appearance and ``info`` (history, best iteration)

    Raises
    ------
    LabelError
        No data, or only stress labels. StructureError / SpeciesError for structures.
    """
    cfg = config or MLPMultiFidelityConfig()
    if not data:
        raise LabelError("no training data")
    fids = fidelity_names(data)
    if not cfg.shared and len(fids) > 1:
        return _fit_uncoupled(basis, data, cfg, progress, init)
    return _fit_shared(basis, data, cfg, progress, init)


def _fit_uncoupled(basis, data, cfg, progress, init):
    """Independent one-head networks per fidelity, assembled into one model (see fit_mlp_mf)."""
    t0 = time.perf_counter()
    fids = fidelity_names(data)
    parts = []
    for f in fids:
        sub = [d for d in data if d.fidelity == f]
        parts.append(_fit_shared(basis, sub, replace(cfg, shared=True), progress, init))
    mean, std = parts[0].mean, parts[0].std
    scale = parts[0].scale
    Ws, bs, ws, bos, e0 = [], [], [], [], []
    for m in parts:
        # x_m = (B − μ_m)/σ_m = ((B − μ)/σ)·σ/σ_m + (μ − μ_m)/σ_m
        #   →  W' = (σ/σ_m) W, b' = b + ((μ − μ_m)/σ_m) W
        r = (std / m.std)[:, :, None]
        Ws.append(r * m.W[0])
        bs.append(m.b[0] + np.einsum("cf,cfh->ch", (mean - m.mean) / m.std, m.W[0]))
        ws.append(m.w[0] * m.scale / scale)
        bos.append(m.bo[0] * m.scale / scale)
        e0.append(m.e0[0])
    info = {"model": "mlp-mf", "shared": False, "hidden": int(cfg.hidden), "activation": cfg.activation,
            "fit_seconds": time.perf_counter() - t0, "l2": cfg.l2,
            "piwsl": vars(cfg.piwsl) if cfg.piwsl is not None else None,
            "per_fidelity": {f: m.info for f, m in zip(fids, parts)},
            "best_iteration": parts[0].info["best_iteration"], "n_iter": parts[0].info["n_iter"]}
    return MLPMultiFidelityModel(basis, fids, np.stack(Ws), np.stack(bs), np.stack(ws), np.stack(bos), mean, std,
                                 scale, np.stack(e0), info, activation=cfg.activation)


def _fit_shared(basis, data, cfg, progress, init):
    t0 = time.perf_counter()
    fids = fidelity_names(data)
    K, C, F, H = len(fids), len(basis.species), basis.n_features, int(cfg.hidden)
    splits = [validation_split(len(d.structures), cfg.validation_fraction, cfg.validation_seed + n)
              for n, d in enumerate(data)]
    geo_cache: dict = {}
    fit_entries = _entries(basis, data, fids, cfg, [s[1] for s in splits], geo_cache)
    val_entries = _entries(basis, data, fids, cfg, [s[0] for s in splits], geo_cache)
    if not fit_entries:
        raise LabelError("nothing to fit: give energies or forces with a weight > 0")
    geos = {id(e["geo"]): e["geo"] for e in fit_entries}
    X = np.vstack([g.X for g in geos.values()])
    ch = np.concatenate([g.ch for g in geos.values()])
    mean, std = fit_standardiser(X, ch, C) if init is None else (init["mean"], init["std"])
    e0 = np.zeros((K, C))
    for k, f in enumerate(fids):
        es = [e for e in fit_entries if e["k"] == k and e["E"] is not None]
        if es:
            frames = [a for e in es for a in e["geo"].ds.atoms_list]
            e0[k] = fit_e0(frames, np.concatenate([e["geo"].ch for e in es]), np.concatenate([e["E"] for e in es]), C)
    Fl = [e["F"] for e in fit_entries if e["F"] is not None]
    resid = n_atoms = None
    if not Fl:  # the energy spread sets the output unit only without forces
        with_e = [e for e in fit_entries if e["E"] is not None]
        resid = np.concatenate([(e["E"] - np.bincount(e["geo"].struct, weights=e0[e["k"]][e["geo"].ch]))
                                / e["geo"].n for e in with_e])
        n_atoms = np.concatenate([e["geo"].n for e in with_e])
    scale = output_scale(np.concatenate(Fl) if Fl else None, resid, n_atoms)
    if init is not None:
        scale = float(init["scale"])
    arch = Architecture(C, F, (H,), n_heads=K, n_trunks=1)
    prob = _Problem(fit_entries, arch, mean, std, scale, e0, cfg.l2, cfg.activation)
    vprob = _Problem(val_entries, arch, mean, std, scale, e0, 0.0, cfg.activation) if val_entries else None
    theta = arch.init(cfg.seed)
    if init is not None:
        W0, b0, w0, bo0 = Architecture(C, F, (H,)).unpack(np.asarray(init["theta"]))
        theta = arch.pack([W0, b0, np.repeat(w0, K, axis=0), np.repeat(bo0, K, axis=0)])
    res = train(prob, theta, max_iter=cfg.max_iter, validate_every=cfg.validate_every, patience=cfg.patience,
                val_loss=(lambda th: vprob(th, gradient=False)[0]) if vprob is not None else None,
                progress="MLP-MF L-BFGS" if progress else None)
    W, b, w, bo = arch.unpack(res.theta)
    info = {"model": "mlp-mf", "shared": True, "hidden": H, "activation": cfg.activation, "history": res.history,
            "best_iteration": res.best_iteration, "n_iter": res.n_iter, "stopped_early": res.stopped_early,
            "message": res.message, "fit_seconds": time.perf_counter() - t0,
            "piwsl": vars(cfg.piwsl) if cfg.piwsl is not None else None, "l2": cfg.l2,
            "seed": int(cfg.seed), "validation_seed": int(cfg.validation_seed),
            "max_iter": int(cfg.max_iter), "patience": int(cfg.patience), "validate_every": int(cfg.validate_every),
            "n_train": [len(s[1]) for s in splits], "n_validation": [len(s[0]) for s in splits]}
    return MLPMultiFidelityModel(basis, fids, W.copy(), b.copy(), w.copy(), bo.copy(), mean, std, scale, e0, info,
                                 activation=cfg.activation)


def reptile_pretrain(basis: Basis, levels: Sequence[FidelityData], config: MLPMultiFidelityConfig | None = None,
                     outer: int = 20, inner: int = 10, epsilon: float = 0.5, seed: int = 0,
                     extra_structures: Sequence[Atoms] = ()) -> dict:
    """Reptile meta-learning across levels of theory (Allen et al., npj Comput. Mater. 10, 154 (2024),
    arXiv 2307.04012; Nichol et al., arXiv 1803.02999).

    One shared network (hidden layer + one head; every level keeps its own least-squares E0) is
    trained by: sample a level ℓ (``default_rng(seed)``), run ``inner`` L-BFGS iterations on ℓ's
    loss from θ to φ, move θ ← θ + ε (φ − θ), with ε decaying linearly from ``epsilon`` to 0 over
    ``outer`` steps. Fine-tune afterwards with ``fit_mlp_mf(..., init=result)``.

    Parameters
    ----------
    levels : one FidelityData per level (energies and/or forces; stress unused)
    config : hidden width, l2 and seed of the initial weights (other fields unused)
    extra_structures : structures whose features also enter the standardisation (e.g. the target's)

    Returns
    -------
    dict with ``theta`` (packed W (1,C,F,H), b, w (1,C,H), bo), ``mean``, ``std`` (C, F), ``scale`` (eV),
    ``levels`` (names in order of the schedule), ``seconds``

    Raises
    ------
    LabelError
        No levels or a level without labels.
    """
    from scipy.optimize import minimize

    cfg = config or MLPMultiFidelityConfig()
    if not levels:
        raise LabelError("reptile_pretrain needs at least one level")
    t0 = time.perf_counter()
    C, F, H = len(basis.species), basis.n_features, int(cfg.hidden)
    cache: dict = {}
    probs = []
    geos = []
    for d in levels:
        ents = _entries(basis, [d], [d.fidelity], cfg, [np.arange(len(d.structures))], cache)
        if not ents:
            raise LabelError(f"level {d.fidelity!r} has no labels")
        probs.append((d.fidelity, ents))
        geos.append(ents[0]["geo"])
    X = np.vstack([g.X for g in geos] + ([DescriptorSet(basis, extra_structures).features] if len(extra_structures)
                                         else []))
    ch = np.concatenate([g.ch for g in geos] + ([DescriptorSet(basis, extra_structures).channels]
                                                if len(extra_structures) else []))
    mean, std = fit_standardiser(X, ch, C)
    Fl = [e["F"] for _, ents in probs for e in ents if e["F"] is not None]
    scale = output_scale(np.concatenate(Fl) if Fl else None)  # 1 without forces
    arch = Architecture(C, F, (H,))
    objs = []
    for name, ents in probs:
        e = ents[0]
        e0 = np.zeros((1, C))
        if e["E"] is not None:
            e0[0] = fit_e0(e["geo"].ds.atoms_list, e["geo"].ch, e["E"], C)
        objs.append(_Problem(ents, arch, mean, std, scale, e0, cfg.l2, cfg.activation))
    theta = arch.init(cfg.seed)
    sched = np.random.default_rng(seed)
    order = []
    for t in range(outer):
        k = int(sched.integers(len(objs)))
        order.append(probs[k][0])
        res = minimize(lambda th: objs[k](th), theta, jac=True, method="L-BFGS-B",
                       options={"maxiter": inner, "maxcor": 20})
        eps = epsilon * (1.0 - t / outer)
        theta = theta + eps * (np.asarray(res.x) - theta)
    return {"theta": theta, "mean": mean, "std": std, "scale": scale, "levels": order,
            "seconds": time.perf_counter() - t0}
