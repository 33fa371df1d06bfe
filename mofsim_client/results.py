"""Typed results, one class per task type: the result document of spec 5.3 with the
type's own fields (``OptimizationResult.final_energy_eV``...) lifted out of its inner
``result`` object.

Built like the records of ``models.py``: unknown keys are ignored, the whole document is
kept in ``.raw``, and any key of the inner result stays reachable as ``result[key]``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from mofsim_client._base import M, _Model


async def _same(value: Any) -> Any:
    return value


@dataclass
class TaskResult(_Model):
    """The result document of spec 5.3: task metadata around the type's ``result``.

    ``from_dict`` takes the whole document or only its inner ``result`` object.  A
    result can be awaited and gives itself: code written for the async client
    (``result = await task.result()``) then also runs with a sync ``Task``."""

    task_id: str | None = None
    task_type: str | None = None
    status: str | None = None
    model: str | None = None
    structure_name: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_seconds: float | None = None
    gpu_id: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict, repr=False)
    output_files: dict[str, str] = field(default_factory=dict)
    parameters_used: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls: type[M], data: dict[str, Any] | None) -> M:
        doc = dict(data or {})
        inner = doc.get("result") if isinstance(doc.get("result"), dict) else None
        if inner is None:  # only the inner result was given
            inner, doc = doc, {"result": doc}
        base = TaskResult._known() - {"result", "output_files", "parameters_used"}
        kwargs: dict[str, Any] = {k: doc[k] for k in base if k in doc and doc[k] is not None}
        own = cls._known() - base - {"result"}
        kwargs.update({k: inner[k] for k in own if k in inner and inner[k] is not None})
        kwargs["result"] = inner
        return cls(raw=doc, **kwargs)

    def __getitem__(self, key: str) -> Any:
        """Any key of the inner result, including those without a field here."""
        return self.result[key]

    def __await__(self) -> Generator[Any, None, Any]:
        return _same(self).__await__()


@dataclass
class CellParameters(_Model):
    a: float | None = None
    b: float | None = None
    c: float | None = None
    alpha: float | None = None
    beta: float | None = None
    gamma: float | None = None


@dataclass
class OptimizationResult(TaskResult):
    converged: bool | None = None
    steps: int | None = None
    initial_energy_eV: float | None = None
    final_energy_eV: float | None = None
    final_fmax: float | None = None
    initial_volume_A3: float | None = None
    final_volume_A3: float | None = None
    volume_change_percent: float | None = None
    cell_parameters: CellParameters | None = None
    rmsd_from_initial: float | None = None
    natoms: int | None = None
    formula: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.cell_parameters, dict):
            self.cell_parameters = CellParameters.from_dict(self.cell_parameters)

    @property
    def volumes(self) -> tuple[float | None, float | None]:
        """(initial, final) cell volume in A^3."""
        return self.initial_volume_A3, self.final_volume_A3


@dataclass
class StabilityResult(TaskResult):
    stability_assessment: str | None = None
    verdict: dict[str, Any] | None = None
    thresholds: dict[str, Any] | None = None
    initial_volume_A3: float | None = None
    final_volume_A3: float | None = None
    volume_change_percent: float | None = None
    final_rmsd: float | None = None
    max_rmsd: float | None = None
    avg_temperature: float | None = None
    temp_std: float | None = None
    nvt_duration_ps: float | None = None
    npt_duration_ps: float | None = None
    metal_coordination: dict[str, Any] | None = None
    n_frames: int | None = None
    stages: list[dict[str, Any]] | None = field(default=None, repr=False)
    time_series: dict[str, list[Any]] | None = field(default=None, repr=False)

    @property
    def stable(self) -> bool | None:
        if self.stability_assessment is None:
            return None
        return self.stability_assessment == "stable"


@dataclass
class BulkModulusResult(TaskResult):
    bulk_modulus_GPa: float | None = None
    b0_prime: float | None = None
    v0_A3: float | None = None
    e0_eV: float | None = None
    eos: str | None = None
    reliable: bool | None = None
    v0_offset_percent: float | None = None
    fit_rms_residual_eV: float | None = None
    all_points_converged: bool | None = None
    volumes_A3: list[float] | None = field(default=None, repr=False)
    energies_eV: list[float] | None = field(default=None, repr=False)


@dataclass
class HeatCapacityResult(TaskResult):
    temperatures_K: list[float] | None = field(default=None, repr=False)
    cv_J_per_K_mol: list[float] | None = field(default=None, repr=False)
    cv_J_per_K_g: list[float] | None = field(default=None, repr=False)
    cv_300K_J_per_K_mol: float | None = None
    cv_300K_J_per_K_g: float | None = None
    entropy_J_per_K_mol: list[float] | None = field(default=None, repr=False)
    free_energy_kJ_per_mol: list[float] | None = field(default=None, repr=False)
    imaginary_modes_gamma: int | None = None
    lowest_frequency_thz: float | None = None
    n_displacements: int | None = None

    def cv_at(self, temperature_K: float, per: str = "g") -> float | None:
        """Cv at the tabulated temperature nearest ``temperature_K``, in J/(K g)
        (``per="g"``) or J/(K mol) (``per="mol"``)."""
        values = self.cv_J_per_K_g if per == "g" else self.cv_J_per_K_mol
        temperatures = self.temperatures_K
        if not temperatures or not values:
            return None
        i = min(range(len(temperatures)), key=lambda j: abs(temperatures[j] - temperature_K))
        return values[i]


@dataclass
class InteractionEnergyResult(TaskResult):
    interaction_energy_eV: float | None = None
    interaction_energy_kJ_mol: float | None = None
    complex_energy_eV: float | None = None
    framework_energy_eV: float | None = None
    guest_energy_eV: float | None = None
    guest_indices: list[int] | None = None
    guest_formula: str | None = None
    guest_forces_eV_A: list[list[float]] | None = field(default=None, repr=False)
    min_guest_framework_distance_A: float | None = None


@dataclass
class SinglePointResult(TaskResult):
    energy_eV: float | None = None
    energy_per_atom_eV: float | None = None
    max_force_eV_A: float | None = None
    pressure_GPa: float | None = None
    volume_A3: float | None = None
    natoms: int | None = None
    formula: str | None = None
    periodic: bool | None = None
    forces_eV_A: list[list[float]] | None = field(default=None, repr=False)
    stress_voigt_GPa: list[float] | None = field(default=None, repr=False)


RESULT_CLASSES: dict[str, type[TaskResult]] = {
    "optimization": OptimizationResult,
    "stability": StabilityResult,
    "bulk-modulus": BulkModulusResult,
    "heat-capacity": HeatCapacityResult,
    "interaction-energy": InteractionEnergyResult,
    "single-point-energy": SinglePointResult,
    "single-point": SinglePointResult,
}


def result_from_dict(doc: dict[str, Any], task_type: str | None = None) -> TaskResult:
    """The typed result for a result document (its ``task_type`` picks the class)."""
    kind = str(doc.get("task_type") or task_type or "").replace("_", "-")
    return RESULT_CLASSES.get(kind, TaskResult).from_dict(doc)
