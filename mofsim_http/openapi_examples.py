"""Request and response examples of the ``/api/v1`` operations (spec 12.3), and the
response schemas of the handlers that state none with ``@returns``.

Kept apart from the handlers: they are documentation, long, and all of one kind.
``openapi.build_operation`` looks an operation up here by ``"METHOD path"`` and uses
what it finds where the handler itself says nothing.  Every example is checked against
its operation's schema (``tests/test_openapi_examples.py``), and the request examples
are sent to a live server by the schemathesis run, so none can drift from what the
server accepts.
"""

from __future__ import annotations

from typing import Any

from mofsim_http.paging import list_schema

TIME = "2025-12-30T10:00:00Z"
TASK_ID = "task_abc123"
# A structure small enough to read at a glance (fcc copper); a MOF's CIF is uploaded
# the same way.
CIF = """data_Cu
_cell_length_a 3.61
_cell_length_b 3.61
_cell_length_c 3.61
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Cu1 Cu 0.0 0.0 0.0
Cu2 Cu 0.5 0.5 0.0
Cu3 Cu 0.5 0.0 0.5
Cu4 Cu 0.0 0.5 0.5
"""


def envelope(data: Any, code: int = 200, message: str = "OK") -> dict[str, Any]:
    """The spec's envelope (5.1) around ``data``."""
    return {
        "success": True,
        "code": code,
        "message": message,
        "data": data,
        "timestamp": TIME,
        "request_id": "req_abc123",
    }


def paged(items: list[Any], **extra: Any) -> dict[str, Any]:
    total = len(items)
    pagination = {"page": 1, "page_size": 20, "total": total, "total_pages": 1 if total else 0}
    return {"items": items, "pagination": pagination, **extra}


# --- requests -----------------------------------------------------------------------------------

# The spec's submission (5.2), as it stands.
SPEC_SUBMISSION: dict[str, Any] = {
    "task_type": "optimization",
    "model": "mace_prod",
    "structure": {"source": "upload", "file_id": "struct_xxx"},
    "parameters": {"fmax": 0.001, "max_steps": 1000, "optimizer": "BFGS", "with_d3": True},
    "options": {
        "priority": "NORMAL",
        "timeout": 3600,
        "notify_url": "https://client.example.com/callback",
    },
}
# Realistic parameters of each task type, on a built-in framework.
TASK_PARAMETERS: dict[str, dict[str, Any]] = {
    "optimization": {"fmax": 0.01, "max_steps": 500, "optimizer": "BFGS", "relax_cell": True},
    "single-point-energy": {"compute_stress": True},
    "bulk-modulus": {"strain_range": 0.06, "num_points": 7, "eos": "birchmurnaghan"},
    "heat-capacity": {"supercell": [1, 1, 1], "temperature_range": [0.0, 500.0, 50.0]},
    "interaction-energy": {"gas": "CO2", "position_fractional": [0.25, 0.25, 0.25]},
    "stability": {"nvt_steps": 2000, "npt_steps": 5000, "npt_temperature": 300.0},
}


def submission(task_type: str, name: str | None = None) -> dict[str, Any]:
    """A submission of ``task_type`` on MOF-5 (``name``: the task type as the path says
    it, when it is given in the body at all)."""
    body: dict[str, Any] = {
        "model": "sevennet-0",
        "structure": {"source": "builtin", "name": "MOF-5"},
        "parameters": TASK_PARAMETERS.get(task_type, {}),
        "options": {"priority": "HIGH", "timeout": 7200, "tags": ["screening"]},
    }
    return {"task_type": name, **body} if name else body


def request_examples() -> dict[str, Any]:
    """``"METHOD path"``: the request body example."""
    from executors.registry import task_types

    out: dict[str, Any] = {
        "POST /api/v1/tasks": SPEC_SUBMISSION,
        "POST /api/v1/tasks/batch": {
            "tasks": [
                submission("optimization", "optimization"),
                submission("single-point-energy", "single-point-energy"),
                {**submission("bulk-modulus", "bulk-modulus"), "model": "mace-mp"},
            ]
        },
        "POST /api/v1/tasks/{task_id}/keep": {"keep": True},
        "POST /api/v1/structures": {"file": CIF, "name": "Cu-fcc"},
        "POST /api/v1/structures/upload": {"content": CIF, "name": "Cu-fcc", "format": "cif"},
        "POST /api/v1/structures/upload/file": {"file": CIF, "name": "Cu-fcc"},
        "POST /api/v1/models/custom": {
            "file": "(the weights file, e.g. my-mace.model)",
            "name": "my-mace",
            "framework": "mace",
            "description": "MACE fine-tuned on our Zn MOFs",
            "with_d3": False,
            "config": '{"dtype": "float32"}',
        },
        "POST /api/v1/models/{key}/load": {"slot": "gpu0"},
        "POST /api/v1/models/{key}/unload": {"slot": "gpu0"},
        "POST /api/v1/auth/keys": {"name": "screening-pipeline", "admin": False},
        "POST /api/v1/bench/campaigns": {
            "model": "sevennet-0",
            "suite": "quick",
            "with_d3": False,
            "structures": {"main_set/MOF-5_primitive.cif": CIF},
        },
    }
    for task_type, spec in task_types().items():
        for name in spec.names:
            out[f"POST /api/v1/tasks/{name}"] = submission(task_type)
    out["POST /api/v1/tasks/optimization"] = {**SPEC_SUBMISSION, "model": "sevennet-0"}
    return out


# --- responses ----------------------------------------------------------------------------------

TASK_RECORD: dict[str, Any] = {
    "task_id": TASK_ID,
    "task_type": "optimization",
    "model": "mace_prod",
    "status": "RUNNING",
    "priority": "NORMAL",
    "created_at": TIME,
    "started_at": "2025-12-30T10:00:05Z",
    "completed_at": None,
    "slot": "gpu3",
    "gpu_id": 3,
    "progress": 0.42,
    "structure_name": "MOF-5_primitive",
    "queue_position": None,
    "estimated_start": None,
    "estimated_duration_s": 320.0,
}
QUEUED_RECORD: dict[str, Any] = {
    **TASK_RECORD,
    "status": "QUEUED",
    "started_at": None,
    "slot": None,
    "gpu_id": None,
    "progress": None,
    "queue_position": 3,
    "estimated_start": "2025-12-30T10:04:00Z",
}
# The spec's result (5.3), with the provenance this server adds.
RESULT: dict[str, Any] = {
    "task_id": TASK_ID,
    "task_type": "optimization",
    "status": "COMPLETED",
    "model": "mace_prod",
    "structure_name": "MOF-5_primitive",
    "created_at": TIME,
    "started_at": "2025-12-30T10:00:05Z",
    "completed_at": "2025-12-30T10:05:30Z",
    "duration_seconds": 325.5,
    "gpu_id": 3,
    "result": {
        "converged": True,
        "final_energy_eV": -1234.567,
        "final_fmax": 0.00095,
        "steps": 156,
        "initial_volume_A3": 17256.3,
        "final_volume_A3": 17198.7,
        "volume_change_percent": -0.33,
        "cell_parameters": {
            "a": 25.832,
            "b": 25.832,
            "c": 25.832,
            "alpha": 90.0,
            "beta": 90.0,
            "gamma": 90.0,
        },
        "rmsd_from_initial": 0.0234,
        "output_files": {
            "optimized_structure": "/api/v1/files/result_xxx.cif",
            "trajectory": "/api/v1/files/result_xxx.traj",
        },
    },
    "metrics": {"peak_gpu_memory_MB": 8234, "avg_step_time_ms": 2085},
    "provenance": {"model": "mace_prod", "dtype": "float32", "with_d3": True},
}
RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The result document (spec 5.3): the task's metadata around what its "
    "task type computed; `result.output_files` are download URLs.",
    "required": ["task_id", "task_type", "status", "model", "result", "metrics"],
    "properties": {
        "task_id": {"type": "string"},
        "task_type": {"$ref": "#/components/schemas/TaskType"},
        "status": {"const": "COMPLETED"},
        "model": {"type": "string"},
        "structure_name": {"type": ["string", "null"]},
        "created_at": {"type": ["string", "null"]},
        "started_at": {"type": ["string", "null"]},
        "completed_at": {"type": ["string", "null"]},
        "duration_seconds": {"type": ["number", "null"]},
        "gpu_id": {"type": ["integer", "null"]},
        "result": {
            "type": "object",
            "description": "What the task type computed; for an optimization: converged, "
            "final_energy_eV, final_fmax, steps, volumes, cell_parameters, "
            "rmsd_from_initial.",
            "properties": {
                "output_files": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "name -> URL under /api/v1/files/",
                }
            },
        },
        "metrics": {"type": "object", "description": "e.g. peak_gpu_memory_MB"},
        "provenance": {"type": "object", "description": "model, precision, D3, versions"},
    },
}
MODEL: dict[str, Any] = {
    "key": "sevennet-0",
    "name": "SevenNet-0",
    "family": "sevennet",
    "description": "SevenNet-0 (11Jul2024), NequIP-style GNN trained on MPtrj; 5 A cutoff",
    "elements": ["H", "C", "N", "O", "Zn", "Cu", "Zr"],
    "supported_tasks": ["optimization", "single-point-energy", "stability"],
    "references": "https://doi.org/10.1021/acs.jctc.4c00190",
    "d3_default": False,
    "loaded": True,
    "loaded_on": ["gpu0"],
}
GPU: dict[str, Any] = {
    "slot_id": "gpu0",
    "kind": "cuda",
    "index": 0,
    "name": "NVIDIA GeForce RTX 3090",
    "state": "busy",
    "memory_total_mb": 24576,
    "memory_used_mb": 9120,
    "memory_free_mb": 15456,
    "utilization_percent": 87.0,
    "temperature_c": 71.0,
    "available": True,
    "error": None,
    "loaded_models": ["sevennet-0"],
    "current_task": TASK_ID,
}
QUEUE: dict[str, Any] = {
    "queued": {
        "total": 12,
        "by_priority": {"CRITICAL": 0, "HIGH": 2, "NORMAL": 9, "LOW": 1},
        "oldest_queued_at": "2025-12-30T09:52:10Z",
        "oldest_age_seconds": 470.0,
    },
    "by_state": {
        "PENDING": 0,
        "QUEUED": 12,
        "ASSIGNED": 0,
        "RUNNING": 8,
        "COMPLETED": 1520,
        "FAILED": 14,
        "CANCELLED": 3,
        "TIMEOUT": 1,
    },
    "running": [{"task_id": TASK_ID, "slot": "gpu0", "model": "sevennet-0"}],
    "slots": {"total": 8, "busy": 8, "idle": 0, "loading": 0, "down": 0},
    "daemon_running": True,
}
HEALTH: dict[str, Any] = {
    "status": "healthy",
    "version": "0.1.0",
    "started_at": "2025-12-30T08:00:00Z",
    "uptime_seconds": 7200.0,
    "daemon": {"alive": True, "pid": 4242, "responsive": True, "snapshot_age_seconds": 1.2},
    "spool": {"writable": True, "error": None, "free_gb": 812.4, "total_gb": 1863.0},
    "mirror": True,
}
ALERT: dict[str, Any] = {
    "alert_id": "alert_5f1c2d3e4a6b",
    "type": "gpu_temperature_high",
    "level": "WARNING",
    "subject": "gpu2",
    "message": "gpu2 at 88 C (threshold 85 C)",
    "details": {"temperature_c": 88.0, "threshold": 85.0},
    "timestamp": TIME,
    "resolved": True,
    "resolved_at": "2025-12-30T10:12:00Z",
}


def response_examples() -> dict[str, dict[str, Any]]:
    """``"METHOD path"``: ``example`` (the whole body) and, where the handler states
    none, the ``schema`` of its payload."""
    health = {**envelope(HEALTH, message="healthy"), "status": "healthy", "version": "0.1.0"}
    return {
        "GET /api/v1/tasks/{task_id}": {"example": envelope(TASK_RECORD)},
        "GET /api/v1/tasks": {"example": envelope(paged([TASK_RECORD, QUEUED_RECORD]))},
        "GET /api/v1/tasks/{task_id}/result": {
            "schema": RESULT_SCHEMA,
            "example": envelope(RESULT),
        },
        "POST /api/v1/tasks/optimization": {
            "example": envelope(QUEUED_RECORD, 202, "Task queued"),
        },
        "GET /api/v1/models": {
            "schema": list_schema(),
            "example": envelope(paged([MODEL])),
        },
        "GET /api/v1/system/gpus": {
            "example": envelope(
                {"source": "daemon", "daemon_running": True, "count": 1, "gpus": [GPU]}
            ),
        },
        "GET /api/v1/system/queue": {"example": envelope(QUEUE)},
        "GET /api/v1/health": {"example": health},
        "GET /health": {"example": health},
        "GET /api/v1/system/alerts/history": {
            "example": envelope(paged([ALERT], engine="running")),
        },
        "GET /api/v1/alerts/history": {
            "example": envelope(paged([ALERT], engine="running")),
        },
    }
