"""Who is asking, and what they may see: owners of tasks, structures and custom models.

Every task, uploaded structure and custom model records the API key that created it
(``owner``: the key's id, ``None`` when made without a key: the CLI on the server, or
an API without keys).  A ``Caller`` is passed from each face into the services:

- an admin key, and everyone when no key exists (the CLI's local mode, an API bound to
  loopback without a key file), sees and acts on everything;
- a user key sees and acts on what it created; anything else answers exactly as if it
  did not exist (404), so ids of other users' work cannot even be probed.

Deleting what holds results needs an admin key: that is checked where the routes are
declared; the services record who did it in the audit log (``actor``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from spool.errors import ModelNotFound, StructureNotFound, TaskNotFound
from spool.store import Spool, read_job


@dataclass(frozen=True)
class Caller:
    """``key_id``: the API key's id, or None without one; ``admin``: may act on all."""

    key_id: str | None
    admin: bool

    @property
    def owner(self) -> str | None:
        """What a task, structure or model this caller creates records as its owner."""
        return self.key_id

    @property
    def only_owner(self) -> str | None:
        """The owner a list must be narrowed to, or None when the caller sees all."""
        return None if self.admin else (self.key_id or "")

    def may_see(self, owner: Any) -> bool:
        return self.admin or (self.key_id is not None and owner == self.key_id)

    def may_use_model(self, owner: Any, shared: Any) -> bool:
        """Custom models: the uploader's, or shared with every key by the admin who
        uploaded it."""
        return shared is True or self.may_see(owner)

    def actor(self, fallback: str = "local") -> str:
        """The name the audit log gives this caller."""
        return self.key_id or fallback


# The machine's owner: the CLI in local mode, the API without keys.
OWNER = Caller(key_id=None, admin=True)


def task_owner(spool: Spool, task_id: str) -> str | None:
    """The key that submitted a task (TaskNotFound if there is no such task)."""
    for _ in range(5):
        loc = spool.locate(task_id)
        if loc is None:
            break
        try:
            return read_job(loc.path).owner
        except TaskNotFound:
            continue  # moved between locating and reading it: look again
    raise TaskNotFound(f"task {task_id} not found")


def check_task(spool: Spool, caller: Caller, task_id: str) -> None:
    """TaskNotFound unless the task exists and the caller may see it.  Costs nothing
    for a caller who sees all: the service's own lookup says whether it exists."""
    if caller.admin:
        return
    if not caller.may_see(task_owner(spool, task_id)):
        raise TaskNotFound(f"task {task_id} not found")


def check_structure(caller: Caller, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` (an upload's meta.json) when the caller may see it, else 404."""
    if not caller.may_see(meta.get("owner")):
        raise StructureNotFound(
            f"structure {meta.get('file_id')!r} not found", field="structure_id"
        )
    return meta


def structure_owner_visible(spool: Spool, caller: Caller, file_id: str, field: str) -> None:
    """For a submission naming an upload: StructureNotFound (with ``field``) when it
    belongs to another key.  A missing upload is the submission checks' to report."""
    if caller.admin:
        return
    try:
        meta = json.loads((spool.paths.structures / file_id / "meta.json").read_text())
    except (OSError, ValueError):
        return
    if isinstance(meta, dict) and not caller.may_see(meta.get("owner")):
        raise StructureNotFound(f"structure {file_id!r} not found", field=field)


def check_model(caller: Caller, info: dict[str, Any]) -> dict[str, Any]:
    """A custom model's description when the caller may see it, else 404."""
    if not caller.may_use_model(info.get("owner"), info.get("shared")):
        raise ModelNotFound(f"custom model {info.get('model_id')!r} not found", field="model_id")
    return info


def hide_foreign_tasks(spool: Spool, caller: Caller, doc: dict[str, Any]) -> dict[str, Any]:
    """The system views (devices, queue) as a user key sees them: which slots are busy
    and since when, but not the ids of other keys' tasks."""
    if caller.admin:
        return doc
    seen: dict[str, bool] = {}

    def mine(task_id: Any) -> bool:
        if not isinstance(task_id, str):
            return False
        if task_id not in seen:
            try:
                seen[task_id] = caller.may_see(task_owner(spool, task_id))
            except TaskNotFound:
                seen[task_id] = False
        return seen[task_id]

    for row in doc.get("gpus") or []:
        task = row.get("current_task")
        if isinstance(task, dict) and not mine(task.get("task_id")):
            row["current_task"] = {**task, "task_id": None}
    for row in doc.get("running") or []:
        if isinstance(row, dict) and not mine(row.get("task_id")):
            row["task_id"] = None
    return doc
