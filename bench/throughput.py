"""Throughput of the daemon against a bare loop over one loaded calculator.

The same N single-point jobs (a small MOF, SevenNet-0 by default) run

  (a) through the daemon: published into a spool, claimed, run by a warm executor,
      results written and renamed into done/;
  (b) in a bare loop: one process, one loaded calculator, no files at all.

Printed: jobs/s of both (median of several runs), their ratio, and the median delay
from a job file appearing in the queue to its executor starting it (measured on an
idle slot, one job at a time).  Targets: ratio >= 0.95, delay < 20 ms.

    python bench/throughput.py [--jobs 20] [--runs 3] [--model sevennet-0]
                               [--structure builtin:CALF-20] [--delay-samples 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mofsim_cli.background import BackgroundDaemon, wait_for  # noqa: E402
from spool import Job, Spool  # noqa: E402
from spool.events import ms_from_iso, read_events  # noqa: E402


def bare_loop(model: str, structure: dict, n: int, runs: int) -> tuple[list[float], float]:
    from executors.loaders import load_calculator
    from executors.models import resolve_model
    from executors.structure_io import load_structure

    atoms, _ = load_structure(structure)
    t0 = time.perf_counter()
    calc = load_calculator(resolve_model(model), "cpu", "float32", False)
    load_s = time.perf_counter() - t0
    a = atoms.copy()
    a.calc = calc
    a.get_potential_energy()  # warm-up, as the daemon's warm-up job below
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            a = atoms.copy()
            calc.reset()  # identical atoms would otherwise be answered from ASE's cache
            a.calc = calc
            a.get_potential_energy()
            a.get_forces()
            a.get_stress()
        rates.append(n / (time.perf_counter() - t0))
    return rates, load_s


def _status_time(sp: Spool, task_id: str, status: str) -> float | None:
    for ev in read_events(sp.paths.events_file(task_id)):
        if ev.kind == "status" and ev.data["extra"].get("status") == status:
            return ms_from_iso(ev.data["timestamp"]) / 1000
    return None


def _done(sp: Spool, task_id: str) -> bool:
    return (sp.paths.terminal_dir("COMPLETED") / f"{task_id}.json").exists() or (
        sp.paths.terminal_dir("FAILED") / f"{task_id}.json"
    ).exists()


def daemon_runs(
    model: str, structure: dict, n: int, runs: int, delay_samples: int, workdir: Path
) -> tuple[list[float], list[float]]:
    sp = Spool(workdir / "spool")

    def job() -> Job:
        return Job.from_dict(
            {"task_type": "single-point-energy", "model": model, "structure": structure}
        )

    rates: list[float] = []
    delays: list[float] = []
    with BackgroundDaemon(sp.root, "cpu:1", rescan_interval_s=1.0):
        warm = job()
        sp.submit(warm)
        wait_for(lambda: _done(sp, warm.task_id), 600, "warm-up job")
        if sp.record(warm.task_id)["status"] != "COMPLETED":
            raise SystemExit(f"warm-up job failed: {sp.record(warm.task_id)['error']}")
        for _ in range(runs):
            batch = [job() for _ in range(n)]
            t0 = time.time()
            for j in batch:
                sp.submit(j)
            # Completion times come from the event log, so a lazy poll costs no accuracy
            # and leaves the cores to the daemon.
            wait_for(
                lambda b=batch: all(_done(sp, j.task_id) for j in b), 3600, "batch", interval=0.25
            )
            t_end = max(ms_from_iso(sp.record(j.task_id)["completed_at"]) / 1000 for j in batch)
            rates.append(n / (t_end - t0))
        for _ in range(delay_samples):
            j = job()
            sp.submit(j)
            t_pub = time.time()
            wait_for(lambda j=j: _done(sp, j.task_id), 600, "delay sample", interval=0.01)
            started = _status_time(sp, j.task_id, "RUNNING")
            if started is not None:
                delays.append((started - t_pub) * 1000)
    return rates, delays


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="sevennet-0")
    ap.add_argument("--structure", default="builtin:CALF-20")
    ap.add_argument("--delay-samples", type=int, default=15)
    args = ap.parse_args()
    from spool.job import normalize_structure

    structure = normalize_structure(args.structure)
    print(
        f"model {args.model}, structure {args.structure}, {args.jobs} single-point jobs "
        f"x {args.runs} runs",
        flush=True,
    )
    bare, load_s = bare_loop(args.model, structure, args.jobs, args.runs)
    with tempfile.TemporaryDirectory(prefix="mofsim-bench-") as tmp:
        daemon, delays = daemon_runs(
            args.model, structure, args.jobs, args.runs, args.delay_samples, Path(tmp)
        )
    b, d = statistics.median(bare), statistics.median(daemon)
    rows = [
        ("bare loop, one loaded calculator", f"{b:.3f}", " ".join(f"{r:.3f}" for r in bare)),
        ("through the daemon (spool + executor)", f"{d:.3f}", " ".join(f"{r:.3f}" for r in daemon)),
    ]
    w = max(len(r[0]) for r in rows)
    print()
    print(f"{'path':<{w}}  {'jobs/s (median)':>15}  runs")
    for name, med, all_runs in rows:
        print(f"{name:<{w}}  {med:>15}  {all_runs}")
    ratio = d / b
    delay = statistics.median(delays) if delays else float("nan")
    print()
    print(
        f"ratio daemon/bare        {ratio:8.3f}   (target >= 0.95)  "
        f"{'OK' if ratio >= 0.95 else 'BELOW TARGET'}"
    )
    print(
        f"median pickup delay      {delay:8.1f} ms (target < 20 ms, {len(delays)} samples)  "
        f"{'OK' if delay < 20 else 'ABOVE TARGET'}"
    )
    print(f"model load (bare loop)   {load_s:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
