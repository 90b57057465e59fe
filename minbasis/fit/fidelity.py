"""Fidelity-aware training sets (docs/theory/fitting.md#multi-fidelity).

A multi-fidelity training set is a list of :class:`FidelityData`: structures, the name of the
level of theory ("fidelity") their labels come from, which labels are present (energy, forces,
stress keys; ``None`` = absent) and the weight of each observable. The same structures may
appear several times with labels at different levels (e.g. MP2 energies and B3LYP forces of
the same MD frames). An absent label contributes no rows and no loss term at all.

Textual form (CLI ``--data`` and TOML configs), :func:`parse_data_spec`::

    FILE:fidelity=high:energy_key=energy_high
    FILE:fidelity=dft:energy_key=energy_dft:forces_key=forces_dft:forces_weight=1:energy_weight=30

TOML config (``minbasis fit --config``, :func:`load_fit_config`; the top-level keys are the long
option names of ``minbasis fit``, which also reads them from a ``[fit]`` table)::

    model = "linear-mf"          # or "mlp-mf"
    basis = "basis.json"
    output = "model.npz"
    coupling = "delta"           # optional: "none", "pooled"
    noise = "per_fidelity"       # optional, linear-mf: "shared" = one noise level for all fidelities
    [[data]]
    file = "ethanol.extxyz"
    fidelity = "high"
    energy_key = "energy_high"
    [[data]]
    file = "ethanol.extxyz"
    fidelity = "dft"
    energy_key = "energy_dft"
    forces_key = "forces_dft"
    weights = {energy = 30.0, forces = 1.0}

Source of the approach: Messerly et al., "Multi-fidelity learning for interatomic potentials:
low-level forces and high-level energies are all you need", arXiv 2505.01590 (MLST 2025).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms

from ..errors import LabelError, MinbasisError
from .data import DEFAULT_WEIGHTS, Labels, get_labels, read_structures

__all__ = ["FidelityData", "DEFAULT_WEIGHTS", "parse_data_spec", "load_fit_config", "data_tables", "fidelity_names",
           "resolve_fidelity", "single_fidelity_names"]

#: Default weight of each observable (same units and meaning as :class:`~minbasis.fit.linear.LinearFitConfig`):
#: energy per atom 1/(eV/atom), forces Å/eV, virial per atom 1/(eV/atom).


@dataclass
class FidelityData:
    """Structures with labels at one level of theory.

    Attributes
    ----------
    structures : list of ase.Atoms
        M structures (share the list object between entries that label the same structures:
        their descriptors are then computed once).
    fidelity : str
        Name of the level of theory, e.g. ``"high"``, ``"dft"``; a model predicts per fidelity.
    energy_key, forces_key, stress_key : str or None
        Label keys (``atoms.info`` for energy in eV and stress in eV/Å³, ``atoms.arrays`` for
        forces in eV/Å); None means the label is absent and contributes nothing.
    weights : dict
        Observable weights ``{"energy", "forces", "stress"}`` (defaults :data:`DEFAULT_WEIGHTS`)
        and optionally ``"config_type": {name: factor}``. A weight of 0 drops that observable.

    Raises
    ------
    MinbasisError
        Empty fidelity name, no structures, no label key, unknown weight name or a weight that
        is negative or not finite.
    """

    structures: Sequence[Atoms]
    fidelity: str
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    weights: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.structures, Atoms):
            self.structures = [self.structures]
        if not isinstance(self.fidelity, str) or not self.fidelity.strip():
            raise MinbasisError(f"fidelity must be a non-empty name such as 'high', got {self.fidelity!r}")
        if len(self.structures) == 0:
            raise MinbasisError(f"fidelity {self.fidelity!r}: no structures")
        if not (self.energy_key or self.forces_key or self.stress_key):
            raise MinbasisError(f"fidelity {self.fidelity!r}: give at least one of energy_key, forces_key, stress_key")
        from ..validate import as_float
        from .data import check_config_type_weights

        w = dict(DEFAULT_WEIGHTS)
        if not isinstance(self.weights, dict):
            raise MinbasisError(f"fidelity {self.fidelity!r}: weights must be a table such as "
                                f"{{energy = 30.0, forces = 1.0}}, got {self.weights!r}")
        for k, v in dict(self.weights).items():
            if k == "config_type":
                w[k] = check_config_type_weights(v)
                continue
            if k not in DEFAULT_WEIGHTS:
                raise MinbasisError(f"unknown weight {k!r}; use energy, forces, stress or config_type")
            w[k] = as_float(f"weight {k}", v, minimum=0.0, maximum=1e12)
        w.setdefault("config_type", {})
        self.weights = w

    def labels(self) -> Labels:
        """The labels present (absent keys give None fields), see :func:`~minbasis.fit.data.get_labels`.

        Raises
        ------
        LabelError
            A requested label is missing or malformed.
        """
        try:
            return get_labels(self.structures, self.energy_key, self.forces_key, self.stress_key)
        except LabelError as exc:
            raise LabelError(f"fidelity {self.fidelity!r}: {exc}") from exc

    def config_weights(self, labels: Labels) -> np.ndarray:
        """(M,) per-structure config_type factors."""
        from .data import check_config_type_weights

        ctw = check_config_type_weights(self.weights.get("config_type", {}), labels.config_type)
        return np.array([ctw.get(str(ct), 1.0) for ct in labels.config_type])


def fidelity_names(data: Sequence[FidelityData]) -> list[str]:
    """Fidelity names in order of first appearance."""
    out: list[str] = []
    for d in data:
        if d.fidelity not in out:
            out.append(d.fidelity)
    return out


def single_fidelity_names(info: dict) -> list[str]:
    """The ``fidelities`` of a single-fidelity model from its provenance: ``[info["fidelity"]]`` when the
    fit recorded a name (e.g. a head taken out of a multi-fidelity model), else ``[]`` (one unnamed fidelity)."""
    name = (info or {}).get("fidelity")
    return [str(name)] if name else []


def resolve_fidelity(model_fidelities: Sequence[str], requested: str | None) -> int:
    """Index of the fidelity a prediction is asked for: the one rule of every model.

    A model with at most one fidelity (``model_fidelities`` empty for an unnamed single-fidelity
    model, or one name) accepts ``None`` and its own name; a model with several needs one of them.

    Parameters
    ----------
    model_fidelities : the model's fidelity names, in head order
    requested : a name, or None

    Returns
    -------
    int, index into ``model_fidelities`` (0 for a single-fidelity model)

    Raises
    ------
    MinbasisError
        A name the model was not trained on, or None for a model with several fidelities; the
        message lists the known fidelities.
    """
    names = [str(f) for f in model_fidelities]
    if requested is None:
        if len(names) <= 1:
            return 0
        raise MinbasisError(f"this model has several fidelities {names}: choose one with fidelity=NAME "
                            f"(--fidelity NAME on the command line); known fidelities: {names}")
    if str(requested) in names:
        return names.index(str(requested))
    if not names:
        raise MinbasisError(f"fidelity {requested!r} given, but this is a single-fidelity model without fidelity "
                            f"names; leave the fidelity out (known fidelities: none)")
    raise MinbasisError(f"fidelity {requested!r} was not in the training data of this model; "
                        f"known fidelities: {names}")


_KEYS = {"fidelity", "energy_key", "forces_key", "stress_key", "energy_weight", "forces_weight", "stress_weight"}


def _none(v):
    return None if v is None or str(v).lower() in ("", "none", "null") else str(v)


def _from_fields(path: str, fields: dict, cache: dict, where: str) -> FidelityData:
    unknown = set(fields) - _KEYS - {"file", "weights"}
    if unknown:
        raise MinbasisError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_KEYS | {'weights'})}")
    if "fidelity" not in fields:
        raise MinbasisError(f"{where}: missing fidelity=NAME, e.g. {path}:fidelity=high:energy_key=energy_high")
    if not isinstance(fields.get("weights", {}), dict):
        raise MinbasisError(f"{where}: weights must be a table such as {{energy = 30.0, forces = 1.0}}, "
                            f"got {fields['weights']!r}")
    weights = dict(fields.get("weights", {}))
    for obs in ("energy", "forces", "stress"):
        if f"{obs}_weight" in fields:
            v = fields[f"{obs}_weight"]
            try:
                if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                    raise TypeError
                weights[obs] = float(v)
            except (TypeError, ValueError):
                raise MinbasisError(f"{where}: {obs}_weight must be a number, got {v!r}") from None
    for name in ("fidelity", "energy_key", "forces_key", "stress_key"):
        if name in fields and not isinstance(fields[name], str):
            raise MinbasisError(f"{where}: {name} must be a string, got {fields[name]!r}")
    key = os.path.abspath(path)
    if key not in cache:
        cache[key] = read_structures(path)
    return FidelityData(cache[key], str(fields["fidelity"]), energy_key=_none(fields.get("energy_key")),
                        forces_key=_none(fields.get("forces_key")), stress_key=_none(fields.get("stress_key")),
                        weights=weights)


def parse_data_spec(spec: str, cache: dict | None = None) -> FidelityData:
    """Parse ``FILE:key=value:...`` (keys fidelity, energy_key, forces_key, stress_key,
    energy_weight, forces_weight, stress_weight) into a :class:`FidelityData`.

    ``cache`` (dict path → structures) makes several specs on one file share one structure list.

    Raises
    ------
    MinbasisError
        Malformed spec, unknown key, missing fidelity. StructureError if the file is unreadable.
    """
    cache = {} if cache is None else cache
    parts = spec.split(":")
    # allow ':' inside the file name (e.g. Windows drives) by taking the longest prefix without '='
    k = 1
    while k < len(parts) and "=" not in parts[k]:
        k += 1
    path = ":".join(parts[:k])
    fields = {}
    for item in parts[k:]:
        if "=" not in item:
            raise MinbasisError(f"--data {spec!r}: expected key=value, got {item!r}")
        a, b = item.split("=", 1)
        fields[a.strip()] = b.strip()
    return _from_fields(path, fields, cache, f"--data {spec!r}")


def data_tables(entries: list[dict], path: str | os.PathLike, cache: dict | None = None) -> list[FidelityData]:
    """The ``[[data]]`` tables of a TOML fit configuration (module docstring) as :class:`FidelityData`;
    relative file names are read relative to the folder of ``path``. ``cache`` (dict absolute path →
    structures) collects the files read, so that entries on one file share one structure list.

    Raises
    ------
    MinbasisError
        No tables, something else than a list of tables, an entry without a file name, or a malformed
        entry (:func:`parse_data_spec` rules). StructureError if a file is unreadable.
    """
    cache = {} if cache is None else cache
    if not entries:
        raise MinbasisError(f"{path}: needs at least one [[data]] table with file and fidelity")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise MinbasisError(f"{path}: data must be [[data]] tables (file, fidelity, ...), got {type(entries).__name__}")
    base = os.path.dirname(os.path.abspath(path))
    data = []
    for n, e in enumerate(entries):
        if "file" not in e:
            raise MinbasisError(f"{path}: [[data]] entry {n} lacks file")
        if not isinstance(e["file"], str) or not e["file"]:
            raise MinbasisError(f"{path}: [[data]] entry {n}: file must be a file name, got {e['file']!r}")
        f = e["file"] if os.path.isabs(e["file"]) else os.path.join(base, e["file"])
        data.append(_from_fields(f, e, cache, f"{path} [[data]] {n}"))
    return data


def load_fit_config(path: str | os.PathLike) -> dict:
    """Read a TOML fit configuration (module docstring): returns a dict with ``data`` (list of
    :class:`FidelityData`, :func:`data_tables`), ``data_files`` (absolute paths of the structure
    files) and the other top-level settings as written (model, basis, output, …). ``minbasis fit
    --config`` checks those settings against its options (their keys are the option names).

    Raises
    ------
    MinbasisError
        Unreadable or invalid TOML, no ``[[data]]`` tables, or malformed entries.
    """
    from ..files import read_toml

    cfg = read_toml(path)
    cache: dict = {}
    cfg["data"] = data_tables(cfg.pop("data", None), path, cache)
    cfg["data_files"] = sorted(cache)  # absolute paths of the structure files read
    return cfg
