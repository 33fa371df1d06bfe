"""Structure loading, format detection, validation and the benchmark CIFs."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from executors.builtin_structures import build_builtin
from executors.structure_io import (
    atoms_to_text,
    detect_format,
    format_from_filename,
    load_structure,
    parse_structure_text,
    read_structure_file,
    structure_summary,
    upload_dir,
    validate_atoms,
)
from spool.errors import (
    InvalidStructure,
    StructureNotFound,
    UnsupportedFormat,
    ValidationError,
)
from spool.job import normalize_structure


@pytest.fixture(scope="module")
def calf20() -> Atoms:
    return build_builtin("CALF-20")


def _same_structure(a: Atoms, b: Atoms, tol: float = 1e-4) -> None:
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    assert np.allclose(a.cell.array, b.cell.array, atol=tol)
    delta = a.get_scaled_positions() - b.get_scaled_positions()
    delta -= np.round(delta)
    assert np.abs(delta).max() < tol


# --- formats ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["cif", "extxyz", "poscar", "vasp"])
def test_round_trip_keeps_cell_and_positions(calf20: Atoms, fmt: str) -> None:
    text = atoms_to_text(calf20, fmt)
    _same_structure(parse_structure_text(text, fmt), calf20)
    _same_structure(parse_structure_text(text, None), calf20)  # sniffed


def test_plain_xyz_has_no_cell(calf20: Atoms) -> None:
    text = atoms_to_text(calf20, "xyz")
    assert "Lattice" not in text
    atoms = parse_structure_text(text, "xyz")
    assert len(atoms) == len(calf20) and not atoms.pbc.any()
    with pytest.raises(InvalidStructure, match="no periodic cell"):
        validate_atoms(atoms)
    validate_atoms(atoms, require_periodic=False)


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("data_x\n_cell_length_a 5\n", "cif"),
        ("# comment\n_cell_length_a 5.0\n", "cif"),
        ('2\nLattice="5 0 0 0 5 0 0 0 5" pbc="T T T"\nH 0 0 0\nH 0 0 1\n', "extxyz"),
        ("2\nwater fragment\nH 0 0 0\nH 0 0 1\n", "xyz"),
        ("Cu\n1.0\n3.6 0 0\n0 3.6 0\n0 0 3.6\nCu\n4\nDirect\n0 0 0\n", "poscar"),
        ("hello world\nnothing here\n", None),
    ],
)
def test_detect_format(text: str, fmt: str | None) -> None:
    assert detect_format(text) == fmt


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [
        ("a.cif", "cif"),
        ("A.CIF", "cif"),
        ("b.xyz", "xyz"),
        ("c.extxyz", "extxyz"),
        ("POSCAR", "poscar"),
        ("CONTCAR_relaxed", "poscar"),
        ("d.vasp", "poscar"),
        ("e.pdb", None),
        (None, None),
    ],
)
def test_format_from_filename(filename: str | None, fmt: str | None) -> None:
    assert format_from_filename(filename) == fmt


def test_poscar_by_file_name(calf20: Atoms) -> None:
    text = atoms_to_text(calf20, "poscar")
    _same_structure(parse_structure_text(text, None, filename="POSCAR"), calf20)
    # An unknown extension falls back to the content.
    cif = atoms_to_text(calf20, "cif")
    _same_structure(parse_structure_text(cif, None, filename="calf.txt"), calf20)


@pytest.mark.parametrize(
    "content",
    [
        "data_broken\n_cell_length_a 10\nloop_\n_atom_site_label\n_atom_site_fract_x\nC1 0.1 0.2",
        "data_nothing\n_cell_length_a 10\n_cell_length_b 10\n",
        "data_x\n_cell_length_a abc\nloop_\n_atom_site_type_symbol\nC 0 0 0",
    ],
)
def test_broken_cif_is_invalid_structure(content: str) -> None:
    with pytest.raises(InvalidStructure) as info:
        parse_structure_text(content, "cif")
    assert info.value.code == 40002


def test_binary_garbage_is_invalid_structure() -> None:
    garbage = bytes(range(256)) * 8
    with pytest.raises(InvalidStructure, match="binary"):
        parse_structure_text(garbage, "cif")
    with pytest.raises(InvalidStructure):
        parse_structure_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None)


def test_empty_and_unrecognisable_content() -> None:
    with pytest.raises(InvalidStructure, match="empty"):
        parse_structure_text("   \n", None)
    with pytest.raises(InvalidStructure, match="recognise"):
        parse_structure_text("just some words\nand more words\n", None)
    with pytest.raises(InvalidStructure):
        parse_structure_text("3\ncomment\nC 0 0\n", "xyz")  # truncated xyz


def test_unknown_formats_are_unsupported() -> None:
    with pytest.raises(UnsupportedFormat) as info:
        parse_structure_text("anything", "pdb")
    assert info.value.code == 40003 and "cif" in info.value.message
    with pytest.raises(UnsupportedFormat):
        parse_structure_text("anything", None, filename="model.pdb")
    with pytest.raises(UnsupportedFormat):
        atoms_to_text(build_builtin("CALF-20"), "mol2")


def test_cif_reader_warnings_stay_quiet(mofsimbench_dir: Path) -> None:
    # This file's "_symmetry_cell_setting cubic" makes ASE warn on every read.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms = read_structure_file(mofsimbench_dir / "main_set" / "MOF-5.cif")
    assert len(atoms) == 424
    assert not [w for w in caught if "ase" in str(w.filename)]


def test_symmetric_cif_is_expanded() -> None:
    cif = atoms_to_text(build_builtin("CALF-20"), "cif")
    assert "P 1" in cif
    nacl = (
        "data_NaCl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'F m -3 m'\n_symmetry_Int_Tables_number 225\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\nNa1 Na 0 0 0\nCl1 Cl 0.5 0.5 0.5\n"
    )
    atoms = parse_structure_text(nacl, None)
    assert atoms.get_chemical_formula() == "Cl4Na4"
    validate_atoms(atoms)


# --- validation ---------------------------------------------------------------------


def _box(symbols: str, positions: list[list[float]], size: float = 10.0) -> Atoms:
    return Atoms(symbols, positions=positions, cell=[size] * 3, pbc=True)


def test_validate_accepts_builtins() -> None:
    for name in ("MOF-5", "UiO-66"):
        validate_atoms(build_builtin(name), allowed_elements={"H", "C", "O", "Zn", "Zr"})


def test_overlap_names_indices_and_distance() -> None:
    atoms = _box("CCO", [[1, 1, 1], [4, 4, 4], [4.3, 4, 4]])
    with pytest.raises(InvalidStructure) as info:
        validate_atoms(atoms)
    message = info.value.message
    assert "atom 1 (C)" in message and "atom 2 (O)" in message and "0.300" in message
    validate_atoms(atoms, min_distance=0.2)


def test_overlap_across_the_periodic_boundary() -> None:
    atoms = _box("CC", [[0.1, 5, 5], [9.8, 5, 5]])
    with pytest.raises(InvalidStructure, match="0.300"):
        validate_atoms(atoms)


def test_overlap_with_own_image() -> None:
    atoms = _box("C", [[0, 0, 0]], size=1.2)
    with pytest.raises(InvalidStructure, match="own periodic image"):
        validate_atoms(atoms, min_distance=1.5)


@pytest.mark.parametrize(
    ("atoms", "pattern"),
    [
        (Atoms(cell=[5, 5, 5], pbc=True), "no atoms"),
        (_box("CC", [[0, 0, 0], [np.nan, 1, 1]]), "non-finite"),
        (Atoms("CC", positions=[[0, 0, 0], [2, 0, 0]]), "no periodic cell"),
        (
            Atoms("C", cell=[[5, 0, 0], [0, 5, 0], [5, 5.001, 0]], pbc=True),
            "no periodic|degenerate",
        ),
        (Atoms("C", cell=[[5, 0, 0], [0, 5, 0], [5, 5, 0.001]], pbc=True), "degenerate"),
        (Atoms("C", cell=[0.5, 5, 5], pbc=True), "degenerate"),
        (
            Atoms("CX", positions=[[0, 0, 0], [2, 2, 2]], cell=[5, 5, 5], pbc=True),
            "unknown element",
        ),
    ],
)
def test_validate_rejects(atoms: Atoms, pattern: str) -> None:
    with pytest.raises(InvalidStructure, match=pattern):
        validate_atoms(atoms)


def test_validate_limits_atoms_and_elements() -> None:
    atoms = build_builtin("CALF-20")
    with pytest.raises(InvalidStructure, match="44 atoms, limit 40"):
        validate_atoms(atoms, max_atoms=40)
    with pytest.raises(InvalidStructure, match="not supported by the model: N, Zn"):
        validate_atoms(atoms, allowed_elements={"H", "C", "O"})


# --- summaries -----------------------------------------------------------------------


def test_structure_summary_of_mof5() -> None:
    summary = structure_summary(build_builtin("MOF-5"))
    assert summary["formula"] == "C48H24O26Zn8"
    assert summary["natoms"] == 106
    assert summary["elements"] == ["C", "H", "O", "Zn"]
    assert summary["composition"] == {"C": 48, "H": 24, "O": 26, "Zn": 8}
    cell = summary["cell"]
    assert cell["a"] == pytest.approx(25.832 / 2**0.5)
    assert cell["alpha"] == pytest.approx(60.0)
    assert summary["volume"] == pytest.approx(25.832**3 / 4)
    assert summary["density"] == pytest.approx(0.593, abs=0.005)
    json.dumps(summary)


def test_structure_summary_of_a_molecule() -> None:
    summary = structure_summary(Atoms("CO2", positions=[[0, 0, 0], [1.16, 0, 0], [-1.16, 0, 0]]))
    assert summary["formula"] == "CO2"
    assert summary["volume"] is None and summary["density"] is None and summary["cell"] is None


# --- references ----------------------------------------------------------------------


def test_load_builtin_reference() -> None:
    atoms, name = load_structure(normalize_structure("builtin:mof5"))
    assert name == "MOF-5_primitive" and len(atoms) == 106
    atoms, name = load_structure({"source": "builtin", "name": "HKUST-1_conventional"})
    assert name == "HKUST-1_conventional" and len(atoms) == 624
    atoms, name = load_structure({"source": "builtin", "name": "ZIF-8", "primitive": False})
    assert name == "ZIF-8_conventional" and len(atoms) == 276
    with pytest.raises(StructureNotFound):
        load_structure({"source": "builtin", "name": "MOF-1234"})


def test_load_inline_reference(calf20: Atoms) -> None:
    ref = normalize_structure({"format": "cif", "content": atoms_to_text(calf20, "cif")})
    atoms, name = load_structure(ref)
    _same_structure(atoms, calf20)
    assert name == "inline"
    ref = {"source": "inline", "content": atoms_to_text(calf20, "extxyz"), "name": "my-calf"}
    assert load_structure(ref)[1] == "my-calf"


def test_load_path_reference(tmp_path: Path, calf20: Atoms) -> None:
    path = tmp_path / "calf.vasp"
    path.write_text(atoms_to_text(calf20, "poscar"))
    atoms, name = load_structure(normalize_structure(str(path)))
    _same_structure(atoms, calf20)
    assert name == "calf"
    with pytest.raises(StructureNotFound):
        load_structure({"source": "path", "path": str(tmp_path / "missing.cif")})
    with pytest.raises(StructureNotFound):
        load_structure({"source": "path", "path": str(tmp_path)})


def _make_upload(root: Path, file_id: str, text: str, meta: dict | None, ext: str) -> None:
    folder = root / "structures" / file_id
    folder.mkdir(parents=True)
    (folder / f"structure.{ext}").write_text(text)
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))


def test_load_upload_reference(tmp_path: Path, calf20: Atoms) -> None:
    _make_upload(
        tmp_path,
        "abc123",
        atoms_to_text(calf20, "cif"),
        {"name": "CALF-20 batch 7", "format": "cif"},
        "cif",
    )
    atoms, name = load_structure(normalize_structure("upload:abc123"), tmp_path)
    _same_structure(atoms, calf20)
    assert name == "CALF-20 batch 7"
    # Without meta.json the extension decides and the id names it.
    _make_upload(tmp_path, "noname", atoms_to_text(calf20, "extxyz"), None, "extxyz")
    assert load_structure({"source": "upload", "file_id": "noname"}, tmp_path)[1] == "noname"


def test_missing_upload_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(StructureNotFound):
        load_structure({"source": "upload", "file_id": "nothere"}, tmp_path)
    with pytest.raises(StructureNotFound):
        load_structure({"source": "upload", "file_id": "abc"}, None)
    (tmp_path / "structures" / "empty").mkdir(parents=True)
    with pytest.raises(StructureNotFound):
        load_structure({"source": "upload", "file_id": "empty"}, tmp_path)


@pytest.mark.parametrize(
    "file_id", ["../secret", "..", "a/../../b", "/etc/passwd", "a/b", ".hidden", "a\\b", "x" * 200]
)
def test_upload_id_cannot_escape(tmp_path: Path, file_id: str) -> None:
    spool = tmp_path / "spool"
    (spool / "structures").mkdir(parents=True)
    # A real structure just outside the uploads folder: reaching it would be the bug.
    (tmp_path / "spool" / "secret").mkdir()
    (tmp_path / "spool" / "secret" / "structure.cif").write_text(
        atoms_to_text(build_builtin("CALF-20"), "cif")
    )
    with pytest.raises(ValidationError) as info:
        load_structure({"source": "upload", "file_id": file_id}, spool)
    assert not isinstance(info.value, StructureNotFound)
    with pytest.raises(ValidationError):
        upload_dir(spool, file_id)


def test_upload_dir_accepts_safe_ids(tmp_path: Path) -> None:
    assert upload_dir(tmp_path, "a1_b-2.c") == (tmp_path / "structures" / "a1_b-2.c").resolve()


def test_unknown_source() -> None:
    with pytest.raises(ValidationError):
        load_structure({"source": "ftp", "url": "x"})


# --- the benchmark's files -----------------------------------------------------------


def _smallest(folder: Path, count: int) -> list[Path]:
    return sorted(folder.iterdir(), key=lambda p: p.stat().st_size)[:count]


def test_benchmark_sample_loads_and_validates(mofsimbench_dir: Path) -> None:
    sample = _smallest(mofsimbench_dir / "main_set", 7) + _smallest(mofsimbench_dir / "copper", 3)
    sample.append(mofsimbench_dir / "main_set" / "IRMOF-10.xyz")  # the one extxyz file
    for path in sample:
        atoms, name = load_structure({"source": "path", "path": str(path)})
        validate_atoms(atoms)
        assert name == path.stem
        assert structure_summary(atoms)["density"] > 0.1
    irmof10 = read_structure_file(mofsimbench_dir / "main_set" / "IRMOF-10.xyz")
    assert len(irmof10) == 664 and irmof10.pbc.all()


def test_every_hcmof_cif_loads_and_validates(mofsimbench_dir: Path) -> None:
    files = sorted((mofsimbench_dir / "hcmof").glob("*.cif"))
    assert len(files) > 200
    for path in files:
        atoms = read_structure_file(path)
        validate_atoms(atoms)
        assert 10 <= len(atoms) <= 300, path.name


def test_benchmark_p1_cif_matches_ase_reader(mofsimbench_dir: Path) -> None:
    # The P1 fast path must give what ASE's full symmetry expansion gives.
    from ase.io import read

    path = mofsimbench_dir / "main_set" / "calf.cif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = read(os.fspath(path))
    assert isinstance(reference, Atoms)
    _same_structure(read_structure_file(path), reference, tol=1e-9)
