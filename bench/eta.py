"""Are the queue's ETAs close to what happens?  A mixed queue, its ETAs, then the truth.

    python bench/eta.py                         # SevenNet-0 on one CPU slot, 3 runs
    python bench/eta.py --model emt --runs 5    # quick

On a fresh spool the daemon starts with one CPU slot and the model is calibrated
(``mofsim models calibrate``).  A warm-up round runs the mixed queue once, so the
daemon has seen what each kind of task needs (force calls per task type and protocol),
as it would after a day of use.  Each measured run then submits the whole mixed queue
at once (single points, short optimizations and short MD runs on the built-in MOFs,
shuffled), reads every task's ``estimated_start`` and ``estimated_duration_s`` from the
ETA board once the daemon has planned them all, waits for the queue to drain, and
compares them with when each task really started and how long it ran.

The baseline is the guess a user makes without estimates: every task takes the mean
duration of the warm-up round, so a task starts after as many means as there are tasks
ahead of it.  Printed per run: the median and 90th percentile of the start error (in
seconds and as a share of the time the queue took to drain) and of the relative
duration error, for the ETA board and for the baseline, and the ratio of the two
(below 1: the board is closer).  The last line is the median over the runs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mofsim_cli.background import BackgroundDaemon, wait_for  # noqa: E402
from spool import Job, Spool  # noqa: E402
from spool.events import ms_from_iso  # noqa: E402

BUILTINS = ("CALF-20", "MOF-5", "UiO-66", "ZIF-8", "HKUST-1")


def mixed_queue(model: str, seed: int) -> list[Job]:
    """Single points on every built-in, a few short optimizations and MD runs."""
    bodies: list[dict[str, Any]] = []
    for name in BUILTINS:
        bodies.append({"task_type": "single-point-energy", "structure": name, "parameters": {}})
    for name in BUILTINS[:3]:
        # An fmax no structure reaches: every run takes exactly its steps.
        params = {"max_steps": 12, "fmax": 1e-6, "relax_cell": False}
        bodies.append({"task_type": "optimization", "structure": name, "parameters": params})
    for name in BUILTINS[:2]:
        params = {"pre_optimize": False, "nvt_steps": 15, "npt_steps": 0, "frame_interval": 5}
        bodies.append({"task_type": "stability", "structure": name, "parameters": params})
    random.Random(seed).shuffle(bodies)
    return [
        Job.from_dict(
            {
                "task_type": b["task_type"],
                "model": model,
                "structure": {"source": "builtin", "name": b["structure"]},
                "parameters": b["parameters"],
            }
        )
        for b in bodies
    ]


def _t(iso: str | None) -> float | None:
    return None if not iso else ms_from_iso(iso) / 1000


def _done(sp: Spool, jobs: list[Job]) -> bool:
    return all(sp.record(j.task_id)["status"] in ("COMPLETED", "FAILED") for j in jobs)


def run_queue(sp: Spool, jobs: list[Job], *, with_eta: bool) -> list[dict[str, Any]]:
    """Submit, read the board's plan (``with_eta``), wait; one row per task."""
    from mofsim_core.eta import EtaBoard

    t_submit = time.time()
    for job in jobs:
        sp.submit(job)
    plan: dict[str, dict[str, Any]] = {}
    if with_eta:
        board = EtaBoard.of(sp.root)
        ids = {j.task_id for j in jobs}
        # Planned once every task is on the board (or has already started).
        wait_for(
            lambda: ids <= set(board.tasks()) | {t for t in ids if sp.record(t).get("started_at")},
            120,
            "the ETA board",
            interval=0.05,
        )
        plan = {t: dict(board.tasks().get(t) or {}) for t in ids}
    wait_for(lambda: _done(sp, jobs), 3600, "the queue", interval=0.5)
    rows = []
    for job in jobs:
        rec = sp.record(job.task_id)
        if rec["status"] != "COMPLETED":
            raise SystemExit(f"{job.task_type} on {job.structure} failed: {rec.get('error')}")
        start, end = _t(rec.get("started_at")), _t(rec.get("completed_at"))
        assert start is not None and end is not None
        eta = plan.get(job.task_id, {})
        rows.append(
            {
                "task_id": job.task_id,
                "task_type": job.task_type,
                "submitted": t_submit,
                "start": start,
                "duration": end - start,
                "eta_start": _t(eta.get("estimated_start")),
                "eta_duration": eta.get("estimated_duration_s"),
            }
        )
    return rows


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def score(rows: list[dict[str, Any]], mean_duration: float) -> dict[str, float]:
    """Errors of the board and of the baseline for one run."""
    t0 = min(r["submitted"] for r in rows)
    span = max(r["start"] + r["duration"] for r in rows) - t0
    order = sorted(rows, key=lambda r: r["start"])
    board_start, naive_start, board_dur, naive_dur = [], [], [], []
    for ahead, r in enumerate(order):
        naive_start.append(abs(t0 + ahead * mean_duration - r["start"]))
        naive_dur.append(abs(mean_duration - r["duration"]) / r["duration"])
        if r["eta_start"] is not None:
            board_start.append(abs(r["eta_start"] - r["start"]))
        if r["eta_duration"] is not None:
            board_dur.append(abs(r["eta_duration"] - r["duration"]) / r["duration"])
    if not board_start or not board_dur:
        raise SystemExit("the board planned no task: is the model calibrated?")
    return {
        "span_s": span,
        "planned": len(board_start) / len(rows),
        "start_med_s": statistics.median(board_start),
        "start_p90_s": _pct(board_start, 0.9),
        "naive_start_med_s": statistics.median(naive_start),
        "dur_med": statistics.median(board_dur),
        "dur_p90": _pct(board_dur, 0.9),
        "naive_dur_med": statistics.median(naive_dur),
    }


def calibrate(sp: Spool, model: str, max_atoms: int) -> None:
    cmd = [sys.executable, "-m", "mofsim_cli", "models", "calibrate", model]
    cmd += ["--spool", str(sp.root), "--max-atoms", str(max_atoms), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"calibration failed: {proc.stdout[-400:]} {proc.stderr[-400:]}")
    doc = json.loads(proc.stdout)
    print(f"calibrated {doc['fit']} on {len(doc['points'])} supercells")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sevennet-0")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-atoms", type=int, default=600, help="largest calibration cell")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mofsim-eta-") as tmp:
        sp = Spool(Path(tmp) / "spool")
        with BackgroundDaemon(sp.root, "cpu:1", rescan_interval_s=0.5):
            calibrate(sp, args.model, args.max_atoms)
            warm = run_queue(sp, mixed_queue(args.model, seed=0), with_eta=False)
            mean_duration = statistics.mean(r["duration"] for r in warm)
            print(f"warm-up: {len(warm)} tasks, mean duration {mean_duration:.2f} s")
            scores = []
            for run in range(args.runs):
                rows = run_queue(sp, mixed_queue(args.model, seed=run + 1), with_eta=True)
                scores.append(score(rows, mean_duration))
    head = (
        f"{'run':>6} {'drain s':>8} {'start err med/p90 s':>20} {'naive med s':>12} "
        f"{'ratio':>6} {'dur err med/p90':>16} {'naive med':>10} {'ratio':>6}"
    )
    print(head)

    def line(label: str, s: dict[str, float]) -> str:
        return (
            f"{label:>6} {s['span_s']:>8.1f} "
            f"{s['start_med_s']:>9.2f} / {s['start_p90_s']:<8.2f} {s['naive_start_med_s']:>12.2f} "
            f"{s['start_med_s'] / s['naive_start_med_s']:>6.2f} "
            f"{100 * s['dur_med']:>6.1f}% / {100 * s['dur_p90']:<6.1f}% "
            f"{100 * s['naive_dur_med']:>9.1f}% {s['dur_med'] / s['naive_dur_med']:>6.2f}"
        )

    for i, s in enumerate(scores, 1):
        print(line(str(i), s))
    median = {k: statistics.median(s[k] for s in scores) for k in scores[0]}
    print(line("median", median))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
