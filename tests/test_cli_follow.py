"""Following a task's events: the poll loop and its displays, without sleeping.

The follower's wait between polls is replaced by a function that advances the task, so
each poll sees what a daemon would have written by then.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from mofsim_cli.follow import (
    BarDisplay,
    Follower,
    JsonLinesDisplay,
    PlainDisplay,
    QuietDisplay,
    follow,
    make_display,
)
from spool import Job, Spool, transitions
from spool.errors import TaskNotFound
from spool.events import Event, read_events


def queued_task(tmp_path: Path) -> tuple[Spool, Job]:
    sp = Spool(tmp_path)
    job = Job.from_dict(
        {"task_type": "optimization", "model": "emt", "structure": "builtin:HKUST-1"}
    )
    sp.submit(job)
    return sp, job


def scripted(steps: list[Callable[[], None]]) -> Callable[[float], None]:
    """A sleep that runs the next step of a script; polling past its end is a bug."""
    pending = list(steps)

    def sleep(seconds: float) -> None:
        assert seconds == pytest.approx(0.2)
        if not pending:
            raise AssertionError("follower polled after the script ended")
        pending.pop(0)()

    return sleep


def no_sleep(seconds: float) -> None:
    raise AssertionError("a finished task must not be polled")


def run_task(sp: Spool, job: Job) -> list[Callable[[], None]]:
    """claim + RUNNING, two progress steps, then COMPLETED: one step per poll."""
    claimed: list[Path] = []
    ev = sp.events(job.task_id)

    def claim() -> None:
        loc = sp.locate(job.task_id)
        assert loc is not None
        path = transitions.claim(sp.paths, loc.path, "cpu0", job.task_id)
        assert path is not None
        claimed.append(path)
        ev.status("RUNNING", "Task started on cpu0", slot="cpu0")

    def step(frac: float, stage: str) -> Callable[[], None]:
        def emit() -> None:
            ev.emit(
                "progress",
                event="progress",
                progress=frac,
                step=int(frac * 10),
                energy=-3.25,
                fmax=0.5 - frac / 2,
                stage=stage,
            )

        return emit

    def complete() -> None:
        ev.emit("converged", logger="task.optimization")
        transitions.finish(sp.paths, claimed[0], "COMPLETED")
        ev.status("COMPLETED", "Task completed")

    return [claim, step(0.3, "relax"), step(0.7, "relax"), complete]


def test_follow_a_finished_task_reads_everything_and_never_waits(tmp_path: Path) -> None:
    sp, job = queued_task(tmp_path)
    script = run_task(sp, job)
    for s in script:
        s()
    follower = Follower(sp, job.task_id, sleep=no_sleep)
    events = list(follower)
    assert follower.state == "COMPLETED"
    assert [e.offset for e in events] == [e.offset for e in read_events(follower.path)]
    assert len(events) == 6


def test_follow_streams_events_as_they_are_written(tmp_path: Path) -> None:
    sp, job = queued_task(tmp_path)
    follower = Follower(sp, job.task_id, sleep=scripted(run_task(sp, job)))
    kinds = [(e.kind, (e.data.get("extra") or {}).get("status")) for e in follower]
    assert kinds == [
        ("status", "QUEUED"),
        ("status", "RUNNING"),
        ("progress", None),
        ("progress", None),
        ("log", None),
        ("status", "COMPLETED"),
    ]
    assert follower.state == "COMPLETED"


def test_follow_ends_after_grace_when_the_terminal_event_never_comes(tmp_path: Path) -> None:
    sp, job = queued_task(tmp_path)
    loc = sp.locate(job.task_id)
    assert loc is not None
    claimed = transitions.claim(sp.paths, loc.path, "cpu0", job.task_id)
    assert claimed is not None
    transitions.finish(sp.paths, claimed, "FAILED")  # no FAILED event written
    now = [100.0]
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        now[0] += seconds

    follower = Follower(
        sp, job.task_id, sleep=sleep, clock=lambda: now[0], grace_s=1.0, poll_s=0.25
    )
    assert len(list(follower)) == 1  # only QUEUED
    assert follower.state == "FAILED"
    assert polls == [0.25] * 4  # 1 s of grace


def test_follow_unknown_or_vanishing_task(tmp_path: Path) -> None:
    sp, job = queued_task(tmp_path)
    with pytest.raises(TaskNotFound):
        Follower(sp, "task_nope")
    loc = sp.locate(job.task_id)
    assert loc is not None

    def vanish(_: float) -> None:
        loc.path.unlink()

    with pytest.raises(TaskNotFound, match="disappeared"):
        list(Follower(sp, job.task_id, sleep=vanish))


def test_bar_display_on_a_terminal(tmp_path: Path) -> None:
    sp, job = queued_task(tmp_path)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    display = make_display(console, job.task_id)
    assert isinstance(display, BarDisplay)
    bar = display.progress.tasks[0]
    seen: list[tuple[float, str]] = []

    class Spy:
        def event(self, ev: Event) -> None:
            display.event(ev)
            seen.append((bar.completed, bar.description))

        def close(self, state: str | None) -> None:
            display.close(state)

    state = follow(Follower(sp, job.task_id, sleep=scripted(run_task(sp, job))), Spy())
    assert state == "COMPLETED"
    assert seen[1] == (0.0, "running on cpu0")
    assert seen[3] == (0.7, "stage relax  step 7  E -3.250000 eV  fmax 0.15")
    assert bar.completed == 1.0 and bar.finished
    out = buf.getvalue()
    assert "Task started on cpu0" in out and "converged" in out  # log lines above the bar
    assert "100%" in out
    assert out.rstrip().endswith(f"Task {job.task_id} COMPLETED")


def test_plain_display_prints_progress_when_the_percentage_or_stage_changes(tmp_path: Path) -> None:
    sp, job = queued_task(tmp_path)
    ev = sp.events(job.task_id)
    for frac, stage in ((0.001, "nvt"), (0.004, "nvt"), (0.004, "npt"), (0.02, "npt")):
        ev.emit("progress", event="progress", progress=frac, stage=stage)
    buf = io.StringIO()
    console = Console(file=buf, width=200, color_system=None)
    display = make_display(console, job.task_id)
    assert isinstance(display, PlainDisplay)
    for e in read_events(sp.paths.events_file(job.task_id)):
        display.event(e)
    display.close("RUNNING")
    lines = buf.getvalue().splitlines()
    progress = [ln for ln in lines if "progress" in ln]
    assert len(progress) == 3
    assert "stage nvt" in progress[0] and "stage npt" in progress[1] and "2.0%" in progress[2]


def test_json_lines_and_quiet_displays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sp, job = queued_task(tmp_path)
    sp.events(job.task_id).emit("detail", level="DEBUG")
    sp.events(job.task_id).emit("careful", level="WARNING")
    events = list(read_events(sp.paths.events_file(job.task_id)))
    display = JsonLinesDisplay("WARNING")
    for e in events:
        display.event(e)
    display.close("QUEUED")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["message"] for x in lines] == ["careful"]
    assert lines[0]["seq"] == events[-1].offset
    quiet = make_display(Console(file=io.StringIO()), job.task_id, quiet=True)
    assert isinstance(quiet, QuietDisplay)
    for e in events:
        quiet.event(e)
    assert capsys.readouterr().out == ""
