"""What ``GET /api/v1/system/queue`` and ``mofsim system queue`` show, read from the
spool and the daemon's slot snapshot (no aiohttp here: the CLI uses it locally).

Queued tasks per priority and the oldest one's age come from the queue directories;
finished ones from the terminal directories; assigned and running ones from the
claimed tasks' records (one per slot at most, so cheap) unless the mirror's counts are
given; what each slot is doing from the snapshot.
"""

from __future__ import annotations

import os
import time
from typing import Any

from mofsim_core.slot_state import daemon_status, read_snapshot
from spool.errors import MofsimError
from spool.events import iso_from_ms
from spool.job import PRIORITIES
from spool.layout import CANONICAL_NAME
from spool.states import TERMINAL_DIRS
from spool.store import Spool


def count_jobs(folder: Any) -> int:
    try:
        return sum(1 for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return 0


def listdir(folder: Any) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []


def _claimed(spool: Spool) -> tuple[int, dict[str, int]]:
    states = {"ASSIGNED": 0, "RUNNING": 0}
    claimed = 0
    for slot in listdir(spool.paths.claimed):
        for name in listdir(spool.paths.claimed / slot):
            if not name.endswith(".json") or name.startswith("."):
                continue
            claimed += 1
            try:
                state = spool.record(name[: -len(".json")])["status"]
            except MofsimError:
                continue  # finished meanwhile
            if state in states:
                states[state] += 1
    return claimed, states


def queued_by_priority(spool: Spool) -> tuple[dict[str, int], int | None]:
    """Queued job files per priority name, and the oldest one's creation (epoch ms)."""
    names = {v: k for k, v in PRIORITIES.items()}
    by_priority = dict.fromkeys(PRIORITIES, 0)
    oldest_ms: int | None = None
    for q in spool.queued():
        by_priority[names[q.priority]] += 1
        m = CANONICAL_NAME.fullmatch(q.name)
        if m:
            created = int(m.group(1))
            oldest_ms = created if oldest_ms is None else min(oldest_ms, created)
    return by_priority, oldest_ms


def queue_stats(spool: Spool, mirror_counts: dict[str, int] | None = None) -> dict[str, Any]:
    by_priority, oldest_ms = queued_by_priority(spool)
    claimed, claimed_states = _claimed(spool)
    by_state: dict[str, int | None]
    if mirror_counts is not None:
        by_state, source = dict(mirror_counts), "spool+mirror"
    else:
        by_state, source = {"PENDING": 0, **claimed_states}, "spool"
    by_state["QUEUED"] = sum(by_priority.values())
    for state, dirname in TERMINAL_DIRS.items():
        by_state[state] = count_jobs(spool.root / dirname)
    snap = read_snapshot(spool.root)
    daemon = daemon_status(spool.root, snapshot=snap)
    slots = snap["slots"] if snap is not None and daemon["snapshot_current"] else []
    states = [s.get("state") for s in slots]
    running = [
        {
            "task_id": s["current_task"]["task_id"],
            "slot_id": s.get("slot_id"),
            "started_at": iso_from_ms(float(s["current_task"]["started_at"]) * 1000),
        }
        for s in slots
        if s.get("current_task")
    ]
    return {
        "queued": {
            "total": by_state["QUEUED"],
            "by_priority": by_priority,
            "oldest_queued_at": iso_from_ms(oldest_ms),
            "oldest_age_seconds": None
            if oldest_ms is None
            else round(time.time() - oldest_ms / 1000, 3),
        },
        "claimed": claimed,
        "by_state": by_state,
        "counts_source": source,
        "running": running,
        "slots": {
            "total": len(slots),
            "busy": states.count("busy"),
            "idle": states.count("idle"),
            "loading": states.count("loading"),
            "down": states.count("down") + states.count("starting") + states.count("offline"),
        },
        "daemon_running": daemon["alive"],
    }
