"""Bad input gives a clear minbasis error (a ValueError) naming the problem, never a kernel crash."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

import minbasis as mb
from minbasis.errors import FileFormatError, SpeciesError, StructureError


@pytest.fixture(scope="module")
def basis():
    return mb.Basis.ace(["H", "C", "O"], 4.0, [3, 2], [0, 1], 2)


def test_errors_are_value_errors():
    for cls in (StructureError, SpeciesError, FileFormatError, mb.LabelError):
        assert issubclass(cls, ValueError)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_positions(basis, value):
    m = molecule("CH3CH2OH")
    m.positions[3, 1] = value
    with pytest.raises(StructureError, match=r"non-finite .* atom\(s\) \[3\]"):
        mb.describe(m, basis)


def test_overlapping_atoms(basis):
    m = molecule("CH3CH2OH")
    m.positions[4] = m.positions[0] + [0.05, 0.0, 0.0]
    with pytest.raises(StructureError, match="overlap"):
        mb.describe(m, basis)


def test_overlap_with_periodic_image(basis):
    a = Atoms("H2", positions=[[0, 0, 0], [2.95, 0, 0]], cell=[3.0, 3.0, 3.0], pbc=True)
    with pytest.raises(StructureError, match="overlap"):
        mb.describe(a, basis)


def test_unknown_species(basis):
    m = molecule("CH3CH2OH")
    m.symbols[2] = "N"
    with pytest.raises(SpeciesError, match=r"\['N'\] not in the basis species \['H', 'C', 'O'\]"):
        mb.describe(m, basis)


def test_empty_inputs(basis):
    with pytest.raises(StructureError, match="empty"):
        mb.describe(Atoms(), basis)
    with pytest.raises(StructureError, match="no structures"):
        mb.describe([], basis)
    with pytest.raises(StructureError, match="expected ase.Atoms"):
        mb.describe([molecule("H2O"), "not atoms"], basis)


def test_degenerate_cells(basis):
    a = bulk("C", "diamond", a=3.57)
    flat = a.copy()
    flat.cell[2] = flat.cell[0] + flat.cell[1]
    with pytest.raises(StructureError, match="degenerate cell"):
        mb.describe(flat, basis)
    zero = a.copy()
    zero.cell[1] = 0.0
    with pytest.raises(StructureError, match="zero length"):
        mb.describe(zero, basis)


def test_isolated_atom_has_zero_many_body_features(basis):
    """An atom with no neighbours is valid input: all its moments, hence invariants, vanish."""
    X = mb.describe(Atoms("O", positions=[[0, 0, 0]]), basis)
    assert X.shape == (1, basis.n_features)
    assert np.all(X == 0.0)


def test_bad_hyper_parameters():
    with pytest.raises(mb.MinbasisError, match="unknown chemical symbols"):
        mb.Basis.ace(["H", "Xx"], 5.0, 4, 2, 2)
    with pytest.raises(mb.MinbasisError, match="duplicates"):
        mb.Basis.ace(["H", "H"], 5.0, 4, 2, 2)
    with pytest.raises(mb.MinbasisError, match="r_cut"):
        mb.Basis.ace(["H"], -1.0, 4, 2, 2)
    with pytest.raises(mb.MinbasisError, match="order"):
        mb.Basis.ace(["H"], 5.0, 4, 2, 7)  # ν ≤ 6
    with pytest.raises(ValueError, match="n_max has 2 entries but order = 3"):
        mb.Basis.ace(["H"], 5.0, [4, 3], 2, 3)


def test_basis_file_errors(tmp_path, basis):
    path = tmp_path / "b.json"
    basis.save(path)
    assert mb.Basis.load(path) == basis
    d = json.loads(path.read_text())
    # another format version
    (tmp_path / "v.json").write_text(json.dumps(dict(d, format_version=0)))
    with pytest.raises(FileFormatError, match="format version 0"):
        mb.Basis.load(tmp_path / "v.json")
    # edited content -> hash mismatch
    edited = json.loads(path.read_text())
    edited["invariants"][0]["terms"][0][0] *= 2
    (tmp_path / "e.json").write_text(json.dumps(edited))
    with pytest.raises(FileFormatError, match="hash mismatch"):
        mb.Basis.load(tmp_path / "e.json")
    # truncated, not a basis, missing
    (tmp_path / "t.json").write_text(path.read_text()[: len(path.read_text()) // 2])
    with pytest.raises(FileFormatError, match="not valid JSON"):
        mb.Basis.load(tmp_path / "t.json")
    (tmp_path / "o.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(FileFormatError, match="not a minbasis basis"):
        mb.Basis.load(tmp_path / "o.json")
    with pytest.raises(FileFormatError, match="cannot read"):
        mb.Basis.load(tmp_path / "missing.json")
    # an invariant pointing outside the basis is caught when compiling, not inside a kernel
    bad = json.loads(path.read_text())
    bad["invariants"][0]["factors"][0][0] = 7
    from minbasis.spec import BasisSpec

    tampered = BasisSpec(family=bad["family"], variant=bad["variant"], species=bad["species"], r_cut=bad["r_cut"],
                         radial=bad["radial"], hyper=bad["hyper"], invariants=bad["invariants"], pruning=None)
    with pytest.raises(FileFormatError, match="outside the basis"):
        mb.Basis(tampered).plan
