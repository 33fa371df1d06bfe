"""A job's estimated cost at submission, and the refusal of one no device can hold.

``estimate_job`` measures the structure as the executor will (atoms, neighbour pairs
within the model's cutoff, both times the copies a task makes, as heat capacity's
supercell), asks the spool's cost model (``executors.cost_model``) for every kind of
device the machine has, and returns what the job records as its ``estimate``:

- ``memory_mb``: peak memory with the fit's safety margin, on the smallest device that
  holds it; ``duration_s`` and ``force_calls`` there; ``devices``: every device kind
  with its own numbers;
- or raises ``DeviceUnavailable`` (30004) with the numbers when the estimate exceeds
  every device that has a fit.

Without a fit for the model, device and dtype nothing is estimated and nothing refused:
a guess is never a reason to turn a job away.  The devices come from the daemon's slot
snapshot (``state/slots.json``); a spool whose daemon never ran has none, and then
nothing is refused either.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spool.errors import DeviceUnavailable

if TYPE_CHECKING:
    from ase import Atoms

    from executors.cost_model import CostModel
    from executors.models import ModelSpec

# (device kind, total memory in MiB): what a job must fit in.
Device = tuple[str, float]

_models: dict[Path, CostModel] = {}
_models_lock = threading.Lock()


def cost_model(state_dir: Path) -> CostModel:
    """One cached ``CostModel`` per spool state folder (it rereads a changed file)."""
    from executors.cost_model import CostModel

    key = Path(state_dir).resolve()
    with _models_lock:
        found = _models.get(key)
        if found is None:
            found = _models[key] = CostModel(key)
        return found


def snapshot_devices(spool_root: Path) -> list[Device]:
    """The devices of the daemon's last slot snapshot: name and total memory."""
    from mofsim_core.slot_state import read_snapshot

    snap = read_snapshot(spool_root)
    out: list[Device] = []
    for slot in (snap or {}).get("slots") or []:
        if not isinstance(slot, dict):
            continue
        total = (slot.get("device_status") or {}).get("memory_total_mb")
        if isinstance(total, int | float) and total > 0:
            out.append((str(slot.get("name") or slot.get("slot_id")), float(total)))
    return out


class _Sizes:
    """Atoms and pairs of recently seen structures: counting pairs of 10 000 atoms
    takes most of a second, and batches repeat one structure."""

    def __init__(self, size: int = 256) -> None:
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def of(self, atoms: Atoms, cutoff: float) -> tuple[int, int]:
        from executors.measure import neighbour_pairs

        digest = hashlib.sha256()
        digest.update(atoms.numbers.tobytes())
        digest.update(atoms.positions.round(4).tobytes())
        digest.update(atoms.cell.array.round(4).tobytes())
        digest.update(repr((cutoff, tuple(atoms.pbc))).encode())
        key = digest.hexdigest()
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return self._seen[key]
        value = (len(atoms), neighbour_pairs(atoms, cutoff))
        with self._lock:
            self._seen[key] = value
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return value


SIZES = _Sizes()


def has_fit(costs: CostModel, model: str, dtype: str) -> bool:
    suffix_model = f"{model}|"
    return any(k.startswith(suffix_model) and k.endswith(f"|{dtype}") for k in costs.keys())


def estimate_job(
    costs: CostModel,
    atoms: Atoms,
    task_type: str,
    spec: ModelSpec,
    params: Mapping[str, Any],
    dtype: str,
    devices: list[Device],
) -> dict[str, Any] | None:
    """The job's ``estimate``, None without a fit; raises 30004 when it fits nowhere."""
    from executors.measure import model_cutoff
    from executors.registry import task_module

    dtype = str(params.get("dtype") or dtype)
    if not devices or not has_fit(costs, spec.key, dtype):
        return None
    unit_atoms, unit_pairs = SIZES.of(atoms, model_cutoff(spec))
    cells = getattr(task_module(task_type), "cell_multiplier", None)
    multiplier = cells(params)[0] if cells is not None else 1
    natoms, pairs = unit_atoms * multiplier, unit_pairs * multiplier
    phonons = phonon_plan(atoms, params) if task_type == "heat-capacity" else None
    per_kind: dict[str, dict[str, Any]] = {}
    largest: dict[str, float] = {}
    for name, total in devices:
        from executors.cost_model import device_key

        kind = device_key(name)
        largest[kind] = max(largest.get(kind, 0.0), total)
        if kind in per_kind:
            continue
        est = costs.estimate(spec.key, name, dtype, natoms, pairs, task_type, params)
        if est is not None:
            per_kind[kind] = est.to_dict()
            if phonons is not None:
                per_kind[kind].update(
                    _phonon_time(
                        costs,
                        spec.key,
                        name,
                        dtype,
                        unit_atoms,
                        unit_pairs,
                        params,
                        est.seconds_per_call,
                        phonons[0],
                    )
                )
    if not per_kind:
        return None
    fitting = {k: e for k, e in per_kind.items() if e["memory_mb"] <= largest[k]}
    kind, need = min(((k, e["memory_mb"]) for k, e in per_kind.items()), key=lambda x: x[1])
    # A device kind without a fit is given the benefit of the doubt up to its size.
    if not fitting and need > max(largest.values()):
        raise DeviceUnavailable(
            f"estimated peak memory {need:.0f} MiB for {natoms} atoms ({pairs} neighbour "
            f"pairs) with {spec.key} exceeds the largest device, {kind} with "
            f"{largest[kind]:.0f} MiB",
            field="structure",
            detail=json.dumps(
                {
                    "estimated_memory_mb": round(need),
                    "available_memory_mb": round(max(largest.values())),
                    "natoms": natoms,
                    "neighbour_pairs": pairs,
                    "device": kind,
                }
            ),
        )
    if not fitting:
        return None
    best_kind = min(fitting, key=lambda k: largest[k])
    best = fitting[best_kind]
    extra = {} if phonons is None else {"n_displacements": phonons[0]}
    return {
        **extra,
        "natoms": natoms,
        "neighbour_pairs": pairs,
        "memory_mb": best["memory_mb"],
        "duration_s": best["duration_s"],
        "force_calls": best["force_calls"],
        "device": best_kind,
        "devices": per_kind,
    }


def phonon_plan(atoms: Atoms, params: Mapping[str, Any]) -> tuple[int, int]:
    """Heat capacity's displaced supercells, counted as the task will make them (on the
    structure as given; relaxing it rarely changes its symmetry): count and atoms."""
    import numpy as np
    from phonopy import Phonopy

    from executors.tasks.heat_capacity import phonopy_cell

    with warnings.catch_warnings():
        # Phonopy's remarks on the supercell's symmetry are the task's to make.
        warnings.simplefilter("ignore", UserWarning)
        phonon: Any = Phonopy(
            phonopy_cell(atoms),
            supercell_matrix=np.diag(params["supercell"]),
            primitive_matrix="P",
            symprec=params["symprec"],
        )
        phonon.generate_displacements(distance=params["displacement"])
    return len(phonon.supercells_with_displacements), len(phonon.supercell)


def _phonon_time(
    costs: CostModel,
    model: str,
    device: str,
    dtype: str,
    natoms: int,
    pairs: int,
    params: Mapping[str, Any],
    super_seconds: float | None,
    displacements: int,
) -> dict[str, Any]:
    """Force calls and duration of a heat capacity: the relaxation's calls on the cell
    (as past optimizations of the same protocol needed), then one call per displaced
    supercell."""
    relax: dict[str, Any] = {"max_steps": params.get("max_steps", 0)}
    if params.get("protocol"):
        relax["protocol"] = params["protocol"]
    unit = costs.estimate(model, device, dtype, natoms, pairs, "optimization", relax)
    relax_calls = unit.force_calls if unit is not None and params.get("pre_optimize") else 0.0
    unit_seconds = unit.seconds_per_call if unit is not None else None
    calls = relax_calls + displacements
    duration = None
    if super_seconds is not None and (unit_seconds is not None or not relax_calls):
        duration = relax_calls * (unit_seconds or 0.0) + displacements * super_seconds
    return {
        "force_calls": round(calls),
        "duration_s": None if duration is None else round(duration, 1),
    }


def estimate_reference(
    spool_root: Path,
    ref: dict[str, Any],
    task_type: str,
    spec: ModelSpec,
    params: Mapping[str, Any],
    dtype: str,
    devices: list[Device] | None = None,
) -> dict[str, Any] | None:
    """``estimate_job`` of a structure reference, the devices from the snapshot unless
    given.  The structure is loaded only when a fit exists."""
    from executors.structure_io import load_structure

    costs = cost_model(Path(spool_root) / "state")
    if not has_fit(costs, spec.key, str(params.get("dtype") or dtype)):
        return None
    devices = snapshot_devices(Path(spool_root)) if devices is None else devices
    if not devices:
        return None
    atoms, _ = load_structure(ref, Path(spool_root))
    return estimate_job(costs, atoms, task_type, spec, params, dtype, devices)
