"""The daemon's operational duties beside scheduling: webhooks, alerts, housekeeping.

None of it runs on the scheduling path.  Transitions are queued to a thread that reads
the task record, sends the job's webhooks and counts failures per model; alert rules
are evaluated every few seconds from a snapshot of the system; log archival and the
retention policy run hourly in a worker thread.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core import api_latency, logs, retention
from mofsim_core.alerts import AlertStore, Snapshot, evaluate, load_rules
from mofsim_core.config import Config
from mofsim_core.logs import log_dir_of
from mofsim_core.webhook_targets import TargetPolicy
from mofsim_core.webhooks import STATE_EVENTS, Subscription, WebhookDispatcher
from mofsimd.alert_channels import AlertChannels
from spool.errors import MofsimError
from spool.events import read_events
from spool.states import TERMINAL_STATES, TaskState
from spool.store import Spool

ROOT = Path(__file__).resolve().parents[1]
PROGRESS_STEP = 0.1  # a task.progress webhook per 10 % (spec 4.6: "by percentage")


class Operations:
    def __init__(
        self,
        spool: Spool,
        config: Config,
        *,
        api_p99: Callable[[], float | None] | None = None,
    ) -> None:
        # The API's recent P99 when the daemon hosts the server; None otherwise (a
        # separate `mofsim serve` publishes it in the spool: mofsim_core.api_latency).
        self.api_p99 = api_p99
        self.spool = spool
        self.config = config
        extra = config.extra if isinstance(config.extra, dict) else {}
        rules_file = extra.get("alert_rules") or ROOT / "etc" / "alerts.toml"
        self.rules = load_rules(Path(rules_file))
        channels = _channel_settings(Path(rules_file))
        self.alert_interval_s = float(channels.get("interval_s", 5))
        self.dispatcher = WebhookDispatcher(
            spool.paths.state_dir / "webhooks", targets=TargetPolicy.of(config.limits)
        )
        hook = None
        if channels.get("webhook_url"):
            hook = Subscription(
                str(channels["webhook_url"]),
                events=("alert",),
                secret=channels.get("webhook_secret"),
                retry_times=int(channels.get("webhook_retry_times", 3)),
                retry_interval_s=float(channels.get("webhook_retry_interval_s", 10)),
            )
        self.channels = AlertChannels(
            file=Path(channels["file"]).expanduser() if channels.get("file") else None,
            webhook=hook,
            dispatcher=self.dispatcher,
            warning_window_s=float(channels.get("warning_window_s", 60)),
        )
        self.store = AlertStore(spool.paths.state_dir / "alerts")
        # Consecutive failures per model survive a restart (the rule counts across it).
        self._streaks_file = spool.paths.state_dir / "failure_streaks.json"
        self.failure_streaks: dict[str, int] = _read_streaks(self._streaks_file)
        self.database_down: str | None = None
        self.log_dir = log_dir_of(config)
        self.retention_policy = retention.Policy.from_config(config)  # refused early
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="operations", daemon=True)
        self._progress: dict[str, tuple[int, float]] = {}  # task -> (offset, last fraction)
        self._subs: dict[str, Subscription | None] = {}
        self._last_alerts = 0.0
        self._storage_error_at = 0.0
        self._last_housekeeping = 0.0
        self._housekeeping: threading.Thread | None = None

    def start(self) -> None:
        self.dispatcher.start()
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.channels.flush_due(force=True)
        self.dispatcher.wait_idle(5)
        self.dispatcher.stop()

    # -- transitions (called from the supervisor; cheap) -------------------------------
    def on_state(self, task_id: str, state: str) -> None:
        self._queue.put((task_id, state))

    def check_alerts_soon(self) -> None:
        """The spool refused a write: evaluate the alerts at the next turn, counting the
        disk as full whatever its free bytes say (quota, inodes)."""
        self._storage_error_at = time.time()
        self._last_alerts = 0.0

    def mirror_down(self, reason: str) -> None:
        self.database_down = reason

    def mirror_up(self) -> None:
        self.database_down = None

    def _subscription(self, task_id: str) -> Subscription | None:
        if task_id not in self._subs:
            try:
                self._subs[task_id] = Subscription.from_options(
                    self.spool.load_job(task_id).options
                )
            except MofsimError:
                self._subs[task_id] = None
        return self._subs[task_id]

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            task_id, state = item
            try:
                self._handle(task_id, state)
            except MofsimError as exc:
                logger.warning("notification for {} failed: {}", task_id, exc.message)

    def _handle(self, task_id: str, state: str) -> None:
        if state == "PROGRESS":
            self._progress_webhook(task_id)
            return
        record = self.spool.record(task_id)
        if state == TaskState.RUNNING and record["status"] == TaskState.ASSIGNED:
            # The executor said it started before its RUNNING event reached the log.
            record["status"] = TaskState.RUNNING.value
        if state in (TaskState.COMPLETED, TaskState.FAILED):
            model = str(record.get("model"))
            before = self.failure_streaks.get(model, 0)
            self.failure_streaks[model] = before + 1 if state == "FAILED" else 0
            if self.failure_streaks[model] != before:
                self._save_streaks()
        event = STATE_EVENTS.get(state)
        sub = self._subscription(task_id)
        if event and sub is not None:
            self.dispatcher.notify(task_id, event, record, sub)
        if state in TERMINAL_STATES:
            self._progress.pop(task_id, None)
            self._subs.pop(task_id, None)

    def _progress_webhook(self, task_id: str) -> None:
        sub = self._subscription(task_id)
        if sub is None or "task.progress" not in sub.events:
            return
        seen, last = self._progress.get(task_id, (-1, -1.0))
        newest = None
        for ev in read_events(self.spool.paths.events_file(task_id), max(seen, 0)):
            if ev.offset <= seen:
                continue
            seen = ev.offset
            frac = (ev.data.get("extra") or {}).get("progress")
            if ev.kind == "progress" and isinstance(frac, int | float):
                newest = float(frac)
        if newest is not None and newest - last >= PROGRESS_STEP:
            record = self.spool.record(task_id)
            record["progress"] = newest
            self.dispatcher.notify(task_id, "task.progress", record, sub)
            last = newest
        self._progress[task_id] = (seen, last)

    # -- periodic (called from the supervisor's loop) ----------------------------------
    def tick(self, sup: Any) -> None:
        now = time.time()
        for ex in sup.executors.values():
            if ex.current is not None:
                self.on_state(ex.current.task_id, "PROGRESS")
        if now - self._last_alerts >= self.alert_interval_s:
            self._last_alerts = now
            self._evaluate_alerts(sup, now)
        self.channels.flush_due()
        if now - self._last_housekeeping >= 3600 and not (
            self._housekeeping and self._housekeeping.is_alive()
        ):
            self._last_housekeeping = now
            self._housekeeping = threading.Thread(
                target=self.housekeeping, daemon=True, name="housekeeping"
            )
            self._housekeeping.start()

    def _evaluate_alerts(self, sup: Any, now: float) -> None:
        try:
            disk_free = shutil.disk_usage(self.spool.root).free / 1e9
        except OSError:
            disk_free = None
        if now - self._storage_error_at < max(60.0, 2 * self.alert_interval_s):
            disk_free = 0.0
        slots = {ex.slot_id: ex.slot for ex in sup.executors.values()}
        devices = []
        for d in sup.backend.status():
            entry = d.to_dict()
            slot = slots.get(d.slot_id)
            if slot is not None:  # what the alert details' integer gpu_id is read from
                entry.update(kind=slot.kind, index=slot.index)
            devices.append(entry)
        snap = Snapshot(
            devices=devices,
            queued=len(self.spool.queued()),
            failure_streaks=dict(self.failure_streaks),
            disk_free_gb=disk_free,
            heartbeat_age_s=heartbeat_ages(sup.executors.values(), now),
            heartbeat_timeout_s=self.config.heartbeat_timeout_s,
            api_p99_s=api_latency.combined(
                self.api_p99() if self.api_p99 is not None else None,
                api_latency.read_p99(self.spool.paths.state_dir, now=now),
            ),
            database_down=self.database_down,
        )
        fired, resolved = evaluate(self.rules, snap, self.store)
        if fired or resolved:
            self.channels.publish(fired, resolved)

    def _save_streaks(self) -> None:
        tmp = self._streaks_file.with_name(f".{self._streaks_file.name}.tmp")
        try:
            tmp.write_text(json.dumps(self.failure_streaks))
            os.replace(tmp, self._streaks_file)
        except OSError as exc:
            logger.warning("cannot keep the failure counts per model: {}", exc)

    def housekeeping(self) -> None:
        """Archive old log files and apply the retention policy."""
        try:
            done = logs.archive(self.log_dir)
            plan = retention.apply(self.spool, self.retention_policy, actor="daemon")
            if done["gzipped"] or done["bundled"] or plan.actions:
                logger.info(
                    "housekeeping: {} log files archived, {} retention actions",
                    len(done["gzipped"]) + len(done["bundled"]),
                    len(plan.actions),
                )
        except (OSError, MofsimError) as exc:
            logger.warning("housekeeping failed: {}", exc)


def heartbeat_ages(executors: Any, now: float) -> dict[str, float]:
    """Seconds since each live local executor last beat (Slurm pilots keep their own
    heartbeat, mofsimd.slurm_pool)."""
    out: dict[str, float] = {}
    for ex in executors:
        beat = getattr(ex, "last_beat", None)
        if isinstance(beat, int | float) and ex.alive:
            out[ex.slot_id] = max(0.0, now - beat)
    return out


def _read_streaks(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}


def _channel_settings(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return dict(tomllib.loads(path.read_text()).get("channels") or {})
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return {}
