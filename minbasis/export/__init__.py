"""Export fitted minbasis potentials to the formats simulation codes run.

* :func:`export_yace`: linear ACE models → the ML-PACE ``.yace`` (C-tilde) format, evaluated
  by LAMMPS ``pair_style pace`` (and ``pace/kk``) and by python-ace (:mod:`.yace`).
"""

from .yace import core_table, export_yace, lammps_snippet, yace_document

__all__ = ["export_yace", "yace_document", "core_table", "lammps_snippet"]
