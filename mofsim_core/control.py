"""Model load/unload requests carried out: the daemon's side, up to the executors.

The HTTP server never talks to executors.  It drops a request file into
``<spool>/control/models/`` (``mofsim_core.model_requests``); the watcher
wakes the supervisor, whose scheduling pass calls ``ModelControl.process``.  That sends
``{"type": "load"|"unload", "model": ...}`` to idle executors (``executors.worker``
answers each with ``{"type": "loaded", "ok", "loaded", "error"}``), keeps those slots
out of scheduling until they answer, and finally writes the outcome to
``control/models/results/<request_id>.json`` and removes the request.

A load without a slot goes to the first idle slot (the one holding the fewest models);
an unload without a slot goes to every slot that holds the model.  A request waits for
its slots to become idle, at most ``request_timeout`` seconds; an executor that does not
answer within ``command_timeout`` is killed (and restarted by the supervisor).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from executors.verdicts import model_trusted
from mofsim_core.model_requests import ACTIONS, list_json, read_json, requests_dir, results_dir
from spool.errors import ModelUnavailable, MofsimError, ValidationError, code_of
from spool.events import iso_from_ms
from spool.layout import SpoolPaths, is_safe_token
from spool.transitions import atomic_write

RESULTS_KEPT = 500


def custom_model_validated(models_root: Path, model_id: str) -> bool:
    """A custom model is usable once its validation passed for the weights file as it is
    now (a verdict the validating process wrote, ``executors.verdicts``)."""
    return model_trusted(models_root, model_id)


def resolve_for_control(model: str, models_root: Path) -> str:
    """The canonical key of a model that may be loaded; raises ModelNotFound, or
    ModelUnavailable for a custom model that has not passed validation."""
    from executors.models import resolve_model

    spec = resolve_model(model, models_root)
    if spec.is_custom:
        model_id = str(spec.extra.get("model_id", spec.aliases[0]))
        if not custom_model_validated(models_root, model_id):
            raise ModelUnavailable(
                f"custom model {spec.key} has not been validated; validate it first "
                f"(POST /api/v1/models/custom/{model_id}/validate)",
                field="model",
            )
    return spec.key


@dataclass
class _Active:
    request: dict[str, Any]
    path: Path
    model_key: str
    first_seen: float
    targets: dict[str, str] = field(default_factory=dict)  # slot -> waiting|sent|done
    any_slot: bool = False
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: dict[str, tuple[float, int | None]] = field(default_factory=dict)
    message: str | None = None

    @property
    def request_id(self) -> str:
        return str(self.request["request_id"])

    @property
    def complete(self) -> bool:
        return not self.any_slot and all(s == "done" for s in self.targets.values())


class ModelControl:
    """Carries out load/unload requests; ``process`` runs in every scheduling pass."""

    def __init__(
        self,
        paths: SpoolPaths,
        *,
        command_timeout: float = 900.0,
        request_timeout: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.paths = paths
        self.command_timeout = command_timeout
        self.request_timeout = request_timeout
        self.clock = clock
        self.busy: dict[str, str] = {}  # slot -> request id whose command is in flight
        self._active: dict[str, _Active] = {}  # request file name -> state
        self._tapped: set[int] = set()
        requests_dir(paths)
        results_dir(paths)

    def process(self, executors: Mapping[str, Any]) -> None:
        self._attach(executors)
        self._reap(executors)
        names = [
            n
            for n in list_json(requests_dir(self.paths))
            if n.endswith(".json") and not n.startswith(".")
        ]
        for name in names:
            act = self._active.get(name)
            if act is None:
                act = self._begin(requests_dir(self.paths) / name, executors)
                if act is None:
                    continue
                self._active[name] = act
            self._advance(act, executors)
            if act.complete:
                self._finish(name, act)
        for name in [n for n in self._active if n not in names]:
            del self._active[name]  # removed by hand meanwhile

    # -- replies -----------------------------------------------------------------------
    def _attach(self, executors: Mapping[str, Any]) -> None:
        """Listen to executor replies by wrapping each executor's message callback."""
        for ex in executors.values():
            if id(ex) in self._tapped:
                continue
            inner = ex.on_message

            def tap(e: Any, msg: dict[str, Any], inner: Any = inner) -> None:
                if msg.get("type") == "loaded":
                    self._on_reply(e, msg)
                if inner is not None:
                    inner(e, msg)

            ex.on_message = tap
            self._tapped.add(id(ex))

    def _on_reply(self, ex: Any, msg: dict[str, Any]) -> None:
        rid = self.busy.pop(ex.slot_id, None)
        if rid is None:
            return
        act = self._by_id(rid)
        if act is not None:
            sent_at = act.sent.get(ex.slot_id, (self.clock(), None))[0]
            outcome: dict[str, Any] = {
                "ok": bool(msg.get("ok")),
                "loaded": msg.get("loaded"),
                "seconds": round(self.clock() - sent_at, 3),
            }
            if msg.get("error"):
                outcome["error"] = msg["error"]
            act.outcomes[ex.slot_id] = outcome
            act.targets[ex.slot_id] = "done"
        if ex.alive:
            ex.ready = True  # back in the scheduler's pool

    def _reap(self, executors: Mapping[str, Any]) -> None:
        """Commands whose executor died, restarted or stopped answering."""
        now = self.clock()
        for slot, rid in list(self.busy.items()):
            act = self._by_id(rid)
            ex = executors.get(slot)
            sent_at, pid = act.sent.get(slot, (now, None)) if act else (now, None)
            current_pid = ex.proc.pid if ex is not None and ex.proc is not None else None
            if ex is None or not ex.alive or current_pid != pid:
                reason = "the executor exited before answering"
            elif now - sent_at > self.command_timeout:
                reason = f"no answer within {self.command_timeout:g} s; executor restarted"
                ex.kill()
            else:
                continue
            del self.busy[slot]
            if act is not None:
                act.outcomes[slot] = _failure(reason)
                act.targets[slot] = "done"

    # -- requests ----------------------------------------------------------------------
    def _begin(self, path: Path, executors: Mapping[str, Any]) -> _Active | None:
        now = self.clock()
        req = read_json(path)
        if not isinstance(req, dict):
            req = {"request_id": path.stem.split("-", 1)[-1]}
            self._fail_now(path, req, "request file is not a JSON object")
            return None
        req.setdefault("request_id", path.stem.split("-", 1)[-1])
        action, slot = req.get("action"), req.get("slot")
        if action not in ACTIONS:
            self._fail_now(path, req, f"action must be one of {', '.join(ACTIONS)}")
            return None
        if slot is not None and slot not in executors:
            self._fail_now(path, req, f"unknown slot {slot!r}; slots: {', '.join(executors)}")
            return None
        try:
            key = resolve_for_control(str(req.get("model", "")), self.paths.models)
        except MofsimError as exc:
            self._fail_now(path, req, exc.message, code=exc.code)
            return None
        act = _Active(req, path, key, now)
        holders = [s for s, ex in executors.items() if key in ex.loaded_models]
        if action == "load":
            if slot is not None and slot in holders:
                act.message = f"{key} is already loaded on {slot}"
            elif slot is not None:
                act.targets[slot] = "waiting"
            elif holders:
                act.message = f"{key} is already loaded on {', '.join(holders)}"
            else:
                act.any_slot = True
        else:
            targets = [slot] if slot is not None else holders
            targets = [s for s in targets if s in holders]
            if not targets:
                act.message = f"{key} is not loaded on {slot or 'any slot'}"
            act.targets = dict.fromkeys(targets, "waiting")
        logger.info(
            "model {} request {}: {} {}", action, act.request_id, key, f"on {slot}" if slot else ""
        )
        return act

    def _advance(self, act: _Active, executors: Mapping[str, Any]) -> None:
        now = self.clock()
        if act.any_slot:
            idle = [ex for ex in executors.values() if ex.idle and ex.slot_id not in self.busy]
            if idle:
                best = min(idle, key=lambda ex: len(ex.loaded_models))
                act.targets[best.slot_id] = "waiting"
                act.any_slot = False
        for slot, state in act.targets.items():
            if state != "waiting":
                continue
            ex = executors.get(slot)
            if ex is None or not ex.idle or slot in self.busy:
                continue
            command = {
                "type": act.request["action"],
                "model": act.model_key,
                "with_d3": act.request.get("with_d3"),
            }
            try:
                ex.send(command)
            except (RuntimeError, OSError):
                continue  # went down just now; the next pass looks again
            ex.ready = False  # not idle until it answers: keeps tasks off this slot
            self.busy[slot] = act.request_id
            act.sent[slot] = (now, ex.proc.pid if ex.proc is not None else None)
            act.targets[slot] = "sent"
        if now - act.first_seen > self.request_timeout:
            reason = f"no idle slot within {self.request_timeout:g} s"
            if act.any_slot:
                act.any_slot = False
                act.outcomes["*"] = _failure(reason)
            for slot, state in act.targets.items():
                if state == "waiting":
                    act.targets[slot] = "done"
                    act.outcomes[slot] = _failure(reason)

    def _fail_now(
        self, path: Path, req: dict[str, Any], message: str, code: int | None = None
    ) -> None:
        self._write_result(
            path,
            req,
            {
                "status": "failed",
                "message": message,
                "error": {"code": code or code_of(ValidationError), "message": message},
                "slots": {},
            },
        )

    def _finish(self, name: str, act: _Active) -> None:
        failures = {s: o for s, o in act.outcomes.items() if not o.get("ok")}
        done = [s for s, o in act.outcomes.items() if o.get("ok")]
        verb = "loaded" if act.request["action"] == "load" else "unloaded"
        if failures:
            first = next(iter(failures.values())).get("error") or {}
            message = f"{act.model_key}: " + "; ".join(
                f"{s}: {(o.get('error') or {}).get('message', 'failed')}"
                for s, o in failures.items()
            )
            status, error = "failed", first
        else:
            message = act.message or f"{act.model_key} {verb} on {', '.join(done)}"
            status, error = "completed", None
        self._write_result(
            act.path,
            act.request,
            {
                "status": status,
                "model_key": act.model_key,
                "message": message,
                "error": error,
                "slots": act.outcomes,
            },
        )
        self._active.pop(name, None)

    def _write_result(self, path: Path, req: dict[str, Any], outcome: dict[str, Any]) -> None:
        rid = str(req.get("request_id"))
        doc = {**req, **outcome, "finished_at": iso_from_ms(self.clock() * 1000)}
        rdir = results_dir(self.paths)
        if is_safe_token(rid):
            atomic_write(self.paths, rdir / f"{rid}.json", json.dumps(doc, default=str))
        path.unlink(missing_ok=True)
        logger.info("model request {} {}: {}", rid, doc["status"], doc.get("message"))
        _prune(rdir, RESULTS_KEPT)

    def _by_id(self, rid: str) -> _Active | None:
        for act in self._active.values():
            if act.request_id == rid:
                return act
        return None


def _failure(message: str, code: int | None = None) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code or code_of(ModelUnavailable), "message": message}}


def _prune(directory: Path, keep: int) -> None:
    names = list_json(directory)
    if len(names) <= keep:
        return
    dated = []
    for n in names:
        try:
            dated.append(((directory / n).stat().st_mtime, n))
        except FileNotFoundError:
            continue
    for _, n in sorted(dated)[: len(dated) - keep]:
        (directory / n).unlink(missing_ok=True)
