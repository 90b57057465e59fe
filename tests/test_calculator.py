"""The MD path of the ASE calculator (issue 12, item 3): folded weights cached per model, a
neighbour list with a skin, identical results to ``LinearModel.predict`` and to the old
calculator (``fast=False``)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

from minbasis.errors import StructureError
from minbasis.fit.model import LinearModel, MinbasisCalculator
from minbasis.kernels.skin import SkinNeighbourList


def _model(basis, seed=0, scale=0.02):
    rng = np.random.default_rng(seed)
    C, F = len(basis.species), basis.n_features
    return LinearModel(basis=basis, weights=scale * rng.normal(size=(C, F)) / np.sqrt(F),
                       e0=rng.normal(size=C))


def _alloy(reps=2, seed=0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((reps, reps, reps))
    rng = np.random.default_rng(seed)
    atoms.symbols = rng.choice(["H", "C", "O"], size=len(atoms))
    atoms.rattle(0.08, seed=seed)
    return atoms


def _compare(model, atoms, calc):
    p = model.predict(atoms)
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(p.energy[0], abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), p.forces[0], atol=1e-11)
    np.testing.assert_allclose(atoms.get_potential_energies(), p.atomic_energies[0], atol=1e-11)
    if atoms.pbc.all():
        np.testing.assert_allclose(atoms.get_stress(), p.stress[0], atol=1e-12)


@pytest.mark.parametrize("which", ["ethanol", "hco_cell", "alloy"])
def test_fast_calculator_equals_predict(hco_basis, ethanol, hco_cell, which):
    atoms = {"ethanol": ethanol, "hco_cell": hco_cell, "alloy": _alloy()}[which]
    model = _model(hco_basis)
    calc = MinbasisCalculator(model)
    assert calc.fast
    _compare(model, atoms, calc)
    # moved a little (no rebuild) and a lot (rebuild): still equal to predict
    rng = np.random.default_rng(1)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    _compare(model, atoms, calc)
    builds = calc.n_neighbour_builds
    assert builds == 1
    atoms.positions += rng.normal(scale=0.6, size=atoms.positions.shape)
    _compare(model, atoms, calc)
    assert calc.n_neighbour_builds == builds + 1


def test_skin_list_rebuild_rules(hco_basis, hco_cell):
    plan = hco_basis.plan
    nl = SkinNeighbourList(plan.species, plan.numbers, plan.r_cut, skin=1.0)
    nl.update(hco_cell)
    assert nl.n_builds == 1
    a = hco_cell.copy()
    a.positions[0] += [0.49, 0.0, 0.0]       # < skin/2: reused
    nl.update(a)
    assert nl.n_builds == 1
    a.positions[0] += [0.02, 0.0, 0.0]       # > skin/2 from the reference: rebuilt
    nl.update(a)
    assert nl.n_builds == 2
    b = a.copy()
    b.set_cell(b.cell.array * 1.001, scale_atoms=False)   # a changed cell always rebuilds
    nl.update(b)
    assert nl.n_builds == 3
    b.numbers[[0, 7]] = b.numbers[[7, 0]]    # so does a changed species order
    nl.update(b)
    assert nl.n_builds == 4
    with pytest.raises(ValueError):
        SkinNeighbourList(plan.species, plan.numbers, plan.r_cut, skin=-1.0)


def test_skin_list_has_exactly_the_pairs_within_cutoff(hco_basis, hco_cell):
    from minbasis.kernels import build_batch

    plan = hco_basis.plan
    nl = SkinNeighbourList(plan.species, plan.numbers, plan.r_cut, skin=1.5)
    nl.update(hco_cell)
    a = hco_cell.copy()
    a.rattle(0.2, seed=3)   # within skin/2 of the reference for almost all atoms
    got = nl.update(a)
    ref = build_batch([a], plan.species, plan.numbers, plan.r_cut)
    key = lambda b: sorted(zip(b.pair_i.tolist(), b.pair_j.tolist(), np.round(b.pair_vec, 9).tolist()))  # noqa: E731
    assert key(got) == key(ref)
    np.testing.assert_array_equal(got.centre_ptr, ref.centre_ptr)


def test_md_trajectory_same_as_old_calculator(hco_basis, hco_cell):
    model = _model(hco_basis, scale=0.01)
    traj = []
    for fast in (False, True):
        atoms = hco_cell.copy()
        atoms.set_masses([12.0] * len(atoms))
        atoms.set_velocities(np.random.default_rng(2).normal(scale=0.01, size=(len(atoms), 3)))
        atoms.calc = MinbasisCalculator(model, fast=fast)
        VelocityVerlet(atoms, 1.0 * units.fs).run(100)
        traj.append(atoms.positions.copy())
        if fast:
            assert atoms.calc.n_neighbour_builds >= 1
    assert np.abs(traj[0] - traj[1]).max() <= 1e-10


def test_folded_weights_cached_and_refreshed(hco_basis, ethanol):
    model = _model(hco_basis)
    wt = model.folded_weights()
    assert model.folded_weights() is wt            # folded once per model
    e1 = model.predict(ethanol).energy[0]
    model.weights *= 2.0                             # edited in place: refolded
    assert model.folded_weights() is not wt
    e2 = model.predict(ethanol).energy[0]
    assert e2 - model.e0[model.basis.species.index("C")] != pytest.approx(e1)
    calc = MinbasisCalculator(model)
    ethanol.calc = calc
    assert ethanol.get_potential_energy() == pytest.approx(e2, abs=1e-10)


def test_overlap_is_an_error_without_core(hco_basis, ethanol):
    model = _model(hco_basis)
    ethanol.positions[1] = ethanol.positions[0] + [0.1, 0.0, 0.0]
    ethanol.calc = MinbasisCalculator(model)
    with pytest.raises(StructureError, match="overlap"):
        ethanol.get_potential_energy()


def test_non_linear_models_use_predict(hco_basis):
    class Dummy:
        def predict(self, atoms):
            raise AssertionError("not called here")

    assert not MinbasisCalculator(Dummy()).fast
    with pytest.raises(TypeError):
        MinbasisCalculator(object())
