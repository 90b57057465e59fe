"""Linear ACE fits with no settings: data-driven radial basis, basis/weight/prior selection, budget.

``minbasis fit TRAIN -o model.npz`` (no ``--basis``, or ``--basis auto``) and
:func:`fit_auto` do what a careful user would otherwise script:

1. **Cutoff and radial basis fitted to the data.** Unless ``r_cut`` is given, 5 and 6 Å are
   both tried on the smallest candidate basis and the cutoff that validates better is used for
   the larger ones (Ge: validation force MAE 0.052 eV/Å at 5 Å against 0.047 at 6 Å). The
   Chebyshev radial functions live on
   x(r) ∈ [−1, 1] (:mod:`minbasis.kernels.primitives`). With the exponential transform of scale
   s = 5 the neighbour distances of a solid (2–5 Å) all land in x ∈ [0.74, 1], where the
   functions are nearly collinear. :func:`radial_scale_for` picks s so that 90 % of the shortest
   interatomic distance in the training data maps to x = −0.9. For solids and molecules at
   r_cut 5 Å the rule gives s < 0 (resolution shifted towards r_cut), which can help (Ge) or
   hurt (Cu–Ni–Al: held-out force MAE 0.070 against 0.013 eV/Å at s = 0): it is tried against
   the linear map s = 0 on the smallest candidate basis and kept only where it validates
   better; a rule value s ≥ 0 is used as it is. The rule, the distance it came from and the
   choice are written into the basis (``radial["data"]``).
2. **Candidates.** A ladder of ACE bases of increasing size (ν = 4 for one or two species,
   ν = 3 for more; :func:`candidate_bases`), observable weights (energy, forces, virial), and a
   smoothness prior (relative prior precision (1 + degree)^p, p ∈ {0, 2}; degree = Σ (n + 1 + l)
   of the product).
3. **Selection on a validation split inside the training data** (a seeded, per-config_type
   stratified fraction, default 20 %; never the test file): for every basis the data are
   streamed once, into separate normal equations per observable and per split part
   (:class:`~minbasis.fit.assembly.NormalEquations`), so every weight and prior candidate costs
   one solve, not a new pass over the data. The prior power is chosen by Bayesian evidence,
   the basis and weights by the validation score Σ_obs MAE_obs / min over candidates
   (energy per atom, forces, and stress where present).
4. **Budget.** Larger bases are tried while the projected time (:func:`project_seconds`: the
   last candidate's assembly, solve and validation-prediction times, each grown with the
   exponent measured between the last two candidates, at most 2, 3 and 1; times 1.25) fits in
   ``budget_minutes``.
5. **Final fit** on all training frames (train + validation pieces merged, no new pass) with
   the chosen basis, weights and prior, with the posterior committee of
   :func:`~minbasis.fit.linear.committee_from_posterior` (32 members, predictive noise from the
   training residuals). The validation table is kept in ``model.info["auto"]``.
6. **Calibration** (``calibrate``, default on): one factor t on the predictive σ, chosen on the
   validation forces as predicted by the chosen candidate fitted on the training part alone
   (with its own committee and residual noise): the t of least mean CRPS, a proper scoring
   rule (:func:`~minbasis.fit.linear.calibration_scale`), and one factor each for the energies
   and stresses on their validation errors.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from ..basis import Basis
from ..errors import LabelError, MinbasisError
from ..kernels import as_atoms_list
from .assembly import Entry, NormalEquations, RowWeights, accumulate_entries
from .data import get_labels
from .linear import basis_degrees
from .solvers import BayesianRidge, smoothness_weights, solve_smoothness, solve_system

__all__ = ["AutoFitConfig", "data_species", "shortest_distance", "radial_scale_for", "candidate_bases", "stratified_split",
           "basis_degrees", "project_seconds", "fit_auto"]


@dataclass
class AutoFitConfig:
    """Settings of :func:`fit_auto` (every one has a default that works on real data).

    Attributes
    ----------
    r_cut : float or None, cutoff radius in Å; None (default): each of ``r_cut_candidates`` is
        tried on the smallest candidate basis and the one that validates better is kept
    r_cut_candidates : cutoff radii (Å) tried when ``r_cut`` is None
    budget_minutes : float, wall-time budget for the whole selection and the final fit
    validation_fraction : float in (0, 0.5], share of each config_type held out for selection
    seed : int ≥ 0, seed of the validation split
    weights : list of (energy, forces, stress) weight triples to try (units as
        :class:`~minbasis.fit.linear.LinearFitConfig`)
    prior_powers : smoothness-prior powers p to try (chosen by evidence)
    max_columns : largest number of coefficient columns (species × functions) considered
    x_min : position on [−1, 1] to which 0.9 × the shortest distance is mapped
    candidates : list of dicts (``order``, ``n_max``, ``l_max``) replacing :func:`candidate_bases`
    calibrate : choose one factor t on the predictive σ of the committee on the validation split
        (:func:`~minbasis.fit.linear.calibration_scale` of the validation forces predicted by the
        chosen candidate fitted on the training part), stored as ``uncertainty["calibration"]``,
        with ``calibration_energy`` and ``calibration_stress`` for energies and stresses
        (:func:`~minbasis.fit.linear.calibration_factors`)

    Raises
    ------
    MinbasisError
        Out-of-range values.
    """

    r_cut: float | None = None
    r_cut_candidates: list = field(default_factory=lambda: [5.0, 6.0])
    budget_minutes: float = 15.0
    validation_fraction: float = 0.2
    seed: int = 0
    weights: list = field(default_factory=lambda: [(30.0, 1.0, 30.0), (300.0, 1.0, 3.0), (100.0, 1.0, 10.0)])
    prior_powers: list = field(default_factory=lambda: [0.0, 2.0])
    max_columns: int = 9000
    x_min: float = -0.9
    candidates: list | None = None
    calibrate: bool = True

    def __post_init__(self) -> None:
        for rc in ([self.r_cut] if self.r_cut is not None else []) + list(self.r_cut_candidates):
            if not (isinstance(rc, (int, float)) and np.isfinite(rc) and 0.5 <= rc <= 20):
                raise MinbasisError(f"r_cut must be in 0.5..20 Å, got {rc}")
        if self.r_cut is None and not self.r_cut_candidates:
            raise MinbasisError("r_cut_candidates must not be empty when r_cut is None")
        if not (np.isfinite(self.budget_minutes) and self.budget_minutes > 0):
            raise MinbasisError(f"budget_minutes must be > 0, got {self.budget_minutes}")
        if not 0 < self.validation_fraction <= 0.5:
            raise MinbasisError(f"validation_fraction must be in (0, 0.5], got {self.validation_fraction}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise MinbasisError(f"seed must be an integer >= 0, got {self.seed}")
        if not -0.99 <= self.x_min <= 0.5:
            raise MinbasisError(f"x_min must be in [-0.99, 0.5], got {self.x_min}")
        self.weights = [tuple(float(v) for v in w) for w in self.weights]
        if not self.weights or any(len(w) != 3 or min(w) < 0 or not all(np.isfinite(w)) for w in self.weights):
            raise MinbasisError(f"weights must be (energy, forces, stress) triples of numbers >= 0, got {self.weights}")


def data_species(atoms_list: Sequence[Atoms]) -> list[str]:
    """Chemical symbols present in the structures, ordered by atomic number."""
    return sorted({s for a in atoms_list for s in a.get_chemical_symbols()}, key=lambda s: atomic_numbers[s])


def shortest_distance(atoms_list: Sequence[Atoms], r_cut: float) -> float:
    """Shortest interatomic distance (Å, periodic images included) over all structures
    (:func:`minbasis.repulsion.pair_min_distances`).

    Raises
    ------
    StructureError
        Invalid structures (as the kernels' neighbour lists), overlapping atoms included.
    MinbasisError
        No pair of atoms within ``r_cut`` in any structure.
    """
    from ..kernels.neighbours import MIN_DISTANCE
    from ..repulsion import pair_min_distances

    best = float(pair_min_distances(atoms_list, data_species(atoms_list), r_cut, MIN_DISTANCE).min())
    if not np.isfinite(best):
        raise MinbasisError(f"no two atoms are closer than r_cut = {r_cut} Å in any structure: nothing to describe")
    return best


def _x(u: float, s: float) -> float:
    if abs(s) < 1e-8:
        return 2.0 * u - 1.0
    return 1.0 - 2.0 * math.expm1(-s * (u - 1.0)) / math.expm1(s)


def radial_scale_for(r_min: float, r_cut: float, x_min: float = -0.9, shrink: float = 0.9) -> float:
    """Scale s of the radial distance transform that maps ``shrink · r_min`` to ``x_min``.

    x(u; s) = 1 − 2 (exp(−s(u − 1)) − 1)/(exp(s) − 1), u = r/r_cut, decreases monotonically in
    s at fixed u, so s is found by bisection on [−30, 30] (clipped there).

    Raises
    ------
    MinbasisError
        r_min not in (0, r_cut).
    """
    if not 0 < r_min < r_cut:
        raise MinbasisError(f"shortest distance {r_min} Å must lie in (0, r_cut = {r_cut} Å)")
    u = shrink * r_min / r_cut
    lo, hi = -30.0, 30.0
    if _x(u, lo) > x_min:
        return lo
    if _x(u, hi) < x_min:
        return hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _x(u, mid) > x_min:
            hi = mid
        else:
            lo = mid
    return round(0.5 * (lo + hi), 4)


def candidate_bases(n_species: int) -> list[dict]:
    """Ladder of ACE hyper-parameters of increasing size (``order``, ``n_max``, ``l_max`` per order).

    One or two species: ν = 4 (437 → 1168 → 2972 → 5379 functions for one species); more species:
    ν = 3 ladders (the number of products grows with the species count).
    """
    if n_species <= 2:
        return [dict(order=4, n_max=[8, 6, 4, 2], l_max=[0, 4, 3, 1]),
                dict(order=4, n_max=[10, 8, 6, 2], l_max=[0, 4, 3, 1]),
                dict(order=4, n_max=[12, 10, 6, 4], l_max=[0, 6, 4, 2]),
                dict(order=4, n_max=[16, 12, 8, 4], l_max=[0, 6, 4, 2])]
    return [dict(order=3, n_max=[6, 4, 2], l_max=[0, 3, 2]),
            dict(order=3, n_max=[8, 6, 3], l_max=[0, 4, 2]),
            dict(order=4, n_max=[6, 4, 3, 2], l_max=[0, 3, 2, 1])]


def stratified_split(config_types: Sequence[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), sorted: :func:`minbasis.fit.metrics.stratified_holdout`
    (``round(fraction·n)`` of each config_type, never all of one, drawn with ``default_rng(seed)``)."""
    from .metrics import stratified_holdout

    held, rest = stratified_holdout(config_types, fraction, seed)
    return rest, held


def _with_radial_note(basis: Basis, r_min: float, x_min: float, rule: float, chosen: float, r_cuts: list) -> Basis:
    radial = dict(basis.spec.radial)
    radial["data"] = {"rule": f"0.9 × shortest distance → x = {x_min}", "shortest_distance": round(float(r_min), 6),
                      "rule_scale": round(float(rule), 4),
                      "choice": "the rule's scale" if chosen == rule else "s = 0 (rule gave s < 0; s = 0 validated better)",
                      "r_cut_choice": (f"validated best of {', '.join(f'{r:g}' for r in r_cuts)} Å" if len(r_cuts) > 1
                                       else "given")}
    return Basis(replace(basis.spec, radial=radial, hash=""))


def _val_score(rows: list[dict]) -> list[float]:
    keys = [k for k in ("energy_mae_per_atom", "forces_mae", "stress_mae")
            if all(r["val"].get(k) is not None and np.isfinite(r["val"][k]) for r in rows)]
    best = {k: max(min(r["val"][k] for r in rows), 1e-300) for k in keys}
    return [sum(r["val"][k] / best[k] for k in keys) for r in rows]


#: (smallest, largest) growth exponent of the assembly, solve and prediction times with P.
EXPONENTS = ((1.0, 2.0), (2.5, 3.0), (1.0, 1.0))


def project_seconds(steps: Sequence[tuple[int, Sequence[float]]], P: int) -> float:
    """Projected seconds of the next candidate basis with P columns, from the measured ones.

    ``steps`` holds (P_k, (assembly, solve, prediction) seconds) of the candidates tried so far.
    Each part grows as (P / P_last)^a: with one measurement the worst case of its kind (a = 2 for
    the assembly, whose Gram update is O(P²) per row, 3 for the O(P³) solves, 1 for predictions);
    with two or more the exponent measured between the last two candidates, kept within
    :data:`EXPONENTS` (the feature gradients of the assembly grow only ∝ P at the sizes tried,
    so the worst case overestimates a large basis several-fold; the eigendecompositions of the
    solves stay close to ∝ P³).

    Raises
    ------
    MinbasisError
        No measured step.
    """
    if not steps:
        raise MinbasisError("project_seconds needs at least one measured candidate")
    P_last, t_last = steps[-1]
    r = P / P_last
    total = 0.0
    for part, (a_min, a_max) in enumerate(EXPONENTS):
        a = a_max
        if len(steps) > 1:
            P_prev, t_prev = steps[-2]
            if P_prev < P_last and t_prev[part] > 0 and t_last[part] > 0:
                a = min(a_max, max(a_min, math.log(t_last[part] / t_prev[part]) / math.log(P_last / P_prev)))
        total += t_last[part] * r**a
    return total


def fit_auto(atoms_or_list, *, energy_key: str | None = "energy", forces_key: str | None = "forces",
             stress_key: str | None = None, config: AutoFitConfig | None = None, progress: bool = False,
             log=print):
    """Fit a linear ACE model with basis, weights and prior chosen on a validation split (module docstring).

    Parameters
    ----------
    atoms_or_list : training structures with labels
    energy_key, forces_key, stress_key : label keys (None skips an observable)
    config : AutoFitConfig
    progress : tqdm bars while assembling
    log : callable for progress lines (``None`` silences them)

    Returns
    -------
    LinearModel, with ``info["auto"]`` holding the validation table, the choice and its reasons

    Raises
    ------
    LabelError
        Missing labels, or fewer than 5 structures (no validation split possible).
    MinbasisError
        No candidate fits in the budget, or invalid settings.
    """
    from .metrics import error_metrics
    from .model import LinearModel

    cfg = config or AutoFitConfig()
    say = log or (lambda *a, **k: None)
    t_start = time.perf_counter()
    budget = 60.0 * cfg.budget_minutes
    frames = as_atoms_list(atoms_or_list)
    if len(frames) < 5:
        raise LabelError(f"automatic fitting needs at least 5 structures for a validation split, got {len(frames)}")
    labels = get_labels(frames, energy_key, forces_key, stress_key)
    species = data_species(frames)
    r_cuts = [float(cfg.r_cut)] if cfg.r_cut is not None else [float(r) for r in cfg.r_cut_candidates]
    r_min = shortest_distance(frames, min(r_cuts))
    # s < 0 (resolution towards r_cut) can starve the short distances that carry the large
    # forces (Cu–Ni–Al cells: held-out force MAE 0.070 against 0.013 eV/Å at s = 0) or help
    # (Ge: validation force MAE 0.048 against 0.050 eV/Å): the rule's s < 0 is tried against
    # s = 0 on the smallest basis and kept only if it validates better; likewise each cutoff
    # (Ge: validation force MAE 0.052 at 5 Å against 0.047 at 6 Å on the smallest basis)
    rules = {rc: radial_scale_for(r_min, rc, cfg.x_min) for rc in r_cuts}
    options = [(rc, s_) for rc in r_cuts for s_ in [max(0.0, rules[rc])] + ([rules[rc]] if rules[rc] < 0 else [])]
    r_cut, scale = options[0]
    say(f"species {','.join(species)}; shortest distance {r_min:.3f} Å; radial scale by the rule "
        + ", ".join(f"{rules[rc]:g} at r_cut {rc:g} Å" for rc in r_cuts)
        + ("" if len(options) == 1 else f"; {len(options)} (r_cut, scale) options tried on the smallest basis"))
    tr, va = stratified_split(labels.config_type, cfg.validation_fraction, cfg.seed)
    parts = {"train": tr, "val": va}
    val_frames = [frames[i] for i in va]
    val_labels = labels.take(va)
    has = {"energy": labels.energy is not None, "forces": labels.forces is not None,
           "stress": labels.stress is not None}
    rows: list[dict] = []
    kept: dict = {}
    C = len(species)
    one = {"energy": RowWeights(1.0, 0.0, 0.0), "forces": RowWeights(0.0, 1.0, 0.0),
           "stress": RowWeights(0.0, 0.0, 1.0)}

    def ace(hp: dict, rc: float, s: float) -> Basis:
        return Basis.ace(species, rc, hp["n_max"], hp["l_max"], hp["order"], radial_scale=s)

    def try_basis(k: int, hp: dict, basis: Basis, t0: float) -> tuple[float, float, float]:
        """Stream the data once into per-part, per-observable normal equations of this basis and
        score every weight triple (prior power by evidence); rows appended; (assembly, solve,
        prediction) seconds, the assembly counted from ``t0`` (before the basis was built)."""
        s = basis.spec.radial["scale"]
        rc = float(basis.spec.r_cut)
        P = C * basis.n_features
        acc = {(p, o): NormalEquations(P, C) for p in parts for o in ("energy", "forces", "stress")}
        for p, idx in parts.items():
            sub = [frames[i] for i in idx]
            lb = labels.take(idx)
            entries = [Entry(lb, one[o], acc[(p, o)]) for o in one if has[o]]
            accumulate_entries(basis, sub, entries, progress=f"basis {k + 1}: {p}" if progress else None)
        t_asm = time.perf_counter() - t0
        degrees = basis_degrees(basis)
        t_pred = 0.0
        for w in cfg.weights:
            wd = dict(zip(("energy", "forces", "stress"), w))
            eq = NormalEquations.combine([(wd[o], acc[("train", o)]) for o in one if has[o]])
            pw, res, _ = solve_smoothness(eq.system(), BayesianRidge(), degrees, cfg.prior_powers)
            lev = res.info["log_evidence"]
            e0 = eq.e0(res.coef)
            model = LinearModel(basis=basis, weights=res.coef.reshape(C, -1), e0=e0 if len(e0) else np.zeros(C))
            tp = time.perf_counter()
            m = error_metrics(val_frames, val_labels, model.predict(val_frames))
            t_pred += time.perf_counter() - tp
            row = {"candidate": k, "columns": P, "n_features": basis.n_features, "order": hp["order"],
                   "n_max": hp["n_max"], "l_max": hp["l_max"], "r_cut": rc, "radial_scale": s, "weights": list(w),
                   "prior_power": pw, "log_evidence": lev,
                   "val": {key: m.get(key) for key in ("energy_mae_per_atom", "forces_mae", "stress_mae")}}
            rows.append(row)
            say(f"  {P:5d} columns  r_cut {rc:g}  s {s:g}  weights E {w[0]:g} F {w[1]:g} V {w[2]:g}  prior p={pw:g}: "
                + "  ".join(f"{key} {v:.4g}" for key, v in row["val"].items() if v is not None))
        # every candidate's pieces are kept (6 P² arrays each): the score is relative to the best
        # of all rows, so an earlier candidate can still win after later rows are added
        kept[(k, rc, s)] = (basis, acc)
        return t_asm, time.perf_counter() - t0 - t_asm - t_pred, t_pred

    steps: list[tuple[int, tuple[float, float, float]]] = []  # (P, (assembly, solve, prediction) s) per basis
    for k, hp in enumerate(cfg.candidates or candidate_bases(len(species))):
        t0 = time.perf_counter()
        basis = ace(hp, r_cut, scale)
        P = C * basis.n_features
        if P > cfg.max_columns:
            say(f"  skip {P} columns (> max_columns {cfg.max_columns})")
            break
        if steps:
            projected = project_seconds(steps, P)
            elapsed = time.perf_counter() - t_start
            if elapsed + 1.25 * projected > budget:
                say(f"  stop: a basis of {P} columns would take about {projected:.0f} s "
                    f"({elapsed:.0f} s of {budget:.0f} s used)")
                break
        steps.append((P, try_basis(k, hp, basis, t0)))
        if k == 0 and len(options) > 1:
            # cutoff and radial scale are chosen on the smallest basis
            times = {options[0]: steps[-1][1]}
            for rc, s_alt in options[1:]:
                t_alt = time.perf_counter()
                times[(rc, s_alt)] = try_basis(k, hp, ace(hp, rc, s_alt), t_alt)
            sc = _val_score(rows)
            best_o = {o: min(v for r_, v in zip(rows, sc) if (r_["r_cut"], r_["radial_scale"]) == o) for o in options}
            r_cut, scale = min(options, key=lambda o: best_o[o])
            # the budget projection grows from the chosen option's times (a larger cutoff has more pairs)
            steps[-1] = (C * kept[(k, r_cut, scale)][0].n_features, times[(r_cut, scale)])
            say(f"  r_cut {r_cut:g} Å, radial scale s = {scale:g} (validation score "
                + ", ".join(f"r_cut {o[0]:g} s {o[1]:g}: {best_o[o]:.3f}" for o in options) + ")")
    if not rows:
        raise MinbasisError("no candidate basis could be fitted within the budget; raise --budget-minutes")
    scores = _val_score(rows)
    for r, s in zip(rows, scores):
        r["score"] = s
    choice = rows[int(np.argmin(scores))]
    basis, acc = kept[(choice["candidate"], choice["r_cut"], choice["radial_scale"])]
    rule = rules[choice["r_cut"]]
    basis = _with_radial_note(basis, r_min, cfg.x_min, rule, choice["radial_scale"], r_cuts)
    wd = dict(zip(("energy", "forces", "stress"), choice["weights"]))
    full = NormalEquations.combine([(wd[o], acc[("train", o)].copy().merge(acc[("val", o)]))
                                    for o in ("energy", "forces", "stress") if has[o]])
    res = solve_system(full.system(), BayesianRidge(),
                       prior_weights=smoothness_weights(basis_degrees(basis), choice["prior_power"]))
    info = dict(res.info)
    info.update(n_structures=len(frames), energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                weights={"energy": wd["energy"], "forces": wd["forces"], "stress": wd["stress"], "config_type": {}},
                rows=dict(full.n_rows),
                auto={"r_cut": choice["r_cut"], "radial_scale": choice["radial_scale"], "radial_scale_rule": rule,
                      "shortest_distance": r_min,
                      "validation_fraction": cfg.validation_fraction, "seed": cfg.seed, "table": rows, "choice": choice,
                      "seconds": time.perf_counter() - t_start, "budget_seconds": budget})
    from .linear import LinearFitConfig, calibration_factors, committee_with_noise

    lcfg = LinearFitConfig(energy_weight=wd["energy"], forces_weight=wd["forces"], stress_weight=wd["stress"])

    def with_committee(eq: NormalEquations, sol, fit_frames, fit_labels, inf: dict) -> LinearModel:
        """The model of a solution with its posterior committee and the residual noise of its fit frames."""
        e0_ = eq.e0(sol.coef)
        e0_ = e0_ if len(e0_) else np.zeros(C)
        com = committee_with_noise(eq, lcfg, basis, sol.coef, e0_, sol.posterior, inf, fit_frames, fit_labels)
        return LinearModel(basis=basis, weights=sol.coef.reshape(C, -1), e0=e0_, info=inf, **com)

    t_cal = None
    if cfg.calibrate and res.posterior is not None:
        # one factor t on σ, chosen on the validation part: the chosen candidate fitted on the
        # training part (its committee and residual noise as the final model's) predicts it
        eq_tr = NormalEquations.combine([(wd[o], acc[("train", o)]) for o in one if has[o]])
        sol = solve_system(eq_tr.system(), BayesianRidge(),
                           prior_weights=smoothness_weights(basis_degrees(basis), choice["prior_power"]))
        sub = with_committee(eq_tr, sol, [frames[i] for i in tr], labels.take(tr), {"alpha_noise": sol.info["alpha_noise"]})
        if sub.committee_size:
            t_cal = calibration_factors(sub.predict(val_frames), val_labels)
            names = {"calibration": "forces", "calibration_energy": "energy", "calibration_stress": "stress"}
            say("  uncertainty: factors on σ " + ", ".join(f"{names[k]} {v:.3g}" for k, v in t_cal.items())
                + " (least mean CRPS of the validation errors)")
    model = with_committee(full, res, frames, labels, info)
    if t_cal is not None and model.committee_size:
        model.uncertainty.update(t_cal)
        info["committee"].update(t_cal, calibration_source="validation split")
    say(f"chosen: {choice['columns']} columns (ν {choice['order']}, n_max {choice['n_max']}, l_max {choice['l_max']}), "
        f"r_cut {choice['r_cut']:g} Å, weights E {wd['energy']:g} F {wd['forces']:g} V {wd['stress']:g}, prior p={choice['prior_power']:g}; "
        f"refitted on all {len(frames)} structures in {time.perf_counter() - t_start:.0f} s")
    return model
