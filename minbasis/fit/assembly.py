"""One assembly core for every fit that is linear in its coefficients.

Linear ACE, polynomial-feature, multi-fidelity (per fidelity) and PIWSL fits all minimise a
weighted least-squares loss ‖A c − y‖² (+ a prior) whose rows are built here, in one place,
from *raw rows* (unweighted features summed per centre species, force and virial rows):

* energy rows, one per structure with an energy: w_E · w_ct · (E − Σ_i E0(Z_i)) / n_atoms,
  weight ``energy`` in 1/(eV/atom);
* force rows, 3 per atom: w_F · w_ct · F_{k,a}, weight ``forces`` in Å/eV (F = −∂E/∂r);
* virial rows, 6 per periodic structure with stress: w_S · w_ct · V σ / n_atoms (Voigt order
  xx, yy, zz, yz, xz, xy; σ in eV/Å³ with ASE's sign, σ = (1/V) ∂E/∂ε), weight ``stress`` in
  1/(eV/atom);

with w_ct the weight of the structure's ``config_type``. E0 (one energy per species) is not
regularised: energy rows carry weighted composition columns (atoms of each species / n_atoms)
and E0 is eliminated exactly before solving (projection onto the complement of the
composition span), then recovered by least squares.

The rows are never all held in memory: :class:`NormalEquations` accumulates, batch by batch,
the pieces of the normal equations (AᵀA, Aᵀy, yᵀy, the composition block CᵀC, CᵀA, Cᵀy and
row counts), so peak memory is O(P²) plus one batch, whatever the number of structures. While
there are fewer rows than columns it keeps the rows themselves instead (an energy-only fit is
then solved from the n × n matrix A Aᵀ of the rows, which is much cheaper than a P × P
eigendecomposition). Accumulators of disjoint shards merge exactly (:meth:`NormalEquations.merge`),
which is what the Dask path (:mod:`minbasis.fit.distributed`) uses.

Numerics: energy rows are accumulated after subtracting a fixed composition-proportional shift
(CE·K0, which lies in the eliminated span and so changes nothing), so that the Gram form of the
E0 elimination does not cancel when features are large compared with their spread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from ase import Atoms

from ..basis import Basis
from ..describe import iter_batches
from ..errors import LabelError, MinbasisError
from ..kernels import design_blocks
from .data import DEFAULT_WEIGHTS, Labels, matrix_to_voigt

__all__ = ["RowWeights", "RawRows", "raw_rows", "iter_raw_rows", "WeightedRows", "weight_rows", "NormalEquations",
           "LinearSystem", "Entry", "accumulate_entries", "accumulate", "shard_bounds", "SHARD_ATOMS"]

#: Memory budget (bytes) of one batch of raw rows (force rows dominate: 3·n_atoms·P doubles).
BATCH_BYTES = 512 * 1024**2


@dataclass
class RowWeights:
    """Weights of the observables of one data set (one fidelity).

    Attributes
    ----------
    energy : float
        Weight of energy-per-atom rows, 1/(eV/atom) (0 drops energies).
    forces : float
        Weight of force rows, Å/eV (0 drops forces).
    stress : float
        Weight of virial-per-atom rows, 1/(eV/atom) (0 drops stress).
    config_type : dict str → float
        Extra factor per ``atoms.info["config_type"]`` (default 1).

    Raises
    ------
    MinbasisError
        A weight that is negative, not finite or not a number.
    """

    energy: float = DEFAULT_WEIGHTS["energy"]
    forces: float = DEFAULT_WEIGHTS["forces"]
    stress: float = DEFAULT_WEIGHTS["stress"]
    config_type: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("energy", "forces", "stress"):
            try:
                v = float(getattr(self, name))
            except (TypeError, ValueError):
                raise MinbasisError(f"{name} weight must be a number, got {getattr(self, name)!r}") from None
            if not (np.isfinite(v) and v >= 0):
                raise MinbasisError(f"{name} weight must be a finite number >= 0, got {v}")
            setattr(self, name, v)
        ctw = {}
        for k, v in dict(self.config_type or {}).items():
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise MinbasisError(f"config_type weight of {k!r} must be a number, got {v!r}") from None
            if not (np.isfinite(v) and 0 <= v <= 1e150):
                raise MinbasisError(f"config_type weight of {k!r} must be finite, >= 0 and <= 1e150, got {v}")
            ctw[str(k)] = v
        self.config_type = ctw

    def factors(self, config_types: Sequence[str]) -> np.ndarray:
        """Per-structure config_type factor, (M,) float64."""
        return np.array([self.config_type.get(str(ct), 1.0) for ct in config_types], dtype=float)


@dataclass
class RawRows:
    """Unweighted linear-model rows of M structures (P = n_channels · n_features columns).

    Attributes
    ----------
    XE : (M, P) features summed over the atoms of each centre species (E = XE·c + Σ E0)
    XF : (N, 3, P) force rows, F_{k,a} = XF[k, a]·c in eV/Å per coefficient unit
    XV : (M, 6, P) or None, virial rows V·σ (Voigt, eV), periodic structures only
    counts : (M, C) atoms of each species; n_atoms : (M,); atom_ptr : (M+1,)
    volume : (M,) Å³, NaN for structures that are not periodic in all directions
    """

    XE: np.ndarray
    XF: np.ndarray
    XV: np.ndarray | None
    counts: np.ndarray
    n_atoms: np.ndarray
    atom_ptr: np.ndarray
    volume: np.ndarray


def _raw_from_batch(plan, chunk: Sequence[Atoms], batch, with_virial: bool) -> RawRows:
    e, f, v = design_blocks(plan, batch, with_virial=with_virial)
    C = plan.n_channels
    n_atoms = np.array([len(a) for a in chunk])
    counts = np.zeros((len(chunk), C))
    np.add.at(counts, (batch.atom_struct, batch.centre_ch), 1.0)
    vol = np.array([abs(a.get_volume()) if a.pbc.all() else np.nan for a in chunk])
    XV = np.moveaxis(matrix_to_voigt(np.moveaxis(v, -1, 0)), 0, -1) if with_virial else None
    return RawRows(XE=e, XF=f, XV=XV, counts=counts, n_atoms=n_atoms,
                   atom_ptr=np.concatenate([[0], np.cumsum(n_atoms)]), volume=vol)


def iter_raw_rows(basis: Basis, atoms_list: Sequence[Atoms], with_virial: bool = False,
                  budget_bytes: float = BATCH_BYTES, progress: str | None = None) -> Iterator[tuple[int, RawRows]]:
    """Yield (index of the first structure, :class:`RawRows`) for batches of about ``budget_bytes``.

    Raises
    ------
    StructureError / SpeciesError
        Invalid structures or species outside the basis.
    """
    plan = basis.plan
    C, F = plan.n_channels, plan.n_features
    bytes_per_pair = 3 * F * C * 8 + 3 * F * 8 * 2
    for start, chunk, batch in iter_batches(list(atoms_list), basis, budget_bytes, bytes_per_pair, progress):
        yield start, _raw_from_batch(plan, chunk, batch, with_virial)


def raw_rows(basis: Basis, atoms_list: Sequence[Atoms], with_virial: bool = False,
             progress: str | None = None) -> RawRows:
    """All :class:`RawRows` of ``atoms_list`` in one object (holds every force row: small sets only).

    Raises
    ------
    StructureError / SpeciesError
        As :func:`iter_raw_rows`.
    """
    parts = [r for _, r in iter_raw_rows(basis, atoms_list, with_virial, progress=progress)]
    n_atoms = np.concatenate([p.n_atoms for p in parts])
    return RawRows(XE=np.vstack([p.XE for p in parts]), XF=np.concatenate([p.XF for p in parts]),
                   XV=np.concatenate([p.XV for p in parts]) if with_virial else None,
                   counts=np.vstack([p.counts for p in parts]), n_atoms=n_atoms,
                   atom_ptr=np.concatenate([[0], np.cumsum(n_atoms)]),
                   volume=np.concatenate([p.volume for p in parts]))


@dataclass
class WeightedRows:
    """Weighted rows of a batch: energy rows (with composition columns) and other rows.

    Attributes
    ----------
    AE : (nE, P) energy rows; yE : (nE,) targets (eV/atom, weighted); CE : (nE, C) weighted
        composition columns (empty (nE, 0) when E0 is given)
    AO : (nO, P) force, virial and extra rows; yO : (nO,) targets
    n_rows : dict observable → number of rows (``energy``, ``forces``, ``virial``, ``extra``)
    """

    AE: np.ndarray
    yE: np.ndarray
    CE: np.ndarray
    AO: np.ndarray
    yO: np.ndarray
    n_rows: dict


def weight_rows(raw: RawRows, labels: Labels, start: int, weights: RowWeights, e0: np.ndarray | None = None,
                extra: Sequence[tuple[np.ndarray, np.ndarray]] = ()) -> WeightedRows:
    """Turn the raw rows of structures ``start .. start+M`` into weighted least-squares rows.

    Parameters
    ----------
    raw : RawRows of M structures
    labels : Labels of the whole data set (rows ``start:start+M`` are used)
    start : index of the batch's first structure in ``labels``
    weights : RowWeights
    e0 : (C,) isolated-atom energies in eV subtracted from the energy targets, or None (E0 fitted)
    extra : additional (rows (k, P), targets (k,)) blocks appended to the other rows, already
        weighted (PIWSL rows)

    Returns
    -------
    WeightedRows (the row definitions are in the module docstring)
    """
    M = len(raw.n_atoms)
    P = raw.XE.shape[1]
    C = raw.counts.shape[1]
    sl = slice(start, start + M)
    wct = weights.factors(labels.config_type[sl])
    n = raw.n_atoms.astype(float)
    nr = {"energy": 0, "forces": 0, "virial": 0, "extra": 0}
    AE, yE, CE = np.zeros((0, P)), np.zeros(0), np.zeros((0, 0 if e0 is not None else C))
    if labels.energy is not None and weights.energy > 0:
        w = weights.energy * wct / n
        keep = w > 0
        comp = raw.counts[keep]
        target = labels.energy[sl][keep]
        if e0 is not None:
            target = target - comp @ e0
        AE = w[keep, None] * raw.XE[keep]
        yE = w[keep] * target
        CE = w[keep, None] * comp if e0 is None else np.zeros((int(keep.sum()), 0))
        nr["energy"] = int(keep.sum())
    AO, yO = [], []
    if labels.forces is not None and weights.forces > 0:
        wf = np.repeat(weights.forces * wct, raw.n_atoms * 3)
        keep = wf > 0
        AO.append(wf[keep, None] * raw.XF.reshape(-1, P)[keep])
        yO.append(wf[keep] * np.concatenate([f.reshape(-1) for f in labels.forces[sl]])[keep])
        nr["forces"] = int(keep.sum())
    if labels.stress is not None and weights.stress > 0 and raw.XV is not None:
        st = labels.stress[sl]
        has = np.isfinite(st).all(axis=1) & (wct > 0) & np.isfinite(raw.volume)
        for m in np.flatnonzero(has):
            ws = weights.stress * wct[m] / n[m]
            AO.append(ws * raw.XV[m])
            yO.append(ws * raw.volume[m] * st[m])
            nr["virial"] += 6
    for rows, targets in extra:
        AO.append(np.asarray(rows, dtype=float).reshape(-1, P))
        yO.append(np.asarray(targets, dtype=float).reshape(-1))
        nr["extra"] += len(yO[-1])
    return WeightedRows(AE=AE, yE=yE, CE=CE, AO=np.vstack(AO) if AO else np.zeros((0, P)),
                        yO=np.concatenate(yO) if yO else np.zeros(0), n_rows=nr)


def _pinv_sym(M: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a small symmetric positive semi-definite matrix."""
    if not M.size:
        return M
    s, U = np.linalg.eigh(M)
    keep = s > 1e-10 * max(s.max(), 1e-300)
    return (U[:, keep] / s[keep]) @ U[:, keep].T


@dataclass
class LinearSystem:
    """The least-squares problem with E0 eliminated, in one of two equivalent forms.

    ``form == "gram"``: G = AᵀA (P, P), b = Aᵀy (P,), yy = yᵀy; ``form == "rows"``: the rows
    A (n, P) and targets y (n,) themselves (used when n < P). ``n_rows`` is the number of rows
    minus the eliminated E0 directions (the effective number of observations).
    """

    form: str
    P: int
    n_rows: int
    G: np.ndarray | None = None
    b: np.ndarray | None = None
    yy: float = 0.0
    A: np.ndarray | None = None
    y: np.ndarray | None = None

    def gram(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(G, b, yy) whatever the form."""
        if self.form == "gram":
            return self.G, self.b, self.yy
        return self.A.T @ self.A, self.A.T @ self.y, float(self.y @ self.y)

    def diag(self) -> np.ndarray:
        """Diagonal of AᵀA, (P,)."""
        return np.diag(self.G).copy() if self.form == "gram" else np.einsum("ij,ij->j", self.A, self.A)

    def restrict(self, active: np.ndarray, scale: np.ndarray) -> "LinearSystem":
        """The system in the columns ``active``, each divided by ``scale`` (unit-RMS coordinates)."""
        s = scale[active]
        if self.form == "gram":
            return LinearSystem("gram", int(active.sum()), self.n_rows, G=self.G[np.ix_(active, active)] / np.outer(s, s),
                                b=self.b[active] / s, yy=self.yy)
        return LinearSystem("rows", int(active.sum()), self.n_rows, A=self.A[:, active] / s, y=self.y)


class NormalEquations:
    """Streaming accumulator of the normal-equation pieces of one data set / fidelity.

    Use :meth:`add` per batch of :class:`WeightedRows`, :meth:`merge` to combine accumulators of
    disjoint shards, then :meth:`system` (the E0-eliminated :class:`LinearSystem`) and
    :meth:`e0` (E0 for a coefficient vector). Memory: O(P² + C·P) in Gram form, at most
    ``max_rows`` · P in row form.

    Parameters
    ----------
    P : int, number of coefficient columns
    C : int, number of E0 columns (species; 0 when E0 is given)
    max_rows : int or None, rows kept as rows (for the n < P route) before switching to the
        Gram form; default P
    """

    def __init__(self, P: int, C: int, max_rows: int | None = None):
        self.P, self.C = int(P), int(C)
        self.max_rows = self.P if max_rows is None else int(max_rows)
        self.n_rows = {"energy": 0, "forces": 0, "virial": 0, "extra": 0}
        # row form
        self._rows: list[WeightedRows] | None = []
        self._n_kept = 0
        # Gram form: G, b, yy over all rows (energy rows shifted by CE·K0), composition block
        self.K0 = np.zeros((self.C, self.P))
        self.k0 = np.zeros(self.C)
        self.G = self.b = self.CtA = self.Cty = self.CtC = None
        self.yy = 0.0

    # -- accumulation ------------------------------------------------------------------------------
    @property
    def is_gram(self) -> bool:
        """True once the rows were folded into Gram pieces."""
        return self._rows is None

    def add(self, rows: WeightedRows) -> None:
        """Add one batch of weighted rows.

        Raises
        ------
        MinbasisError
            Rows with another number of columns or composition columns than this accumulator.
        """
        if rows.AE.shape[1] != self.P or rows.AO.shape[1] != self.P or rows.CE.shape[1] != self.C:
            raise MinbasisError(f"rows with {rows.AE.shape[1]} columns and {rows.CE.shape[1]} E0 columns do not "
                                f"fit an accumulator of {self.P} and {self.C}")
        for k, v in rows.n_rows.items():
            self.n_rows[k] = self.n_rows.get(k, 0) + int(v)
        if not self.is_gram:
            self._rows.append(rows)
            self._n_kept += len(rows.yE) + len(rows.yO)
            if self._n_kept > self.max_rows:
                self._to_gram()
            return
        self._fold(rows)

    def _zero_gram(self) -> None:
        P, C = self.P, self.C
        self.G, self.b = np.zeros((P, P)), np.zeros(P)
        self.CtA, self.Cty, self.CtC = np.zeros((C, P)), np.zeros(C), np.zeros((C, C))
        self.yy = 0.0

    def _fold(self, r: WeightedRows) -> None:
        if len(r.yE):
            A = r.AE - r.CE @ self.K0 if self.C else r.AE
            y = r.yE - r.CE @ self.k0 if self.C else r.yE
            self.G += A.T @ A
            self.b += A.T @ y
            self.yy += float(y @ y)
            if self.C:
                self.CtA += r.CE.T @ A
                self.Cty += r.CE.T @ y
                self.CtC += r.CE.T @ r.CE
        if len(r.yO):
            self.G += r.AO.T @ r.AO
            self.b += r.AO.T @ r.yO
            self.yy += float(r.yO @ r.yO)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The kept rows (AE, yE, CE, AO, yO), in the order added (row form only; see ``max_rows``).

        Raises
        ------
        MinbasisError
            The accumulator already switched to the Gram form.
        """
        if self.is_gram:
            raise MinbasisError("the rows were folded into Gram pieces; accumulate with a larger max_rows to keep them")
        return self._stacked()

    def _stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rows = self._rows or []
        P, C = self.P, self.C
        AE = np.vstack([r.AE for r in rows]) if rows else np.zeros((0, P))
        yE = np.concatenate([r.yE for r in rows]) if rows else np.zeros(0)
        CE = np.vstack([r.CE for r in rows]) if rows else np.zeros((0, C))
        AO = np.vstack([r.AO for r in rows]) if rows else np.zeros((0, P))
        yO = np.concatenate([r.yO for r in rows]) if rows else np.zeros(0)
        return AE, yE, CE, AO, yO

    def _to_gram(self) -> None:
        AE, yE, CE, AO, yO = self._stacked()
        if self.C and len(yE):
            # shift: the least-squares composition part of the energy rows (any K0 is exact)
            sol = np.linalg.lstsq(CE, np.column_stack([AE, yE]), rcond=None)[0]
            self.K0, self.k0 = sol[:, :-1], sol[:, -1]
        self._zero_gram()
        self._rows = None
        self._n_kept = 0
        self._fold(WeightedRows(AE=AE, yE=yE, CE=CE, AO=AO, yO=yO, n_rows={}))

    def _shift_to(self, K0: np.ndarray, k0: np.ndarray) -> None:
        """Re-express the shifted energy block with another shift (exact algebra)."""
        if not self.C:
            return
        D, d = self.K0 - K0, self.k0 - k0  # A_new = A_old + CE D, y_new = y_old + CE d
        CtC = self.CtC
        self.G = self.G + self.CtA.T @ D + D.T @ self.CtA + D.T @ CtC @ D
        self.b = self.b + self.CtA.T @ d + D.T @ self.Cty + D.T @ (CtC @ d)
        self.yy = self.yy + 2.0 * float(d @ self.Cty) + float(d @ (CtC @ d))
        self.CtA = self.CtA + CtC @ D
        self.Cty = self.Cty + CtC @ d
        self.K0, self.k0 = K0.copy(), k0.copy()

    def merge(self, other: "NormalEquations") -> "NormalEquations":
        """Add the pieces of an accumulator of a disjoint shard to this one (in place); returns self.

        Raises
        ------
        MinbasisError
            Accumulators of different shapes.
        """
        if (other.P, other.C) != (self.P, self.C):
            raise MinbasisError(f"cannot merge normal equations of shapes {(other.P, other.C)} and {(self.P, self.C)}")
        if self.total_rows == 0 and (self.is_gram is False and not self._rows):
            self.__dict__.update(other.copy().__dict__)
            self.max_rows = max(self.max_rows, other.max_rows)
            return self
        for k, v in other.n_rows.items():
            self.n_rows[k] = self.n_rows.get(k, 0) + int(v)
        if not self.is_gram and not other.is_gram and self._n_kept + other._n_kept <= self.max_rows:
            self._rows.extend(other._rows)
            self._n_kept += other._n_kept
            return self
        if not self.is_gram:
            self._to_gram()
        if not other.is_gram:
            for r in other._rows:
                self._fold(r)
            return self
        o = other.copy()
        o._shift_to(self.K0, self.k0)
        self.G += o.G
        self.b += o.b
        self.yy += o.yy
        self.CtA += o.CtA
        self.Cty += o.Cty
        self.CtC += o.CtC
        return self

    def scaled(self, w: float) -> "NormalEquations":
        """A copy whose rows are all multiplied by ``w`` (an observable weight), without recomputing them."""
        w = float(w)
        out = self.copy()
        if not out.is_gram:
            out._rows = [WeightedRows(AE=w * r.AE, yE=w * r.yE, CE=w * r.CE, AO=w * r.AO, yO=w * r.yO, n_rows=r.n_rows)
                         for r in out._rows]
            return out
        w2 = w * w
        for name in ("G", "b", "CtA", "Cty", "CtC"):
            setattr(out, name, getattr(out, name) * w2)
        out.yy *= w2
        return out

    @staticmethod
    def combine(parts: Sequence[tuple[float, "NormalEquations"]]) -> "NormalEquations":
        """Σ_k w_k · (accumulator k): the normal equations of the union of rows, each part's rows
        multiplied by its weight w_k (parts with w = 0 are left out). Parts with energy rows come
        first so that their shift is kept.

        Raises
        ------
        LabelError
            Every part weighted 0 or empty.
        """
        use = [(w, e) for w, e in parts if w > 0 and e.total_rows > 0]
        if not use:
            raise LabelError("nothing to fit: every observable has weight 0 or no rows")
        use.sort(key=lambda we: -we[1].n_rows.get("energy", 0))
        out = use[0][1].scaled(use[0][0])
        for w, e in use[1:]:
            out.merge(e.scaled(w))
        return out

    def copy(self) -> "NormalEquations":
        """A deep copy."""
        out = NormalEquations(self.P, self.C, self.max_rows)
        out.n_rows = dict(self.n_rows)
        out._rows = None if self._rows is None else list(self._rows)
        out._n_kept = self._n_kept
        for name in ("K0", "k0", "G", "b", "CtA", "Cty", "CtC"):
            v = getattr(self, name)
            setattr(out, name, None if v is None else v.copy())
        out.yy = self.yy
        return out

    # -- results -----------------------------------------------------------------------------------
    @property
    def total_rows(self) -> int:
        """Number of weighted rows added."""
        return int(sum(self.n_rows.values()))

    def system(self) -> LinearSystem:
        """The E0-eliminated least-squares problem (row form while rows < P, else Gram form).

        Raises
        ------
        LabelError
            No rows at all.
        """
        if self.total_rows == 0:
            raise LabelError("nothing to fit: no energy, force or stress rows with a weight > 0")
        if not self.is_gram:
            AE, yE, CE, AO, yO = self._stacked()
            k = 0
            if self.C and len(yE):
                Q, s, _ = np.linalg.svd(CE, full_matrices=False)
                Q = Q[:, s > 1e-10 * max(s.max(), 1e-300)]
                k = Q.shape[1]
                AE = AE - Q @ (Q.T @ AE)
                yE = yE - Q @ (Q.T @ yE)
            return LinearSystem("rows", self.P, len(yE) + len(yO) - k, A=np.vstack([AE, AO]),
                                y=np.concatenate([yE, yO]))
        G, b, yy = self.G, self.b, self.yy
        k = 0
        if self.C:
            Q = _pinv_sym(self.CtC)
            k = int(np.linalg.matrix_rank(self.CtC, hermitian=True)) if self.CtC.any() else 0
            CtA, Cty = self.CtA, self.Cty
            G = G - CtA.T @ (Q @ CtA)
            b = b - CtA.T @ (Q @ Cty)
            yy = yy - float(Cty @ (Q @ Cty))
        G = 0.5 * (G + G.T)
        return LinearSystem("gram", self.P, self.total_rows - k, G=G, b=b, yy=max(float(yy), 0.0))

    def e0(self, coef: np.ndarray) -> np.ndarray:
        """Least-squares E0 (C,) in eV for coefficients ``coef`` (P,): minimises the energy residual."""
        if not self.C:
            return np.zeros(0)
        if not self.is_gram:
            AE, yE, CE, _, _ = self._stacked()
            if not len(yE):
                return np.zeros(self.C)
            return np.linalg.lstsq(CE, yE - AE @ coef, rcond=None)[0]
        if not self.CtC.any():
            return np.zeros(self.C)
        e0s = _pinv_sym(self.CtC) @ (self.Cty - self.CtA @ coef)
        return e0s + self.k0 - self.K0 @ coef

    def nbytes(self) -> int:
        """Bytes held (rows or Gram pieces)."""
        if not self.is_gram:
            return int(sum(r.AE.nbytes + r.AO.nbytes + r.CE.nbytes for r in self._rows))
        return int(self.G.nbytes + self.CtA.nbytes + self.K0.nbytes)


@dataclass
class Entry:
    """One labelled view of a structure list for :func:`accumulate_entries`.

    Attributes
    ----------
    labels : Labels of the structures; weights : RowWeights; acc : NormalEquations to add to
    e0 : (C,) fixed isolated-atom energies (eV) or None (fitted)
    extra : optional callable (start, stop, RawRows, labels, weights) → list of weighted
        (rows, targets) blocks for that batch (PIWSL rows), or None
    """

    labels: Labels
    weights: RowWeights
    acc: NormalEquations
    e0: np.ndarray | None = None
    extra: object = None

    def uses(self) -> dict:
        """Which observables contribute rows."""
        lb, w = self.labels, self.weights
        return {"energy": lb.energy is not None and w.energy > 0, "forces": lb.forces is not None and w.forces > 0,
                "stress": lb.stress is not None and w.stress > 0}


def accumulate_entries(basis: Basis, atoms_list: Sequence[Atoms], entries: Sequence[Entry],
                       budget_bytes: float = BATCH_BYTES, progress: str | None = None) -> None:
    """Stream structures through the kernels once and add every entry's weighted rows to its accumulator.

    Several entries may label the same structures (e.g. MP2 energies and DFT forces of the same
    frames): descriptors and their gradients are computed once per batch for all of them.
    Energy-only data needs no gradients and takes the cheaper feature-only route.

    Raises
    ------
    LabelError
        Labels and structures disagree in number; an entry with nothing to fit.
    StructureError / SpeciesError
        Invalid structures.
    """
    M = len(atoms_list)
    for e in entries:
        lb = e.labels
        if lb.energy is not None and len(lb.energy) != M:
            raise LabelError(f"{len(lb.energy)} energies for {M} structures")
        if not any(e.uses().values()):
            raise LabelError("nothing to fit: give energies, forces or stress with a weight > 0")
        if not (e.weights.factors(lb.config_type) > 0).any():
            raise LabelError("every structure has config_type weight 0: nothing to fit")
    with_v = any(e.uses()["stress"] for e in entries)
    need_grad = any(e.uses()["forces"] for e in entries) or with_v or any(e.extra is not None for e in entries)
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(total=M, desc=progress, unit="structure")
    try:
        # fixed shards (independent of workers and batches): each is accumulated on its own and
        # folded left into the result, exactly as the Dask path does, so both give the same sums
        for a, b in shard_bounds(atoms_list):
            parts = [NormalEquations(e.acc.P, e.acc.C, e.acc.max_rows) for e in entries]
            _accumulate_shard(basis, atoms_list, a, b, entries, parts, with_v, need_grad, budget_bytes)
            for e, part in zip(entries, parts):
                e.acc.merge(part)
            if bar is not None:
                bar.update(b - a)
    finally:
        if bar is not None:
            bar.close()


#: Atoms per shard of the assembly (structures are cut into contiguous shards of at least this many atoms).
SHARD_ATOMS = 2048


def shard_bounds(atoms_list: Sequence[Atoms], shard_atoms: int = SHARD_ATOMS) -> list[tuple[int, int]]:
    """Contiguous [start, stop) shards of structures, each closed once it holds ≥ ``shard_atoms`` atoms.

    The cut depends on the data alone (not on workers or memory), so one process and a Dask
    cluster sum the same shards in the same order; a shard cut again gives itself.
    """
    out, start, n = [], 0, 0
    for k, a in enumerate(atoms_list):
        n += len(a)
        if n >= shard_atoms:
            out.append((start, k + 1))
            start, n = k + 1, 0
    if start < len(atoms_list):
        out.append((start, len(atoms_list)))
    return out


def _accumulate_shard(basis, atoms_list, a, b, entries, parts, with_v, need_grad, budget_bytes) -> None:
    shard = list(atoms_list[a:b])
    if not need_grad:
        for s0 in range(0, len(shard), 2048):
            raw = _energy_only_rows(basis, shard[s0:s0 + 2048])
            for e, part in zip(entries, parts):
                part.add(weight_rows(raw, e.labels, a + s0, e.weights, e.e0))
        return
    for s0, raw in iter_raw_rows(basis, shard, with_v, budget_bytes):
        start = a + s0
        stop = start + len(raw.n_atoms)
        for e, part in zip(entries, parts):
            extra = e.extra(start, stop, raw, e.labels, e.weights) if e.extra is not None else ()
            part.add(weight_rows(raw, e.labels, start, e.weights, e.e0, extra))


def accumulate(basis: Basis, atoms_list: Sequence[Atoms], labels: Labels, weights: RowWeights,
               e0: np.ndarray | None = None, budget_bytes: float = BATCH_BYTES, progress: str | None = None,
               into: NormalEquations | None = None) -> NormalEquations:
    """Stream one labelled structure list into a :class:`NormalEquations` accumulator.

    Parameters
    ----------
    basis : Basis (C species, F features; P = C·F columns)
    atoms_list : M structures; labels : their Labels (same order)
    weights : RowWeights
    e0 : (C,) fixed isolated-atom energies (eV) or None (E0 fitted, eliminated)
    budget_bytes : memory of one batch of raw rows
    progress : tqdm description, or None
    into : accumulator to add to (default: a new one)

    Returns
    -------
    NormalEquations

    Raises
    ------
    LabelError
        Labels and structures disagree in number; no observable with a weight > 0; every
        config_type weight 0.
    StructureError / SpeciesError
        Invalid structures.
    """
    C, F = basis.plan.n_channels, basis.plan.n_features
    acc = into if into is not None else NormalEquations(C * F, 0 if e0 is not None else C)
    accumulate_entries(basis, atoms_list, [Entry(labels, weights, acc, e0)], budget_bytes, progress)
    return acc


def _energy_only_rows(basis: Basis, chunk: Sequence[Atoms]) -> RawRows:
    """RawRows with XE and counts only (no gradients): features summed per centre species."""
    from ..describe import describe

    C, F = basis.plan.n_channels, basis.plan.n_features
    X = describe(chunk, basis)
    n_atoms = np.array([len(a) for a in chunk])
    struct = np.repeat(np.arange(len(chunk)), n_atoms)
    index = {int(z): k for k, z in enumerate(basis.plan.numbers)}
    ch = np.array([index[int(z)] for a in chunk for z in a.numbers], dtype=np.int64)
    XE = np.zeros((len(chunk), C, F))
    np.add.at(XE, (struct, ch), X)
    counts = np.zeros((len(chunk), C))
    np.add.at(counts, (struct, ch), 1.0)
    vol = np.array([abs(a.get_volume()) if a.pbc.all() else np.nan for a in chunk])
    return RawRows(XE=XE.reshape(len(chunk), C * F), XF=np.zeros((0, 3, C * F)), XV=None, counts=counts,
                   n_atoms=n_atoms, atom_ptr=np.concatenate([[0], np.cumsum(n_atoms)]), volume=vol)
