"""Fitted linear models: prediction, versioned files, ASE calculator."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ..basis import Basis
from ..describe import iter_batches
from ..errors import MinbasisError
from ..kernels import as_atoms_list, linear_energy_forces
from .data import matrix_to_voigt
from .fidelity import resolve_fidelity, single_fidelity_names
from .fileio import load_model_file, write_model_file

__all__ = ["LinearModel", "Prediction", "PredictionAccumulator", "MinbasisCalculator"]


@dataclass
class Prediction:
    """Predictions for M structures: energy (M,) eV, forces list of (n_atoms, 3) eV/Å,
    stress (M, 6) eV/Å³ Voigt (NaN rows for structures not periodic in all directions),
    per-atom energies list of (n_atoms,) eV."""

    energy: np.ndarray
    forces: list[np.ndarray]
    stress: np.ndarray
    atomic_energies: list[np.ndarray] = field(default_factory=list)


class PredictionAccumulator:
    """Splits batched per-atom results into per-structure ones and builds a :class:`Prediction`.

    ``add(chunk, batch, E, forces, virial)`` takes per-atom energies E (N,) eV, forces (N, 3) eV/Å
    and per-structure virials W (M, 3, 3) eV of one batch; stress is −W/V (Voigt, eV/Å³) for
    structures periodic in all directions, NaN otherwise.
    """

    def __init__(self) -> None:
        self.energies, self.forces, self.stresses, self.atomic = [], [], [], []

    def add(self, chunk: Sequence[Atoms], batch, E: np.ndarray, forces: np.ndarray, virial: np.ndarray) -> None:
        for m, atoms in enumerate(chunk):
            a0, a1 = batch.atom_ptr[m], batch.atom_ptr[m + 1]
            self.atomic.append(E[a0:a1])
            self.energies.append(E[a0:a1].sum())
            self.forces.append(forces[a0:a1])
            if atoms.pbc.all():
                self.stresses.append(matrix_to_voigt(-virial[m] / abs(atoms.get_volume())))
            else:
                self.stresses.append(np.full(6, np.nan))

    def result(self) -> Prediction:
        return Prediction(energy=np.asarray(self.energies), forces=self.forces, stress=np.asarray(self.stresses),
                          atomic_energies=self.atomic)


@dataclass
class LinearModel:
    """Linear ACE potential E = Σ_i [e0[s_i] + weights[s_i] · B_i].

    Attributes
    ----------
    basis : Basis
    weights : (n_channels, n_features) float64, eV per feature unit, one row per centre species
    e0 : (n_channels,) float64, eV
    info : dict, provenance of the fit (solver, regularisation, keys, weights)
    repulsion : :class:`~minbasis.repulsion.ZBLCore` or None
        Optional fixed repulsive pair core added to the energy (zero beyond its inner cutoff;
        its species must be the basis species, in the same order).
    """

    #: Model kind in files and in :mod:`minbasis.fit.registry`.
    kind: ClassVar[str] = "linear"

    basis: Basis
    weights: np.ndarray
    e0: np.ndarray
    info: dict = field(default_factory=dict)
    repulsion: object = None

    def __post_init__(self) -> None:
        """Check shapes and finiteness here, so that no kernel ever reads out of bounds.

        Raises
        ------
        MinbasisError
            ``weights`` not (n_species, n_features), ``e0`` not (n_species,), or non-finite values.
        """
        if not isinstance(self.basis, Basis):
            raise TypeError(f"basis must be a minbasis.Basis, got {type(self.basis).__name__}")
        C, F = len(self.basis.species), self.basis.n_features
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        self.e0 = np.ascontiguousarray(self.e0, dtype=np.float64)
        if self.weights.shape != (C, F):
            raise MinbasisError(f"weights must have shape (n_species, n_features) = ({C}, {F}), got {self.weights.shape}")
        if self.e0.shape != (C,):
            raise MinbasisError(f"e0 must have shape (n_species,) = ({C},), got {self.e0.shape}")
        if not (np.isfinite(self.weights).all() and np.isfinite(self.e0).all()):
            raise MinbasisError("weights and e0 must be finite")
        if self.repulsion is not None:
            from ..repulsion import ZBLCore

            if not isinstance(self.repulsion, ZBLCore):
                raise MinbasisError(f"repulsion must be a minbasis.repulsion.ZBLCore, got {type(self.repulsion).__name__}")
            if tuple(self.repulsion.species) != tuple(self.basis.species):
                raise MinbasisError(f"repulsive core species {list(self.repulsion.species)} differ from the basis "
                                    f"species {list(self.basis.species)}")
            if self.repulsion.r_max > self.basis.r_cut:
                raise MinbasisError(f"repulsive core inner cutoff {self.repulsion.r_max:.3g} Å exceeds r_cut "
                                    f"{self.basis.r_cut} Å")
        self._folded = None

    def folded_weights(self) -> np.ndarray:
        """The weights folded into the terms of the evaluation plan, wt[c, t] = weights[c, t_feat[t]]
        · t_coef[t], float64 (n_channels, n_terms), as :func:`~minbasis.kernels.ace.ace_linear` takes
        them. Computed once and cached; recomputed only if ``weights`` was changed (compared with
        the copy it was folded from, which costs O(n_channels · n_features), far less than the fold)."""
        cache = self._folded
        if cache is not None and cache[0].shape == self.weights.shape and np.array_equal(cache[0], self.weights):
            return cache[1]
        plan = self.basis.plan
        wt = np.ascontiguousarray(self.weights[:, plan.t_feat] * plan.t_coef[None, :])
        self._folded = (self.weights.copy(), wt)
        return wt

    @property
    def fidelities(self) -> list[str]:
        """``[info["fidelity"]]`` for a head of a multi-fidelity model, else ``[]`` (one unnamed fidelity)."""
        return single_fidelity_names(self.info)

    def predict(self, atoms_or_list: Atoms | Sequence[Atoms], fidelity: str | None = None, progress: bool = False,
                device: str = "cpu") -> Prediction:
        """Energies, forces and stress (back-propagated through the moments; no Jacobian).

        ``device="gpu"`` evaluates with CuPy on the current CUDA device, in float64
        (:func:`minbasis.kernels.gpu.xp_linear_energy_forces`); the :class:`Prediction` holds
        NumPy arrays either way. A model with a repulsive core is evaluated on the CPU.

        Raises
        ------
        StructureError / SpeciesError
            For invalid structures or species outside the basis.
        MinbasisError
            A ``fidelity`` other than None or the model's own (:func:`~minbasis.fit.fidelity.resolve_fidelity`);
            an unknown ``device``, or device="gpu" without CuPy or a usable CUDA device.
        """
        resolve_fidelity(self.fidelities, fidelity)
        xp = None
        if device != "cpu":
            from ..kernels.gpu import array_module, to_numpy, xp_linear_energy_forces

            xp = array_module(device)
        atoms_list = as_atoms_list(atoms_or_list)
        plan = self.basis.plan
        acc = PredictionAccumulator()
        if self.repulsion is None:
            batches = iter_batches(atoms_list, self.basis, 256 * 1024**2, 64.0, "predict" if progress else None)
        else:
            batches = self._batches_with_core(atoms_list)
        for _, chunk, batch in batches:
            if self.repulsion is not None:
                E, Fo, W = self._with_core(batch)
            elif xp is None:
                E, Fo, W = linear_energy_forces(plan, batch, self.weights, self.e0, folded=self.folded_weights())
            else:
                E, Fo, W = (to_numpy(a) for a in xp_linear_energy_forces(plan, batch, self.weights, self.e0, xp))
            acc.add(chunk, batch, E, Fo, W)
        return acc.result()

    def _batches_with_core(self, atoms_list: list[Atoms], chunk_atoms: int = 65536):
        """Batches as :func:`~minbasis.describe.iter_batches`, but overlapping atoms (closer than
        :data:`~minbasis.kernels.neighbours.MIN_DISTANCE`) give a warning instead of an error:
        the repulsive core keeps the energy finite and rising there."""
        import warnings

        from ..kernels import build_batch
        from ..kernels.neighbours import MIN_DISTANCE

        plan = self.basis.plan
        start = 0
        while start < len(atoms_list):
            stop, n = start, 0
            while stop < len(atoms_list) and (stop == start or n + len(atoms_list[stop]) <= chunk_atoms):
                n += len(atoms_list[stop])
                stop += 1
            chunk = atoms_list[start:stop]
            batch = build_batch(chunk, plan.species, plan.numbers, plan.r_cut, min_distance=0.0)
            if len(batch.pair_vec):
                d = np.sqrt(np.einsum("pa,pa->p", batch.pair_vec, batch.pair_vec))
                q = int(np.argmin(d))
                if d[q] < MIN_DISTANCE:
                    warnings.warn(f"structure {start + int(batch.pair_struct[q])}: atoms overlap (distance {d[q]:.3g} Å "
                                  f"< {MIN_DISTANCE} Å); the repulsive core keeps the energy finite", RuntimeWarning,
                                  stacklevel=3)
            yield start, chunk, batch
            start = stop

    def _with_core(self, batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(E (N,), forces (N, 3), virial (M, 3, 3)) of a batch with the repulsive core (CPU)."""
        from ..kernels.ace import n_chunks_for, scatter_pair_gradients

        E = np.zeros(batch.n_atoms)
        G = np.zeros((len(batch.pair_i), 3))
        _core_linear(self.basis.plan, self, batch, E, G, n_chunks_for(batch.n_atoms))
        forces = np.zeros((batch.n_atoms, 3))
        virial = np.zeros((batch.n_structures, 3, 3))
        scatter_pair_gradients(batch.pair_i, batch.pair_j, batch.pair_vec, batch.pair_struct, G, forces, virial)
        return E, forces, virial

    def calculator(self, fidelity: str | None = None, **kwargs) -> "MinbasisCalculator":
        """An ASE calculator for this model (keyword arguments: :class:`MinbasisCalculator`,
        e.g. ``skin``).

        Raises
        ------
        MinbasisError
            A ``fidelity`` other than None or the model's own.
        """
        resolve_fidelity(self.fidelities, fidelity)
        return MinbasisCalculator(self, **kwargs)

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model (basis included) as a versioned, hashed .npz file, atomically
        (:func:`minbasis.fit.fileio.write_model_file`, kind ``"linear"``).

        Raises
        ------
        OSError
            The file cannot be written.
        """
        hyper = {} if self.repulsion is None else {"repulsion": self.repulsion.to_dict()}
        write_model_file(path, self.kind, self.basis, {"weights": self.weights, "e0": self.e0}, hyper, self.info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LinearModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileFormatError
            Missing or corrupt file, another format version or model kind, wrong shapes, or a
            content-hash mismatch (edited file).
        """
        def build(basis, a, hyper, info):
            core = None
            if hyper.get("repulsion") is not None:
                from ..repulsion import ZBLCore

                core = ZBLCore.from_dict(hyper["repulsion"])
            return cls(basis=basis, weights=a["weights"], e0=a["e0"], info=info, repulsion=core)

        return load_model_file(path, cls.kind, ("weights", "e0"), build)


#: Structures with fewer atoms run the MD path's kernel on one thread.
SERIAL_BELOW_ATOMS = 64


def _core_linear(plan, model, batch, E: np.ndarray, G: np.ndarray, n_chunks: int, work: dict | None = None) -> None:
    """E (N,) and pair gradients G (P, 3) of a linear model with its repulsive core (clamped ACE
    part, chain rule back to the true pair vectors, plus the ZBL pair term); ``work`` holds
    reusable buffers."""
    from ..kernels.ace import ace_linear

    core = model.repulsion
    P = len(batch.pair_i)
    work = {} if work is None else work
    if work.get("vec") is None or work["vec"].shape[0] < P:
        work["vec"] = np.empty((max(P, int(1.2 * P)), 3))
        work["fac"] = np.empty((max(P, int(1.2 * P)), 2))
    vec, fac = work["vec"][:P], work["fac"][:P]
    core.clamped_vectors(batch, vec, fac)
    ace_linear(batch.centre_ptr, batch.centre_ch, vec, batch.pair_ch, plan.n_channels, plan.r_cut, plan.scale,
               plan.n_r, plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order, plan.t_idx, plan.o_ptr, plan.t_pack,
               model.folded_weights(), model.e0, n_chunks, E, G)
    core.unclamp_gradients(batch, fac, G)
    core.fade_many_body(batch, model.e0, E, G)
    core.add_to(batch, E, G)


class _LinearEngine:
    """The MD hot path of a :class:`LinearModel` on one structure: a neighbour list with a skin
    (:class:`~minbasis.kernels.skin.SkinNeighbourList`), the folded weights of the model, and
    buffers reused from step to step (reallocated only when the list is rebuilt larger)."""

    def __init__(self, model: LinearModel, skin: float, overlap: str):
        from ..kernels.skin import SkinNeighbourList

        plan = model.basis.plan
        self.model = model
        self.plan = plan
        self.nl = SkinNeighbourList(plan.species, plan.numbers, plan.r_cut, skin, overlap=overlap)
        self._G = np.zeros((0, 3))
        self._n_chunks = None
        self._work: dict = {}

    def compute(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(energy eV, per-atom energies (N,) eV, forces (N, 3) eV/Å, virial (3, 3) eV) of ``atoms``."""
        from ..kernels.ace import ace_linear, n_chunks_for, scatter_pair_gradients

        batch = self.nl.update(atoms)
        plan, model = self.plan, self.model
        P = len(batch.pair_i)
        N = batch.n_atoms
        if self._G.shape[0] < P:
            self._G = np.zeros((max(P, int(1.2 * P)), 3))
        G = self._G[:P]
        E = np.empty(N)
        if self._n_chunks is None or self._n_chunks[0] != N:
            self._n_chunks = (N, n_chunks_for(N))
        args = (batch.centre_ptr, batch.centre_ch, batch.pair_vec, batch.pair_ch, plan.n_channels, plan.r_cut,
                plan.scale, plan.n_r, plan.l_max, plan.sph_norm, plan.sph_rec, plan.t_order, plan.t_idx, plan.o_ptr,
                plan.t_pack, model.folded_weights(), model.e0, self._n_chunks[1], E, G)
        run = (lambda: ace_linear(*args)) if model.repulsion is None else (
            lambda: _core_linear(plan, model, batch, E, G, self._n_chunks[1], self._work))
        if N < SERIAL_BELOW_ATOMS:
            # a few atoms: starting the thread pool costs more than it saves (and on a loaded
            # machine far more), so run the kernel on the calling thread
            import numba

            threads = numba.get_num_threads()
            numba.set_num_threads(1)
            try:
                run()
            finally:
                numba.set_num_threads(threads)
        else:
            run()
        forces = np.zeros((N, 3))
        virial = np.zeros((1, 3, 3))
        scatter_pair_gradients(batch.pair_i, batch.pair_j, batch.pair_vec, batch.pair_struct, G, forces, virial)
        return float(E.sum()), E, forces, virial[0]


class MinbasisCalculator(Calculator):
    """ASE calculator for a fitted minbasis model: energy, free_energy, energies, forces, stress.

    ``model`` is any object with ``predict(atoms) -> Prediction`` (:class:`LinearModel`,
    :class:`~minbasis.fit.mlp.MLPModel`, :class:`~minbasis.fit.poly.PolynomialModel`).
    Stress (eV/Å³, Voigt, ASE sign convention) is available for structures periodic in all
    three directions.

    For a :class:`LinearModel` (``fast=True``, the default) the calculator keeps its own
    evaluation state across calls, for molecular dynamics: the weights are folded into the
    contraction once per model, the neighbour list is built at r_cut + ``skin`` and reused
    until some atom has moved more than skin/2 (as LAMMPS' ``neighbor skin``), and the pair
    buffers are reused. Results equal ``model.predict`` (same pairs, same kernel; only the
    order of the pair list may differ, which changes sums at the 1e-15 relative level).
    ``fast=False`` calls ``model.predict`` on every step instead.

    Parameters
    ----------
    model : LinearModel, MLPModel, PolynomialModel, …
    skin : float
        Verlet skin in Å (default 1.0; 0 rebuilds the list every call).
    fast : bool
        Use the MD path for linear models (default True).

    Raises
    ------
    TypeError
        ``model`` has no ``predict`` method.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, *, skin: float = 1.0, fast: bool = True, **kwargs):
        if not callable(getattr(model, "predict", None)):
            raise TypeError(f"model must have a predict(atoms) method, got {type(model).__name__}")
        super().__init__(**kwargs)
        self.model = model
        self.skin = float(skin)
        self.fast = bool(fast) and isinstance(model, LinearModel)
        self._engine = None

    @property
    def n_neighbour_builds(self) -> int:
        """How many times the fast path built its neighbour list (0 without the fast path)."""
        return 0 if self._engine is None else self._engine.nl.n_builds

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """Which of positions, numbers, cell, pbc changed since the last calculation (exact
        comparison; ASE's default compares every array with ``allclose``, which costs more than
        the whole force evaluation of a small molecule). With ``fast=False``, ASE's own check."""
        if not self.fast:
            return super().check_state(atoms, tol=tol)
        old = self.atoms
        if old is None or len(old) != len(atoms):
            return list(all_changes)
        changes = []
        if not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.numbers, atoms.numbers):
            changes.append("numbers")
        if not np.array_equal(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Compute energy, free_energy, per-atom energies, forces and (periodic cells) stress."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if self.fast:
            if self._engine is None or self._engine.model is not self.model:
                overlap = "warn" if self.model.repulsion is not None else "error"
                self._engine = _LinearEngine(self.model, self.skin, overlap)
            energy, energies, forces, virial = self._engine.compute(atoms)
            self.results = {"energy": energy, "free_energy": energy, "energies": energies, "forces": forces}
            if atoms.pbc.all():
                self.results["stress"] = matrix_to_voigt(-virial / abs(atoms.get_volume()))
        else:
            pred = self.model.predict(atoms)
            self.results = {"energy": float(pred.energy[0]), "free_energy": float(pred.energy[0]),
                            "energies": pred.atomic_energies[0], "forces": pred.forces[0]}
            if atoms.pbc.all():
                self.results["stress"] = pred.stress[0]
        if "stress" in properties and not atoms.pbc.all():
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a structure periodic in all three directions")
