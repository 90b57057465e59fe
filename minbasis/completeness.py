"""Deprecated alias of :mod:`minbasis.local_completeness` (renamed so that it is not confused
with :func:`minbasis.report.completeness`, the whole completeness report)."""

import warnings

from .local_completeness import *  # noqa: F401,F403
from .local_completeness import FULL_JACOBIAN_BYTES, __all__  # noqa: F401

warnings.warn("minbasis.completeness is renamed minbasis.local_completeness", DeprecationWarning, stacklevel=2)
