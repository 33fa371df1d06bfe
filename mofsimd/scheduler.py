"""Which queued job goes to which free slot.  Pure functions, no I/O.

Rules (spec 4.4/4.5): strict priority (CRITICAL < HIGH < NORMAL < LOW), FIFO within a
level, no preemption of running tasks; among free slots, one that already holds the
job's model wins (model affinity), then the least busy; slots that report their device
lost or short of memory get no work (memory guard).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QueuedJob:
    task_id: str
    model: str  # canonical model key, as the executors' cache reports it
    priority: int
    name: str  # file name: sorts FIFO within a priority
    not_before: float = 0.0  # retry backoff


@dataclass(frozen=True)
class FreeSlot:
    slot_id: str
    loaded_models: tuple[str, ...] = ()
    available: bool = True
    free_memory_mb: float | None = None
    utilization_percent: float | None = None
    order: int = 0


@dataclass
class Plan:
    assignments: list[tuple[QueuedJob, FreeSlot]] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)  # slots skipped by the memory guard


def usable(slot: FreeSlot, min_free_memory_mb: float) -> bool:
    if not slot.available:
        return False
    return slot.free_memory_mb is None or slot.free_memory_mb >= min_free_memory_mb


def choose_slot(job: QueuedJob, slots: list[FreeSlot]) -> FreeSlot | None:
    if not slots:
        return None

    def rank(s: FreeSlot) -> tuple[int, int, float, int]:
        affinity = 0 if job.model in s.loaded_models else 1
        # An empty cache costs nobody an eviction.
        crowded = len(s.loaded_models)
        busy = s.utilization_percent if s.utilization_percent is not None else 0.0
        return (affinity, crowded, busy, s.order)

    return min(slots, key=rank)


def plan(
    queue: list[QueuedJob], free: list[FreeSlot], *, now: float, min_free_memory_mb: float = 0.0
) -> Plan:
    """Assign jobs in priority/FIFO order to the best free slot each."""
    result = Plan()
    slots = []
    for s in free:
        if usable(s, min_free_memory_mb):
            slots.append(s)
        else:
            result.held_back.append(s.slot_id)
    ordered = sorted(queue, key=lambda j: (j.priority, j.name))
    for job in ordered:
        if not slots:
            break
        if job.not_before > now:
            continue
        slot = choose_slot(job, slots)
        if slot is None:
            break
        result.assignments.append((job, slot))
        slots.remove(slot)
    return result
