"""Transitions the disk refused, kept and retried until they go through.

A transition is a few steps in a fixed order (write ``error.json``, rename the job
file, append the event).  When a step fails because the spool cannot be written (a
full disk, a read-only remount), it and the steps after it wait here; the supervisor
retries them on every turn of its loop, so the task's end is recorded as soon as space
returns, while its slot is free at once.  A step that already happened is never
repeated.  A daemon restarted meanwhile finds the claim, and its recovery sweep
resolves it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from spool.errors import MofsimError, StorageError, code_of

# A step answers False when the rest of its transition no longer applies.
Step = Callable[[], bool]

STORAGE_CODE = code_of(StorageError)


def is_storage_error(exc: BaseException) -> bool:
    if isinstance(exc, MofsimError):
        return exc.code == STORAGE_CODE
    return isinstance(exc, OSError)


@dataclass
class _Transition:
    task_id: str
    what: str
    steps: list[Step]


class PendingSteps:
    def __init__(self) -> None:
        self._waiting: list[_Transition] = []
        self.storage_failures = 0
        # Told of every storage failure (the low-disk alert is checked at once).
        self.on_storage_error: Callable[[], None] | None = None

    def run(self, task_id: str, what: str, steps: list[Step]) -> None:
        """Run the steps now, or keep what is left of them for ``retry``.  A task with
        transitions still waiting queues this one behind them, in order."""
        t = _Transition(task_id, what, list(steps))
        if task_id in self.task_ids() or not self._advance(t):
            self._waiting.append(t)

    def retry(self) -> None:
        blocked: set[str] = set()
        for t in list(self._waiting):
            if t.task_id in blocked:
                continue
            if self._advance(t, quiet=True):
                self._waiting.remove(t)
                logger.info("{} of task {} recorded after all", t.what, t.task_id)
            else:
                blocked.add(t.task_id)

    def task_ids(self) -> set[str]:
        return {t.task_id for t in self._waiting}

    def __len__(self) -> int:
        return len(self._waiting)

    def storage_failed(self, what: str, exc: BaseException) -> None:
        self.storage_failures += 1
        logger.error("cannot write to the spool ({}): {}", what, exc)
        if self.on_storage_error is not None:
            try:
                self.on_storage_error()
            except Exception:  # an alert hook must not stop a transition
                logger.exception("storage-error hook failed")

    def _advance(self, t: _Transition, *, quiet: bool = False) -> bool:
        """True when the transition is done (or abandoned after a bug).  ``quiet``: a
        retry that meets the full disk again says nothing more."""
        while t.steps:
            try:
                go_on = t.steps[0]()
            except Exception as exc:
                if is_storage_error(exc):
                    if not quiet:
                        self.storage_failed(f"{t.what} of {t.task_id}", exc)
                    return False
                logger.exception("{} of task {} failed; left to recovery", t.what, t.task_id)
                return True
            t.steps.pop(0)
            if not go_on:
                break
        return True
