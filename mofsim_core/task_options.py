"""A task's options (spec 5.2 and 4.6: priority, timeout, notifications, retries, name,
description, tags; and expected_duration, the run time a Slurm pilot must have left for
the task), each checked against the server's limits.

``task_validation`` gathers them from a submission (``options`` or the top level of a
flat MIRA body) and hands them here; the webhook targets a ``notify_url`` may name are
``webhook_targets``'s to judge.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from spool.errors import ValidationError
from spool.job import normalize_priority
from spool.job import priority_name as _priority_name
from spool.limits import Limits

# A flat (MIRA-style) body may give any of these at its top level instead.
OPTION_FIELDS = (
    "priority",
    "timeout",
    "expected_duration",
    "notify_url",
    "notify_events",
    "notify_secret",
    "retry_times",
    "retry_interval_seconds",
)
META_FIELDS = ("name", "description", "tags")
NOTIFY_EVENTS = (
    "task.started",
    "task.progress",
    "task.completed",
    "task.failed",
    "task.cancelled",
    "task.timeout",
)


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
    if "expected_duration" in out:
        out["expected_duration"] = check_expected_duration(out["expected_duration"], limits)
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


def check_expected_duration(value: Any, limits: Limits | None = None) -> float:
    """Seconds the task is expected to run: positive, and no longer than any task may
    run on this server (``max_timeout_s``)."""
    field = "options.expected_duration"
    seconds = _number(value, field, low=0, exclusive=True)
    bound = (limits or Limits()).max_timeout_s
    if seconds > bound:
        raise ValidationError(
            f"expected_duration {seconds:g} s is over this server's limit of {bound:g} s",
            field=field,
        )
    return seconds


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
