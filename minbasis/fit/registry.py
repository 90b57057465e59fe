"""Fitted-model protocol and the registry of model kinds: how any model file is read back.

Every fitted minbasis model satisfies :class:`Model`: a ``kind`` (the name recorded in its
file, :mod:`minbasis.fit.fileio`), the ``fidelities`` it predicts, ``predict(atoms,
fidelity=None)`` returning a :class:`~minbasis.fit.model.Prediction`, ``calculator(fidelity=None)``
returning an ASE calculator, ``save(path)`` and the class method ``load(path)``. Which
fidelity a request means is decided by one rule, :func:`~minbasis.fit.fidelity.resolve_fidelity`:
a single-fidelity model accepts ``None`` and its own name, a multi-fidelity model needs one of
its names and lists them when given another (or none).

:data:`MODEL_CLASSES` maps each kind to its class; :func:`load_model` reads the kind from the
file and calls that class's ``load``. :func:`register_model` adds a kind (e.g. a model class
of your own that follows the protocol and writes its files with
:func:`~minbasis.fit.fileio.write_model_file`).
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence, runtime_checkable

from ase import Atoms

from ..errors import FileFormatError, MinbasisError
from .fileio import read_model_meta
from .mlp import MLPModel
from .mlp_mf import MLPMultiFidelityModel
from .model import LinearModel, MinbasisCalculator, Prediction
from .multifidelity import MultiFidelityModel
from .poly import PolynomialModel

__all__ = ["Model", "MODEL_CLASSES", "register_model", "load_model", "model_kinds"]


@runtime_checkable
class Model(Protocol):
    """What every fitted minbasis model provides (module docstring).

    Attributes
    ----------
    kind : str, the registry key and the ``kind`` of the model file (class attribute)
    fidelities : list of str, the levels of theory it predicts (empty: one unnamed fidelity)
    basis : :class:`minbasis.Basis`
    info : dict, provenance of the fit
    """

    kind: str

    @property
    def fidelities(self) -> list[str]:
        """Fidelity names in head order ([] for one unnamed fidelity)."""

    def predict(self, atoms_or_list: Atoms | Sequence[Atoms], fidelity: str | None = None,
                progress: bool = False) -> Prediction:
        """Energies (M,) eV, forces (n_atoms, 3) eV/Å per structure and stress (M, 6) eV/Å³ at ``fidelity``;
        raises MinbasisError for a fidelity the model does not have (resolve_fidelity)."""

    def calculator(self, fidelity: str | None = None) -> MinbasisCalculator:
        """An ASE calculator at ``fidelity`` (checked now)."""

    def save(self, path: str | os.PathLike) -> None:
        """Write a versioned, hashed model file atomically."""

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Model":
        """Read a file written by :meth:`save`; raises FileFormatError."""


#: kind → model class; filled by :func:`register_model`.
MODEL_CLASSES: dict[str, type] = {}


def register_model(cls: type) -> type:
    """Register a model class under its ``kind`` (usable as a class decorator); returns ``cls``.

    Raises
    ------
    MinbasisError
        ``cls`` lacks a string ``kind`` or one of ``predict``, ``calculator``, ``save``, ``load``,
        or another class is registered under the same kind.
    """
    kind = getattr(cls, "kind", None)
    missing = [m for m in ("predict", "calculator", "save", "load") if not callable(getattr(cls, m, None))]
    if not isinstance(kind, str) or not kind or missing:
        raise MinbasisError(f"{getattr(cls, '__name__', cls)!r} does not follow the Model protocol "
                            f"(kind {kind!r}, missing {missing})")
    if MODEL_CLASSES.get(kind, cls) is not cls:
        raise MinbasisError(f"model kind {kind!r} is already registered for {MODEL_CLASSES[kind].__name__}")
    MODEL_CLASSES[kind] = cls
    return cls


for _cls in (LinearModel, MLPModel, PolynomialModel, MultiFidelityModel, MLPMultiFidelityModel):
    register_model(_cls)


def model_kinds() -> list[str]:
    """The registered model kinds, in registration order."""
    return list(MODEL_CLASSES)


def load_model(path: str | os.PathLike) -> Model:
    """Load any model file written by a registered model's ``save``, dispatching on the file's ``kind``.

    Returns
    -------
    The model (:class:`~minbasis.fit.model.LinearModel`, :class:`~minbasis.fit.mlp.MLPModel`,
    :class:`~minbasis.fit.poly.PolynomialModel`, :class:`~minbasis.fit.multifidelity.MultiFidelityModel`,
    :class:`~minbasis.fit.mlp_mf.MLPMultiFidelityModel`, or a class added by :func:`register_model`),
    following the :class:`Model` protocol.

    Raises
    ------
    FileFormatError
        Missing, corrupt or edited file (hash mismatch), another format version, or an unknown kind.
    """
    meta, _ = read_model_meta(path)
    kind = meta.get("kind", "linear")
    cls = MODEL_CLASSES.get(kind)
    if cls is None:
        raise FileFormatError(f"{path}: unknown model kind {kind!r}; this minbasis reads {model_kinds()}")
    return cls.load(path)
