"""The public :class:`Basis`: hyper-parameters in, a specification and its kernels out."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .errors import MinbasisError
from .invariants.ace import MAX_ORDER
from .spec import BasisSpec
from .validate import as_float, as_int, check_ace_size, check_r_cut, check_radial_scale, check_seed, check_species

__all__ = ["Basis", "require_basis"]


def _check_species_r_cut(species: Sequence[str], r_cut: float) -> list[str]:
    """Validated list of chemical symbols; raises MinbasisError for bad species or cutoff
    (see :func:`minbasis.validate.check_species` and :func:`~minbasis.validate.check_r_cut`)."""
    species = check_species(species)
    check_r_cut(r_cut)
    return species


def _check_spec(spec: BasisSpec) -> None:
    """Checks of a specification's numbers that the kernels rely on (cutoff, radial basis)."""
    from .errors import FileFormatError

    try:
        check_r_cut(spec.r_cut)
        if not isinstance(spec.radial, dict):
            raise MinbasisError(f"radial must be a dict, got {type(spec.radial).__name__}")
        check_radial_scale(spec.radial.get("scale", 0.0))
        if not isinstance(spec.invariants, tuple) or not all(isinstance(inv, dict) for inv in spec.invariants):
            raise MinbasisError("invariants must be a list of dicts")
    except MinbasisError as exc:
        raise FileFormatError(f"invalid basis specification: {exc}") from exc


class Basis:
    """A descriptor basis: an immutable :class:`~minbasis.spec.BasisSpec` plus its compiled plan.

    Build one with :meth:`Basis.ace` or :meth:`Basis.cartesian` (or :meth:`from_invariants`,
    :meth:`union` for custom and mixed candidate lists), reduce it with :meth:`minimal`, persist
    it with :meth:`save` / :meth:`load`. ``Basis(spec)`` wraps an existing specification.
    """

    def __init__(self, spec: BasisSpec):
        if not isinstance(spec, BasisSpec):
            raise TypeError(f"Basis wraps a BasisSpec, got {type(spec).__name__}; use Basis.ace(...) or Basis.load(path)")
        _check_spec(spec)
        self.spec = spec
        self._plan = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def ace(cls, species: Sequence[str], r_cut: float, n_max: int | Sequence[int], l_max: int | Sequence[int],
            order: int, *, total_degree: float | None = None, l_weight: float = 1.0,
            radial_scale: float = 5.0, max_size: float | None = None) -> "Basis":
        """Linearly independent ("full") ACE basis (docs/theory/ace.md).

        Parameters
        ----------
        species : list of str
            Chemical symbols; each is a neighbour channel z of the moments A_{z,n,l,m}, and
            the linear models fit one coefficient set per centre species.
        r_cut : float
            Cutoff radius, Å (> 0).
        n_max : int or list of int (one per correlation order 1..order)
            Number of radial functions allowed at each order (pacemaker's ``nradmax_by_orders``).
        l_max : int or list of int (one per order)
            Largest l allowed at each order (pacemaker's ``lmax_by_orders``).
        order : int
            Correlation order ν, 1..6 (body order ν + 1); for ν ≥ 5 keep the basis tractable with
            ``total_degree`` or small per-order ``l_max``.
        total_degree : float, optional
            Keep only products with Σ_k (n_k + 1 + l_weight · l_k) ≤ total_degree.
        l_weight : float
            Weight of l in the total degree.
        radial_scale : float
            Exponent s of the distance transform of the radial basis
            (:mod:`minbasis.kernels.primitives`), 0 ≤ s ≤ 700; 0 gives plain Chebyshev in r.
        max_size : float, optional
            Limit of the size estimate (:func:`minbasis.validate.ace_size_estimate`, the summed
            entries of the dense coupling tensors) checked before enumerating; default
            :data:`minbasis.validate.MAX_BASIS_SIZE` or ``$MINBASIS_MAX_BASIS_SIZE``.

        Raises
        ------
        MinbasisError (a ValueError)
            Unknown or repeated species, r_cut not a finite distance in 0.5..1000 Å, order not
            an integer in 1..MAX_ORDER, n_max / l_max not integers (non-integers are never truncated) or
            per-order lists of the wrong length, non-finite total_degree / l_weight,
            radial_scale outside 0..700, or a size estimate above the limit.
        """
        from .invariants import enumerate_ace, per_order

        species = _check_species_r_cut(species, r_cut)
        order = as_int("order (correlation order ν)", order, minimum=1, maximum=MAX_ORDER)
        n_list = per_order(n_max, order, "n_max")
        l_list = per_order(l_max, order, "l_max")
        if total_degree is not None:
            total_degree = as_float("total_degree", total_degree, minimum=0.0)
        l_weight = as_float("l_weight", l_weight, minimum=0.0)
        radial_scale = check_radial_scale(radial_scale)
        check_ace_size(len(species), order, n_list, l_list, total_degree, l_weight, max_size=max_size)
        invariants = enumerate_ace(len(species), order, n_list, l_list, total_degree, l_weight)
        if not invariants:
            raise MinbasisError("these hyper-parameters give no invariants; raise n_max, l_max or total_degree")
        hyper = {"order": order, "n_max": n_list, "l_max": l_list, "total_degree": total_degree,
                 "l_weight": l_weight}
        radial = {"type": "chebyshev_exp", "n_max": max(n_list), "scale": float(radial_scale), "envelope": "poly3"}
        return cls(BasisSpec(family="ace", variant="full", species=tuple(species), r_cut=float(r_cut),
                             radial=radial, hyper=hyper, invariants=tuple(invariants), pruning=None))

    @classmethod
    def cartesian(cls, species: Sequence[str], r_cut: float, n_max: int | Sequence[int], l_max: int | Sequence[int],
                  max_factors: int, *, symmetric: str = "stf", include_products: bool = False,
                  einsums: str | Sequence[str] | None = None, radial_scale: float = 5.0,
                  max_size: float | None = None) -> "Basis":
        """Cartesian moment-tensor invariants (docs/theory/cartesian.md): full contractions of
        M_{z,n,l} = Σ_j R_n(r_ij) T_l(r̂_ij), one per non-isomorphic contraction multigraph.

        Sources: Shapeev, Multiscale Model. Simul. 14, 1153 (2016) (moment tensor potentials);
        Cheng, npj Comput. Mater. 10, 157 (2024) (CACE); lanl/hippynn ``hiplayers`` (HIP-HOP-NN).
        Evaluated by the same kernels as ACE (the tensors are linear maps of the spherical
        moments; :mod:`minbasis.invariants.cartesian`).

        Parameters
        ----------
        species : list of str
            Chemical symbols; each is a neighbour channel z.
        r_cut : float
            Cutoff radius, Å (> 0).
        n_max : int or list of int (one per number of factors 1..max_factors)
            Number of radial functions R_n.
        l_max : int or list of int (one per number of factors)
            Largest tensor rank.
        max_factors : int
            Largest number of tensor factors per invariant (hippynn's "n_max"), 1..6.
        symmetric : {"stf", "plain"}
            Symmetric trace-free tensors (default) or plain symmetric tensors r̂^{⊗l} (as in MTP).
        include_products : bool
            Also keep disconnected graphs (products), linearly pruned per multiset of moments:
            the linearly complete set for linear models, spanning the same space as ACE of the
            same degree. Default: connected graphs only.
        einsums : "hiphop", list of str, or None
            Instead of enumerating all graphs, use these contractions (e.g. ``"hiphop"`` for
            :data:`~minbasis.invariants.cartesian.HIPHOP_EINSUMS`), each on every single channel
            (z, n), skipping those with more than ``max_factors`` factors or ranks above ``l_max``.
        radial_scale : float
            Exponent of the radial distance transform (as in :meth:`ace`).
        max_size : float, optional
            Limit of the size estimate, as in :meth:`ace` (the moment multisets of Cartesian
            invariants with k factors are those of ACE at order k).

        Raises
        ------
        MinbasisError
            Unknown or repeated species, bad r_cut, max_factors < 1 (or > 6), l_max < 0,
            n_max < 1 (or not integers), radial_scale outside 0..700, unknown ``symmetric``, a
            malformed einsum string, a size estimate above the limit (as in :meth:`ace`), or no
            invariant at all.
        """
        from .invariants import per_order
        from .invariants.cartesian import HIPHOP_EINSUMS, MAX_FACTORS, einsum_invariants, enumerate_cartesian

        species = _check_species_r_cut(species, r_cut)
        if (isinstance(max_factors, bool) or not isinstance(max_factors, (int, np.integer))
                or not 1 <= max_factors <= MAX_FACTORS):
            raise MinbasisError(f"max_factors (number of tensor factors per invariant) must be an integer in "
                                f"1..{MAX_FACTORS}, got {max_factors!r}")
        max_factors = int(max_factors)
        if symmetric not in ("stf", "plain"):
            raise MinbasisError(f"symmetric must be 'stf' or 'plain', got {symmetric!r}")
        n_list = per_order(n_max, max_factors, "n_max")
        l_list = per_order(l_max, max_factors, "l_max")
        radial_scale = check_radial_scale(radial_scale)
        # the moment multisets are those of ACE with as many factors: the same size estimate
        check_ace_size(len(species), max_factors, n_list, l_list, max_size=max_size)
        if einsums is None:
            invariants = enumerate_cartesian(len(species), max_factors, n_list, l_list, symmetric=symmetric,
                                             include_products=include_products)
            einsum_list = None
        else:
            if isinstance(einsums, str):
                einsum_list = list(HIPHOP_EINSUMS) if einsums == "hiphop" else [einsums]
            else:
                einsum_list = [str(e) for e in einsums]
            invariants = []
            for k in range(1, max_factors + 1):
                chans = [(z, n) for z in range(len(species)) for n in range(n_list[k - 1])]
                sel = [e for e in einsum_list if len(e.replace("->", "").split(",")) == k]
                invariants += einsum_invariants(sel, chans, max_factors=k, l_max=l_list[k - 1], symmetric=symmetric)
            from .invariants.pruning import candidate_cost

            invariants.sort(key=candidate_cost)
        if not invariants:
            raise MinbasisError("these hyper-parameters give no Cartesian invariants; raise max_factors or l_max")
        hyper = {"max_factors": max_factors, "n_max": n_list, "l_max": l_list, "symmetric": symmetric,
                 "include_products": bool(include_products), "einsums": einsum_list}
        radial = {"type": "chebyshev_exp", "n_max": max(n_list), "scale": float(radial_scale), "envelope": "poly3"}
        return cls(BasisSpec(family="cartesian", variant="full", species=tuple(species), r_cut=float(r_cut),
                             radial=radial, hyper=hyper, invariants=tuple(invariants), pruning=None))

    @classmethod
    def from_invariants(cls, species: Sequence[str], r_cut: float, invariants: Sequence[dict], *,
                        family: str = "custom", hyper: dict | None = None, radial_scale: float = 5.0) -> "Basis":
        """A basis from any list of invariant dicts (:mod:`minbasis.spec` format), e.g. a mixed,
        hand-picked or pruned candidate list.

        Parameters
        ----------
        species : list of str
            Neighbour channels z = 0, 1, … of the invariants' moments.
        r_cut : float
            Cutoff, Å.
        invariants : list of dict
            Each with ``order``, ``factors`` and ``terms`` or ``monomials``.
        family : str
            Recorded in the specification ("custom", "mixed", …).
        hyper : dict, optional
            Provenance recorded in the specification.
        radial_scale : float
            Exponent of the radial distance transform.

        Raises
        ------
        MinbasisError
            Bad species or r_cut, an empty list, an invariant without ``terms``/``monomials``,
            or one referring to a channel z ≥ len(species).
        """
        from .spec import invariant_moments

        species = _check_species_r_cut(species, r_cut)
        radial_scale = check_radial_scale(radial_scale)
        if isinstance(invariants, (str, bytes, dict)):
            raise MinbasisError("invariants must be a list of invariant dicts")
        try:
            invariants = [dict(inv) for inv in invariants]
        except (TypeError, ValueError):
            raise MinbasisError("invariants must be a list of invariant dicts") from None
        if not invariants:
            raise MinbasisError("from_invariants needs at least one invariant")
        for k, inv in enumerate(invariants):
            if "factors" not in inv or "order" not in inv or not ("terms" in inv or "monomials" in inv):
                raise MinbasisError(f"invariant {k} ({inv.get('label')}) lacks 'order', 'factors' or "
                                    "'terms'/'monomials'")
            bad = [m for m in invariant_moments(inv) if not 0 <= m[0] < len(species)]
            if bad:
                raise MinbasisError(f"invariant {k} ({inv.get('label')}) uses channel z = {bad[0][0]} but there are "
                                    f"{len(species)} species")
        n_r = max(m[1] for inv in invariants for m in invariant_moments(inv)) + 1
        radial = {"type": "chebyshev_exp", "n_max": int(n_r), "scale": float(radial_scale), "envelope": "poly3"}
        return cls(BasisSpec(family=str(family), variant="full", species=tuple(species), r_cut=float(r_cut),
                             radial=radial, hyper=dict(hyper or {}), invariants=tuple(invariants), pruning=None))

    @classmethod
    def union(cls, *bases: "Basis") -> "Basis":
        """The concatenated candidate list of several bases (e.g. ACE + Cartesian), family "mixed".

        All bases must share species, cutoff and radial basis. Invariants keep their order
        (first basis first); ``.minimal(order="cost")`` prunes them in cost order instead.

        Raises
        ------
        MinbasisError
            Fewer than one basis, or bases with different species, cutoff or radial basis.
        """
        if not bases:
            raise MinbasisError("union needs at least one basis")
        first = bases[0].spec
        for b in bases[1:]:
            s = b.spec
            if (s.species != first.species or s.r_cut != first.r_cut
                    or s.radial.get("scale") != first.radial.get("scale")):
                raise MinbasisError(f"cannot unite bases with different species/r_cut/radial basis: "
                                    f"{list(first.species)}, {first.r_cut} Å vs {list(s.species)}, {s.r_cut} Å")
        parts = [{"family": b.spec.family, "variant": b.spec.variant, "hash": b.spec.hash, "hyper": b.spec.hyper,
                  "n_features": b.n_features} for b in bases]
        invariants = [dict(inv, source_family=b.spec.family) for b in bases for inv in b.spec.invariants]
        return cls.from_invariants(first.species, first.r_cut, invariants, family="mixed", hyper={"parts": parts},
                                   radial_scale=float(first.radial.get("scale", 5.0)))

    def minimal(self, *, n_points: int = 3, seed: int = 0, tol: float = 1e-7,
                order: str | Sequence[int] | None = None) -> "Basis":
        """Functionally independent subset, by greedy Jacobian-rank pruning (docs/theory/completeness.md).

        The result keeps the order of the full basis and records every decision (with its
        singular-value gap) in ``spec.pruning``. Cached on disk by (basis hash, n_points, seed,
        tol, order).

        Parameters
        ----------
        n_points, seed, tol
            As in :func:`~minbasis.invariants.pruning.functional_prune`.
        order : None, "cost" or list of int
            Candidate order: the basis order (default; ACE and Cartesian bases are built in cost
            order), by :func:`~minbasis.invariants.pruning.candidate_cost`, or explicit indices.

        Raises
        ------
        MinbasisError
            Bad ``order``, ``n_points`` (integer 1..1000), ``seed`` (integer ≥ 0) or ``tol``
            (0..1), or a failed verification (:func:`~minbasis.invariants.pruning.prune_candidates`).
        """
        from .invariants.cache import cached_json
        from .invariants.pruning import prune_candidates

        if self.spec.variant == "minimal":
            return self
        n_points = as_int("n_points", n_points, minimum=1, maximum=1000)
        seed = check_seed("seed", seed)
        tol = as_float("tol", tol, minimum=0.0, maximum=1.0)
        if order is None or isinstance(order, str):
            if order not in (None, "given", "cost"):
                raise MinbasisError(f"order must be None, 'cost' or a list of indices, got {order!r}")
            order_key = order
        else:
            order_key = [as_int("order index", i, minimum=0, maximum=self.n_features - 1) for i in order]

        def compute():
            _, record = prune_candidates(self.spec.invariants, order=order_key if order_key is not None else "given",
                                         n_points=n_points, seed=seed, tol=tol)
            kept = record.pop("kept")
            record.pop("order")
            return {"kept": kept, "record": record}

        key = {"what": "minimal", "basis": self.spec.hash, "n_points": n_points, "seed": seed, "tol": tol, "v": 1}
        if order_key is not None:
            key["order"] = order_key
        n_cand = self.n_features

        def check(res) -> None:  # a cache entry of the wrong type or with indices out of range is recomputed
            kept_ = res["kept"]
            if (not isinstance(res["record"], dict) or not isinstance(kept_, list) or not kept_
                    or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_cand for i in kept_)
                    or len(set(kept_)) != len(kept_)):
                raise ValueError("bad cached pruning result")

        res = cached_json(key, compute, check=check)
        kept = sorted(res["kept"])
        record = dict(res["record"], parent_hash=self.spec.hash, kept=kept)
        s = self.spec
        return Basis(BasisSpec(family=s.family, variant="minimal", species=s.species, r_cut=s.r_cut,
                               radial=s.radial, hyper=s.hyper,
                               invariants=tuple(s.invariants[i] for i in kept), pruning=record))

    # -- properties --------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Number of features per atom."""
        return self.spec.n_features

    @property
    def species(self) -> tuple[str, ...]:
        """Chemical symbols of the channels."""
        return self.spec.species

    @property
    def r_cut(self) -> float:
        """Cutoff radius, Å."""
        return self.spec.r_cut

    @property
    def plan(self):
        """Compiled :class:`~minbasis.kernels.plan.EvaluationPlan` (built on first use)."""
        if self._plan is None:
            from .kernels.plan import compile_plan

            self._plan = compile_plan(self.spec)
        return self._plan

    def counts_by_order(self) -> dict[int, int]:
        """Number of invariants per correlation order ν."""
        out: dict[int, int] = {}
        for inv in self.spec.invariants:
            out[inv["order"]] = out.get(inv["order"], 0) + 1
        return dict(sorted(out.items()))

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the specification as JSON (atomic)."""
        self.spec.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Basis":
        """Read a basis written by :meth:`save`; raises :class:`~minbasis.errors.FileFormatError`
        for a corrupt, edited or other-version file."""
        return cls(BasisSpec.load(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Basis) and other.spec.hash == self.spec.hash

    def __hash__(self) -> int:
        return hash(self.spec.hash)

    def __repr__(self) -> str:
        h = self.spec.hyper
        if self.spec.family == "cartesian":
            args = (f"n_max={h.get('n_max')}, l_max={h.get('l_max')}, max_factors={h.get('max_factors')}, "
                    f"symmetric={h.get('symmetric')!r}")
        elif self.spec.family == "ace":
            args = f"n_max={h.get('n_max')}, l_max={h.get('l_max')}, order={h.get('order')}"
        else:
            args = f"{len(h.get('parts', []))} parts" if "parts" in h else "custom invariants"
        return (f"Basis.{self.spec.family}(species={list(self.species)}, r_cut={self.r_cut}, {args}) "
                f"[{self.spec.variant}: {self.n_features} features, hash {self.spec.hash[:10]}]")


def require_basis(basis: object) -> Basis:
    """``basis`` itself if it is a :class:`Basis`.

    Raises
    ------
    TypeError
        Anything else (e.g. a path or a dict: load it with :meth:`Basis.load` first).
    """
    if not isinstance(basis, Basis):
        raise TypeError(f"basis must be a minbasis.Basis, got {type(basis).__name__}")
    return basis
