"""Request bodies, built the same way for the sync and the async client.

Structures: a ``builtin:NAME`` string and an uploaded id (``struct_...``) are sent as
references.  A local file path is sent inline (its text, with its file name so the
server can tell the format): one request, and nothing is left stored on the server; to
reuse one file for many tasks, ``upload_structure`` it once and pass the id.  An ASE
``Atoms`` object (recognized by its methods, so ase is imported only when one is
passed) is written to CIF text and sent inline the same way.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mofsim_client.errors import MOFSimError, ValidationError, error_from_code

# The server's task types and their aliases (the SDK imports nothing of the server's; a
# test keeps these equal to its registry).
TASK_TYPES = (
    "bulk-modulus",
    "heat-capacity",
    "interaction-energy",
    "optimization",
    "single-point-energy",
    "stability",
)
TASK_TYPE_ALIASES = {"single-point": "single-point-energy", "singlepoint": "single-point-energy"}
OPTION_KEYS = (
    "priority",
    "timeout",
    "expected_duration",
    "notify_url",
    "notify_events",
    "notify_secret",
    "retry_times",
    "retry_interval_seconds",
    "name",
    "description",
    "tags",
)
DEFAULT_MODEL = "sevennet-0"
UPLOAD_PREFIXES = ("struct_",)


def new_task_id() -> str:
    """Submissions carry an id made here: a retried submission that already reached the
    server is then recognized instead of queued twice."""
    return "task_" + uuid.uuid4().hex[:16]


def is_atoms(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("get_chemical_symbols", "get_positions", "cell"))


def atoms_to_cif(atoms: Any) -> str:
    import io

    from ase.io import write  # only reached when the caller handed us an Atoms object

    buf = io.BytesIO()  # ASE's CIF writer wants a binary stream (it writes latin-1)
    write(buf, atoms, format="cif")
    return buf.getvalue().decode("latin-1")


def read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # CIF files from old programs


def structure_ref(structure: Any, name: str | None = None) -> dict[str, Any]:
    """The task's ``structure`` object for any accepted form (see the module doc)."""
    if isinstance(structure, Mapping):
        return dict(structure)
    if is_atoms(structure):
        label = name or str(structure.info.get("name") or structure.get_chemical_formula())
        return {
            "source": "inline",
            "format": "cif",
            "content": atoms_to_cif(structure),
            "name": label,
        }
    if isinstance(structure, os.PathLike):
        return path_ref(Path(structure), name)
    if not isinstance(structure, str) or not structure.strip():
        raise ValidationError(
            "structure must be a file path, an ASE Atoms object, an "
            "uploaded structure id (struct_...) or 'builtin:NAME'",
            field="structure",
        )
    text = structure.strip()
    if "\n" in text:  # the text of a structure file: the server tells its format
        return {"source": "inline", "content": structure, "name": name or "inline"}
    if text.startswith("builtin:"):
        ref: dict[str, Any] = {"source": "builtin", "name": text.split(":", 1)[1]}
        return ref
    if text.startswith("upload:"):
        return {"source": "upload", "file_id": text.split(":", 1)[1]}
    path = Path(text).expanduser()
    if text.startswith(UPLOAD_PREFIXES) and not path.exists():
        return {"source": "upload", "file_id": text}
    return path_ref(path, name)


def path_ref(path: Path, name: str | None = None) -> dict[str, Any]:
    path = path.expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"structure file {str(path)!r} not found (for a built-in "
            "structure write 'builtin:NAME', for an uploaded one its "
            "id 'struct_...')"
        )
    return {
        "source": "inline",
        "content": read_text(path),
        "filename": path.name,
        "name": name or path.stem,
    }


def task_body(
    task_type: str,
    structure: Any,
    model: str | None,
    *,
    parameters: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    task_id: str | None = None,
    structure_name: str | None = None,
) -> dict[str, Any]:
    """A spec 5.2 submission."""
    body: dict[str, Any] = {
        "task_id": task_id or new_task_id(),
        "task_type": task_type,
        "model": model or DEFAULT_MODEL,
        "structure": structure_ref(structure, structure_name),
        "parameters": dict(parameters or {}),
    }
    opts = {k: v for k, v in (options or {}).items() if v is not None}
    if opts:
        body["options"] = opts
    return body


def batch_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """One task of ``submit_batch``: ``task_type``, ``structure``, optional ``model``,
    ``parameters``, ``options``, ``task_id``; option keys (``priority``, ``timeout``...)
    may also sit at the top level, and any other key is a parameter."""
    if not isinstance(item, Mapping):
        raise ValidationError("each batch item must be a dict", field="tasks")
    data = dict(item)
    task_type = data.pop("task_type", None) or data.pop("type", None)
    if not isinstance(task_type, str):
        raise ValidationError("each batch item needs a task_type", field="task_type")
    structure = data.pop("structure", None)
    if structure is None:
        raise ValidationError("each batch item needs a structure", field="structure")
    params = dict(data.pop("parameters", None) or {})
    options = dict(data.pop("options", None) or {})
    for key in OPTION_KEYS:
        if key in data:
            options[key] = data.pop(key)
    model = data.pop("model", None)
    task_id = data.pop("task_id", None)
    params.update(data)
    return task_body(
        normalize_task_type(task_type),
        structure,
        model,
        parameters=params,
        options=options,
        task_id=task_id,
    )


def normalize_task_type(name: str) -> str:
    """The canonical name; a name the SDK does not know is sent as it is (a newer
    server may have it)."""
    text = name.strip().lower().replace("_", "-")
    return TASK_TYPE_ALIASES.get(text, text)


def options_of(
    priority: str | int | None, timeout: float | None, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = dict(extra or {})
    if priority is not None:
        out["priority"] = priority
    if timeout is not None:
        out["timeout"] = timeout
    return out


def upload_parts(
    path_or_content: str | bytes | os.PathLike[str], name: str | None, fmt: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(files, form fields)`` of a structure upload.  A ``Path``, or a string naming
    an existing file, is read; any other string or bytes is the structure itself."""
    fields = {k: v for k, v in (("name", name), ("format", fmt)) if v}
    if isinstance(path_or_content, str) and "\n" in path_or_content:
        path_or_content = path_or_content.encode()
    if isinstance(path_or_content, bytes):
        return {"file": ((name or "structure") + _ext(fmt), path_or_content)}, fields
    path = Path(path_or_content).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"structure file {str(path)!r} not found")
    return {"file": (path.name, path.read_bytes())}, fields


def _ext(fmt: str | None) -> str:
    return {
        "cif": ".cif",
        "xyz": ".xyz",
        "extxyz": ".extxyz",
        "poscar": ".vasp",
        "vasp": ".vasp",
    }.get((fmt or "").lower(), "")


def model_upload_fields(
    name: str,
    framework: str,
    description: str | None,
    with_d3: bool | None,
    config: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
) -> dict[str, str]:
    """Spec 3.4's upload request as form fields beside the weights file."""
    fields: dict[str, str] = {"name": name, "framework": framework}
    if description is not None:
        fields["description"] = description
    if with_d3 is not None:
        fields["with_d3"] = "true" if with_d3 else "false"
    if config is not None:
        fields["config"] = json.dumps(dict(config))
    for key, value in extra.items():
        if value is not None:
            fields[key] = value if isinstance(value, str) else json.dumps(value)
    return fields


def is_duplicate_id(exc: Exception) -> bool:
    """The answer to a retried submission that the server had already taken."""
    return (
        isinstance(exc, ValidationError)
        and exc.field == "task_id"
        and "already exists" in str(exc.detail or exc.message)
    )


# --- answers ----------------------------------------------------------------------------------


def page_of(data: Any) -> tuple[list[Any], int | None]:
    """``(items, total_pages)`` of a list answer (``{items, pagination}`` or a bare list)."""
    if isinstance(data, list):
        return data, None
    if not isinstance(data, dict):
        return [], None
    items = data.get("items")
    raw = data.get("pagination")
    pages = raw.get("total_pages") if isinstance(raw, dict) else None
    return (items if isinstance(items, list) else []), (pages if isinstance(pages, int) else None)


def list_of(data: Any, *keys: str) -> list[Any]:
    """The list in an answer that is a list, ``{items: [...]}`` or ``{<key>: [...]}``."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("items", *keys):
            if isinstance(data.get(key), list):
                return list(data[key])
    return []


def health_of(body: Any) -> dict[str, Any]:
    """``GET /api/v1/health``: the envelope's data, with the top-level ``status``."""
    if not isinstance(body, dict):
        return {"status": str(body)}
    data = body.get("data")
    out = dict(data) if isinstance(data, dict) and "success" in body else dict(body)
    if "status" in body and "status" not in out:
        out["status"] = body["status"]
    return out


def list_params(
    status: str | list[str] | None, task_type: str | None, model: str | None
) -> dict[str, str]:
    params: dict[str, str] = {}
    if status:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    if task_type:
        params["task_type"] = normalize_task_type(task_type)
    if model:
        params["model"] = model
    return params


def batch_error(entry: dict[str, Any], items: list[dict[str, Any]]) -> MOFSimError:
    """The error of an item a batch submission refused, naming the item's task id."""
    error = entry.get("error") or {}
    index = entry.get("index")
    task_id = items[index]["task_id"] if isinstance(index, int) else None
    return error_from_code(
        error.get("code"),
        str(error.get("message") or "rejected"),
        field=error.get("field"),
        error_type=error.get("type"),
        task_id=task_id,
    )
