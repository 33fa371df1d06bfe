"""Built-in MOF structures, generated from published crystallographic data.

Each framework is stored as what a crystallographer publishes: space group, lattice
parameters and the Wyckoff positions of the asymmetric unit.  ``ase.spacegroup.crystal``
expands them into the full cell, so the numbers here can be checked line by line
against the cited papers.  All frameworks are desolvated (no guest or coordinated
solvent) and carry their hydrogen atoms.

The default cell is the primitive one (a quarter of the F-centred cubic cells, half
of the I-centred ZIF-8 cell): identical crystal, fewer atoms, cheaper to simulate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from spool.errors import InternalError, StructureNotFound

if TYPE_CHECKING:
    from ase import Atoms

Site = tuple[str, float, float, float]


@dataclass(frozen=True)
class BuiltinSpec:
    name: str
    aliases: tuple[str, ...]
    spacegroup: int
    spacegroup_symbol: str
    cellpar: tuple[float, float, float, float, float, float]
    sites: tuple[Site, ...]
    natoms_conventional: int
    # (metal, ligand elements, cutoff in A, expected count): the metal's first shell.
    coordination: tuple[str, tuple[str, ...], float, int]
    source: str
    description: str


def _cubic(a: float) -> tuple[float, float, float, float, float, float]:
    return (a, a, a, 90.0, 90.0, 90.0)


_SPECS: tuple[BuiltinSpec, ...] = (
    BuiltinSpec(
        name="MOF-5",
        aliases=("mof5", "irmof1"),
        spacegroup=225,
        spacegroup_symbol="Fm-3m",
        cellpar=_cubic(25.832),
        sites=(
            ("Zn", 0.2934, 0.2066, 0.2066),  # 32f, Zn4O corner tetrahedra
            ("O", 0.25, 0.25, 0.25),  # 8c, central mu4-O
            ("O", 0.2819, 0.2181, 0.1340),  # 96k, carboxylate O
            ("C", 0.25, 0.25, 0.1113),  # 48g, carboxylate C
            ("C", 0.25, 0.25, 0.0538),  # 48g, ring C1
            ("C", 0.2829, 0.2171, 0.0269),  # 96k, ring C-H
            ("H", 0.3049, 0.1951, 0.0448),  # 96k
        ),
        natoms_conventional=424,
        coordination=("Zn", ("O",), 2.3, 4),
        source=(
            "Eddaoudi, Kim, Rosi, Vodak, Wachter, O'Keeffe, Yaghi, Science 295, 469 (2002), "
            "doi:10.1126/science.1067208; CSD refcode EDUSIF (IRMOF-1)"
        ),
        description="Zn4O(BDC)3, IRMOF-1: cubic pcu net of Zn4O clusters and terephthalates",
    ),
    BuiltinSpec(
        name="HKUST-1",
        aliases=("hkust1", "cubtc", "mof199"),
        spacegroup=225,
        spacegroup_symbol="Fm-3m",
        cellpar=_cubic(26.343),
        sites=(
            ("Cu", 0.2853, 0.2853, 0.0),  # 48h, Cu2 paddlewheel
            ("O", 0.3166, 0.2431, 0.9478),  # 192l, carboxylate O
            ("C", 0.2968, 0.2032, 0.9313),  # 96k, carboxylate C
            ("C", 0.3220, 0.1780, 0.8870),  # 96k, ring C-COO
            ("C", 0.3655, 0.1994, 0.8655),  # 96k, ring C-H
            ("H", 0.3802, 0.2280, 0.8802),  # 96k
        ),
        natoms_conventional=624,
        coordination=("Cu", ("O",), 2.3, 4),
        source=(
            "Chui, Lo, Charmant, Orpen, Williams, Science 283, 1148 (1999), "
            "doi:10.1126/science.283.5405.1148; CSD refcode FIQCEN; axial water removed"
        ),
        description="Cu3(BTC)2, Cu-BTC / MOF-199: Cu2 paddlewheels on the tbo net, open Cu sites",
    ),
    BuiltinSpec(
        name="UiO-66",
        aliases=("uio66",),
        spacegroup=216,
        spacegroup_symbol="F-43m",
        cellpar=_cubic(20.7212),
        sites=(
            ("Zr", 0.0, 0.37975, 0.0),  # 24f, Zr6 octahedron
            ("O", 0.45065, 0.04935, 0.95065),  # 16e, mu3-O
            ("O", 0.93279, 0.43279, 0.93279),  # 16e, mu3-OH
            ("H", 0.90596, 0.09404, 0.59404),  # 16e, hydroxyl H
            ("O", 0.00249, 0.32943, 0.90604),  # 96i, carboxylate O
            ("C", 0.00597, 0.70272, 0.20272),  # 48h, carboxylate C
            ("C", 0.00629, 0.81495, 0.23233),  # 96i, ring C-H
            ("C", 0.99605, 0.15196, 0.34804),  # 48h, ring C-COO
            ("H", 0.00618, 0.22009, 0.86596),  # 96i
        ),
        natoms_conventional=456,
        coordination=("Zr", ("O",), 2.5, 8),
        source=(
            "Framework: Cavka et al., J. Am. Chem. Soc. 130, 13850 (2008), doi:10.1021/ja8057953. "
            "Ordered Zr6O4(OH)4 model in F-43m (the experimental Fm-3m cell averages O and OH "
            "over one site): DFT (PBEsol0) coordinates at 0 GPa from Redfern et al., "
            "Chem. Mater. 32, 5864 (2020), doi:10.1021/acs.chemmater.0c01922"
        ),
        description="Zr6O4(OH)4(BDC)6: fcu net of 12-connected Zr6 clusters, hydroxylated form",
    ),
    BuiltinSpec(
        name="ZIF-8",
        aliases=("zif8",),
        spacegroup=217,
        spacegroup_symbol="I-43m",
        cellpar=_cubic(16.991),
        sites=(
            ("Zn", 0.5, 0.0, 0.75),  # 12d, tetrahedral Zn(N)4
            ("N", 0.40973, 0.96832, 0.68278),  # 48h
            ("C", 0.37705, 0.00790, 0.62295),  # 24g, imidazolate C2
            ("C", 0.36851, 0.89914, 0.68750),  # 48h, imidazolate C4/C5
            ("C", 0.40610, 0.08550, 0.59390),  # 24g, methyl C
            ("H", 0.37770, 0.85890, 0.72340),  # 48h, ring H
            # The published methyl H are disordered over two orientations; here one
            # ordered orientation (one H in the mirror plane, perpendicular to the ring),
            # placed at C-H 0.96 A with tetrahedral angles so the symmetry stays I-43m.
            ("H", 0.37904, 0.12707, 0.62096),  # 24g
            ("H", 0.46160, 0.08968, 0.60364),  # 48h
        ),
        natoms_conventional=276,
        coordination=("Zn", ("N",), 2.3, 4),
        source=(
            "Park, Ni, Cote, Choi, Huang, Uribe-Romo, Chae, O'Keeffe, Yaghi, "
            "Proc. Natl. Acad. Sci. USA 103, 10186 (2006), doi:10.1073/pnas.0602439103; "
            "CSD refcode OFERUN"
        ),
        description="Zn(mIm)2, 2-methylimidazolate zeolitic framework with sodalite topology",
    ),
    BuiltinSpec(
        name="CALF-20",
        aliases=("calf20",),
        spacegroup=14,
        spacegroup_symbol="P2_1/c",
        cellpar=(8.9138, 9.6935, 9.4836, 90.0, 115.895, 90.0),
        sites=(
            ("Zn", 0.82412, 0.94229, 0.56321),
            ("N", 0.9692, 0.1108, 0.6317),  # triazolate N1
            ("N", 0.0922, 0.1475, 0.5900),  # triazolate N2
            ("N", 0.0992, 0.2914, 0.7741),  # triazolate N4
            ("C", 0.9785, 0.1983, 0.7412),  # triazolate C5
            ("C", 0.1655, 0.2554, 0.6768),  # triazolate C3
            ("H", 0.9068, 0.1955, 0.7914),
            ("H", 0.2559, 0.3029, 0.6711),
            ("C", 0.4752, 0.9692, 0.4185),  # oxalate C
            ("O", 0.5902, 0.9239, 0.3898),  # oxalate O
            ("O", 0.3247, 0.9693, 0.3268),  # oxalate O
        ),
        natoms_conventional=44,
        coordination=("Zn", ("N", "O"), 2.4, 5),
        source=(
            "Lin et al., Science 374, 1464 (2021), doi:10.1126/science.abi7281 "
            "(Zn2(1,2,4-triazolate)2(oxalate), solvent-free phase)"
        ),
        description="Zn2(Tz)2(Ox): layers of Zn-triazolate pillared by oxalate; CO2 sorbent",
    ),
)

_BY_NAME: dict[str, BuiltinSpec] = {}
for _spec in _SPECS:
    for _key in (_spec.name, *_spec.aliases):
        _BY_NAME[re.sub(r"[^a-z0-9]", "", _key.lower())] = _spec

_SUFFIX_RE = re.compile(r"[\s_\-.:]*(primitive|prim|conventional|conv)$")


def builtin_names() -> list[str]:
    return [spec.name for spec in _SPECS]


def resolve_builtin(name: str, primitive: bool = True) -> tuple[BuiltinSpec, bool]:
    """Map a user's spelling (``mof5``, ``Cu-BTC``, ``UiO-66_conventional``) to its
    spec and cell choice; a suffix in the name wins over ``primitive``."""
    if not isinstance(name, str):
        raise StructureNotFound(f"built-in structure name must be a string, got {name!r}")
    text = name.strip().lower()
    match = _SUFFIX_RE.search(text)
    if match and match.start() > 0:
        primitive = match.group(1).startswith("prim")
        text = text[: match.start()]
    spec = _BY_NAME.get(re.sub(r"[^a-z0-9]", "", text))
    if spec is None:
        raise StructureNotFound(
            f"unknown built-in structure {name!r}; available: {', '.join(builtin_names())}",
            field="structure.name",
        )
    return spec, primitive


def canonical_builtin_name(name: str, primitive: bool = True) -> str:
    """The display name of the cell ``build_builtin`` returns, e.g. ``MOF-5_primitive``."""
    spec, primitive = resolve_builtin(name, primitive)
    return _label(spec, primitive)


def build_builtin(name: str, primitive: bool = True) -> Atoms:
    """A fresh copy of a built-in framework (primitive cell unless asked otherwise)."""
    spec, primitive = resolve_builtin(name, primitive)
    atoms: Atoms = _build_cached(spec.name, primitive).copy()
    atoms.info["name"] = _label(spec, primitive)
    return atoms


def builtin_info() -> list[dict[str, Any]]:
    """One plain dict per framework; numbers describe the default (primitive) cell."""
    out = []
    for spec in _SPECS:
        atoms = _build_cached(spec.name, True)
        out.append(
            {
                "name": spec.name,
                "aliases": list(spec.aliases),
                "formula": atoms.get_chemical_formula(mode="hill"),
                "natoms": len(atoms),
                "natoms_conventional": spec.natoms_conventional,
                "spacegroup": spec.spacegroup_symbol,
                "spacegroup_number": spec.spacegroup,
                "cell": [float(x) for x in atoms.cell.cellpar()],
                "volume": float(atoms.get_volume()),
                "source": spec.source,
                "description": spec.description,
            }
        )
    return out


def geometry_problems(
    atoms: Atoms,
    coordination: tuple[str, tuple[str, ...], float, int] | None = None,
    min_distance: float = 0.9,
) -> list[str]:
    """Chemical sanity of a framework: no pair closer than ``min_distance``, every H
    bonded to exactly one atom, each metal with its expected first shell."""
    import numpy as np
    from ase.neighborlist import neighbor_list

    problems: list[str] = []
    i, j, d = neighbor_list("ijd", atoms, 2.6)
    close = d < min_distance
    if close.any():
        k = int(np.argmin(d))
        problems.append(
            f"{int(close.sum()) // 2} pair(s) closer than {min_distance} A, "
            f"e.g. atoms {int(i[k])} and {int(j[k])} at {float(d[k]):.3f} A"
        )
    symbols = np.array(atoms.get_chemical_symbols())
    # An X-H bond is 0.93-1.10 A; 1.25 A separates it from any non-bonded contact.
    h_bonds = np.bincount(i[(symbols[i] == "H") & (d < 1.25)], minlength=len(atoms))
    bad_h = [int(k) for k in np.flatnonzero(symbols == "H") if h_bonds[k] != 1]
    if bad_h:
        problems.append(f"{len(bad_h)} H atom(s) without exactly one bond, e.g. atom {bad_h[0]}")
    if coordination is not None:
        metal, ligands, cutoff, expected = coordination
        shell = (symbols[i] == metal) & np.isin(symbols[j], ligands) & (d < cutoff)
        counts = np.bincount(i[shell], minlength=len(atoms))[symbols == metal]
        if counts.size and (counts != expected).any():
            problems.append(
                f"{metal} coordination by {'/'.join(ligands)} within {cutoff} A is "
                f"{sorted(set(counts.tolist()))}, expected {expected}"
            )
    return problems


def _label(spec: BuiltinSpec, primitive: bool) -> str:
    if spec.spacegroup_symbol[0] == "P":
        return spec.name  # already primitive: one cell, one name
    return f"{spec.name}_{'primitive' if primitive else 'conventional'}"


@cache
def _build_cached(name: str, primitive: bool) -> Atoms:
    from ase.spacegroup import crystal

    spec = next(s for s in _SPECS if s.name == name)
    symbols = [site[0] for site in spec.sites]
    basis = [site[1:] for site in spec.sites]
    atoms = crystal(
        symbols,
        basis=basis,
        spacegroup=spec.spacegroup,
        cellpar=list(spec.cellpar),
        primitive_cell=primitive,
        onduplicates="error",
    )
    atoms.wrap()
    # Drop the per-site bookkeeping crystal() attaches: plain Atoms serialise cleanly.
    for key in list(atoms.arrays):
        if key not in ("numbers", "positions"):
            del atoms.arrays[key]
    atoms.info = {}
    lattice_points = {"F": 4, "I": 2}.get(spec.spacegroup_symbol[0], 1) if primitive else 1
    expected = spec.natoms_conventional // lattice_points
    if len(atoms) != expected:
        raise InternalError(f"built-in {spec.name}: {len(atoms)} atoms, expected {expected}")
    problems = geometry_problems(atoms, spec.coordination)
    if problems:
        raise InternalError(f"built-in {spec.name} failed its geometry check: {problems}")
    return atoms
