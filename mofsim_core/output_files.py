"""A task's output files: opaque file ids, their URLs, and the files behind them.

A file id is ``<task_id>~<name>`` where ``name`` is a path relative to the task's
workspace, its components joined by ``~`` (task ids and our file names never contain
``~``).  It is not a path from the client: a download is served only when the name is
listed in the task's ``result.json`` under ``output_files`` (or is the task's event log
or result document), and only when the resolved file lies inside the workspace.

``file_url(task_id, name)`` turns an ``output_files`` entry into the URL a result
carries (spec 5.3: ``"optimized_structure": "/api/v1/files/..."``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from spool.errors import FileNotFound, ResultNotReady, TaskNotFound
from spool.layout import is_safe_token
from spool.states import TERMINAL_DIRS
from spool.store import Spool

# The spec's dialect: where a result's file URLs point.
API_PREFIX = "/api/v1"
SEPARATOR = "~"
# Files of every task that the API exposes anyway, besides its output_files.
WORKSPACE_FILES = {"log": "events.jsonl", "result": "result.json"}
CONTENT_TYPES = {
    ".cif": "chemical/x-cif",
    ".xyz": "chemical/x-xyz",
    ".extxyz": "chemical/x-xyz",
    ".traj": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".vasp": "text/plain",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".yaml": "application/yaml",
}
# MIRA's /results/{id}/download/{structure|trajectory|log}: output_files keys to try.
KIND_KEYS = {
    "structure": (
        "optimized_structure",
        "final_structure",
        "relaxed_structure",
        "complex_structure",
        "structure",
    ),
    "trajectory": ("trajectory",),
    "plot": ("plot",),
}


@dataclass(frozen=True)
class OutputFile:
    task_id: str
    name: str  # relative to the workspace, '/'-separated
    path: Path
    content_type: str

    @property
    def download_name(self) -> str:
        return f"{self.task_id}_{PurePosixPath(self.name).name}"


def content_type_for(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    if PurePosixPath(name).name.upper().startswith(("POSCAR", "CONTCAR")):
        return "text/plain"
    return "application/octet-stream"


def _clean_name(name: str) -> str | None:
    """A relative, '/'-separated name whose every part is a safe token, else None."""
    if not isinstance(name, str) or not name or name.startswith("/"):
        return None
    parts = name.replace("\\", "/").split("/")
    if not all(is_safe_token(p) and SEPARATOR not in p for p in parts):
        return None
    return "/".join(parts)


def file_id(task_id: str, name: str) -> str:
    """The opaque id of a task's output file (``name`` relative to its workspace)."""
    clean = _clean_name(name)
    if clean is None or not is_safe_token(task_id):
        raise FileNotFound(f"no downloadable file {name!r} of task {task_id!r}")
    return task_id + SEPARATOR + clean.replace("/", SEPARATOR)


def file_url(task_id: str, name: str, prefix: str = API_PREFIX) -> str:
    """``/api/v1/files/<id>`` for a task's output file."""
    return f"{prefix}/files/{file_id(task_id, name)}"


def output_file_urls(task_id: str, output_files: Any, prefix: str = API_PREFIX) -> dict[str, str]:
    """A result's ``output_files`` mapping (key -> relative name) with URLs as values;
    entries that are not downloadable names are left out."""
    out: dict[str, str] = {}
    if isinstance(output_files, dict):
        for key, name in output_files.items():
            if isinstance(name, str) and _clean_name(name) is not None:
                out[str(key)] = file_url(task_id, name, prefix)
    return out


def parse_file_id(fid: str) -> tuple[str, str]:
    parts = fid.split(SEPARATOR) if isinstance(fid, str) else []
    if len(parts) < 2 or not is_safe_token(parts[0]):
        raise FileNotFound(f"file {fid!r} not found", field="file_id")
    name = _clean_name("/".join(parts[1:]))
    if name is None:
        raise FileNotFound(f"file {fid!r} not found", field="file_id")
    return parts[0], name


def output_files(spool: Spool, task_id: str) -> dict[str, str]:
    """The task's ``output_files`` (key -> relative name).  TaskNotFound for an unknown
    task, ResultNotReady while it has not finished, {} for a finished task without
    outputs (failed, cancelled, or a type that writes none)."""
    loc = spool.locate(task_id)
    if loc is None:
        raise TaskNotFound(f"task {task_id} not found", field="task_id")
    try:
        doc = json.loads(spool.paths.result_file(task_id).read_text())
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        if loc.state not in TERMINAL_DIRS:
            raise ResultNotReady(f"task {task_id} is {loc.state}; its files are not ready")
        return {}
    result = doc.get("result") if isinstance(doc.get("result"), dict) else doc
    files = result.get("output_files") if isinstance(result, dict) else None
    if not isinstance(files, dict):
        return {}
    return {str(k): v for k, v in files.items() if isinstance(v, str)}


def _serve(spool: Spool, task_id: str, name: str) -> OutputFile:
    missing = FileNotFound(f"file {name!r} of task {task_id} not found", field="file_id")
    # The workspace itself must be a directory of tasks/, not a link to anywhere else.
    workspace = spool.paths.tasks.resolve() / task_id
    if workspace.is_symlink() or not workspace.is_dir():
        raise missing
    path = (workspace / name).resolve()
    if workspace not in path.parents or not path.is_file():
        raise missing
    return OutputFile(task_id, name, path, content_type_for(name))


def resolve_file(spool: Spool, fid: str) -> OutputFile:
    """The file behind a file id; FileNotFound unless the task lists it."""
    task_id, name = parse_file_id(fid)
    if name in WORKSPACE_FILES.values():
        if spool.locate(task_id) is None:
            raise FileNotFound(f"file {fid!r} not found", field="file_id")
        return _serve(spool, task_id, name)
    allowed = {n for n in (_clean_name(v) for v in output_files(spool, task_id).values()) if n}
    if name not in allowed:
        raise FileNotFound(f"file {name!r} is not an output of task {task_id}", field="file_id")
    return _serve(spool, task_id, name)


def find_output(spool: Spool, task_id: str, kind: str) -> OutputFile:
    """A task's file by kind: ``structure``, ``trajectory``, ``plot``, ``log`` (the
    event log) or ``result``; or any key of its ``output_files``."""
    if not is_safe_token(task_id):
        raise TaskNotFound(f"task {task_id!r} not found", field="task_id")
    if kind in WORKSPACE_FILES:
        if spool.locate(task_id) is None:
            raise TaskNotFound(f"task {task_id} not found", field="task_id")
        return _serve(spool, task_id, WORKSPACE_FILES[kind])
    files = output_files(spool, task_id)
    for key in KIND_KEYS.get(kind, (kind,)):
        name = _clean_name(files.get(key, ""))
        if name:
            return _serve(spool, task_id, name)
    raise FileNotFound(f"task {task_id} has no {kind} file", field="file_type")
