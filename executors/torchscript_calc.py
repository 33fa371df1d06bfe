"""An ASE calculator around an uploaded TorchScript module (``framework=pytorch``).

The module's interface (``executors.torchscript_interface``) says what to pass and what
comes back; this builds the inputs (a neighbour list with ASE when the module wants
one), converts units, and derives forces and stress by autograd where the module does
not return them.  torch is imported inside the functions.

A TorchScript archive is code in TorchScript's restricted language plus tensors; torch
reads it without Python's unpickler, so executors load a validated upload as it is.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from executors.torchscript_interface import Interface, parse_interface
from spool.errors import ModelUnavailable


class TorchScriptCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, module: Any, interface: Interface, device: str, dtype: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.module = module
        self.interface = interface
        self.device = device
        self.dtype = dtype
        self._lock = threading.Lock()

    def calculate(
        self,
        atoms: Any = None,
        properties: Any = ("energy",),
        system_changes: Any = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)  # type: ignore[no-untyped-call]
        want_stress = "stress" in (properties or ())
        returned = "stress" in self.interface.outputs
        if want_stress and self.interface.stress == "none" and not returned:
            raise PropertyNotImplementedError("this model computes no stress")
        with self._lock:
            self.results = evaluate(
                self.module, self.interface, self.atoms, self.device, self.dtype, want_stress
            )


def load(path: Path, config: dict[str, Any], device: str, dtype: str) -> TorchScriptCalculator:
    """The calculator for a TorchScript archive; ModelUnavailable when it is not one."""
    import torch

    interface = parse_interface({k: v for k, v in config.items() if k != "d3_included"})
    try:
        module = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError) as exc:
        raise ModelUnavailable(
            "the file is not a TorchScript archive (write it with torch.jit.save): "
            + (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300],
            field="file",
        ) from exc
    module = module.to(dtype=getattr(torch, dtype)).eval()
    return TorchScriptCalculator(module, interface, device, dtype)


def evaluate(
    module: Any, iface: Interface, atoms: Any, device: str, dtype: str, want_stress: bool
) -> dict[str, Any]:
    """Energy (eV), forces (eV/A) and, when asked, stress (eV/A^3) of ``atoms``."""
    import numpy as np
    import torch

    tdtype = getattr(torch, dtype)
    length = iface.length_A
    n = len(atoms)
    periodic = bool(np.all(atoms.pbc))
    derive_forces = "forces" not in iface.outputs
    derive_stress = want_stress and "stress" not in iface.outputs
    if derive_stress and not periodic:
        raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
    pos0 = torch.tensor(atoms.positions / length, dtype=tdtype, device=device)
    cell0 = torch.tensor(atoms.cell.array / length, dtype=tdtype, device=device)
    pos0.requires_grad_(derive_forces)
    targets = [pos0] if derive_forces else []
    pos, cell = pos0, cell0
    if derive_stress:
        # E(strain) at zero strain: its derivative over the volume is the stress.
        strain = torch.zeros((3, 3), dtype=tdtype, device=device, requires_grad=True)
        deform = torch.eye(3, dtype=tdtype, device=device) + 0.5 * (strain + strain.T)
        pos, cell = pos0 @ deform, cell0 @ deform
        targets.append(strain)
    values: dict[str, Any] = {
        "positions": pos,
        "atomic_numbers": torch.tensor(atoms.numbers, dtype=torch.int64, device=device),
        "cell": cell,
        "pbc": torch.tensor(np.asarray(atoms.pbc, dtype=bool), device=device),
    }
    if iface.needs_neighbours:
        from ase.neighborlist import primitive_neighbor_list

        assert iface.cutoff is not None  # parse_interface insists
        i, j, s = primitive_neighbor_list(
            "ijS",
            atoms.pbc,
            atoms.cell.array,
            atoms.positions,
            iface.cutoff * length,
            self_interaction=False,
        )
        values["edge_index"] = torch.tensor(np.stack([i, j]), dtype=torch.int64, device=device)
        unit = torch.tensor(s, dtype=tdtype, device=device)
        values["unit_shifts"] = unit
        values["shifts"] = unit @ cell
    out = _named(module(*[values[name] for name in iface.inputs]), iface.outputs)
    energy = out["energy"]
    if energy.numel() != 1 or not energy.is_floating_point():
        raise ModelUnavailable(
            f"config.outputs: energy must be one floating-point number, the model returned "
            f"a {energy.dtype} tensor of shape {list(energy.shape)}",
            field="config.outputs",
        )
    energy = energy.reshape(())
    grads: list[Any] = []
    if targets:
        if not energy.requires_grad:
            raise ModelUnavailable(
                "config.outputs: the energy does not depend on positions (and cell), so "
                "forces and stress cannot be derived; return them or let autograd see them",
                field="config.outputs",
            )
        grads = list(torch.autograd.grad(energy, targets, allow_unused=True))
    e_ev = iface.energy_eV
    results: dict[str, Any] = {"energy": float(energy.detach().cpu()) * e_ev}
    results["free_energy"] = results["energy"]
    if derive_forces:
        grad = grads.pop(0)
        forces = -grad if grad is not None else torch.zeros((n, 3), dtype=tdtype)
    else:
        forces = out["forces"]
    results["forces"] = _shaped(forces, (n, 3), "forces") * (e_ev / length)
    if derive_stress:
        grad = grads.pop(0)
        dedstrain = _shaped(grad, (3, 3), "stress") if grad is not None else np.zeros((3, 3))
        stress = dedstrain * e_ev / atoms.get_volume()
        results["stress"] = _voigt(stress)
    elif "stress" in iface.outputs:
        raw = out["stress"]
        matrix = _voigt_to_matrix(_shaped(raw, (6,), "stress")) if raw.numel() == 6 else None
        if matrix is None:
            matrix = _shaped(raw, (3, 3), "stress")
        results["stress"] = _voigt(matrix * e_ev / length**3)
    return results


def _named(out: Any, names: tuple[str, ...]) -> dict[str, Any]:
    import torch

    if isinstance(out, dict):
        missing = [n for n in names if n not in out]
        if missing:
            raise ModelUnavailable(
                f"config.outputs: the model's output has no {', '.join(missing)} "
                f"(its keys: {', '.join(map(str, out))})",
                field="config.outputs",
            )
        return {n: out[n] for n in names}
    items = [out] if isinstance(out, torch.Tensor) else out
    if not isinstance(items, (list, tuple)) or len(items) != len(names):
        got = len(items) if isinstance(items, (list, tuple)) else type(out).__name__
        raise ModelUnavailable(
            f"config.outputs names {len(names)} output(s) ({', '.join(names)}); the model "
            f"returned {got}",
            field="config.outputs",
        )
    for name, item in zip(names, items, strict=True):
        if not isinstance(item, torch.Tensor):
            raise ModelUnavailable(
                f"config.outputs: {name} is a {type(item).__name__}, not a tensor",
                field="config.outputs",
            )
    return dict(zip(names, items, strict=True))


def _shaped(tensor: Any, shape: tuple[int, ...], name: str) -> Any:
    import numpy as np

    if tuple(tensor.shape) != shape:
        raise ModelUnavailable(
            f"config.outputs: {name} has shape {list(tensor.shape)}, expected {list(shape)}",
            field="config.outputs",
        )
    return np.asarray(tensor.detach().cpu().double().numpy(), dtype=float)


def _voigt(matrix: Any) -> Any:
    import numpy as np

    m = 0.5 * (matrix + matrix.T)
    return np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])


def _voigt_to_matrix(v: Any) -> Any:
    import numpy as np

    return np.array([[v[0], v[5], v[4]], [v[5], v[1], v[3]], [v[4], v[3], v[2]]])
