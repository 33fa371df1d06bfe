"""Task transitions as the supervisor performs them: spool rename, event, mirror row.

The supervisor decides *when*; this module does *what* a transition means, in the one
order that survives a crash at any point: outcome files first (``result.json`` by the
executor, ``error.json`` here), then the rename, then the event and the mirror.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import replace
from typing import IO, Any

from loguru import logger

from mofsim_core.config import Config
from mofsim_core.mirror import Mirror
from mofsimd.executor_pool import Executor, RunningTask
from mofsimd.mirror_writer import MirrorWriter
from mofsimd.pending import PendingSteps
from spool import claim_lock, transitions
from spool.errors import MofsimError, StorageError, TaskError, code_of
from spool.job import Job, priority_name
from spool.recovery import record_failure
from spool.store import Spool, read_job


class Lifecycle:
    def __init__(self, spool: Spool, config: Config) -> None:
        self.spool = spool
        self.config = config
        self.mirror: Mirror | None = None
        self.writer: MirrorWriter | None = None
        self._lock: IO[str] | None = None
        self._model_keys: dict[str, str] = {}
        # Told of every terminal transition (webhooks, failure counts); must be cheap.
        self.on_transition: Callable[[str, str], None] | None = None
        # Transitions the disk refused (ENOSPC): retried from the supervisor's loop.
        self.steps = PendingSteps()

    # -- daemon-wide -------------------------------------------------------------------
    def open(self) -> None:
        from mofsim_core.mirror_factory import database_url, mirror_location, open_mirror

        database_url(self.config)  # a malformed URL is a configuration error: refuse now
        self._take_lock()

        def opener() -> Any:
            return open_mirror(self.config, self.spool.paths)

        try:
            self.mirror = opener()
        except MofsimError as exc:
            # The spool is the truth: run without the mirror, the writer thread keeps
            # trying to open it and then writes everything that happened meanwhile.
            logger.warning(
                "mirror {} unavailable, working from the spool and retrying: {}",
                mirror_location(self.config, self.spool.paths),
                exc.message,
            )
            self.mirror = None
        self.writer = MirrorWriter(
            self.spool,
            self.mirror,
            opener=opener,
            pending_file=self.spool.paths.state_dir / "mirror_pending.json",
        )
        self.writer.start()

    def _take_lock(self) -> None:
        """One daemon per spool: two would each think the other's claims are orphans."""
        path = self.spool.paths.state_dir / "daemon.lock"
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise StorageError(
                f"another mofsim daemon (pid {pid}) is running on spool {self.spool.root}"
            ) from exc
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock = fh

    def close(self) -> None:
        mirror = self.mirror
        if self.writer is not None:
            self.writer.stop()
            mirror = self.writer.mirror  # the one the writer opened, if it had to
            self.writer = None
        if mirror is not None:
            mirror.close()
        self.mirror = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- admission ---------------------------------------------------------------------
    def model_key(self, name: str) -> str:
        key = self._model_keys.get(name)
        if key is None:
            from executors.models import resolve_model

            key = resolve_model(name, self.spool.paths.models).key
            self._model_keys[name] = key
        return key

    def validate(self, job: Job) -> Job:
        """What the spool cannot check: the task type and the model exist, the
        parameters make sense and stay within the configured bounds (steps, timeout;
        the executor checks the atoms when it loads the structure).  Returns the job
        with its task type's canonical name."""
        from executors.models import check_usable, resolve_model
        from executors.registry import canonical_task_type, validate_parameters

        task_type = canonical_task_type(job.task_type)
        self.model_key(job.model)
        check_usable(resolve_model(job.model, self.spool.paths.models))
        self.spool.limits.check_steps(validate_parameters(task_type, job.parameters))
        self.spool.limits.check_timeout(job.timeout)
        return job if task_type == job.task_type else replace(job, task_type=task_type)

    # -- transitions -------------------------------------------------------------------
    def assigned(self, job: Job, ex: Executor) -> None:
        try:
            self.spool.events(job.task_id, request_id=job.request_id).status(
                "ASSIGNED",
                f"Task assigned to {ex.slot_id}",
                slot=ex.slot_id,
                priority=priority_name(job.priority),
                attempts=job.attempts,
            )
        except (OSError, StorageError) as exc:
            # Only a log line is lost; the executor meets the full disk itself and says so.
            self.steps.storage_failed(f"ASSIGNED event of {job.task_id}", exc)
        self.mirror_task(job.task_id)
        logger.bind(task_id=job.task_id, request_id=job.request_id).info(
            "task {} assigned to {}", job.task_id, ex.slot_id
        )

    def finish(
        self,
        task: RunningTask,
        state: str,
        *,
        code: int | None = None,
        message: str | None = None,
        slot: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        paths = self.spool.paths

        def outcome() -> bool:
            if state != "COMPLETED":
                extra = {k: v for k, v in (error or {}).items() if k not in ("code", "message")}
                record_failure(
                    self.spool,
                    task.task_id,
                    state,
                    code or code_of(TaskError),
                    message or state.lower(),
                    **extra,
                )
            return True

        def rename() -> bool:
            try:
                transitions.finish(paths, task.claimed_path, state)
            except FileNotFoundError:
                if not (paths.terminal_dir(state) / task.claimed_path.name).exists():
                    logger.warning("claimed file of {} vanished before {}", task.task_id, state)
            claim_lock.discard(task.claimed_path)
            return True

        def announce() -> bool:
            level = (
                "INFO" if state == "COMPLETED" else "WARNING" if state == "CANCELLED" else "ERROR"
            )
            text = f"Task {state.lower()}" + (
                f": {message}" if message and state != "COMPLETED" else ""
            )
            self.spool.events(task.task_id, request_id=task.request_id).status(
                state, text, level=level, slot=slot, code=code
            )
            marker = paths.cancel_marker(task.task_id)
            if marker.exists():
                marker.unlink(missing_ok=True)
            self.mirror_task(task.task_id, with_logs=True)
            if self.on_transition is not None:
                self.on_transition(task.task_id, state)
            logger.bind(task_id=task.task_id, request_id=task.request_id).info(
                "task {} {}", task.task_id, state
            )
            return True

        self.steps.run(task.task_id, f"end as {state}", [outcome, rename, announce])

    def requeue(self, task: RunningTask, attempts: int | None, reason: str) -> None:
        """Back to the queue; ``attempts`` None keeps the count (the task was not at fault)
        and its file name, hence its place in the queue."""

        def move() -> bool:
            try:
                job = read_job(task.claimed_path)
            except MofsimError:
                return False
            if attempts is not None:
                job = job.with_attempts(attempts)
            transitions.requeue(self.spool.paths, task.claimed_path, job)
            claim_lock.discard(task.claimed_path)
            return True

        def announce() -> bool:
            extra = {} if attempts is None else {"attempts": attempts}
            self.spool.events(task.task_id, request_id=task.request_id).status(
                "QUEUED", f"Task requeued: {reason}", level="WARNING", **extra
            )
            self.mirror_task(task.task_id)
            return True

        self.steps.run(task.task_id, "requeue", [move, announce])

    def requeue_after_shutdown(self, task: RunningTask) -> None:
        """A task interrupted by shutdown did not fail: its attempt is not counted."""
        self.requeue(task, None, "daemon shutting down")

    def executor_restarted(self, ex: Executor) -> None:
        logger.info("executor {} restarted ({} restarts)", ex.slot_id, ex.restarts)

    # -- mirror ------------------------------------------------------------------------
    def mirror_task(self, task_id: str, *, with_logs: bool = False) -> None:
        if self.writer is not None:
            self.writer.submit(task_id, with_logs)
