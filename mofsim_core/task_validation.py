"""Validating a task submission, field by field, before anything is published.

The spec's body (5.2: ``task_type``, ``model``, ``structure {source, ...}``,
``parameters``, ``options``) and MIRA's flat body (``structure_id``, ``model_key`` and the
parameters at the top level) both become one ``Job``.  Checks run cheapest first: task
type, model, parameters, options, then the structure itself (parsed, and checked against
the task and the model).  Every error names the field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mofsim_core.task_options import META_FIELDS, OPTION_FIELDS, validate_options
from mofsim_core.task_structure import (
    SHARED_CHECKS,
    StructureChecks,
    structure_ref,
    with_upload_name,
)
from spool.errors import MofsimError, ValidationError
from spool.job import Job
from spool.limits import Limits
from spool.store import Spool

# Keys of a submission that are not physics parameters; every other top-level key of a
# flat (MIRA-style) body is a parameter.
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


def _parameters(body: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """``parameters`` merged with the flat keys of a MIRA body; the flat keys' names."""
    given = body.get("parameters")
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValidationError("parameters must be an object", field="parameters")
    params = dict(given)
    flat = {str(k): v for k, v in body.items() if k not in ENVELOPE_FIELDS}
    params.update(flat)
    return params, set(flat) - set(given)


# What both shapes of a submission share: everything else is either inside parameters
# and options (the spec's shape) or at the top level (MIRA's flat shape).
SHAPE_FREE = frozenset({"task_type", "model", "model_key", "structure", "structure_id", "task_id"})


def _one_shape(body: Mapping[str, Any]) -> None:
    """The spec's shape or the flat one, not a mix: a key given in both places would
    leave the server to guess which one the client meant."""
    nested = [k for k in ("parameters", "options") if k in body]
    flat = sorted(k for k in body if k not in SHAPE_FREE and k not in ("parameters", "options"))
    if nested and flat:
        raise ValidationError(
            f"{flat[0]} is at the top level of a body that has {nested[0]}: give parameters "
            "and options as objects (the spec's shape) or all at the top level (MIRA's), "
            "not both",
            field=flat[0],
        )


def _options(body: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    given = body.get("options")
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValidationError("options must be an object", field="options")
    options = dict(given)
    for key in (*OPTION_FIELDS, *META_FIELDS):
        if key in body and body[key] is not None:
            options[key] = body[key]
    return validate_options(options, limits)


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
    _one_shape(body)
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
    ref, from_id = structure_ref(body)
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
        "structure": with_upload_name(spool, ref),
        "parameters": params,
        "options": options,
    }
    if body.get("task_id") is not None:
        data["task_id"] = body["task_id"]
    from mofsim_core.estimates import estimate_reference

    data["estimate"] = estimate_reference(spool.root, ref, task_type, spec, normalized, "float32")
    return Job.from_dict(data)
