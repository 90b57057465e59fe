"""Linear minbasis ACE models → ML-PACE ``.yace`` (C-tilde basis), for LAMMPS ``pair_style pace``.

The ``.yace`` file is the YAML form of PACE's C-tilde basis (Lysogorskiy et al., npj Comput.
Mater. 7, 97, 2021; Drautz, PRB 99, 014104, 2019): per element an embedding (here linear,
``FinnisSinclairShiftedScaled`` with parameters [1, 1], i.e. F(ρ) = ρ) and E0; per element
pair a radial basis; per element a list of functions, each a product of complex-harmonic
moments A_{μ, n, l, m} = Σ_j R_{nl}(r_ij) Y_lm(r̂_ij) over neighbours j of species μ, with one
coefficient ("ctilde") per combination of m's. The energy of atom i is
E0 + Σ_functions Σ_ms ctilde · Re Π_k A_{μ_k n_k l_k m_k}.

How a minbasis model is written:

* **Radial functions.** minbasis' R_n(r) = T_n(x(r)) (1 − (r/r_c)²)³ (exponential distance
  transform; :mod:`minbasis.kernels.primitives`) has no analytic PACE counterpart (PACE's
  ``ChebExpCos`` uses the same transform but a cosine envelope). R_n restricted to [0, r_c] is an
  entire function of r, so it is expanded in PACE's ``ChebLinear`` radial basis
  g_k(r) = (1 − T_k(1 − r/r_c))/2, k = 1..K (K = ``n_radial_base``, default 80) by least
  squares on values and derivatives; the radial coefficients ``crad[n][l][k]`` are the same for
  every l. With K = 80 the expansion matches R_n to ≈ 1e-13 and dR_n/dr to ≈ 1e-11 1/Å on
  [0.8 Å, r_c] (recorded as ``radial_max_error`` in the summary). PACE then tabulates the
  functions itself as cubic Hermite splines with ``deltaSplineBins`` (default 1e-3 Å, as
  pacemaker; its tables take (r_c / 1e-3) × (K + n_max (l_max + 1)) × 4 doubles per species pair).
* **Rank-1 functions** (PACE evaluates them on the base functions g_k, not on R_nl): the
  order-1 invariants w_n A_{z,n,0,0} = w_n Y_00 Σ_j R_n(r_ij) become one function per (z, k)
  with coefficient Y_00 Σ_n w_n crad[n, k] (PACE's rank-1 moments are Σ_j g_k(r_ij), without
  Y_00: checked against python-ace).
* **Repulsive core** (:mod:`minbasis.repulsion`): a LAMMPS ``pair_style table`` file next to
  the ``.yace`` (see :func:`export_yace`), run with ``pair_style hybrid/overlay pace table``.
* **Higher ranks**: each invariant B = Σ coef Π_k A^real_{z_k n_k l_k μ_k} is multiplied by
  its weight and rewritten in complex moments with A^real_{lμ} = Σ_m U_{μm} A_{lm}
  (:func:`minbasis.invariants.coupling.complex_to_real`); terms are collected per sorted
  (z, n, l) multiset (one PACE function each) and per sorted m-combination. The collected
  coefficients of a rotation invariant with even Σ l are real (checked). Of each mirrored pair
  of m-combinations (ms, −ms) one is written with twice the coefficient, as in PACE's own files
  (the evaluator takes the real part of the sum).
  PACE's moments use harmonics normalised to Y_00 = 1, i.e. √(4π) times the orthonormal ones
  minbasis uses (same phases), so a coefficient of a product of ν moments is multiplied by
  (4π)^(−ν/2) (checked against python-ace).

What cannot be exported: models that are not linear in the ACE functions (MLP, polynomial
features: :class:`~minbasis.errors.MinbasisError`), and the repulsive core's fade of the
attractive many-body energy for crowded atoms (:attr:`minbasis.repulsion.ZBLCore.fade`), which
PACE has no place for — it acts only on atoms with a neighbour closer than any in the training
data; the export warns and leaves it out. The core's optional radial clamp is not exported
either (error).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import MinbasisError
from ..spec import invariant_monomials

__all__ = ["export_yace", "yace_document", "core_table", "lammps_snippet", "chebyshev_linear_basis",
           "fit_radial_coefficients"]

#: Y_00 of PACE's (and minbasis') orthonormal harmonics.
Y00 = 1.0 / math.sqrt(4.0 * math.pi)


def chebyshev_linear_basis(r: np.ndarray, r_cut: float, K: int) -> tuple[np.ndarray, np.ndarray]:
    """PACE's ``ChebLinear`` radial base functions g_k(r) = (1 − T_k(1 − r/r_c))/2, k = 1..K, and
    their r-derivatives, as arrays (P, K) (columns k − 1)."""
    r = np.asarray(r, dtype=np.float64)
    x = 1.0 - r / r_cut
    T = np.zeros((K + 1, len(r)))
    dT = np.zeros_like(T)
    T[0] = 1.0
    if K >= 1:
        T[1] = x
        dT[1] = 1.0
    for m in range(2, K + 1):
        T[m] = 2 * x * T[m - 1] - T[m - 2]
        dT[m] = 2 * T[m - 1] + 2 * x * dT[m - 1] - dT[m - 2]
    g = 0.5 - 0.5 * T[1:]
    dg = 0.5 * dT[1:] / r_cut          # d/dr of −T_k(x)/2 with dx/dr = −1/r_c
    return g.T, dg.T


def fit_radial_coefficients(values, derivs, r: np.ndarray, r_cut: float, K: int, deriv_weight: float = 0.3
                            ) -> np.ndarray:
    """Least-squares coefficients c (n_functions, K) with Σ_k c[n, k] g_k(r) ≈ values[:, n] and
    Σ_k c[n, k] g_k'(r) ≈ derivs[:, n] on the grid r (Å)."""
    g, dg = chebyshev_linear_basis(r, r_cut, K)
    A = np.vstack([g, deriv_weight * dg])
    B = np.vstack([values, deriv_weight * derivs])
    c, *_ = np.linalg.lstsq(A, B, rcond=None)
    return c.T


def _complex_expansion(monomials, weight: float, out: dict, l_max: int) -> None:
    """Add weight · Σ coef Π A^real to ``out`` {(sorted (z, n, l) tuple): {m-tuple: complex coef}}."""
    from ..invariants.coupling import complex_to_real

    for coef, variables in monomials:
        if len(variables) == 1:
            continue  # order 1: handled as rank-1 functions
        # each real factor: list of (m, U[μ, m]) with nonzero entries
        choices = []
        for z, n, l, mu in variables:
            U = complex_to_real(l)
            row = U[mu]
            choices.append([(z, n, l, m - l, row[m]) for m in range(2 * l + 1) if abs(row[m]) > 1e-15])
        for combo in _product(choices):
            c = coef * weight
            for item in combo:
                c *= item[4]
            factors = sorted((it[0], it[1], it[2], it[3]) for it in combo)
            key = tuple(f[:3] for f in factors)
            ms = tuple(f[3] for f in factors)
            d = out.setdefault(key, {})
            d[ms] = d.get(ms, 0.0) + c


def _product(lists):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for rest in _product(lists[1:]):
            yield (head,) + rest


def _half_basis(key, kept, big):
    """Keep one of each pair of mirrored m-combinations (ms, −ms) with the coefficient doubled.

    Σ_m m_k = 0 for an invariant, so Π A(−ms) = conj Π A(ms), and for real, equal coefficients
    c (Re c ΠA(ms) + Re c ΠA(−ms)) = Re 2c ΠA(ms): PACE's evaluator takes the real part, so half
    of the combinations suffice (as in PACE's own files). Combinations whose mirror has another
    coefficient are kept as they are.
    """
    groups = {}
    for pos, k in enumerate(key):
        groups.setdefault(k, []).append(pos)

    def mirror(ms):
        out = [-m for m in ms]
        for pos in groups.values():
            vals = sorted(out[p] for p in pos)
            for p, v in zip(pos, vals):
                out[p] = v
        return tuple(out)

    coef = dict(kept)
    out = []
    for ms, v in kept:
        partner = mirror(ms)
        if partner == ms:
            out.append((ms, v))
        elif partner in coef and abs(coef[partner] - v) <= 1e-12 * big:
            if ms > partner:
                out.append((ms, 2 * v))
        else:
            out.append((ms, v))
    return out


def _fmt(x: float) -> str:
    return repr(float(x))


def _flow(values) -> str:
    return "[" + ", ".join(_fmt(v) if isinstance(v, (float, np.floating)) else str(int(v)) for v in values) + "]"


def yace_document(model, *, n_radial_base: int = 80, delta_spline_bins: float = 1e-3,
                  drop_tol: float = 1e-14, warn_fade: bool = True) -> tuple[str, dict]:
    """The ``.yace`` text of a linear model and a summary of the conversion.

    Parameters
    ----------
    model : :class:`~minbasis.fit.model.LinearModel`
    n_radial_base : int
        K, the number of ``ChebLinear`` base functions the radial functions are expanded in.
    delta_spline_bins : float
        PACE's tabulation step of the radial functions, Å.
    drop_tol : float
        C-tilde coefficients smaller than this times the largest one of their function are dropped.

    Returns
    -------
    (text, summary) : the YAML document (str; the ACE part and E0, without the repulsive core,
    which :func:`core_table` writes) and a dict with counts and the largest radial expansion
    errors on [0.8 Å, r_c] (``radial_max_error``, ``radial_deriv_max_error`` in 1/Å).

    Raises
    ------
    MinbasisError
        The model is not a linear minbasis model (MLP and polynomial models are nonlinear in the
        ACE functions and have no C-tilde form), its radial basis is unknown, a coupled
        coefficient is not real (parity-odd invariant), or its core uses the radial clamp.
    """
    from ..fit.model import LinearModel
    from ..kernels.primitives import radial_values

    if not isinstance(model, LinearModel):
        kind = type(model).__name__
        raise MinbasisError(f"cannot export a {kind} to .yace: the ML-PACE format holds linear ACE models (energy "
                            f"linear in the products of density moments, with a linear embedding); a {kind} is a "
                            "nonlinear function of the invariants. Export a linear model (minbasis fit --model linear)")
    spec = model.basis.spec
    radial = spec.radial
    if radial.get("type") != "chebyshev_exp":
        raise MinbasisError(f"cannot export radial basis {radial!r}")
    core = model.repulsion
    if core is not None and core.clamp:
        raise MinbasisError("cannot export a repulsive core with clamp=True: PACE has no clamped radial argument")
    if core is not None and core.fade is not None and warn_fade:
        warnings.warn("the repulsive core's fade of the many-body energy for crowded atoms (more close neighbours "
                      "than any training structure) has no ML-PACE counterpart and is left out of the .yace; the ZBL "
                      "pair term is exported", RuntimeWarning, stacklevel=3)
    species = list(spec.species)
    C = len(species)
    r_cut = float(spec.r_cut)
    plan = model.basis.plan
    n_r = plan.n_r
    l_max = plan.l_max
    K = int(n_radial_base)
    # -- radial expansion -------------------------------------------------------------------
    r_fit = np.linspace(0.3, r_cut, 6000)
    R, dR = radial_values(r_fit, r_cut, float(radial.get("scale", 0.0)), n_r)
    crad = fit_radial_coefficients(R, dR, r_fit, r_cut, K)                  # (n_r, K)
    r_chk = np.linspace(0.8, r_cut, 4001)
    Rc, dRc = radial_values(r_chk, r_cut, float(radial.get("scale", 0.0)), n_r)
    g, dg = chebyshev_linear_basis(r_chk, r_cut, K)
    summary = {"n_radial_base": K, "radial_max_error": float(np.abs(g @ crad.T - Rc).max()),
               "radial_deriv_max_error": float(np.abs(dg @ crad.T - dRc).max())}
    # -- functions ----------------------------------------------------------------------------
    monos = [invariant_monomials(inv) for inv in spec.invariants]
    functions: dict[int, list[str]] = {}
    n_funcs = n_ms = 0
    for c in range(C):
        w = model.weights[c]
        rank1 = np.zeros((C, K))                 # per neighbour species z, per base function k
        higher: dict = {}
        for f, mono in enumerate(monos):
            if w[f] == 0.0:
                continue
            for coef, variables in mono:
                if len(variables) == 1:
                    z, n, l, mu = variables[0]
                    if l != 0:
                        raise MinbasisError(f"invariant {f} has a single factor with l = {l}: not rotation invariant")
                    rank1[z] += w[f] * coef * crad[n]
            _complex_expansion(mono, float(w[f]), higher, l_max)
        lines = []
        for z in range(C):
            ct = rank1[z] * Y00   # PACE's rank-1 moments are Σ_j g_k(r_ij), without Y_00
            for k in range(K):
                if ct[k] != 0.0:
                    lines.append(f"{{mu0: {c}, rank: 1, ndensity: 1, num_ms_combs: 1, mus: [{z}], ns: [{k + 1}], "
                                 f"ls: [0], ms_combs: [0], ctildes: [{_fmt(ct[k])}]}}")
        for key in sorted(higher, key=lambda k: (len(k), k)):
            terms = higher[key]
            big = max(abs(v) for v in terms.values())
            if big == 0.0:
                continue
            kept = _half_basis(key, [(ms, v) for ms, v in sorted(terms.items()) if abs(v) > drop_tol * big], big)
            imag = max(abs(v.imag) for _, v in kept) if np.iscomplexobj(np.array([v for _, v in kept])) else 0.0
            if imag > 1e-9 * big:
                raise MinbasisError(f"complex C-tilde coefficient for {key} (imaginary part {imag:.3g}): the invariant "
                                    "is not parity-even and has no real C-tilde form")
            rank = len(key)
            mus = [k[0] for k in key]
            ns = [k[1] + 1 for k in key]
            ls = [k[2] for k in key]
            ms_flat = [m for ms, _ in kept for m in ms]
            norm = Y00 ** rank       # PACE's harmonics are √(4π) times the orthonormal ones
            cts = [float(np.real(v)) * norm for _, v in kept]
            lines.append(f"{{mu0: {c}, rank: {rank}, ndensity: 1, num_ms_combs: {len(kept)}, mus: {_flow(mus)}, "
                         f"ns: {_flow(ns)}, ls: {_flow(ls)}, ms_combs: {_flow(ms_flat)}, ctildes: {_flow(cts)}}}")
            n_ms += len(kept)
        functions[c] = lines
        n_funcs += len(lines)
    summary.update(n_functions=n_funcs, n_ms_combinations=n_ms, species=species, r_cut=r_cut, l_max=l_max,
                   n_radial=n_r, repulsive_core=core is not None)
    # -- document -----------------------------------------------------------------------------
    out = [f"elements: [{', '.join(species)}]", f"E0: {_flow([float(e) for e in model.e0])}",
           f"deltaSplineBins: {_fmt(delta_spline_bins)}", "embeddings:"]
    for c in range(C):
        out.append(f"  {c}: {{ndensity: 1, FS_parameters: [1.0, 1.0], npoti: FinnisSinclairShiftedScaled, "
                   f"rho_core_cutoff: 100000, drho_core_cutoff: 250}}")
    out.append("bonds:")
    crad_l = [[list(map(float, crad[n])) for _ in range(l_max + 1)] for n in range(n_r)]
    crad_txt = "[" + ", ".join("[" + ", ".join(_flow(v) for v in per_l) + "]" for per_l in crad_l) + "]"
    for a in range(C):
        for b in range(C):
            out.append(f"  [{a}, {b}]: {{nradmax: {n_r}, lmax: {l_max}, nradbasemax: {K}, radbasename: ChebLinear, "
                       f"radparameters: [1.0], radcoefficients: {crad_txt}, prehc: 0, lambdahc: 0, "
                       f"rcut: {_fmt(r_cut)}, dcut: 0.01, rcut_in: 0, dcut_in: 0, inner_cutoff_type: density}}")
    out.append("functions:")
    for c in range(C):
        out.append(f"  {c}:")
        out.extend(f"    - {line}" for line in functions[c])
    return "\n".join(out) + "\n", summary


def core_table(core, r_lo: float = 0.2, n_points: int = 5000) -> tuple[str, list[dict]]:
    """The repulsive core as a LAMMPS ``pair_style table`` file: one section per species pair
    ``A_B`` (A ≤ B in species order) with ``n_points`` distances evenly spaced from ``r_lo`` to
    that pair's r_in, each line ``index r φ(r) −dφ/dr`` (eV, eV/Å).

    Returns
    -------
    (text, pairs) : the file content and, per section, {"i", "j" (1-based LAMMPS types),
    "keyword", "cutoff"}.
    """
    lines = ["# minbasis repulsive core (ZBL with a quintic switch to zero at r_in); pair energy in eV, "
             "force −dE/dr in eV/Å", ""]
    pairs = []
    sp = list(core.species)
    for a in range(len(sp)):
        for b in range(a, len(sp)):
            rin = float(core.r_in[a, b])
            r = np.linspace(r_lo, rin, int(n_points))
            phi, dphi = core.pair_energy(r, sp[a], sp[b])
            key = f"{sp[a]}_{sp[b]}"
            lines += [key, f"N {int(n_points)} R {_fmt(r_lo)} {_fmt(rin)}", ""]
            lines += [f"{k + 1} {_fmt(r[k])} {_fmt(phi[k])} {_fmt(-dphi[k])}" for k in range(len(r))]
            lines.append("")
            pairs.append({"i": a + 1, "j": b + 1, "keyword": key, "cutoff": rin})
    return "\n".join(lines) + "\n", pairs


def lammps_snippet(species, yace_path: str, table_path: str | None = None, pairs=None, n_table: int = 5000) -> str:
    """LAMMPS input lines that run an exported model (with its core table, if any)."""
    names = " ".join(species)
    if table_path is None:
        return f"pair_style pace\npair_coeff * * {yace_path} {names}\n"
    out = [f"pair_style hybrid/overlay pace table spline {n_table}", f"pair_coeff * * pace {yace_path} {names}"]
    out += [f"pair_coeff {p['i']} {p['j']} table {table_path} {p['keyword']} {p['cutoff']:.6f}" for p in pairs]
    return "\n".join(out) + "\n"


def export_yace(model, path: str | os.PathLike, *, core_table_path: str | os.PathLike | None = None,
                **kwargs) -> dict:
    """Write a linear model as an ML-PACE ``.yace`` file (module docstring), atomically.

    A model with a repulsive core also gets a LAMMPS ``pair_style table`` file with the core
    (default: ``path`` with suffix ``.core.table``): python-ace 0.4's readers have no radial
    representation that reproduces a switched ZBL term exactly (a polynomial expansion leaks
    1e-3 eV per pair beyond the inner cutoff), so LAMMPS adds it with ``pair_style
    hybrid/overlay pace table`` (snippet in the summary, key ``lammps``). Keyword arguments go to
    :func:`yace_document`. Returns its summary dict, with ``path``, ``bytes``, ``lammps`` and, for a
    core, ``core_table``.

    Raises
    ------
    MinbasisError
        As :func:`yace_document` (nonlinear models, non-exportable options).
    """
    from ..spec import atomic_write_text

    text, summary = yace_document(model, **kwargs)
    atomic_write_text(Path(path), text)
    os.chmod(path, 0o644)   # a potential file is meant to be read by others (LAMMPS jobs)
    summary["path"] = str(path)
    summary["bytes"] = len(text)
    species = list(model.basis.species)
    if model.repulsion is not None:
        tpath = Path(core_table_path) if core_table_path is not None else Path(path).with_suffix(".core.table")
        ttext, pairs = core_table(model.repulsion)
        atomic_write_text(tpath, ttext)
        os.chmod(tpath, 0o644)
        summary["core_table"] = str(tpath)
        summary["lammps"] = lammps_snippet(species, Path(path).name, tpath.name, pairs)
    else:
        summary["lammps"] = lammps_snippet(species, Path(path).name)
    return summary
