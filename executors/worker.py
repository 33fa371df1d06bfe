"""The executor process: one per slot, long-lived, calculators kept warm between jobs.

The supervisor starts it as ``python -m executors.worker --spool DIR --slot ID`` with
``CUDA_VISIBLE_DEVICES`` already in the environment (so torch, imported later, sees only
its card).  Commands arrive as JSON lines on stdin, replies leave as JSON lines on
stdout; everything a person reads goes to the task's ``events.jsonl``.

Commands:  ``{"type": "run", "task_id": ..., "path": <claimed job file>}``,
``{"type": "load", "model": ...}``, ``{"type": "unload", "model": ...}``,
``{"type": "shutdown"}``.
Replies:   ``ready``, ``started``, ``finished`` (status, error, transient), ``loaded``,
and ``heartbeat`` every few seconds from a thread of its own (``executors.liveness``).

While it runs a task the executor holds the claim's lock (``spool.claim_lock``), and on
Linux it dies with the process that started it (``PR_SET_PDEATHSIG``): a daemon killed
with ``kill -9`` leaves no executor behind, and one that survives anyway (another
platform, a process stuck in the kernel) keeps its task from being run a second time.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

from executors.liveness import die_with_parent, start_heartbeat
from spool import transitions
from spool.claim_lock import ClaimLock
from spool.errors import MofsimError, StorageError, TaskCancelled, TaskError, code_of
from spool.events import EventWriter
from spool.layout import SpoolPaths
from spool.limits import DEFAULT_MAX_ATOMS, Limits
from spool.store import read_job


class SpoolObserver:
    """The Observer of ``executors.api`` writing to ``events.jsonl``; cancel is a marker
    file (one ``stat`` per step, microseconds)."""

    def __init__(self, events: EventWriter, cancel_marker: Path, logger: str) -> None:
        self.events = events
        self.cancel_marker = cancel_marker
        self.logger = logger
        self.last: dict[str, Any] = {}

    def log(self, message: str, level: str = "INFO", **extra: Any) -> None:
        self.events.emit(message, level=level, logger=self.logger, **extra)

    def progress(self, fraction: float | None, message: str = "", **metrics: Any) -> None:
        self.last = dict(metrics)
        if fraction is not None:
            fraction = max(0.0, min(1.0, float(fraction)))
        self.events.emit(
            message or "progress",
            event="progress",
            logger=self.logger,
            progress=fraction,
            **metrics,
        )

    def check_cancel(self) -> None:
        if self.cancel_marker.exists():
            raise TaskCancelled("cancelled by request")


# A full disk, a quota, a spool remounted read-only.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _quietly(events: EventWriter, message: str, level: str, **extra: Any) -> None:
    """A failure is reported to the supervisor even when its log line cannot be written."""
    try:
        events.emit(message, level=level, **extra)
    except (OSError, MofsimError):
        pass


def _is_transient(exc: BaseException) -> bool:
    """Out-of-memory is worth another attempt (maybe on another card); bugs are not."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Worker:
    def __init__(
        self,
        spool_root: Path,
        slot: str,
        *,
        device: str = "cpu",
        gpu_id: int | None = None,
        cache_size: int = 2,
        dtype: str = "float32",
        max_atoms: int = DEFAULT_MAX_ATOMS,
        large_structure_atoms: int = 2000,
        out: IO[str] | None = None,
    ) -> None:
        from executors.calc_cache import CalculatorCache

        self.paths = SpoolPaths(spool_root)
        self.slot = slot
        self.device = device
        self.gpu_id = gpu_id
        self.dtype = dtype
        self.limits = Limits(max_atoms=max_atoms)
        self.large_structure_atoms = large_structure_atoms
        self.cache = CalculatorCache(max_size=cache_size)
        self._versions: dict[str, dict[str, Any]] = {}  # package metadata reads are slow
        self.out = out or sys.stdout
        self._out_lock = threading.Lock()  # heartbeats share the replies' stream

    def reply(self, **msg: Any) -> None:
        if "loaded" in msg:  # what each loaded model took, wherever the list goes
            msg.setdefault("loaded_memory_mb", self.cache.loaded_memory())
        line = json.dumps(msg, default=str) + "\n"
        with self._out_lock:
            self.out.write(line)
            self.out.flush()

    def loaded(self) -> list[str]:
        return list(self.cache.loaded_keys())

    def serve(self, inp: IO[str]) -> None:
        self.reply(type="ready", slot=self.slot, pid=os.getpid(), loaded=self.loaded())
        for line in inp:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
            except ValueError:
                continue
            kind = cmd.get("type")
            if kind == "shutdown":
                break
            if kind == "run":
                self.run_claimed(str(cmd["task_id"]), Path(cmd["path"]))
            elif kind == "load":
                self.reply(
                    type="loaded",
                    **self.preload(str(cmd.get("model")), cmd.get("with_d3")),
                )
            elif kind == "unload":
                self.cache.unload(str(cmd.get("model")))
                self.reply(type="loaded", ok=True, loaded=self.loaded())

    def run_claimed(self, task_id: str, path: Path) -> None:
        if not path.exists():
            # Handed over while this process was stopped, and sent back to the queue by
            # the daemon meanwhile: the task is no longer this slot's.
            self.reply(type="finished", task_id=task_id, status="GONE", loaded=self.loaded())
            return
        lock = ClaimLock(path)
        try:
            mine = lock.acquire()
        except OSError as exc:
            # No room even for the lock file.  Running unguarded could let a later daemon
            # requeue the task while this run goes on, so the attempt fails as any other
            # refused spool write does: transient, with the storage code.
            err = StorageError(f"cannot lock the claim of {task_id}: {exc.strerror or exc}")
            self.reply(type="started", task_id=task_id, t=time.time())
            self.reply(
                type="finished",
                task_id=task_id,
                loaded=self.loaded(),
                status="FAILED",
                error=err.to_dict(),
                transient=True,
            )
            return
        if not mine:
            # An orphaned executor of an earlier daemon is still running this very task.
            self.reply(type="finished", task_id=task_id, status="BUSY", loaded=self.loaded())
            return
        try:
            self.reply(type="started", task_id=task_id, t=time.time())
            outcome = self.run_job(task_id, path)
        finally:
            lock.release()  # result.json, if any, is written before the lock goes
        self.reply(type="finished", task_id=task_id, loaded=self.loaded(), **outcome)

    def preload(self, model: str, with_d3: bool | None) -> dict[str, Any]:
        from executors.models import resolve_model

        try:
            spec = resolve_model(model, self.paths.models)
            # Unsaid, D3 follows the model's default, as run_job decides for a task: a
            # preload must warm the very calculator the next task will ask for.
            d3 = spec.d3_default if with_d3 is None else bool(with_d3)
            self.cache.get(spec, self.device, self.dtype, d3, models_root=self.paths.models)
        except MofsimError as exc:
            return {"ok": False, "error": exc.to_dict(), "loaded": self.loaded()}
        return {"ok": True, "loaded": self.loaded()}

    def run_job(self, task_id: str, path: Path) -> dict[str, Any]:
        """Run one claimed job; writes result.json on success.  Never raises.

        A spool that cannot be written (full disk) fails the attempt with the storage
        code, marked transient: the supervisor requeues it, and the executor carries on."""
        events = EventWriter(self.paths.events_file(task_id), task_id, gpu_id=self.gpu_id)
        t0 = time.time()
        try:
            job = read_job(path)
            events.logger = f"task.{job.task_type}"
            events.request_id = job.request_id
            result = self._execute(job, events)
            result["duration_seconds"] = round(time.time() - t0, 3)
            transitions.atomic_write_json(self.paths, self.paths.result_file(task_id), result)
        except TaskCancelled:
            return {
                "status": "CANCELLED",
                "error": {"code": code_of(TaskCancelled), "message": "cancelled"},
            }
        except MofsimError as exc:
            _quietly(events, f"Task failed: {exc.message}", "ERROR", code=exc.code, field=exc.field)
            storage = exc.code == code_of(StorageError)
            return {"status": "FAILED", "error": exc.to_dict(), "transient": storage}
        except BaseException as exc:  # noqa: BLE001 - one failing task must not kill the slot
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
                err = StorageError(f"the spool cannot be written: {exc.strerror or exc}")
                return {"status": "FAILED", "error": err.to_dict(), "transient": True}
            transient = _is_transient(exc)
            _quietly(
                events, f"Task failed: {type(exc).__name__}: {exc}", "ERROR", transient=transient
            )
            _quietly(events, "".join(traceback.format_exception(exc))[-4000:], "DEBUG")
            return {
                "status": "FAILED",
                "transient": transient,
                "error": {
                    "code": code_of(TaskError),
                    "type": type(exc).__name__,
                    "message": f"{type(exc).__name__}: {exc}",
                },
            }
        return {"status": "COMPLETED"}

    def _execute(self, job: Any, events: EventWriter) -> dict[str, Any]:
        from executors.api import TaskContext, json_safe
        from executors.loaders import describe_versions
        from executors.measure import TaskMeter
        from executors.models import check_usable, resolve_model
        from executors.params import common_given
        from executors.registry import task_module
        from executors.structure_checks import check_for_task
        from executors.structure_io import load_structure

        module = task_module(job.task_type)
        params = module.validate(dict(job.parameters))
        spec = resolve_model(job.model, self.paths.models)
        check_usable(spec)
        atoms, name = load_structure(job.structure, self.paths.root)
        check_for_task(atoms, job.task_type, spec, params, self.limits)
        params, note = large_structure_defaults(
            params, job.parameters, len(atoms), self.large_structure_atoms
        )
        dtype = str(params.get("dtype") or self.dtype)
        # A task that says nothing of D3 gets the model's default (an upload's with_d3).
        d3_said = common_given(job.parameters, "with_d3")
        with_d3 = bool(params.get("with_d3", False)) if d3_said else spec.d3_default
        params["with_d3"] = with_d3
        force_d3 = bool(params.get("force_d3", False))
        events.status(
            "RUNNING",
            f"Task started on {self.slot}",
            slot=self.slot,
            structure_name=name,
            natoms=len(atoms),
            model=spec.key,
            pid=os.getpid(),
        )
        t_load = time.perf_counter()
        calc = self.cache.get(
            spec, self.device, dtype, with_d3, force_d3=force_d3, models_root=self.paths.models
        )
        load_s = time.perf_counter() - t_load
        if load_s > 0.05:
            events.emit(
                f"Model {spec.key} loaded in {load_s:.1f} s",
                logger="executor.models",
                model=spec.key,
                load_seconds=round(load_s, 3),
            )
        # A warm calculator must not answer a new job from the previous job's results.
        calc.reset()
        atoms.calc = calc
        workspace = self.paths.workspace(job.task_id)
        observer = SpoolObserver(events, self.paths.cancel_marker(job.task_id), events.logger)
        ctx = TaskContext(
            task_id=job.task_id,
            task_type=job.task_type,
            atoms=atoms,
            structure_name=name,
            parameters=params,
            model_key=spec.key,
            calculator=calc,
            workspace=workspace,
            observer=observer,
            device=self.device,
        )
        if note:
            observer.log(note)
        with TaskMeter(atoms, spec, self.device, calc) as meter:
            result = module.run(ctx)
        if note and isinstance(result, dict) and isinstance(result.get("parameters_used"), dict):
            result["parameters_used"]["optimizer_note"] = note
        measured = meter.metrics(load_s)
        metrics: dict[str, Any] = {"model_load_seconds": round(load_s, 3)}
        if isinstance(result, dict) and result.get("avg_step_time_ms") is not None:
            metrics["avg_step_time_ms"] = result["avg_step_time_ms"]
        if self.device.startswith("cuda"):
            metrics["peak_gpu_memory_MB"] = measured["peak_memory_mb"]
        metrics["measurement"] = measured
        if spec.key not in self._versions:
            self._versions[spec.key] = describe_versions(spec)
        provenance = {
            "model": spec.key,
            "model_family": spec.family,
            "dtype": dtype,
            "with_d3": with_d3,
            "device": self.device,
            "device_name": os.environ.get("MOFSIM_DEVICE_NAME") or self.device,
            "slot": self.slot,
            "versions": self._versions[spec.key],
        }
        out: dict[str, Any] = json_safe(
            {"result": result, "metrics": metrics, "structure_name": name, "provenance": provenance}
        )
        return out


def large_structure_defaults(
    params: dict[str, Any], given: dict[str, Any], natoms: int, threshold: int
) -> tuple[dict[str, Any], str | None]:
    """Above ``threshold`` atoms a default BFGS becomes LBFGS: BFGS's dense Hessian is
    (3N)^2 numbers and O(N^3) work per step.  An optimizer the job names is kept.
    Returns the parameters and the note that ``parameters_used`` carries of a switch."""
    if natoms <= threshold or params.get("optimizer") != "BFGS" or "optimizer" in given:
        return params, None
    note = (
        f"LBFGS instead of the default BFGS: {natoms} atoms is over the large-structure "
        f"threshold of {threshold}"
    )
    return {**params, "optimizer": "LBFGS"}, note


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    ap = argparse.ArgumentParser(prog="executors.worker")
    ap.add_argument("--spool", required=True)
    ap.add_argument("--slot", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpu-id", type=int, default=None)
    ap.add_argument("--cache-size", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-atoms", type=int, default=DEFAULT_MAX_ATOMS)
    ap.add_argument("--large-structure-atoms", type=int, default=2000)
    ap.add_argument("--heartbeat-s", type=float, default=5.0)
    args = ap.parse_args(argv)
    # Replies own stdout; stray prints from model libraries go to stderr instead.
    out = sys.stdout
    sys.stdout = sys.stderr
    worker = Worker(
        Path(args.spool),
        args.slot,
        device=args.device,
        gpu_id=args.gpu_id,
        cache_size=args.cache_size,
        dtype=args.dtype,
        max_atoms=args.max_atoms,
        large_structure_atoms=args.large_structure_atoms,
        out=out,
    )
    start_heartbeat(worker.reply, args.heartbeat_s)
    worker.serve(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
