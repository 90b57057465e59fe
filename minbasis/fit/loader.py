"""Read any fitted minbasis model file, whatever its kind."""

from __future__ import annotations

import os

from ..errors import FileFormatError
from .modelfile import read_model_meta

__all__ = ["load_model", "MODEL_KINDS"]

#: Model kinds written by ``minbasis fit`` (the ``kind`` field of a model file's metadata).
MODEL_KINDS = ("linear", "mlp", "poly", "linear-mf", "mlp-mf")


def load_model(path: str | os.PathLike):
    """Load a model file written by :meth:`LinearModel.save`, :meth:`MLPModel.save` or
    :meth:`PolynomialModel.save`, dispatching on the ``kind`` recorded in the file.

    Returns
    -------
    LinearModel, MLPModel, PolynomialModel or MultiFidelityModel (``predict(atoms, fidelity=...)``) — each with ``predict(atoms)`` returning a
    :class:`~minbasis.fit.model.Prediction` and ``calculator()`` returning an ASE calculator.

    Raises
    ------
    FileFormatError
        Missing, corrupt or edited file (hash mismatch), another format version, or an unknown kind.
    """
    meta, _ = read_model_meta(path)
    kind = meta.get("kind", "linear")
    if kind == "linear":
        from .model import LinearModel

        return LinearModel.load(path)
    if kind == "mlp":
        from .mlp import MLPModel

        return MLPModel.load(path)
    if kind == "linear-mf":
        from .multifidelity import MultiFidelityModel

        return MultiFidelityModel.load(path)
    if kind == "mlp-mf":
        from .mlp_mf import MLPMultiFidelityModel

        return MLPMultiFidelityModel.load(path)
    if kind == "poly":
        from .poly import PolynomialModel

        return PolynomialModel.load(path)
    raise FileFormatError(f"{path}: unknown model kind {kind!r}; this minbasis reads {list(MODEL_KINDS)}")
