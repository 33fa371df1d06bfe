"""Turning ``mofsim submit`` arguments into a validated job, before anything is published.

Everything the daemon would refuse is refused here first, with the same error classes:
task type, parameters (the task module's own ``validate``), model key, and the
structure itself (parsed and checked).  A structure file is embedded in the job as
inline text, so the job runs the same whatever the submitter's working directory and
even if the file changes or disappears afterwards.

The executors' modules are imported only when a submission is made; on an installation
without the simulation extras (no ase), the structure is embedded unchecked and the
daemon's executor checks it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mofsim_core.task_options import check_expected_duration
from spool.errors import StructureNotFound, ValidationError
from spool.job import Job, normalize_priority, priority_name
from spool.limits import Limits

if TYPE_CHECKING:
    from executors.models import ModelSpec

# Task types that need a periodic cell (NPT, strained cells, phonons).
MAX_STRUCTURE_BYTES = 100 * 1024 * 1024


def parse_param(item: str) -> tuple[str, Any]:
    """``KEY=VALUE``; the value is JSON when it parses as JSON (numbers, booleans,
    lists, objects, null), else the text as it is (``optimizer=FIRE``)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValidationError(f"--param must look like KEY=VALUE, got {item!r}", field="parameters")
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, float) and not math.isfinite(value):
        # json accepts NaN and Infinity; no parameter means them.
        raise ValidationError(
            f"--param {key}: {text!r} is not a finite number", field=f"parameters.{key}"
        )
    return key, value


def parse_params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_param(item)
        if key in params:
            raise ValidationError(f"--param {key} given twice", field=f"parameters.{key}")
        params[key] = value
    return params


def check_parameters(task_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """The task module's normalized parameters (raises ValidationError on bad values)."""
    from executors.registry import validate_parameters

    return validate_parameters(task_type, params)


def resolve_model(key: str, task_type: str, models_root: Path) -> ModelSpec:
    from executors.models import check_usable
    from executors.models import resolve_model as resolve

    spec = resolve(key, models_root=models_root)
    check_usable(spec)
    if not spec.supports(task_type):
        raise ValidationError(f"model {spec.key} does not support {task_type}", field="model")
    return spec


def read_structure_file(arg: str) -> tuple[Path, str]:
    """A structure file named on the command line, and its text; a missing, oversized
    or binary file is refused with its error code."""
    path = Path(arg).expanduser()
    if not path.is_file():
        raise StructureNotFound(
            f"structure file {arg!r} not found (use builtin:NAME for a built-in framework)",
            field="structure",
        )
    size = path.stat().st_size
    if size > MAX_STRUCTURE_BYTES:
        from spool.errors import PayloadTooLarge

        raise PayloadTooLarge(
            f"structure file is {size} bytes, over {MAX_STRUCTURE_BYTES}", field="structure"
        )
    try:
        return path, path.read_text()
    except UnicodeDecodeError as exc:
        from spool.errors import InvalidStructure

        raise InvalidStructure(
            f"structure file {path.name!r} is not text", field="structure"
        ) from exc


def structure_reference(
    arg: str,
    *,
    task_type: str,
    spec: ModelSpec | None,
    spool_root: Path,
    params: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """``builtin:NAME``, ``upload:FILE_ID`` or a CIF/XYZ/POSCAR path, checked."""
    if arg.startswith(("builtin:", "upload:")):
        source, _, name = arg.partition(":")
        ref = (
            {"source": "builtin", "name": name}
            if source == "builtin"
            else {"source": "upload", "file_id": name}
        )
        _check_reference(ref, spool_root, task_type, spec, params, limits)
        return ref
    path, text = read_structure_file(arg)
    ref = {"source": "inline", "content": text, "name": path.stem, "filename": path.name}
    fmt = _format_of(text, path.name)
    if fmt is not None:
        ref["format"] = fmt
    _check_reference(ref, spool_root, task_type, spec, params, limits)
    return ref


def _format_of(text: str, filename: str) -> str | None:
    try:
        from executors.structure_io import detect_format, format_from_filename
    except ModuleNotFoundError:
        return None
    return format_from_filename(filename) or detect_format(text)


def _check_reference(
    ref: dict[str, Any],
    spool_root: Path,
    task_type: str,
    spec: ModelSpec | None,
    params: dict[str, Any] | None,
    limits: Limits | None = None,
) -> None:
    try:
        from executors.structure_checks import check_for_task
        from executors.structure_io import load_structure

        atoms, _ = load_structure(ref, spool_root)
    except ModuleNotFoundError:
        return  # no ase here: the executor checks the structure when it loads it
    check_for_task(atoms, task_type, spec, params, limits)


def build_job(
    *,
    spool_root: Path,
    task_type: str,
    structure: str,
    model: str,
    params: dict[str, Any],
    priority: str,
    timeout: float | None,
    expected_duration: float | None = None,
    limits: Limits | None = None,
) -> Job:
    """Validate everything, cheapest checks first, against ``limits`` (the
    configuration's), and return the job to publish."""
    from executors.registry import canonical_task_type

    task_type = canonical_task_type(task_type)
    level = normalize_priority(priority)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ValidationError(
            "--timeout must be a positive number of seconds", field="options.timeout"
        )
    limits = limits or Limits()
    limits.check_timeout(timeout)
    if expected_duration is not None:
        expected_duration = check_expected_duration(expected_duration, limits)
    normalized = check_parameters(task_type, params)
    limits.check_steps(normalized)
    spec = resolve_model(model, task_type, spool_root / "models")
    ref = structure_reference(
        structure,
        task_type=task_type,
        spec=spec,
        spool_root=spool_root,
        params=normalized,
        limits=limits,
    )
    options: dict[str, Any] = {"priority": priority_name(level)}
    if timeout is not None:
        options["timeout"] = timeout
    if expected_duration is not None:
        options["expected_duration"] = expected_duration
    return Job.from_dict(
        {
            "task_type": task_type,
            "model": spec.key,
            "structure": ref,
            "parameters": params,
            "options": options,
            "estimate": _estimate(spool_root, ref, task_type, spec, normalized),
        }
    )


def _estimate(
    spool_root: Path, ref: dict[str, Any], task_type: str, spec: ModelSpec, params: dict[str, Any]
) -> dict[str, Any] | None:
    """The cost estimate (30004 when no device holds the job); None without a fit or
    without the simulation extras."""
    from mofsim_core.estimates import estimate_reference

    try:
        return estimate_reference(spool_root, ref, task_type, spec, params, "float32")
    except ModuleNotFoundError:
        return None
