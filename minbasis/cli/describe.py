"""``minbasis describe``: per-atom descriptors (and gradients) of a structures file to .npz or shards."""

from __future__ import annotations

import argparse

import numpy as np

from ..files import check_not_input
from ._common import path_option
from ._config import add_config_flags, add_config_option

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``describe`` subcommand to ``sub``; returns its parser."""
    from ..cluster import describe_shards
    from ..fit.assembly import SHARD_ATOMS

    p = sub.add_parser("describe", help="compute per-atom descriptors (and gradients) to .npz",
                       description="Evaluate a basis on every atom of every structure in DATA (any format ASE "
                                   "reads). Writes features (n_atoms, n_features) in input order, atom_ptr (offsets "
                                   "of each structure) and, with --gradients, gradient_samples (G, 2) [i, k], "
                                   "position_gradients (G, 3, F) = ∂B_i/∂r_k in 1/Å and strain_gradients (N,3,3,F).")
    p.add_argument("data", help="structures file (extxyz, …)")
    path_option(p.add_argument("--basis", required=True, help="basis JSON written by `minbasis basis`"))
    p.add_argument("--gradients", action="store_true", help="also write position and strain gradients")
    p.add_argument("--dask", default=None, metavar="CLUSTER",
                   help="describe on Dask (local:N or tcp://HOST:PORT) into a folder of .npz shards (format: "
                        "docs of minbasis.cluster; a rerun resumes); needs pip install 'minbasis[dask]'")
    p.add_argument("--shards", action="store_true", help="write a folder of shards without Dask (resumable)")
    add_config_flags(p, describe_shards, {
        "shard_atoms": dict(type=int, help=f"atoms per shard (default {SHARD_ATOMS})"),
    })
    path_option(p.add_argument("-o", "--output", required=True,
                               help="output .npz (a folder with --dask or --shards)"))
    add_config_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Describe the structures and write the features; returns the exit code."""
    from ..basis import Basis
    from ..describe import describe
    from ..fit.data import read_structures
    from ..io import atomic_save_npz

    check_not_input([args.output], [args.data, args.basis])
    basis = Basis.load(args.basis)
    if args.dask or args.shards:
        from ..cluster import describe_shards

        index = describe_shards(args.data, basis, args.output, gradients=args.gradients, dask=args.dask,
                                shard_atoms=args.shard_atoms)
        print(f"wrote {args.output}/: {len(index['shards'])} shards, {index['n_atoms']} atoms × "
              f"{index['n_features']} features" + (" with gradients" if args.gradients else ""))
        return 0
    frames = read_structures(args.data)
    res = describe(frames, basis, gradients=args.gradients, strain_gradients=args.gradients, progress=True)
    out = {"basis_hash": np.array(basis.spec.hash)}
    if args.gradients:
        out.update(features=res.features, atom_ptr=res.atom_ptr, gradient_samples=res.gradient_samples,
                   position_gradients=res.position_gradients, strain_gradients=res.strain_gradients)
        X = res.features
    else:
        X = res
        out.update(features=X, atom_ptr=np.cumsum([0] + [len(a) for a in frames]))
    out["numbers"] = np.concatenate([a.numbers for a in frames])
    atomic_save_npz(args.output, out)
    print(f"wrote {args.output}: features {X.shape[0]} atoms × {X.shape[1]}" + (" with gradients" if args.gradients else ""))
    return 0
