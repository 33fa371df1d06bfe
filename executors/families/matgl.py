"""MatGL: the Materials Graph Library's potentials (M3GNet), on PyTorch Geometric.

A matgl model is a folder of three files (``model.json``, ``model.pt``, ``state.pt``),
as ``Potential.save`` writes it.  The foundation weights are published on the Hugging
Face Hub under the ``materialyze`` organisation and fetched by matgl on first use into
its cache; the loader hands a cached copy over by folder and otherwise checks that the
download can happen at all (``weights.ensure_downloadable``).  matgl potentials run in
float32 or, converted after loading, in float64.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.families import CatalogueEntry, Family, Package
from executors.weights import ensure_downloadable, unavailable

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from executors.models import ModelSpec

HUB_ORGANISATION = "materialyze"
MODEL_FILES = ("model.json", "model.pt", "state.pt")

# matgl's universal element set (matgl.config.DEFAULT_ELEMENTS): Z 1-94 except Po, At,
# Rn, Fr and Ra.
MATGL_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
    "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm "
    "Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()


def cache_dir() -> Path:
    """Where matgl keeps what it downloads (read at each call: tests move it)."""
    from matgl import config

    return Path(config.MATGL_CACHE)


def cached_folder(weights: str) -> Path | None:
    """The folder of the cached model files, or None unless all three are there."""
    from huggingface_hub import try_to_load_from_cache

    repo = f"{HUB_ORGANISATION}/{weights}"
    found = [try_to_load_from_cache(repo, name, cache_dir=str(cache_dir())) for name in MODEL_FILES]
    paths = [Path(p) for p in found if isinstance(p, str)]
    if len(paths) != len(MODEL_FILES) or len({p.parent for p in paths}) != 1:
        return None
    return paths[0].parent


def load_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    import matgl
    from huggingface_hub import hf_hub_url

    folder = cached_folder(spec.weights)
    if folder is None:
        repo = f"{HUB_ORGANISATION}/{spec.weights}"
        # Three files in the Hub's cache layout: fetched elsewhere, the cache is copied.
        remedy = (
            f"on a connected machine, run `hf download {repo} --cache-dir CACHE` and copy "
            f"CACHE's contents into {cache_dir()}"
        )
        ensure_downloadable(spec, hf_hub_url(repo, MODEL_FILES[0]), cache_dir(), remedy)
    try:
        # A cached folder loads as a local path, which makes no Hub request.
        potential = matgl.load_model(str(folder) if folder else spec.weights)
    except Exception as exc:
        raise unavailable(spec, exc, None) from exc
    return calculator(potential, device, dtype)


def calculator(potential: Any, device: str, dtype: str) -> Calculator:
    from matgl.ext.ase import PESCalculator

    potential = potential.double() if dtype == "float64" else potential.float()
    potential = potential.to(device)
    # matgl reports stress in GPa unless told; ASE (and every task here) wants eV/A^3.
    calc: Calculator = PESCalculator(potential, stress_unit="eV/A3")
    return calc


FAMILY = Family(
    name="matgl",
    label="MatGL",
    description="MatGL graph network potentials (M3GNet)",
    packages=(Package("matgl", "matgl"),),
    load_foundation=load_foundation,
    rank=50,
    catalogue=(
        CatalogueEntry(
            key="m3gnet",
            name="M3GNet MatPES-PBE",
            description="M3GNet universal potential trained on MatPES (PBE), matgl's PyG "
            "release of 2025.2; 5 A cutoff, three-body terms within 4 A",
            elements=tuple(MATGL_ELEMENTS),
            references="https://doi.org/10.1038/s43588-022-00349-3",
            aliases=("m3gnet-matpes-pbe", "M3GNet-PES-MatPES-PBE-2025.2"),
            source=f"downloaded on first use from the Hugging Face Hub "
            f"({HUB_ORGANISATION}/M3GNet-PES-MatPES-PBE-2025.2) into matgl's cache",
            weights="M3GNet-PES-MatPES-PBE-2025.2",
        ),
    ),
)
