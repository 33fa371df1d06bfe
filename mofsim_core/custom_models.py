"""Custom models: upload (spec 3.4), list, delete, and validation in a child process.

Core functions shared by both dialects; no aiohttp here.  An upload is kept in
``<spool>/models/<model_id>/`` the way ``executors.models.custom_spec`` reads it
(``meta.json`` plus ``model.<ext>``), not yet trusted.  Validating loads the
weights and computes one single point in ``python -m executors.validate_model``, in the
sandbox of ``executors.sandbox``: weights files are pickles, never unpickled in the
server process.
This process records the verdict (``executors.verdicts``), bound to the weights file's
digest; only models with a passing verdict can be loaded or used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from executors.families import get_family
from executors.models import CUSTOM_PREFIX, custom_frameworks, custom_spec, normalize_precision
from executors.safe_form import collect_form, form_dir
from executors.sandbox import Outcome, make_scratch, remove_scratch, run_sandboxed
from executors.verdicts import file_digest, remove_verdict, write_verdict
from mofsim_core.logs import audit
from mofsim_core.model_requests import submit_request
from mofsim_core.model_service import custom_meta, custom_public, live_snapshot, loaded_slots
from mofsim_core.owners import OWNER, Caller, check_model
from mofsim_core.slot_state import daemon_status
from mofsim_core.structure_service import sanitize_filename
from spool import jsonsafe
from spool.errors import (
    ModelNotFound,
    ModelUnavailable,
    UnsupportedFormat,
    ValidationError,
    code_of,
)
from spool.events import iso_now
from spool.store import Spool
from spool.transitions import atomic_write

MODEL_ID_PREFIX = "model_"
_MODEL_ID_RE = re.compile(r"model_[0-9a-f]{12}")
VALIDATION_TIMEOUT_S = 600.0
# torch.save writes a zip archive; files from torch < 1.6 are a bare pickle stream.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _parse_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValidationError(f"{field} must be true or false", field=field)


def _parse_elements(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    items: Any = value
    if isinstance(value, str):
        try:
            items = jsonsafe.loads(value)
        except ValueError:
            items = [x.strip() for x in value.split(",") if x.strip()]
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise ValidationError("elements must be a list of element symbols", field="elements")
    from ase.data import chemical_symbols

    bad = [x for x in items if x not in chemical_symbols[1:]]
    if bad:
        raise ValidationError(f"unknown element symbol(s): {', '.join(bad)}", field="elements")
    return list(dict.fromkeys(items))


def _precision_of(config: dict[str, Any]) -> dict[str, Any]:
    """``precision`` normalized; ``dtype`` is another name for it."""
    if "dtype" in config:
        dtype = normalize_precision(config.pop("dtype"), "config.dtype")
        if "precision" in config and normalize_precision(config["precision"]) != dtype:
            raise ValidationError(
                "config.dtype and config.precision disagree", field="config.precision"
            )
        config["precision"] = dtype
    if "precision" in config:
        config["precision"] = normalize_precision(config["precision"], "config.precision")
    return config


def _d3_included(fields: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether the weights include D3: the form's ``d3_included`` or ``config.d3_included``
    (kept out of the config the family's loader reads)."""
    form = fields.get("d3_included")
    in_config = config.pop("d3_included", None)
    value = _parse_bool(form, "d3_included") if form not in (None, "") else None
    if in_config is not None:
        from_config = _parse_bool(in_config, "config.d3_included")
        if value is not None and value != from_config:
            raise ValidationError(
                "d3_included and config.d3_included disagree", field="d3_included"
            )
        value = from_config
    return bool(value)


def custom_fields(fields: dict[str, Any], filename: str | None) -> dict[str, Any]:
    """Check the upload form of spec 3.4 (name, framework, description, with_d3,
    config, elements; also d3_included and shared) against the file's name; returns
    the meta.json fields."""
    framework = str(fields.get("framework") or "").strip().lower()
    frameworks = custom_frameworks()
    if framework not in frameworks:
        raise ValidationError(
            f"framework must be one of {', '.join(frameworks)}", field="framework"
        )
    safe = sanitize_filename(filename) or ""
    suffix = Path(safe).suffix.lower()
    if suffix not in frameworks[framework]:
        raise UnsupportedFormat(
            f"a {framework} model file must end with "
            f"{' or '.join(frameworks[framework])}, got {safe or 'no file name'!r}",
            field="file",
        )
    config: Any = fields.get("config") or {}
    if isinstance(config, str):
        try:
            config = jsonsafe.loads(config)
        except ValueError as exc:
            raise ValidationError(f"config is not valid JSON: {exc}", field="config") from exc
    if not isinstance(config, dict):
        raise ValidationError("config must be a JSON object", field="config")
    config = _precision_of(dict(config))
    d3_included = _d3_included(fields, config)
    family = get_family(framework)
    if family is not None and family.check_config is not None:
        config = family.check_config(config)
    with_d3 = _parse_bool(fields.get("with_d3", False), "with_d3")
    if with_d3 and d3_included:
        raise ValidationError(
            "with_d3 adds D3 dispersion to tasks on this model, but d3_included says its "
            "weights include D3 already; give one of them",
            field="with_d3",
        )
    name = "".join(ch for ch in str(fields.get("name") or "") if ch.isprintable()).strip()
    description = str(fields.get("description") or "").strip()
    out: dict[str, Any] = {
        "name": name[:200] or Path(safe).stem or "custom model",
        "framework": framework,
        "description": description[:2000],
        # Tasks add D3 unless they say otherwise; d3_included: the weights have it.
        "with_d3": with_d3,
        "d3_included": d3_included,
        # Visible to and usable by every key; otherwise only the uploader's key (and admins).
        "shared": _parse_bool(fields.get("shared", False), "shared"),
        "config": config,
        "file": "model" + suffix,
        "original_filename": safe,
    }
    given = fields.get("elements")
    elements = _parse_elements(config.pop("elements", None) if given in (None, "") else given)
    if elements:
        out["elements"] = elements
    return out


def save_custom_model(
    spool: Spool,
    upload: Path,
    filename: str | None,
    fields: dict[str, Any],
    owner: str | None = None,
    *,
    actor: str | None = None,
) -> dict[str, Any]:
    """Keep an uploaded weights file (already on disk, in the spool's tmp/) as a new
    custom model owned by the key ``owner``, not yet validated; returns its public
    description.  Audited as done by ``actor`` (the owner by default)."""
    try:
        meta = custom_fields(fields, filename)
        with open(upload, "rb") as fh:
            head = fh.read(4)
        if not head.startswith(_TORCH_MAGIC):
            raise UnsupportedFormat(
                "the file is not a PyTorch file (neither a torch.save archive nor a pickle)",
                field="file",
            )
        digest = hashlib.sha256()
        with open(upload, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        model_id = MODEL_ID_PREFIX + uuid.uuid4().hex[:12]
        folder = spool.paths.models / model_id
        folder.mkdir(parents=True)
        meta.update(
            model_id=model_id,
            size_bytes=upload.stat().st_size,
            sha256=digest.hexdigest(),
            created_at=iso_now(),
            owner=owner,
        )
        os.replace(upload, folder / meta["file"])
    finally:
        upload.unlink(missing_ok=True)
    # meta.json last: a folder without it is invisible to the catalogue.
    try:
        atomic_write(spool.paths, folder / "meta.json", json.dumps(meta, indent=2))
        custom_spec(model_id, spool.paths.models)  # what the executors read must parse
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    audit(
        "model.uploaded",
        model_id=model_id,
        framework=meta.get("framework"),
        size_bytes=meta["size_bytes"],
        sha256=meta["sha256"],
        shared=meta.get("shared"),
        by=actor or owner or "local",
    )
    return custom_public(meta, spool.paths.models)


def _check_model_id(model_id: str) -> str:
    """A generated id (``model_<12 hex>``), also accepted as ``custom:<id>``."""
    text = str(model_id)
    if text.startswith(CUSTOM_PREFIX):
        text = text[len(CUSTOM_PREFIX) :]
    if not _MODEL_ID_RE.fullmatch(text):
        raise ModelNotFound(f"custom model {model_id!r} not found", field="model_id")
    return text


def get_custom_model(spool: Spool, model_id: str, caller: Caller = OWNER) -> dict[str, Any]:
    """One upload's description, if the caller may see it (a user key: its own)."""
    model_id = _check_model_id(model_id)
    meta = custom_meta(spool, model_id)
    if meta.get("model_id") != model_id:
        raise ModelNotFound(f"custom model {model_id!r} not found", field="model_id")
    return check_model(caller, custom_public(meta, spool.paths.models))


def list_custom_models(spool: Spool, caller: Caller = OWNER) -> list[dict[str, Any]]:
    """Every uploaded model the caller may see, newest first, validated or not."""
    root = spool.paths.models
    out = []
    for name in sorted(os.listdir(root)) if root.is_dir() else []:
        meta = custom_meta(spool, name)
        visible = caller.may_use_model(meta.get("owner"), meta.get("shared"))
        if meta.get("model_id") == name and visible:
            out.append(custom_public(meta, root))
    out.sort(key=lambda m: str(m.get("created_at") or ""), reverse=True)
    return out


def delete_custom_model(spool: Spool, model_id: str, *, actor: str = "local") -> dict[str, Any]:
    """Remove an upload; executors that hold it keep their copy until evicted or
    unloaded (an unload request is sent when a daemon is running).  Callers let only
    the machine's owner or an admin key do this; it is audited as done by ``actor``."""
    info = get_custom_model(spool, model_id)
    model_id = str(info["model_id"])
    unload = None
    if daemon_status(spool.root)["alive"] and loaded_slots(live_snapshot(spool)).get(
        info["model_key"]
    ):
        unload = submit_request(spool.paths, "unload", info["model_key"])["request_id"]
    remove_verdict(spool.paths.models, model_id)
    shutil.rmtree(spool.paths.models / model_id)
    audit("model.deleted", model_id=model_id, model_key=info["model_key"], by=actor)
    return {
        "model_id": model_id,
        "model_key": info["model_key"],
        "deleted": True,
        "unload_request_id": unload,
    }


async def validate_custom_model(
    spool: Spool, model_id: str, *, timeout: float = VALIDATION_TIMEOUT_S, actor: str = "local"
) -> dict[str, Any]:
    """Load the model and compute one single point in a child process (never in the
    server), within ``timeout`` seconds; the outcome is recorded as the model's verdict
    (``executors.verdicts``) and returned as ``{model_id, model_key, valid, validation}``."""
    info = get_custom_model(spool, model_id)
    model_id = str(info["model_id"])
    folder = spool.paths.models / model_id
    weights = Path(custom_spec(model_id, spool.paths.models).weights or "")
    sha256 = file_digest(weights)
    started = time.time()
    outcome, safe = await _run_validator(spool.paths.models, model_id, timeout)
    outcome["validated_at"] = iso_now()
    outcome["wall_seconds"] = round(time.time() - started, 3)
    meta = custom_meta(spool, model_id)
    if not folder.is_dir() or meta.get("model_id") != model_id:
        raise ModelNotFound(
            f"custom model {model_id!r} was deleted during validation", field="model_id"
        )
    # The verdict is this process's record of the validator's exit and output, bound
    # to the digest of the file the validator was given.
    valid = write_verdict(spool.paths.models, model_id, sha256, outcome, safe)["valid"] is True
    found = outcome.get("model_elements")
    if valid and not meta.get("elements") and isinstance(found, list) and found:
        meta["elements"] = [str(e) for e in found][:200]  # the catalogue shows them
        atomic_write(spool.paths, folder / "meta.json", json.dumps(meta, indent=2))
    audit(
        "model.validated",
        model_id=model_id,
        model_key=info["model_key"],
        valid=valid,
        sha256=sha256,
        by=actor,
    )
    return {
        "model_id": model_id,
        "model_key": info["model_key"],
        "valid": valid,
        "validation": outcome,
    }


async def _run_validator(
    models_root: Path, model_id: str, timeout: float
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The validator in the sandbox (``executors.sandbox``), on read-only copies of
    the model's meta.json and weights: its outcome, and the digests of the safe form it
    wrote (copied to ``models_root/.converted/<model_id>``) when it passed."""
    spec = custom_spec(model_id, models_root)
    weights = Path(spec.weights or "")
    scratch = make_scratch(
        {
            f"models/{model_id}/meta.json": models_root / model_id / "meta.json",
            f"models/{model_id}/{weights.name}": weights,
        }
    )
    argv = [sys.executable, "-B", "-s", "-m", "executors.validate_model"]
    argv += ["--models-root", str(scratch / "models"), "--model-id", model_id]
    argv += ["--convert-to", str(scratch / "converted")]
    safe: dict[str, str] | None = None
    shutil.rmtree(form_dir(models_root, model_id), ignore_errors=True)
    try:
        done = await run_sandboxed(argv, scratch, timeout=timeout)
        doc = _outcome(done, timeout)
        written = isinstance(doc.get("safe_form"), dict) and doc["safe_form"].get("written")
        if doc.get("ok") is True and doc.get("exit_code") == 0 and written is True:
            try:
                cap = 2 * weights.stat().st_size + (16 << 20)
                safe = collect_form(scratch / "converted", form_dir(models_root, model_id), cap)
            except ModelUnavailable as exc:
                doc["safe_form"] = {"written": False, "reason": exc.message}
    finally:
        remove_scratch(scratch)
    return doc, safe


def _outcome(done: Outcome, timeout: float) -> dict[str, Any]:
    if done.timed_out:
        return {
            "ok": False,
            "error": {
                "code": code_of(ModelUnavailable),
                "message": f"validation did not finish within {timeout:g} s",
            },
        }
    lines = [ln for ln in done.stdout.decode(errors="replace").splitlines() if ln.strip()]
    try:
        doc = json.loads(lines[-1]) if lines else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return {
            "ok": False,
            "exit_code": done.returncode,
            "error": {
                "code": code_of(ModelUnavailable),
                "message": "the validator crashed: "
                + (" | ".join(tail) or f"exit {done.returncode}"),
            },
        }
    doc["exit_code"] = done.returncode
    return doc
