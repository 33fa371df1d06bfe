"""Scheduling rules as pure functions: priority, FIFO, affinity, memory guard, backoff."""

from __future__ import annotations

from mofsimd.scheduler import FreeSlot, QueuedJob, plan


def q(
    tid: str,
    prio: int = 2,
    model: str = "sevennet-0",
    name: str | None = None,
    not_before: float = 0.0,
    memory_mb: float | None = None,
) -> QueuedJob:
    return QueuedJob(tid, model, prio, name or f"0000000000000-{tid}.json", not_before, memory_mb)


def test_priority_then_fifo() -> None:
    queue = [
        q("low", 3, name="1-low"),
        q("n2", 2, name="3-n2"),
        q("n1", 2, name="2-n1"),
        q("crit", 0, name="9-crit"),
    ]
    p = plan(queue, [FreeSlot("a"), FreeSlot("b"), FreeSlot("c")], now=0)
    assert [j.task_id for j, _ in p.assignments] == ["crit", "n1", "n2"]


def test_model_affinity_prefers_the_slot_with_the_model_loaded() -> None:
    slots = [FreeSlot("gpu0", ("mace-mp",), order=0), FreeSlot("gpu1", ("sevennet-0",), order=1)]
    p = plan([q("t1", model="sevennet-0"), q("t2", model="mace-mp")], slots, now=0)
    assert [(j.task_id, s.slot_id) for j, s in p.assignments] == [("t1", "gpu1"), ("t2", "gpu0")]


def test_without_affinity_an_empty_then_idle_slot_is_chosen() -> None:
    slots = [
        FreeSlot("a", ("x",), utilization_percent=0, order=0),
        FreeSlot("b", (), utilization_percent=50, order=1),
        FreeSlot("c", (), utilization_percent=10, order=2),
    ]
    ((job, slot),) = plan([q("t")], slots, now=0).assignments
    assert slot.slot_id == "c"


def test_memory_guard_and_lost_devices_get_no_work() -> None:
    slots = [
        FreeSlot("lost", available=False),
        FreeSlot("full", free_memory_mb=500),
        FreeSlot("ok", free_memory_mb=20000),
    ]
    p = plan([q("a"), q("b")], slots, now=0, min_free_memory_mb=2048)
    assert [s.slot_id for _, s in p.assignments] == ["ok"]
    assert sorted(p.held_back) == ["full", "lost"]


def test_backoff_skips_a_job_but_not_the_ones_behind_it() -> None:
    p = plan([q("retry", 0, not_before=100.0), q("next", 2)], [FreeSlot("a")], now=50.0)
    assert [j.task_id for j, _ in p.assignments] == ["next"]
    p = plan([q("retry", 0, not_before=100.0), q("next", 2)], [FreeSlot("a")], now=150.0)
    assert [j.task_id for j, _ in p.assignments] == ["retry"]


def test_an_estimated_job_takes_the_smallest_card_that_holds_it_and_waits_otherwise() -> None:
    small = FreeSlot("s", free_memory_mb=10_000, memory_total_mb=12_000, order=0)
    big = FreeSlot("b", free_memory_mb=70_000, memory_total_mb=80_000, order=1)
    p = plan([q("mid", memory_mb=8_000)], [big, small], now=0)
    assert [(j.task_id, s.slot_id) for j, s in p.assignments] == [("mid", "s")]
    p = plan([q("huge", 0, memory_mb=60_000), q("tiny", 2, memory_mb=100)], [big, small], now=0)
    assert sorted((j.task_id, s.slot_id) for j, s in p.assignments) == [
        ("huge", "b"),
        ("tiny", "s"),
    ]
    # Nothing holds it: it waits, and a job behind it takes the card.
    p = plan([q("giant", 0, memory_mb=90_000), q("next", 2)], [big], now=0)
    assert [(j.task_id, s.slot_id) for j, s in p.assignments] == [("next", "b")]
    # Without an estimate the old order stands: affinity first, whatever the size.
    warm_big = FreeSlot("b", ("m",), free_memory_mb=70_000, memory_total_mb=80_000)
    p = plan([q("plain", model="m")], [small, warm_big], now=0)
    assert p.assignments[0][1].slot_id == "b"


def test_a_spare_slot_takes_no_work_while_the_compute_slots_are_whole() -> None:
    spare = FreeSlot("gpu7", ("sevennet-0",), spare=True, order=1)
    p = plan([q("a"), q("b")], [FreeSlot("gpu0", order=0), spare], now=0)
    assert [(j.task_id, s.slot_id) for j, s in p.assignments] == [("a", "gpu0")]
    # Nothing but the spare is free: the queue waits for a compute slot.
    assert plan([q("a")], [spare], now=0).assignments == []


def test_a_spare_slot_stands_in_for_each_lost_compute_slot() -> None:
    spares = [FreeSlot("gpu6", spare=True, order=6), FreeSlot("gpu7", spare=True, order=7)]
    lost = FreeSlot("gpu0", available=False, order=0)
    p = plan([q("a"), q("b"), q("c")], [lost, *spares], now=0, standby=1)
    assert [(j.task_id, s.slot_id) for j, s in p.assignments] == [("a", "gpu6")]
    p = plan([q("a"), q("b"), q("c")], spares, now=0, standby=2)
    assert [j.task_id for j, _ in p.assignments] == ["a", "b"]


def test_a_job_too_large_for_every_compute_card_may_use_a_larger_spare() -> None:
    compute = FreeSlot("gpu0", free_memory_mb=20_000, memory_total_mb=24_000, order=0)
    spare = FreeSlot("gpu7", free_memory_mb=70_000, memory_total_mb=80_000, spare=True)
    queue = [q("huge", memory_mb=50_000), q("small", memory_mb=1_000)]
    p = plan(queue, [compute, spare], now=0, largest_compute_mb=24_000)
    assert sorted((j.task_id, s.slot_id) for j, s in p.assignments) == [
        ("huge", "gpu7"),
        ("small", "gpu0"),
    ]
    # A job that a compute card could hold waits for one instead.
    p = plan([q("mid", memory_mb=20_000)], [spare], now=0, largest_compute_mb=24_000)
    assert p.assignments == []
