"""Model families as plug-ins: discovery, and one new module reaching every list.

The ``toy`` family below is written to a temporary folder that is added to the
package's search path, exactly as a new file in ``executors/families/`` would be found.
Each check fails if that list were written out by hand somewhere instead of derived.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from ase import Atoms

import executors.families as families_pkg
from executors.families import CUSTOM_FAMILY, discover, get_family
from executors.loaders import describe_versions, load_calculator
from executors.models import builtin_models, custom_frameworks, families, resolve_model
from mofsim_core.config import Config
from mofsim_core.custom_models import custom_fields
from mofsim_http.app import create_app
from spool.errors import ModelUnavailable, UnsupportedFormat, ValidationError
from tests.model_factories import write_custom_model

TOY_MODULE = '''
"""A family for tests: ASE's Lennard-Jones under its own name."""

from executors.families import CatalogueEntry, Family, Package


def load_foundation(spec, device, dtype):
    from ase.calculators.lj import LennardJones

    return LennardJones(sigma=2.0)


def load_file(path, config, device, dtype):
    from ase.calculators.lj import LennardJones

    return LennardJones(sigma=float(config.get("sigma", 3.0)))


FAMILY = Family(
    name="toy",
    label="Toy",
    description="Lennard-Jones in disguise",
    packages=(Package("ase", "ase"), Package("numpy", "numpy")),
    load_foundation=load_foundation,
    load_custom=load_file,
    custom_extensions=(".toy",),
    dtypes=("float32",),
    uses_torch=False,
    catalogue=(
        CatalogueEntry(
            key="toy-1",
            name="Toy 1",
            description="sigma 2 A",
            elements=("all",),
            references="",
            aliases=("toy-one",),
            source="written by the test",
            weights="toy",
        ),
    ),
)
'''


def _plug_in(monkeypatch: pytest.MonkeyPatch, folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(text, encoding="utf-8")
    monkeypatch.setattr(families_pkg, "__path__", [*families_pkg.__path__, str(folder)])
    discover.cache_clear()


@pytest.fixture(autouse=True)
def fresh_discovery() -> Iterator[None]:
    """Every test ends with the installed families only, whatever it plugged in."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("executors.families."):
            del sys.modules[name]
    discover.cache_clear()


@pytest.fixture()
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _plug_in(monkeypatch, tmp_path / "plugins", "toy", TOY_MODULE)


def test_the_installed_families() -> None:
    fams = discover()
    assert [f.name for f in fams] == [
        "sevennet",
        "mace",
        "orb",
        "chgnet",
        "matgl",
        "pytorch",
        "ase",
    ]
    for fam in fams:
        # Generic PyTorch models come only as uploads.
        assert (bool(fam.catalogue) or fam.name == "pytorch") and fam.packages
        assert fam.accepts_uploads == (fam.name not in {"chgnet", "matgl", "ase"})
    assert get_family("sevennet") is not None and get_family("sevennet").dtypes == ("float32",)
    assert get_family(CUSTOM_FAMILY) is None
    assert custom_frameworks() == {
        "sevennet": (".pt", ".pth"),
        "mace": (".model", ".pt", ".pth"),
        "orb": (".pt", ".pth", ".ckpt"),
        "pytorch": (".pt", ".pth"),
    }
    assert families()[-1]["description"] == (
        "User-uploaded SevenNet, MACE, ORB or PyTorch (TorchScript) weights"
    )


def test_a_module_without_a_family_or_with_a_taken_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plug_in(monkeypatch, tmp_path / "a", "stray", "X = 1\n")
    with pytest.raises(TypeError, match="stray"):
        discover()
    monkeypatch.undo()
    _plug_in(monkeypatch, tmp_path / "b", "again", TOY_MODULE.replace('"toy"', '"mace"'))
    with pytest.raises(ValueError, match="'mace' is taken"):
        discover()


def test_a_helper_module_is_not_a_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = discover()
    _plug_in(monkeypatch, tmp_path / "h", "_helpers", "X = 1\n")
    assert discover() == installed


def test_a_new_family_reaches_the_catalogue_and_the_loaders(toy: None, tmp_path: Path) -> None:
    spec = resolve_model("Toy_One")
    assert spec.key == "toy-1" and spec.family == "toy" and spec.framework == "toy"
    assert "toy-1" in [s.key for s in builtin_models()]
    by_name = {f["family"]: f for f in families()}
    assert by_name["toy"]["models"] == ["toy-1"] and by_name["toy"]["installed"] is True
    assert "Toy" in by_name[CUSTOM_FAMILY]["description"]
    calc: Any = load_calculator(spec)
    assert calc.parameters.sigma == 2.0
    with pytest.raises(ValidationError, match="Toy models run in float32 only"):
        load_calculator(spec, dtype="float64")
    assert set(describe_versions(spec)["packages"]) >= {"ase", "numpy"}
    # An uploaded file of the new family: its extension, its file loader.
    assert custom_frameworks()["toy"] == (".toy",)
    root = tmp_path / "models"
    write_custom_model(root, "mine", "toy", "w.toy", raw=b"x", config={"sigma": 1.5})
    custom: Any = load_calculator(resolve_model("custom:mine", root), models_root=root)
    assert custom.parameters.sigma == 1.5
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 2.0]])
    dimer.calc = custom
    assert dimer.get_potential_energy() < 0
    write_custom_model(root, "wrong", "toy", "w.pt", raw=b"x")
    with pytest.raises(ModelUnavailable, match="must end with .toy"):
        resolve_model("custom:wrong", root)


def test_a_family_whose_packages_are_missing_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = TOY_MODULE.replace('Package("numpy", "numpy")', 'Package("toy_absent", "toy-absent")')
    _plug_in(monkeypatch, tmp_path / "p", "toy", text)
    assert {f["family"]: f for f in families()}["toy"]["installed"] is False
    with pytest.raises(ModelUnavailable, match="toy-absent") as info:
        load_calculator(resolve_model("toy-1"))
    assert info.value.code == 30005


def test_a_new_family_reaches_the_upload_checks(toy: None) -> None:
    assert custom_fields({"framework": "toy"}, "weights.toy")["file"] == "model.toy"
    with pytest.raises(UnsupportedFormat, match=r"\.toy"):
        custom_fields({"framework": "toy"}, "weights.pt")
    with pytest.raises(ValidationError, match="toy"):
        custom_fields({"framework": "tensorflow"}, "weights.pt")


@pytest_asyncio.fixture
async def client(toy: None, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(Config(spool=str(tmp_path / "spool"), http_rate_limit=0))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.asyncio
async def test_a_new_family_reaches_both_apis_and_the_document(
    client: TestClient[Any, Any],
) -> None:
    form = FormData()
    form.add_field("file", b"PK\x03\x04toy", filename="w.toy")
    form.add_field("framework", "toy")
    resp = await client.post("/api/v1/models/custom", data=form)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["data"]["framework"] == "toy"

    resp = await client.get("/api/v1/models/families")
    assert "toy" in [f["family"] for f in (await resp.json())["data"]["items"]]
    resp = await client.get("/mira/api/v1/models/families")
    assert "toy" in await resp.json()
    resp = await client.get("/mira/api/v1/models?family=toy")
    assert [m["key"] for m in await resp.json()] == ["toy-1"]

    doc = await (await client.get("/openapi.json")).json()
    upload = doc["paths"]["/api/v1/models/custom"]["post"]["requestBody"]["content"]
    form_schema = upload["multipart/form-data"]["schema"]["properties"]
    assert form_schema["framework"]["enum"] == ["sevennet", "mace", "orb", "pytorch", "toy"]
    assert ".toy" in form_schema["file"]["description"]
    for path in ("/api/v1/models", "/mira/api/v1/models"):
        (param,) = [p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "family"]
        assert "toy" in param["schema"]["enum"]
    fams = doc["paths"]["/mira/api/v1/models/families"]["get"]["responses"]["200"]
    assert "toy" in fams["content"]["application/json"]["example"]
