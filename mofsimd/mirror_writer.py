"""Mirror writes off the scheduling path, surviving database outages.

Database commits cost milliseconds (an fsync each) and the database may be down; the
supervisor only drops task ids into a queue and a thread brings the mirror up to date
from the spool, coalescing repeated updates of the same task.

Ids whose write failed stay in a pending set, retried with exponential backoff, so the
mirror catches up once the database is back; nothing here ever blocks the caller.  The
mirror may even be missing at start: the thread then keeps trying to open it.  While the
database is down only the retries touch it (one connection attempt per backoff step,
not one per transition).  Pending ids left at a graceful stop are saved in the spool's
state directory and picked up by the next daemon.

``on_mirror_down(reason)`` and ``on_mirror_up()`` are called from the writer thread when
the database goes away and when the mirror has caught up again: the hooks for alerts.
A hook installed after ``start`` can read ``down`` to learn the current state.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.mirror import Mirror
from spool.errors import DatabaseError, MofsimError
from spool.events import read_events
from spool.store import Spool
from spool.transitions import atomic_write_json

_STOP = object()
_RETRY = object()


class MirrorWriter:
    def __init__(
        self,
        spool: Spool,
        mirror: Mirror | None = None,
        *,
        opener: Callable[[], Mirror] | None = None,
        pending_file: Path | None = None,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        on_mirror_down: Callable[[str], None] | None = None,
        on_mirror_up: Callable[[], None] | None = None,
    ) -> None:
        if mirror is None and opener is None:
            raise ValueError("a MirrorWriter needs a mirror or a way to open one")
        self.spool = spool
        self.mirror = mirror
        self.opener = opener
        self.pending_file = pending_file
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.on_mirror_down = on_mirror_down
        self.on_mirror_up = on_mirror_up
        self.failures = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mirror-writer", daemon=True)
        # Written by the writer thread only; the condition lets others read and wait.
        self._state = threading.Condition()
        self._pending: dict[str, bool] = self._load_pending()
        self._down = False
        self._delay = backoff_s
        self._retry_at = 0.0

    # -- the caller's side -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, task_id: str, with_logs: bool = False) -> None:
        self._queue.put((task_id, with_logs))

    def retry_now(self) -> None:
        """Try the pending writes at once instead of at the next backoff step."""
        self._queue.put(_RETRY)

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until everything queued so far has been tried (shutdown, tests).
        True when the mirror is then fully up to date."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout) and self.caught_up

    def wait_caught_up(self, timeout: float = 30.0) -> bool:
        """Block until the mirror is open and nothing is pending, or the timeout."""
        with self._state:
            return self._state.wait_for(lambda: self.caught_up, timeout)

    @property
    def caught_up(self) -> bool:
        return self.mirror is not None and not self._pending

    @property
    def down(self) -> bool:
        return self._down

    def pending(self) -> dict[str, bool]:
        """Task ids not yet in the mirror (with whether their logs are due too)."""
        with self._state:
            return dict(self._pending)

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=60)

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            wait = None if self.caught_up else max(0.0, self._retry_at - time.monotonic())
            try:
                batch = [self._queue.get(timeout=wait)]
            except queue.Empty:
                batch = []
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            signals = [it for it in batch if isinstance(it, threading.Event)]
            stop = any(it is _STOP for it in batch)
            if any(it is _RETRY for it in batch):
                self._retry_at = 0.0
            with self._state:
                for it in batch:
                    if isinstance(it, tuple):
                        tid, logs = it
                        self._pending[tid] = self._pending.get(tid, False) or logs
            # While the database is down, new work waits for the next retry instead of
            # paying a connection attempt per transition.
            if not (stop and self._down) and (not self._down or time.monotonic() >= self._retry_at):
                self._attempt()
            for ev in signals:
                ev.set()
            if stop:
                self._save_pending()
                return

    def _attempt(self) -> None:
        if self.mirror is None:
            try:
                assert self.opener is not None
                mirror = self.opener()
            except Exception as exc:  # whatever it is, the daemon goes on without it
                self._failed(exc.message if isinstance(exc, MofsimError) else repr(exc))
                return
            with self._state:
                self.mirror = mirror
            logger.info("mirror database opened")
        stuck = False
        for tid, logs in list(self._pending.items()):
            try:
                self._write(tid, logs)
            except DatabaseError as exc:
                self.failures += 1
                if not self._answers():
                    self._failed(exc.message)
                    return
                # The database is there: it is this task's write that failed.  Keep it
                # for a later try, but let the others through.
                stuck = True
                logger.warning("mirror write for {} failed: {}", tid, exc.message)
                continue
            except MofsimError as exc:
                # Gone from the spool or not a valid record: a retry would fail the same.
                self.failures += 1
                logger.warning("mirror write for {} dropped: {}", tid, exc.message)
            except Exception:  # a bug must cost one mirror row, not the writer thread
                self.failures += 1
                logger.exception("mirror write for {} dropped", tid)
            with self._state:
                # Only this thread adds to the set: nothing newer arrived meanwhile.
                del self._pending[tid]
        self._back_up(stuck)

    def _write(self, task_id: str, with_logs: bool) -> None:
        assert self.mirror is not None
        self.mirror.upsert_task(self.spool.record(task_id))
        if with_logs:
            events = [
                dict(ev.data, seq=ev.offset)
                for ev in read_events(self.spool.paths.events_file(task_id))
            ]
            self.mirror.append_logs(task_id, events)

    def _answers(self) -> bool:
        assert self.mirror is not None
        try:
            self.mirror.ping()
            return True
        except MofsimError:
            return False

    def _schedule_retry(self) -> None:
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.backoff_max_s)

    def _failed(self, reason: str) -> None:
        self._schedule_retry()
        if self._down:
            return
        self._down = True
        # The spool is the truth: work goes on, and the pending ids are written later.
        logger.warning(
            "mirror database unavailable, {} task(s) pending; retrying with backoff: {}",
            len(self._pending),
            reason,
        )
        self._hook(self.on_mirror_down, reason)

    def _back_up(self, stuck: bool) -> None:
        with self._state:
            was_down, self._down = self._down, False
            if stuck:  # keep backing off for the writes that fail on their own
                self._schedule_retry()
            else:
                self._delay = self.backoff_s
                self._retry_at = 0.0
        if was_down:
            logger.info("mirror database back; pending tasks written")
            self._hook(self.on_mirror_up)
        with self._state:  # waiters wake after the hook: the outage is fully over
            self._state.notify_all()

    def _hook(self, hook: Callable[..., None] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception as exc:  # a broken alert hook must not stop the mirror
            logger.error("mirror {} hook failed: {!r}", hook, exc)

    # -- pending ids across restarts ---------------------------------------------------

    def _load_pending(self) -> dict[str, bool]:
        path = self.pending_file
        if path is None or not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
            pending = {str(k): bool(v) for k, v in data["tasks"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("ignoring unreadable {}: {}", path.name, exc)
            pending = {}
        path.unlink(missing_ok=True)
        if pending:
            logger.info("{} task(s) left pending by the last daemon go to the mirror", len(pending))
        return pending

    def _save_pending(self) -> None:
        if self.pending_file is None or not self._pending:
            return
        try:
            atomic_write_json(self.spool.paths, self.pending_file, {"tasks": dict(self._pending)})
            logger.warning(
                "{} task(s) not yet in the mirror, saved for the next start", len(self._pending)
            )
        except MofsimError as exc:
            logger.error("cannot save the mirror's pending tasks: {}", exc.message)
