"""Webhook notifications (spec 4.6): signed, retried with backoff, recorded.

A job asks for them in its options: ``notify_url``, ``notify_events`` (default
``task.completed`` and ``task.failed``), ``notify_secret``, ``retry_times`` (3),
``retry_interval_seconds`` (10).  Deliveries run on their own thread, never on the
scheduling path.  Each delivery has one id, stable across its retries, and every
attempt is appended to ``<spool>/state/webhooks/<task_id>.jsonl``, and running totals
per event and outcome are kept in ``totals.json`` beside them (``/metrics`` reads it).

Before each attempt the receiver's address is checked again (``webhook_targets``): a
name that has come to resolve to a refused address fails the delivery, once, with the
reason recorded.

Signature: ``X-MOFSim-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``
plus ``X-MOFSim-Event`` and ``X-MOFSim-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.webhook_targets import TargetPolicy, pinned_transport
from spool.errors import ValidationError
from spool.events import append_event, iso_now, ms_from_iso, read_events

EVENTS = (
    "task.started",
    "task.progress",
    "task.completed",
    "task.failed",
    "task.cancelled",
    "task.timeout",
)
DEFAULT_EVENTS = ("task.completed", "task.failed")
# Outcomes of one attempt: delivered, failed with a retry to come, failed for good.
OUTCOMES = ("delivered", "retrying", "failed")
TOTALS_NAME = "totals.json"
STATE_EVENTS = {
    "RUNNING": "task.started",
    "COMPLETED": "task.completed",
    "FAILED": "task.failed",
    "CANCELLED": "task.cancelled",
    "TIMEOUT": "task.timeout",
}


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, body: bytes, header: str, *, tolerance_s: float = 300.0, now: float | None = None
) -> bool:
    """What a receiver does; here for the tests and for users' reference."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, t), header)


@dataclass(frozen=True)
class Subscription:
    url: str
    events: tuple[str, ...] = DEFAULT_EVENTS
    secret: str | None = None
    retry_times: int = 3
    retry_interval_s: float = 10.0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Subscription | None:
        url = options.get("notify_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return None
        events = options.get("notify_events") or DEFAULT_EVENTS
        return cls(
            url=url,
            events=tuple(e for e in events if e in EVENTS),
            secret=options.get("notify_secret") or None,
            retry_times=max(0, int(options.get("retry_times", 3))),
            retry_interval_s=max(0.0, float(options.get("retry_interval_seconds", 10))),
        )


def validate_options(options: dict[str, Any]) -> None:
    """Submission-time checks of the webhook options (field-named errors)."""
    from spool.errors import ValidationError

    url = options.get("notify_url")
    if url is None:
        return
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationError("notify_url must be an http(s) URL", field="options.notify_url")
    events = options.get("notify_events")
    if events is not None:
        if not isinstance(events, list) or any(e not in EVENTS for e in events):
            raise ValidationError(
                f"notify_events must be a list of {', '.join(EVENTS)}",
                field="options.notify_events",
            )
    for key, kind in (("retry_times", int), ("retry_interval_seconds", (int, float))):
        value = options.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, kind) or value < 0 or value > 1000
        ):
            raise ValidationError(
                f"{key} must be a number between 0 and 1000", field=f"options.{key}"
            )


@dataclass
class Delivery:
    task_id: str
    event: str
    body: bytes
    subscription: Subscription
    delivery_id: str = field(default_factory=lambda: "dlv_" + uuid.uuid4().hex[:16])
    attempt: int = 0
    not_before: float = 0.0


def build_body(event: str, record: dict[str, Any], base_url: str = "") -> dict[str, Any]:
    """The spec 4.6 body from a task record."""
    result = (record.get("result") or {}).get("result") or {}
    summary: dict[str, Any] = {"duration_seconds": _duration(record)}
    for key in ("converged", "final_energy_eV", "energy_eV", "B0_GPa", "verdict"):
        if key in result:
            summary[key] = result[key]
    if record.get("error"):
        summary["error"] = {k: record["error"].get(k) for k in ("code", "message")}
    if record.get("progress") is not None:
        summary["progress"] = record["progress"]
    return {
        "event": event,
        "task_id": record["task_id"],
        "status": record["status"],
        "timestamp": iso_now(),
        "result_url": f"{base_url}/api/v1/tasks/{record['task_id']}/result",
        "summary": summary,
        "request_id": record.get("request_id"),
    }


def _duration(record: dict[str, Any]) -> float | None:
    """The run's seconds: the result's own count when it has one, else from the task's
    start to its end (or to now while it runs); None for a task that never started."""
    measured = (record.get("result") or {}).get("duration_seconds")
    if isinstance(measured, int | float) and not isinstance(measured, bool):
        return float(measured)
    started = record.get("started_at")
    if not isinstance(started, str):
        return None
    ended = record.get("completed_at")
    end_ms = ms_from_iso(ended) if isinstance(ended, str) else time.time() * 1000
    return round(max(0.0, end_ms - ms_from_iso(started)) / 1000, 3)


class WebhookDispatcher:
    """A thread that delivers queued notifications, retrying with backoff."""

    def __init__(
        self, records_dir: Path, *, timeout_s: float = 10.0, targets: TargetPolicy | None = None
    ) -> None:
        self.records_dir = records_dir
        self.timeout_s = timeout_s
        self.targets = targets or TargetPolicy()
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._waiting: list[Delivery] = []
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._idle = threading.Event()
        self._idle.set()
        self._totals: dict[str, dict[str, int]] = {}

    def start(self) -> None:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        # Totals carry over restarts: the counters count every delivery ever attempted.
        self._totals = read_totals(self.records_dir)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def notify(
        self, task_id: str, event: str, record: dict[str, Any], subscription: Subscription
    ) -> Delivery | None:
        if event not in subscription.events:
            return None
        return self.send(task_id, event, build_body(event, record), subscription)

    def send(
        self, record_key: str, event: str, payload: dict[str, Any], subscription: Subscription
    ) -> Delivery:
        """Any signed JSON notification (alerts use this too); attempts are recorded
        under ``record_key``."""
        body = json.dumps(payload, ensure_ascii=False, default=str).encode()
        delivery = Delivery(record_key, event, body, subscription)
        self._idle.clear()
        self._queue.put(delivery)
        return delivery

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Until nothing is queued or waiting for a retry (shutdown, tests)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        import httpx

        transport = pinned_transport(self.targets)
        with httpx.Client(
            timeout=self.timeout_s, follow_redirects=False, transport=transport
        ) as client:
            while True:
                wait = None
                if self._waiting:
                    wait = max(0.0, min(d.not_before for d in self._waiting) - time.time())
                try:
                    item = self._queue.get(timeout=wait)
                    if item is None:
                        return
                    self._waiting.append(item)
                except queue.Empty:
                    pass
                now = time.time()
                due = [d for d in self._waiting if d.not_before <= now]
                for d in due:
                    self._waiting.remove(d)
                    self._attempt(client, d)
                if not self._waiting and self._queue.empty():
                    self._idle.set()

    def _attempt(self, client: Any, d: Delivery) -> None:
        d.attempt += 1
        headers = {
            "Content-Type": "application/json",
            "X-MOFSim-Event": d.event,
            "X-MOFSim-Delivery": d.delivery_id,
            "User-Agent": "mofsim-webhooks",
        }
        if d.subscription.secret:
            headers["X-MOFSim-Signature"] = sign(d.subscription.secret, d.body, int(time.time()))
        status: int | None = None
        error = None
        t0 = time.perf_counter()
        refused = False
        try:
            self.targets.check(d.subscription.url, field="notify_url")
            response = client.post(d.subscription.url, content=d.body, headers=headers)
            status = response.status_code
            ok = 200 <= status < 300
            if not ok:
                error = f"HTTP {status}"
        except ValidationError as exc:
            ok, refused = False, True  # retrying would ask the same question again
            error = f"refused: {exc.message}"
        except Exception as exc:  # noqa: BLE001 - any transport failure is a failed attempt
            ok = False
            error = f"{type(exc).__name__}: {exc}"
        final = ok or refused or d.attempt > d.subscription.retry_times
        self._record(d, ok, status, error, (time.perf_counter() - t0) * 1000, final)
        if not final:
            # Back off: the configured interval, doubled after each failure.
            d.not_before = time.time() + d.subscription.retry_interval_s * 2 ** (d.attempt - 1)
            self._waiting.append(d)
        elif not ok:
            logger.warning(
                "webhook {} for {} gave up after {} attempts: {}",
                d.event,
                d.task_id,
                d.attempt,
                error,
            )

    def _record(
        self,
        d: Delivery,
        ok: bool,
        status: int | None,
        error: str | None,
        elapsed_ms: float,
        final: bool,
    ) -> None:
        append_event(
            self.records_dir / f"{d.task_id}.jsonl",
            {
                "timestamp": iso_now(),
                "delivery_id": d.delivery_id,
                "event": d.event,
                "task_id": d.task_id,
                "url": d.subscription.url,
                "attempt": d.attempt,
                "ok": ok,
                "status_code": status,
                "error": error,
                "duration_ms": round(elapsed_ms, 1),
                "final": final,
            },
        )
        outcome = "delivered" if ok else ("failed" if final else "retrying")
        per_event = self._totals.setdefault(d.event, dict.fromkeys(OUTCOMES, 0))
        per_event[outcome] = per_event.get(outcome, 0) + 1
        _write_totals(self.records_dir, self._totals)


def read_totals(records_dir: Path) -> dict[str, dict[str, int]]:
    """Attempts so far per event and outcome (empty before the first)."""
    try:
        doc = json.loads((records_dir / TOTALS_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {
        str(event): {
            str(k): int(v)
            for k, v in counts.items()
            if isinstance(v, int) and not isinstance(v, bool)
        }
        for event, counts in doc.items()
        if isinstance(counts, dict)
    }


def _write_totals(records_dir: Path, totals: dict[str, dict[str, int]]) -> None:
    tmp = records_dir / f".{TOTALS_NAME}.tmp"
    try:
        tmp.write_text(json.dumps(totals, sort_keys=True))
        os.replace(tmp, records_dir / TOTALS_NAME)  # readers see old totals or new, never half
    except OSError as exc:  # a full disk must not stop deliveries
        logger.warning("could not write webhook totals: {}", exc)


def deliveries(records_dir: Path, task_id: str) -> list[dict[str, Any]]:
    """Every attempt recorded for a task (the API shows these)."""
    return [ev.data for ev in read_events(records_dir / f"{task_id}.jsonl")]
