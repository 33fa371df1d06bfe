"""Whatever sits in ``incoming/`` ends queued or in ``rejected/`` with a reason, and no
entry can stop or stall the intake: links, FIFOs, devices, directories, deep nesting,
bad bytes and odd names, one test each, then a seeded fuzz of many hostile files, then a
FIFO dropped in the queue of a live daemon whose API keeps answering."""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import spool.store
from executors.registry import canonical_task_type, validate_parameters
from spool import Job, Spool
from spool.intake import admit
from spool.layout import CANONICAL_NAME
from tests.daemon_helpers import Daemon, quick_job, wait_for

GOOD: dict[str, Any] = {
    "task_type": "single-point-energy",
    "model": "emt",
    "structure": "builtin:HKUST-1",
}


def validate(job: Job) -> Job:
    """What the daemon checks beyond the spool: task type and parameters."""
    task_type = canonical_task_type(job.task_type)
    validate_parameters(task_type, job.parameters)
    return replace(job, task_type=task_type)


def admit_all(
    sp: Spool, validator: Callable[[Job], Job | None] | None = None, within: float = 60.0
) -> list[Job]:
    """Admit until nothing changes (adopted files come back under canonical names), in a
    thread that must finish within ``within`` seconds: an intake that blocks (on a FIFO,
    say) fails the test instead of hanging it."""
    jobs: list[Job] = []

    def run() -> None:
        for _ in range(3):
            jobs.clear()
            for q in sp.queued():
                job = admit(sp, q, validator)
                if job is not None:
                    jobs.append(job)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(within)
    assert not worker.is_alive(), "intake blocked"
    return jobs


def rejected_reason(sp: Spool, name: str) -> str:
    entry = sp.paths.rejected / name
    assert os.path.lexists(entry), sorted(os.listdir(sp.paths.rejected))
    return (sp.paths.rejected / (name + ".reason")).read_text()


def assert_queue_empty(sp: Spool) -> None:
    assert sp.queued() == []


def test_a_link_to_an_endless_device_is_rejected_unread(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    os.symlink("/dev/zero", sp.paths.priority_dir(2) / "zero.json")
    admit_all(sp)
    reason = rejected_reason(sp, "zero.json")
    assert reason.startswith("40006 InvalidJobFile") and "symbolic link" in reason
    # The link itself was moved, never followed.
    assert os.readlink(sp.paths.rejected / "zero.json") == "/dev/zero"
    assert_queue_empty(sp)


def test_a_link_to_a_secret_is_never_read(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({**GOOD, "task_id": "the-secret-id"}))
    secret.chmod(0o600)
    os.symlink(secret, sp.paths.priority_dir(1) / "shadow.json")
    admit_all(sp, validate)
    reason = rejected_reason(sp, "shadow.json")
    assert "symbolic link" in reason and "the-secret-id" not in reason
    assert sp.locate("the-secret-id") is None
    assert secret.read_text().startswith("{")  # untouched


def test_a_dangling_link_is_rejected_with_a_reason(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    os.symlink(tmp_path / "nowhere", sp.paths.priority_dir(2) / "dangling.json")
    admit_all(sp)
    assert "symbolic link" in rejected_reason(sp, "dangling.json")
    assert os.path.islink(sp.paths.rejected / "dangling.json")
    assert_queue_empty(sp)


@pytest.mark.parametrize("name", ["fifo.json", "0000000000001-fifo.json"])
def test_a_fifo_is_rejected_without_blocking(tmp_path: Path, name: str) -> None:
    sp = Spool(tmp_path / "spool")
    os.mkfifo(sp.paths.priority_dir(2) / name)
    admit_all(sp)
    assert "a FIFO, not a regular file" in rejected_reason(sp, name)
    assert stat.S_ISFIFO(os.lstat(sp.paths.rejected / name).st_mode)
    assert_queue_empty(sp)


def test_a_device_node_is_rejected_unopened(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    node = sp.paths.priority_dir(2) / "zero.json"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    except PermissionError:
        pytest.skip("creating a device node needs privileges this run does not have")
    admit_all(sp)
    assert "a character device" in rejected_reason(sp, "zero.json")
    assert_queue_empty(sp)


def test_a_directory_is_moved_to_rejected(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    folder = sp.paths.priority_dir(2) / "folder.json"
    folder.mkdir()
    (folder / "inside.txt").write_text("kept")
    admit_all(sp)
    assert "a directory" in rejected_reason(sp, "folder.json")
    assert (sp.paths.rejected / "folder.json" / "inside.txt").read_text() == "kept"
    assert_queue_empty(sp)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"a":' * 100_000, "nested deeper than 64"),
        (b"[" * 2_000_000, "nested deeper than 64"),
        (b'{"task_type": "\xff\xfe"}', "not valid JSON"),
        (b'{"task_type": "single-point", "model": "emt", "max": 1e400}', "out of range"),
        (b'{"task_type": "single-point", "model": NaN}', "not a JSON number"),
        (json.dumps({**GOOD, "task_id": "abc\n"}).encode(), "task_id"),
        (json.dumps({**GOOD, "created_at": 1e300}).encode(), "created_at"),
        (json.dumps({**GOOD, "created_at": -5}).encode(), "created_at"),
        (b"[1, 2]", "JSON object"),
    ],
)
def test_hostile_content_is_rejected_with_its_reason(
    tmp_path: Path, content: bytes, why: str
) -> None:
    sp = Spool(tmp_path / "spool")
    (sp.paths.priority_dir(0) / "bad.json").write_bytes(content)
    admit_all(sp, validate)
    assert why in rejected_reason(sp, "bad.json")
    assert_queue_empty(sp)


def test_a_file_over_the_limit_is_refused_whatever_stat_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool.store, "MAX_JOB_BYTES", 1000)
    sp = Spool(tmp_path / "spool")
    (sp.paths.priority_dir(2) / "big.json").write_text(json.dumps({**GOOD, "pad": "x" * 2000}))
    admit_all(sp)
    assert "the limit is 1000" in rejected_reason(sp, "big.json")


def test_odd_names_are_adopted_or_rejected_with_a_reason(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    d = os.fsencode(sp.paths.priority_dir(2))
    long_name = b"L" * 250 + b".json"
    names = [b"bad\xff\xfeutf8.json", b"new\nline.json", b"sp ace\t.json", long_name]
    for raw in names:
        with open(os.path.join(d, raw), "wb") as fh:
            fh.write(b"{broken")
    good = os.path.join(d, b"\xe9t\xe9\xff.json")
    with open(good, "wb") as fh:
        fh.write(json.dumps({**GOOD, "task_id": "odd-name-ok"}).encode())
    jobs = admit_all(sp, validate)
    assert [j.task_id for j in jobs] == ["odd-name-ok"]
    entries = os.listdir(sp.paths.rejected)
    assert len([e for e in entries if not e.endswith(".reason")]) == len(names)
    for entry in entries:
        if not entry.endswith(".reason"):
            assert "not valid JSON" in rejected_reason(sp, entry)
    assert any(e.startswith("L" * 150) and len(e) < 200 for e in entries)


def test_an_unexpected_error_rejects_that_file_only(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    (sp.paths.priority_dir(2) / "a.json").write_text(json.dumps({**GOOD, "task_id": "boom"}))
    (sp.paths.priority_dir(2) / "b.json").write_text(json.dumps({**GOOD, "task_id": "fine"}))

    def flaky(job: Job) -> Job:
        if job.task_id == "boom":
            raise RuntimeError("a bug nobody foresaw")
        return validate(job)

    jobs = admit_all(sp, flaky)
    assert [j.task_id for j in jobs] == ["fine"]
    reason = rejected_reason(sp, "a.json")
    assert reason.startswith("40006") and "RuntimeError: a bug nobody foresaw" in reason


# -- fuzz --------------------------------------------------------------------------------

FUZZ_FILES = 10_000


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 4 else 6)
    if pick == 0:
        return rng.choice([None, True, False, 0, -1, 1.5, 10**30, "", "x" * rng.randrange(300)])
    if pick == 1:
        return rng.choice(["builtin:HKUST-1", "emt", "lj", "optimization", "../../etc/passwd"])
    if pick == 2:
        return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(12)))
    if pick == 3:
        return rng.uniform(-1e308, 1e308)
    if pick == 4:
        return rng.randrange(-(10**20), 10**20)
    if pick == 5:
        return "[" * rng.randrange(200) + "]" * rng.randrange(200)
    if pick == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["source", "name", "content", "path", "file_id", "x"]): _random_value(
            rng, depth + 1
        )
        for _ in range(rng.randrange(4))
    }


def _random_job(rng: random.Random, task_id: str | None) -> bytes:
    doc: dict[str, Any] = dict(GOOD)
    if task_id is not None:
        doc["task_id"] = task_id
    doc["task_type"] = rng.choice(["single-point", "optimization", "md", "Tele Port", "x"])
    for key in rng.sample(
        ["task_type", "model", "structure", "parameters", "options", "task_id", "created_at"],
        rng.randrange(4),
    ):
        doc[key] = _random_value(rng)
    if rng.random() < 0.3:
        doc["parameters"] = {
            rng.choice(["fmax", "max_steps", "supercell", "optimizer", "temperature", "q"]): (
                _random_value(rng)
            )
            for _ in range(rng.randrange(4))
        }
    if rng.random() < 0.2:
        doc["options"] = {
            rng.choice(["priority", "timeout", "notify_url"]): _random_value(rng)
            for _ in range(rng.randrange(3))
        }
    if rng.random() < 0.2:
        doc["task_id"] = rng.choice(["ok-id", "abc\n", "a/b", "..", "-x", "x" * 200, 5])
    text = json.dumps(doc)
    if rng.random() < 0.15:  # a typo, a truncation or a byte nobody meant
        cut = rng.randrange(len(text) + 1)
        text = text[:cut] + rng.choice(["", "}", "\x00", "1e400", "NaN", '"']) + text[cut:]
    return text.encode("utf-8", "surrogatepass")


def _random_name(rng: random.Random, i: int) -> bytes:
    stem = rng.choice(
        [
            f"job{i}".encode(),
            f"{rng.randrange(10**13):013d}-t{i}".encode(),  # looks canonical
            bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 40))).replace(b"/", b"_")
            + str(i).encode(),
            b"L" * 240 + str(i).encode(),
        ]
    )
    if stem.startswith(b"."):
        stem = b"_" + stem
    return stem + b".json"


def _drop(rng: random.Random, folder: bytes, name: bytes, tmp: Path) -> None:
    canonical = CANONICAL_NAME.fullmatch(os.fsdecode(name))
    path = os.path.join(folder, name)
    kind = rng.random()
    if kind < 0.05:
        os.mkfifo(path)
    elif kind < 0.08:
        os.symlink(rng.choice(["/dev/zero", "/etc/shadow", str(tmp / "gone"), "."]), path)
    elif kind < 0.10:
        os.mkdir(path)
    elif kind < 0.20:
        with open(path, "wb") as fh:
            fh.write(rng.randbytes(rng.randrange(200)))
    elif kind < 0.25:
        with open(path, "wb") as fh:
            fh.write(rng.choice([b"[", b'{"a":', b'{"a":[']) * rng.randrange(50, 50_000))
    else:
        with open(path, "wb") as fh:
            fh.write(_random_job(rng, canonical.group(2) if canonical else None))


def test_fuzz_every_dropped_file_ends_queued_or_rejected(tmp_path: Path) -> None:
    rng = random.Random(20240612)
    sp = Spool(tmp_path / "spool")
    folders = [os.fsencode(d) for _, d in sp.paths.priority_dirs()]
    for i in range(FUZZ_FILES):
        name = _random_name(rng, i)
        folder = rng.choice(folders)
        if os.path.lexists(os.path.join(folder, name)):
            name = b"dup" + str(i).encode() + b".json"
        _drop(rng, folder, name, tmp_path)
    dropped = len(sp.queued())
    assert dropped == FUZZ_FILES

    # Generous: the bound catches a blocked read, not a slow machine.
    jobs = admit_all(sp, validate, within=900)

    # Every file is accounted for: rejected with a reason, adopted (its original kept in
    # the new task's workspace, its job queued under a canonical name), or a canonical
    # name admitted as it was.
    queued = sp.queued()
    assert sorted(str(q.task_id) for q in queued) == sorted(j.task_id for j in jobs)
    rejected = [e for e in os.listdir(sp.paths.rejected) if not e.endswith(".reason")]
    for entry in rejected:
        reason = (sp.paths.rejected / (entry + ".reason")).read_text()
        assert reason[:5].isdigit() and len(reason) > 10
    adopted = [j for j in jobs if (sp.paths.tasks / j.task_id / "submitted.json").exists()]
    assert len(os.listdir(sp.paths.tasks)) == len(adopted)
    assert len(rejected) + len(jobs) == dropped
    assert len(rejected) > FUZZ_FILES // 2 and len(adopted) > 10 and len(jobs) > len(adopted) + 10


# -- a live daemon -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
        return bool(resp.status == 200)


def test_hostile_files_do_not_stall_a_live_daemon(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with Daemon(root, "cpu:1", http=f"127.0.0.1:{port}"):
        sp = Spool(root, create=False)
        assert _healthy(url)
        incoming = sp.paths.priority_dir(2)
        os.mkfifo(incoming / "fifo.json")
        os.symlink("/dev/zero", incoming / "zero.json")
        (incoming / "deep.json").write_bytes(b'{"a":' * 100_000)
        wait_for(
            lambda: all(
                (sp.paths.rejected / f"{n}.json.reason").exists() for n in ("fifo", "zero", "deep")
            ),
            what="the hostile files to be rejected",
        )
        assert _healthy(url)
        assert stat.S_ISFIFO(os.lstat(sp.paths.rejected / "fifo.json").st_mode)
        job = quick_job()
        sp.submit(job)
        wait_for(lambda: sp.record(job.task_id)["status"] == "COMPLETED", what="a good task")
        assert _healthy(url)
