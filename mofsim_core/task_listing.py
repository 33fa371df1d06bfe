"""Lists of tasks for both API dialects: filtered, paged, each caller its own.

A page comes from the mirror when it answers, else from reading the spool; either way
rows of unfinished tasks are checked against the spool, whose state is always the
latest.  Plain blocking functions: handlers call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from loguru import logger

from executors.registry import canonical_task_type
from mofsim_core.eta import EtaBoard
from mofsim_core.owners import OWNER, Caller
from mofsim_core.task_records import (
    list_from_spool,
    mirror_task,
    public_record,
    queue_positions,
)
from spool.errors import DatabaseError, MofsimError, ValidationError
from spool.states import TERMINAL_STATES, TaskState
from spool.store import Spool

if TYPE_CHECKING:
    from mofsim_core.mirror import Mirror

__all__ = ["normalize_states", "list_tasks"]


def normalize_states(value: str | list[str] | None) -> list[str] | None:
    """``running``, ``QUEUED,RUNNING``, MIRA's lowercase names: the states meant."""
    if value is None or value == "":
        return None
    parts = value if isinstance(value, list) else str(value).split(",")
    out = []
    for part in parts:
        state = TaskState.parse(str(part))
        if state is None:
            raise ValidationError(
                f"unknown status {str(part).strip()!r}; expected one of {', '.join(TaskState)}",
                field="status",
            )
        out.append(state.value)
    return out


def _canonical_model(model: str, spool: Spool) -> str:
    from executors.models import resolve_model

    try:
        return resolve_model(model, spool.paths.models).key
    except MofsimError:
        return model  # not a model this server knows: nothing matches, which is the answer


_CLAIMED = (TaskState.ASSIGNED.value, TaskState.RUNNING.value)


def _list_from_mirror(
    spool: Spool,
    mirror: Mirror,
    states: list[str] | None,
    kind: str | None,
    model_key: str | None,
    limit: int,
    offset: int,
    order: str,
    owner: str | None,
) -> tuple[list[dict[str, Any]], int]:
    """The mirror's page and total.  A claimed task's row says ASSIGNED until the task
    ends (the executor, not the daemon, records that it started), so a filter on one of
    ASSIGNED and RUNNING asks for both and counts only the claimed tasks whose state in
    the spool matches; the page is filtered the same way by ``list_tasks``."""
    query = functools.partial(
        mirror.list_tasks, task_type=kind, model=model_key, order=order, owner=owner
    )
    split = states is not None and sum(s in states for s in _CLAIMED) == 1
    if not split or states is None:
        return query(status=states, limit=limit, offset=offset)
    wide = [*states, *(s for s in _CLAIMED if s not in states)]
    rows, total = query(status=wide, limit=limit, offset=offset)
    # Claimed tasks are few (one per slot, plus rows not yet caught up with their end).
    claimed, _ = query(status=list(_CLAIMED), limit=10_000, offset=0)
    for row in claimed:
        try:
            now = spool.record(str(row["task_id"])).get("status")
        except MofsimError:
            now = row.get("status")
        if now not in states:
            total -= 1
    return rows, max(total, 0)


def list_tasks(
    spool: Spool,
    mirror: Mirror | None,
    *,
    status: str | list[str] | None = None,
    task_type: str | None = None,
    model: str | None = None,
    limit: int = 20,
    offset: int = 0,
    order: str = "created_at desc",
    caller: Caller = OWNER,
) -> tuple[list[dict[str, Any]], int]:
    """A page of task records (newest first) and the total count matching; a caller
    who does not see all gets its own tasks only.

    From the mirror when it answers, else by reading the spool.  Rows of tasks not yet
    finished are refreshed from the spool, whose state is always the latest."""
    owner = caller.only_owner
    states = normalize_states(status)
    kind = canonical_task_type(task_type) if task_type else None
    model_key = _canonical_model(model, spool) if model else None
    rows: list[dict[str, Any]] | None = None
    if mirror is not None:
        try:
            rows, total = _list_from_mirror(
                spool, mirror, states, kind, model_key, limit, offset, order, owner
            )
        except DatabaseError as exc:
            logger.warning("mirror unavailable, listing from the spool: {}", exc.message)
    if rows is None:
        rows, total = list_from_spool(spool, states, kind, model_key, limit, offset, order, owner)
    items = []
    # Listing the queue costs in proportion to its length: only for pages that show it.
    queue = functools.cache(lambda: queue_positions(spool))
    for row in rows:
        if row.get("status") not in TERMINAL_STATES:
            task_id = str(row["task_id"])
            if row.get("status") == "QUEUED" and task_id in queue():
                items.append(public_record(row, queue()))  # still waiting: the row is true
                continue
            try:
                fresh = spool.record(task_id)
            except MofsimError:
                fresh = row  # gone from the spool: the mirror's row is all there is
            if fresh.get("status") != row.get("status"):
                # Changed behind the mirror's back (e.g. cancelled from the CLI while
                # queued, or started): repair the row, and keep the page true to its
                # filter.
                mirror_task(spool, mirror, str(row["task_id"]))
            if states is not None and fresh.get("status") not in states:
                continue
            row = fresh
        items.append(public_record(row, queue() if row.get("status") == "QUEUED" else None))
    board = EtaBoard.of(spool.root)
    return [board.annotate(item) for item in items], total
