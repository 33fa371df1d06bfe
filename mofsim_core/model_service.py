"""Models as the API shows them: catalogue, where each is loaded, load/unload requests.

Core functions shared by both dialects; no aiohttp here.  Nothing in this module loads
a model or unpickles a file: "loaded where" comes from the daemon's slot snapshot
(``mofsim_core.slot_state``) and load/unload are request files
(``mofsim_core.model_requests``) the daemon carries out (``mofsim_core.control``).
Custom model uploads live in ``custom_models``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from executors.families import get_family
from executors.models import (
    CUSTOM_PREFIX,
    ModelSpec,
    custom_d3,
    families,
    family_names,
    list_models,
    resolve_model,
)
from executors.verdicts import model_trusted, read_verdict, trusted_form
from mofsim_core.control import custom_model_validated
from mofsim_core.logs import audit
from mofsim_core.model_requests import list_requests, submit_request
from mofsim_core.owners import OWNER, Caller
from mofsim_core.slot_state import daemon_status, read_snapshot
from spool.errors import DeviceUnavailable, ModelNotFound, ModelUnavailable, ValidationError
from spool.store import Spool

# --- where models are loaded -------------------------------------------------------------------


def loaded_slots(snapshot: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """model key -> the slots holding it (from a slot snapshot)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for s in (snapshot or {}).get("slots", []):
        memory = s.get("loaded_memory_mb") or {}
        for key in s.get("loaded_models") or []:
            out.setdefault(str(key), []).append(
                {
                    "slot_id": s.get("slot_id"),
                    "device": s.get("device"),
                    "state": s.get("state"),
                    "memory_usage_mb": memory.get(key),
                }
            )
    return out


def live_snapshot(spool: Spool) -> dict[str, Any] | None:
    """The snapshot if a daemon is running; what a dead daemon had loaded is gone."""
    snap = read_snapshot(spool.root)
    return snap if daemon_status(spool.root, snapshot=snap)["snapshot_current"] else None


def custom_meta(spool: Spool, model_id: str) -> dict[str, Any]:
    try:
        meta = json.loads((spool.paths.models / model_id / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def custom_public(meta: dict[str, Any], models_root: Path) -> dict[str, Any]:
    """The public description of an upload; ``validated`` and ``validation`` come from
    its verdict (``executors.verdicts``), never from the folder's own meta.json."""

    keys = (
        "model_id",
        "name",
        "framework",
        "description",
        "with_d3",
        "config",
        "elements",
        "original_filename",
        "size_bytes",
        "sha256",
        "created_at",
        "owner",
        "shared",
    )
    out = {k: meta.get(k) for k in keys}
    family = get_family(str(meta.get("framework")))
    # with_d3: tasks add D3 unless they say; d3_included: the weights have it (an older
    # upload's with_d3 meant the latter, custom_d3 reads it so).
    out["d3_included"], out["with_d3"] = custom_d3(meta, bool(family and family.d3_trained))
    model_id = str(meta.get("model_id"))
    out["model_key"] = CUSTOM_PREFIX + model_id
    verdict = read_verdict(models_root, model_id)
    out["validated"] = model_trusted(models_root, model_id)
    # Executors read it without running code: its weights-only form, or its own file
    # where the family's uploads are state dicts (ORB); else it runs in the sandbox.
    as_uploaded = family is not None and family.load_safe_form is None
    out["weights_only"] = as_uploaded or trusted_form(models_root, model_id) is not None
    out["validation"] = verdict.get("validation") if verdict else None
    return out


def model_entry(
    spec: ModelSpec, loaded: dict[str, list[dict[str, Any]]], spool: Spool | None = None
) -> dict[str, Any]:
    """The MIRA fields of a model plus its framework, aliases, D3 flag, where it is
    loaded, and for custom models whether they passed validation."""
    out = spec.to_full_dict()
    slots = loaded.get(spec.key, [])
    out["loaded"] = bool(slots)
    out["loaded_on"] = [s["slot_id"] for s in slots]
    if spec.is_custom:
        model_id = str(spec.extra.get("model_id", spec.aliases[0]))
        out["model_id"] = model_id
        out["validated"] = spool is not None and model_trusted(spool.paths.models, model_id)
    return out


def _visible(spec: ModelSpec, caller: Caller) -> bool:
    return caller.may_use_model(spec.extra.get("owner"), spec.extra.get("shared"))


def visible_model(spool: Spool, key: str, caller: Caller = OWNER) -> ModelSpec:
    """The model ``key`` names, if the caller may see it: a user key sees the built-in
    models, its own uploads and shared ones; another key's upload is unknown to it."""
    spec = resolve_model(key, spool.paths.models)
    if spec.is_custom and not _visible(spec, caller):
        raise ModelNotFound(f"model {key!r} not found", field="model")
    return spec


def list_model_entries(
    spool: Spool, family: str | None = None, caller: Caller = OWNER
) -> list[dict[str, Any]]:
    """Every model the caller may see (built-in, then usable custom ones), optionally
    of one family."""
    known = family_names()
    if family is not None and family.lower() not in known:
        raise ValidationError(
            f"unknown family {family!r}; families: {', '.join(known)}", field="family"
        )
    loaded = loaded_slots(live_snapshot(spool))
    specs = [s for s in list_models(spool.paths.models) if not s.is_custom or _visible(s, caller)]
    if family is not None:
        specs = [s for s in specs if s.family == family.lower()]
    return [model_entry(s, loaded, spool) for s in specs]


def model_families(spool: Spool, caller: Caller = OWNER) -> list[dict[str, Any]]:
    """Each family, its package and whether it is installed, and its models (the
    caller's custom uploads included)."""
    custom = [s.key for s in list_models(spool.paths.models) if s.is_custom and _visible(s, caller)]
    out = []
    for fam in families():
        if fam["family"] == "custom":
            fam = {**fam, "models": fam["models"] + custom}
        out.append(fam)
    return out


def model_detail(spool: Spool, key: str, caller: Caller = OWNER) -> dict[str, Any]:
    """One model in full; ModelNotFound for unknown keys (with suggestions)."""
    spec = visible_model(spool, key, caller)
    snap = live_snapshot(spool)
    out = model_entry(spec, loaded_slots(snap), spool)
    out["supported_task_types"] = spec.task_types()
    fam = next((f for f in families() if f["family"] == spec.framework), None)
    out["installed"] = bool(fam and fam["installed"])
    if spec.is_custom:
        meta = custom_meta(spool, out["model_id"])
        out["custom"] = custom_public(meta, spool.paths.models)
    return out


def model_status(spool: Spool, key: str, caller: Caller = OWNER) -> dict[str, Any]:
    """Where a model is loaded now, and its recent load/unload requests."""
    spec = visible_model(spool, key, caller)
    snap = read_snapshot(spool.root)
    daemon = daemon_status(spool.root, snapshot=snap)
    slots = loaded_slots(snap if daemon["snapshot_current"] else None).get(spec.key, [])
    in_flight = {
        s.get("control_request"): s.get("slot_id")
        for s in (snap or {}).get("slots", [])
        if s.get("control_request")
    }
    requests = []
    for req in list_requests(spool.paths, model=spec.key, limit=10):
        if req.get("status") == "pending" and req.get("request_id") in in_flight:
            req = {**req, "status": "running", "running_on": in_flight[req["request_id"]]}
        requests.append(req)
    return {
        "model_key": spec.key,
        "loaded": bool(slots),
        "device": slots[0]["device"] if slots else None,
        # Measured by the executor around the load (CUDA memory on a GPU, its resident
        # set on the CPU), on the same slot as ``device``.
        "memory_usage_mb": slots[0]["memory_usage_mb"] if slots else None,
        "slots": slots,
        "daemon_running": daemon["alive"],
        "requests": requests,
    }


def request_model_action(
    spool: Spool,
    key: str,
    action: str,
    *,
    slot: str | None = None,
    gpu_id: int | None = None,
    with_d3: bool | None = None,
    actor: str = "local",
) -> dict[str, Any]:
    """Ask the daemon to load (or unload) a model; returns the pending request.
    Audited as done by ``actor``."""
    spec = (
        check_model_usable(spool, key)
        if action == "load"
        else resolve_model(key, spool.paths.models)
    )
    snap = read_snapshot(spool.root)
    daemon = daemon_status(spool.root, snapshot=snap)
    if not daemon["alive"]:
        raise DeviceUnavailable(
            "no daemon is running on this spool, so no executor can "
            "load models; start it with `mofsim daemon`"
        )
    slot_ids = [str(s.get("slot_id")) for s in (snap or {}).get("slots", [])]
    if slot is None and gpu_id is not None:
        by_index = [
            str(s.get("slot_id"))
            for s in (snap or {}).get("slots", [])
            if s.get("index") == gpu_id and s.get("kind") != "cpu"
        ]
        if not by_index:
            raise ValidationError(f"no GPU {gpu_id}; slots: {', '.join(slot_ids)}", field="gpu_id")
        slot = by_index[0]
    if slot is not None and daemon["snapshot_current"] and slot not in slot_ids:
        raise ValidationError(f"unknown slot {slot!r}; slots: {', '.join(slot_ids)}", field="slot")
    req = submit_request(spool.paths, action, spec.key, slot=slot, with_d3=with_d3)
    audit(
        f"model.{action}",
        model_key=spec.key,
        slot=slot,
        with_d3=with_d3,
        control_request=req["request_id"],
        by=actor,
    )
    return {**req, "model_key": spec.key}


def check_model_usable(spool: Spool, key: str) -> ModelSpec:
    """For task submission: the model exists, and a custom one has been validated."""
    spec = resolve_model(key, spool.paths.models)
    if spec.is_custom:
        model_id = str(spec.extra.get("model_id", spec.aliases[0]))
        if not custom_model_validated(spool.paths.models, model_id):
            raise ModelUnavailable(
                f"custom model {spec.key} has not been validated; validate it first "
                f"(POST /api/v1/models/custom/{model_id}/validate)",
                field="model",
            )
    return spec
