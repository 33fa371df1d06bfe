"""The mirror's task_measurements table on both backends: written with the task's
row, emptied with it, refilled by a rebuild, created by migration 4."""

from __future__ import annotations

from typing import Any

from mofsim_core import mirror as mirror_mod
from mofsim_core.mirror import Mirror
from mofsim_core.mirror_measurements import measurement_row
from tests.test_mirror import Store, db, record, store  # noqa: F401 - fixtures

__all__ = ["db", "store"]


def _measured(task_id: str, natoms: int = 106) -> dict[str, Any]:
    return record(
        task_id,
        status="COMPLETED",
        completed_at="2025-12-30T10:05:00.000Z",
        result={
            "result": {"energy": -1.0},
            "metrics": {
                "measurement": {
                    "natoms": natoms,
                    "neighbour_pairs": 8 * natoms,
                    "force_calls": 12,
                    "force_call_seconds": 0.25,
                    "peak_memory_mb": 321.5,
                    "model_load_seconds": 2.0,
                }
            },
            "provenance": {
                "model": "sevennet-0",
                "device_name": "Simulated GPU 0",
                "dtype": "float32",
            },
        },
    )


_SELECT = (
    "SELECT task_id, model, device_name, dtype, natoms, neighbour_pairs, force_calls, "
    "force_call_seconds, peak_memory_mb FROM task_measurements ORDER BY task_id"
)


def _rows(store: Store) -> list[tuple[Any, ...]]:
    """The table as another connection reads it."""
    m = store.opened[-1]
    if store.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(m.path) as raw:  # type: ignore[attr-defined]
            return [tuple(r) for r in raw.execute(_SELECT)]
    rows = m._pg.run(lambda c: c.execute(_SELECT).fetchall())  # type: ignore[attr-defined]
    return [tuple(r.values()) for r in rows]


def test_a_completed_measured_task_gets_its_row_and_others_none(store: Store, db: Mirror) -> None:
    db.upsert_task(record("q1"))
    db.upsert_task(_measured("m1"))
    db.upsert_task(_measured("m1", natoms=212))  # written again: replaced, not doubled
    assert _rows(store) == [
        ("m1", "sevennet-0", "Simulated GPU 0", "float32", 212, 1696, 12, 0.25, 321.5)
    ]
    db.delete_task("m1")
    assert _rows(store) == []


def test_rebuild_refills_the_measurements(store: Store, db: Mirror) -> None:
    db.upsert_task(_measured("old"))
    assert db.rebuild([_measured("a"), record("b"), _measured("c", natoms=50)]) == 3
    assert [r[0] for r in _rows(store)] == ["a", "c"]


def test_a_mirror_of_schema_3_gains_the_table(store: Store) -> None:
    store.open().close()
    store.execute("DROP TABLE task_measurements")
    store.execute("DELETE FROM schema_version WHERE version = 4")
    m = store.open()
    assert m.schema_version() == len(mirror_mod.MIGRATIONS) == 4
    m.upsert_task(_measured("m1"))
    assert len(_rows(store)) == 1


def test_records_without_a_measurement_give_no_row() -> None:
    assert measurement_row(record("x")) is None
    assert measurement_row(record("x", status="COMPLETED", result={"metrics": {}})) is None
    row = measurement_row(_measured("x"))
    assert row is not None and row["measured_at"] == "2025-12-30T10:05:00.000Z"
