"""Slurm's own commands, parsable output only: ``sbatch --parsable``, ``squeue``, ``scancel``.

No REST API and no accounting database are assumed: a cluster that runs batch jobs has
these three.  ``squeue -t all`` also lists jobs that ended within ``MinJobAge``; a job
it does not know any more ended before that.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime

from spool.errors import DeviceUnavailable

# Job states in which the pilot's processes may still run on a node.
LIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
_FIELDS = "%i|%T|%r|%N|%S|%e|%j"


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str
    reason: str | None
    node: str | None
    start: float | None  # epoch seconds, when known
    end: float | None  # the expected end (start + time limit) while it runs

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def _run(cmd: list[str], stdin: str | None = None, timeout: float = 30.0) -> str:
    try:
        proc = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise DeviceUnavailable(f"{cmd[0]} not found: is this a Slurm submit host?") from exc
    except subprocess.TimeoutExpired as exc:
        raise DeviceUnavailable(f"{cmd[0]} did not answer within {timeout:g} s") from exc
    if proc.returncode != 0:
        raise DeviceUnavailable(f"{cmd[0]} failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def submit(script: str, options: list[str]) -> str:
    """The job id of the submitted batch script."""
    out = _run(["sbatch", "--parsable", *options], stdin=script).strip()
    job_id = out.split(";", 1)[0]  # "<id>;<cluster>" on federated clusters
    if not job_id.isdigit():
        raise DeviceUnavailable(f"sbatch answered {out!r}, not a job id")
    return job_id


def _time(text: str) -> float | None:
    if not text or text in ("N/A", "Unknown", "None"):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()  # squeue prints local time
    except ValueError:
        return None


def parse_squeue(text: str) -> dict[str, JobInfo]:
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 6:
            continue
        job_id, state, reason, node, start, end = (p.strip() for p in parts[:6])
        jobs[job_id] = JobInfo(
            job_id,
            state.split()[0] if state else "UNKNOWN",
            None if reason in ("", "None") else reason,
            node or None,
            _time(start),
            _time(end),
        )
    return jobs


def query(name: str) -> dict[str, JobInfo]:
    """This spool's pilots (by job name) that Slurm still knows, in any state."""
    return parse_squeue(_run(["squeue", "-h", "-t", "all", "-n", name, "-o", _FIELDS]))


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])
