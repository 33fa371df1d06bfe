"""Slurm pilots against local slots: throughput, and how soon a job starts.

On the single-node Slurm of ``scripts/slurm-up`` (``make slurm-up``), the same N short
jobs (EMT single points on a small cell by default) run

  (a) through 1, 2 and 4 pilots (``slots = "slurm"``, min_pilots = max_pilots = P),
      measured once every pilot is up and warm;
  (b) through local ``cpu:P`` slots of a daemon on the same machine,

both daemons running side by side and their batches taking turns, so that a machine
whose load drifts weighs on both alike.

Printed per P: jobs/s of both and their ratio (target >= 0.9 once pilots are up), then
the median delay from a job file appearing to a pilot starting it while a pilot is idle
(target < 100 ms), and the delay when no pilot runs: sbatch, Slurm's scheduling, the
pilot's start-up and its first model load (reported, not a target).

    python bench/slurm_scale.py [--jobs 500] [--pilots 1,2,4] [--runs 3] [--model emt]
                                [--delay-samples 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mofsim_cli.background import BackgroundDaemon, wait_for  # noqa: E402
from mofsim_core.slot_state import read_snapshot  # noqa: E402
from mofsimd import pilot_channel, slurm_cli  # noqa: E402
from spool import Job, Spool  # noqa: E402
from spool.events import ms_from_iso, read_events  # noqa: E402

FAST = {"poll_s": 0.5, "heartbeat_stale_s": 3.0, "time_limit": "01:00:00", "idle_s": 3600}


def _structure() -> dict[str, Any]:
    from io import StringIO

    from ase.build import bulk
    from ase.io import write

    buf = StringIO()
    write(buf, bulk("Cu", "fcc", a=3.61, cubic=True), format="extxyz")
    return {"source": "inline", "format": "extxyz", "content": buf.getvalue(), "name": "Cu"}


def _job(model: str, structure: dict[str, Any]) -> Job:
    return Job.from_dict(
        {"task_type": "single-point-energy", "model": model, "structure": structure}
    )


def _status_time(sp: Spool, task_id: str, status: str) -> float | None:
    for ev in read_events(sp.paths.events_file(task_id)):
        if ev.kind == "status" and ev.data["extra"].get("status") == status:
            return ms_from_iso(ev.data["timestamp"]) / 1000
    return None


def _done(sp: Spool, task_id: str) -> bool:
    return any(
        (sp.paths.terminal_dir(s) / f"{task_id}.json").exists() for s in ("COMPLETED", "FAILED")
    )


def _idle_slots(sp: Spool) -> int:
    snap = read_snapshot(sp.root) or {"slots": []}
    return sum(1 for s in snap["slots"] if s.get("state") == "idle" and s.get("loaded_models"))


def _warm(sp: Spool, model: str, structure: dict[str, Any], slots: int) -> None:
    """One job per slot until every slot is idle with the model loaded."""
    deadline = time.time() + 600
    while _idle_slots(sp) < slots:
        if time.time() > deadline:
            raise SystemExit("slots did not come up within 10 minutes")
        batch = [_job(model, structure) for _ in range(slots)]
        for j in batch:
            sp.submit(j)
        wait_for(lambda b=batch: all(_done(sp, j.task_id) for j in b), 600, "warm-up")
        time.sleep(0.5)


def _rate(sp: Spool, model: str, structure: dict[str, Any], n: int) -> float:
    batch = [_job(model, structure) for _ in range(n)]
    t0 = time.time()
    for j in batch:
        sp.submit(j)
    wait_for(lambda: all(_done(sp, j.task_id) for j in batch), 3600, "batch", interval=0.25)
    t_end = max(ms_from_iso(sp.record(j.task_id)["completed_at"]) / 1000 for j in batch)
    return n / (t_end - t0)


def _delay(sp: Spool, model: str, structure: dict[str, Any], samples: int) -> list[float]:
    delays = []
    for _ in range(samples):
        j = _job(model, structure)
        sp.submit(j)
        t_pub = time.time()
        wait_for(lambda j=j: _done(sp, j.task_id), 600, "delay sample", interval=0.01)
        started = _status_time(sp, j.task_id, "RUNNING")
        if started is not None:
            delays.append((started - t_pub) * 1000)
    return delays


def compare(pilots: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Both daemons up and warm at once, then batches in turn (pilots, local, pilots...):
    a machine whose load drifts weighs on both alike.  Median rates of ``args.runs``."""
    remote = Spool(workdir / f"spool-slurm-{pilots}")
    local = Spool(workdir / f"spool-cpu-{pilots}")
    structure = _structure()
    slurm = {**FAST, "min_pilots": pilots, "max_pilots": pilots}
    out: dict[str, Any] = {"slurm": [], "local": []}
    try:
        with (
            BackgroundDaemon(remote.root, "slurm", rescan_interval_s=1.0, slurm=slurm),
            BackgroundDaemon(local.root, f"cpu:{pilots}", rescan_interval_s=1.0),
        ):
            _warm(remote, args.model, structure, pilots)
            _warm(local, args.model, structure, pilots)
            for _ in range(args.runs):
                out["slurm"].append(_rate(remote, args.model, structure, args.jobs))
                out["local"].append(_rate(local, args.model, structure, args.jobs))
            if pilots == 1:
                out["idle_delay_ms"] = _delay(remote, args.model, structure, args.delay_samples)
    finally:
        live = [
            i for i, j in slurm_cli.query(pilot_channel.job_name(remote.root)).items() if j.live
        ]
        slurm_cli.cancel(live)
    return out


def cold_start(args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    """No pilot running: seconds from a job file appearing to its task starting, and
    how long sbatch itself took to answer."""
    sp = Spool(workdir / "spool-cold")
    slurm = {**FAST, "min_pilots": 0, "max_pilots": 1}
    try:
        with BackgroundDaemon(sp.root, "slurm", rescan_interval_s=1.0, slurm=slurm):
            j = _job(args.model, _structure())
            t_sbatch = time.perf_counter()
            slurm_cli.submit(
                "#!/bin/bash\ntrue\n", ["--job-name=mofsim-bench-sbatch", "-o", "/dev/null"]
            )
            sbatch_s = time.perf_counter() - t_sbatch
            sp.submit(j)
            t0 = time.time()
            wait_for(lambda: _done(sp, j.task_id), 600, "cold job")
            started = _status_time(sp, j.task_id, "RUNNING") or time.time()
    finally:
        live = [i for i, j in slurm_cli.query(pilot_channel.job_name(sp.root)).items() if j.live]
        slurm_cli.cancel(live)
    return started - t0, sbatch_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--pilots", default="1,2,4")
    ap.add_argument("--model", default="emt")
    ap.add_argument("--delay-samples", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    counts = [int(x) for x in args.pilots.split(",")]
    with tempfile.TemporaryDirectory(prefix="mofsim-slurm-bench-") as tmp:
        work = Path(tmp)
        print(f"{args.jobs} {args.model} single points per run, median of {args.runs} runs")
        print(f"{'P':>3} {'pilots jobs/s':>14} {'cpu:P jobs/s':>13} {'ratio':>6}")
        delays: list[float] = []
        for p in counts:
            got = compare(p, args, work)
            delays += got.get("idle_delay_ms", [])
            remote, local = statistics.median(got["slurm"]), statistics.median(got["local"])
            print(f"{p:>3} {remote:>14.1f} {local:>13.1f} {remote / local:>6.2f}")
        if delays:
            print(
                f"job file -> start on an idle pilot: median {statistics.median(delays):.0f} ms,"
                f" max {max(delays):.0f} ms ({len(delays)} samples; target < 100 ms)"
            )
        cold, sbatch_s = cold_start(args, work)
        print(
            f"job file -> start with no pilot running: {cold:.1f} s"
            f" (sbatch answers in {sbatch_s * 1000:.0f} ms; the rest is Slurm starting the"
            " job, the pilot's Python and its first model load)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
