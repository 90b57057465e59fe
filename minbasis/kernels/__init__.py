"""Compiled kernels (Numba on the CPU, CuPy on a GPU): neighbour lists, radial and angular bases,
moments, invariants and their gradients, behind one backend interface
(:func:`~minbasis.kernels.backend.get_backend`) and one driver loop over batches
(:func:`~minbasis.kernels.driver.describe_structures`). Consumes a
:class:`~minbasis.spec.BasisSpec`; never imports sympy."""

from .backend import KernelBackend, get_backend
from .driver import describe_structures
from .evaluate import design_blocks, features, linear_energy_forces
from .neighbours import Batch, as_atoms_list, build_batch
from .plan import EvaluationPlan, compile_plan

__all__ = ["KernelBackend", "get_backend", "describe_structures", "design_blocks", "features", "linear_energy_forces",
           "Batch", "as_atoms_list", "build_batch", "EvaluationPlan", "compile_plan"]
