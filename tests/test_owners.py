"""Owners in the core: who a ``Caller`` may see, owners kept in job files, uploads and a
mirror rebuilt from the spool, and audited deletion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from mofsim_core.mirror_sqlite import SqliteMirror
from mofsim_core.owners import OWNER, Caller, check_task, task_owner
from mofsim_core.structure_deletion import delete_structure
from mofsim_core.structure_service import StructureIndex, store_structure
from spool import Job, Spool
from spool.errors import StructureNotFound, TaskNotFound
from tests.daemon_helpers import cu_xyz

ALICE = Caller("key_alice", admin=False)
BOB = Caller("key_bob", admin=False)
ADMIN = Caller("key_ops", admin=True)


def job(owner: str | None = None, **over: Any) -> Job:
    data: dict[str, Any] = {
        "task_type": "single-point-energy",
        "model": "emt",
        "structure": "builtin:MOF-5",
        **over,
    }
    if owner is not None:
        data["owner"] = owner
    return Job.from_dict(data)


@pytest.fixture
def audits() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    sink = logger.add(
        lambda message: seen.append(dict(message.record["extra"])),
        filter=lambda record: record["extra"].get("kind") == "audit",
    )
    yield seen
    logger.remove(sink)


def test_who_sees_what() -> None:
    assert ALICE.may_see("key_alice") and not ALICE.may_see("key_bob")
    assert not ALICE.may_see(None)  # made without a key: the owner's, not a user's
    assert ADMIN.may_see("key_bob") and ADMIN.may_see(None) and OWNER.may_see(None)
    assert ALICE.only_owner == "key_alice" and ADMIN.only_owner is None
    assert OWNER.only_owner is None and OWNER.owner is None and ALICE.owner == "key_alice"
    assert ALICE.actor() == "key_alice" and OWNER.actor("anonymous@::1") == "anonymous@::1"
    # A user caller without an id (never made by the HTTP face) sees nothing.
    assert Caller(None, admin=False).only_owner == "" and not Caller(None, False).may_see(None)


def test_job_files_keep_their_owner_and_old_files_load(tmp_path: Path) -> None:
    mine = job("key_alice")
    assert Job.from_json(mine.to_json()).owner == "key_alice"
    old = mine.to_dict()
    del old["owner"]  # a file written before owners existed
    assert Job.from_dict(old).owner is None
    assert job(owner="").owner is None
    spool = Spool(tmp_path / "spool")
    spool.submit(mine)
    spool.submit(theirs := job("key_bob"))
    assert spool.record(mine.task_id)["owner"] == "key_alice"
    assert task_owner(spool, mine.task_id) == "key_alice"
    check_task(spool, ALICE, mine.task_id)
    check_task(spool, ADMIN, theirs.task_id)
    with pytest.raises(TaskNotFound):
        check_task(spool, ALICE, theirs.task_id)
    with pytest.raises(TaskNotFound):
        check_task(spool, ALICE, "task_missing")


def test_a_mirror_rebuilt_from_the_spool_knows_the_owners(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    jobs = [job("key_alice"), job("key_bob"), job("key_alice"), job()]
    for j in jobs:
        spool.submit(j)
    mirror = SqliteMirror(tmp_path / "mirror.db")
    try:
        assert mirror.rebuild(spool.records()) == 4
        items, total = mirror.list_tasks(owner="key_alice")
        assert total == 2 and {t["task_id"] for t in items} == {jobs[0].task_id, jobs[2].task_id}
        assert mirror.get_task(jobs[3].task_id)["owner"] is None  # type: ignore[index]
    finally:
        mirror.close()


def test_uploads_are_owned_and_their_deletion_audited(
    tmp_path: Path, audits: list[dict[str, Any]]
) -> None:
    spool = Spool(tmp_path / "spool")
    index = StructureIndex(spool)
    meta = store_structure(spool, cu_xyz(2), fmt="extxyz", owner="key_alice")
    other = store_structure(spool, cu_xyz(2), fmt="extxyz", owner="key_bob")
    assert meta["owner"] == "key_alice"
    assert [m["file_id"] for m in index.visible(ALICE)] == [meta["file_id"]]
    assert len(index.visible(ADMIN)) == 2 and index.list(caller=BOB)[1] == 1
    assert index.get(meta["file_id"], ALICE) == meta
    with pytest.raises(StructureNotFound):
        index.get(other["file_id"], ALICE)
    task = job("key_alice", structure={"source": "upload", "file_id": meta["file_id"]})
    spool.submit(task)
    out = delete_structure(spool, index, meta["file_id"], actor="key_ops")
    assert out["deleted_task_ids"] == [task.task_id]
    assert [(a["action"], a["file_id"], a["by"]) for a in audits] == [
        ("structure.deleted", meta["file_id"], "key_ops")
    ]


def test_system_views_show_a_user_key_only_its_own_task_ids(tmp_path: Path) -> None:
    from mofsim_core.owners import hide_foreign_tasks

    spool = Spool(tmp_path / "spool")
    ids = {}
    for owner in ("key-a", "key-b"):
        job = Job.from_dict(
            {
                "task_type": "single-point-energy",
                "model": "emt",
                "structure": {"source": "inline", "format": "extxyz", "content": cu_xyz()},
                "owner": owner,
            }
        )
        spool.submit(job)
        ids[owner] = job.task_id

    def doc() -> dict[str, Any]:
        return {
            "gpus": [
                {"slot_id": "cpu0", "current_task": {"task_id": ids["key-a"], "started_at": 1}},
                {"slot_id": "cpu1", "current_task": {"task_id": ids["key-b"], "started_at": 2}},
                {"slot_id": "cpu2", "current_task": None},
            ],
            "running": [
                {"task_id": ids["key-a"], "slot_id": "cpu0"},
                {"task_id": "gone-task", "slot_id": "cpu3"},
            ],
        }

    seen = hide_foreign_tasks(spool, Caller("key-a", admin=False), doc())
    assert [g["current_task"] and g["current_task"]["task_id"] for g in seen["gpus"]] == [
        ids["key-a"],
        None,
        None,
    ]
    assert seen["gpus"][1]["current_task"]["started_at"] == 2  # still busy, since then
    assert [r["task_id"] for r in seen["running"]] == [ids["key-a"], None]
    assert hide_foreign_tasks(spool, OWNER, doc()) == doc()
