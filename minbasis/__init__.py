"""minbasis: minimal complete bases of atomic-environment descriptors with compiled kernels.

Quick start::

    import minbasis as mb
    basis = mb.Basis.ace(species=["H", "C", "O"], r_cut=5.0, n_max=6, l_max=4, order=3)
    mini = basis.minimal()             # functionally independent subset
    X = mb.describe(atoms_list, basis) # (total atoms, n_features)

The mathematics, conventions, user guide and API reference are in ``docs/`` (``mkdocs build``).
"""

from ._threading import select_fork_safe_layer as _select_layer
from ._version import __version__
from .basis import Basis
from .describe import Descriptors, describe
from .errors import FileFormatError, LabelError, MinbasisError, SpeciesError, StructureError
from .spec import BasisSpec

_select_layer()  # fork-safe Numba threading layer unless the user chose one (see minbasis/_threading.py)

__all__ = ["__version__", "Basis", "BasisSpec", "describe", "Descriptors", "MinbasisError",
           "StructureError", "SpeciesError", "LabelError", "FileFormatError"]
