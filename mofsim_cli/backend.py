"""One interface for the commands, two implementations: the spool here, or a server.

Each command is written once against ``Backend`` (``backend_protocol``, with what both
implementations share): ``LocalBackend`` reads and writes
the spool directly (and the aiohttp-free service modules the HTTP server itself uses,
so both answer with the same documents), ``remote.RemoteBackend`` goes through the
SDK.  ``open_backend`` picks one from ``--spool`` / ``--server`` (see ``options``).

Every method returns plain data in the shape the API answers; task records are
``views.task_view``s, results ``views.result_view_of``s.  What only a server can
answer raises a ValidationError naming ``--server``.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mofsim_cli.backend_protocol import Backend, Submission, upload_file
from mofsim_cli.follow import EventSource
from spool.errors import ValidationError
from spool.events import Event
from spool.store import Spool


def open_backend(spool: Path | None, server: str | None, api_key: str | None) -> Backend:
    """Remote when a server is named, unless ``--spool`` was given on the command line
    and the server only comes from ``MOFSIM_SERVER``."""
    from mofsim_cli.options import from_command_line

    server = (server or "").strip() or None
    server_flag, spool_flag = from_command_line("server"), from_command_line("spool")
    if server_flag and spool_flag:
        raise ValidationError(
            "--spool and --server exclude each other: a command works on "
            "a spool here or through a server",
            field="server",
        )
    if server is not None and (server_flag or not spool_flag):
        from mofsim_cli.remote import RemoteBackend

        return RemoteBackend(server, api_key)
    return LocalBackend(spool)


def cli_actor(spool_root: Path, config: Any = None) -> str:
    """``cli:<user>``, once the spool's audit log (as ``config``, the configuration
    by default, places it) is where this process's audit records go."""
    import dataclasses
    import getpass

    from mofsim_core.config import load_config
    from mofsim_core.logs import audit_into, log_dir_of

    config = dataclasses.replace(config or load_config(), spool=str(spool_root))
    audit_into(log_dir_of(config))
    return f"cli:{getpass.getuser()}"


def remote_only(what: str) -> ValidationError:
    return ValidationError(
        f"mofsim {what} asks the HTTP server: give --server URL (or set MOFSIM_SERVER)",
        field="server",
    )


class LocalBackend:
    """The spool on this machine: the daemon working on it needs no server."""

    def __init__(self, spool: Path | None) -> None:
        from mofsim_cli.options import spool_root

        self.root = spool_root(spool)
        self.where = f"spool {self.root}"

    def _spool(self, *, create: bool = False) -> Spool:
        from mofsim_cli.options import open_spool

        return open_spool(self.root, create=create)

    def _actor(self) -> str:
        """The name the audit log gives this command's user; the records go to the
        spool's log files, where the server shows them, not to the terminal."""
        return cli_actor(self.root)

    def _catalogue_spool(self) -> Spool:
        # The catalogue and the daemon's snapshot are read from a spool that may not
        # exist yet: the built-in models are there all the same.
        return Spool(self.root, create=False)

    def close(self) -> None:
        return None

    # --- tasks -----------------------------------------------------------------------------

    def submit(self, sub: Submission) -> dict[str, Any]:
        from mofsim_cli.submission import build_job
        from mofsim_cli.views import status_view
        from mofsim_core.config import load_config

        limits = load_config().limits  # the daemon's bounds, from the same configuration
        job = build_job(
            spool_root=self.root,
            task_type=sub.task_type,
            structure=sub.structure,
            model=sub.model,
            params=sub.params,
            priority=sub.priority,
            timeout=sub.timeout,
            expected_duration=sub.expected_duration,
            limits=limits,
        )
        sp = Spool(self.root, create=True, limits=limits)
        sp.submit(job, fresh_id=True)  # the CLI never takes an id from the user
        return status_view(sp, job.task_id)

    def status(self, task_id: str) -> dict[str, Any]:
        from mofsim_cli.views import status_view

        return status_view(self._spool(), task_id)

    def result(self, task_id: str) -> dict[str, Any]:
        from mofsim_cli.views import result_view

        return result_view(self._spool(), task_id)

    def events(self, task_id: str, level: str | None) -> Iterator[Event]:
        from spool.errors import TaskNotFound
        from spool.events import filter_events, read_events

        sp = self._spool()
        if sp.locate(task_id) is None:
            raise TaskNotFound(f"task {task_id} not found")
        return iter(filter_events(read_events(sp.paths.events_file(task_id)), level=level))

    def follow(self, task_id: str) -> EventSource:
        from mofsim_cli.follow import Follower

        return Follower(self._spool(), task_id)

    def cancel(self, task_id: str) -> str:
        from mofsim_core.task_service import cancel_task

        # No mirror: the daemon's catches up with a cancelled queued task by itself.
        out = cancel_task(self._spool(), None, task_id, actor=self._actor())
        return str(out["status"])

    def list_tasks(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        from mofsim_cli.views import sorted_records

        return sorted_records(self._spool(), state, limit)

    # --- models ----------------------------------------------------------------------------

    def models(self, family: str | None) -> list[dict[str, Any]]:
        from mofsim_core.model_service import list_model_entries

        return list_model_entries(self._catalogue_spool(), family)

    def model(self, key: str) -> dict[str, Any]:
        from mofsim_core.model_service import model_detail

        return model_detail(self._catalogue_spool(), key)

    def model_status(self, key: str) -> dict[str, Any]:
        from mofsim_core.model_service import model_status

        return model_status(self._catalogue_spool(), key)

    def model_action(self, key: str, action: str, slot: str | None) -> dict[str, Any]:
        from mofsim_core.model_service import request_model_action

        return request_model_action(self._spool(), key, action, slot=slot, actor=self._actor())

    def upload_model(self, path: Path, fields: dict[str, Any]) -> dict[str, Any]:
        from mofsim_core.custom_models import save_custom_model

        source = upload_file(path, "model")
        sp = self._spool(create=True)
        # save_custom_model takes the file over (it moves it into the model's folder).
        copy = sp.paths.tmp / f".upload-{uuid.uuid4().hex}.part"
        shutil.copyfile(source, copy)
        try:
            return save_custom_model(sp, copy, source.name, fields, actor=self._actor())
        finally:
            copy.unlink(missing_ok=True)

    def validate_model(self, model_id: str) -> dict[str, Any]:
        import asyncio

        from mofsim_core.config import load_config
        from mofsim_core.custom_models import VALIDATION_TIMEOUT_S, validate_custom_model

        extra = load_config().extra
        timeout = float(
            (extra if isinstance(extra, dict) else {}).get(
                "model_validation_timeout_s", VALIDATION_TIMEOUT_S
            )
        )
        return asyncio.run(
            validate_custom_model(self._spool(), model_id, timeout=timeout, actor=self._actor())
        )

    def delete_model(self, model_id: str) -> dict[str, Any]:
        from mofsim_core.custom_models import delete_custom_model

        return delete_custom_model(self._spool(), model_id, actor=self._actor())

    # --- structures ------------------------------------------------------------------------

    def upload_structure(self, path: Path, name: str | None) -> dict[str, Any]:
        from mofsim_cli.submission import MAX_STRUCTURE_BYTES
        from mofsim_core.structure_service import store_structure, structure_view

        source = upload_file(path, "structure")
        meta = store_structure(
            self._spool(create=True),
            source.read_bytes(),
            name=name,
            filename=source.name,
            max_bytes=MAX_STRUCTURE_BYTES,
        )
        return structure_view(meta)

    def structures(self) -> list[dict[str, Any]]:
        from mofsim_core.structure_service import StructureIndex

        index = StructureIndex(self._catalogue_spool())
        return index.list(0, len(index.refresh()))[0]

    def structure(self, file_id: str) -> dict[str, Any]:
        from mofsim_core.structure_service import StructureIndex, structure_view

        return structure_view(StructureIndex(self._catalogue_spool()).get(file_id))

    def delete_structure(self, file_id: str) -> dict[str, Any]:
        from mofsim_core.structure_deletion import delete_structure

        sp = self._spool()
        mirror = _open_mirror(sp)
        try:
            return delete_structure(sp, None, file_id, mirror, actor=self._actor())
        finally:
            if mirror is not None:
                mirror.close()

    def builtin_structures(self) -> list[dict[str, Any]]:
        from mofsim_core.structure_service import builtin_structures

        return builtin_structures()

    # --- system ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        raise remote_only("system health")

    def config(self) -> dict[str, Any]:
        raise remote_only("system config")

    def gpus(self) -> dict[str, Any]:
        from mofsim_cli.local_system import gpu_inventory

        return gpu_inventory(self._catalogue_spool())

    def queue(self) -> dict[str, Any]:
        from mofsim_cli.local_system import queue_stats

        return queue_stats(self._spool())

    def alerts(self, kind: str, filters: dict[str, str] | None = None) -> dict[str, Any]:
        from mofsim_cli.local_system import alerts

        return alerts(self._catalogue_spool(), kind, filters)

    # --- retention -------------------------------------------------------------------------

    def retention(self, apply: bool) -> dict[str, Any]:
        from mofsim_core import retention
        from mofsim_core.config import load_config

        policy = retention.Policy.from_config(load_config())
        sp = self._spool()
        plan = (
            retention.apply(sp, policy, actor=self._actor())
            if apply
            else retention.plan(sp, policy)
        )
        return {
            "policy": policy.to_dict(),
            "applied": apply,
            "actions": [a.to_dict() for a in plan.actions],
        }

    def keep(self, task_id: str, keep: bool) -> dict[str, Any]:
        from mofsim_core import retention

        return {"task_id": task_id, **retention.set_keep(self._spool(), task_id, keep)}

    def delete_data(self, task_id: str) -> dict[str, Any]:
        from mofsim_core import retention

        sp = self._spool()
        out = retention.delete_task_data(sp, task_id, actor=self._actor())
        mirror = _open_mirror(sp)
        if mirror is not None:
            try:
                mirror.upsert_task(sp.record(task_id))
            finally:
                mirror.close()
        return out


def _open_mirror(sp: Spool) -> Any:
    """The daemon's mirror, to drop the rows of deleted tasks; None when it cannot be
    opened (it is rebuildable from the spool: ``mofsim mirror rebuild``)."""
    from spool.errors import MofsimError

    try:
        from mofsim_core.config import load_config
        from mofsim_core.mirror_factory import open_mirror

        return open_mirror(load_config(), sp.paths)
    except (MofsimError, ImportError, OSError):
        return None


@contextlib.contextmanager
def connect(spool: Path | None, server: str | None, api_key: str | None) -> Iterator[Backend]:
    """``open_backend`` for the length of a command."""
    backend = open_backend(spool, server, api_key)
    try:
        yield backend
    finally:
        backend.close()
