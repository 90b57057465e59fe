"""The ``minbasis`` command line (user guide: docs/guide/).

Every subcommand has ``--help`` and lives in its own module of this package (``basis``,
``describe``, ``fit`` with ``fit_mf``, ``compare``, ``evaluate``, ``demo``, ``report``,
``export``), each with ``add_parser(subparsers)`` and ``run(args) -> exit code``. Options that
set a field of a configuration dataclass take their defaults from it
(:mod:`minbasis.cli._config`), and every subcommand reads ``--config FILE.toml``: a TOML file
whose keys are the long option names; options on the command line override it. Errors end
with exit code 2 and a single line ``minbasis: error: <reason>`` on standard error.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import MinbasisError
from . import basis, compare, demo, describe, evaluate, export, fit, report
from ._config import apply_config, config_settings, find_config, read_config

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

#: Subcommand name → its module (``add_parser``, ``run``), in the order of ``minbasis --help``.
SUBCOMMANDS = {"basis": basis, "describe": describe, "fit": fit, "compare": compare, "evaluate": evaluate,
               "demo": demo, "report": report, "export": export}

#: Subcommands whose standard output is informational only (silenced by --quiet).
_INFORMATIONAL_OUTPUT = ("basis", "describe", "fit")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``minbasis`` command."""
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="minbasis",
        description="Minimal complete ACE descriptor bases: build a basis, compute descriptors, fit and "
                    "evaluate linear ACE potentials. Units: eV, Å, eV/Å, eV/Å³.",
        epilog="Typical session:\n"
               "  minbasis basis --species H,C,O --r-cut 5 --n-max 6,4,2 --l-max 0,3,2 --order 3 -o basis.json\n"
               "  minbasis fit train.extxyz --basis basis.json --energy-key energy_high --forces-key forces_high -o model.npz\n"
               "  minbasis evaluate model.npz test.extxyz --energy-key energy_high --forces-key forces_high\n"
               "  minbasis demo            # all of the above on bundled ethanol MP2 data\n"
               "Every command also reads its options from a TOML file: --config FILE.toml.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minbasis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    quiet_help = ("no progress bars and no informational messages on standard output (results such as evaluate's "
                  "table or JSON, compare's table, report's findings and errors still print). Without it, bars are "
                  "drawn only when standard error is a terminal (MINBASIS_PROGRESS=1 forces them, =0 hides them)")
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    for sp in sub.choices.values():  # also after the subcommand; SUPPRESS keeps a top-level --quiet
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=quiet_help)
    return parser


def _error(message: str) -> int:
    print(f"minbasis: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, first making the settings of a ``--config`` file the subcommand's defaults.

    Raises
    ------
    MinbasisError, OSError
        An unreadable config file or a bad setting in it.
    SystemExit
        From argparse, for a command line that does not parse (usage and reason on standard error).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command, path = find_config(parser, argv)
    if command and path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        settings = config_settings(read_config(path), command, SUBCOMMANDS, str(path))
        apply_config(sub, settings, path, command)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minbasis`` console script; returns the exit code."""
    from .. import progress as _progress
    from ._common import set_quiet

    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except (MinbasisError, OSError) as exc:  # an unreadable config file or a bad setting in it
        return _error(exc)
    if not args.command:
        parser.print_help()
        return 2
    quiet = bool(getattr(args, "quiet", False))
    was_progress_quiet = _progress._QUIET
    was_quiet = set_quiet(quiet)
    try:
        if quiet:
            _progress.set_quiet(True)
        run = SUBCOMMANDS[args.command].run
        if quiet and args.command in _INFORMATIONAL_OUTPUT:
            import contextlib
            import os

            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                return run(args)
        return run(args)
    except (MinbasisError, OSError) as exc:
        return _error(exc)
    except KeyboardInterrupt:
        print("minbasis: error: interrupted", file=sys.stderr)
        return 130
    finally:
        set_quiet(was_quiet)
        _progress.set_quiet(was_progress_quiet)
