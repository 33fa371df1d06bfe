"""The interface of a generic PyTorch upload: how to call a TorchScript module.

A ``framework=pytorch`` upload is an archive written by ``torch.jit.save`` (``.pt`` or
``.pth``).  Nothing but its ``config`` says what its ``forward`` takes and returns, so
the config is required and checked at upload, before any file is read::

    {
      "inputs":  ["positions", "atomic_numbers", "cell", "pbc"],
      "outputs": ["energy"],
      "stress":  "autograd",
      "units":   {"energy": "eV", "length": "Angstrom"},
      "cutoff":  5.0,
      "precision": "float64",
      "elements": ["C", "H", "O"]
    }

``inputs`` (required): the forward's positional arguments, in order, each one of

    positions       [N, 3]  float   Cartesian coordinates
    atomic_numbers  [N]     int64
    cell            [3, 3]  float   lattice vectors as rows (zeros for a molecule)
    pbc             [3]     bool
    edge_index      [2, E]  int64   a full neighbour list within ``cutoff``: row 0 the
                                    centre i, row 1 the neighbour j, both directions
    shifts          [E, 3]  float   so that r_ij = positions[j] - positions[i] + shifts
    unit_shifts     [E, 3]  float   the same as integer cell offsets (shifts = unit_shifts @ cell)

``positions`` is required (forces are its gradient).  The neighbour inputs need
``cutoff`` (in the model's length unit).

``outputs`` (required): what the forward returns, in order: ``energy`` (a scalar, or a
tensor of one element), optionally ``forces`` ([N, 3]) and ``stress`` ([3, 3], or [6] in
Voigt order xx yy zz yz xz xy; ASE's sign, energy per volume).  One output is returned
as a tensor; several as a tuple, or as a ``Dict[str, Tensor]`` with these keys.  Forces
not returned are the negative gradient of the energy with respect to positions.

``stress`` (optional, when not an output): ``autograd`` (the default) derives it from
the energy's derivative with respect to a strain of positions and cell, which needs
``cell`` or ``shifts`` among the inputs (the strain reaches the model through them), or
``none``.

``units`` (optional): of the inputs and outputs, converted to eV and Angstrom; energy
``eV``, ``meV``, ``Hartree``, ``Rydberg``, ``kcal/mol`` or ``kJ/mol``; length
``Angstrom``, ``Bohr``, ``nm`` or ``pm``.  ``precision`` (``dtype`` is accepted too):
``float32`` or ``float64``, the dtype validation runs in; tasks cast the module to the
dtype they ask for.  ``elements``: the element symbols the model covers.

Torch-free: the HTTP server checks configs with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spool.errors import ValidationError

INPUTS = ("positions", "atomic_numbers", "cell", "pbc", "edge_index", "shifts", "unit_shifts")
NEIGHBOUR_INPUTS = ("edge_index", "shifts", "unit_shifts")
OUTPUTS = ("energy", "forces", "stress")
STRESS_MODES = ("autograd", "none")
# eV and Angstrom per unit: ASE's values (CODATA 2014).
ENERGY_UNITS = {
    "ev": 1.0,
    "mev": 1e-3,
    "hartree": 27.211386024367243,
    "ha": 27.211386024367243,
    "rydberg": 13.605693012183622,
    "ry": 13.605693012183622,
    "kcal/mol": 0.04336410390059322,
    "kj/mol": 0.010364269574711572,
}
LENGTH_UNITS = {
    "angstrom": 1.0,
    "a": 1.0,
    "å": 1.0,
    "bohr": 0.5291772105638411,
    "nm": 10.0,
    "pm": 0.01,
}
_KEYS = ("inputs", "outputs", "stress", "units", "cutoff", "precision", "elements")
_KEYS_ELSEWHERE = ("d3_included",)  # read by the upload, not by the interface


@dataclass(frozen=True)
class Interface:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    stress: str
    energy_eV: float  # eV per model energy unit
    length_A: float  # Angstrom per model length unit
    cutoff: float | None  # model length units

    @property
    def needs_neighbours(self) -> bool:
        return any(name in NEIGHBOUR_INPUTS for name in self.inputs)


def _names(config: dict[str, Any], key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    where = f"config.{key}"
    value = config.get(key)
    if value is None:
        raise ValidationError(
            f"{where} is required for a PyTorch model: a list from {', '.join(allowed)}",
            field=where,
        )
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{where} must be a non-empty list of names", field=where)
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValidationError(
            f"{where}: unknown name(s) {', '.join(map(repr, unknown))}; expected "
            f"{', '.join(allowed)}",
            field=where,
        )
    if len(set(value)) != len(value):
        raise ValidationError(f"{where} names something twice", field=where)
    return tuple(value)


def _unit(units: dict[str, Any], kind: str, table: dict[str, float], default: str) -> float:
    where = f"config.units.{kind}"
    raw = units.get(kind, default)
    factor = table.get(str(raw).strip().lower()) if isinstance(raw, str) else None
    if factor is None:
        raise ValidationError(
            f"{where}: unknown unit {raw!r}; expected one of "
            f"{', '.join(k for k in table if k not in ('ha', 'ry', 'a', 'å'))}",
            field=where,
        )
    return factor


def parse_interface(config: dict[str, Any]) -> Interface:
    """The interface a (normalized or raw) config describes; ValidationError naming the
    config field that is wrong."""
    unknown = sorted(set(config) - set(_KEYS) - set(_KEYS_ELSEWHERE))
    if unknown:
        raise ValidationError(
            f"config: unknown key(s) {', '.join(map(repr, unknown))} for a PyTorch model; "
            f"expected {', '.join(_KEYS)}",
            field=f"config.{unknown[0]}",
        )
    inputs = _names(config, "inputs", INPUTS)
    if "positions" not in inputs:
        raise ValidationError("config.inputs must include positions", field="config.inputs")
    outputs = _names(config, "outputs", OUTPUTS)
    if "energy" not in outputs:
        raise ValidationError("config.outputs must include energy", field="config.outputs")
    stress = config.get("stress", "autograd" if "stress" not in outputs else "none")
    if stress not in STRESS_MODES:
        raise ValidationError(
            f"config.stress must be one of {', '.join(STRESS_MODES)}, got {stress!r}",
            field="config.stress",
        )
    if "stress" in outputs:
        stress = "none"  # returned, nothing to derive
    elif stress == "autograd" and not {"cell", "shifts"} & set(inputs):
        raise ValidationError(
            "config.stress 'autograd' needs cell or shifts among config.inputs (or say 'none')",
            field="config.stress",
        )
    units = config.get("units") or {}
    if not isinstance(units, dict):
        raise ValidationError("config.units must be an object", field="config.units")
    extra_units = sorted(set(units) - {"energy", "length"})
    if extra_units:
        raise ValidationError(
            f"config.units: unknown key(s) {', '.join(extra_units)}; expected energy, length",
            field=f"config.units.{extra_units[0]}",
        )
    cutoff = config.get("cutoff")
    if cutoff is not None:
        if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not cutoff > 0:
            raise ValidationError("config.cutoff must be a positive number", field="config.cutoff")
        cutoff = float(cutoff)
    needs = [n for n in inputs if n in NEIGHBOUR_INPUTS]
    if needs and cutoff is None:
        raise ValidationError(
            f"config.cutoff is required when config.inputs has {', '.join(needs)}",
            field="config.cutoff",
        )
    return Interface(
        inputs=inputs,
        outputs=outputs,
        stress=str(stress),
        energy_eV=_unit(units, "energy", ENERGY_UNITS, "eV"),
        length_A=_unit(units, "length", LENGTH_UNITS, "Angstrom"),
        cutoff=cutoff,
    )


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """The upload's config, checked (its precision is the upload's to normalize)."""
    parse_interface(config)
    return dict(config)
