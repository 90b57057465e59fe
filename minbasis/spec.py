"""The basis specification: a plain, versioned, hashed, JSON-serialisable description of a basis.

The symbolic layer (:mod:`minbasis.invariants`) produces it; the kernels
(:mod:`minbasis.kernels`) only consume it. This module imports neither sympy nor numba.

Layout of the JSON object (format version :data:`minbasis._version.BASIS_FORMAT_VERSION`)::

    {
      "format": "minbasis.basis", "format_version": 2, "minbasis_version": "...",
      "family": "ace",                 # invariant family: "ace", "cartesian", "mixed", "custom"
      "variant": "full" | "minimal",   # linearly vs functionally independent set
      "species": ["H", "C", "O"],      # neighbour channels z, in this order
      "r_cut": 5.0,                    # Å
      "radial": {"type": "chebyshev_exp", "n_max": 8, "scale": 5.0, "envelope": "poly3"},
      "hyper": {...},                  # the arguments the basis was built from
      "invariants": [                  # one entry per feature, in feature order
        {"order": ν, "factors": [[z, n, l], ...], "terms": [[coef, [μ_1, ..., μ_ν]], ...],
         "label": "..."}
      ],
      "pruning": {...} | null,         # record of the functional pruning (minimal variant)
      "hash": "sha256 of the canonical JSON of everything above"
    }

An invariant is B = Σ_terms coef · Π_k A[z_k, n_k, l_k, μ_k] where A are the density
moments (docs/theory/ace.md) and μ = m + l indexes the real spherical harmonics.

General form (format version 2): an invariant may give ``"monomials": [[coef, [[z, n, l, μ],
...]], ...]`` instead of ``"terms"``, for polynomials whose monomials are products of different
moments (e.g. contractions of plain, not trace-free, Cartesian tensors). ``"factors"`` then
names the nominal factors (the tensors contracted) and ``"order"`` their number. Extra keys
(``"einsum"``, ``"graph"``, ``"tensor"``, …) are allowed and carried along; only the
polynomial matters for evaluation. :func:`invariant_monomials` reads either form.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ._version import BASIS_FORMAT_VERSION, READABLE_BASIS_FORMAT_VERSIONS, __version__
from .errors import FileFormatError
from .io import atomic_write_text

__all__ = ["BasisSpec", "canonical_hash", "atomic_write_text", "invariant_monomials", "invariant_moments"]


def invariant_monomials(inv: dict) -> list[tuple[float, list[tuple[int, int, int, int]]]]:
    """The polynomial of an invariant dict as (coef, [(z, n, l, μ), ...]) pairs, for either form
    (``"terms"`` aligned with ``"factors"``, or general ``"monomials"``).

    Raises
    ------
    KeyError
        If the dict has neither ``"terms"`` nor ``"monomials"``.
    """
    if "monomials" in inv:
        return [(float(c), [tuple(int(x) for x in v) for v in vs]) for c, vs in inv["monomials"]]
    fs = inv["factors"]
    return [(float(c), [(int(fs[k][0]), int(fs[k][1]), int(fs[k][2]), int(mu)) for k, mu in enumerate(mus)])
            for c, mus in inv["terms"]]


def invariant_moments(inv: dict) -> set[tuple[int, int, int]]:
    """The moments (z, n, l) an invariant depends on (its factors, and every moment of its monomials)."""
    out = {tuple(int(x) for x in f) for f in inv["factors"]}
    if "monomials" in inv:
        out.update(tuple(int(x) for x in v[:3]) for _, vs in inv["monomials"] for v in vs)
    return out


def canonical_hash(obj: Any) -> str:
    """SHA-256 hex digest of the canonical JSON form (sorted keys, no spaces) of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


_HASHED_KEYS = ("family", "variant", "species", "r_cut", "radial", "hyper", "invariants", "pruning")


@dataclass(frozen=True)
class BasisSpec:
    """Immutable basis specification (see module docstring for the meaning of each field).

    Attributes
    ----------
    family : str
        ``"ace"``, ``"cartesian"``, ``"mixed"`` (a union of families) or ``"custom"``.
    variant : str
        ``"full"`` (linearly independent) or ``"minimal"`` (functionally independent).
    species : tuple of str
        Chemical symbols of the neighbour channels, in channel order.
    r_cut : float
        Cutoff radius in Å.
    radial : dict
        Radial basis parameters (``type``, ``n_max``, ``scale``, ``envelope``).
    hyper : dict
        The hyper-parameters the basis was built from (for provenance and rebuilding).
    invariants : tuple of dict
        One entry per feature: ``order``, ``factors`` [[z, n, l], ...], ``terms``
        [[coef, [μ...]], ...] (or ``monomials`` [[coef, [[z, n, l, μ], ...]], ...]), ``label``.
    pruning : dict or None
        Functional-pruning record (minimal variant), else None.
    """

    family: str
    variant: str
    species: tuple[str, ...]
    r_cut: float
    radial: dict
    hyper: dict
    invariants: tuple[dict, ...]
    pruning: dict | None = None
    hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "species", tuple(self.species))
        object.__setattr__(self, "invariants", tuple(self.invariants))
        object.__setattr__(self, "hash", canonical_hash(self._content()))

    # -- content --------------------------------------------------------------------------
    def _content(self) -> dict:
        return {
            "family": self.family,
            "variant": self.variant,
            "species": list(self.species),
            "r_cut": float(self.r_cut),
            "radial": self.radial,
            "hyper": self.hyper,
            "invariants": list(self.invariants),
            "pruning": self.pruning,
        }

    @property
    def n_features(self) -> int:
        """Number of invariants (features per atom)."""
        return len(self.invariants)

    @cached_property
    def _moments(self) -> frozenset:
        return frozenset().union(*(invariant_moments(inv) for inv in self.invariants))

    @property
    def l_max(self) -> int:
        """Largest l used by any invariant."""
        return max((m[2] for m in self._moments), default=0)

    @property
    def n_radial(self) -> int:
        """Number of radial functions the kernels must evaluate (largest n used + 1)."""
        return max((m[1] for m in self._moments), default=0) + 1

    def to_dict(self) -> dict:
        """JSON-serialisable dict including format version and content hash."""
        d = {"format": "minbasis.basis", "format_version": BASIS_FORMAT_VERSION,
             "minbasis_version": __version__}
        d.update(self._content())
        d["hash"] = self.hash
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "basis") -> "BasisSpec":
        """Rebuild a specification, checking format, version and hash.

        Raises
        ------
        FileFormatError
            If the object is not a minbasis basis, has another format version, lacks keys,
            or its content does not match its hash (corrupt or edited file).
        """
        if not isinstance(d, dict) or d.get("format") != "minbasis.basis":
            raise FileFormatError(f"{source}: not a minbasis basis specification (missing 'format': 'minbasis.basis')")
        if d.get("format_version") not in READABLE_BASIS_FORMAT_VERSIONS:
            raise FileFormatError(
                f"{source}: basis format version {d.get('format_version')!r} (written by minbasis "
                f"{d.get('minbasis_version', '?')}) is not supported; this minbasis {__version__} reads "
                f"versions {', '.join(map(str, READABLE_BASIS_FORMAT_VERSIONS))}: rebuild it with `minbasis basis ...`")
        missing = [k for k in _HASHED_KEYS + ("hash",) if k not in d]
        if missing:
            raise FileFormatError(f"{source}: basis specification lacks keys {missing}")
        try:
            spec = cls(family=d["family"], variant=d["variant"], species=tuple(d["species"]),
                       r_cut=float(d["r_cut"]), radial=d["radial"], hyper=d["hyper"],
                       invariants=tuple(d["invariants"]), pruning=d["pruning"])
        except (TypeError, ValueError, KeyError, RecursionError) as exc:
            raise FileFormatError(f"{source}: malformed basis specification ({exc})") from exc
        if spec.hash != d["hash"]:
            raise FileFormatError(f"{source}: content hash mismatch (file corrupt or edited): "
                                  f"stored {str(d['hash'])[:12]}…, computed {spec.hash[:12]}…")
        return spec

    def save(self, path: str | os.PathLike) -> None:
        """Write the specification as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BasisSpec":
        """Read a specification written by :meth:`save`.

        Raises
        ------
        FileFormatError
            If the file is missing, a folder, binary (e.g. a model .npz), not JSON, or fails the
            checks of :meth:`from_dict`.
        """
        try:
            if Path(path).is_dir():
                raise FileFormatError(f"basis file {path} is a folder, not a JSON file")
            data = Path(path).read_bytes()
        except OSError as exc:
            raise FileFormatError(f"cannot read basis file {path}: {exc.strerror}") from exc
        if data[:4] == b"PK\x03\x04":
            raise FileFormatError(f"{path} is a zip/.npz archive (a model file?), not a basis JSON file; give the basis "
                                  "written by `minbasis basis` (a model's basis: minbasis.fit.load_model(path).basis)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FileFormatError(f"{path} is a binary file, not a basis JSON file written by `minbasis basis`") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        except RecursionError:
            raise FileFormatError(f"{path}: not a basis specification (JSON nested too deeply)") from None
        return cls.from_dict(d, source=str(path))
