"""Typed views of the server's own state: where models are loaded and the requests to
load them, devices, alerts, pages of task and system logs, and the retention plan.

Built like the records of ``models.py`` and the results of ``results.py``: ``from_dict``
takes the fields it knows, ignores the rest, and keeps the whole answer in ``.raw``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mofsim_client._base import _Model
from mofsim_client.models import LogEntry

ALERT_KINDS = ("active", "history", "rules")


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


# --- models -----------------------------------------------------------------------------------


@dataclass
class ModelStatus(_Model):
    """``get_model_status()``: where a model is loaded now, and its recent load/unload
    requests with their outcome (``pending``, ``running``, ``completed``, ``failed``)."""

    model_key: str = ""
    loaded: bool | None = None
    device: str | None = None
    slots: list[dict[str, Any]] = field(default_factory=list)
    daemon_running: bool | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ModelRequest(_Model):
    """``load_model()`` / ``unload_model()``: the request handed to the daemon.  Its
    outcome shows up in ``get_model_status(key).requests`` under the same
    ``request_id``."""

    request_id: str = ""
    action: str | None = None
    model_key: str | None = None
    slot: str | None = None
    status: str | None = None
    created_at: str | None = None


# --- devices and alerts -----------------------------------------------------------------------


@dataclass
class Devices(_Model):
    """``get_devices()``: every slot with its device's memory, utilization, temperature,
    loaded models and current task.  ``source`` is ``daemon`` (its snapshot) or
    ``direct`` (read by the server itself while no daemon runs)."""

    source: str | None = None
    daemon_running: bool | None = None
    count: int | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)
    snapshot_age_seconds: float | None = None
    error: str | None = None


@dataclass
class Alert(_Model):
    """One alert of the server's alert engine; ``resolved`` ones are in the history."""

    alert_id: str | None = None
    type: str | None = None
    level: str | None = None
    subject: str | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: str | None = None
    resolved: bool | None = None
    resolved_at: str | None = None


@dataclass
class AlertList(_Model):
    """``get_alerts(kind)``: a page of the active alerts, the history (newest first) or
    the rules; ``total`` counts every match, ``pagination`` is the server's.  ``engine``
    is ``running``, or says why no engine evaluates alerts (the lists are then empty).
    Rules are plain dicts (``type``, ``level``, ``threshold``...)."""

    kind: str = "active"
    items: list[dict[str, Any]] = field(default_factory=list, repr=False)
    total: int | None = None
    pagination: dict[str, Any] = field(default_factory=dict, repr=False)
    engine: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, kind: str, data: Any) -> AlertList:
        doc = dict(data) if isinstance(data, dict) else {"items": data}
        raw_pagination = doc.get("pagination")
        pagination: dict[str, Any] = raw_pagination if isinstance(raw_pagination, dict) else {}
        # ``{kind: [...], total}``: the answer of servers before alert lists were paged.
        items = doc.get("items", doc.get(kind))
        total = pagination.get("total", doc.get("total"))
        return cls(
            raw=doc,
            kind=kind,
            items=_dicts(items),
            total=total if isinstance(total, int) else None,
            pagination=pagination,
            engine=doc.get("engine"),
            error=doc.get("error"),
        )

    @property
    def alerts(self) -> list[Alert]:
        """The items as ``Alert``s (for ``active`` and ``history``)."""
        return [Alert.from_dict(x) for x in self.items]


# --- logs -------------------------------------------------------------------------------------


@dataclass
class LogPage(_Model):
    """A page of a log: ``get_log_page()`` (a task's events) or ``get_system_logs()``
    (one day of the system, access or audit log).  ``total`` counts every line that
    matches the filter, not only this page's; ``last_id`` is the id of a task's last
    event on the page (pass it as ``since`` to read only what came after)."""

    items: list[LogEntry] = field(default_factory=list)
    total: int | None = None
    offset: int | None = None
    last_id: int | None = None
    date: str | None = None
    kind: str | None = None

    @classmethod
    def of(cls, data: Any) -> LogPage:
        doc: dict[str, Any] = dict(data) if isinstance(data, dict) else {"items": data}
        raw_pagination = doc.get("pagination")
        pagination: dict[str, Any] = raw_pagination if isinstance(raw_pagination, dict) else {}
        total = doc.get("total", pagination.get("total"))
        offset = doc.get("offset", pagination.get("skip"))
        last_id = doc.get("last_id")
        return cls(
            raw=doc,
            items=[LogEntry.from_dict(x) for x in _dicts(doc.get("items"))],
            total=total if isinstance(total, int) else None,
            offset=offset if isinstance(offset, int) else None,
            last_id=last_id if isinstance(last_id, int) else None,
            date=doc.get("date"),
            kind=doc.get("kind"),
        )

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self.items)


# --- retention --------------------------------------------------------------------------------


@dataclass
class RetentionPlan(_Model):
    """``get_retention_plan()``: the server's retention policy and what it would do now
    (a dry run; the server applies it itself)."""

    policy: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
