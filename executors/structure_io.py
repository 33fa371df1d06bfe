"""Structure references in, checked ASE ``Atoms`` out.

A job names its structure four ways (see ``spool.job.normalize_structure``): a built-in
framework, inline text, a path on the server, or an upload kept in the spool under
``structures/<file_id>/`` (``meta.json`` plus one ``structure.<ext>``).  Every parser
failure becomes an ``InvalidStructure`` with a readable message: ASE's readers raise
anything from ``StopIteration`` to ``AssertionError`` on bad input, and none of that
may reach a client.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spool.errors import (
    InvalidStructure,
    PayloadTooLarge,
    StructureNotFound,
    UnsupportedFormat,
    ValidationError,
)

if TYPE_CHECKING:
    from ase import Atoms

FORMATS = ("cif", "xyz", "extxyz", "poscar")
_FORMAT_ALIASES = {
    "cif": "cif",
    "xyz": "xyz",
    "extxyz": "extxyz",
    "ext-xyz": "extxyz",
    "exyz": "extxyz",
    "poscar": "poscar",
    "vasp": "poscar",
    "contcar": "poscar",
}
_EXTENSIONS = {".cif": "cif", ".xyz": "xyz", ".extxyz": "extxyz", ".exyz": "extxyz"}
_EXTENSIONS |= {".vasp": "poscar", ".poscar": "poscar"}
# The extxyz reader also takes plain xyz; the plain reader is the fallback.
_ASE_READERS: dict[str, tuple[str, ...]] = {"cif": ("cif",), "poscar": ("vasp",)}
_ASE_READERS |= {"extxyz": ("extxyz",), "xyz": ("extxyz", "xyz")}
MAX_FILE_BYTES = 100 * 1024 * 1024  # the API's upload limit
_FILE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def normalize_format(fmt: str | None) -> str | None:
    """Canonical format name, ``None`` for "detect it"; unknown names are refused."""
    if fmt is None or not str(fmt).strip() or str(fmt).strip().lower() == "auto":
        return None
    canonical = _FORMAT_ALIASES.get(str(fmt).strip().lower().lstrip("."))
    if canonical is None:
        raise UnsupportedFormat(
            f"unsupported structure format {fmt!r}; supported: {', '.join(FORMATS)} "
            "(vasp is an alias of poscar)",
            field="structure.format",
        )
    return canonical


def format_from_filename(filename: str | None) -> str | None:
    """Format implied by a file name; ``None`` when the name says nothing."""
    if not filename:
        return None
    name = Path(filename).name
    suffix = Path(name).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if re.match(r"^(poscar|contcar)", name, re.IGNORECASE):
        return "poscar"
    return None


def detect_format(text: str) -> str | None:
    """Guess the format from the content itself."""
    if re.search(r"^\s*data_\S*", text, re.MULTILINE) or "_cell_length_a" in text:
        return "cif"
    lines = text.lstrip("\n").splitlines()
    if len(lines) >= 2 and re.fullmatch(r"\s*\d+\s*", lines[0]):
        return "extxyz" if re.search(r"\w+\s*=", lines[1]) else "xyz"
    if len(lines) >= 7 and _is_floats(lines[1], 1) and all(_is_floats(x, 3) for x in lines[2:5]):
        return "poscar"
    return None


def parse_structure_text(text: str | bytes, fmt: str | None, filename: str | None = None) -> Atoms:
    """Parse structure text; the format comes from ``fmt``, else the file name's
    extension, else the content.  Multi-frame files give their last frame."""
    text = _as_text(text)
    if not text.strip():
        raise InvalidStructure("structure content is empty", field="structure")
    canonical = normalize_format(fmt)
    canonical = canonical or format_from_filename(filename) or detect_format(text)
    if canonical is None:
        # An unknown extension (.pdb, .mol2) is a format question, not a broken file.
        error = UnsupportedFormat if filename and Path(filename).suffix else InvalidStructure
        raise error(
            "could not recognise the structure format; give format as one of " + ", ".join(FORMATS),
            field="structure.format",
        )
    atoms = _read(text, canonical)
    if len(atoms) == 0:
        raise InvalidStructure(f"the {canonical} content holds no atoms", field="structure")
    return atoms


def read_structure_file(path: str | Path, fmt: str | None = None) -> Atoms:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise StructureNotFound(f"structure file {path.name!r} not found") from exc
    if not path.is_file():
        raise StructureNotFound(f"structure path {path.name!r} is not a file")
    if size > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"structure file is {size} bytes, over {MAX_FILE_BYTES}")
    return parse_structure_text(path.read_bytes(), fmt, filename=path.name)


def upload_dir(spool_root: str | Path, file_id: str) -> Path:
    """Where an upload lives; ``file_id`` is checked so it can never leave the folder."""
    if not isinstance(file_id, str) or not _FILE_ID_RE.match(file_id) or ".." in file_id:
        raise ValidationError(
            f"invalid structure file id {file_id!r}: letters, digits, '_', '-', '.' only",
            field="structure.file_id",
        )
    base = (Path(spool_root) / "structures").resolve()
    target = (base / file_id).resolve()
    if target.parent != base:
        raise ValidationError(f"invalid structure file id {file_id!r}", field="structure.file_id")
    return target


def load_structure(ref: dict[str, Any], spool_root: Path | None = None) -> tuple[Atoms, str]:
    """Resolve a normalized structure reference to ``(atoms, display name)``.

    Parsing only: callers check the result with ``validate_atoms`` and the limits
    that apply to them (model elements, periodicity)."""
    source = ref.get("source")
    if source == "builtin":
        from executors.builtin_structures import build_builtin, canonical_builtin_name

        name, primitive = str(ref.get("name", "")), ref.get("primitive", True) is not False
        atoms = build_builtin(name, primitive)
        label = canonical_builtin_name(name, primitive)
    elif source == "inline":
        content = ref.get("content")
        if not isinstance(content, str | bytes):
            raise ValidationError("structure.content must be text", field="structure.content")
        atoms = parse_structure_text(content, ref.get("format"), ref.get("filename"))
        filename = ref.get("filename")
        label = str(ref.get("name") or (Path(str(filename)).stem if filename else "inline"))
    elif source == "path":
        path = Path(str(ref.get("path", ""))).expanduser()
        atoms = read_structure_file(path, ref.get("format"))
        label = str(ref.get("name") or path.stem)
    elif source == "upload":
        atoms, label = _load_upload(str(ref.get("file_id", "")), spool_root)
    else:
        raise ValidationError(f"unknown structure source {source!r}", field="structure.source")
    atoms.info["name"] = label
    return atoms, label


def validate_atoms(
    atoms: Atoms,
    *,
    require_periodic: bool = True,
    min_distance: float = 0.5,
    max_atoms: int = 20000,
    allowed_elements: set[str] | None = None,
) -> None:
    """Refuse structures no calculation should start on, saying exactly why."""
    import numpy as np

    n = len(atoms)
    if n == 0:
        raise InvalidStructure("structure has no atoms", field="structure")
    if n > max_atoms:
        raise InvalidStructure(f"structure has {n} atoms, limit {max_atoms}", field="structure")
    if (atoms.numbers <= 0).any():
        raise InvalidStructure("structure contains atoms of unknown element", field="structure")
    if not np.isfinite(atoms.positions).all():
        bad = int(np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))[0])
        raise InvalidStructure(f"atom {bad} has a non-finite position", field="structure")
    if allowed_elements is not None:
        missing = sorted(set(atoms.get_chemical_symbols()) - set(allowed_elements))
        if missing:
            raise InvalidStructure(
                f"elements not supported by the model: {', '.join(missing)}", field="structure"
            )
    if require_periodic:
        _check_cell(atoms)
    if min_distance > 0:
        _check_distances(atoms, min_distance)


def atoms_to_text(atoms: Atoms, fmt: str) -> str:
    """Serialise to cif, xyz (no cell), extxyz (cell kept) or poscar."""
    from ase import Atoms as AseAtoms
    from ase.io import write

    canonical = normalize_format(fmt)
    if canonical is None:
        raise UnsupportedFormat("an output format is required", field="format")
    # A bare copy: parser leftovers in info/arrays (spacegroup objects, occupancies)
    # do not survive every writer.
    clean = AseAtoms(
        numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
    if canonical == "cif":
        buffer = io.BytesIO()
        write(buffer, clean, format="cif")
        return buffer.getvalue().decode()
    out = io.StringIO()
    if canonical == "poscar":
        write(out, clean, format="vasp", direct=True)
    else:
        write(out, clean, format=canonical)
    return out.getvalue()


def structure_summary(atoms: Atoms) -> dict[str, Any]:
    """Plain-JSON description: composition, cell, volume and density."""
    from collections import Counter

    symbols = atoms.get_chemical_symbols()
    mass = float(atoms.get_masses().sum())
    periodic = bool(atoms.pbc.all()) and atoms.cell.rank == 3
    summary: dict[str, Any] = {
        "formula": atoms.get_chemical_formula(mode="hill"),
        "natoms": len(atoms),
        "elements": sorted(set(symbols)),
        "composition": dict(sorted(Counter(symbols).items())),
        "mass": mass,
        "pbc": [bool(x) for x in atoms.pbc],
        "cell": None,
        "lattice": None,
        "volume": None,
        "density": None,
    }
    if periodic:
        a, b, c, alpha, beta, gamma = (float(x) for x in atoms.cell.cellpar())
        volume = float(abs(atoms.cell.volume))
        summary.update(
            cell={"a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma},
            lattice=[[float(x) for x in row] for row in atoms.cell.array],
            volume=volume,
            density=mass * _AMU_PER_A3_TO_G_PER_CM3 / volume,
        )
    return summary


def _load_upload(file_id: str, spool_root: Path | None) -> tuple[Atoms, str]:
    if spool_root is None:
        raise StructureNotFound(f"uploaded structure {file_id!r}: no spool to look in")
    folder = upload_dir(spool_root, file_id)
    if not folder.is_dir():
        raise StructureNotFound(
            f"uploaded structure {file_id!r} not found", field="structure.file_id"
        )
    meta: dict[str, Any] = {}
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            loaded = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidStructure(f"uploaded structure {file_id!r}: unreadable meta.json") from exc
        meta = loaded if isinstance(loaded, dict) else {}
    files = sorted(p for p in folder.glob("structure.*") if p.is_file())
    if not files:
        raise StructureNotFound(
            f"uploaded structure {file_id!r} has no structure file", field="structure.file_id"
        )
    fmt = meta.get("format") or format_from_filename(files[0].name)
    atoms = read_structure_file(files[0], fmt)
    return atoms, str(meta.get("name") or file_id)


def _read(text: str, fmt: str) -> Atoms:
    from ase.io import read

    errors = []
    for ase_format in _ASE_READERS[fmt]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result: Any
                if ase_format == "cif":
                    result = _read_cif(text)
                else:
                    result = read(io.StringIO(text), index=-1, format=ase_format)
        except InvalidStructure:
            raise
        except Exception as exc:  # noqa: BLE001 - every parser failure means bad input
            errors.append(f"{type(exc).__name__}: {exc}" if str(exc) else "malformed or truncated")
            continue
        atoms: Atoms = result[-1] if isinstance(result, list) else result
        return atoms
    raise InvalidStructure(f"could not parse the {fmt} content ({errors[-1]})", field="structure")


def _read_cif(text: str) -> Atoms:
    """The last CIF block with atom sites.  P1 files (most MOF databases) skip ASE's
    symmetry expansion, which compares every site with every other one: minutes for
    a few thousand atoms, for nothing."""
    from ase.io.cif import parse_cif

    blocks = [
        b
        for b in parse_cif(io.BytesIO(text.encode("latin-1", errors="replace")))
        if b.has_structure()
    ]
    if not blocks:
        raise InvalidStructure(
            "the CIF has no atom sites (_atom_site_fract_x ...)", field="structure"
        )
    block = blocks[-1]
    if block.get_cell().rank == 3 and len(block.get_spacegroup(True).get_symop()) == 1:
        atoms = block.get_unsymmetrized_structure()
        atoms.pbc = True
        atoms.wrap()
        return atoms
    return block.get_atoms()


def _as_text(raw: str | bytes) -> str:
    if isinstance(raw, str):
        content = raw
    else:
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError:
            # Old CIFs are often Latin-1 (author names, angstrom signs).
            content = raw.decode("latin-1")
    controls = sum(1 for ch in content[:65536] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if "\x00" in content or controls > 0.01 * min(len(content), 65536):
        raise InvalidStructure("structure content is binary, not text", field="structure")
    return content


def _check_cell(atoms: Atoms) -> None:
    import numpy as np

    cell = np.asarray(atoms.cell.array, dtype=float)
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise InvalidStructure(
            "structure has no periodic cell; a framework needs one "
            "(CIF, POSCAR, or extxyz with a Lattice=)",
            field="structure",
        )
    if not np.isfinite(cell).all():
        raise InvalidStructure("cell contains non-finite numbers", field="structure")
    lengths = np.linalg.norm(cell, axis=1)
    volume = abs(float(np.linalg.det(cell)))
    # Normalised volume ~0 means (nearly) coplanar cell vectors.
    if lengths.min() < 1.0 or volume < 1e-3 * float(np.prod(lengths)):
        raise InvalidStructure(
            f"cell is degenerate (lengths {', '.join(f'{x:.3g}' for x in lengths)} A, "
            f"volume {volume:.3g} A^3)",
            field="structure",
        )


def _check_distances(atoms: Atoms, min_distance: float) -> None:
    import numpy as np

    from executors.close_pairs import close_pairs

    i, j, d = close_pairs(atoms, min_distance)
    if len(d) == 0:
        return
    k = int(np.argmin(d))
    a, b = int(i[k]), int(j[k])
    symbols = atoms.get_chemical_symbols()
    other = "its own periodic image" if a == b else f"atom {b} ({symbols[b]})"
    pairs = max(1, len(d) // 2)
    raise InvalidStructure(
        f"atoms too close: atom {a} ({symbols[a]}) and {other} are {float(d[k]):.3f} A apart "
        f"(minimum {min_distance} A; {pairs} such pair(s)); overlapping or duplicated atoms?",
        field="structure",
    )


def _is_floats(line: str, count: int) -> bool:
    parts = line.split()
    if len(parts) < count:
        return False
    try:
        return all(math.isfinite(float(x)) for x in parts[:count])
    except ValueError:
        return False
