"""The queue's ETA board: playing the queue forward on the slots, and reading it back."""

from __future__ import annotations

from pathlib import Path

from mofsim_core.eta import EtaBoard, Running, Waiting, iso, plan_eta, write_board


def test_the_queue_is_played_forward_on_the_slot_that_frees_first() -> None:
    now = 1_000_000.0
    board = plan_eta(
        now,
        2,
        [Running("r1", now - 30, 100.0)],  # ends at now + 70
        [Waiting("q1", 50.0), Waiting("q2", 40.0), Waiting("q3", 10.0, not_before=now + 500)],
    )
    assert board["r1"]["estimated_start"] == iso(now - 30)
    assert board["q1"]["estimated_start"] == iso(now)  # the idle slot
    assert board["q2"]["estimated_start"] == iso(now + 50)  # q1's slot frees before r1's
    assert board["q3"]["estimated_start"] == iso(now + 500)  # its retry backoff
    assert board["q2"]["estimated_duration_s"] == 40.0
    assert board["q2"]["estimated_end"] == iso(now + 90)


def test_an_unknown_duration_leaves_what_follows_it_on_that_slot_unknown() -> None:
    now = 2_000_000.0
    board = plan_eta(now, 1, [], [Waiting("a", None), Waiting("b", 5.0)])
    assert board["a"] == {"estimated_start": iso(now), "estimated_duration_s": None}
    assert board["b"]["estimated_start"] is None and board["b"]["estimated_duration_s"] == 5.0
    # A task running past its estimate is taken to end now, not in the past.
    late = plan_eta(now, 1, [Running("r", now - 100, 10.0)], [Waiting("c", 1.0)])
    assert late["c"]["estimated_start"] == iso(now)


def test_readers_annotate_live_records_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    board = EtaBoard.of(tmp_path)
    queued = {"task_id": "q", "status": "QUEUED"}
    assert board.annotate(queued)["estimated_start"] is None  # no board yet: unknown
    write_board(state, plan_eta(3_000_000.0, 1, [], [Waiting("q", 12.0)]), 3_000_000.0)
    got = board.annotate(queued)
    assert got["estimated_start"] == iso(3_000_000.0) and got["estimated_duration_s"] == 12.0
    done = board.annotate({"task_id": "q", "status": "COMPLETED", "estimate": {"duration_s": 9}})
    assert done["estimated_start"] is None and done["estimated_duration_s"] is None
    assert "estimate" not in done
    fresh = board.annotate({"task_id": "new", "status": "QUEUED", "estimate": {"duration_s": 9}})
    assert fresh["estimated_start"] is None and fresh["estimated_duration_s"] == 9


def test_mira_minutes_come_from_the_estimates() -> None:
    from datetime import UTC, datetime

    from mofsim_core.mira_shapes import mira_task

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    queued = mira_task(
        {
            "task_id": "q",
            "status": "QUEUED",
            "estimated_start": "2026-01-01T12:10:00Z",
            "estimated_duration_s": 300.0,
        },
        now,
    )
    assert queued["estimated_time_minutes"] == 5.0
    assert queued["estimated_remaining_minutes"] == 15.0  # 10 waiting, 5 running
    running = mira_task(
        {
            "task_id": "r",
            "status": "RUNNING",
            "started_at": "2026-01-01T11:58:00Z",
            "estimated_duration_s": 300.0,
            "progress": 0.9,
        },
        now,
    )
    assert running["estimated_remaining_minutes"] == 3.0
    # Without an estimate: the progress so far, as before.
    plain = mira_task(
        {
            "task_id": "p",
            "status": "RUNNING",
            "started_at": "2026-01-01T11:58:00Z",
            "progress": 0.5,
        },
        now,
    )
    assert plain["estimated_time_minutes"] is None and plain["estimated_remaining_minutes"] == 2.0
