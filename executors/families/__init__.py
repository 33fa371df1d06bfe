"""Model families as plug-ins: one module per family in this package.

A family is the Python package that runs a kind of weights (MACE, ORB, SevenNet, ASE's
classical calculators).  Its module declares everything the service needs to know about
it in one ``FAMILY = Family(...)``: the packages it needs, how to load its foundation
models and uploaded files, which file extensions an upload may have, its dtypes, its
D3 default, and its entries in the built-in catalogue.  The model catalogue, the
loaders, the upload checks and the API's family lists all read ``discover()``, so adding
a family is adding a module here.

Family modules import their ML packages inside the loader functions: discovery imports
every module, and the HTTP server and CLI discover families without loading torch.
Modules whose name starts with ``_`` are helpers, not families.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from executors.models import ModelSpec

FoundationLoader = Callable[["ModelSpec", str, str], "Calculator"]
"""``(spec, device, dtype) -> calculator`` for a catalogue entry of the family."""
CustomLoader = Callable[[Path, dict[str, Any], str, str], "Calculator"]
"""``(weights_path, config, device, dtype) -> calculator`` for an uploaded file;
``config`` is the ``config`` object of the model's ``meta.json``."""
SafeFormWriter = Callable[[Any, Path], None]
"""``(calculator, folder)``: write a loaded upload's safe form (``executors.safe_form``)
into ``folder``; raises ``Unconvertible`` when the model has none."""
SafeFormLoader = Callable[[Path, dict[str, Any], str, str], "Calculator"]
"""``(folder, config, device, dtype) -> calculator`` from a safe form."""
SpeciesReader = Callable[[Any], "list[int] | None"]
"""The atomic numbers a loaded calculator knows, or None when it does not say."""
ConfigChecker = Callable[[dict[str, Any]], dict[str, Any]]
"""``(config) -> config``: an upload's ``config`` checked (ValidationError naming the
``config.<key>`` at fault) and normalized, at upload, without importing the family."""

# The catalogue's family of uploaded models, whatever family runs their weights.
CUSTOM_FAMILY = "custom"

# Elements of the Materials Project trajectory set (Z 1-83 and 89-94): the coverage of
# SevenNet-0, MACE-MP-0 and (as training coverage) ORB; checked against the type map in
# SevenNet-0's checkpoint.
MPTRJ_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
    "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm "
    "Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()


class Package(NamedTuple):
    """A dependency: the name it is imported by and the distribution pip knows."""

    module: str
    distribution: str


@dataclass(frozen=True)
class CatalogueEntry:
    """A built-in model of a family (``executors.models`` turns it into a ModelSpec)."""

    key: str
    name: str
    description: str
    elements: tuple[str, ...]
    references: str
    aliases: tuple[str, ...]
    # Where the weights come from, in words.
    source: str
    # The name the family's package knows the weights by.
    weights: str
    # None: the family's default.
    d3_trained: bool | None = None


@dataclass(frozen=True)
class Family:
    name: str
    # How messages write it ("SevenNet").
    label: str
    description: str
    # Needed to load any model of the family; versions go into each result's provenance.
    packages: tuple[Package, ...]
    load_foundation: FoundationLoader
    # Uploads are accepted only for families with a file loader and extensions.
    load_custom: CustomLoader | None = None
    custom_extensions: tuple[str, ...] = ()
    # Uploads that are pickles of code (MACE, SevenNet) run in executors only through a
    # safe form written after validation; a family without these reads its uploads with
    # torch's weights-only loader as they are (ORB's state dicts).
    to_safe_form: SafeFormWriter | None = None
    load_safe_form: SafeFormLoader | None = None
    catalogue: tuple[CatalogueEntry, ...] = ()
    dtypes: tuple[str, ...] = ("float32", "float64")
    # torch-based: loads run with torch prepared and its global state restored after.
    uses_torch: bool = True
    # Whether weights of this family include D3 unless an entry or meta.json says.
    d3_trained: bool = False
    species: SpeciesReader | None = None
    check_config: ConfigChecker | None = None
    # Listing order; ties go by name.
    rank: int = 100

    @property
    def accepts_uploads(self) -> bool:
        return self.load_custom is not None and bool(self.custom_extensions)

    @property
    def package(self) -> str | None:
        """The main package's import name."""
        return self.packages[0].module if self.packages else None

    def missing_packages(self) -> list[str]:
        """Distributions this family needs that are not installed (nothing imported)."""
        return [p.distribution for p in self.packages if importlib.util.find_spec(p.module) is None]


@functools.cache
def discover() -> tuple[Family, ...]:
    """Every family module of this package, in listing order (cached: call
    ``discover.cache_clear()`` after changing the package's path)."""
    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if not isinstance(family, Family):
            raise TypeError(f"{module.__name__} defines no FAMILY = Family(...)")
        if family.name == CUSTOM_FAMILY or family.name in found:
            raise ValueError(f"{module.__name__}: family name {family.name!r} is taken")
        found[family.name] = family
    return tuple(sorted(found.values(), key=lambda f: (f.rank, f.name)))


def get_family(name: str) -> Family | None:
    return next((f for f in discover() if f.name == name), None)
