"""Which queued job goes to which free slot.  Pure functions, no I/O.

Rules (spec 4.4/4.5): strict priority (CRITICAL < HIGH < NORMAL < LOW), FIFO within a
level, no preemption of running tasks; among free slots, one that already holds the
job's model wins (model affinity), then the least busy; slots that report their device
lost or short of memory get no work (memory guard).  A job with an estimated peak
memory goes only to a card whose free memory covers it, the smallest such card first
(the big ones stay free for big jobs); a job that fits no free card waits, and the jobs
behind it may take the cards it cannot use.

Spare slots (spec 2.1: GPU 7 kept for model warm-up and as a standby) take no work while
the compute slots are whole: models may be preloaded on them, and they stand in for a
compute slot that is lost or offline, one for one, or take a job too large for every
compute card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spool.job import Job


@dataclass(frozen=True)
class QueuedJob:
    task_id: str
    model: str  # canonical model key, as the executors' cache reports it
    priority: int
    name: str  # file name: sorts FIFO within a priority
    not_before: float = 0.0  # retry backoff
    memory_mb: float | None = None  # estimated peak memory, margin included
    # What the task declares it needs (options.expected_duration, else its timeout);
    # None: undeclared.  A slot that ends sooner (a Slurm pilot) does not take it.
    duration_s: float | None = None


@dataclass(frozen=True)
class FreeSlot:
    slot_id: str
    loaded_models: tuple[str, ...] = ()
    available: bool = True
    free_memory_mb: float | None = None
    utilization_percent: float | None = None
    order: int = 0
    memory_total_mb: float | None = None
    time_left_s: float | None = None  # None: no end in sight (a local slot)
    spare: bool = False


@dataclass
class Plan:
    assignments: list[tuple[QueuedJob, FreeSlot]] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)  # slots skipped by the memory guard


def usable(slot: FreeSlot, min_free_memory_mb: float) -> bool:
    if not slot.available:
        return False
    return slot.free_memory_mb is None or slot.free_memory_mb >= min_free_memory_mb


def fits(job: QueuedJob, slot: FreeSlot) -> bool:
    """Free memory covers the job's estimate; a slot without memory readings (CPU) and a
    job without an estimate always fit."""
    if job.memory_mb is None or slot.free_memory_mb is None:
        return True
    return slot.free_memory_mb >= job.memory_mb


def in_time(job: QueuedJob, slot: FreeSlot) -> bool:
    """A slot that will be gone before the job could end (a Slurm pilot near its time
    limit) does not take it."""
    if slot.time_left_s is None or job.duration_s is None:
        return True
    return job.duration_s <= slot.time_left_s


def expected_duration(job: Job) -> float | None:
    value = job.options.get("expected_duration")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return job.timeout


def choose_slot(job: QueuedJob, slots: list[FreeSlot]) -> FreeSlot | None:
    slots = [s for s in slots if fits(job, s) and in_time(job, s)]
    if not slots:
        return None

    def rank(s: FreeSlot) -> tuple[float, int, int, float, int]:
        # With an estimate, the smallest card that holds the job; else size is no matter.
        size = s.memory_total_mb if job.memory_mb is not None and s.memory_total_mb else 0.0
        affinity = 0 if job.model in s.loaded_models else 1
        # An empty cache costs nobody an eviction.
        crowded = len(s.loaded_models)
        busy = s.utilization_percent if s.utilization_percent is not None else 0.0
        return (size, affinity, crowded, busy, s.order)

    return min(slots, key=rank)


def plan(
    queue: list[QueuedJob],
    free: list[FreeSlot],
    *,
    now: float,
    min_free_memory_mb: float = 0.0,
    standby: int = 0,
    largest_compute_mb: float | None = None,
) -> Plan:
    """Assign jobs in priority/FIFO order to the best free slot each.

    ``standby``: how many spare slots may stand in now (compute slots lost or offline,
    less the spares already at work); ``largest_compute_mb``: the largest compute
    card's total memory, above which a job may go to a spare card that holds it."""
    result = Plan()
    slots: list[FreeSlot] = []
    spares: list[FreeSlot] = []
    for s in free:
        if usable(s, min_free_memory_mb):
            (spares if s.spare else slots).append(s)
        else:
            result.held_back.append(s.slot_id)
    ordered = sorted(queue, key=lambda j: (j.priority, j.name))
    for job in ordered:
        if not slots and not spares:
            break
        if job.not_before > now:
            continue
        slot = choose_slot(job, slots) if slots else None
        if slot is not None:
            slots.remove(slot)
        elif spares and (standby > 0 or _too_large(job, largest_compute_mb)):
            slot = choose_slot(job, spares)
            if slot is None:
                continue
            spares.remove(slot)
            if not _too_large(job, largest_compute_mb):
                standby -= 1
        else:
            continue  # no free card holds it: it waits, smaller jobs may go on
        result.assignments.append((job, slot))
    return result


def _too_large(job: QueuedJob, largest_compute_mb: float | None) -> bool:
    return (
        job.memory_mb is not None
        and largest_compute_mb is not None
        and job.memory_mb > largest_compute_mb
    )
