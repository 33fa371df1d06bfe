"""The mirror's ``task_measurements`` table: what each completed task cost.

One row per completed task whose result carries ``metrics.measurement`` (the executor's
``executors.measure``): the model, device and dtype the cost model keys on, the task's
size (atoms, neighbour pairs) and its costs (peak memory, time per force call, force
calls, model load).  Both mirrors write it in the same transaction as the task's row, so
``mofsim mirror rebuild`` refills it from the spool like everything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mofsim_core.mirror_rows import iso_time

MEASUREMENT_COLUMNS: dict[str, type] = {
    "task_id": str,
    "task_type": str,
    "model": str,
    "device_name": str,
    "dtype": str,
    "natoms": int,
    "neighbour_pairs": int,
    "force_calls": int,
    "force_call_seconds": float,
    "peak_memory_mb": float,
    "model_load_seconds": float,
    "measured_at": str,
}

# Schema version 4 of either mirror.
PG_MIGRATION = [
    """CREATE TABLE IF NOT EXISTS task_measurements (
        task_id text COLLATE "C" PRIMARY KEY, task_type text COLLATE "C",
        model text COLLATE "C", device_name text COLLATE "C", dtype text,
        natoms integer, neighbour_pairs bigint, force_calls integer,
        force_call_seconds double precision, peak_memory_mb double precision,
        model_load_seconds double precision, measured_at text COLLATE "C")""",
    "CREATE INDEX IF NOT EXISTS task_measurements_key_idx "
    "ON task_measurements (model, device_name, dtype)",
]


def sqlite_migration(db: Any) -> None:
    """What each completed task cost (``mofsim_core.mirror_measurements``)."""
    table = db.table("task_measurements")
    table.create(MEASUREMENT_COLUMNS, pk="task_id", if_not_exists=True)
    table.create_index(["model", "device_name", "dtype"], if_not_exists=True)


def _num(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value)


def measurement_row(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The row of a task record, or None when it has no measurement (not completed,
    or run before tasks were measured)."""
    result = record.get("result")
    if record.get("status") != "COMPLETED" or not isinstance(result, Mapping):
        return None
    metrics = result.get("metrics")
    m = metrics.get("measurement") if isinstance(metrics, Mapping) else None
    if not isinstance(m, Mapping):
        return None
    prov = result.get("provenance")
    prov = prov if isinstance(prov, Mapping) else {}
    return {
        "task_id": str(record["task_id"]),
        "task_type": record.get("task_type"),
        "model": prov.get("model") or record.get("model"),
        "device_name": prov.get("device_name") or prov.get("device"),
        "dtype": prov.get("dtype"),
        "natoms": _num(m.get("natoms"), int),
        "neighbour_pairs": _num(m.get("neighbour_pairs"), int),
        "force_calls": _num(m.get("force_calls"), int),
        "force_call_seconds": _num(m.get("force_call_seconds"), float),
        "peak_memory_mb": _num(m.get("peak_memory_mb"), float),
        "model_load_seconds": _num(m.get("model_load_seconds"), float),
        "measured_at": iso_time(record.get("completed_at"), "completed_at"),
    }
