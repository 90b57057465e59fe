#!/usr/bin/env python
"""minbasis against peer codes on the workloads of benchmarks/README.md, side by side in one run.

Rows (``--peers``), each with and without position gradients where the code has them:

* ``minbasis``   ``minbasis.describe(atoms, basis[, gradients=True])`` for the pacemaker-style
                 ``pace`` basis ``Basis.ace(species, 5.0, n_max=[8, 8, 3], l_max=[0, 6, 3], order=3)``,
                 its ``.minimal()`` and a Cartesian basis of the same space
                 (``Basis.cartesian(species, 5.0, n_max=[8, 8, 3], l_max=[0, 6, 3], max_factors=3,
                 include_products=True)``), plus ``LinearModel(pace, random weights, e0=0).predict``
                 (energy, forces and stress without the Jacobian);
* ``featomic``   SOAP power spectrum, 8 radial GTOs (``max_radial=7``, inclusive), l ≤ 6,
                 ShiftedCosine cutoff 5 Å (width 0.5), Gaussian density width 0.3 Å;
* ``dscribe``    ``SOAP(r_cut=5, n_max=8, l_max=6, sigma=0.3, rbf="gto")``; gradients: analytical
                 for molecules, numerical (the only kind DScribe has for periodic systems) on a
                 subset of centres for the crystals (see ``DSCRIBE_PERIODIC_CENTRES``);
* ``ace-jax``    ``build_model(elements, order=3, totaldegree=34, nmax_by_order=[8, 8, 3],
                 lmax_by_order=[0, 6, 3], rnl_basis="sbessel", rcut=5)``: 397 B functions per
                 element (the same count as ``pace``) plus its 34 pair functions; features through
                 ``ACEModel.site_basis_dense``, gradients through ``ACEModel.edge_jacobian_dense``
                 (features and the per-edge Jacobian), both jitted, float64, over chunks of atoms;
                 the neighbour list (vesin) and the dense layout are built inside the timed call;
* ``pyace``      python-ace (pacemaker): ``ACEBBasisSet`` from ``create_multispecies_basis_config``
                 with ``nradmax_by_orders=[8, 8, 3]``, ``lmax_by_orders=[0, 6, 3]``, SBessel radial
                 basis, rcut 5 (397 functions per element), evaluated by ``ACECalculator.compute``
                 on ``ACEBEvaluator`` (``compute_projections=True``; gradients: ``compute_b_grad=True``,
                 which gives Σ_i dB_i/dr_k per atom k, not the per-pair Jacobian);
* ``sphericart`` real spherical harmonics l ≤ 6 on every pair vector (pairs precomputed): a
                 lower bound for the angular part;
* ``vesin``      the neighbour list alone (``vesin.NeighborList.compute``, quantities "ijD").

Each case runs in its own subprocess with the threads given (``--threads``; 1 sets every thread
pool to one thread: Numba, OpenMP, BLAS, Rayon (featomic), XLA (ace-jax), DScribe ``n_jobs``).
Per case: one call on a tiny structure (compilation), one full-size warm-up call (for ace-jax the
JIT compilation of the full-size shapes), then ``--repeats`` timed calls: µs/atom is the best
of them per atom. Peak memory as in describe_speed.py. The ratio column divides by the minbasis
``describe`` time of the ``pace`` basis on the same workload, gradients flag and threads.

Usage::

    python benchmarks/peers.py --quick                      # smoke test, < 3 min
    python benchmarks/peers.py --threads 1 --workloads cu   # one workload, one thread
    python benchmarks/peers.py --peers minbasis,featomic,vesin

Writes ``--out`` (default benchmarks/results/peers.json, ``--quick``: peers_quick.json), rewritten
after every case. Install the peers with ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from describe_speed import (  # noqa: E402  (shared workload builders and memory helpers)
    GRAD_PEAK_FACTOR, R_CUT, SIZES, SPECIES, current_rss_bytes, machine_info, make_workload,
    maxrss_bytes, mem_available_bytes, reset_peak_rss, tiny_workload, workload_stats,
)

QUICK_SIZES = {"cu": 2, "si": 1, "ethanol": 10}  # 32, 8 atoms, 10 molecules
PACE = dict(n_max=[8, 8, 3], l_max=[0, 6, 3], order=3)
ACEJAX_TOTALDEGREE = 34  # smallest total degree at which the [8,8,3]/[0,6,3] caps bind: 397 B functions (30: 390)
DSCRIBE_PERIODIC_CENTRES = 16  # numerical gradients on crystals: this many centres (first atoms)
ACEJAX_CHUNK = {False: 1024, True: 128}
PYACE_GRAD_MAX_STRUCTURES = 5  # pyace gradients on ethanol take seconds per molecule: time the first 5, per atom
QUICK_SKIP = {("minbasis", "pace-minimal"), ("minbasis", "cartesian")}  # --quick: same code path as pace  # atoms per jitted call (features, gradients)

# peer -> list of (variant, gradients) ; gradients for "linear" means forces+stress
PEER_CASES = {
    "minbasis": [("pace", False), ("pace", True), ("pace-minimal", False), ("pace-minimal", True),
                 ("cartesian", False), ("cartesian", True), ("linear", True)],
    "featomic": [("soap-ps", False), ("soap-ps", True)],
    "dscribe": [("soap", False), ("soap", True)],
    "ace-jax": [("ace", False), ("ace", True)],
    "pyace": [("ace", False), ("ace", True)],
    "sphericart": [("l6", False), ("l6", True)],
    "vesin": [("nlist", False)],
}
PEER_MODULES = {"minbasis": "minbasis", "featomic": "featomic", "dscribe": "dscribe", "ace-jax": "ace_jax",
                "pyace": "pyace", "sphericart": "sphericart", "vesin": "vesin"}
PEER_DISTS = {"featomic": "featomic", "dscribe": "dscribe", "ace-jax": "ace-jax", "jax": "jax", "jaxlib": "jaxlib",
              "pyace": "python-ace", "sphericart": "sphericart", "vesin": "vesin", "metatensor-core": "metatensor-core"}
PEER_SETTINGS = {
    "minbasis": {"pace": "Basis.ace(species, 5.0, n_max=[8, 8, 3], l_max=[0, 6, 3], order=3)",
                 "pace-minimal": "the same .minimal() (seeds 0..4, first that passes)",
                 "cartesian": "Basis.cartesian(species, 5.0, n_max=[8, 8, 3], l_max=[0, 6, 3], max_factors=3, "
                              "include_products=True)",
                 "linear": "LinearModel(pace, weights=normal(0, 1) seed 0, e0=0).predict(atoms)"},
    "featomic": "SoapPowerSpectrum(cutoff={radius: 5.0, smoothing: ShiftedCosine width 0.5}, density={Gaussian "
                "width 0.3}, basis={TensorProduct, max_angular 6, radial Gto max_radial 7}); "
                "compute(systems, gradients=['positions']); RAYON_NUM_THREADS=threads",
    "dscribe": "SOAP(species, r_cut=5.0, n_max=8, l_max=6, sigma=0.3, rbf='gto', periodic=crystal, sparse=False); "
               "create(systems, n_jobs=threads); gradients: derivatives(method='analytical') for molecules, "
               f"method='numerical' for crystals on the first {DSCRIBE_PERIODIC_CENTRES} atoms as centres with "
               "include = atoms within r_cut of them, time divided by the number of centres",
    "ace-jax": f"build_model(elements, order=3, totaldegree={ACEJAX_TOTALDEGREE}, nmax_by_order=[8, 8, 3], "
               "lmax_by_order=[0, 6, 3], rnl_basis='sbessel', rcut=5.0, r0=None (H,C,O: 1.0)); float64; "
               "eqx.filter_jit(site_basis_dense) / eqx.filter_jit(edge_jacobian_dense) over chunks of "
               f"{ACEJAX_CHUNK[False]} / {ACEJAX_CHUNK[True]} atoms; vesin neighbour list + dense layout inside the "
               "timed call",
    "pyace": "create_multispecies_basis_config({elements, embeddings ALL: FinnisSinclairShiftedScaled fs [1, 1] "
             "ndensity 1, bonds ALL: SBessel rcut 5.0 dcut 0.01, functions ALL: nradmax_by_orders [8, 8, 3], "
             "lmax_by_orders [0, 6, 3]}) -> ACEBBasisSet -> ACEBEvaluator -> ACECalculator.compute(ae, "
             "compute_projections=True[, compute_b_grad=True]) per structure, ae from "
             "aseatoms_to_atomicenvironment (pyace's own neighbour list, inside the timed call); single-threaded",
    "sphericart": "SphericalHarmonics(6).compute(xyz) / compute_with_gradients(xyz) on all pair vectors "
                  "(vesin, outside the timed call); OMP_NUM_THREADS=threads",
    "vesin": "NeighborList(cutoff=5.0, full_list=True).compute(points, box, periodic, quantities='ijD') per structure",
}

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")


def peer_versions() -> dict:
    out = {}
    for k, dist in PEER_DISTS.items():
        try:
            out[k] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[k] = None
    return out


# --------------------------------------------------------------------------------------------
# helpers used inside the workers
# --------------------------------------------------------------------------------------------
def _vesin_pairs(atoms_list, quantities="ijD"):
    """Full neighbour lists of every structure: list of (i, j, D) arrays from vesin."""
    from vesin import NeighborList

    nl = NeighborList(cutoff=R_CUT, full_list=True)
    out = []
    for s in atoms_list:
        pbc = bool(s.pbc.all())
        box = np.ascontiguousarray(s.cell.array if pbc else np.zeros((3, 3)), dtype=np.float64)
        out.append(nl.compute(points=np.ascontiguousarray(s.positions, dtype=np.float64), box=box,
                              periodic=pbc, quantities=quantities))
    return out


def _minimal(basis):
    """basis.minimal(), retrying seeds 1..4 as describe_speed.py does."""
    try:
        return basis.minimal(), 0
    except Exception:  # noqa: BLE001
        for seed in range(1, 5):
            try:
                return basis.minimal(seed=seed), seed
            except Exception:  # noqa: BLE001
                continue
        raise


def _minbasis_basis(species, variant):
    import minbasis as mb

    if variant == "cartesian":
        return mb.Basis.cartesian(species, R_CUT, n_max=PACE["n_max"], l_max=PACE["l_max"], max_factors=3,
                                  include_products=True), {}
    basis = mb.Basis.ace(species, R_CUT, **PACE)
    if variant == "pace-minimal":
        basis, seed = _minimal(basis)
        return basis, {"minimal_seed": seed}
    return basis, {}


def setup_minbasis(case, atoms):
    import minbasis as mb

    species = SPECIES[case["workload"]]
    variant, grad = case["variant"], case["gradients"]
    basis, extra = _minbasis_basis(species, "pace" if variant == "linear" else variant)
    _ = basis.plan  # build the evaluation plan outside the timing
    if variant == "linear":
        from minbasis.fit import LinearModel

        rng = np.random.default_rng(0)
        model = LinearModel(basis, weights=rng.normal(size=(len(basis.species), basis.n_features)),
                            e0=np.zeros(len(basis.species)))
        call = model.predict
    elif grad:
        def call(a):
            return mb.describe(a, basis, gradients=True)
    else:
        def call(a):
            return mb.describe(a, basis)
    return call, {"n_features": basis.n_features, **extra}


def setup_featomic(case, atoms):
    from featomic import SoapPowerSpectrum

    calc = SoapPowerSpectrum(
        cutoff={"radius": R_CUT, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={"type": "TensorProduct", "max_angular": 6, "radial": {"type": "Gto", "max_radial": 7}},
    )
    grads = ["positions"] if case["gradients"] else None

    def call(a):
        return calc.compute(a, gradients=grads)

    def n_features(out, n_atoms):  # feature values stored per atom (all blocks)
        return sum(b.values.shape[0] * b.values.shape[1] for b in out.blocks()) / n_atoms

    return call, {"features_fn": n_features}


def setup_dscribe(case, atoms):
    from dscribe.descriptors import SOAP

    periodic = bool(atoms[0].pbc.all())
    soap = SOAP(species=SPECIES[case["workload"]], r_cut=R_CUT, n_max=8, l_max=6, sigma=0.3, rbf="gto",
                periodic=periodic, sparse=False)
    n_jobs = int(case["threads"])
    info = {"n_features": soap.get_number_of_features()}
    target = atoms[0] if len(atoms) == 1 else atoms
    if not case["gradients"]:
        def call(a):
            t = a[0] if len(a) == 1 else a
            return soap.create(t, n_jobs=n_jobs)
        return call, info
    if not periodic:
        def call(a):
            t = a[0] if len(a) == 1 else a
            return soap.derivatives(t, method="analytical", return_descriptor=True, n_jobs=n_jobs)
        info["dscribe_method"] = "analytical"
        return call, info
    # periodic: numerical derivatives only; a subset of centres, derivatives w.r.t. their neighbours
    n_c = min(DSCRIBE_PERIODIC_CENTRES, len(target))
    centres = list(range(n_c))
    (i, j, _), = _vesin_pairs([target], "ijD")
    include = sorted(set(centres) | set(j[np.isin(i, centres)].tolist()))
    info.update(dscribe_method="numerical", timed_centres=n_c, include_atoms=len(include))

    def call(a):
        return soap.derivatives(a[0], centers=centres, include=include, method="numerical",
                                return_descriptor=True, n_jobs=n_jobs)
    # the per-atom time is the call time divided by the centres, not by all atoms
    info["atoms_per_call"] = n_c
    return call, info


def acejax_cache_path(species) -> Path:
    """Where the built ace-jax basis is kept between workers (building it is slow: pure-Python spec search)."""
    root = Path(os.environ.get("MINBASIS_BENCH_CACHE", Path.home() / ".cache" / "minbasis-bench"))
    return root / f"acejax-{'-'.join(species)}-o3-td{ACEJAX_TOTALDEGREE}-n883-l063.npz"


def _acejax_model(species):
    os.environ.setdefault("ACEJAX_COUPLING_CACHE", str(Path.home() / ".cache" / "ace-jax-coupling"))
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from ace_jax.eval.io import load

    path = acejax_cache_path(species)
    if not path.exists():
        from ace_jax.basis.export import save_npz
        from ace_jax.basis.model import build_model

        r0 = None if len(species) == 1 else 1.0  # the per-pair default needs bond lengths H lacks
        b = build_model(species, order=3, totaldegree=ACEJAX_TOTALDEGREE, nmax_by_order=PACE["n_max"],
                        lmax_by_order=PACE["l_max"], rnl_basis="sbessel", rcut=R_CUT, r0=r0)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        save_npz(tmp, b)
        os.replace(tmp, path)
    model, meta, _ = load(path, dtype=jnp.float64)
    return model, meta


def setup_acejax(case, atoms):
    import equinox as eqx
    import jax.numpy as jnp
    from ace_jax.eval.model import highest_precision

    species = SPECIES[case["workload"]]
    t0 = time.perf_counter()
    model, meta = _acejax_model(species)
    build_s = time.perf_counter() - t0
    zmap = {s: k for k, s in enumerate(species)}
    grad = case["gradients"]
    n_total = sum(len(x) for x in atoms)
    chunk = min(ACEJAX_CHUNK[grad], n_total)

    if grad:
        fn = eqx.filter_jit(lambda m, r, zi, zj, mask: m.edge_jacobian_dense(r, zi, zj, mask))
    else:
        fn = eqx.filter_jit(lambda m, r, zi, zj, mask: m.site_basis_dense(r, zi, zj, mask))

    def dense_layout(a):
        pairs = _vesin_pairs(a)
        z = np.concatenate([[zmap[s] for s in x.get_chemical_symbols()] for x in a]).astype(np.int32)
        ii, jj, dd, off = [], [], [], 0
        for x, (i, j, d) in zip(a, pairs):
            ii.append(i + off)
            jj.append(j + off)
            dd.append(d)
            off += len(x)
        i = np.concatenate(ii)
        j = np.concatenate(jj)
        d = np.concatenate(dd)
        order = np.argsort(i, kind="stable")
        i, j, d = i[order], j[order], d[order]
        n = off
        counts = np.bincount(i, minlength=n)
        K = max(int(counts.max()), 1)
        n_pad = -(-n // chunk) * chunk
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(len(i)) - start[i]
        rij = np.zeros((n_pad, K, 3))
        rij[..., 0] = 0.5 * R_CUT
        zi = np.zeros((n_pad, K), np.int32)
        zj = np.zeros((n_pad, K), np.int32)
        mask = np.zeros((n_pad, K), bool)
        rij[i, slot] = d
        zi[:n] = z[:, None]
        zj[i, slot] = z[j]
        mask[i, slot] = True
        return n, rij, zi, zj, mask

    def call(a):
        n, rij, zi, zj, mask = dense_layout(a)
        outs = []
        with highest_precision():
            for c in range(0, len(rij), chunk):
                s = slice(c, c + chunk)
                res = fn(model, jnp.asarray(rij[s]), jnp.asarray(zi[s]), jnp.asarray(zj[s]), jnp.asarray(mask[s]))
                outs.append(tuple(np.asarray(x) for x in res))  # forces completion, copies to host
        return outs

    n_b, n_pair = meta["n_B"], meta["n_pair"]
    return call, {"n_features": n_b + n_pair, "n_B": n_b, "n_pair": n_pair, "acejax_build_s": build_s}


def setup_pyace(case, atoms):
    from pyace import ACEBBasisSet, create_multispecies_basis_config
    from pyace.atomicenvironment import aseatoms_to_atomicenvironment
    from pyace.calculator import ACECalculator
    from pyace.evaluator import ACEBEvaluator

    species = SPECIES[case["workload"]]
    cfg = {"deltaSplineBins": 0.001, "elements": species,
           "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1], "ndensity": 1}},
           "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [5.25], "rcut": R_CUT, "dcut": 0.01,
                             "NameOfCutoffFunction": "cos"}},
           "functions": {"ALL": {"nradmax_by_orders": PACE["n_max"], "lmax_by_orders": PACE["l_max"]}}}
    basis = ACEBBasisSet(create_multispecies_basis_config(cfg))
    evaluator = ACEBEvaluator(basis)  # keep a reference: ACECalculator holds a raw pointer to it
    calc = ACECalculator(evaluator)
    emap = {e: k for k, e in enumerate(basis.elements_name)}
    grad = case["gradients"]

    subset = grad and len(atoms) > PYACE_GRAD_MAX_STRUCTURES

    def call(a):
        out = []
        for s in (a[:PYACE_GRAD_MAX_STRUCTURES] if subset else a):
            ae = aseatoms_to_atomicenvironment(s, cutoff=R_CUT, elements_mapper_dict=emap)
            calc.compute(ae, compute_projections=True, compute_b_grad=grad)
            out.append((np.asarray(calc.projections), np.asarray(calc.forces_bfuncs) if grad else None))
        return out

    call._keep = (basis, evaluator, calc)
    per_element = [len(r1) + len(r) for r1, r in zip(basis.basis_rank1, basis.basis)]
    info = {"n_features": max(per_element), "features_per_element": per_element}
    if subset:  # µs/atom from the first structures only
        info["atoms_per_call"] = sum(len(x) for x in atoms[:PYACE_GRAD_MAX_STRUCTURES])
        info["subset_note"] = f"first {PYACE_GRAD_MAX_STRUCTURES} structures"
    return call, info


def setup_sphericart(case, atoms):
    import sphericart

    sh = sphericart.SphericalHarmonics(6)
    xyz = np.ascontiguousarray(np.concatenate([d for _, _, d in _vesin_pairs(atoms)]), dtype=np.float64)
    grad = case["gradients"]

    def call(a):
        v = xyz if a is atoms else np.ascontiguousarray(np.concatenate([d for _, _, d in _vesin_pairs(a)]))
        return sh.compute_with_gradients(v) if grad else sh.compute(v)
    return call, {"n_features": 49, "features_note": "49 per pair"}


def setup_vesin(case, atoms):
    return _vesin_pairs, {"n_features": None}


SETUP = {"minbasis": setup_minbasis, "featomic": setup_featomic, "dscribe": setup_dscribe,
         "ace-jax": setup_acejax, "pyace": setup_pyace, "sphericart": setup_sphericart, "vesin": setup_vesin}


# --------------------------------------------------------------------------------------------
# worker
# --------------------------------------------------------------------------------------------
def run_case(case: dict) -> dict:
    import numba

    threads = int(case["threads"])
    numba.set_num_threads(threads)
    peer = case["peer"]
    try:
        __import__(PEER_MODULES[peer])
    except Exception as exc:  # noqa: BLE001
        return {"status": "unavailable", "reason": f"{peer}: not installable here ({type(exc).__name__}: {exc})"}
    atoms = make_workload(case["workload"], case["size"])
    tiny = tiny_workload(case["workload"])
    n_atoms = sum(len(a) for a in atoms)
    t0 = time.perf_counter()
    call, info = SETUP[peer](case, atoms)
    setup_s = time.perf_counter() - t0
    features_fn = info.pop("features_fn", None)
    atoms_per_call = info.pop("atoms_per_call", n_atoms)

    t0 = time.perf_counter()
    if peer == "dscribe" and case["gradients"] and info.get("dscribe_method") == "numerical":
        compile_s = 0.0  # its call is bound to the full structure's centres
    else:
        call(tiny)
        compile_s = time.perf_counter() - t0
    gc.collect()
    if reset_peak_rss():
        rss_before, peak_method = current_rss_bytes(), "peak RSS reset via /proc/self/clear_refs, then ru_maxrss"
    else:
        rss_before, peak_method = maxrss_bytes(), "ru_maxrss delta (a lower bound)"
    t0 = time.perf_counter()
    out = call(atoms)
    warmup_s = time.perf_counter() - t0
    if features_fn is not None:
        info["n_features"] = features_fn(out, n_atoms)
    del out
    times = []
    for _ in range(case["repeats"]):
        t0 = time.perf_counter()
        out = call(atoms)
        times.append(time.perf_counter() - t0)
        del out
    rss_after = maxrss_bytes()
    best = min(times)
    return {
        "n_atoms": n_atoms, "atoms_per_call": atoms_per_call, "threads": threads,
        "setup_s": setup_s, "compile_s": compile_s, "warmup_s": warmup_s, "times_s": times, "best_s": best,
        "us_per_atom": best / atoms_per_call * 1e6,
        "median_us_per_atom": float(np.median(times)) / atoms_per_call * 1e6,
        "rss_before_mb": rss_before / 2**20, "peak_rss_mb": rss_after / 2**20,
        "peak_increase_mb": (rss_after - rss_before) / 2**20, "peak_method": peak_method, **info,
    }


def worker_main(spec: str) -> None:
    case = json.loads(spec)
    try:
        rec = run_case(case)
        rec = {"status": rec.pop("status", "ok"), **rec}
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        import traceback

        rec = {"status": "error", "reason": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(limit=8)}
    print("@@RESULT@@" + json.dumps(rec), flush=True)


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in THREAD_ENV:
        env[k] = str(threads) if k != "NUMBA_NUM_THREADS" else env.get(k, str(os.cpu_count()))
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1"
                            " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    else:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1").strip()
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("ACEJAX_COUPLING_CACHE", str(Path.home() / ".cache" / "ace-jax-coupling"))
    return env


def run_worker(case: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(case)]
    try:
        proc = subprocess.run(cmd, env=thread_env(int(case["threads"])), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
    why = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit code {proc.returncode}"
    return {"status": "error", "reason": f"worker {why}: {' | '.join(tail)}"}


# --------------------------------------------------------------------------------------------
# memory estimates (bytes of the case's largest result, and the predicted peak)
# --------------------------------------------------------------------------------------------
def estimate_peak(case: dict, n_feat_minbasis: dict) -> float | None:
    if not case["gradients"] or case["variant"] == "linear":
        return None
    pairs, n = case["n_pairs"], case["n_atoms"]
    peer = case["peer"]
    if peer == "minbasis":
        return GRAD_PEAK_FACTOR * pairs * 3 * n_feat_minbasis[case["variant"]] * 8
    if peer == "featomic":  # gradient rows: (centre, neighbour) per block incl. self; measured ≈3×
        n_types = len(SPECIES[case["workload"]])
        feats = 448 * n_types * (n_types + 1) // 2
        return 3.0 * (pairs + n) * 3 * feats * 8
    if peer == "ace-jax":  # host copies of J (n*K, D, 3); K ≈ 1.3 × mean neighbours
        return 2.0 * 1.3 * pairs * 3 * 431 * 8
    if peer == "dscribe" and not case["periodic"]:  # (n_mol, 9, 9, 3, F) dense
        f = 1260 if len(SPECIES[case["workload"]]) == 3 else 252
        per_mol = 9 * 9 * 3 * f * 8
        return 2.5 * case["n_structures"] * per_mol
    return None


# --------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------
def add_ratios(records: list[dict]) -> None:
    ref = {}
    for r in records:
        if r["peer"] == "minbasis" and r["variant"] == "pace" and r["status"] == "ok":
            ref[(r["workload"], r["gradients"], r["threads"])] = r["us_per_atom"]
    for r in records:
        base = ref.get((r["workload"], r["gradients"], r["threads"]))
        r["ratio_to_minbasis_describe"] = (r["us_per_atom"] / base if r["status"] == "ok" and base else None)


def fmt_table(records: list[dict]) -> str:
    head = ["workload", "atoms", "peer", "variant", "grad", "thr", "feat/atom", "µs/atom", "ratio",
            "warmup s", "peak MB", "note"]
    rows = []
    for r in records:
        ok = r["status"] == "ok"
        note = "" if ok else f"{r['status']}: {r.get('reason', '')}"
        if ok and r.get("subset_note"):
            note = f"timed on {r['subset_note']} ({r['atoms_per_call']} atoms)"
        elif ok and r.get("atoms_per_call", r["n_atoms"]) != r["n_atoms"]:
            note = f"{r.get('dscribe_method', '')} on {r['atoms_per_call']} centres".strip()
        elif ok and r.get("dscribe_method"):
            note = r["dscribe_method"]
        elif ok and r.get("features_note"):
            note = r["features_note"]
        if r.get("minimal_seed"):
            note = (note + f" minimal seed {r['minimal_seed']}").strip()
        if len(note) > 80:
            note = note[:77] + "..."
        nf = r.get("n_features")
        grad = ("E+F+S" if r["variant"] == "linear" else "yes") if r["gradients"] else "no"
        rows.append([
            r["workload"], str(r["n_atoms"]), r["peer"], r["variant"], grad, str(r["threads"]),
            (f"{nf:.0f}" if isinstance(nf, (int, float)) else "-"),
            f"{r['us_per_atom']:.2f}" if ok else "-",
            f"{r['ratio_to_minbasis_describe']:.3g}" if r.get("ratio_to_minbasis_describe") else "-",
            f"{r['warmup_s']:.2f}" if ok else "-",
            f"{r['peak_increase_mb']:.0f}" if ok else "-",
            note,
        ])
    widths = [max(len(h), *(len(row[k]) for row in rows)) if rows else len(h) for k, h in enumerate(head)]
    numeric = {1, 5, 6, 7, 8, 9, 10}

    def line(cells):
        return "  ".join(c.rjust(w) if k in numeric else c.ljust(w)
                         for k, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring and benchmarks/README.md.")
    p.add_argument("--quick", action="store_true",
                   help="tiny structures (Cu 2×2×2, Si 1×1×1, 10 ethanol), one thread, minbasis pace and linear "
                        "only: smoke test")
    p.add_argument("--peers", default=",".join(PEER_CASES), help=f"subset of {','.join(PEER_CASES)}")
    p.add_argument("--workloads", default="cu,si,ethanol", help="subset of cu,si,ethanol")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default: 1 then all CPUs; --quick: 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case after the warm-up (best kept)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per case before it is abandoned")
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/peers.json, "
                                               "or peers_quick.json with --quick)")
    p.add_argument("--acejax-build", action="store_true",
                   help="also build the 3-species (ethanol) ace-jax basis when it is not cached yet (its pure-Python "
                        "spec search took > 30 min on a 2-core machine); without it that workload's ace-jax rows are "
                        "skipped")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 3:
        p.error("--repeats must be at least 3")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker_main(args.worker)
        return 0

    def log(msg):
        print(msg, flush=True)

    peers = [x.strip() for x in args.peers.split(",") if x.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for name, given, allowed in (("peer", peers, PEER_CASES), ("workload", workloads, SIZES)):
        bad = [x for x in given if x not in allowed]
        if bad:
            print(f"error: unknown {name} {bad}; choose from {', '.join(allowed)}", file=sys.stderr)
            return 2
    ncpu = os.cpu_count() or 1
    if args.threads:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    else:
        threads = [1] if args.quick else list(dict.fromkeys([1, ncpu]))
    out = Path(args.out) if args.out else HERE / "results" / ("peers_quick.json" if args.quick else "peers.json")

    info = machine_info()
    info["peer_versions"] = peer_versions()
    log(f"minbasis {info['minbasis']} ({info['git_commit'] or 'no git'}{', dirty' if info['git_dirty'] else ''}); "
        + ", ".join(f"{k} {v}" for k, v in info["peer_versions"].items()))
    log(f"{info['cpu_model']}, {info['cpu_count']} CPUs, {info['memory_total_gb']:.1f} GB "
        f"({info['memory_available_gb_at_start']:.1f} GB available), load {info['load_average_at_start'][0]:.2f}")

    missing = {p: f"{p}: not installable here (module {PEER_MODULES[p]!r} not found; pip install -e '.[bench]')"
               for p in peers if importlib.util.find_spec(PEER_MODULES[p]) is None}

    cases = []
    for w in workloads:
        size = QUICK_SIZES[w] if args.quick else SIZES[w][0]
        stats = workload_stats(w, size)
        log(f"{w}: size {size}, {stats['n_atoms']} atoms in {stats['n_structures']} structure(s), "
            f"{stats['mean_neighbours']:.1f} neighbours per atom within {R_CUT} Å")
        n_feat = {}
        if "minbasis" in peers:
            for v in ("pace", "pace-minimal", "cartesian"):
                n_feat[v] = _minbasis_basis(SPECIES[w], v)[0].n_features
        for peer in peers:
            for variant, grad in PEER_CASES[peer]:
                if args.quick and (peer, variant) in QUICK_SKIP:
                    continue
                for t in threads:
                    cases.append({"workload": w, "size": size, **stats, "periodic": w != "ethanol",
                                  "peer": peer, "variant": variant, "gradients": grad, "threads": t,
                                  "repeats": args.repeats, "settings": (PEER_SETTINGS[peer].get(variant)
                                                                        if isinstance(PEER_SETTINGS[peer], dict)
                                                                        else PEER_SETTINGS[peer]),
                                  "_n_feat": n_feat})

    records = []
    t_start = time.perf_counter()
    for k, case in enumerate(cases, 1):
        n_feat = case.pop("_n_feat")
        label = (f"[{k}/{len(cases)}] {case['workload']} {case['peer']} {case['variant']} "
                 f"grad={case['gradients']} threads={case['threads']}")
        rec = dict(case)
        if case["peer"] in missing:
            rec.update(status="unavailable", reason=missing[case["peer"]])
            log(f"{label}: {rec['reason']}")
            records.append(rec)
            _write(out, info, args, records, time.perf_counter() - t_start)
            continue
        if case["peer"] == "ace-jax":
            species = SPECIES[case["workload"]]
            path = acejax_cache_path(species)
            if not path.exists() and len(species) > 1 and not args.acejax_build:
                rec.update(status="skipped", reason=f"3-species ace-jax basis not built ({path.name} missing; its "
                                                    "build_spec search takes > 30 min here; use --acejax-build)")
                log(f"{label}: skipped: {rec['reason']}")
                records.append(rec)
                _write(out, info, args, records, time.perf_counter() - t_start)
                continue
            if not path.exists():
                log(f"{label}: building the ace-jax basis for {species} once ({path}) ...")
                t0 = time.perf_counter()
                try:
                    _acejax_model(species)
                    rec["acejax_basis_build_s"] = time.perf_counter() - t0
                    log(f"  built in {rec['acejax_basis_build_s']:.0f} s")
                except Exception as exc:  # noqa: BLE001
                    rec.update(status="error", reason=f"ace-jax basis build failed: {type(exc).__name__}: {exc}")
                    log(f"{label}: {rec['reason']}")
                    records.append(rec)
                    _write(out, info, args, records, time.perf_counter() - t_start)
                    continue
        est = estimate_peak(case, n_feat)
        if est is not None:
            avail = mem_available_bytes()
            rec["est_peak_mb"] = est / 2**20
            if avail is not None and est > 0.9 * avail:
                rec.update(status="skipped", reason=f"predicted peak {est / 1e9:.1f} GB > 90% of available "
                                                    f"memory {avail / 1e9:.1f} GB")
                log(f"{label}: skipped: {rec['reason']}")
                records.append(rec)
                _write(out, info, args, records, time.perf_counter() - t_start)
                continue
        t0 = time.perf_counter()
        rec.update(run_worker(case, args.timeout))
        rec["wall_s"] = time.perf_counter() - t0
        if rec["status"] == "ok":
            log(f"{label}: {rec['us_per_atom']:.2f} µs/atom (best of {len(rec['times_s'])}), "
                f"warm-up {rec['warmup_s']:.2f} s, peak +{rec['peak_increase_mb']:.0f} MB, {rec['wall_s']:.0f} s wall")
        else:
            log(f"{label}: {rec['status']}: {rec['reason']}")
        records.append(rec)
        _write(out, info, args, records, time.perf_counter() - t_start)

    _write(out, info, args, records, time.perf_counter() - t_start)
    print()
    print(fmt_table(records))
    print(f"\n{len(records)} cases in {time.perf_counter() - t_start:.0f} s; results in {out}")
    print("µs/atom: best wall time of the call / atoms (dscribe crystal gradients: / centres); ratio: to minbasis "
          "describe (pace) on the same workload, gradients flag and threads; peak MB: the worker's peak RSS during "
          "the warm-up and timed calls minus its RSS before them.")
    return 0


def _write(out: Path, info: dict, args, records: list[dict], elapsed: float) -> None:
    add_ratios(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "peers",
        "machine": info,
        "settings": {"quick": args.quick, "repeats": args.repeats, "r_cut": R_CUT, "argv": sys.argv[1:],
                     "peer_settings": PEER_SETTINGS, "pace": PACE, "acejax_totaldegree": ACEJAX_TOTALDEGREE,
                     "dscribe_periodic_centres": DSCRIBE_PERIODIC_CENTRES,
                     "pyace_grad_max_structures": PYACE_GRAD_MAX_STRUCTURES, "acejax_chunk": ACEJAX_CHUNK,
                     "thread_env": list(THREAD_ENV) + ["XLA_FLAGS"]},
        "elapsed_s": elapsed,
        "results": records,
    }
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
