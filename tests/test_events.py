"""Event logs under a full disk: a torn line never breaks a reader."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from spool import events as events_module
from spool.errors import StorageError
from spool.events import EventWriter, read_events


def test_a_short_write_is_ended_by_the_next_line_and_skipped_by_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path, "t1")
    writer.emit("first")
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])  # the disk filled mid-line

    monkeypatch.setattr(events_module.os, "write", short_write)
    with pytest.raises(StorageError) as exc:
        writer.emit("torn")
    assert exc.value.code == 10002
    assert [e.data["message"] for e in read_events(path)] == ["first"]  # torn tail waits
    monkeypatch.setattr(events_module.os, "write", real_write)
    writer.emit("after")
    writer.emit("and more")
    got = list(read_events(path))
    assert [e.data["message"] for e in got] == ["first", "after", "and more"]
    # Offsets stay true line starts: a reader resumes from any of them.
    assert [e.data["message"] for e in read_events(path, got[1].offset)] == ["after", "and more"]


def test_enospc_on_append_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(events_module.os, "write", full)
    with pytest.raises(StorageError, match="No space left"):
        EventWriter(tmp_path / "events.jsonl", "t1").status("RUNNING")
