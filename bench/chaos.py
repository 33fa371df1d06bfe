"""Chaos: N jobs through a daemon that is killed, restarted and starved of disk meanwhile.

Jobs (emt and lj single points and short optimizations on small generated cells, plus a
few SevenNet-0 single points) are published into a spool in chunks, and between chunks a
seeded random schedule does one of:

  kill9-daemon    SIGKILL of the daemon process alone (its executors should follow it)
  kill9-executor  SIGKILL of one executor alone (the daemon restarts it)
  kill9-all       SIGKILL of the daemon's process group and of every executor
  sigterm         a graceful restart
  full-disk       (``--full-disk``, root only) the spool lives on a small tmpfs, which a
                  ballast file fills for a few seconds before it is freed

and restarts the daemon after each kill.  At the end (every task terminal, or the
deadline) it prints submitted, completed, failed (by error code), lost (no job file
anywhere, or never terminal), run twice (two RUNNING attempts of one task overlapping in
time, read from the task's ``events.jsonl``: an attempt runs from its RUNNING event to
the next terminal or QUEUED event) and the wall time.  Exit status 1 when anything was
lost or ran twice; the status events of such tasks are printed (a requeue event that a
full disk held back can land after the next RUNNING one: their pids tell the two apart).

    python bench/chaos.py [--jobs 1000] [--sevennet 3] [--slots cpu:2] [--kills 40]
                          [--seed 1] [--deadline 1800] [--full-disk] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mofsim_cli.background import BackgroundDaemon  # noqa: E402
from spool import Job, Spool  # noqa: E402
from spool.errors import MofsimError, StorageError  # noqa: E402
from spool.events import read_events  # noqa: E402
from spool.states import TERMINAL_DIRS  # noqa: E402

ACTIONS = ("kill9-daemon", "kill9-executor", "kill9-all", "sigterm")


# -- the jobs ---------------------------------------------------------------------------
def _cell(rng: random.Random, element: str, a: float) -> dict[str, Any]:
    """A small rattled fcc cell as inline extended XYZ: every job gets its own."""
    from ase.build import bulk

    atoms = bulk(element, "fcc", a=a, cubic=True).repeat((2, 2, 1))
    atoms.rattle(stdev=0.05, seed=rng.randrange(2**31))
    buf = io.StringIO()
    atoms.write(buf, format="extxyz")
    return {"source": "inline", "content": buf.getvalue(), "format": "extxyz", "name": element}


def make_jobs(n: int, sevennet: int, rng: random.Random) -> list[Job]:
    jobs = []
    for i in range(n):
        if i < sevennet:
            spec = {
                "task_type": "single-point-energy",
                "model": "sevennet-0",
                "structure": {"source": "builtin", "name": "CALF-20"},
            }
        else:
            model = rng.choice(("emt", "lj"))
            element, a = rng.choice((("Cu", 3.61), ("Al", 4.05), ("Ni", 3.52)))
            spec = {"task_type": "single-point-energy", "model": model}
            if rng.random() < 0.4:
                spec["task_type"] = "optimization"
                spec["parameters"] = {"fmax": 0.005, "max_steps": rng.randint(20, 300)}
            spec["structure"] = _cell(rng, element, a * (1.2 if model == "lj" else 1.0))
        jobs.append(Job.from_dict(spec))
    rng.shuffle(jobs)
    return jobs


class Submitter:
    """Publishes jobs into the spool; one refused for want of disk is kept for later."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.submitted: list[str] = []
        self.backlog: list[Job] = []
        self.refused = 0
        self.rejected = 0

    def submit(self, jobs: list[Job]) -> None:
        todo, self.backlog = self.backlog + jobs, []
        for job in todo:
            try:
                self.spool.submit(job, fresh_id=True)
            except StorageError:
                self.refused += 1
                self.backlog.append(job)
                continue
            except MofsimError:
                if self.spool.locate(job.task_id) is None:
                    self.rejected += 1
                    continue
            self.submitted.append(job.task_id)


# -- processes ----------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """Alive and not a zombie (an orphan reparented to a pid 1 that does not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def executor_pids(spool_root: Path) -> list[int]:
    """Every executor process of this spool, the daemon's children and any orphan."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"executors.worker" in cmd and str(spool_root).encode() in cmd:
            if _alive(int(entry)):
                out.append(int(entry))
    return out


class Chaos:
    def __init__(self, spool: Spool, daemon: BackgroundDaemon, rng: random.Random) -> None:
        self.spool = spool
        self.daemon = daemon
        self.rng = rng
        self.done: Counter[str] = Counter()
        self.orphans_seen = 0  # executors still alive a second after their daemon died
        self.failed_starts = 0

    def act(self, action: str, disk: Path | None, during: Callable[[], None]) -> None:
        """One action; ``during`` runs while a full disk is full (submissions)."""
        if action == "full-disk" and disk is not None:
            with full(disk):
                during()
                # Half of the time something dies while nothing can be written.
                inner = self.rng.choice((None, "kill9-executor", "kill9-daemon"))
                if inner:
                    print(f"           ... and {inner} on the full disk", flush=True)
                    self.act(inner, None, lambda: None)
                time.sleep(self.rng.uniform(2.0, 6.0))
            self.done[action] += 1
            self._restart()
            return
        d = self.daemon
        assert d.proc is not None
        if action == "kill9-executor":
            pids = executor_pids(self.spool.root)
            if pids:
                os.kill(self.rng.choice(pids), signal.SIGKILL)
        elif action == "kill9-daemon":
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait()
            self._count_orphans()
        elif action == "kill9-all":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.proc.pid, signal.SIGKILL)
            for pid in executor_pids(self.spool.root):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            d.proc.wait()
        elif action == "sigterm":
            d.stop(timeout=120)
        self.done[action] += 1
        during()  # with the daemon down, after a kill
        time.sleep(self.rng.uniform(0.0, 1.5))  # the spool lies still for a while
        self._restart()

    def _restart(self) -> None:
        d = self.daemon
        if d.proc is not None and d.proc.poll() is None:
            return
        try:
            d.start()
        except (RuntimeError, TimeoutError) as exc:
            # A daemon that cannot start on a full disk is tried again once it is freed.
            self.failed_starts += 1
            print(f"           daemon did not start: {str(exc).splitlines()[0]}", flush=True)
            if d.proc is not None and d.proc.poll() is None:
                d.kill9()

    def _count_orphans(self) -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and executor_pids(self.spool.root):
            time.sleep(0.05)
        self.orphans_seen += len(executor_pids(self.spool.root))


@contextlib.contextmanager
def full(mount: Path) -> Iterator[None]:
    """The file system filled to its last page for the duration, then freed."""
    ballast = mount / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
        yield
    finally:
        os.close(fd)
        ballast.unlink()


def mount_tmpfs(where: Path, size_mb: int) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


# -- the verdict --------------------------------------------------------------------------
def terminal_states(spool: Spool) -> dict[str, str]:
    out = {}
    for state in TERMINAL_DIRS:
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(spool.paths.terminal_dir(state)):
                if name.endswith(".json"):
                    out[name[:-5]] = state
    return out


def overlaps(spool: Spool, task_id: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of RUNNING events of which the second began while the first still ran."""
    found = []
    running: dict[str, Any] | None = None
    for ev in read_events(spool.paths.events_file(task_id)):
        if ev.kind != "status":
            continue
        status = (ev.data.get("extra") or {}).get("status")
        if status == "RUNNING":
            if running is not None:
                found.append((running, ev.data))
            running = ev.data
        elif status == "QUEUED" or status in TERMINAL_DIRS:
            running = None
    return found


def requeued(spool: Spool, task_id: str) -> int:
    return sum(
        1
        for ev in read_events(spool.paths.events_file(task_id))
        if ev.kind == "status"
        and (ev.data.get("extra") or {}).get("status") == "QUEUED"
        and "requeued" in str(ev.data.get("message"))
    )


def error_code(spool: Spool, task_id: str) -> str:
    try:
        body = json.loads(spool.paths.error_file(task_id).read_text())
    except (OSError, ValueError):
        return "none"
    return str(body.get("code")) if isinstance(body, dict) else "none"


def status_lines(spool: Spool, task_id: str) -> list[str]:
    lines = []
    for ev in read_events(spool.paths.events_file(task_id)):
        if ev.kind == "status":
            x = ev.data.get("extra") or {}
            lines.append(
                f"    {ev.data.get('timestamp')} {x.get('status'):<10} pid={x.get('pid')} "
                f"slot={x.get('slot')} {ev.data.get('message')}"
            )
    return lines


def report(spool: Spool, sub: Submitter, wall: float, chaos: Chaos) -> int:
    submitted = sub.submitted
    states = terminal_states(spool)
    counts: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    lost_missing: list[str] = []
    lost_stuck: list[str] = []
    twice: list[str] = []
    for tid in submitted:
        state = states.get(tid)
        if state is None:
            loc = spool.locate(tid)
            (lost_missing if loc is None else lost_stuck).append(tid)
        else:
            counts[state] += 1
            if state != "COMPLETED":
                codes[error_code(spool, tid)] += 1
        if overlaps(spool, tid):
            twice.append(tid)
    lost = len(lost_missing) + len(lost_stuck)
    requeues = sum(requeued(spool, tid) for tid in submitted)
    rows = [
        ("submitted", str(len(submitted))),
        ("completed", str(counts["COMPLETED"])),
        ("failed", str(sum(v for k, v in counts.items() if k != "COMPLETED"))),
        *((f"  code {c}", str(n)) for c, n in sorted(codes.items())),
        ("lost", f"{lost} (no job file: {len(lost_missing)}, not terminal: {len(lost_stuck)})"),
        ("run twice", str(len(twice))),
        ("wall time", f"{wall:.1f} s"),
        ("requeued", f"{requeues} attempts cut short by the chaos"),
        ("chaos done", ", ".join(f"{k} {v}" for k, v in sorted(chaos.done.items())) or "none"),
        ("orphan executors", f"{chaos.orphans_seen} alive 1 s after a daemon kill -9"),
        ("refused at submission", f"{sub.refused} times (disk full; submitted again later)"),
        ("rejected at submission", str(sub.rejected)),
        ("daemon starts failed", f"{chaos.failed_starts} (on a full disk; started again later)"),
    ]
    w = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name:<{w}}  {value}")
    for label, tids in (("lost", lost_missing + lost_stuck), ("run twice", twice)):
        for tid in tids[:5]:
            print(f"\n{label}: {tid}")
            print("\n".join(status_lines(spool, tid)) or "    (no events)")
    return 1 if lost or twice else 0


# -- the run ------------------------------------------------------------------------------
def run(args: argparse.Namespace, work: Path) -> int:
    rng = random.Random(args.seed)
    disk: Path | None = None
    if args.full_disk:
        if mount_tmpfs(work / "fs", args.disk_mb):
            disk = work / "fs"
        else:
            print("full disk skipped: needs root and a tmpfs mount", flush=True)
    spool = Spool((disk or work) / "spool")
    daemon = BackgroundDaemon(
        spool.root,
        args.slots,
        log_file=work / "daemon.log",
        rescan_interval_s=0.5,
        shutdown_grace_s=20.0,
        min_free_memory_mb=0,
    )
    actions = ACTIONS + (("full-disk",) if disk else ())
    # Every kind of action in equal measure, in a random order.
    schedule = [actions[i % len(actions)] for i in range(args.kills)]
    rng.shuffle(schedule)
    try:
        jobs = make_jobs(args.jobs, args.sevennet, rng)
        chunks = [jobs[i :: args.kills + 1] for i in range(args.kills + 1)]
        chaos = Chaos(spool, daemon, rng)
        sub = Submitter(spool)
        t0 = time.monotonic()
        daemon.start()
        for i, chunk in enumerate(chunks):
            half = len(chunk) // 2
            sub.submit(chunk[:half])
            if i < args.kills:
                time.sleep(rng.uniform(0.2, 2 * args.gap))
                action = schedule[i]
                print(f"[{time.monotonic() - t0:7.1f} s] {action}", flush=True)
                chaos.act(action, disk, functools.partial(sub.submit, chunk[half:]))
            else:
                sub.submit(chunk[half:])
        deadline = t0 + args.deadline
        while time.monotonic() < deadline:
            sub.submit([])
            if not sub.backlog and len(terminal_states(spool)) >= len(sub.submitted):
                break
            time.sleep(0.5)
        wall = time.monotonic() - t0
        daemon.stop()
        return report(spool, sub, wall, chaos)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill9()
        for pid in executor_pids(spool.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if disk is not None and not args.keep:
            subprocess.run(["umount", str(disk)], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--sevennet", type=int, default=3, help="SevenNet-0 single points")
    ap.add_argument("--slots", default="cpu:2")
    ap.add_argument("--kills", type=int, default=40, help="chaos actions")
    ap.add_argument("--gap", type=float, default=2.0, help="mean seconds between actions")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=1800.0, help="seconds")
    ap.add_argument("--full-disk", action="store_true", help="root only: a tmpfs spool")
    ap.add_argument("--disk-mb", type=int, default=256, help="size of that tmpfs")
    ap.add_argument("--keep", action="store_true", help="keep the spool and print where")
    args = ap.parse_args()
    print(
        f"{args.jobs} jobs ({args.sevennet} SevenNet-0), slots {args.slots}, "
        f"{args.kills} chaos actions, seed {args.seed}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="mofsim-chaos-"))
    try:
        return run(args, work)
    finally:
        if args.keep:
            print(f"spool and daemon log kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
