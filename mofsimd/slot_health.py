"""Which slots can take work: executors that fell silent, and spare slots standing in.

An executor beats from a thread of its own; one silent for ``heartbeat_timeout_s`` is
offline until it beats again.  Spare slots (``spare_slots``) stand in for compute slots
that are lost, down or offline.

``SlotHealth`` is a mixin of ``Supervisor``: it holds no state of its own, and the
attributes it names below are the supervisor's, set in ``Supervisor.__init__``.
"""

from __future__ import annotations

import time

from loguru import logger

from mofsim_core.config import Config
from mofsim_core.devices import DeviceStatus
from mofsimd import lifecycle
from mofsimd.executor_pool import Executor


class SlotHealth:
    config: Config
    life: lifecycle.Lifecycle
    executors: dict[str, Executor]
    spare: frozenset[str]

    def _watch_heartbeats(self) -> None:
        """A live executor silent for ``heartbeat_timeout_s`` (stopped, wedged) is
        offline: it takes no task, and a task handed to it that it never began goes back
        to its place in the queue, no attempt counted.  A task it is running keeps its
        timeout: a process stopped for a while may well go on.  It is back once it
        beats again."""
        now = time.time()
        limit = self.config.heartbeat_timeout_s
        for ex in self.executors.values():
            beat = getattr(ex, "last_beat", None)
            if beat is None or not ex.alive:
                continue  # a Slurm pilot keeps its own heartbeat; a dead one restarts
            stale = now - beat > limit
            if stale and not ex.offline:
                ex.offline = True
                logger.error(
                    "executor {} offline: no heartbeat for {:.0f} s", ex.slot_id, now - beat
                )
                task = ex.current
                if task is not None and not task.started_seen:
                    ex.current = None
                    self.life.requeue(
                        task, None, f"executor {ex.slot_id} stopped answering before starting it"
                    )
            elif not stale and ex.offline:
                ex.offline = False
                logger.info("executor {} answers again", ex.slot_id)

    def _standby(self, status: dict[str, DeviceStatus]) -> tuple[int, float | None]:
        """How many spare slots may stand in now (compute slots lost, down or offline,
        less the spares already at work), and the largest compute card's memory."""
        if not self.spare:
            return 0, None
        lost = 0
        largest: float | None = None
        for sid, ex in self.executors.items():
            if sid in self.spare:
                continue
            st = status.get(sid)
            if (st is not None and not st.available) or not ex.alive or ex.offline:
                lost += 1
            if st is not None and st.memory_total_mb:
                largest = max(largest or 0.0, st.memory_total_mb)
        working = sum(1 for sid in self.spare if self.executors[sid].current is not None)
        return max(0, lost - working), largest
