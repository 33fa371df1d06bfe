"""Calibration: force calls on a ladder of supercells of a built-in MOF, measured.

``python -m executors.calibrate --spool DIR --model KEY`` (what ``mofsim models
calibrate`` runs, in a process of its own so that its memory readings are its own, with
``CUDA_VISIBLE_DEVICES`` naming the slot's card) loads the model, computes forces a few
times on each supercell up to ``--max-atoms`` atoms, and stores the points in the
spool's cost model (``executors.cost_model``) under the model, the device's name and the
dtype, replacing earlier calibration points.  It prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from executors.cost_model import CostModel, fit_key

# Each rung grows the cell along one axis after the other.
LADDER = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2), (3, 2, 2), (3, 3, 2), (3, 3, 3), (4, 3, 3)]
CALLS_PER_RUNG = 3


def ladder(natoms: int, max_atoms: int) -> list[tuple[int, int, int]]:
    rungs = [r for r in LADDER if natoms * r[0] * r[1] * r[2] <= max_atoms]
    return rungs or [LADDER[0]]


def measure_rung(atoms: Any, calc: Any, device: str, cutoff: float) -> dict[str, Any]:
    """Peak memory and time per call of ``CALLS_PER_RUNG`` force calls on ``atoms``."""
    from executors.measure import CallCounter, PeakMemory, neighbour_pairs

    pairs = neighbour_pairs(atoms, cutoff)
    meter = PeakMemory(device)
    meter.start()
    with CallCounter(calc) as counter:
        atoms.calc = calc
        for i in range(CALLS_PER_RUNG):
            atoms.positions[0, 0] += 0.001 * (i + 1)  # a new geometry each time
            atoms.get_forces()
    peak = meter.stop()
    return {
        "natoms": len(atoms),
        "pairs": pairs,
        "memory_mb": peak,
        "seconds_per_call": counter.seconds_per_call,
        "t": time.time(),
        "source": "calibrate",
    }


def calibrate(
    spool_root: Path,
    model: str,
    *,
    device: str = "cpu",
    device_name: str = "cpu",
    dtype: str = "float32",
    structure: str = "MOF-5",
    max_atoms: int = 2000,
) -> dict[str, Any]:
    from executors.builtin_structures import build_builtin
    from executors.calc_cache import CalculatorCache
    from executors.measure import model_cutoff
    from executors.models import check_usable, resolve_model
    from spool.layout import SpoolPaths

    paths = SpoolPaths(spool_root)
    spec = resolve_model(model, paths.models)
    check_usable(spec)
    t0 = time.perf_counter()
    calc = CalculatorCache(max_size=1).get(spec, device, dtype, False, models_root=paths.models)
    load_s = time.perf_counter() - t0
    base = build_builtin(structure)
    cutoff = model_cutoff(spec)
    # The model's one-time set-up (first call) must not count as the first rung's memory.
    measure_rung(base.copy(), calc, device, cutoff)
    points = []
    for rung in ladder(len(base), max_atoms):
        points.append(measure_rung(base.repeat(rung), calc, device, cutoff))
    usable = [p for p in points if p["memory_mb"]]
    key = fit_key(spec.key, device_name, dtype)
    model_store = CostModel(paths.state_dir)
    model_store.add_points(key, usable, replace_source="calibrate")
    mem = model_store.line(key, "memory_mb")
    per_call = model_store.line(key, "seconds_per_call")
    return {
        "fit": key,
        "model": spec.key,
        "device": device_name,
        "dtype": dtype,
        "structure": structure,
        "model_load_seconds": round(load_s, 3),
        "points": points,
        "memory_mb": mem.to_dict() if mem else None,
        "seconds_per_call": per_call.to_dict() if per_call else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="executors.calibrate")
    ap.add_argument("--spool", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--device-name", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--structure", default="MOF-5")
    ap.add_argument("--max-atoms", type=int, default=2000)
    args = ap.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # model libraries print; the answer owns stdout
    from spool.errors import MofsimError, TaskError

    try:
        doc = calibrate(
            Path(args.spool),
            args.model,
            device=args.device,
            device_name=args.device_name,
            dtype=args.dtype,
            structure=args.structure,
            max_atoms=args.max_atoms,
        )
    except MofsimError as exc:
        out.write(json.dumps({"error": exc.to_dict()}) + "\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - the model could not compute the ladder
        bad = TaskError(
            f"{args.model} could not compute {args.structure}: {type(exc).__name__}: {exc}"
            " (give a structure the model covers with --structure)",
            field="structure",
        )
        out.write(json.dumps({"error": bad.to_dict()}) + "\n")
        return 1
    out.write(json.dumps(doc, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
