"""How good are the cost estimates?  Fit on one set of structures, predict another.

    python bench/estimates.py                       # SevenNet-0 on this machine's CPU
    python bench/estimates.py --slot gpu0           # on a GPU
    python bench/estimates.py --model lj --max-atoms 300 --structures 8   # quick

Takes the built-in MOFs (primitive and conventional cells) and the MOFSimBench
structures beside the clone (``../shared/data/mofsimbench``, the ``main_set`` list of
``structures.yaml``) up to ``--max-atoms``, measures each as the executor does (peak
memory above the idle level, or the CUDA peak; time per force call, the fastest of
``--calls`` calls after a warm-up call; neighbour pairs within the model's cutoff), sorts
them by size and deals them alternately into a fit set and a held-out set.  The cost
model (``executors.cost_model.fit_line``) is fitted on the first and predicts the second;
the script prints every held-out structure and the median and 90th percentile of the
relative errors of memory and of time per call, and how many held-out structures the
memory estimate with its safety margin covers.  ``--json`` prints the numbers instead.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mofsimbench"
sys.path.insert(0, str(ROOT))


def candidates(max_files: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """(name, structure reference): the built-ins, then benchmark files in a seeded order."""
    from executors.builtin_structures import builtin_names

    out = []
    for name in builtin_names():
        out.append((name, {"source": "builtin", "name": name}))
        out.append((f"{name}_conventional", {"source": "builtin", "name": f"{name}_conventional"}))
    listed: list[str] = []
    yaml_file = DATA / "structures.yaml"
    if yaml_file.exists():
        for line in yaml_file.read_text().splitlines():
            item = line.strip().removeprefix("- ").strip()
            if item.startswith("main_set/") and item.endswith(".cif"):
                listed.append(item)
    files = [DATA / item for item in dict.fromkeys(listed) if (DATA / item).exists()]
    random.Random(seed).shuffle(files)
    for path in files[:max_files]:
        out.append((path.stem, {"source": "path", "path": str(path)}))
    return out


def measure(atoms: Any, calc: Any, device: str, cutoff: float, calls: int) -> dict[str, Any]:
    from executors.measure import PeakMemory, neighbour_pairs

    pairs = neighbour_pairs(atoms, cutoff)
    meter = PeakMemory(device)
    meter.start()
    atoms.calc = calc
    times = []
    for i in range(calls + 1):
        atoms.positions[0, 0] += 0.001 * (i + 1)  # a new geometry: no cached answer
        t0 = time.perf_counter()
        atoms.get_forces()
        times.append(time.perf_counter() - t0)
    peak = meter.stop()
    atoms.calc = None
    return {
        "natoms": len(atoms),
        "pairs": pairs,
        "memory_mb": peak,
        # The first call warms up; of the others the fastest, the one least disturbed by
        # whatever else the machine runs meanwhile.
        "seconds_per_call": min(times[1:]),
    }


def relative_errors(points: list[dict[str, Any]], line: Any, what: str) -> list[float]:
    return [abs(line(p["natoms"], p["pairs"]) - p[what]) / p[what] for p in points if p[what]]


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="sevennet-0")
    ap.add_argument("--slot", default="cpu", help="cpu, or gpuN (NVML index N)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-atoms", type=int, default=None, help="default 450 on CPU, 5000 on GPU")
    ap.add_argument("--structures", type=int, default=24, help="structures measured at most")
    ap.add_argument("--calls", type=int, default=3, help="timed force calls per structure")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    gpu = args.slot.startswith("gpu")
    if gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.slot.removeprefix("gpu")
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    device = "cuda" if gpu else "cpu"
    max_atoms = args.max_atoms or (5000 if gpu else 450)
    warnings.simplefilter("ignore")  # CIF readers and model packages talk a lot

    from executors.calc_cache import CalculatorCache
    from executors.cost_model import fit_line
    from executors.measure import model_cutoff
    from executors.models import resolve_model
    from executors.structure_io import load_structure

    spec = resolve_model(args.model)
    t0 = time.perf_counter()
    calc = CalculatorCache(max_size=1).get(spec, device, args.dtype, False)
    load_s = time.perf_counter() - t0
    cutoff = model_cutoff(spec)
    # One-time set-up of the model's first calls must not land on the first structure.
    from executors.builtin_structures import build_builtin

    measure(build_builtin("CALF-20"), calc, device, cutoff, 1)
    measured: list[dict[str, Any]] = []
    for name, ref in candidates(4 * args.structures, args.seed):
        if len(measured) >= args.structures:
            break
        try:
            atoms, _ = load_structure(ref, ROOT)
        except Exception as exc:  # noqa: BLE001 - a file the readers refuse is skipped
            print(f"skipped {name}: {exc}", file=sys.stderr)
            continue
        if len(atoms) > max_atoms:
            continue
        point = measure(atoms, calc, device, cutoff, args.calls)
        point["name"] = name
        measured.append(point)
        if not args.json:
            print(
                f"  measured {name:<40} {point['natoms']:>6} atoms "
                f"{point['memory_mb']:>9.1f} MiB {1000 * point['seconds_per_call']:>9.1f} ms",
                file=sys.stderr,
            )
    measured.sort(key=lambda p: (p["natoms"], p["name"]))
    fit_set, held_out = measured[0::2], measured[1::2]

    def line_of(what: str) -> Any:
        return fit_line((p["natoms"], p["pairs"], p[what]) for p in fit_set)

    mem, per_call = line_of("memory_mb"), line_of("seconds_per_call")
    if per_call is None:
        print("too few measurable structures for a fit", file=sys.stderr)
        return 1
    # A model whose memory hardly rises above the executor's idle level (a pair
    # potential) leaves too few positive readings for a memory fit: said, not faked.
    mem_err = relative_errors(held_out, mem, "memory_mb") if mem is not None else []
    time_err = relative_errors(held_out, per_call, "seconds_per_call")
    covered = (
        sum(
            1 for p in held_out if p["memory_mb"] <= mem(p["natoms"], p["pairs"]) * (1 + mem.margin)
        )
        if mem is not None
        else 0
    )
    summary = {
        "model": spec.key,
        "device": device,
        "model_load_seconds": round(load_s, 2),
        "fit_structures": len(fit_set),
        "held_out_structures": len(held_out),
        "memory_fit": mem.to_dict() if mem is not None else None,
        "time_fit": per_call.to_dict(),
        "memory_error_median": statistics.median(mem_err) if mem_err else None,
        "memory_error_p90": percentile(mem_err, 0.9) if mem_err else None,
        "time_error_median": statistics.median(time_err),
        "time_error_p90": percentile(time_err, 0.9),
        "memory_covered_by_margin": f"{covered}/{len(held_out)}",
        "held_out": [
            {
                **p,
                "memory_predicted_mb": mem(p["natoms"], p["pairs"]) if mem else None,
                "seconds_per_call_predicted": per_call(p["natoms"], p["pairs"]),
            }
            for p in held_out
        ],
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"\n{spec.key} on {device}: fit on {len(fit_set)} structures, {len(held_out)} held out")
    print(
        f"{'held-out structure':<40} {'atoms':>6} {'pairs':>8} {'MiB':>8} {'pred':>8} "
        f"{'ms/call':>9} {'pred':>9}"
    )
    for p in summary["held_out"]:
        print(
            f"{p['name']:<40} {p['natoms']:>6} {p['pairs']:>8} {p['memory_mb']:>8.1f} "
            f"{p['memory_predicted_mb'] or 0:>8.1f} {1000 * p['seconds_per_call']:>9.1f} "
            f"{1000 * p['seconds_per_call_predicted']:>9.1f}"
        )
    print()
    print(f"{'relative error':<22} {'median':>8} {'p90':>8}")
    if mem is not None:
        print(
            f"{'peak memory':<22} {100 * summary['memory_error_median']:>7.1f}% "
            f"{100 * summary['memory_error_p90']:>7.1f}%"
        )
    else:
        print(f"{'peak memory':<22} too little above the idle level to fit")
    print(
        f"{'time per force call':<22} {100 * summary['time_error_median']:>7.1f}% "
        f"{100 * summary['time_error_p90']:>7.1f}%"
    )
    if mem is not None:
        print(
            f"memory estimate with its {100 * mem.margin:.0f} % margin covers "
            f"{summary['memory_covered_by_margin']} held-out structures"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
