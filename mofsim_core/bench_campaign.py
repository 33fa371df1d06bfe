"""A benchmark campaign: one model (with or without D3) over one suite, on any slots.

The campaign file ``SPOOL/bench/<campaign_id>.json`` records, for every entry of the
suite (``bench_suites``), the id of the task submitted for it.  Running the same
campaign again submits only the entries that have no task yet (and, with
``retry_failed``, those whose task failed, timed out or was cancelled), so an
interrupted submission continues where it stopped and nothing runs twice.  The file
is written after every submission, atomically.

Tasks are ordinary ``protocol: mofsimbench`` jobs with the structure inline (the CIF
content travels with the job), so the daemon needs no access to the benchmark's
folder.  ``overrides`` (per task type) replace protocol values, e.g. for a smoke run
with few steps; they are recorded in the campaign file and the report names them.

A campaign belongs to the key that started it (``owner``; None on the machine
itself): a key's campaign ids end in ``.<key id>``, so two keys benchmarking the same
model keep apart, and a user key sees only its own campaigns.
"""

from __future__ import annotations

import fcntl
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mofsim_core.bench_suites import Entry, StructureSource, plan
from mofsim_core.owners import OWNER, Caller
from spool import transitions
from spool.errors import (
    InvalidStructure,
    MofsimError,
    RateLimited,
    TaskNotFound,
    ValidationError,
)
from spool.store import Spool

if TYPE_CHECKING:
    from mofsim_core.mirror import Mirror

RETRYABLE = ("FAILED", "TIMEOUT", "CANCELLED")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def bench_dir(spool: Spool) -> Path:
    return spool.root / "bench"


def campaign_id(model: str, with_d3: bool, suite: str, owner: str | None = None) -> str:
    base = f"{model}{'-d3' if with_d3 else ''}-{suite}"
    return _UNSAFE.sub("_", base + (f".{owner}" if owner else ""))


def campaign_file(spool: Spool, cid: str) -> Path:
    if _UNSAFE.search(cid) or not cid:
        raise ValidationError(f"not a campaign id: {cid!r}", field="campaign")
    return bench_dir(spool) / f"{cid}.json"


def load_campaign(spool: Spool, cid: str, caller: Caller = OWNER) -> dict[str, Any]:
    """The campaign, or TaskNotFound when there is none the caller may see."""
    path = campaign_file(spool, cid)
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if not data or not caller.may_see(data.get("owner")):
        raise TaskNotFound(f"no campaign {cid!r}", field="campaign")
    return data


def list_campaigns(spool: Spool, caller: Caller = OWNER) -> list[dict[str, Any]]:
    folder = bench_dir(spool)
    if not folder.is_dir():
        return []
    found = (json.loads(p.read_text()) for p in sorted(folder.glob("*.json")))
    return [c for c in found if caller.may_see(c.get("owner"))]


def _save(spool: Spool, campaign: dict[str, Any]) -> None:
    folder = bench_dir(spool)
    folder.mkdir(parents=True, exist_ok=True)
    transitions.atomic_write_json(spool.paths, folder / f"{campaign['campaign_id']}.json", campaign)


def task_state(spool: Spool, task_id: str | None) -> str | None:
    if not task_id:
        return None
    try:
        return str(spool.record(task_id).get("status"))
    except MofsimError:
        return "MISSING"


def _body(
    entry: Entry, model: str, with_d3: bool, source: StructureSource, overrides: dict[str, Any]
) -> dict[str, Any]:
    params = {**entry.parameters(), "with_d3": with_d3, **overrides.get(entry.task_type, {})}
    return {
        "task_type": entry.task_type,
        "model": model,
        "structure": {
            "source": "inline",
            "format": "cif",
            "content": source.read(entry.path),
            "name": entry.structure,
        },
        "parameters": params,
        "options": {"priority": "LOW"},
    }


def run_campaign(
    spool: Spool,
    *,
    model: str,
    suite: str,
    source: StructureSource,
    with_d3: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
    retry_failed: bool = False,
    on_submit: Callable[[str, dict[str, Any]], None] | None = None,
    caller: Caller = OWNER,
    mirror: Mirror | None = None,
) -> dict[str, Any]:
    """Create or continue the campaign; returns the campaign document.

    Entries refused at submission (a bound, a structure the model cannot take) are
    recorded with the reason and not submitted again unless ``retry_failed``."""
    from mofsim_core.model_service import visible_model

    key = visible_model(spool, model, caller).key
    cid = campaign_id(key, with_d3, suite, caller.owner)
    bench_dir(spool).mkdir(parents=True, exist_ok=True)
    # Two runs of one campaign at once would each submit the missing entries.
    with open(campaign_file(spool, cid).with_suffix(".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Busy, not wrong: a client that retries once the first request is through
            # finds the campaign submitted.
            raise RateLimited(
                f"campaign {cid} is being submitted by another process; retry in a few seconds",
                field="campaign",
            ) from None
        settings = _Settings(key, suite, with_d3, overrides or {}, retry_failed, caller, mirror)
        return _run_locked(spool, cid, settings, source, on_submit)


@dataclass(frozen=True)
class _Settings:
    model: str
    suite: str
    with_d3: bool
    overrides: dict[str, dict[str, Any]]
    retry_failed: bool
    caller: Caller
    mirror: Mirror | None


def _run_locked(
    spool: Spool,
    cid: str,
    s: _Settings,
    source: StructureSource,
    on_submit: Callable[[str, dict[str, Any]], None] | None,
) -> dict[str, Any]:
    from mofsim_core.task_submit import submit_task

    overrides, retry_failed = s.overrides, s.retry_failed
    path = campaign_file(spool, cid)
    if path.is_file():
        campaign = load_campaign(spool, cid, s.caller)
        if overrides and overrides != campaign.get("overrides", {}):
            raise ValidationError(
                f"campaign {cid} was started with other overrides "
                f"({campaign.get('overrides')}); start a fresh spool or keep them",
                field="overrides",
            )
    else:
        campaign = {
            "campaign_id": cid,
            "model": s.model,
            "with_d3": s.with_d3,
            "suite": s.suite,
            "owner": s.caller.owner,
            "overrides": overrides,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "entries": {},
        }
    entries = plan(s.suite, source)
    recorded: dict[str, dict[str, Any]] = campaign["entries"]
    for entry in entries:
        rec = recorded.setdefault(
            entry.key,
            {"task_type": entry.task_type, "structure": entry.structure, "variant": entry.variant},
        )
        tid = rec.get("task_id")
        if tid and not (retry_failed and task_state(spool, tid) in RETRYABLE):
            continue
        if rec.get("refused") and not retry_failed:
            continue
        body = _body(entry, s.model, s.with_d3, source, campaign["overrides"])
        try:
            record = submit_task(spool, s.mirror, body, caller=s.caller)
        except (ValidationError, InvalidStructure) as exc:
            # Refused for good (a bound, a structure the model cannot take); a full
            # queue or a full disk propagates: the rerun continues from here.
            rec.update(task_id=None, refused=exc.message)
        else:
            if tid:
                rec.setdefault("earlier_task_ids", []).append(tid)
            rec.update(task_id=record["task_id"], refused=None)
        _save(spool, campaign)
        if on_submit is not None:
            on_submit(entry.key, rec)
    _save(spool, campaign)
    return campaign


def progress(spool: Spool, campaign: dict[str, Any]) -> dict[str, int]:
    """How many entries are in each state (``NOT_SUBMITTED``, ``REFUSED`` included)."""
    counts: dict[str, int] = {}
    for rec in campaign["entries"].values():
        if rec.get("refused"):
            state = "REFUSED"
        else:
            state = task_state(spool, rec.get("task_id")) or "NOT_SUBMITTED"
        counts[state] = counts.get(state, 0) + 1
    return counts
