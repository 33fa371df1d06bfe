"""Uploaded structures: accept, store, list, describe and preview them.

Core functions shared by both API dialects; no aiohttp here.  An upload is parsed and
checked (``executors.structure_io``: a periodic cell, no overlapping atoms) before it is
accepted, then kept as ``<spool>/structures/<file_id>/structure.<ext>`` plus
``meta.json``, both written atomically.  File ids are generated (``struct_<hex>``);
the client's file name is sanitized and stored for display only, never used as a path.
Parsing is CPU work: the HTTP layer calls these functions in a worker thread.
Each upload records the API key that made it (``owner``, see ``mofsim_core.owners``);
lists and lookups take the ``Caller`` and show a user key its own uploads only.
Deleting an upload, and the tasks that use it, is ``mofsim_core.structure_deletion``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import unicodedata
import uuid
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from mofsim_core.owners import OWNER, Caller, check_structure
from spool.errors import InvalidStructure, PayloadTooLarge, StructureNotFound, UnsupportedFormat
from spool.events import iso_from_ms
from spool.store import Spool
from spool.transitions import atomic_write

# Symmetry tolerance (A) for the reported space group: CIFs give coordinates to 3-4
# decimals, so a tighter one calls a cubic framework triclinic; 0.01 A is the usual
# choice for experimental structures (pymatgen's default too).
SYMPREC = 1e-2

FILE_ID_PREFIX = "struct_"
_FILE_ID_RE = re.compile(r"^struct_[0-9a-f]{16}\Z")
# Stored extension per canonical format; each maps back through format_from_filename.
EXTENSIONS = {"cif": "cif", "xyz": "xyz", "extxyz": "extxyz", "poscar": "vasp"}
PREVIEW_HEAD_LINES = 20
MAX_NAME_CHARS = 200


def new_file_id() -> str:
    return FILE_ID_PREFIX + uuid.uuid4().hex[:16]


def sanitize_filename(filename: str | None) -> str | None:
    """The last component of a client's file name, printable, at most 255 chars; for
    display and format detection only (``../../etc/passwd`` -> ``passwd``)."""
    if not filename:
        return None
    # Clients percent-encode names in Content-Disposition; decode before cutting.
    text = unicodedata.normalize("NFC", unquote(str(filename))).replace("\\", "/")
    base = text.rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
    return base[:255] or None


def sanitize_name(name: str | None, fallback: str) -> str:
    text = "".join(ch for ch in str(name or "") if ch.isprintable()).strip()
    return text[:MAX_NAME_CHARS] or fallback


def check_file_id(file_id: str) -> str:
    if not isinstance(file_id, str) or not _FILE_ID_RE.match(file_id):
        raise StructureNotFound(f"structure {file_id!r} not found", field="structure_id")
    return file_id


def parse_upload(content: bytes | str, fmt: str | None, filename: str | None) -> tuple[Any, str]:
    """Parse and check an upload; returns ``(atoms, canonical format)``.

    A file name with an extension that is not a structure format (``.pdb``, ``.exe``) is
    refused as an unsupported format unless ``fmt`` says what the content is."""
    from executors.structure_io import (
        detect_format,
        format_from_filename,
        normalize_format,
        parse_structure_text,
        validate_atoms,
    )

    canonical = normalize_format(fmt)
    if canonical is None and filename:
        canonical = format_from_filename(filename)
        if canonical is None and Path(filename).suffix:
            raise UnsupportedFormat(
                f"unsupported file type {Path(filename).suffix!r}; upload cif, xyz, extxyz "
                "or POSCAR/.vasp files, or say the format",
                field="file",
            )
    atoms = parse_structure_text(content, canonical, filename)
    if canonical is None:
        text = content if isinstance(content, str) else content.decode("latin-1")
        canonical = detect_format(text) or "extxyz"
    validate_atoms(atoms, require_periodic=True)
    return atoms, canonical


def describe_atoms(atoms: Any) -> dict[str, Any]:
    """``structure_summary`` plus the space group when spglib is installed."""
    from executors.structure_io import structure_summary

    summary = structure_summary(atoms)
    try:
        import spglib

        cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its error-handling notice
            summary["spacegroup"] = spglib.get_spacegroup(cell, symprec=SYMPREC)
    except Exception:  # noqa: BLE001 - optional extra: absent package or odd cell
        summary["spacegroup"] = None
    return summary


def store_structure(
    spool: Spool,
    content: bytes | str,
    *,
    name: str | None = None,
    fmt: str | None = None,
    filename: str | None = None,
    max_bytes: int | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Validate and keep an upload, owned by the key ``owner``; returns its
    ``meta.json`` document."""
    raw = content.encode() if isinstance(content, str) else bytes(content)
    if max_bytes is not None and len(raw) > max_bytes:
        raise PayloadTooLarge(f"structure is {len(raw)} bytes, over the {max_bytes} limit")
    if not raw.strip():
        raise InvalidStructure("structure content is empty", field="content")
    safe_filename = sanitize_filename(filename)
    atoms, canonical = parse_upload(raw, fmt, safe_filename)
    file_id = new_file_id()
    default_name = Path(safe_filename).stem if safe_filename else file_id
    created_ms = int(time.time() * 1000)
    stored_as = f"structure.{EXTENSIONS[canonical]}"
    meta = {
        "file_id": file_id,
        "name": sanitize_name(name, default_name),
        "format": canonical,
        "filename": safe_filename,
        "stored_as": stored_as,
        "size_bytes": len(raw),
        "created_at": iso_from_ms(created_ms),
        "created_ms": created_ms,
        "summary": describe_atoms(atoms),
        "owner": owner,
    }
    folder = spool.paths.structures / file_id
    folder.mkdir(parents=True)
    atomic_write(spool.paths, folder / stored_as, raw)
    atomic_write(spool.paths, folder / "meta.json", json.dumps(meta, indent=2))
    return meta


def structure_view(meta: dict[str, Any]) -> dict[str, Any]:
    """The flat description both dialects start from."""
    summary = meta.get("summary") or {}
    return {
        "file_id": meta["file_id"],
        "name": meta.get("name"),
        "format": meta.get("format"),
        "filename": meta.get("filename"),
        "size_bytes": meta.get("size_bytes"),
        "created_at": meta.get("created_at"),
        "formula": summary.get("formula"),
        "natoms": summary.get("natoms"),
        "elements": summary.get("elements"),
        "volume": summary.get("volume"),
        "density": summary.get("density"),
        "cell": summary.get("cell"),
        "spacegroup": summary.get("spacegroup"),
        "summary": summary,
    }


class StructureIndex:
    """Upload metadata, cached in memory: meta files never change after creation, so
    a listing re-reads only new folders (one ``listdir`` per call)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._metas: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def refresh(self) -> list[dict[str, Any]]:
        root = self.spool.paths.structures
        try:
            names = {n for n in os.listdir(root) if _FILE_ID_RE.match(n)}
        except FileNotFoundError:
            names = set()
        with self._lock:
            for gone in set(self._metas) - names:
                del self._metas[gone]
            for fid in names - set(self._metas):
                meta = _read_meta(root / fid)
                if meta is not None:
                    self._metas[fid] = meta
            metas = list(self._metas.values())
        metas.sort(key=lambda m: (m.get("created_ms") or 0, m["file_id"]), reverse=True)
        return metas

    def visible(self, caller: Caller = OWNER) -> list[dict[str, Any]]:
        """The meta documents the caller may see, newest first."""
        metas = self.refresh()
        return metas if caller.admin else [m for m in metas if caller.may_see(m.get("owner"))]

    def list(
        self, offset: int = 0, limit: int = 100, caller: Caller = OWNER
    ) -> tuple[list[dict[str, Any]], int]:
        """Newest first: one page of views and the total."""
        metas = self.visible(caller)
        return [structure_view(m) for m in metas[offset : offset + limit]], len(metas)

    def get(self, file_id: str, caller: Caller = OWNER) -> dict[str, Any]:
        """The meta document of one upload the caller may see; StructureNotFound
        otherwise."""
        check_file_id(file_id)
        with self._lock:
            meta = self._metas.get(file_id)
        if meta is None or not (self.spool.paths.structures / file_id).is_dir():
            meta = _read_meta(self.spool.paths.structures / file_id)
            if meta is None:
                raise StructureNotFound(f"structure {file_id!r} not found", field="structure_id")
            with self._lock:
                self._metas[file_id] = meta
        return check_structure(caller, meta)

    def forget(self, file_id: str) -> None:
        with self._lock:
            self._metas.pop(file_id, None)


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("file_id") != folder.name:
        return None
    return meta


def structure_file(spool: Spool, meta: dict[str, Any]) -> Path:
    folder = spool.paths.structures / str(meta["file_id"])
    stored = str(meta.get("stored_as") or "")
    if stored and Path(stored).name == stored and (folder / stored).is_file():
        return folder / stored
    files = sorted(folder.glob("structure.*"))
    if not files:
        raise StructureNotFound(f"structure {meta['file_id']!r} has no file")
    return files[0]


def preview_structure(
    spool: Spool, meta: dict[str, Any], max_atoms: int | None = None
) -> dict[str, Any]:
    """Atoms and cell for a viewer (the MIRA preview: symbols, positions, cell, pbc),
    plus the first lines of the stored file.  ``max_atoms`` truncates the atom lists."""
    from executors.structure_io import read_structure_file

    path = structure_file(spool, meta)
    atoms = read_structure_file(path, meta.get("format"))
    n = len(atoms)
    keep = n if max_atoms is None else max(0, min(n, max_atoms))
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = [line.rstrip("\n") for _, line in zip(range(PREVIEW_HEAD_LINES), fh, strict=False)]
    return {
        "file_id": meta["file_id"],
        "name": meta.get("name"),
        "format": meta.get("format"),
        "natoms": n,
        "truncated": keep < n,
        "symbols": atoms.get_chemical_symbols()[:keep],
        "positions": [[float(x) for x in row] for row in atoms.positions[:keep]],
        "cell": [[float(x) for x in row] for row in atoms.cell.array],
        "pbc": [bool(x) for x in atoms.pbc],
        "head": head,
    }


def builtin_structures() -> list[dict[str, Any]]:
    """The built-in frameworks (``executors.builtin_structures.builtin_info``), each
    with the reference a task uses: ``{"source": "builtin", "name": ...}``."""
    from executors.builtin_structures import builtin_info

    out = []
    for info in builtin_info():
        out.append({**info, "structure": {"source": "builtin", "name": info["name"]}})
    return out
