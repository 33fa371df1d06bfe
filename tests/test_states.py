"""Task states: one enum, the terminal set and directories and MIRA's spelling from it."""

from __future__ import annotations

import json
from pathlib import Path

from spool import Spool
from spool.states import ALL_STATES, TERMINAL_DIRS, TERMINAL_STATES, TaskState


def test_states_are_their_uppercase_names_on_the_wire() -> None:
    assert [s.value for s in TaskState] == [
        "PENDING",
        "QUEUED",
        "ASSIGNED",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
    ]
    assert json.dumps({"status": TaskState.QUEUED}) == '{"status": "QUEUED"}'
    assert TaskState.COMPLETED == "COMPLETED" and f"{TaskState.FAILED}" == "FAILED"
    assert "RUNNING" in ALL_STATES and "DONE" not in ALL_STATES
    assert TaskState.CANCELLED.mira_detail == "cancelled"


def test_mira_statuses_are_the_guides_four() -> None:
    from spool.states import MIRA_STATUSES, states_of_mira_status

    assert {s.mira for s in TaskState} == set(MIRA_STATUSES)
    assert [s.mira for s in TaskState] == [
        "pending",
        "pending",
        "pending",
        "running",
        "completed",
        "failed",
        "failed",
        "failed",
    ]
    assert states_of_mira_status("failed") == [
        TaskState.FAILED,
        TaskState.CANCELLED,
        TaskState.TIMEOUT,
    ]
    assert states_of_mira_status("queued") == []


def test_terminal_states_have_their_own_directories(tmp_path: Path) -> None:
    assert TERMINAL_STATES == {s for s in TaskState if s.is_terminal}
    assert set(TERMINAL_DIRS) == TERMINAL_STATES
    assert TaskState.COMPLETED.directory == "done" and TaskState.RUNNING.directory is None
    paths = Spool(tmp_path).paths
    for state in (s for s in TaskState if s.is_terminal):
        assert paths.terminal_dir(state).is_dir()
        assert paths.terminal_dir(state.value) == paths.terminal_dir(state)


def test_parse_takes_both_dialects_and_common_words() -> None:
    assert TaskState.parse("queued") is TaskState.QUEUED
    assert TaskState.parse(" Running ") is TaskState.RUNNING
    assert TaskState.parse("done") is TaskState.COMPLETED
    assert TaskState.parse("canceled") is TaskState.CANCELLED
    assert TaskState.parse("sleeping") is None
