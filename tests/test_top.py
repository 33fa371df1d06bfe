"""``mofsim top``: its data sources, its keys, its drawing, and the real thing in tmux.

The unit tests build a spool by hand (queued, claimed and failed jobs, a slot snapshot
and an active alert written the way the daemon writes them) and read it through the
local source and, over HTTP, through the remote one.  ``test_top_in_tmux`` runs the
command in a terminal of fixed size against a real daemon with a long EMT job, selects
the job with the arrow keys, follows its log, cancels it with ``c`` ``y``, quits, then
watches the same spool through a server that is stopped and started again.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mofsim_cli.top import Poller, apply, decode_keys
from mofsim_cli.top_data import SlotRow, TaskRow, TopState
from mofsim_cli.top_local import LocalLogFeed, LocalSource, tail_events
from mofsim_cli.top_ui import TopUI
from mofsim_cli.top_view import bar, screen, snapshot
from mofsim_core.slot_state import snapshot_path, write_snapshot
from spool import Job, Spool, transitions
from spool.events import iso_now, read_events
from tests.daemon_helpers import Daemon, quick_job, slow_job, status, wait_for

ROOT = Path(__file__).resolve().parents[1]


def _job(priority: str = "NORMAL", name: str = "MOF-5") -> Job:
    return Job.from_dict(
        {
            "task_type": "single-point-energy",
            "model": "emt",
            "structure": {"source": "builtin", "name": name},
            "options": {"priority": priority},
        }
    )


def build_spool(root: Path) -> dict[str, Any]:
    """Three queued jobs (submitted LOW first), one running on cpu0 at 42 %, one failed;
    this process plays the daemon: its pid in the lock, a fresh slot snapshot."""
    sp = Spool(root)
    ids: dict[str, Any] = {}
    queued = [_job(p) for p in ("LOW", "NORMAL", "HIGH")]
    for job in queued:
        sp.submit(job)
    ids["queued"] = [j.task_id for j in reversed(queued)]  # scheduling order
    for key, name in (("running", "UiO-66"), ("failed", "HKUST-1")):
        job = _job("NORMAL", name)
        sp.submit(job)
        claimed = transitions.claim(
            sp.paths, root / "incoming" / "2-normal" / job.file_name, "cpu0", job.task_id
        )
        assert claimed is not None
        sp.events(job.task_id).status("RUNNING", "Task running", slot="cpu0")
        ids[key] = job.task_id
        if key == "failed":
            (sp.paths.workspace(job.task_id) / "error.json").write_text(
                json.dumps({"code": 50001, "message": "boom"})
            )
            transitions.finish(sp.paths, claimed, "FAILED")
            sp.events(job.task_id).status("FAILED", "Task failed")
    sp.events(ids["running"]).emit(
        "progress", event="progress", progress=0.42, step=42, energy=-1.5, fmax=0.01
    )
    (root / "state" / "daemon.lock").write_text(str(os.getpid()))
    write_snapshot(
        snapshot_path(root),
        {
            "version": 1,
            "written_at": time.time(),
            "daemon_pid": os.getpid(),
            "daemon_started_at": time.time() - 100,
            "device_status_at": time.time(),
            "slots": [
                {
                    "slot_id": "cpu0",
                    "kind": "cpu",
                    "index": 0,
                    "name": "Test CPU",
                    "device": "cpu",
                    "state": "busy",
                    "loaded_models": ["emt"],
                    "control_request": None,
                    "executor": {"pid": os.getpid(), "alive": True, "ready": True, "restarts": 0},
                    "current_task": {
                        "task_id": ids["running"],
                        "started_at": time.time() - 65,
                        "timeout": None,
                        "attempts": 0,
                        "cancel_requested": False,
                    },
                    "device_status": {
                        "slot_id": "cpu0",
                        "name": "Test CPU",
                        "memory_total_mb": 81559,
                        "memory_used_mb": 1024,
                        "memory_free_mb": 80535,
                        "utilization_percent": 87.0,
                        "temperature_c": 65.0,
                        "available": True,
                        "error": None,
                    },
                }
            ],
        },
    )
    alerts = root / "state" / "alerts"
    alerts.mkdir(parents=True)
    (alerts / "active.json").write_text(
        json.dumps(
            [
                {
                    "type": "gpu_temperature_high",
                    "level": "WARNING",
                    "subject": "cpu0",
                    "message": "cpu0 temperature high: 91 C",
                    "details": {},
                    "alert_id": "alert_1",
                    "timestamp": iso_now(),
                    "resolved": False,
                    "resolved_at": None,
                }
            ]
        )
    )
    return ids


@pytest.fixture
def hand_spool(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    root = tmp_path / "spool"
    return root, build_spool(root)


# --- data -----------------------------------------------------------------------------------


def check_state(state: TopState, ids: dict[str, Any]) -> None:
    """What both sources must say about ``build_spool``'s spool."""
    assert state.daemon_ok and f"pid {os.getpid()}" in state.daemon
    assert state.queue_counts == {"CRITICAL": 0, "HIGH": 1, "NORMAL": 1, "LOW": 1}
    assert [r.task_id for r in state.queued] == ids["queued"]
    assert [r.queue_position for r in state.queued] == [1, 2, 3]
    assert [r.priority for r in state.queued] == ["HIGH", "NORMAL", "LOW"]
    (run,) = state.running
    assert (run.task_id, run.status, run.slot, run.progress) == (
        ids["running"],
        "RUNNING",
        "cpu0",
        0.42,
    )
    assert run.detail["step"] == 42 and run.structure == "UiO-66"
    (slot,) = state.slots
    assert (
        slot.name,
        slot.utilization,
        slot.memory_used_mb,
        slot.memory_total_mb,
        slot.temperature_c,
        slot.loaded_models,
    ) == ("Test CPU", 87.0, 1024, 81559, 65.0, ["emt"])
    assert slot.task is not None and slot.task.task_id == ids["running"]
    (failed,) = state.recent
    assert (failed.task_id, failed.status, failed.error) == (ids["failed"], "FAILED", "50001 boom")
    assert [a["type"] for a in state.alerts] == ["gpu_temperature_high"]


def test_local_source_reads_the_spool(hand_spool: tuple[Path, dict[str, Any]]) -> None:
    root, ids = hand_spool
    sp = Spool(root)
    source = LocalSource(sp)
    check_state(source.fetch(), ids)
    assert source.cancel(ids["queued"][0]) == "CANCELLED"
    # No daemon here: after the cancel's short wait the task is still RUNNING.
    assert source.cancel(ids["running"]) == "RUNNING"
    state = source.fetch()
    assert [r.task_id for r in state.queued] == ids["queued"][1:]
    assert state.running[0].cancel_requested
    assert [r.status for r in state.recent] == ["CANCELLED", "FAILED"]
    # Finished tasks are ordered by the ctime of their last move, which the kernel
    # stamps with a coarse clock: let it tick past the cancel's before the next move.
    cancelled = (root / "cancelled" / f"{ids['queued'][0]}.json").stat().st_ctime
    probe = root / "tmp" / "clock-probe"

    def ticked() -> bool:
        probe.touch()
        return probe.stat().st_ctime > cancelled

    wait_for(ticked, 5, "a clock tick")
    transitions.finish(sp.paths, root / "claimed" / "cpu0" / f"{ids['running']}.json", "FAILED")
    state = source.fetch()
    assert state.running == [] and [r.task_id for r in state.recent] == [
        ids["running"],
        ids["queued"][0],
        ids["failed"],
    ]


def test_log_feed_starts_at_the_tail_then_follows(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    job = _job()
    sp.submit(job)
    writer = sp.events(job.task_id)
    for i in range(400):
        writer.emit(f"line {i}")
    path = sp.paths.events_file(job.task_id)
    tail = tail_events(path, max_bytes=2000)
    everything = list(read_events(path))
    assert 0 < len(tail) < 20 and [e.offset for e in tail] == [
        e.offset for e in everything[-len(tail) :]
    ]
    feed = LocalLogFeed(path, tail=5)
    assert [e.data["message"] for e in feed.poll()] == [f"line {i}" for i in range(395, 400)]
    assert feed.poll() == []
    writer.emit("fresh")
    assert [e.data["message"] for e in feed.poll()] == ["fresh"]


def test_remote_source_says_what_the_local_one_says(
    hand_spool: tuple[Path, dict[str, Any]],
) -> None:
    from mofsim_cli.top_remote import RemoteSource
    from mofsim_core.config import Config
    from mofsim_core.mirror_factory import open_mirror
    from tests.daemon_helpers import LiveServer

    root, ids = hand_spool
    sp = Spool(root)
    # The daemon would have mirrored these tasks; the listings read the mirror.
    mirror = open_mirror(Config(spool=str(root)), sp.paths)
    try:
        mirror.rebuild(list(sp.records()))
    finally:
        mirror.close()
    server = LiveServer(root, http_rate_limit=0).start()
    try:
        source = RemoteSource(server.url)
        check_state(source.fetch(), ids)
        feed = source.log_feed(ids["running"])
        assert [e.kind for e in feed.poll()][-2:] == ["status", "progress"]
        sp.events(ids["running"]).emit("after")
        assert [e.data["message"] for e in feed.poll()] == ["after"]
        assert source.cancel(ids["queued"][2]) == "CANCELLED"
        source.close()
    finally:
        server.close()


def test_an_unreachable_server_is_a_status_line_not_a_crash() -> None:
    import queue
    import socket

    from mofsim_cli.top_remote import RemoteSource

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    source = RemoteSource(f"http://127.0.0.1:{port}", timeout=2.0)
    out: queue.Queue[tuple[Any, ...]] = queue.Queue()
    poller = Poller(source, 1.0, out)
    poller.request(("cancel", "task_x"))
    poller.step()
    ui = TopUI(source.label, 1.0)
    while not out.empty():
        apply(ui, out.get_nowait())
    assert ui.error is not None and "cannot reach" in ui.error
    assert ui.message is not None and "cancel task_x failed" in ui.message[0]
    text = draw(ui)
    assert "no update (retrying every 1 s): cannot reach the MOFSim server" in text
    source.close()


# --- keys and drawing -----------------------------------------------------------------------


def sample_state(n_queued: int = 3) -> TopState:
    run = TaskRow(
        "task_run",
        "RUNNING",
        task_type="optimization",
        model="sevennet-0",
        structure="MOF-5",
        priority="NORMAL",
        slot="gpu0",
        progress=0.42,
        detail={"step": 210, "fmax": 0.031},
        started_at=iso_now(),
    )
    queued = [
        TaskRow(
            f"task_q{i:02d}",
            "QUEUED",
            task_type="single-point-energy",
            model="emt",
            structure="Cu",
            priority="HIGH" if i == 0 else "LOW",
            queue_position=i + 1,
        )
        for i in range(n_queued)
    ]
    return TopState(
        source="spool /x",
        daemon="daemon pid 7 running",
        daemon_ok=True,
        slots=[
            SlotRow(
                "gpu0",
                name="NVIDIA H100",
                device="cuda:0",
                state="busy",
                utilization=87.0,
                memory_used_mb=20480,
                memory_total_mb=81559,
                temperature_c=65.0,
                loaded_models=["sevennet-0", "emt"],
                task_id="task_run",
                task=run,
            )
        ],
        queue_counts={"CRITICAL": 0, "HIGH": 1, "NORMAL": 0, "LOW": n_queued - 1},
        queued=queued,
        running=[run],
        recent=[
            TaskRow(
                "task_bad",
                "FAILED",
                task_type="stability",
                model="emt",
                completed_at=iso_now(),
                error="50001 diverged",
            )
        ],
        alerts=[
            {
                "type": "gpu_memory_low",
                "level": "WARNING",
                "message": "gpu0 free GPU memory low: 1.2 GB",
                "timestamp": iso_now(),
            }
        ],
    )


def draw(ui: TopUI, height: int = 50) -> str:
    console = Console(width=160, height=height, record=True, file=io.StringIO())
    console.print(screen(ui, height))
    text = console.export_text()
    assert len(text.splitlines()) == height  # fills the terminal, never scrolls it
    return text


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def selected_task(text: str) -> str | None:
    found = re.search(r"›\s+(task_\w+)", text)
    return found.group(1) if found else None


def test_decode_keys() -> None:
    assert decode_keys("j\x1b[Ak\x1b[B\x1bOAq") == ["j", "up", "k", "down", "up", "q"]
    assert decode_keys("\x1b") == ["esc"]
    assert decode_keys("\x1b[1;5Cl\x1b[15~c") == ["l", "c"]  # ctrl-right, F5: dropped


def test_keys_select_follow_and_cancel_with_confirmation() -> None:
    ui = TopUI("spool /x", 1.0)
    ui.apply_state(sample_state())
    assert ui.selected == "task_run"  # the first row, ready for c
    assert ui.handle_key("down") is None and ui.selected == "task_q00"
    ui.handle_key("j")
    ui.handle_key("k")
    ui.handle_key("up")
    ui.handle_key("up")  # stays on the first row
    assert ui.selected == "task_run"
    assert ui.handle_key("c") is None and ui.confirm == "task_run"
    assert ui.handle_key("n") is None and ui.confirm is None
    ui.handle_key("c")
    assert ui.handle_key("y") == ("cancel", "task_run")
    assert ui.handle_key("l") == ("follow", "task_run") and ui.mode == "log"
    assert ui.handle_key("down") is None and ui.selected == "task_run"  # log: no moving
    assert ui.handle_key("esc") == ("follow", None) and ui.mode == "main"
    ui.handle_key("down")
    state = sample_state()
    state.queued = state.queued[1:]  # task_q00 was taken: the cursor keeps its place
    ui.apply_state(state)
    assert ui.selected == "task_q01"
    assert ui.handle_key("q") == ("quit", None)
    empty = TopUI("spool /x", 1.0)
    empty.apply_state(TopState(source="spool /x"))
    assert empty.handle_key("c") is None and empty.confirm is None
    assert empty.message is not None and "no task selected" in empty.message[0]


def test_screen_shows_slots_queue_recent_and_alerts() -> None:
    ui = TopUI("spool /x", 1.0)
    ui.apply_state(sample_state())
    text = draw(ui)
    slot = line_with(text, "NVIDIA H100")
    for part in (
        "cuda:0",
        "busy",
        "87%",
        "20480/81559 MiB",
        "65°C",
        "sevennet-0, emt",
        "task_run",
        "42%",
    ):
        assert part in slot, part
    assert "Tasks: 1 running, 3 queued  (CRITICAL 0  HIGH 1  NORMAL 0  LOW 2)" in text
    assert selected_task(text) == "task_run"
    selected = line_with(text, "›")
    assert "step 210" in selected and "━" in selected
    assert "#1" in line_with(text, "task_q00") and "HIGH" in line_with(text, "task_q00")
    assert "50001 diverged" in line_with(text, "task_bad")
    assert "gpu0 free GPU memory low: 1.2 GB" in text
    assert "c cancel" in text and "q quit" in text
    ui.handle_key("c")
    assert "Cancel task task_run (RUNNING, optimization / sevennet-0)? [y/n]" in draw(ui)


def test_long_queue_scrolls_to_the_selection() -> None:
    ui = TopUI("spool /x", 1.0)
    ui.apply_state(sample_state(n_queued=80))
    for _ in range(60):
        ui.handle_key("down")
    text = draw(ui, height=30)
    assert selected_task(text) == "task_q59"
    assert "task_q00" not in text and "more" in text


def test_log_pane_and_snapshot() -> None:
    from spool.events import Event, make_event

    ui = TopUI("spool /x", 1.0)
    ui.apply_state(sample_state())
    ui.handle_key("l")
    ui.apply_log(
        "task_run", [Event(i * 100, make_event("task_run", f"step {i} done")) for i in range(100)]
    )
    ui.apply_log("task_other", [Event(0, make_event("task_other", "not shown"))])
    text = draw(ui, height=30)
    assert "Log of task_run" in text and "step 99 done" in text
    assert "step 50 done" not in text and "not shown" not in text  # only the newest fit
    assert "Esc back" in text
    console = Console(width=200, record=True, file=io.StringIO())
    ui.mode = "main"
    console.print(snapshot(ui))
    assert "task_q02" in console.export_text()
    assert bar(None).plain.endswith("?") and bar(1.0).plain.endswith("100%")


# --- the command --------------------------------------------------------------------------


def test_into_a_pipe_it_prints_one_snapshot(hand_spool: tuple[Path, dict[str, Any]]) -> None:
    root, ids = hand_spool
    out = subprocess.run(
        [sys.executable, "-m", "mofsim_cli", "top", "--spool", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert ids["running"] in out.stdout and "50001 boom" in out.stdout
    assert "Tasks: 1 running, 3 queued" in out.stdout


class Tmux:
    """A private tmux server (its own socket) with one pane of a fixed size."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]
        self.env = env

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
            timeout=10,
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def wait_screen(
        self,
        *needles: str,
        absent: str | None = None,
        selected: str | None = None,
        row: tuple[str, ...] = (),
        timeout: float = 30.0,
    ) -> str:
        """The screen once it shows every needle, not ``absent``, the cursor on the task
        ``selected``, and a line holding every part of ``row``."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if (
                all(n in text for n in needles)
                and (absent is None or absent not in text)
                and (selected is None or selected_task(text) == selected)
                and (not row or any(all(p in line for p in row) for line in text.splitlines()))
            ):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"screen never showed {needles} (absent {absent!r}, "
                    f"selected {selected!r}, row {row}):\n{text}"
                )
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "top", *keys)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux): the TUI test drives it")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    t = Tmux(f"mofsim-top-{os.getpid()}-{tmp_path.name}", env)
    try:
        yield t
    finally:
        subprocess.run([*t.base, "kill-server"], capture_output=True, env=env, check=False)


def _done(path: Path, timeout: float = 20.0) -> str:
    wait_for(path.exists, timeout, f"{path.name}")
    return path.read_text()


def _tty_restored(report: str) -> bool:
    flags = report.split()
    return "icanon" in flags and "echo" in flags and "-icanon" not in flags


def test_top_in_tmux(tmp_path: Path, tmux: Tmux) -> None:
    from tests.daemon_helpers import LiveServer

    root = tmp_path / "spool"
    sp = Spool(root)
    slow = slow_job()
    sp.submit(slow)  # claimed as soon as the executor is up
    daemon = Daemon(root, slots="cpu:1").start()
    server = LiveServer(root, http_rate_limit=0).start()
    try:
        wait_for(lambda: status(sp, slow.task_id) == "RUNNING", 60, "the slow job to run")
        waiting = [quick_job(options={"priority": p}) for p in ("LOW", "HIGH", "NORMAL")]
        for job in waiting:
            sp.submit(job)
        script = tmp_path / "run.sh"
        top = f"{sys.executable} -m mofsim_cli top --refresh 0.5"
        script.write_text(
            "trap : INT\n"
            f"cd {ROOT}\n"
            f"{top} --spool {root}\n"
            f'echo "exit=$?" > {tmp_path}/one.tmp; stty -a >> {tmp_path}/one.tmp\n'
            f"mv {tmp_path}/one.tmp {tmp_path}/one\n"
            "read line\n"
            f"{top} --server {server.url}\n"
            f'echo "exit=$?" > {tmp_path}/two.tmp; stty -a >> {tmp_path}/two.tmp\n'
            f"mv {tmp_path}/two.tmp {tmp_path}/two\n"
            "sleep 60\n"
        )
        tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "50", f"bash {script}")

        text = tmux.wait_screen(slow.task_id, "RUNNING", "1 running, 3 queued")
        assert f"spool {root}" in text and "cpu0" in text
        tmux.keys("Down")  # the queue's head: the HIGH job
        tmux.wait_screen(selected=waiting[1].task_id)
        tmux.keys("Up")
        tmux.wait_screen(selected=slow.task_id)
        tmux.keys("l")
        tmux.wait_screen(f"Log of {slow.task_id}", "progress", "Esc back")
        tmux.keys("Escape")
        tmux.wait_screen("Tasks: ", absent="Log of")
        tmux.keys("c")
        tmux.wait_screen(f"Cancel task {slow.task_id} (RUNNING, optimization / emt)? [y/n]")
        tmux.keys("y")
        wait_for(lambda: status(sp, slow.task_id) == "CANCELLED", 30, "the cancel")
        # Only the selected task was cancelled.
        assert all(status(sp, j.task_id) != "CANCELLED" for j in waiting)
        tmux.wait_screen(row=(slow.task_id, "CANCELLED", "optimization"))
        tmux.keys("q")
        report = _done(tmp_path / "one")
        assert report.startswith("exit=0") and _tty_restored(report), report
        # Back at the shell's main screen, cursor shown.
        assert tmux(
            "display-message", "-p", "-t", "top", "#{alternate_on} #{cursor_flag}"
        ).split() == ["0", "1"]

        tmux.keys("Enter")  # on to the remote run
        tmux.wait_screen(
            f"server {server.url}", "daemon pid", row=(slow.task_id, "CANCELLED", "optimization")
        )
        server.stop()
        tmux.wait_screen("no update (retrying every 0.5 s): cannot reach the MOFSim server")
        server.start()
        tmux.wait_screen(f"server {server.url}", absent="no update")
        tmux.keys("C-c")
        report = _done(tmp_path / "two")
        assert report.startswith("exit=130") and _tty_restored(report), report
    finally:
        server.close()
        daemon.stop()
