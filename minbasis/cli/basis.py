"""``minbasis basis``: build an ACE or Cartesian basis specification (JSON)."""

from __future__ import annotations

import argparse
import time

from ..errors import MinbasisError
from ._common import int_list, path_option, species
from ._config import add_config_flags, add_config_option

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``basis`` subcommand to ``sub``; returns its parser."""
    from ..basis import Basis
    from ..validate import MAX_BASIS_SIZE

    p = sub.add_parser("basis", help="build an ACE or Cartesian basis specification (JSON)",
                       description="Enumerate the linearly independent ACE invariants (B-basis) for the given "
                                   "species and hyper-parameters; with --minimal, prune them to a functionally "
                                   "independent set by Jacobian rank. --n-max and --l-max take one value or one "
                                   "per correlation order (e.g. --n-max 8,6,3 --l-max 0,4,2 for --order 3). "
                                   "With --family cartesian --max-factors K, enumerate the contraction graphs of "
                                   "up to K moment tensors instead (e.g. --n-max 1 --l-max 3 --max-factors 4 "
                                   "--minimal gives 13 invariants).")
    p.add_argument("--species", type=species, required=True, help="comma-separated chemical symbols, e.g. H,C,O")
    p.add_argument("--r-cut", type=float, required=True, help="cutoff radius in Å")
    p.add_argument("--n-max", type=int_list, required=True, help="radial functions per order (int or list)")
    p.add_argument("--l-max", type=int_list, required=True, help="largest l per order (int or list)")
    p.add_argument("--order", type=int, default=None,
                   help="correlation order ν (1..4); body order ν+1 (required with --family ace)")
    p.add_argument("--family", choices=["ace", "cartesian"], default="ace",
                   help="ace: coupled spherical moments (default); cartesian: full contractions of moment "
                        "tensors, one per contraction graph (MTP / CACE / HIP-HOP-NN style)")
    p.add_argument("--max-factors", type=int, default=None,
                   help="cartesian: largest number of tensor factors per invariant (1..6; required with "
                        "--family cartesian); --n-max/--l-max then take one value or one per number of factors")
    add_config_flags(p, Basis.cartesian, {
        "symmetric": dict(choices=["stf", "plain"],
                          help="cartesian: symmetric trace-free tensors (stf) or plain symmetric tensors ({default})"),
    })
    p.add_argument("--include-products", action="store_true",
                   help="cartesian: also keep disconnected graphs (products), the linearly complete set")
    add_config_flags(p, {"ace": Basis.ace, "cartesian": Basis.cartesian}, {
        "total_degree": dict(type=float, sources={"ace": (Basis.ace, "total_degree")},
                             help="keep products with Σ(n+1+l) ≤ this"),
        "radial_scale": dict(type=float, help="distance-transform exponent (0: linear; {default})"),
    })
    p.add_argument("--minimal", action="store_true", help="keep only functionally independent invariants")
    add_config_flags(p, {"ace": Basis.ace, "cartesian": Basis.cartesian}, {
        "max_size": dict(flag="--max-basis-size", type=float,
                         help=f"refuse ACE enumerations whose size estimate (coupling-tensor entries) exceeds this "
                              f"(default {float(MAX_BASIS_SIZE):g}, or $MINBASIS_MAX_BASIS_SIZE)"),
    })
    path_option(p.add_argument("-o", "--output", required=True, help="output JSON file"))
    add_config_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Build (and with --minimal prune) the basis and write its JSON; returns the exit code."""
    from ..basis import Basis

    t0 = time.perf_counter()
    if args.family == "cartesian":
        if args.max_factors is None:
            raise MinbasisError("--family cartesian needs --max-factors (number of tensor factors, e.g. 4)")
        if args.order is not None or args.total_degree is not None:
            raise MinbasisError("--order and --total-degree belong to --family ace; use --max-factors for cartesian")
        basis = Basis.cartesian(args.species, args.r_cut, args.n_max, args.l_max, args.max_factors,
                                symmetric=args.symmetric, include_products=args.include_products,
                                radial_scale=args.radial_scale, max_size=args.max_basis_size)
    else:
        if args.order is None:
            raise MinbasisError("--family ace needs --order (correlation order ν, 1..4)")
        if args.max_factors is not None:
            raise MinbasisError("--max-factors belongs to --family cartesian; use --order for ace")
        basis = Basis.ace(args.species, args.r_cut, args.n_max, args.l_max, args.order,
                          total_degree=args.total_degree, radial_scale=args.radial_scale,
                          max_size=args.max_basis_size)
    print(f"full basis: {basis.n_features} invariants, per order {basis.counts_by_order()}")
    if args.minimal:
        basis = basis.minimal()
        rec = basis.spec.pruning
        print(f"minimal basis: {basis.n_features} functionally independent invariants "
              f"(V = {rec['n_variables']} moment components, maximum {rec['max_rank']}), per order {basis.counts_by_order()}")
    basis.save(args.output)
    print(f"wrote {args.output} (hash {basis.spec.hash[:12]}, {time.perf_counter() - t0:.1f} s)")
    return 0
