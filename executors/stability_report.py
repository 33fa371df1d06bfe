"""What a finished stability run amounts to: its metrics, its verdict and its plot.

``summarize`` is pure (the runner's frames, samples and stage summaries in, the result
document out): volume change, RMSD from the input structure and centre-of-mass drift over
the frames, temperatures and energy drifts per stage, the metal coordination before and
after, and the stable/unstable verdict of ``md_metrics.verdict`` against the job's
thresholds.  RMSD and coordination are measured as MOFSimBench's analysis does
(``executors.bench_geometry``): Cartesian RMSD after removing rotation and translation,
and CrystalNN coordination per metal element, input against last frame; the element
whose coordination moved most is the one judged.
``plot_run`` draws volume, temperature and energy against time, stages marked, under a
title naming the structure, the model, the verdict and what decided it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executors.md_runner import StageRun


def summarize(
    stage_run: StageRun,
    masses: Any,
    coordination_input: dict[str, float],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Metrics and verdict of a finished run (pure: frames and samples in, dict out)."""
    from executors import md_metrics as mm
    from executors.bench_geometry import coordination_change, metal_coordination, position_rmsd

    samples, frames, stages = stage_run.samples, stage_run.frames, stage_run.stages
    v0 = samples[0]["volume"]
    volumes = [s["volume"] for s in samples]
    v_final = volumes[-1]
    change = None if v0 is None or v_final is None else 100.0 * (v_final - v0) / v0
    disp = mm.lattice_displacements(frames)
    rmsd = [position_rmsd(frames[0], frame) for frame in frames]
    com = mm.com_drift_series(disp, masses)
    relaxed = stage_run.after_relax
    errors: list[str] = []

    def measured(atoms: Any) -> dict[str, float]:
        # A run must not be lost to a structure CrystalNN cannot take (a collapsed cell).
        try:
            return metal_coordination(atoms)
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many kinds
            errors.append(f"{type(exc).__name__}: {exc}")
            return {}

    final = measured(frames[-1])
    by_element = {
        "input": coordination_input,
        "after_relaxation": None if relaxed is None else measured(relaxed),
        "final": final,
    }
    element, _ = coordination_change(coordination_input, final)
    judged = mm.verdict(
        change,
        None if element is None else coordination_input[element],
        None if element is None else final[element],
        max_volume_change_percent=params["max_volume_change_percent"],
        coordination_tolerance=params["coordination_tolerance"],
        element=element,
    )
    md_runs = [s for s in stages if s["type"] in ("nvt", "npt")]
    production = next((s for s in reversed(md_runs) if s["type"] == "npt"), md_runs[-1])
    return {
        "stability_assessment": judged["assessment"],
        "verdict": judged,
        "thresholds": judged["thresholds"],
        "initial_volume_A3": v0,
        "final_volume_A3": v_final,
        "volume_change_percent": change,
        "volume_drift_percent": change,
        "final_volume_ratio": None if change is None else 1.0 + change / 100.0,
        "final_rmsd": rmsd[-1],
        "max_rmsd": max(rmsd),
        "com_drift_A": com[-1],
        "max_com_drift_A": max(com),
        "avg_temperature": production["temperature_mean"],
        "temp_std": production["temperature_std"],
        "nvt_duration_ps": sum(s["duration_ps"] for s in md_runs if s["type"] == "nvt"),
        "npt_duration_ps": sum(s["duration_ps"] for s in md_runs if s["type"] == "npt"),
        "energy_drift": [
            {
                "stage": s["index"],
                "stage_type": s["type"],
                "quantity": s["energy_drift_quantity"],
                "drift_meV_per_atom_per_ps": s["energy_drift_meV_per_atom_per_ps"],
                "potential_energy_drift_meV_per_atom_per_ps": s[
                    "potential_energy_drift_meV_per_atom_per_ps"
                ],
            }
            for s in md_runs
        ],
        "rmsd_definition": "Cartesian RMSD from the input structure over all 3N "
        "coordinates, after removing rotation and translation (minimum image)",
        "metal_coordination": {
            **{k: _overall(v, frames[0]) for k, v in by_element.items()},
            "by_element": by_element,
            "judged_element": element,
            "errors": errors,
            "reference": "input",
            "method": "CrystalNN (x_diff_weight 1.5, search_cutoff 4.5 A), mean per metal element",
        },
        "stages": stages,
        "n_frames": len(frames),
        "time_series": {
            "time_ps": [s["time_ps"] for s in samples],
            "stage": [s["stage"] for s in samples],
            "stage_type": [s["stage_type"] for s in samples],
            "volume_ratio": mm.volume_ratios(volumes, v0) if v0 else volumes,
            "temperature_K": [s["temperature"] for s in samples],
            "energy_eV": [s["energy"] for s in samples],
            "total_energy_eV": [s["total_energy"] for s in samples],
            "rmsd_A": rmsd,
            "com_drift_A": com,
        },
    }


def _overall(by_element: dict[str, float] | None, atoms: Any) -> float | None:
    """Mean coordination over all metal atoms, from the per-element means."""
    if not by_element:
        return None
    symbols = atoms.get_chemical_symbols()
    counts = {el: symbols.count(el) for el in by_element}
    total = sum(counts.values())
    return sum(by_element[el] * counts[el] for el in by_element) / total if total else None


def plot_title(result: dict[str, Any], structure: str, model: str) -> str:
    """``structure · model`` over the verdict and the criterion that decided it."""
    verdict = result["verdict"]
    head = f"{structure} · {model}"
    volume = f"volume change {_fmt(result['volume_change_percent'])} %"
    coord = result["metal_coordination"]
    element = coord.get("judged_element")
    delta = verdict.get("coordination_change")
    coordination = (
        "no metal coordination"
        if element is None
        else f"{element} coordination {delta:+.2f}"
        if delta is not None
        else f"{element} coordination n/a"
    )
    decided = verdict.get("decided_by") or []
    if not decided:
        return f"{head}\nstable: {volume}, {coordination} (within thresholds)"
    parts = [volume if d == "volume" else coordination for d in decided]
    return f"{head}\nunstable by {' and '.join(parts)}"


def plot_run(
    path: Any, stage_run: StageRun, result: dict[str, Any], structure: str = "", model: str = ""
) -> None:
    """Volume, temperature and energy against time, stage boundaries marked."""
    from executors.plots import plot_panels

    series = result["time_series"]
    time_ps = series["time_ps"]
    boundaries: list[dict[str, Any]] = []
    for stage in stage_run.stages:
        if boundaries and boundaries[-1]["x"] == stage["start_time_ps"]:
            boundaries[-1]["label"] += f"+{stage['type']}"  # a relaxation takes no time
        else:
            boundaries.append({"x": stage["start_time_ps"], "label": stage["type"]})
    # The thermostat's target beside the measured temperature (none during a relaxation).
    target = [
        stage_run.stages[k].get("temperature") if t != "relax" else None
        for k, t in zip(series["stage"], series["stage_type"], strict=True)
    ]
    n = max(len(stage_run.frames[0]), 1)
    plot_panels(
        path,
        time_ps,
        [
            {
                "y": series["volume_ratio"],
                "ylabel": "V / V0",
                "label": "V / V0",
                "series": [
                    {
                        "x": [time_ps[0], time_ps[-1]],
                        "y": [1.0, 1.0],
                        "style": "dashed",
                        "color": "0.5",
                        "label": "V0 (first frame)",
                    }
                ],
            },
            {
                "y": series["temperature_K"],
                "ylabel": "T (K)",
                "label": "instantaneous T",
                "series": [
                    {
                        "x": time_ps,
                        "y": target,
                        "style": "dashed",
                        "color": "tab:red",
                        "label": "target T",
                    }
                ],
            },
            {
                "y": [e / n for e in series["energy_eV"]],
                "ylabel": "energy (eV/atom)",
                "label": "E_pot",
                "series": [
                    {
                        "x": time_ps,
                        "y": [e / n for e in series["total_energy_eV"]],
                        "style": "line",
                        "color": "tab:green",
                        "label": "E_pot + E_kin",
                    }
                ],
            },
        ],
        xlabel="time (ps)",
        title=plot_title(result, structure or "structure", model or "model"),
        vlines=boundaries,
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"
