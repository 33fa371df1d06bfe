"""The code table: each named error has one code, and a recorded code names its error."""

from __future__ import annotations

from spool.errors import (
    ERROR_CODES,
    ModelUnavailable,
    MofsimError,
    TaskCancelled,
    TaskError,
    TaskTimeout,
    code_of,
    error_from_code,
)


def test_code_of_a_class_is_its_instances_code() -> None:
    for cls in (TaskError, TaskTimeout, TaskCancelled, ModelUnavailable):
        assert code_of(cls) == cls("x").code == ERROR_CODES[cls.code_name].code
    # The wire format: these numbers are what clients read.
    assert (code_of(TaskError), code_of(TaskTimeout), code_of(TaskCancelled)) == (
        50001,
        50002,
        50004,
    )


def test_a_recorded_code_becomes_its_class_again() -> None:
    assert type(error_from_code(code_of(TaskTimeout), "late")) is TaskTimeout
    unknown = error_from_code(59999, "from a newer server")
    assert type(unknown) is MofsimError and unknown.message == "from a newer server"
    codes = [e.code for e in ERROR_CODES.values()]
    assert len(codes) == len(set(codes))
