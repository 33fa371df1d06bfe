"""Validating a task submission, field by field, before anything is published.

The spec's body (5.2: ``task_type``, ``model``, ``structure {source, ...}``,
``parameters``, ``options``) and MIRA's flat body (``structure_id``, ``model_key`` and the
parameters at the top level) both become one ``Job``.  Checks run cheapest first: task
type, model, parameters, options, then the structure itself (parsed, and checked against
the task and the model).  Every error names the field at fault.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from spool.errors import MofsimError, ValidationError
from spool.job import Job, normalize_priority, normalize_structure
from spool.job import priority_name as _priority_name
from spool.limits import Limits
from spool.store import Spool

# Keys of a submission that are not physics parameters; every other top-level key of a
# flat (MIRA-style) body is a parameter.
OPTION_FIELDS = (
    "priority",
    "timeout",
    "notify_url",
    "notify_events",
    "notify_secret",
    "retry_times",
    "retry_interval_seconds",
)
META_FIELDS = ("name", "description", "tags")
ENVELOPE_FIELDS = frozenset(
    {
        "task_type",
        "model",
        "model_key",
        "structure",
        "structure_id",
        "parameters",
        "options",
        "task_id",
        *OPTION_FIELDS,
        *META_FIELDS,
    }
)
NOTIFY_EVENTS = (
    "task.started",
    "task.progress",
    "task.completed",
    "task.failed",
    "task.cancelled",
    "task.timeout",
)
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


def _structure_ref(body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
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


def _parameters(body: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """``parameters`` merged with the flat keys of a MIRA body; the flat keys' names."""
    given = body.get("parameters")
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValidationError("parameters must be an object", field="parameters")
    params = dict(given)
    flat = {str(k): v for k, v in body.items() if k not in ENVELOPE_FIELDS}
    for key, value in flat.items():
        if key in params and params[key] != value:
            raise ValidationError(
                f"{key} is given both at the top level and in parameters, with different values",
                field=key,
            )
        params[key] = value
    return params, set(flat) - set(given)


def _options(body: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    given = body.get("options")
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValidationError("options must be an object", field="options")
    options = dict(given)
    for key in (*OPTION_FIELDS, *META_FIELDS):
        if key in body and body[key] is not None:
            if key in options and options[key] != body[key]:
                raise ValidationError(
                    f"{key} is given both at the top level and in options, with different values",
                    field=key,
                )
            options[key] = body[key]
    return validate_options(options, limits)


def validate_options(options: dict[str, Any], limits: Limits | None = None) -> dict[str, Any]:
    """Spec 5.2 and 4.6 options, each checked against ``limits`` (the defaults when not
    given); unknown keys are refused."""
    from mofsim_core.webhook_targets import TargetPolicy

    limits = limits or Limits()
    allowed = set(OPTION_FIELDS) | set(META_FIELDS)
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        raise ValidationError(
            f"unknown option(s): {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}",
            field=f"options.{unknown[0]}",
        )
    out = {k: v for k, v in options.items() if v is not None}
    out["priority"] = _priority_name(normalize_priority(out.get("priority", "NORMAL")))
    if "timeout" in out:
        out["timeout"] = _number(out["timeout"], "options.timeout", low=0, exclusive=True)
        limits.check_timeout(out["timeout"])
    if "notify_url" in out:
        url = out["notify_url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or len(url) > 2048
        ):
            raise ValidationError(
                "notify_url must be an http:// or https:// URL", field="options.notify_url"
            )
        TargetPolicy.of(limits).check(url)
    if "notify_events" in out:
        events = out["notify_events"]
        if isinstance(events, str):
            events = [e.strip() for e in events.split(",") if e.strip()]
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ValidationError(
                "notify_events must be a list of event names", field="options.notify_events"
            )
        bad = [e for e in events if e not in NOTIFY_EVENTS]
        if bad:
            raise ValidationError(
                f"unknown notify event(s) {', '.join(bad)}; expected {', '.join(NOTIFY_EVENTS)}",
                field="options.notify_events",
            )
        out["notify_events"] = events
    if "notify_secret" in out and (
        not isinstance(out["notify_secret"], str) or len(out["notify_secret"]) > 512
    ):
        raise ValidationError(
            "notify_secret must be a string of at most 512 characters",
            field="options.notify_secret",
        )
    if "retry_times" in out:
        value = _number(out["retry_times"], "options.retry_times", low=0, high=20)
        if value != int(value):
            raise ValidationError("retry_times must be a whole number", field="options.retry_times")
        out["retry_times"] = int(value)
    if "retry_interval_seconds" in out:
        out["retry_interval_seconds"] = _number(
            out["retry_interval_seconds"], "options.retry_interval_seconds", low=0, high=86400
        )
    for key in ("name", "description"):
        if key in out and (not isinstance(out[key], str) or len(out[key]) > 1000):
            raise ValidationError(f"{key} must be a string", field=f"options.{key}")
    if "tags" in out and (
        not isinstance(out["tags"], list) or not all(isinstance(t, str) for t in out["tags"])
    ):
        raise ValidationError("tags must be a list of strings", field="options.tags")
    return out


def _number(
    value: Any,
    field: str,
    *,
    low: float | None = None,
    high: float | None = None,
    exclusive: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise ValidationError(f"{field.split('.')[-1]} must be a number", field=field)
    if low is not None and (value < low or (exclusive and value == low)):
        raise ValidationError(
            f"{field.split('.')[-1]} must be {'>' if exclusive else '>='} {low:g}", field=field
        )
    if high is not None and value > high:
        raise ValidationError(f"{field.split('.')[-1]} must be <= {high:g}", field=field)
    return float(value)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float: finite, but no limit admits it
        return False


def build_job(
    spool: Spool, body: Any, task_type: str | None = None, *, checks: StructureChecks | None = None
) -> Job:
    """Validate a submission (spec 5.2, or MIRA's flat body) and return the job to
    publish.  ``task_type`` is the one named by the URL, if any.  Raises the error of
    the first bad field, with ``field`` naming it."""
    from executors.models import check_usable, resolve_model
    from executors.registry import canonical_task_type, validate_parameters

    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", field="body")
    named = body.get("task_type")
    if task_type is None:
        if not isinstance(named, str) or not named:
            raise ValidationError("task_type is required", field="task_type")
        task_type = named
    task_type = canonical_task_type(task_type)
    if named is not None and (
        not isinstance(named, str) or canonical_task_type(named) != task_type
    ):
        raise ValidationError(
            f"task_type {named!r} contradicts the endpoint ({task_type})", field="task_type"
        )
    model = body.get("model")
    model_key = body.get("model_key")
    if model is not None and model_key is not None and model != model_key:
        raise ValidationError("give either model or model_key, not both", field="model_key")
    chosen = model if model is not None else model_key
    field = "model_key" if model is None and model_key is not None else "model"
    if not isinstance(chosen, str) or not chosen.strip():
        raise ValidationError(f"{field} is required (a model key, e.g. sevennet-0)", field=field)
    try:
        spec = resolve_model(chosen, spool.paths.models)
        check_usable(spec)
    except MofsimError as exc:
        exc.field = field
        raise
    if not spec.supports(task_type):
        raise ValidationError(f"model {spec.key} does not support {task_type}", field=field)
    params, flat = _parameters(body)
    try:
        normalized = validate_parameters(task_type, params)
        spool.limits.check_steps(normalized)
    except MofsimError as exc:
        key = (exc.field or "").removeprefix("parameters.")
        if key in flat:
            exc.field = key  # the client sent it at the top level
        raise
    options = _options(body, spool.limits)
    ref, from_id = _structure_ref(body)
    try:
        (checks or SHARED_CHECKS).check(spool, ref, task_type, spec, normalized)
    except MofsimError as exc:
        if from_id and exc.field in ("structure", "structure.file_id"):
            exc.field = "structure_id"
        elif (exc.field or "").removeprefix("parameters.") in flat:
            exc.field = (exc.field or "").removeprefix("parameters.")
        raise
    data: dict[str, Any] = {
        "task_type": task_type,
        "model": spec.key,
        "structure": ref,
        "parameters": params,
        "options": options,
    }
    if body.get("task_id") is not None:
        data["task_id"] = body["task_id"]
    from mofsim_core.estimates import estimate_reference

    data["estimate"] = estimate_reference(spool.root, ref, task_type, spec, normalized, "float32")
    return Job.from_dict(data)
