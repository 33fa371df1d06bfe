"""The paper's metrics from finished campaigns, against the DFT references.

Per campaign (one model, with or without D3):

- optimization: converged fraction; the relaxed cell volume against the DFT-optimized
  one (signed and absolute error in %, MAE, RMSE in A^3); against the DFT-optimized
  structures themselves (``bench_dft``): the RMSD of the positions and the errors of
  the cell lengths and angles; the RMSD from the input structure.  A structure whose
  input cell differs from the DFT cell by more than ``CELL_MISMATCH`` in volume is left
  out (the reference was computed on another cell, e.g. a primitive one);
- bulk modulus: B0 against DFT, MAE in GPa;
- heat capacity: Cv at 300 K against DFT, MAE in J/(K g);
- stability: the stable fraction per protocol variant, and what decided the unstable
  ones (volume, coordination).

``collect`` reads the results from the spool; ``compare`` lines campaigns up side by
side.  Rendering is ``bench_render``'s.
"""

from __future__ import annotations

import functools
from typing import Any

from mofsim_core.bench_campaign import list_campaigns, load_campaign, task_state
from mofsim_core.bench_dft import dft_structure_names
from mofsim_core.bench_suites import (
    bulk_modulus_references,
    heat_capacity_references,
    reference_name,
)
from mofsim_core.owners import OWNER, Caller
from spool.errors import ValidationError
from spool.store import Spool

CELL_MISMATCH = 0.25
MAX_CAMPAIGNS = 20


def _result(spool: Spool, task_id: str) -> dict[str, Any] | None:
    import json

    path = spool.paths.result_file(task_id)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    result = doc.get("result")
    return result if isinstance(result, dict) else None


def _mae(pairs: list[dict[str, Any]], key: str = "error") -> float | None:
    return sum(abs(p[key]) for p in pairs) / len(pairs) if pairs else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _against_dft(spool: Spool, task_id: str, dft_name: str) -> dict[str, Any] | None:
    """The relaxed structure of a task against its DFT-optimized one (None when either
    is not there, or the relaxed one is no periodic structure)."""
    from mofsim_core.output_files import find_output
    from spool.errors import MofsimError

    try:
        path = find_output(spool, task_id, "structure").path
        st = path.stat()
    except (MofsimError, OSError):
        return None
    return _compared(str(path), st.st_mtime_ns, st.st_size, dft_name)


# Reading a CIF costs far more than comparing it: a report asked for again reads only
# what changed (a finished task's structure never does).
@functools.lru_cache(maxsize=4096)
def _compared(path: str, mtime_ns: int, size: int, dft_name: str) -> dict[str, Any] | None:
    from ase import Atoms
    from ase.io import read

    from mofsim_core.bench_dft import compare as against
    from mofsim_core.bench_dft import dft_structure

    reference = dft_structure(dft_name)
    if reference is None:
        return None
    try:
        relaxed = read(path, index=-1)
        if not isinstance(relaxed, Atoms) or relaxed.cell.rank != 3 or not len(relaxed):
            return None
        return against(relaxed, reference)
    except (OSError, ValueError):
        return None


def _structure_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the structures compared with their DFT-optimized ones."""
    import statistics

    rmsd = [r["rmsd_A"] for r in rows if r["rmsd_A"] is not None]
    lengths = [abs(e) for r in rows for e in r["length_errors_percent"] or []]
    angles = [abs(e) for r in rows for e in r["angle_errors_deg"] or []]
    return {
        "vs_dft_structures": rows,
        "rmsd_vs_dft_mean_A": _mean(rmsd),
        "rmsd_vs_dft_median_A": statistics.median(rmsd) if rmsd else None,
        "cell_length_mae_percent": _mean(lengths),
        "cell_angle_mae_deg": _mean(angles),
    }


def campaign_label(campaign: dict[str, Any]) -> str:
    label = str(campaign["model"]) + (" + D3" if campaign.get("with_d3") else "")
    return f"{label} ({campaign['suite']})"


def collect(spool: Spool, campaign: dict[str, Any]) -> dict[str, Any]:
    """Every entry's state and the metrics of one campaign."""
    b_refs, cv_refs = bulk_modulus_references(), heat_capacity_references()
    states: dict[str, int] = {}
    opt: list[dict[str, Any]] = []
    bulk: list[dict[str, Any]] = []
    heat: list[dict[str, Any]] = []
    stability: dict[str, dict[str, Any]] = {}
    opt_done = opt_converged = 0
    from_input: list[float] = []
    structures: list[dict[str, Any]] = []
    for rec in campaign["entries"].values():
        tid = rec.get("task_id")
        state = "REFUSED" if rec.get("refused") else task_state(spool, tid) or "NOT_SUBMITTED"
        states[state] = states.get(state, 0) + 1
        if state != "COMPLETED" or not tid:
            continue
        result = _result(spool, tid)
        if result is None:
            continue
        name, kind = str(rec["structure"]), str(rec["task_type"])
        ref_name = reference_name(name)
        if kind == "optimization":
            opt_done += 1
            opt_converged += bool(result.get("converged"))
            if isinstance(result.get("rmsd_cartesian_A"), int | float):
                from_input.append(float(result["rmsd_cartesian_A"]))
            ref = b_refs.get(ref_name)
            v_in, v_out = result.get("initial_volume_A3"), result.get("final_volume_A3")
            if ref and v_in and v_out:
                v_dft = float(ref["V0_A3"])
                if abs(v_in / v_dft - 1.0) <= CELL_MISMATCH:
                    err = 100.0 * (v_out - v_dft) / v_dft
                    opt.append({"structure": name, "model": v_out, "dft": v_dft, "error": err})
                    against = _against_dft(spool, tid, str(ref["dft_structure"]))
                    if against is not None:
                        structures.append({"structure": name, **against})
        elif kind == "bulk-modulus":
            ref = b_refs.get(ref_name)
            b0 = result.get("bulk_modulus_GPa")
            if ref and isinstance(b0, int | float):
                dft = float(ref["B0_GPa"])
                bulk.append({"structure": name, "model": b0, "dft": dft, "error": b0 - dft})
        elif kind == "heat-capacity":
            cv = result.get("cv_300K_J_per_K_g")
            if ref_name in cv_refs and isinstance(cv, int | float):
                dft = cv_refs[ref_name]
                heat.append({"structure": name, "model": cv, "dft": dft, "error": cv - dft})
        elif kind == "stability":
            group = stability.setdefault(
                str(rec.get("variant", "standard")),
                {"n": 0, "stable": 0, "by_volume": 0, "by_coordination": 0},
            )
            group["n"] += 1
            group["stable"] += result.get("stability_assessment") == "stable"
            decided = (result.get("verdict") or {}).get("decided_by") or []
            group["by_volume"] += "volume" in decided
            group["by_coordination"] += "coordination" in decided
    for group in stability.values():
        group["stable_fraction"] = group["stable"] / group["n"] if group["n"] else None
    return {
        "campaign_id": campaign["campaign_id"],
        "label": campaign_label(campaign),
        "model": campaign["model"],
        "with_d3": bool(campaign.get("with_d3")),
        "suite": campaign["suite"],
        "overrides": campaign.get("overrides") or {},
        "entries": len(campaign["entries"]),
        "states": states,
        "optimization": {
            "completed": opt_done,
            "converged_fraction": opt_converged / opt_done if opt_done else None,
            "volume_vs_dft": opt,
            "volume_mae_percent": _mae(opt),
            "volume_mean_error_percent": (sum(p["error"] for p in opt) / len(opt) if opt else None),
            "volume_rmse_A3": (
                (sum((p["model"] - p["dft"]) ** 2 for p in opt) / len(opt)) ** 0.5 if opt else None
            ),
            "rmsd_from_input_mean_A": _mean(from_input),
            **_structure_summary(structures),
        },
        "bulk_modulus": {"pairs": bulk, "mae_GPa": _mae(bulk)},
        "heat_capacity": {"pairs": heat, "mae_J_per_K_g": _mae(heat)},
        "stability": stability,
    }


def compare(
    spool: Spool, campaign_ids: list[str] | None = None, caller: Caller = OWNER
) -> dict[str, Any]:
    """The metrics of the named campaigns (all the caller may see when none are named)."""
    if campaign_ids:
        unique = list(dict.fromkeys(campaign_ids))
        if len(unique) > MAX_CAMPAIGNS:
            raise ValidationError(
                f"a report compares at most {MAX_CAMPAIGNS} campaigns", field="campaign"
            )
        campaigns = [load_campaign(spool, cid, caller) for cid in unique]
    else:
        campaigns = list_campaigns(spool, caller)
    return {
        "campaigns": [collect(spool, c) for c in campaigns],
        "references": {
            "bulk_modulus": len(bulk_modulus_references()),
            "heat_capacity": len(heat_capacity_references()),
            "dft_structures": len(dft_structure_names()),
            "cell_mismatch_limit": CELL_MISMATCH,
        },
    }
