"""Transitions the disk refused wait, and go through once it accepts them."""

from __future__ import annotations

import errno

from mofsimd.pending import PendingSteps, is_storage_error
from spool.errors import StorageError, ValidationError


def test_a_refused_step_waits_and_steps_already_done_are_not_repeated() -> None:
    done: list[str] = []
    full = [True]
    alerts: list[int] = []

    def write() -> bool:
        done.append("write")
        return True

    def event() -> bool:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        done.append("event")
        return True

    steps = PendingSteps()
    steps.on_storage_error = lambda: alerts.append(1)
    steps.run("t1", "end as FAILED", [write, event])
    steps.run("t1", "requeue", [lambda: done.append("later") is None])
    assert done == ["write"] and len(steps) == 2 and steps.task_ids() == {"t1"}
    assert alerts == [1] and steps.storage_failures == 1
    steps.retry()  # still full: nothing moves, the order of t1's transitions holds
    assert done == ["write"] and len(steps) == 2
    full[0] = False
    steps.retry()
    assert done == ["write", "event", "later"] and len(steps) == 0


def test_a_step_saying_no_ends_its_transition_and_a_bug_abandons_it() -> None:
    done: list[str] = []

    def bug() -> bool:
        raise KeyError("bug")

    steps = PendingSteps()
    steps.run("t", "requeue", [lambda: False, lambda: done.append("x") is None])
    steps.run("u", "requeue", [bug, lambda: done.append("y") is None])
    assert done == [] and len(steps) == 0


def test_storage_errors_are_told_apart_from_other_errors() -> None:
    assert is_storage_error(OSError(errno.ENOSPC, "full"))
    assert is_storage_error(StorageError("cannot write"))
    assert not is_storage_error(ValidationError("bad"))
    assert not is_storage_error(KeyError("x"))
