"""Helpers shared by several subcommands: argument types, the label-key options, informational output."""

from __future__ import annotations

import argparse
from typing import Sequence

__all__ = ["int_list", "seed", "species", "add_label_keys", "label_keys", "resolve_stress", "data_spec_file", "info",
           "set_quiet", "is_quiet", "path_option"]

_QUIET = False


def int_list(text: str) -> int | list[int]:
    """argparse type: ``"8"`` → 8, ``"8,6,3"`` → [8, 6, 3] (one value or one per order)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or a comma-separated list such as 8,6,3, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    return values[0] if len(values) == 1 else values


def seed(text: str) -> int:
    """argparse type: a non-negative integer seed."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {value}")
    return value


def species(text: str) -> list[str]:
    """argparse type: comma-separated chemical symbols, e.g. ``"H,C,O"`` → ["H", "C", "O"]."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated chemical symbols, e.g. H,C,O")
    return values


def path_option(action: argparse.Action) -> argparse.Action:
    """Mark an option as a file name: a relative path given in a TOML config file is read relative to
    the folder of that file (:mod:`minbasis.cli._config`). Returns ``action``."""
    action.config_path = True
    return action


def add_label_keys(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The label-key options shared by fit, compare and evaluate: --energy-key, --forces-key, --stress-key,
    --no-forces, --no-energy."""
    p.add_argument("--energy-key", default="energy",
                   help="info key of the energy in eV (default: energy; falls back to an attached calculator)")
    p.add_argument("--forces-key", default="forces", help="arrays key of the forces in eV/Å (default: forces)")
    p.add_argument("--stress-key", default=None,
                   help="info key of the stress in eV/Å³ (Voigt or 3×3, ASE sign). Default: use 'stress' "
                        "where periodic structures carry it, skip otherwise")
    p.add_argument("--no-forces", action="store_true", help="ignore forces")
    p.add_argument("--no-energy", action="store_true", help="ignore energies")


def label_keys(args: argparse.Namespace) -> tuple[str | None, str | None, str | None]:
    """(energy, forces, stress) keys of the label options; ``--no-energy``/``--no-forces`` give None.
    The stress key is resolved against the data by :func:`resolve_stress`."""
    return (None if args.no_energy else args.energy_key, None if args.no_forces else args.forces_key,
            args.stress_key)


def resolve_stress(frames: Sequence, key: str | None) -> str | None:
    """``key`` if given; otherwise ``"stress"`` when some periodic structure carries a stress, else None."""
    if key is not None:
        return key
    from ..fit.data import _calc_value

    for a in frames:
        if a.pbc.all() and (a.info.get("stress") is not None or _calc_value(a, "stress") is not None):
            return "stress"
    return None


def data_spec_file(spec: str) -> str:
    """The FILE part of a ``--data FILE:key=value:...`` spec (as :func:`minbasis.fit.fidelity.parse_data_spec`)."""
    parts = spec.split(":")
    k = 1
    while k < len(parts) and "=" not in parts[k]:
        k += 1
    return ":".join(parts[:k])


def set_quiet(quiet: bool) -> bool:
    """Switch informational messages (:func:`info`) off or on; returns the previous setting."""
    global _QUIET
    was, _QUIET = _QUIET, bool(quiet)
    return was


def is_quiet() -> bool:
    """Whether ``--quiet`` is in effect."""
    return _QUIET


def info(*args, **kwargs) -> None:
    """print() for informational messages: silent under --quiet."""
    if not _QUIET:
        print(*args, **kwargs)
