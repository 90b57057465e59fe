"""Shared machinery of models whose atomic energy is a nonlinear function of the descriptors.

Models of the form E = Σ_i [E0(Z_i) + ε_{Z_i}(B_i)] (a per-species MLP, a linear model on
polynomial features of B) differ only in ε. Everything else lives here:

* :class:`DescriptorSet`: features, per-(i, k) position gradients ∂B_i/∂r_k and strain
  gradients of a list of training structures, computed once with :func:`minbasis.describe`
  in chunks of structures and kept in memory up to a byte budget (chunks beyond the budget
  are recomputed whenever they are needed, so memory stays bounded for any data set size);
* :func:`forces_from_gradients` / :func:`gradient_adjoint`: the chain rule
  F_k = −Σ_{(i,k)} ∂E_i/∂B_i · ∂B_i/∂r_k and its transpose (Numba);
* :func:`predict_atomic`: energies, forces and stress of any such model *without* the
  descriptor Jacobian — ∂E_i/∂B_i is computed per atom and back-propagated through the ACE
  contraction by the linear-model kernel, one "channel" per atom (cost ≈ two linear
  evaluations);
* per-species standardisation and E0 by least squares on composition.

The versioned, hashed model files of every model kind are in :mod:`minbasis.fit.fileio`.

Sign conventions follow docs/theory/conventions.md: F = −∂E/∂r; stress σ = (1/V) ∂E/∂ε (eV/Å³, Voigt
order xx, yy, zz, yz, xz, xy), ∂B_i/∂ε_ab = Σ_j (r_ij)_a ∂B_i/∂(r_ij)_b.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import numpy as np
from ase import Atoms
from numba import njit

from ..basis import Basis
from ..describe import describe, iter_batches
from ..errors import LabelError, MinbasisError, SpeciesError
from ..kernels import as_atoms_list, linear_energy_forces
from ..kernels.evaluate import features as _kernel_features
from .data import Labels, check_config_type_weights
from .fidelity import resolve_fidelity, single_fidelity_names
from .model import MinbasisCalculator, Prediction, PredictionAccumulator

__all__ = ["DescriptorChunk", "DescriptorSet", "forces_from_gradients", "gradient_adjoint", "predict_atomic",
           "species_channels", "fit_standardiser", "fit_e0", "AtomicEnergyModel", "labels_weights", "check_finite"]


# -- chain rule kernels ---------------------------------------------------------------------------
@njit(cache=True, fastmath=True)
def _forces_kernel(samples, J, g, out):  # pragma: no cover - compiled
    G = samples.shape[0]
    F = J.shape[2]
    for s in range(G):
        i = samples[s, 0]
        k = samples[s, 1]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        for f in range(F):
            gf = g[i, f]
            a0 += J[s, 0, f] * gf
            a1 += J[s, 1, f] * gf
            a2 += J[s, 2, f] * gf
        out[k, 0] -= a0
        out[k, 1] -= a1
        out[k, 2] -= a2


@njit(cache=True, fastmath=True)
def _adjoint_kernel(samples, J, r, out):  # pragma: no cover - compiled
    G = samples.shape[0]
    F = J.shape[2]
    for s in range(G):
        i = samples[s, 0]
        k = samples[s, 1]
        r0 = r[k, 0]
        r1 = r[k, 1]
        r2 = r[k, 2]
        for f in range(F):
            out[i, f] += J[s, 0, f] * r0 + J[s, 1, f] * r1 + J[s, 2, f] * r2


def forces_from_gradients(samples: np.ndarray, J: np.ndarray, g: np.ndarray, n_atoms: int) -> np.ndarray:
    """Forces of E = Σ_i E_i(B_i) from per-atom energy gradients, by the chain rule.

    F_k = −Σ_{samples (i, k)} J[(i,k)] · g_i (docs/theory/conventions.md).

    Parameters
    ----------
    samples : (G, 2) int64, rows [i, k] (indices local to ``g`` and the output)
    J : (G, 3, F) float64, ∂B_i/∂r_k in 1/Å per feature unit (``Descriptors.position_gradients``)
    g : (N, F) float64, ∂E_i/∂B_i in eV per feature unit
    n_atoms : int, number of output rows (≥ every k)

    Returns
    -------
    (n_atoms, 3) float64 forces in eV/Å.
    """
    out = np.zeros((n_atoms, 3))
    _forces_kernel(np.ascontiguousarray(samples, dtype=np.int64), np.ascontiguousarray(J, dtype=np.float64),
                   np.ascontiguousarray(g, dtype=np.float64), out)
    return out


def gradient_adjoint(samples: np.ndarray, J: np.ndarray, r: np.ndarray, n_atoms: int) -> np.ndarray:
    """Transpose of :func:`forces_from_gradients` (up to its sign): v_i = Σ_{(i,k)} J[(i,k)]ᵀ r_k.

    Parameters
    ----------
    samples : (G, 2) int64 rows [i, k]; J : (G, 3, F) float64; r : (K, 3) float64 per-atom vectors
    n_atoms : int, number of centres i (rows of the output)

    Returns
    -------
    (n_atoms, F) float64; if r = ∂L/∂F then ∂L/∂g = −v.
    """
    out = np.zeros((n_atoms, J.shape[2]))
    _adjoint_kernel(np.ascontiguousarray(samples, dtype=np.int64), np.ascontiguousarray(J, dtype=np.float64),
                    np.ascontiguousarray(r, dtype=np.float64), out)
    return out


# -- species, standardisation, E0 ---------------------------------------------------------------
def species_channels(basis: Basis, atoms_list: Sequence[Atoms]) -> np.ndarray:
    """Channel (index into ``basis.species``) of every atom, structures concatenated.

    Returns
    -------
    (total atoms,) int64

    Raises
    ------
    SpeciesError
        An atom whose element is not in ``basis.species``.
    """
    numbers = np.asarray(basis.plan.numbers)
    lookup = np.full(max(int(numbers.max()), max(int(a.numbers.max()) for a in atoms_list)) + 1, -1, dtype=np.int64)
    lookup[numbers] = np.arange(len(numbers))
    ch = np.concatenate([lookup[a.numbers] for a in atoms_list])
    if (ch < 0).any():
        from ase.data import chemical_symbols

        bad = sorted({chemical_symbols[z] for a in atoms_list for z in a.numbers if z not in set(numbers.tolist())})
        raise SpeciesError(f"species {bad} are not in the basis species {list(basis.species)}")
    return ch


def fit_standardiser(X: np.ndarray, ch: np.ndarray, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-species mean and standard deviation of the features (for x = (B − μ_s) / σ_s).

    Features that do not vary for a species (σ ≤ 1e-12 · max σ, e.g. moments of an absent
    neighbour species) get σ = 1; species absent from ``X`` get μ = 0, σ = 1.

    Parameters
    ----------
    X : (N, F) features; ch : (N,) channel of each row; n_channels : int

    Returns
    -------
    mean, std : (n_channels, F) float64
    """
    F = X.shape[1]
    mean = np.zeros((n_channels, F))
    std = np.ones((n_channels, F))
    for c in range(n_channels):
        rows = X[ch == c]
        if len(rows):
            mean[c] = rows.mean(axis=0)
            s = rows.std(axis=0)
            tiny = s <= 1e-12 * max(float(s.max()), 1e-300)
            std[c] = np.where(tiny, 1.0, s)
    return mean, std


def fit_e0(atoms_list: Sequence[Atoms], ch: np.ndarray, energy: np.ndarray | None, n_channels: int,
           given: dict | None = None, species: Sequence[str] = ()) -> np.ndarray:
    """Reference energies E0 per species, eV (docs/theory/fitting.md).

    Given isolated-atom energies are used as they are; otherwise E0 is the minimum-norm least-
    squares solution of Σ_s n_{m,s} E0_s ≈ E_m over the training structures (as the linear fit
    does; for a single composition only Σ_s n_s E0_s is determined). Without energies E0 = 0.

    Returns
    -------
    (n_channels,) float64

    Raises
    ------
    LabelError
        ``given`` lacks a species.
    """
    if given is not None:
        missing = [s for s in species if s not in given]
        if missing:
            raise LabelError(f"e0 lacks isolated-atom energies for {missing}")
        return np.array([float(given[s]) for s in species])
    if energy is None:
        return np.zeros(n_channels)
    counts = np.zeros((len(atoms_list), n_channels))
    start = 0
    for m, a in enumerate(atoms_list):
        counts[m] = np.bincount(ch[start:start + len(a)], minlength=n_channels)
        start += len(a)
    return np.linalg.lstsq(counts, np.asarray(energy, dtype=float), rcond=None)[0]


# -- descriptor sets -----------------------------------------------------------------------------
@dataclass
class DescriptorChunk:
    """Descriptors of a contiguous run of structures, indices local to the chunk.

    Attributes (n atoms, m structures, G samples, F features)
    ----------
    start, stop : int, structures [start, stop) of the parent :class:`DescriptorSet`
    X : (n, F) features; ch : (n,) channels; struct : (n,) local structure of each atom
    atom_ptr : (m+1,) offsets; volume : (m,) Å³ (NaN unless periodic in all directions)
    samples : (G, 2) int64 [i, k]; J : (G, 3, F) ∂B_i/∂r_k (1/Å); S : (n, 3, 3, F) ∂B_i/∂ε or None
    """

    start: int
    stop: int
    X: np.ndarray
    ch: np.ndarray
    struct: np.ndarray
    atom_ptr: np.ndarray
    volume: np.ndarray
    samples: np.ndarray
    J: np.ndarray
    S: np.ndarray | None

    @property
    def n_atoms(self) -> int:
        """Atoms in the chunk."""
        return len(self.ch)

    @property
    def n_structures(self) -> int:
        """Structures in the chunk."""
        return self.stop - self.start

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return sum(a.nbytes for a in (self.X, self.samples, self.J) + ((self.S,) if self.S is not None else ()))


class DescriptorSet:
    """Features and gradients of a list of structures for training nonlinear models.

    The structures are split into chunks of about ``chunk_bytes`` of gradients each
    (estimated as n_atoms · min(n_atoms, 60) samples per structure) and each chunk is
    computed once with :func:`minbasis.describe` (``gradients=True``). Chunks are cached in
    memory while the total stays below ``cache_bytes``; the rest are recomputed on every
    access (slower, but memory stays bounded). ``max_structures`` caps the structures per chunk
    (mini-batches of stochastic optimisers).

    Parameters
    ----------
    basis : Basis
    atoms_list : list of ase.Atoms
    strain : bool, also compute strain gradients (for stress)
    chunk_bytes, cache_bytes : float, byte budgets
    max_structures : int or None
    progress : bool, tqdm bar while computing

    Attributes
    ----------
    n_structures, n_atoms, n_features, n_channels : int
    channels : (n_atoms,) int64 channel of every atom; atom_ptr : (M+1,) offsets
    features : (n_atoms, F) all features (always kept; small)

    Raises
    ------
    StructureError / SpeciesError
        As :func:`minbasis.describe`.
    """

    def __init__(self, basis: Basis, atoms_list: Sequence[Atoms], *, strain: bool = False,
                 chunk_bytes: float = 128 * 1024**2, cache_bytes: float = 2 * 1024**3,
                 max_structures: int | None = None, progress: bool = False):
        self.basis = basis
        self.atoms_list = as_atoms_list(atoms_list)
        self.strain = bool(strain)
        self.n_features = basis.n_features
        self.n_channels = len(basis.species)
        self.channels = species_channels(basis, self.atoms_list)
        sizes = np.array([len(a) for a in self.atoms_list])
        self.atom_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_structures = len(self.atoms_list)
        self.n_atoms = int(self.atom_ptr[-1])
        per_sample = 3 * self.n_features * 8
        est = sizes * np.minimum(sizes, 60) * per_sample + (sizes * 9 * self.n_features * 8 if strain else 0)
        bounds = [0]
        acc = 0.0
        for m in range(self.n_structures):
            full = max_structures is not None and m - bounds[-1] >= max_structures
            if m > bounds[-1] and (acc + est[m] > chunk_bytes or full):
                bounds.append(m)
                acc = 0.0
            acc += est[m]
        bounds.append(self.n_structures)
        self._bounds = list(zip(bounds[:-1], bounds[1:]))
        self._cache: list[DescriptorChunk | None] = [None] * len(self._bounds)
        self.features = np.zeros((self.n_atoms, self.n_features))
        cached = 0.0
        bar = None
        if progress:
            from ..progress import progress_bar

            bar = progress_bar(total=self.n_structures, desc="descriptor gradients", unit="structure")
        try:
            for c, (a, b) in enumerate(self._bounds):
                chunk = self._compute(a, b)
                self.features[self.atom_ptr[a]:self.atom_ptr[b]] = chunk.X
                if cached + chunk.nbytes <= cache_bytes:
                    self._cache[c] = chunk
                    cached += chunk.nbytes
                if bar is not None:
                    bar.update(b - a)
        finally:
            if bar is not None:
                bar.close()
        self.cached_bytes = cached
        self.fully_cached = all(c is not None for c in self._cache)

    def _compute(self, a: int, b: int) -> DescriptorChunk:
        frames = self.atoms_list[a:b]
        d = describe(frames, self.basis, gradients=True, strain_gradients=self.strain)
        a0, a1 = self.atom_ptr[a], self.atom_ptr[b]
        ptr = self.atom_ptr[a:b + 1] - a0
        struct = np.repeat(np.arange(b - a), np.diff(ptr))
        vol = np.array([abs(f.get_volume()) if f.pbc.all() else np.nan for f in frames])
        return DescriptorChunk(start=a, stop=b, X=d.features, ch=self.channels[a0:a1], struct=struct, atom_ptr=ptr,
                               volume=vol, samples=np.ascontiguousarray(d.gradient_samples, dtype=np.int64),
                               J=d.position_gradients, S=d.strain_gradients)

    def __len__(self) -> int:
        return len(self._bounds)

    def chunk(self, c: int) -> DescriptorChunk:
        """Chunk ``c`` (from the cache, or recomputed)."""
        got = self._cache[c]
        return got if got is not None else self._compute(*self._bounds[c])

    def __iter__(self) -> Iterator[DescriptorChunk]:
        for c in range(len(self._bounds)):
            yield self.chunk(c)


# -- prediction without the Jacobian -----------------------------------------------------------------
def predict_atomic(basis: Basis, atoms_or_list: Atoms | Sequence[Atoms],
                   energy_and_gradient: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                   progress: bool = False):
    """Energies, forces and stress of E = Σ_i ε(B_i, s_i) given per-atom energies and gradients.

    Two passes per batch: (1) features B (no gradients) and ``energy_and_gradient(B, ch)`` →
    (E_i (N,) eV, ∂E_i/∂B_i (N, F) eV per feature unit); (2) the linear-model kernel with one
    weight row per atom back-propagates ∂E_i/∂B_i through the moments to pair gradients, then
    forces and virial (docs/theory/conventions.md) — no (pairs × 3 × F) Jacobian is stored.

    Returns
    -------
    :class:`~minbasis.fit.model.Prediction` (energy (M,) eV, forces (n_atoms, 3) eV/Å per
    structure, stress (M, 6) eV/Å³ or NaN rows for non-periodic structures, atomic energies).

    Raises
    ------
    StructureError / SpeciesError
        For invalid structures or species outside the basis.
    """
    atoms_list = as_atoms_list(atoms_or_list)
    plan = basis.plan
    acc = PredictionAccumulator()
    for _, chunk, batch in iter_batches(atoms_list, basis, 256 * 1024**2, 64.0 + 8.0 * plan.n_features,
                                        "predict" if progress else None):
        X, _ = _kernel_features(plan, batch)
        E, g = energy_and_gradient(X, batch.centre_ch)
        N = batch.n_atoms
        per_atom = replace(batch, centre_ch=np.arange(N, dtype=np.int64))
        _, Fo, W = linear_energy_forces(plan, per_atom, np.ascontiguousarray(g), np.zeros(N))
        acc.add(chunk, batch, E, Fo, W)
    return acc.result()


class AtomicEnergyModel:
    """Mixin for single-fidelity models E = Σ_i ε(B_i, s_i) that define ``basis``, ``info`` and
    ``atomic_energies_and_gradients(B (N, F), channels (N,)) -> (E_i (N,) eV, ∂E_i/∂B_i (N, F))``:
    gives them the prediction part of the :class:`~minbasis.fit.registry.Model` protocol
    (:attr:`fidelities`, :meth:`predict`, :meth:`calculator`)."""

    @property
    def fidelities(self) -> list[str]:
        """Names of the levels of theory the model predicts: ``[info["fidelity"]]`` when the fit
        recorded one, else ``[]`` (a single unnamed fidelity)."""
        return single_fidelity_names(getattr(self, "info", {}))

    def predict(self, atoms_or_list: Atoms | Sequence[Atoms], fidelity: str | None = None,
                progress: bool = False) -> Prediction:
        """Energies (eV), forces (eV/Å) and stress (eV/Å³, periodic structures) as a
        :class:`~minbasis.fit.model.Prediction` (no descriptor Jacobian is built).

        ``fidelity`` may be None or the model's own fidelity name
        (:func:`~minbasis.fit.fidelity.resolve_fidelity`).

        Raises
        ------
        MinbasisError
            Another fidelity name.
        StructureError / SpeciesError
            For invalid structures or species outside the basis.
        """
        resolve_fidelity(self.fidelities, fidelity)
        return predict_atomic(self.basis, atoms_or_list, self.atomic_energies_and_gradients, progress)

    def calculator(self, fidelity: str | None = None) -> MinbasisCalculator:
        """An ASE calculator (:class:`~minbasis.fit.model.MinbasisCalculator`) for this model.

        Raises
        ------
        MinbasisError
            A fidelity other than None or the model's own.
        """
        resolve_fidelity(self.fidelities, fidelity)
        return MinbasisCalculator(self)


def labels_weights(labels: Labels, cfg) -> np.ndarray:
    """Per-structure config_type weight factor (M,) from ``cfg.config_type_weights``.

    Raises
    ------
    LabelError
        Weights that are not finite numbers in [0, 1e150], or all structures weighted 0
        (:func:`~minbasis.fit.data.check_config_type_weights`).
    """
    ctw = check_config_type_weights(cfg.config_type_weights, labels.config_type)
    return np.array([ctw.get(str(ct), 1.0) for ct in labels.config_type])


def check_finite(name: str, *arrays: np.ndarray) -> None:
    """Raise :class:`MinbasisError` unless every array is finite."""
    for a in arrays:
        if not np.isfinite(a).all():
            raise MinbasisError(f"{name}: parameters must be finite")
