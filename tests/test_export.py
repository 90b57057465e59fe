""".yace export (issue 12, item 1): python-ace's evaluator (the C++ code of LAMMPS' pair_style
pace) on the exported file equals minbasis' own predictions; nonlinear models are refused.

Tests that need python-ace skip cleanly when it is absent (``pip install "minbasis[export]"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

import minbasis as mb
from minbasis.errors import MinbasisError
from minbasis.export import export_yace, yace_document
from minbasis.fit.model import LinearModel
from minbasis.repulsion import ZBLCore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"



def _pyace_calc(path):
    mod = pytest.importorskip("pyace", reason="python-ace not installed (pip install 'minbasis[export]')")
    return mod.PyACECalculator(str(path))


def _random_model(basis, seed=0, scale=0.1, core=None):
    rng = np.random.default_rng(seed)
    C = len(basis.species)
    return LinearModel(basis=basis, weights=scale * rng.normal(size=(C, basis.n_features)),
                       e0=rng.normal(size=C), repulsion=core)


def _alloy_cell(seed=1, species=("Cu", "Ni", "Al")):
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    rng = np.random.default_rng(seed)
    a.symbols = rng.choice(list(species), size=len(a))
    a.set_cell(a.cell.array + rng.normal(scale=0.1, size=(3, 3)), scale_atoms=True)
    a.rattle(0.1, seed=seed)
    return a


def _compare(model, frames, path, e_tol=1e-6, f_tol=1e-5, s_tol=1e-7):
    """Largest per-atom energy, force and stress differences between pyace on the export and minbasis."""
    calc = _pyace_calc(path)
    pred = model.predict(frames)
    dE = dF = dS = 0.0
    for k, atoms in enumerate(frames):
        a = atoms.copy()
        a.calc = calc
        dE = max(dE, abs(a.get_potential_energy() - pred.energy[k]) / len(a))
        dF = max(dF, float(np.abs(a.get_forces() - pred.forces[k]).max()))
        if a.pbc.all():
            dS = max(dS, float(np.abs(a.get_stress() - pred.stress[k]).max()))
    assert dE <= e_tol and dF <= f_tol and dS <= s_tol, (dE, dF, dS)
    return dE, dF, dS


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_random_models_all_orders(tmp_path, order):
    basis = mb.Basis.ace(["Cu", "Ni"], 4.5, [3, 2, 2, 1][:order], [0, 2, 2, 1][:order], order)
    model = _random_model(basis)
    summary = export_yace(model, tmp_path / "m.yace")
    assert summary["radial_max_error"] < 1e-10 and summary["radial_deriv_max_error"] < 1e-8
    _compare(model, [_alloy_cell(1, ("Cu", "Ni")), _alloy_cell(2, ("Cu", "Ni"))], tmp_path / "m.yace",
             e_tol=1e-9, f_tol=1e-8, s_tol=1e-10)


def test_minimal_and_cartesian_bases_multispecies(tmp_path, hco_basis, hco_minimal, ethanol, hco_cell):
    cart = mb.Basis.cartesian(["H", "C", "O"], 4.0, 2, 2, 3)
    for k, basis in enumerate((hco_minimal, cart)):
        model = _random_model(basis, seed=k)
        export_yace(model, tmp_path / f"m{k}.yace")
        _compare(model, [ethanol, hco_cell], tmp_path / f"m{k}.yace", e_tol=1e-9, f_tol=1e-8, s_tol=1e-10)


@pytest.mark.skipif(not (DATA / "cu_alloy_emt.extxyz").exists(), reason="shared reference data absent")
def test_fitted_models_on_held_out_alloy_cells_and_ethanol_frames(tmp_path):
    """The acceptance check: fitted models, held-out structures, ≤ 1e-6 eV/atom, 1e-5 eV/Å, 1e-7 eV/Å³."""
    import ase.io

    from minbasis.fit import LinearFitConfig, fit_linear

    alloy = ase.io.read(DATA / "cu_alloy_emt.extxyz", index=":")
    basis = mb.Basis.ace(["Cu", "Ni", "Al"], 5.0, [5, 3, 2], [0, 2, 1], 3)
    model = fit_linear(basis, alloy[:25], stress_key="stress")
    export_yace(model, tmp_path / "alloy.yace")
    dE, dF, dS = _compare(model, alloy[-6:], tmp_path / "alloy.yace")
    assert dF < 1e-7       # no spline of ours is involved: the remaining error is PACE's tabulation
    eth = ase.io.read(DATA / "ethanol_mf.extxyz", index=":")
    basis = mb.Basis.ace(["H", "C", "O"], 5.0, [5, 3, 2], [0, 2, 1], 3)
    model = fit_linear(basis, eth[:40], energy_key="energy_high", forces_key="forces_high",
                       config=LinearFitConfig(energy_weight=30, forces_weight=1))
    export_yace(model, tmp_path / "ethanol.yace")
    _compare(model, eth[-6:], tmp_path / "ethanol.yace")


def test_repulsive_core_is_exported_as_a_lammps_table(tmp_path):
    from minbasis.fit.core import core_predictions

    basis = mb.Basis.ace(["Cu", "Ni"], 4.5, [3, 2], [0, 2], 2)
    core = ZBLCore(["Cu", "Ni"], [[2.2, 2.1], [2.1, 2.3]], width=0.6, fade=None)
    model = _random_model(basis, core=core)
    summary = export_yace(model, tmp_path / "c.yace")
    assert summary["repulsive_core"]
    assert "pair_style hybrid/overlay pace table" in summary["lammps"]
    assert "pair_coeff * * pace c.yace Cu Ni" in summary["lammps"]
    # the table holds φ(r) and −dφ/dr of every pair at its nodes
    text = Path(summary["core_table"]).read_text().split("\n")
    k = text.index("Cu_Ni")
    n, lo, hi = int(text[k + 1].split()[1]), float(text[k + 1].split()[3]), float(text[k + 1].split()[4])
    assert (n, lo, hi) == (5000, 0.2, 2.1)
    rows = np.array([[float(x) for x in line.split()] for line in text[k + 3:k + 3 + n]])
    phi, dphi = core.pair_energy(rows[:, 1], "Cu", "Ni")
    np.testing.assert_allclose(rows[:, 2], phi, rtol=1e-14)
    np.testing.assert_allclose(rows[:, 3], -dphi, rtol=1e-14)
    assert rows[-1, 2] == 0.0
    # pyace on the .yace (the ACE part) plus the core is minbasis, also inside the core
    a = bulk("Cu", "fcc", a=3.6 * 0.75, cubic=True)
    a.symbols[[1, 2]] = "Ni"
    a.rattle(0.02, seed=0)
    ace_only = LinearModel(basis=basis, weights=model.weights, e0=model.e0)
    export_yace(ace_only, tmp_path / "a.yace")
    p = model.predict(a)
    Ec, Fc, Sc = core_predictions(core, basis, [a])
    assert Ec[0] > 10.0
    calc = _pyace_calc(tmp_path / "c.yace")
    a.calc = calc
    assert a.get_potential_energy() + Ec[0] == pytest.approx(p.energy[0], abs=1e-8)
    np.testing.assert_allclose(a.get_forces() + Fc[0], p.forces[0], atol=1e-7)
    np.testing.assert_allclose(a.get_stress() + Sc[0], p.stress[0], atol=1e-9)
    # the fade is left out, with a warning; the clamp is refused
    model.repulsion = ZBLCore(["Cu", "Ni"], [[2.2, 2.1], [2.1, 2.3]], width=0.6)
    with pytest.warns(RuntimeWarning, match="fade"):
        yace_document(model)
    model.repulsion = ZBLCore(["Cu", "Ni"], [[2.2, 2.1], [2.1, 2.3]], width=0.6, clamp=True, fade=None)
    with pytest.raises(MinbasisError, match="clamp"):
        yace_document(model)


def test_nonlinear_models_cannot_be_exported(hco_minimal):
    class FakeMLP:
        def predict(self, atoms):
            return None

    with pytest.raises(MinbasisError, match="nonlinear"):
        yace_document(FakeMLP())


def test_document_structure_and_cli(tmp_path, cu_basis, capsys):
    from minbasis.cli import main

    model = _random_model(cu_basis)
    model.save(tmp_path / "m.npz")
    assert main(["export", str(tmp_path / "m.npz"), "--format", "yace", "-o", str(tmp_path / "m.yace")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_functions"] > 0 and summary["species"] == ["Cu"]
    text = (tmp_path / "m.yace").read_text()
    for key in ("elements: [Cu]", "E0:", "embeddings:", "bonds:", "functions:", "radbasename: ChebLinear"):
        assert key in text
    # a model file of another kind gives the one-line error
    assert main(["export", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.yace")]) == 2
