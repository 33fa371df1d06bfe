"""A submission's structure: the reference read from the body, and the remembered
verdicts on it.

A reference is ``{"source": "upload"|"builtin"|"inline", ...}`` or MIRA's
``structure_id``; a path on the server (``"source": "path"``) is refused.  Parsing the structure and
checking it against the task and the model is the costly part of a submission, so
``StructureChecks`` keeps each verdict, keyed by all it depends on.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from spool.errors import MofsimError, ValidationError
from spool.job import normalize_structure
from spool.store import Spool

HTTP_SOURCES = ("upload", "builtin", "inline")
_STRUCTURE_KEYS = {"source", "file_id", "name", "primitive", "content", "format", "filename"}


class StructureChecks:
    """Remembers structure verdicts: parsing a structure and searching it for
    overlapping atoms is most of what a submission costs, and users send the same
    structure again and again (a batch of 1000 tasks on one upload; MIRA clients
    upload once and submit by ``structure_id``).

    A verdict is keyed by everything it depends on: the reference (inline content
    included), the task and its parameters, the model's elements and, for an upload,
    the identity of its folder on disk, so a deleted upload is never taken as valid.
    At most ``max_entries`` are kept, least recently used first out."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[str, MofsimError | None] = OrderedDict()
        self._lock = threading.Lock()

    def check(
        self,
        spool: Spool,
        ref: dict[str, Any],
        task_type: str,
        spec: Any,
        params: dict[str, Any] | None = None,
    ) -> None:
        from executors.structure_checks import allowed_elements

        allowed = allowed_elements(spec)
        stamp = _upload_stamp(spool, ref)
        if stamp is None and ref.get("source") == "upload":
            _check_structure(spool, ref, task_type, spec, params)  # gone: say so, uncached
            return
        max_atoms = spool.limits.max_atoms
        key = hashlib.sha256(
            json.dumps(
                [ref, stamp, sorted(allowed or []), task_type, params, max_atoms],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        with self._lock:
            known = key in self._seen
            if known:
                self._seen.move_to_end(key)
                err = self._seen[key]
        if not known:
            try:
                _check_structure(spool, ref, task_type, spec, params)
                err = None
            except MofsimError as exc:
                err = exc
            with self._lock:
                self._seen[key] = err
                while len(self._seen) > self.max_entries:
                    self._seen.popitem(last=False)
        if err is not None:
            raise type(err)(err.message, field=err.field, detail=err.detail)


# One for the whole process: verdicts are pure functions of their keys.
SHARED_CHECKS = StructureChecks()


def _upload_stamp(spool: Spool, ref: dict[str, Any]) -> list[int] | None:
    """The upload folder's inode and change time; None when absent or not an upload."""
    if ref.get("source") != "upload":
        return None
    from executors.structure_io import upload_dir

    try:
        st = upload_dir(spool.root, str(ref.get("file_id", ""))).stat()
    except (OSError, MofsimError):
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _check_structure(
    spool: Spool,
    ref: dict[str, Any],
    task_type: str,
    spec: Any,
    params: dict[str, Any] | None = None,
) -> None:
    from executors.structure_checks import check_for_task
    from executors.structure_io import load_structure

    try:
        atoms, _ = load_structure(ref, spool.root)
        check_for_task(atoms, task_type, spec, params, spool.limits)
    except MofsimError as exc:
        if exc.field is None or exc.field == "format":
            exc.field = "structure" if exc.field is None else "structure.format"
        raise


def structure_ref(body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The normalized reference and whether it came from MIRA's ``structure_id``."""
    value = body.get("structure")
    from_id = value is None and "structure_id" in body
    if value is not None and body.get("structure_id") is not None:
        raise ValidationError(
            "give either structure or structure_id, not both", field="structure_id"
        )
    if from_id:
        sid = body["structure_id"]
        if not isinstance(sid, str) or not sid:
            raise ValidationError("structure_id must be a non-empty string", field="structure_id")
        value = {"source": "upload", "file_id": sid}
    if value is None:
        raise ValidationError(
            'structure is required: {"source": "upload", "file_id": '
            '...}, {"source": "builtin", "name": ...} or {"source": '
            '"inline", "format": ..., "content": ...}',
            field="structure",
        )
    if isinstance(value, dict) and (
        value.get("source") == "path" or ("path" in value and "source" not in value)
    ):
        value = "path"  # refused below, with the reason
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k not in _STRUCTURE_KEYS)
        if unknown:
            raise ValidationError(
                f"unknown structure field(s): {', '.join(unknown)}", field=f"structure.{unknown[0]}"
            )
        for key in ("name", "format", "filename", "file_id"):
            if key in value and value[key] is not None and not isinstance(value[key], str):
                raise ValidationError(f"structure.{key} must be a string", field=f"structure.{key}")
        if "primitive" in value and not isinstance(value["primitive"], bool):
            raise ValidationError(
                "structure.primitive must be true or false", field="structure.primitive"
            )
    ref = normalize_structure(value)
    if ref["source"] not in HTTP_SOURCES:
        raise ValidationError(
            "structure source 'path' reads the server's own files and is not accepted over "
            "HTTP; upload the file (POST /api/v1/structures) or send it inline",
            field="structure.source",
        )
    return ref, from_id


def with_upload_name(spool: Spool, ref: dict[str, Any]) -> dict[str, Any]:
    """An upload reference carrying the upload's name, so the task shows that name from
    its submission on (the executor reports the same name once it runs), not the id."""
    if ref.get("source") != "upload" or ref.get("name"):
        return ref
    from executors.structure_io import upload_dir

    try:
        folder = upload_dir(spool.root, str(ref.get("file_id")))
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError, MofsimError):
        return ref
    name = meta.get("name") if isinstance(meta, dict) else None
    return {**ref, "name": name} if isinstance(name, str) and name else ref
