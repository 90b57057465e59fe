"""minbasis.sklearn: the Descriptor transformer and the LinearPotential regressor.

scikit-learn's API checks that do not feed numeric arrays pass; those that do (the estimators
take structures, not numbers) are replaced by the same checks on structures: pickling,
idempotent fit, unchanged parameters and __dict__, errors before fit.
"""

from __future__ import annotations

import pickle
from importlib.resources import files

import ase.io
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
import sklearn.utils.estimator_checks as ec

import minbasis as mb
from minbasis.errors import MinbasisError
from minbasis.sklearn import Descriptor, LinearPotential

API_CHECKS = ["check_estimator_cloneable", "check_get_params_invariance", "check_set_params",
              "check_no_attributes_set_in_init", "check_parameters_default_constructible", "check_estimator_repr",
              "check_do_not_raise_errors_in_init_or_set_params", "check_estimator_tags_renamed",
              "check_valid_tag_types", "check_mixin_order", "check_n_features_in_after_fitting",
              "check_estimators_unfitted", "check_transformer_n_iter"]


@pytest.fixture(scope="module")
def basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2, 2], [0, 2, 1], 3)


@pytest.fixture(scope="module")
def frames():
    return ase.io.read(str(files("minbasis") / "data" / "ethanol_mf_subset.extxyz"), index=":")


@pytest.mark.parametrize("cls", [Descriptor, LinearPotential])
@pytest.mark.parametrize("check", API_CHECKS)
def test_sklearn_api_checks(cls, check, basis):
    if not hasattr(ec, check):
        pytest.skip(f"{check} not in this scikit-learn")
    getattr(ec, check)(cls.__name__, cls(basis=basis))


def test_transform_shapes_and_values(frames, basis):
    sub = frames[:3]
    X = mb.describe(sub, basis)
    assert np.array_equal(Descriptor(basis=basis).fit_transform(sub), X)
    mean = Descriptor(basis=basis, average=True).fit(sub).transform(sub)
    tot = Descriptor(basis=basis, average="sum").fit(sub).transform(sub)
    assert mean.shape == (3, basis.n_features)
    assert np.allclose(mean[1], X[9:18].mean(0), rtol=1e-14, atol=0)
    assert np.allclose(tot, 9 * mean, rtol=1e-13, atol=0)
    sp = Descriptor(basis=basis, average=True, per_species=True).fit(sub)
    Ys = sp.transform(sub).reshape(3, 3, basis.n_features)
    h = np.flatnonzero(sub[0].numbers == 1)
    assert np.allclose(Ys[0, 0], X[h].mean(0), rtol=1e-14, atol=0)  # block 0: hydrogen atoms
    assert len(sp.get_feature_names_out()) == 3 * basis.n_features
    d = Descriptor(basis=basis).fit(sub)
    names = d.get_feature_names_out()
    assert len(names) == basis.n_features and len(set(names)) == len(names)
    arr = np.empty(len(sub), dtype=object)
    arr[:] = sub
    assert np.array_equal(d.transform(arr), X)  # 1-D object arrays of structures


def test_structure_based_checks(frames, basis, tmp_path):
    sub = frames[:2]
    est = Descriptor(basis=basis, average=True)
    with pytest.raises(NotFittedError):
        est.transform(sub)
    params = est.get_params()
    est.fit(sub)
    assert est.get_params() == params  # fit does not touch the parameters
    d0 = dict(est.__dict__)
    Y = est.transform(sub)
    assert est.__dict__.keys() == d0.keys()  # transform does not change the state
    assert np.array_equal(est.fit(sub).transform(sub), Y)  # idempotent
    again = pickle.loads(pickle.dumps(est))
    assert np.array_equal(again.transform(sub), Y)
    path = tmp_path / "b.json"
    basis.save(path)
    assert np.array_equal(Descriptor(basis=str(path), average=True).fit(sub).transform(sub), Y)
    c = clone(est)
    assert c.basis is not None and not hasattr(c, "basis_")


def test_errors(frames, basis):
    with pytest.raises(MinbasisError, match="basis must be"):
        Descriptor().fit(frames[:1])
    with pytest.raises(MinbasisError, match="average"):
        Descriptor(basis=basis, average="median").fit(frames[:1])
    with pytest.raises(MinbasisError, match="sequence of ase.Atoms"):
        Descriptor(basis=basis).fit(frames[:1]).transform(np.zeros((3, 4)))


def test_pipeline_descriptor_ridge(frames, basis):
    """Pipeline(Descriptor(average=True) → Ridge) on ethanol MP2 energies, with a grid search over alpha;
    species-resolved sums (the energy rows of linear ACE) do at least as well."""
    y = np.array([a.info["energy_high"] for a in frames])
    idx = np.random.default_rng(0).permutation(len(frames))
    tr, te = idx[:160], idx[160:]
    train, test = [frames[k] for k in tr], [frames[k] for k in te]
    baseline = np.abs(y[te] - y[tr].mean()).mean()
    pipe = Pipeline([("B", Descriptor(basis=basis, average=True)), ("scale", StandardScaler()),
                     ("ridge", Ridge(alpha=1e-3))])
    search = GridSearchCV(pipe, {"ridge__alpha": [1e-4, 1e-2, 1.0]}, cv=3, scoring="neg_mean_absolute_error")
    search.fit(train, y[tr])
    mae = np.abs(search.predict(test) - y[te]).mean()
    assert mae < 0.5 * baseline, (mae, baseline)
    assert clone(search.best_estimator_).get_params()["B__average"] is True
    pipe2 = Pipeline([("B", Descriptor(basis=basis, average="sum", per_species=True)), ("ridge", Ridge(alpha=1e-8))])
    mae2 = np.abs(pipe2.fit(train, y[tr]).predict(test) - y[te]).mean()
    assert mae2 < 0.35 * baseline, (mae2, baseline)
    assert pipe2.named_steps["B"].n_features_out_ == 3 * basis.n_features


def test_linear_potential_matches_fit_linear(frames, basis):
    from minbasis.fit import LinearFitConfig, fit_linear

    est = LinearPotential(basis=basis, energy_key="energy_high", forces_key="forces_high", solver="ridge", alpha=1e-6)
    est.fit(frames[:30])
    ref = fit_linear(basis, frames[:30], energy_key="energy_high", forces_key="forces_high",
                     config=LinearFitConfig(solver="ridge", alpha=1e-6))
    assert np.allclose(est.predict(frames[30:]), ref.predict(frames[30:]).energy, rtol=1e-12, atol=1e-9)
    assert len(est.predict_forces(frames[30:32])) == 2
    assert est.score(frames[30:]) > 0.5
    # y given explicitly replaces the energy key
    y = np.array([a.info["energy_high"] for a in frames[:30]])
    est2 = clone(est).set_params(energy_key="no_such_key").fit(frames[:30], y)
    assert np.allclose(est2.predict(frames[30:]), est.predict(frames[30:]), rtol=1e-12, atol=1e-9)
