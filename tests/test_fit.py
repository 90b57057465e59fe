"""Linear fits: held-out accuracy, weights, E0, stress, model files and label errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

import minbasis as mb
from minbasis.demo import bundled_ethanol_path
from minbasis.errors import FileFormatError, LabelError
from minbasis.fit import (LinearFitConfig, LinearModel, error_metrics, fit_linear, get_labels,
                          read_structures)

KEYS = {"energy_key": "energy_high", "forces_key": "forces_high"}


@pytest.fixture(scope="module")
def ethanol_frames():
    return read_structures(bundled_ethanol_path())


@pytest.fixture(scope="module")
def small_hco_basis():
    return mb.Basis.ace(["H", "C", "O"], 5.0, [4, 3, 2], [0, 2, 2], 3)


@pytest.fixture(scope="module")
def emt_frames():
    """Small periodic Cu/Ni cells labelled with ASE's EMT (energies, forces, stress)."""
    rng = np.random.default_rng(7)
    frames = []
    for k in range(24):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        numbers = a.numbers.copy()
        numbers[rng.random(len(a)) < 0.4] = 28
        a.numbers = numbers
        strain = np.eye(3) + 0.02 * rng.standard_normal((3, 3))
        a.set_cell(a.cell @ strain, scale_atoms=True)
        a.rattle(0.05, seed=k)
        a.info["config_type"] = "bulk" if k % 2 else "rattled"
        a.calc = EMT()
        a.get_potential_energy()
        a.get_stress()
        frames.append(a)
    return frames


def test_heldout_ethanol_mp2(ethanol_frames, small_hco_basis):
    """A fit on 150 bundled frames predicts 90 unseen ones far better than the label spread."""
    train, test = ethanol_frames[:150], ethanol_frames[150:]
    model = fit_linear(small_hco_basis, train, **KEYS)
    labels = get_labels(test, **KEYS)
    m = error_metrics(test, labels, model.predict(test))
    f_std = np.std(np.concatenate([f.ravel() for f in labels.forces]))
    e_std = np.std(labels.energy)
    assert m["forces_mae"] < 0.1 * f_std, m
    assert m["energy_mae"] < 0.15 * e_std, m
    assert set(m["per_config_type"]) == {"md500K", "md1000K"}


def test_config_type_weight_zero_drops_frames(ethanol_frames, small_hco_basis):
    frames = ethanol_frames[:60]
    cfg = dict(solver="ridge", alpha=1e-6)
    zero = fit_linear(small_hco_basis, frames, config=LinearFitConfig(config_type_weights={"md1000K": 0.0}, **cfg), **KEYS)
    only = fit_linear(small_hco_basis, [a for a in frames if a.info["config_type"] != "md1000K"],
                      config=LinearFitConfig(**cfg), **KEYS)
    np.testing.assert_allclose(zero.weights, only.weights, rtol=1e-6, atol=1e-9)


def test_e0_shift_is_absorbed(emt_frames):
    """Adding a per-species constant to every energy changes E0 only (E0 is unregularised)."""
    basis = mb.Basis.ace(["Cu", "Ni"], 4.5, [4, 3], [0, 2], 2)
    ref = fit_linear(basis, emt_frames, config=LinearFitConfig(solver="ridge", alpha=1e-8))
    shifted = []
    for a in emt_frames:
        b = a.copy()
        b.info["e_shift"] = a.get_potential_energy() + 1.5 * np.sum(a.numbers == 29) - 0.7 * np.sum(a.numbers == 28)
        b.arrays["f"] = a.get_forces()
        shifted.append(b)
    fit2 = fit_linear(basis, shifted, energy_key="e_shift", forces_key="f", config=LinearFitConfig(solver="ridge", alpha=1e-8))
    # α = 1e-8 leaves near-null directions almost unregularised: round-off of the E0 elimination
    # (Gram form, with the shifted energy block) moves their coefficients at the 1e-5 level
    np.testing.assert_allclose(fit2.weights, ref.weights, rtol=1e-4, atol=1e-6 * np.abs(ref.weights).max())
    np.testing.assert_allclose(fit2.e0 - ref.e0, [1.5, -0.7], atol=1e-6)
    p1, p2 = ref.predict(emt_frames), fit2.predict(shifted)
    np.testing.assert_allclose(np.concatenate(p2.forces), np.concatenate(p1.forces), atol=1e-8)


def test_given_e0_is_used(ethanol_frames, small_hco_basis):
    e0 = {"H": -13.6, "C": -1029.0, "O": -2041.0}
    model = fit_linear(small_hco_basis, ethanol_frames[:40], config=LinearFitConfig(e0=e0), **KEYS)
    np.testing.assert_array_equal(model.e0, [-13.6, -1029.0, -2041.0])
    with pytest.raises(LabelError, match="e0 lacks"):
        fit_linear(small_hco_basis, ethanol_frames[:5], config=LinearFitConfig(e0={"H": 0.0}), **KEYS)


def test_stress_fit_and_calculator(emt_frames):
    basis = mb.Basis.ace(["Cu", "Ni"], 4.5, [5, 3], [0, 2], 2)
    train, test = emt_frames[:18], emt_frames[18:]
    model = fit_linear(basis, train, stress_key="stress")
    labels = get_labels(test, "energy", "forces", "stress")
    m = error_metrics(test, labels, model.predict(test))
    s_std = np.std(labels.stress)
    assert m["stress_mae"] < 0.2 * s_std, (m, s_std)
    atoms = test[0].copy()
    atoms.calc = model.calculator()
    pred = model.predict(test[0])
    assert atoms.get_potential_energy() == pytest.approx(pred.energy[0], rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), pred.forces[0], atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), pred.stress[0], atol=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(pred.energy[0])


def test_model_roundtrip_and_corruption(tmp_path: Path, ethanol_frames, small_hco_basis):
    model = fit_linear(small_hco_basis, ethanol_frames[:30], **KEYS)
    path = tmp_path / "model.npz"
    model.save(path)
    again = LinearModel.load(path)
    np.testing.assert_array_equal(again.weights, model.weights)
    p1, p2 = model.predict(ethanol_frames[30:33]), again.predict(ethanol_frames[30:33])
    np.testing.assert_array_equal(p1.energy, p2.energy)
    # truncated file
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FileFormatError):
        LinearModel.load(bad)
    # not a zip at all
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    with pytest.raises(FileFormatError):
        LinearModel.load(junk)
    with pytest.raises(FileFormatError, match="no such model"):
        LinearModel.load(tmp_path / "missing.npz")
    # edited weights -> hash mismatch; other format version -> clear error
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    edited = dict(arrays, weights=arrays["weights"] * 1.01)
    np.savez(tmp_path / "edited.npz", **edited)
    with pytest.raises(FileFormatError, match="hash mismatch"):
        LinearModel.load(tmp_path / "edited.npz")
    meta = json.loads(arrays["meta"].tobytes().decode())
    meta["format_version"] = 99
    old = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    np.savez(tmp_path / "future.npz", **old)
    with pytest.raises(FileFormatError, match="format version 99"):
        LinearModel.load(tmp_path / "future.npz")
    assert zipfile.is_zipfile(path)


def test_missing_labels_raise(ethanol_frames, small_hco_basis):
    with pytest.raises(LabelError, match="no energy under key 'energy_ccsd'"):
        fit_linear(small_hco_basis, ethanol_frames[:3], energy_key="energy_ccsd", forces_key="forces_high")
    with pytest.raises(LabelError, match="no forces under key 'forces_x'"):
        fit_linear(small_hco_basis, ethanol_frames[:3], energy_key="energy_high", forces_key="forces_x")
    with pytest.raises(LabelError, match="no structure carries stress"):
        get_labels(ethanol_frames[:3], "energy_high", "forces_high", "stress")
    with pytest.raises(LabelError, match="nothing to fit"):
        fit_linear(small_hco_basis, ethanol_frames[:3], energy_key=None, forces_key=None)
    broken = ethanol_frames[0].copy()
    broken.info["energy_high"] = float("nan")
    with pytest.raises(LabelError, match="not finite"):
        get_labels([broken], "energy_high", None)


def test_bad_solver_and_weights():
    with pytest.raises(mb.MinbasisError, match="unknown solver"):
        LinearFitConfig(solver="magic")
    with pytest.raises(mb.MinbasisError, match="energy_weight"):
        LinearFitConfig(energy_weight=-1)


@pytest.mark.parametrize("solver", ["ridge", "bayesian"])
def test_solvers_agree_on_easy_problem(emt_frames, solver):
    basis = mb.Basis.ace(["Cu", "Ni"], 4.5, [3, 2], [0, 1], 2)
    model = fit_linear(basis, emt_frames, stress_key="stress", config=LinearFitConfig(solver=solver, alpha=1e-10))
    labels = get_labels(emt_frames, "energy", "forces", "stress")
    m = error_metrics(emt_frames, labels, model.predict(emt_frames))
    assert m["forces_rmse"] < 0.5 * np.std(np.concatenate([f.ravel() for f in labels.forces]))


def test_bayesian_ridge_matches_sklearn():
    """The Gram-eigenvalue evidence maximisation gives scikit-learn's BayesianRidge solution."""
    from sklearn.linear_model import BayesianRidge

    from minbasis.fit.linear import bayesian_ridge

    rng = np.random.default_rng(3)
    A = rng.standard_normal((400, 60)) @ np.diag(np.logspace(0, -4, 60))
    y = A @ rng.standard_normal(60) + 0.01 * rng.standard_normal(400)
    coef, info = bayesian_ridge(A, y, tol=1e-12)
    ref = BayesianRidge(fit_intercept=False, tol=1e-12, max_iter=1000).fit(A, y)
    np.testing.assert_allclose(coef, ref.coef_, rtol=1e-6, atol=1e-9 * np.abs(ref.coef_).max())
    assert info["lambda_prior"] == pytest.approx(ref.lambda_, rel=1e-5)
    assert info["alpha_noise"] == pytest.approx(ref.alpha_, rel=1e-5)
