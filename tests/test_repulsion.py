"""Repulsive core (issue 12, item 2): ZBL pair term with a smooth switch, fade of the many-body
part for crowded atoms; energies, forces and stress against finite differences; monotonic
energies at short range; model files; overlap becomes a warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from minbasis.errors import FileFormatError, MinbasisError, StructureError
from minbasis.fit.model import LinearModel, MinbasisCalculator
from minbasis.fit.core import core_predictions, fit_linear_with_core
from minbasis.repulsion import ZBLCore, clamp_radius, pair_min_distances, zbl_pair

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _model(basis, core, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    C, F = len(basis.species), basis.n_features
    return LinearModel(basis=basis, weights=scale * rng.normal(size=(C, F)) / np.sqrt(F), e0=rng.normal(size=C),
                       repulsion=core)


def test_zbl_pair_values_derivative_and_monotonic():
    r = np.linspace(0.2, 3.0, 400)
    phi, dphi = zbl_pair(r, 29, 29, r_in=2.0, width=0.5)
    assert (phi[r >= 2.0] == 0).all() and (dphi[r >= 2.0] == 0).all()
    inside = r < 2.0
    assert (np.diff(phi[inside]) < 0).all() and (phi[inside] > 0).all()
    h = 1e-6
    fd = (zbl_pair(r + h, 29, 29, 2.0, 0.5)[0] - zbl_pair(r - h, 29, 29, 2.0, 0.5)[0]) / (2 * h)
    np.testing.assert_allclose(dphi, fd, rtol=1e-6, atol=1e-6)
    # unscreened limit: k_e Z² / r at very short range, screening function (Σ c_k = 1) → 1
    p0, _ = zbl_pair(np.array([1e-4]), 29, 29, 2.0, 0.5)
    assert p0[0] == pytest.approx(14.399645 * 29 * 29 / 1e-4, rel=5e-3)
    rho, drho = clamp_radius(r, 2.0, 0.5)
    assert (rho >= 1.75 - 1e-12).all() and (np.diff(rho) >= -1e-15).all()
    np.testing.assert_allclose(rho[r >= 2.0], r[r >= 2.0])


@pytest.mark.parametrize("clamp", [False, True])
def test_energy_forces_stress_finite_differences(cu_basis, clamp):
    atoms = bulk("Cu", "fcc", a=3.61 * 0.72, cubic=True)   # every neighbour inside the core
    atoms.set_cell(atoms.cell.array + np.random.default_rng(1).normal(scale=0.05, size=(3, 3)), scale_atoms=True)
    atoms.rattle(0.05, seed=2)
    core = ZBLCore(["Cu"], [[2.4]], width=0.8, clamp=clamp, fade=(1.0, 40.0))
    model = _model(cu_basis, core)
    p = model.predict(atoms)
    rho = core.core_counts(atoms)
    assert (rho > 1.0).all() and (rho < 40.0).all()          # the fade is active but not saturated
    h = 1e-5
    fd = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for a in range(3):
            x = atoms.copy()
            x.positions[i, a] += h
            ep = model.predict(x).energy[0]
            x.positions[i, a] -= 2 * h
            em = model.predict(x).energy[0]
            fd[i, a] = -(ep - em) / (2 * h)
    np.testing.assert_allclose(p.forces[0], fd, atol=2e-5 * max(1.0, np.abs(fd).max()))
    # stress: (1/V) dE/dε for symmetric strains
    V = atoms.get_volume()
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for k, (a, b) in enumerate(voigt):
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h if a != b else h
        es = []
        for sgn in (1, -1):
            x = atoms.copy()
            x.set_cell(atoms.cell.array @ (np.eye(3) + sgn * eps), scale_atoms=True)
            es.append(model.predict(x).energy[0])
        d = (es[0] - es[1]) / (2 * h) / V
        if a != b:
            d /= 2
        assert p.stress[0][k] == pytest.approx(d, abs=2e-5 * max(1.0, abs(d)))


def test_calculator_with_core_equals_predict_and_overlap_warns(cu_basis, cu_cell):
    core = ZBLCore(["Cu"], [[2.3]], width=0.6)
    model = _model(cu_basis, core)
    atoms = cu_cell
    atoms.positions[1] = atoms.positions[0] + [0.2, 0.0, 0.0]      # overlapping: a warning, not an error
    with pytest.warns(RuntimeWarning, match="overlap"):
        p = model.predict(atoms)
    atoms.calc = MinbasisCalculator(model)
    with pytest.warns(RuntimeWarning, match="overlap"):
        e = atoms.get_potential_energy()
    assert e == pytest.approx(p.energy[0], abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), p.forces[0], atol=1e-9)
    np.testing.assert_allclose(atoms.get_stress(), p.stress[0], atol=1e-10)
    assert np.isfinite(e) and e > 1e3                                 # the core dominates at 0.2 Å
    no_core = LinearModel(basis=model.basis, weights=model.weights, e0=model.e0)
    with pytest.raises(StructureError, match="overlap"):
        no_core.predict(atoms)


def test_model_file_keeps_core(cu_basis, tmp_path):
    core = ZBLCore(["Cu"], [[2.0]], width=0.5, clamp=True, fade=(2.0, 5.0))
    model = _model(cu_basis, core)
    model.save(tmp_path / "m.npz")
    back = LinearModel.load(tmp_path / "m.npz")
    assert back.repulsion.to_dict() == core.to_dict()
    a = bulk("Cu", "fcc", a=3.0, cubic=True)
    assert back.predict(a).energy[0] == pytest.approx(model.predict(a).energy[0], abs=1e-10)
    # an edited core is caught by the content hash
    import json
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        meta = json.loads(np.load(z.open("meta.npy")).tobytes().decode())
    assert meta["hyper"]["repulsion"]["type"] == "zbl"
    with pytest.raises(MinbasisError):
        LinearModel(basis=model.basis, weights=model.weights, e0=model.e0, repulsion=ZBLCore(["Ni"], [[2.0]]))
    with pytest.raises(MinbasisError):
        ZBLCore(["Cu"], [[2.0]], width=3.0)
    with pytest.raises(MinbasisError):
        ZBLCore.from_dict({"type": "lj"})
    assert issubclass(FileFormatError, MinbasisError)


def test_core_outside_data_does_not_change_the_fit(cu_basis):
    from ase.calculators.emt import EMT

    from minbasis.fit import fit_linear

    frames = []
    for k in range(6):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        a.get_potential_energy()
        frames.append(a)
    dmin = pair_min_distances(frames, ["Cu"])[0, 0]
    core = ZBLCore(["Cu"], [[0.95 * dmin]], width=0.5)
    m0 = fit_linear(cu_basis, frames, config=None)
    m1 = fit_linear_with_core(cu_basis, frames, core)
    np.testing.assert_allclose(m1.weights, m0.weights, rtol=1e-10, atol=1e-12)
    assert m1.repulsion is core and m1.info["repulsion"]["baseline_subtracted"] is False
    # a core reaching into the data: labels are shifted by the core, and the model adds it back
    core2 = ZBLCore(["Cu"], [[1.05 * dmin]], width=0.5)
    m2 = fit_linear_with_core(cu_basis, frames, core2)
    assert m2.info["repulsion"]["baseline_subtracted"] is True
    e_ref = np.array([f.get_potential_energy() for f in frames])
    err0 = np.abs(m0.predict(frames).energy - e_ref).mean()
    err2 = np.abs(m2.predict(frames).energy - e_ref).mean()
    assert err0 < 1e-3 and err2 / len(frames[0]) < 0.01   # a sharper target, still fitted to meV/atom


    ace_only = LinearModel(basis=cu_basis, weights=m2.weights, e0=m2.e0).predict(frames).energy
    np.testing.assert_allclose(m2.predict(frames).energy, ace_only + core_predictions(core2, cu_basis, frames)[0],
                               atol=1e-9)


@pytest.mark.skipif(not (DATA / "cu_alloy_emt.extxyz").exists(), reason="shared reference data absent")
def test_fitted_alloy_model_is_monotonic_at_short_range():
    import ase.io

    import minbasis as mb

    frames = ase.io.read(DATA / "cu_alloy_emt.extxyz", index=":40")
    basis = mb.Basis.ace(["Cu", "Ni", "Al"], 5.0, [5, 3], [0, 2], 2)
    model = fit_linear_with_core(basis, frames, stress_key="stress")
    assert model.repulsion.r_in.min() > 1.5
    # compressed fcc Cu: from the model's minimum down to 0.6 a0 the energy rises
    fs = np.linspace(0.6, 1.1, 51)
    e = np.array([model.predict(bulk("Cu", "fcc", a=3.61 * f, cubic=True)).energy[0] / 4 for f in fs])
    k = int(np.argmin(e))
    assert fs[k] > 0.9
    assert (np.diff(e[: k + 1]) < 0).all()
    # Cu dimer: from its minimum down to 0.5 Å the energy rises
    r = np.linspace(0.5, 3.5, 121)
    d = np.array([model.predict(Atoms("Cu2", positions=[[0, 0, 0], [x, 0, 0]])).energy[0] for x in r])
    k = int(np.argmin(d))
    assert r[k] > 1.8
    assert (np.diff(d[: k + 1]) < 0).all()


def test_cli_fit_adds_core_for_periodic_data(tmp_path, cu_basis):
    import ase.io
    from ase.calculators.emt import EMT

    from minbasis.cli import main

    frames = []
    for k in range(5):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        a.get_potential_energy()
        a.get_forces()
        frames.append(a)
    ase.io.write(tmp_path / "d.extxyz", frames)
    cu_basis.save(tmp_path / "b.json")
    assert main(["fit", str(tmp_path / "d.extxyz"), "--basis", str(tmp_path / "b.json"), "-o",
                 str(tmp_path / "m.npz")]) == 0
    m = LinearModel.load(tmp_path / "m.npz")
    assert m.repulsion is not None and m.repulsion.r_in.min() > 2.0
    assert main(["fit", str(tmp_path / "d.extxyz"), "--basis", str(tmp_path / "b.json"), "--repulsion", "none",
                 "-o", str(tmp_path / "n.npz")]) == 0
    assert LinearModel.load(tmp_path / "n.npz").repulsion is None
