"""The job file: the spec's task submission request (seed 5.2) plus spool bookkeeping.

A job is immutable once published.  ``from_dict`` ignores unknown keys and fills
defaults so that hand-written files and files from older versions still load.  Its task
type is checked for form only: which task types exist, and their aliases, is the
executors' registry's to say, and whoever builds or admits a job asks it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from spool import jsonsafe
from spool.errors import InvalidJobFile, ValidationError

SCHEMA_VERSION = 1

# A task type's name as a protocol token: which names exist is the executors' business
# (``executors.registry``); the spool only insists on the form.
_TASK_TYPE_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
MAX_TASK_TYPE_LEN = 64

PRIORITIES = {"CRITICAL": 0, "HIGH": 1, "NORMAL": 2, "LOW": 3}
PRIORITY_DIRS = {0: "0-critical", 1: "1-high", 2: "2-normal", 3: "3-low"}

STRUCTURE_SOURCES = ("builtin", "upload", "inline", "path")
_TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# A request id as a client may choose it (X-Request-ID): a token, no spaces or quotes.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/+=-]{0,127}")


def safe_request_id(value: Any) -> str | None:
    """``value`` when it may serve as a request id, else None."""
    if isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value):
        return value
    return None


def new_task_id() -> str:
    return "task_" + uuid.uuid4().hex[:16]


def now_ms() -> int:
    return int(time.time() * 1000)


_last_created_ms = 0


def next_created_ms() -> int:
    """Strictly increasing within a process: queue names sort FIFO even for jobs
    submitted within the same millisecond."""
    global _last_created_ms
    _last_created_ms = max(now_ms(), _last_created_ms + 1)
    return _last_created_ms


def task_type_token(name: str) -> str:
    """``name`` in the canonical form of a task type name (lowercase, ``-`` for ``_``),
    without checking that such a task type exists."""
    token = name.strip().lower().replace("_", "-")
    if len(token) > MAX_TASK_TYPE_LEN or not _TASK_TYPE_RE.fullmatch(token):
        raise ValidationError(
            f"invalid task type {name!r}: lowercase letters, digits and hyphens expected",
            field="task_type",
        )
    return token


def normalize_priority(value: Any) -> int:
    """Accept the names (any case) or the numbers 0-3 of seed 4.5."""
    if isinstance(value, bool):
        raise ValidationError(f"invalid priority {value!r}", field="options.priority")
    if isinstance(value, int) and value in PRIORITY_DIRS:
        return value
    if isinstance(value, str):
        if value.upper() in PRIORITIES:
            return PRIORITIES[value.upper()]
        if value.isdigit() and int(value) in PRIORITY_DIRS:
            return int(value)
    raise ValidationError(
        f"invalid priority {value!r}; expected CRITICAL, HIGH, NORMAL or LOW",
        field="options.priority",
    )


def priority_name(level: int) -> str:
    return {v: k for k, v in PRIORITIES.items()}[level]


def normalize_structure(value: Any) -> dict[str, Any]:
    """A structure reference: a dict with ``source``, or the shorthand strings
    ``builtin:NAME`` and a filesystem path."""
    if isinstance(value, str):
        # Checked as the object it stands for, so that writing the job out and reading
        # it back gives the same answer ("builtin:" with no name is refused both times).
        if value.startswith("builtin:"):
            return normalize_structure({"source": "builtin", "name": value.split(":", 1)[1]})
        if value.startswith("upload:"):
            return normalize_structure({"source": "upload", "file_id": value.split(":", 1)[1]})
        return normalize_structure({"source": "path", "path": value})
    if not isinstance(value, dict):
        raise ValidationError("structure must be an object or a string", field="structure")
    source = value.get("source")
    if source is None:
        # Be liberal: infer the source from the keys present.
        if "file_id" in value:
            source = "upload"
        elif "content" in value:
            source = "inline"
        elif "name" in value:
            source = "builtin"
        elif "path" in value:
            source = "path"
    if source not in STRUCTURE_SOURCES:
        raise ValidationError(
            f"structure.source must be one of {', '.join(STRUCTURE_SOURCES)}",
            field="structure.source",
        )
    required = {"builtin": "name", "upload": "file_id", "inline": "content", "path": "path"}
    key = required[source]
    if not isinstance(value.get(key), str) or not value[key]:
        raise ValidationError(
            f"structure.{key} is required for source {source!r}", field=f"structure.{key}"
        )
    out = dict(value)
    out["source"] = source
    return out


@dataclass(frozen=True)
class Job:
    task_type: str
    model: str
    structure: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    task_id: str = field(default_factory=new_task_id)
    created_at: int = field(default_factory=next_created_ms)  # epoch milliseconds
    attempts: int = 0
    schema_version: int = SCHEMA_VERSION
    # The id of the API key that submitted the job; None without one (the CLI, an API
    # without keys, a file dropped into incoming/).
    owner: str | None = None
    # What the job was estimated to cost when submitted (memory, duration, force calls;
    # ``mofsim_core.estimates``); None without a cost model for its model and device.
    estimate: dict[str, Any] | None = None
    # The X-Request-ID of the API request that submitted the job (a batch's, for each of
    # its tasks); None from the CLI or a dropped file.
    request_id: str | None = None

    @property
    def priority(self) -> int:
        return normalize_priority(self.options.get("priority", "NORMAL"))

    @property
    def timeout(self) -> float | None:
        value = self.options.get("timeout")
        return float(value) if value is not None else None

    @property
    def file_name(self) -> str:
        """Names sort in FIFO order within a priority directory."""
        return f"{self.created_at:013d}-{self.task_id}.json"

    def with_attempts(self, attempts: int) -> Job:
        return replace(self, attempts=attempts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """Validate and normalize; unknown keys are ignored, missing ones defaulted."""
        if not isinstance(data, dict):
            raise InvalidJobFile("job must be a JSON object")
        # MIRA field names are accepted too.
        task_type = data.get("task_type")
        model = data.get("model", data.get("model_key"))
        structure = data.get("structure")
        if structure is None and "structure_id" in data:
            structure = {"source": "upload", "file_id": data["structure_id"]}
        if not isinstance(task_type, str):
            raise ValidationError("task_type is required", field="task_type")
        if not isinstance(model, str) or not model:
            raise ValidationError("model is required", field="model")
        if structure is None:
            raise ValidationError("structure is required", field="structure")
        parameters = data.get("parameters") or {}
        options = data.get("options") or {}
        if not isinstance(parameters, dict):
            raise ValidationError("parameters must be an object", field="parameters")
        if not isinstance(options, dict):
            raise ValidationError("options must be an object", field="options")
        normalize_priority(options.get("priority", "NORMAL"))
        timeout = options.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ValidationError(
                "options.timeout must be a positive number of seconds", field="options.timeout"
            )
        kwargs: dict[str, Any] = {
            "task_type": task_type_token(task_type),
            "model": model,
            "structure": normalize_structure(structure),
            "parameters": dict(parameters),
            "options": dict(options),
        }
        task_id = data.get("task_id")
        if task_id is not None:
            if not isinstance(task_id, str) or not _TASK_ID_RE.fullmatch(task_id):
                raise ValidationError(
                    "task_id may hold letters, digits, '_', '-', '.' only", field="task_id"
                )
            kwargs["task_id"] = task_id
        created_at = data.get("created_at")
        if isinstance(created_at, int | float) and not isinstance(created_at, bool):
            # The queue file name holds it in 13 digits: anything else cannot be queued.
            if not 0 <= created_at < 10**13:
                raise ValidationError(
                    "created_at must be epoch milliseconds (13 digits at most)",
                    field="created_at",
                )
            kwargs["created_at"] = int(created_at)
        attempts = data.get("attempts")
        if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 0:
            kwargs["attempts"] = attempts
        owner = data.get("owner")
        if isinstance(owner, str) and owner:
            kwargs["owner"] = owner
        estimate = data.get("estimate")
        if isinstance(estimate, dict):
            kwargs["estimate"] = estimate
        request_id = safe_request_id(data.get("request_id"))
        if request_id is not None:
            kwargs["request_id"] = request_id
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        try:
            data = jsonsafe.loads(text)
        except ValueError as exc:  # also UnicodeDecodeError and too deep a nesting
            raise InvalidJobFile(f"not valid JSON: {exc}") from exc
        return cls.from_dict(data)
