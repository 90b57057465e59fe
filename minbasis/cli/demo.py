"""``minbasis demo``: the whole pipeline on the bundled ethanol MP2 frames (:func:`minbasis.demo.run_demo`)."""

from __future__ import annotations

import argparse

from ._common import seed
from ._config import add_config_flags, add_config_option

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to ``sub``; returns its parser (defaults from :func:`~minbasis.demo.run_demo`)."""
    from ..demo import run_demo

    p = sub.add_parser("demo", help="end-to-end example on bundled ethanol MP2 data",
                       description="Build an ACE basis for H, C, O, prune it to its minimal functionally independent "
                                   "subset, fit MP2 energies and forces of bundled ethanol frames, and print held-out "
                                   "errors of the full and minimal bases.")
    add_config_flags(p, run_demo, {
        "seed": dict(type=seed, help="seed of the train/test split ({default})"),
        "n_train": dict(type=int, help="training frames (rest of the 240 are held out; {default})"),
    })
    add_config_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    from ..demo import run_demo

    run_demo(seed=args.seed, n_train=args.n_train)
    return 0
