"""Check that an uploaded custom model loads and computes, in a process of its own.

``python -m executors.validate_model --models-root DIR --model-id ID`` loads the model the
way an executor would (``executors.loaders.load_calculator``), computes energy, forces
and, where the model has them, stress of a small periodic cell made of elements the
model covers, and prints one JSON line: ``{"ok": true, ...}`` or ``{"ok": false,
"error": {...}}``.  Weights files are pickles, so this never runs inside the HTTP
server; the server starts it in the sandbox with a time limit and records the outcome.

With ``--convert-to DIR`` it also writes the model's safe form (``executors.safe_form``)
there, loads that back the way executors will, and checks that it gives the same energy
and forces; the outcome says so under ``safe_form``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

from executors.families import Family
from spool.errors import ModelUnavailable, MofsimError, code_of

_FALLBACK_ELEMENTS = ["C", "O"]
# The safe form must reproduce the upload: float32 round-off, not another model.
_SAME_ENERGY = 1e-5
_SAME_FORCES = 1e-4


def model_elements(calc: Any, family: Family) -> list[str] | None:
    """The species a loaded calculator knows, as its family reads them (MACE's z table,
    SevenNet's type map); None when it does not say (ORB covers the periodic table)."""
    from ase.data import chemical_symbols

    zs = family.species(calc) if family.species is not None else None
    if not zs:
        return None
    return [chemical_symbols[z] for z in zs if 0 < z < len(chemical_symbols)]


def probe_atoms(elements: list[str]) -> Any:
    """Two atoms 2.26 A apart in a 4.5 A cubic periodic cell."""
    from ase import Atoms

    pair = (elements * 2)[:2]
    return Atoms(pair, positions=[[0.0, 0.0, 0.0], [1.3, 1.4, 1.2]], cell=[4.5, 4.5, 4.5], pbc=True)


def validate(
    models_root: Path, model_id: str, device: str = "cpu", convert_to: Path | None = None
) -> dict[str, Any]:
    from executors.loaders import family_of, load_calculator
    from executors.models import custom_spec

    spec = custom_spec(model_id, models_root)
    t0 = time.perf_counter()
    calc = load_calculator(
        spec, device=device, dtype=spec.default_dtype, models_root=models_root, allow_pickle=True
    )
    load_s = time.perf_counter() - t0
    known = model_elements(calc, family_of(spec))
    declared = [e for e in spec.elements if e != "all"]
    elements = known or declared or _FALLBACK_ELEMENTS
    atoms = probe_atoms(elements)
    atoms.calc = calc
    t1 = time.perf_counter()
    energy = float(atoms.get_potential_energy())
    forces = atoms.get_forces()
    compute_s = time.perf_counter() - t1
    if not math.isfinite(energy) or not all(math.isfinite(float(x)) for x in forces.flat):
        raise MofsimError(f"the model returned non-finite values (energy {energy})")
    if forces.shape != (len(atoms), 3):
        raise MofsimError(f"the model returned forces of shape {forces.shape}")
    out: dict[str, Any] = {
        "ok": True,
        "model_key": spec.key,
        "framework": spec.framework,
        "dtype": spec.default_dtype,
        "device": device,
        "model_elements": known,
        "tested_formula": atoms.get_chemical_formula(),
        "energy_eV": energy,
        "max_force_eV_A": float(max(math.sqrt(sum(c * c for c in f)) for f in forces)),
        "load_seconds": round(load_s, 3),
        "compute_seconds": round(compute_s, 3),
    }
    try:
        stress = atoms.get_stress()
        out["stress_finite"] = all(math.isfinite(float(x)) for x in stress)
    except Exception as exc:  # noqa: BLE001 - stress is optional for a potential
        out["stress_finite"] = None
        out["stress_note"] = f"{type(exc).__name__}: {exc}"[:300]
    if declared and known:
        missing = sorted(set(declared) - set(known))
        if missing:
            out["warning"] = f"declared elements the model does not know: {', '.join(missing)}"
    if convert_to is not None:
        out["safe_form"] = convert(calc, spec, atoms, energy, forces, convert_to, device)
    return out


def convert(
    calc: Any, spec: Any, atoms: Any, energy: float, forces: Any, folder: Path, device: str
) -> dict[str, Any]:
    """Write the safe form, load it back and compare; ``{"written": bool, ...}``."""
    from executors.loaders import family_of
    from executors.safe_form import Unconvertible

    family = family_of(spec)
    if family.to_safe_form is None or family.load_safe_form is None:
        # Nothing to write: executors read such uploads weights-only as they are.
        return {"written": False, "as_uploaded": True}
    try:
        family.to_safe_form(calc, folder)
    except Unconvertible as exc:
        return {"written": False, "reason": str(exc)[:500]}
    config = dict(spec.extra.get("config") or {})
    again = family.load_safe_form(folder, config, device, spec.default_dtype)
    probe = atoms.copy()
    probe.calc = again
    energy2 = float(probe.get_potential_energy())
    drift = float(abs(probe.get_forces() - forces).max())
    scale = max(1.0, abs(energy))
    if abs(energy2 - energy) > _SAME_ENERGY * scale or drift > _SAME_FORCES:
        raise MofsimError(
            f"the model's weights-only form gives other numbers ({energy2} eV vs {energy} eV, "
            f"forces up to {drift:.3g} eV/A apart)"
        )
    return {"written": True, "energy_eV": energy2, "max_force_difference_eV_A": drift}


def run(
    models_root: Path, model_id: str, device: str, out: IO[str], convert_to: Path | None = None
) -> int:
    try:
        doc = validate(models_root, model_id, device, convert_to)
    except MofsimError as exc:
        doc = {"ok": False, "error": exc.to_dict()}
    except Exception as exc:  # noqa: BLE001 - any failure is the verdict, reported whole
        doc = {
            "ok": False,
            "error": {
                "code": code_of(ModelUnavailable),
                "type": type(exc).__name__,
                "message": f"{type(exc).__name__}: {exc}"[:2000],
            },
        }
        traceback.print_exc(file=sys.stderr)
    out.write(json.dumps(doc, default=str) + "\n")
    out.flush()
    return 0 if doc.get("ok") else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="executors.validate_model")
    ap.add_argument("--models-root", required=True)
    ap.add_argument("--model-id", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--convert-to", type=Path, default=None)
    args = ap.parse_args(argv)
    # The verdict owns stdout; model libraries print to stderr instead.
    out = sys.stdout
    sys.stdout = sys.stderr
    return run(Path(args.models_root), args.model_id, args.device, out, args.convert_to)


if __name__ == "__main__":
    sys.exit(main())
