"""describe(..., output="tensormap"): featomic-style metatensor TensorMap with gradient blocks."""

from __future__ import annotations

import numpy as np
import pytest

metatensor = pytest.importorskip("metatensor")

import minbasis as mb  # noqa: E402
from minbasis.errors import MinbasisError  # noqa: E402


@pytest.fixture(scope="module")
def basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2, 2], [0, 2, 1], 3)


def test_tensormap_layout_and_values(ethanol, hco_cell, basis):
    frames = [ethanol, hco_cell]
    tm = mb.describe(frames, basis, output="tensormap")
    X = mb.describe(frames, basis)
    numbers = np.concatenate([a.numbers for a in frames])
    assert tm.keys.names == ["center_type"]
    assert sorted(int(k[0]) for k in tm.keys) == [1, 6, 8]
    for key, block in tm.items():
        z = int(key[0])
        rows = np.flatnonzero(numbers == z)
        assert block.samples.names == ["system", "atom"]
        assert block.properties.names == ["feature"] and len(block.properties) == basis.n_features
        s = block.samples.values
        glob = np.where(s[:, 0] == 0, s[:, 1], len(ethanol) + s[:, 1])
        assert np.array_equal(glob, rows)
        assert np.array_equal(block.values, X[rows])
        assert block.gradients_list() == []


def test_tensormap_gradients_against_finite_differences(hco_cell, basis):
    tm = mb.describe(hco_cell, basis, gradients=True, strain_gradients=True, output="tensormap")
    X0 = mb.describe(hco_cell, basis)
    rng = np.random.default_rng(0)
    h = 1e-5
    # a random displacement of all atoms, and a random change of the cell (Cartesian positions fixed)
    du = rng.normal(size=(len(hco_cell), 3))
    dh = rng.normal(size=(3, 3))
    a_p, a_m = hco_cell.copy(), hco_cell.copy()
    a_p.positions += h * du
    a_m.positions -= h * du
    fd_pos = (mb.describe(a_p, basis) - mb.describe(a_m, basis)) / (2 * h)
    c_p, c_m = hco_cell.copy(), hco_cell.copy()
    c_p.set_cell(hco_cell.cell.array + h * dh, scale_atoms=False)
    c_m.set_cell(hco_cell.cell.array - h * dh, scale_atoms=False)
    fd_cell = (mb.describe(c_p, basis) - mb.describe(c_m, basis)) / (2 * h)
    # strain: r → r(1 + ε) for positions and cell together
    eps = rng.normal(size=(3, 3))
    s_p, s_m = hco_cell.copy(), hco_cell.copy()
    s_p.set_cell(hco_cell.cell.array @ (np.eye(3) + h * eps), scale_atoms=True)
    s_m.set_cell(hco_cell.cell.array @ (np.eye(3) - h * eps), scale_atoms=True)
    fd_strain = (mb.describe(s_p, basis) - mb.describe(s_m, basis)) / (2 * h)
    scale = np.abs(X0).max()
    for key, block in tm.items():
        rows = block.samples.values[:, 1]
        g = block.gradient("positions")
        assert g.samples.names == ["sample", "system", "atom"]
        assert g.components[0].names == ["xyz"]
        an = np.zeros((len(rows), basis.n_features))
        gs = g.samples.values
        np.add.at(an, gs[:, 0], np.einsum("saf,sa->sf", g.values, du[gs[:, 2]]))
        assert np.abs(an - fd_pos[rows]).max() < 1e-6 * max(scale, 1)
        st = block.gradient("strain")
        assert [c.names for c in st.components] == [["xyz_1"], ["xyz_2"]]
        assert np.abs(np.einsum("nabf,ab->nf", st.values, eps) - fd_strain[rows]).max() < 1e-6 * max(scale, 1)
        ce = block.gradient("cell")
        assert np.abs(np.einsum("nabf,ab->nf", ce.values, dh) - fd_cell[rows]).max() < 1e-6 * max(scale, 1)


def test_tensormap_errors(ethanol, basis):
    with pytest.raises(MinbasisError, match="output"):
        mb.describe(ethanol, basis, output="xarray")
    from minbasis.metatensor_output import to_tensormap

    with pytest.raises(MinbasisError, match="unknown gradients"):
        to_tensormap([ethanol], basis, ["hessian"])
