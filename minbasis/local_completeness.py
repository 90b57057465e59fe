"""Local completeness with respect to neighbour positions: Jacobian rank against N (docs/theory/completeness.md).

Used by :func:`neighbour_rank` (the public check of issue-level claims such as "the 13
HIP-HOP invariants have rank min(13, 3N − 3)") and by the completeness report.

For N neighbours around a fixed centre the features are functions of 3N coordinates; rotations
about the centre leave them unchanged, so their Jacobian has rank at most 3N − 3 (N ≥ 2; 1 for
N = 1: only the distance), and at most the functional rank K of the basis in moment space.
A basis is locally complete for N neighbours when the measured rank reaches min(K, 3N − 3).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from ase import Atoms

from .errors import MinbasisError

__all__ = ["random_environment", "centre_jacobian", "numerical_rank", "neighbour_rank", "neighbour_rank_curve",
           "rank_bound"]

#: Per-pair gradient memory allowed for one Jacobian evaluation of the full basis (bytes).
FULL_JACOBIAN_BYTES = 160 * 1024**2


def rank_bound(k_rank: int, n_neighbours: int) -> int:
    """Largest possible rank of K invariants as functions of N neighbour positions around a fixed
    centre (docs/theory/completeness.md): min(K, 3N − 3) for N ≥ 2 (rotations act freely on generic
    configurations), min(K, 1) for N = 1 (only the distance), 0 for N = 0."""
    if n_neighbours <= 0 or k_rank <= 0:
        return 0
    if n_neighbours == 1:
        return 1
    return min(int(k_rank), 3 * int(n_neighbours) - 3)


def random_environment(n_neighbours: int, r_cut: float, species: Sequence[str], rng: np.random.Generator,
                       min_distance: float = 0.8) -> Atoms:
    """A centre (atom 0, ``species[0]``) with N random neighbours inside the cutoff.

    Neighbours are placed one by one, uniformly in the volume of the shell 0.25 r_cut … 0.9 r_cut
    (away from the cutoff, where the smooth envelope flattens every feature), at least
    ``min_distance`` Å from every atom already placed (relaxed towards 0.35 Å when the shell is
    crowded); their species cycle through ``species``.

    Returns
    -------
    ase.Atoms, N + 1 atoms, not periodic, positions in Å.

    Raises
    ------
    MinbasisError
        If N neighbours cannot be placed 0.35 Å apart inside the shell.
    """
    rc = float(r_cut)
    pts = [np.zeros(3)]
    d_min = min(float(min_distance), 0.2 * rc)
    tries = 0
    while len(pts) < n_neighbours + 1:
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        r = rc * (0.25**3 + (0.9**3 - 0.25**3) * rng.random()) ** (1 / 3)
        p = v * r
        if min(np.linalg.norm(p - q) for q in pts) > d_min:
            pts.append(p)
            tries = 0
        else:
            tries += 1
            if tries > 2000:
                d_min *= 0.9
                tries = 0
                if d_min < 0.35:
                    raise MinbasisError(f"cannot place {n_neighbours} neighbours inside r_cut = {rc} Å")
    symbols = [species[0]] + [species[k % len(species)] for k in range(n_neighbours)]
    return Atoms(symbols, positions=np.asarray(pts))


def centre_jacobian(atoms: Atoms, basis, centre: int = 0) -> np.ndarray:
    """∂B_centre/∂r_k for every other atom k, from :func:`minbasis.describe` (exact gradients).

    Returns
    -------
    numpy.ndarray, float64, shape (n_features, 3 (n_atoms − 1)), 1/Å per feature unit; column
    3(k') + a is the derivative with respect to coordinate a of the k'-th atom other than the centre.
    """
    from .describe import describe

    desc = describe(atoms, basis, gradients=True)
    others = [k for k in range(len(atoms)) if k != centre]
    col = {k: c for c, k in enumerate(others)}
    J = np.zeros((basis.n_features, 3 * len(others)))
    s = desc.gradient_samples
    for row in np.flatnonzero((s[:, 0] == centre) & (s[:, 1] != centre)):
        c = col[int(s[row, 1])]
        J[:, 3 * c:3 * c + 3] = desc.position_gradients[row].T
    return J


def numerical_rank(J: np.ndarray, positions: np.ndarray | None = None) -> dict:
    """Numerical rank of a centre's feature Jacobian (features × 3N neighbour coordinates).

    Each feature's gradient row is divided by its norm (features have very different scales);
    rows below 1e-11 of the largest norm (features that vanish identically at this configuration,
    whose gradients are pure round-off) are dropped first. The round-off floor of the Jacobian is
    then *measured*: rotations of the neighbours about the centre change no feature, so
    ‖J_n t‖ for the unit rotation directions t (t_j = e_a × r_j) is zero in exact arithmetic and
    its computed value is the noise level. Singular values above 30 times that level count.
    Without ``positions`` the rule of ``numpy.linalg.matrix_rank`` (σ > σ_max · max(shape) · ε)
    is used instead.

    Parameters
    ----------
    J : numpy.ndarray, shape (F, 3N)
    positions : numpy.ndarray, shape (N, 3), optional
        Neighbour positions relative to the centre (Å), in the column order of J.

    Returns
    -------
    dict: ``rank``, ``singular_values`` (descending, relative to the largest), ``noise_floor``
    (relative to the largest, None without positions), ``smallest_kept`` and ``largest_dropped``
    (relative; None when not applicable).
    """
    norms = np.linalg.norm(J, axis=1)
    # rows of features that vanish identically at this configuration carry only round-off;
    # normalising them would turn noise into spurious rank
    live = norms > 1e-11 * norms.max() if norms.size and norms.max() > 0 else np.zeros(len(norms), dtype=bool)
    Jn = J[live] / norms[live, None]
    if Jn.size == 0:
        return {"rank": 0, "singular_values": [], "noise_floor": None, "smallest_kept": None, "largest_dropped": None}
    s = np.linalg.svd(Jn, compute_uv=False)
    rel = s / s[0]
    noise = None
    if positions is not None:
        pos = np.asarray(positions, dtype=float).reshape(-1, 3)
        T = np.stack([np.cross(np.eye(3)[a], pos).ravel() for a in range(3)], axis=1)
        tn = np.linalg.norm(T, axis=0)
        T = T[:, tn > 1e-12 * max(tn.max(), 1e-300)] / tn[tn > 1e-12 * max(tn.max(), 1e-300)]
        noise = float(np.linalg.norm(Jn @ T, axis=0).max() / s[0]) if T.size else 0.0
        thr = max(30.0 * noise, 10 * np.finfo(float).eps)
    else:
        thr = max(Jn.shape) * np.finfo(float).eps
    r = int(np.sum(rel > thr))
    return {"rank": r, "singular_values": rel.tolist(), "noise_floor": noise,
            "smallest_kept": float(rel[r - 1]) if r else None,
            "largest_dropped": float(rel[r]) if r < len(rel) else None}


def _default_n_values(k_rank: int, n_top_cap: int = 100) -> list[int]:
    top = min(max(math.ceil((k_rank + 3) / 3) + 3, 4), n_top_cap)
    grid = [1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 72, 80, 90, 100]
    vals = sorted({n for n in grid if n <= top} | {top, max(1, math.ceil((k_rank + 3) / 3))} - {0})
    return [n for n in vals if n <= n_top_cap]


def neighbour_rank_curve(full, minimal, *, n_values: Sequence[int] | None = None, seed: int = 0,
                         k_rank: int | None = None) -> dict:
    """Rank of the centre's features with respect to the 3N neighbour coordinates, against N.

    For each N one random environment (:func:`random_environment`, seeded) is evaluated with
    the minimal basis and, while its per-pair gradients fit in :data:`FULL_JACOBIAN_BYTES`, with
    the full basis (:func:`centre_jacobian`, :func:`numerical_rank`).

    Parameters
    ----------
    full, minimal : minbasis.Basis
    n_values : list of int, optional
        Neighbour counts N ≥ 1; default 1, 2, 3, … up to a few past the N where 3N − 3 reaches K
        (at most 100).
    seed : int
    k_rank : int, optional
        Functional rank K of the basis in moment space (default: ``minimal.n_features``).

    Returns
    -------
    dict (JSON key ``neighbour_rank``): ``k_rank``, ``seed``, ``points`` [{``n_neighbours``,
    ``bound_3n_minus_3`` (3N − 3, 1 for N = 1), ``bound`` (min(K, 3N − 3)), ``rank_minimal``,
    ``rank_full`` (None when skipped), ``smallest_kept_minimal``, ``largest_dropped_minimal``,
    ``noise_floor_minimal`` (:func:`numerical_rank`, relative singular values), ``saturated``
    (rank_minimal == bound)}], ``all_saturated``.

    Raises
    ------
    MinbasisError
        N < 1, or neighbours that cannot be placed inside the cutoff.
    """
    K = int(minimal.n_features if k_rank is None else k_rank)
    ns = list(n_values) if n_values is not None else _default_n_values(K)
    if any(int(n) < 1 for n in ns):
        raise MinbasisError(f"neighbour counts must be >= 1, got {ns}")
    rng = np.random.default_rng(seed)
    species = list(full.species)
    F_full = full.n_features
    points = []
    for n in ns:
        n = int(n)
        atoms = random_environment(n, full.r_cut, species, rng)
        pos = atoms.positions[1:] - atoms.positions[0]
        rm = numerical_rank(centre_jacobian(atoms, minimal), pos)
        rf = None
        if (n + 1) * n * 3 * F_full * 8 <= FULL_JACOBIAN_BYTES:
            rf = numerical_rank(centre_jacobian(atoms, full), pos)["rank"]
        b = rank_bound(K, n)
        points.append({"n_neighbours": n, "bound_3n_minus_3": 1 if n == 1 else 3 * n - 3, "bound": b,
                       "rank_minimal": rm["rank"], "rank_full": rf, "smallest_kept_minimal": rm["smallest_kept"],
                       "largest_dropped_minimal": rm["largest_dropped"], "noise_floor_minimal": rm["noise_floor"],
                       "saturated": rm["rank"] == b})
    return {"k_rank": K, "seed": int(seed), "points": points, "all_saturated": all(p["saturated"] for p in points)}


def neighbour_rank(basis, n_neighbours: int, *, r_cut: float = 4.0, n_configs: int = 3, seed: int = 0,
                   return_details: bool = False):
    """Rank of the Jacobian of a centre's invariants with respect to N neighbour coordinates.

    N neighbours are placed at random around a centre (:func:`random_environment`, species of
    the basis in turn), :func:`centre_jacobian` gives the exact gradients from the kernels, and
    :func:`numerical_rank` counts singular values above the measured round-off floor. The
    generic rank is the largest over ``n_configs`` configurations. A locally complete set
    reaches :func:`rank_bound` = min(K, 3N − 3) (1 for N = 1).

    Parameters
    ----------
    basis : minbasis.Basis or sequence of invariant dicts
        Invariant dicts are wrapped in a one-species ("Cu") basis with cutoff ``r_cut`` (Å); they
        must then use channel z = 0 only.
    n_neighbours : int
        N ≥ 1.
    r_cut : float
        Cutoff in Å when ``basis`` is a list of invariants.
    n_configs : int
        Random configurations tried (≥ 1).
    seed : int
    return_details : bool
        Also return a dict with ``ranks`` and ``singular_values`` per configuration, ``max_rank``
        (:func:`rank_bound`), ``n_features`` and ``n_neighbours``.

    Returns
    -------
    int, or (int, dict) with ``return_details``.

    Raises
    ------
    MinbasisError
        N < 1, n_configs < 1, or bare invariants that use a channel z ≠ 0.
    """
    from .basis import Basis
    from .spec import invariant_moments

    N = int(n_neighbours)
    if N < 1:
        raise MinbasisError(f"n_neighbours must be >= 1, got {n_neighbours}")
    if int(n_configs) < 1:
        raise MinbasisError(f"n_configs must be >= 1, got {n_configs}")
    if not isinstance(basis, Basis):
        invariants = list(basis)
        if any(m[0] != 0 for inv in invariants for m in invariant_moments(inv)):
            raise MinbasisError("neighbour_rank of bare invariants needs one species: every moment must have z = 0")
        basis = Basis.from_invariants(["Cu"], r_cut, invariants)
    rng = np.random.default_rng(seed)
    ranks, svals = [], []
    for _ in range(int(n_configs)):
        atoms = random_environment(N, basis.r_cut, list(basis.species), rng)
        res = numerical_rank(centre_jacobian(atoms, basis), atoms.positions[1:] - atoms.positions[0])
        ranks.append(res["rank"])
        svals.append(res["singular_values"])
    rank = max(ranks)
    if return_details:
        return rank, {"ranks": ranks, "singular_values": svals, "max_rank": rank_bound(basis.n_features, N),
                      "n_features": basis.n_features, "n_neighbours": N}
    return rank
