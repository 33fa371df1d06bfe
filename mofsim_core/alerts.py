"""Alerts (spec 7): eight built-in rules evaluated on a snapshot of the system.

The engine is pure: ``evaluate(snapshot)`` compares what the rules see now with what was
firing before and returns the alerts that fired and resolved.  ``AlertStore`` keeps the
active set (``active.json``, rewritten atomically, read by the HTTP server) and the
history (``history.jsonl``, append-only); ``mofsimd.alert_channels`` notifies.
"""

from __future__ import annotations

import json
import os
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spool.events import append_event, iso_now, read_events

LEVELS = ("CRITICAL", "WARNING", "INFO")


@dataclass(frozen=True)
class Rule:
    type: str
    level: str
    threshold: float | None
    description: str
    enabled: bool = True


DEFAULT_RULES: dict[str, Rule] = {
    r.type: r
    for r in [
        Rule("gpu_unavailable", "CRITICAL", None, "GPU lost or driver error"),
        Rule("gpu_memory_low", "WARNING", 2.0, "free GPU memory below threshold (GB)"),
        Rule("gpu_temperature_high", "WARNING", 85.0, "GPU temperature above threshold (C)"),
        Rule("queue_backlog", "WARNING", 100, "queued tasks above threshold"),
        Rule(
            "model_consecutive_failures",
            "WARNING",
            5,
            "consecutive failures of one model above threshold",
        ),
        Rule(
            "disk_space_low", "WARNING", 50.0, "free disk space of the spool below threshold (GB)"
        ),
        Rule("api_latency_high", "WARNING", 5.0, "API P99 latency above threshold (s)"),
        # No threshold of its own: the daemon's heartbeat_timeout_s, which also takes the
        # slot out of service, unless alerts.toml sets one.
        Rule(
            "worker_heartbeat_lost",
            "CRITICAL",
            None,
            "worker offline: no executor heartbeat for longer than threshold (s)",
        ),
        # Beyond spec 7.2: the mirror database being down must not go unnoticed (issue 6).
        Rule("database_unavailable", "CRITICAL", None, "the mirror database cannot be written"),
    ]
}


def load_rules(path: Path | None) -> dict[str, Rule]:
    """``etc/alerts.toml``: ``[rules.<type>]`` with ``threshold``, ``level``, ``enabled``."""
    rules = dict(DEFAULT_RULES)
    if path is None or not path.exists():
        return rules
    data = tomllib.loads(path.read_text())
    for name, conf in (data.get("rules") or {}).items():
        if name not in rules or not isinstance(conf, dict):
            continue
        base = rules[name]
        level = str(conf.get("level", base.level)).upper()
        rules[name] = Rule(
            name,
            level if level in LEVELS else base.level,
            conf.get("threshold", base.threshold),
            base.description,
            bool(conf.get("enabled", True)),
        )
    return rules


@dataclass
class Snapshot:
    """What the rules look at; the daemon fills it every few seconds."""

    devices: list[dict[str, Any]] = field(default_factory=list)  # DeviceStatus.to_dict()
    queued: int = 0
    failure_streaks: dict[str, int] = field(default_factory=dict)  # model -> consecutive
    disk_free_gb: float | None = None
    api_p99_s: float | None = None
    heartbeat_age_s: dict[str, float] = field(default_factory=dict)  # slot -> seconds
    heartbeat_timeout_s: float = 60.0  # the daemon's; a rule threshold overrides it
    database_down: str | None = None  # the reason, while the mirror cannot be written


@dataclass
class Alert:
    type: str
    level: str
    subject: str
    message: str
    details: dict[str, Any]
    alert_id: str = field(default_factory=lambda: "alert_" + uuid.uuid4().hex[:12])
    timestamp: str = field(default_factory=iso_now)
    resolved: bool = False
    resolved_at: str | None = None

    @property
    def key(self) -> str:
        return f"{self.type}:{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Finding = tuple[str, str, dict[str, Any]]  # subject, message, details

# Slot kinds whose index is a GPU's device index (spec 7.3: "gpu_id": 3).
GPU_KINDS = ("nvml", "simulate")


def gpu_index(device: dict[str, Any] | None) -> int | None:
    """The integer GPU index of a device entry (``kind`` and ``index`` added to
    ``DeviceStatus.to_dict()`` by the daemon); None for a CPU slot or when unknown."""
    if device is None or device.get("kind") not in GPU_KINDS:
        return None
    index = device.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _where(snap: Snapshot, slot: str) -> dict[str, Any]:
    """``gpu_id`` (integer, null for CPU slots) and ``slot`` (its id) of alert details."""
    device = next((d for d in snap.devices if d.get("slot_id") == slot), None)
    return {"gpu_id": gpu_index(device), "slot": slot}


def _devices(snap: Snapshot, rule: Rule) -> list[Finding]:
    out: list[Finding] = []
    for d in snap.devices:
        sid = str(d.get("slot_id"))
        where = {"gpu_id": gpu_index(d), "slot": sid}
        if rule.type == "gpu_unavailable" and not d.get("available", True):
            out.append(
                (
                    sid,
                    f"{sid} unavailable: {d.get('error') or 'device lost'}",
                    {**where, "error": d.get("error")},
                )
            )
        free = d.get("memory_free_mb")
        if (
            rule.type == "gpu_memory_low"
            and d.get("available", True)
            and free is not None
            and d.get("memory_total_mb")
            and free / 1024 < float(rule.threshold or 0)
        ):
            out.append(
                (
                    sid,
                    f"{sid} free GPU memory low: {free / 1024:.1f} GB",
                    {
                        **where,
                        "available_memory_gb": round(free / 1024, 2),
                        "total_memory_gb": round(d["memory_total_mb"] / 1024, 2),
                    },
                )
            )
        temp = d.get("temperature_c")
        if (
            rule.type == "gpu_temperature_high"
            and temp is not None
            and temp > float(rule.threshold or 0)
        ):
            out.append(
                (
                    sid,
                    f"{sid} temperature high: {temp:.0f} C",
                    {**where, "temperature_c": temp},
                )
            )
    return out


def _findings(snap: Snapshot, rule: Rule) -> list[Finding]:
    t = float(rule.threshold) if rule.threshold is not None else 0.0
    if rule.type in ("gpu_unavailable", "gpu_memory_low", "gpu_temperature_high"):
        return _devices(snap, rule)
    if rule.type == "queue_backlog" and snap.queued > t:
        return [("queue", f"{snap.queued} tasks waiting", {"queued": snap.queued})]
    if rule.type == "model_consecutive_failures":
        return [
            (m, f"model {m} failed {n} times in a row", {"model": m, "failures": n})
            for m, n in snap.failure_streaks.items()
            if n > t
        ]
    if rule.type == "disk_space_low" and snap.disk_free_gb is not None and snap.disk_free_gb < t:
        return [
            (
                "spool",
                f"spool disk free space low: {snap.disk_free_gb:.1f} GB",
                {"available_gb": round(snap.disk_free_gb, 2)},
            )
        ]
    if rule.type == "api_latency_high" and snap.api_p99_s is not None and snap.api_p99_s > t:
        return [("api", f"API P99 latency {snap.api_p99_s:.2f} s", {"p99_seconds": snap.api_p99_s})]
    if rule.type == "database_unavailable" and snap.database_down:
        return [
            (
                "mirror",
                f"mirror database unavailable: {snap.database_down}",
                {"reason": snap.database_down},
            )
        ]
    if rule.type == "worker_heartbeat_lost":
        limit = t if rule.threshold is not None else snap.heartbeat_timeout_s
        return [
            (
                s,
                f"worker offline: executor {s} sent no heartbeat for {age:.0f} s",
                {**_where(snap, s), "age_s": round(age, 1), "threshold_s": limit},
            )
            for s, age in snap.heartbeat_age_s.items()
            if age > limit
        ]
    return []


class AlertStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.active: dict[str, Alert] = {}
        for data in _read_json(directory / "active.json") or []:
            alert = Alert(**data)
            self.active[alert.key] = alert

    def save(self, fired: list[Alert], resolved: list[Alert]) -> None:
        for a in [*fired, *resolved]:
            append_event(self.directory / "history.jsonl", a.to_dict())
        tmp = self.directory / f".active.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps([a.to_dict() for a in self.active.values()], indent=2))
        os.replace(tmp, self.directory / "active.json")


def evaluate(
    rules: dict[str, Rule], snap: Snapshot, store: AlertStore
) -> tuple[list[Alert], list[Alert]]:
    """Fire what is newly true, resolve what no longer is.  Returns (fired, resolved)."""
    seen: set[str] = set()
    fired: list[Alert] = []
    for rule in rules.values():
        if not rule.enabled:
            continue
        for subject, message, details in _findings(snap, rule):
            key = f"{rule.type}:{subject}"
            seen.add(key)
            if key not in store.active:
                alert = Alert(rule.type, rule.level, subject, message, details)
                store.active[key] = alert
                fired.append(alert)
    resolved = []
    for key in [k for k in store.active if k not in seen]:
        alert = store.active.pop(key)
        alert.resolved, alert.resolved_at = True, iso_now()
        resolved.append(alert)
    if fired or resolved:
        store.save(fired, resolved)
    return fired, resolved


def read_active(directory: Path) -> list[dict[str, Any]]:
    return list(_read_json(directory / "active.json") or [])


def read_history(
    directory: Path, limit: int = 100, predicate: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    items = [ev.data for ev in read_events(directory / "history.jsonl")]
    if predicate:
        items = [i for i in items if predicate(i)]
    return items[-limit:][::-1]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
