"""MOFSimBench as data: its structure sets, DFT references, and the suites of a campaign.

The shipped files live in ``mofsim_core/benchdata`` (see its ``PROVENANCE.md``).  A suite
is a list of entries, each one task of the benchmark on one structure:

- ``quick``: the four ``essential`` frameworks (MOF-5, IRMOF-10, UiO-66, HKUST-1) for
  optimization, bulk modulus and stability, and the four smallest ``hcmof`` cells with
  a DFT reference (``QUICK_HEAT_CAPACITY``) for heat capacity;
- ``main``: the 100 ``main_set`` frameworks for optimization, bulk modulus and
  stability, and the 232 ``hcmof`` cells for heat capacity;
- ``full``: ``main`` plus the 13 ``copper`` paddlewheel MOFs in the Cu-paddlewheel
  stability protocol and the ``essential`` four in the temperature ramp.

Every entry runs with ``protocol: mofsimbench``.  Structure names are the CIF stems;
references are keyed by the stem without ``_primitive``, as the benchmark's analysis
keys them.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spool.errors import ValidationError

DATA = Path(__file__).resolve().parent / "benchdata"
SUITES = ("quick", "main", "full")
CORE_TASKS = ("optimization", "bulk-modulus", "stability")
# The four smallest hcmof files with a DFT reference in the benchmark's folder: fixed,
# so that a quick campaign is the same whatever files a client sends.
QUICK_HEAT_CAPACITY = (
    "hcmof/RSM0004.cif",
    "hcmof/RSM0009.cif",
    "hcmof/RSM0011.cif",
    "hcmof/RSM0010.cif",
)


@dataclass(frozen=True)
class Entry:
    """One task of a campaign: ``key`` is unique within the campaign."""

    task_type: str
    path: str  # relative to the benchmark's structure folder, e.g. main_set/MOF-5.cif
    variant: str = "standard"

    @property
    def structure(self) -> str:
        return Path(self.path).stem

    @property
    def key(self) -> str:
        return f"{self.task_type}/{self.variant}/{self.structure}"

    def parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"protocol": "mofsimbench"}
        if self.variant != "standard":
            params["protocol_variant"] = self.variant
        return params


def reference_name(structure: str) -> str:
    return structure.replace("_primitive", "")


@functools.cache
def structure_sets() -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads((DATA / "sets.json").read_text())
    return data


@functools.cache
def bulk_modulus_references() -> dict[str, dict[str, float | str]]:
    """DFT B0 (GPa) and the DFT-optimized cell volume (A^3) per structure."""
    with (DATA / "dft_bulk_modulus.csv").open(newline="") as fh:
        return {
            row["structure"]: {
                "B0_GPa": float(row["B0_GPa"]),
                "V0_A3": float(row["V0_A3"]),
                "dft_structure": row["dft_structure"],
            }
            for row in csv.DictReader(fh)
        }


@functools.cache
def heat_capacity_references() -> dict[str, float]:
    """DFT Cv at 300 K in J/(K g) per structure."""
    with (DATA / "dft_heat_capacity.csv").open(newline="") as fh:
        return {row["structure"]: float(row["cv_300K_J_per_K_g"]) for row in csv.DictReader(fh)}


@dataclass(frozen=True)
class StructureSource:
    """Where a campaign's CIFs come from: the benchmark's folder on this machine, or the
    files a client sent with its request; ``field`` is what a missing file is blamed on."""

    where: str
    has: Callable[[str], bool]
    read: Callable[[str], str]
    field: str = "data"

    @classmethod
    def folder(cls, data_dir: Path) -> StructureSource:
        return cls(
            str(data_dir),
            lambda rel: (data_dir / rel).is_file(),
            lambda rel: (data_dir / rel).read_text(),
        )

    @classmethod
    def sent(cls, files: Mapping[str, str]) -> StructureSource:
        """Only the benchmark's own files count, so a client may send its whole folder;
        ``unknown_files`` says which were left aside."""
        known = benchmark_paths()
        return cls(
            "the files sent",
            lambda rel: rel in known and rel in files,
            lambda rel: files[rel],
            field="structures",
        )


def benchmark_paths() -> frozenset[str]:
    """Every structure file of the benchmark's sets, as paths in its folder."""
    return frozenset(p for paths in structure_sets().values() for p in paths)


def unknown_files(files: Mapping[str, str]) -> list[str]:
    return sorted(set(files) - benchmark_paths())


def plan(suite: str, source: StructureSource) -> list[Entry]:
    """The entries of ``suite``; every structure file must be in ``source``."""
    if suite not in SUITES:
        raise ValidationError(f"suite must be one of {', '.join(SUITES)}", field="suite")
    sets = structure_sets()
    core = sets["essential"] if suite == "quick" else sets["main_set"]
    heat = list(QUICK_HEAT_CAPACITY) if suite == "quick" else list(sets["hcmof"])
    entries = [Entry(task, path) for task in CORE_TASKS for path in core]
    entries += [Entry("heat-capacity", path) for path in heat]
    if suite == "full":
        entries += [Entry("stability", path, "cu_paddlewheel") for path in sets["copper"]]
        entries += [Entry("stability", path, "temperature_ramp") for path in sets["essential"]]
    missing = [e.path for e in entries if not source.has(e.path)]
    if missing:
        raise ValidationError(
            f"{len(missing)} structure file(s) of the {suite} suite are missing in "
            f"{source.where} (first: {missing[0]}); give the benchmark's structure folder",
            field=source.field,
        )
    return entries


def suite_paths(suite: str, source: StructureSource) -> list[str]:
    """The distinct structure files a suite needs, in plan order."""
    return list(dict.fromkeys(e.path for e in plan(suite, source)))
