"""Campaigns as the faces ask for them: a request body checked field by field, and the
campaign rows a listing shows.

``start_campaign`` is what ``POST /api/v1/bench/campaigns`` runs: the client sends the
suite's CIF files with the request (``structures``, keyed by their path in the
benchmark's folder, e.g. ``main_set/MOF-5_primitive.cif``), so the server needs no copy
of the benchmark.  Files that are not the benchmark's are left aside and named in the
answer (``unknown_files``), so a client may send its whole folder.  The tasks are the
caller's, like any it submits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mofsim_core.bench_campaign import list_campaigns, progress, run_campaign
from mofsim_core.bench_suites import SUITES, StructureSource, unknown_files
from mofsim_core.model_service import visible_model
from mofsim_core.owners import OWNER, Caller
from spool.errors import ValidationError

if TYPE_CHECKING:
    from mofsim_core.mirror import Mirror
    from spool.store import Spool

FIELDS = ("model", "suite", "with_d3", "overrides", "retry_failed", "structures")


def _bool(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise ValidationError(f"{field} must be true or false", field=field)
    return value


def _overrides(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    value = body.get("overrides")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in value.items()
    ):
        raise ValidationError(
            "overrides must map a task type to its protocol values, "
            'e.g. {"stability": {"npt_steps": 100}}',
            field="overrides",
        )
    return value


def _structures(body: dict[str, Any]) -> dict[str, str]:
    files = body.get("structures")
    if not isinstance(files, dict) or not files:
        raise ValidationError(
            "structures must map each CIF of the suite (its path in the benchmark's "
            "folder) to its content",
            field="structures",
        )
    for path, content in files.items():
        if not isinstance(content, str) or not content.strip():
            raise ValidationError(f"structures[{path!r}] must be the CIF text", field="structures")
    return files


def start_campaign(
    spool: Spool, mirror: Mirror | None, body: Any, caller: Caller = OWNER
) -> dict[str, Any]:
    """Create or continue the caller's campaign from a request body; what it did."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])
    model, suite = body.get("model"), body.get("suite", "quick")
    if not isinstance(model, str) or not model:
        raise ValidationError("model is required: a model key, e.g. sevennet-0", field="model")
    if suite not in SUITES:
        raise ValidationError(f"suite must be one of {', '.join(SUITES)}", field="suite")
    # Before the files: an unknown model is a 404 whatever else the request holds.
    visible_model(spool, model, caller)
    files = _structures(body)
    source = StructureSource.sent(files)
    submitted: list[str] = []
    campaign = run_campaign(
        spool,
        model=model,
        suite=suite,
        source=source,
        with_d3=_bool(body, "with_d3"),
        overrides=_overrides(body),
        retry_failed=_bool(body, "retry_failed"),
        on_submit=lambda key, rec: submitted.append(key) if rec.get("task_id") else None,
        caller=caller,
        mirror=mirror,
    )
    unknown = unknown_files(files)
    return {**campaign_row(spool, campaign), "submitted": submitted, "unknown_files": unknown}


def campaign_row(spool: Spool, campaign: dict[str, Any]) -> dict[str, Any]:
    """One campaign without its entries: what it is and how far it got."""
    return {
        "campaign_id": campaign["campaign_id"],
        "model": campaign["model"],
        "with_d3": bool(campaign.get("with_d3")),
        "suite": campaign["suite"],
        "overrides": campaign.get("overrides") or {},
        "created_at": campaign.get("created_at"),
        "entries": len(campaign["entries"]),
        "states": progress(spool, campaign),
    }


def campaign_rows(spool: Spool, caller: Caller = OWNER) -> list[dict[str, Any]]:
    """The campaigns the caller may see."""
    return [campaign_row(spool, c) for c in list_campaigns(spool, caller)]
