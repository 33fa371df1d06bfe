"""The model catalogue: keys, aliases, MIRA shape, custom models on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from executors.families import MPTRJ_ELEMENTS
from executors.models import (
    builtin_models,
    families,
    family_names,
    list_models,
    normalize_precision,
    resolve_model,
)
from executors.registry import task_type_names
from spool.errors import ModelNotFound, ModelUnavailable, ValidationError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name,key",
    [
        ("sevennet-0", "sevennet-0"),
        ("7net-0", "sevennet-0"),
        ("SevenNet-0", "sevennet-0"),
        ("sevennet", "sevennet-0"),
        ("7NET_0", "sevennet-0"),
        ("7net-l3i5", "sevennet-l3i5"),
        ("mace-mp", "mace-mp"),
        ("mace_mp", "mace-mp"),
        ("MACE-MP-0", "mace-mp"),
        ("mace_prod", "mace-mpa-0-medium"),
        ("mace-mpa-0", "mace-mpa-0-medium"),
        ("mace-off", "mace-off23"),
        ("Mace_Off23", "mace-off23"),
        ("orb_v2", "orb-v2"),
        ("orb-d3-v2", "orb-d3-v2"),
        ("orb-v3-conservative-inf-omat", "orb-v3-conservative-inf-omat"),
        (" EMT ", "emt"),
        ("lj", "lj"),
    ],
)
def test_keys_and_aliases_resolve(name: str, key: str) -> None:
    assert resolve_model(name).key == key


def test_unknown_key_names_the_closest_models() -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model("mace-mpp")
    assert "mace-mp" in info.value.message
    assert info.value.code == 30001 and info.value.field == "model"
    with pytest.raises(ModelNotFound) as info:
        resolve_model("grace-2l")
    assert "known models" in info.value.message or "did you mean" in info.value.message
    with pytest.raises(ModelNotFound):
        resolve_model("")


def test_keys_and_aliases_are_unique() -> None:
    seen: dict[str, str] = {}
    for spec in builtin_models():
        for name in {n.lower().replace("_", "-") for n in (spec.key, *spec.aliases)}:
            assert seen.setdefault(name, spec.key) == spec.key, name


def test_mira_shape_is_json_and_complete() -> None:
    for spec in list_models():
        doc = spec.to_dict()
        assert set(doc) == {
            "key",
            "name",
            "family",
            "description",
            "elements",
            "supported_tasks",
            "references",
        }
        json.dumps(doc)
        assert doc["supported_tasks"] == task_type_names()
        assert doc["elements"]
        json.dumps(spec.to_full_dict())


def test_element_lists() -> None:
    assert len(MPTRJ_ELEMENTS) == 89 and len(set(MPTRJ_ELEMENTS)) == 89
    assert {"Po", "At", "Rn", "Fr", "Ra"}.isdisjoint(MPTRJ_ELEMENTS)
    sevennet = resolve_model("7net-0")
    assert {"H", "C", "O", "Zn", "Cu", "Zr", "Pu"} <= set(sevennet.elements)
    assert "Cu" not in resolve_model("mace-off23").elements
    assert resolve_model("emt").elements == [
        "Al",
        "Cu",
        "Ag",
        "Au",
        "Ni",
        "Pd",
        "Pt",
        "H",
        "C",
        "N",
        "O",
    ]
    assert resolve_model("lj").elements == ["all"]


def test_d3_trained_flags() -> None:
    assert [s.key for s in builtin_models() if s.d3_trained] == ["orb-d3-v2"]


def test_families_cover_every_model() -> None:
    fams = {f["family"]: f for f in families()}
    assert list(fams) == family_names()
    assert {"sevennet", "mace", "orb", "ase", "custom"} <= set(fams)
    for spec in builtin_models():
        assert spec.key in fams[spec.family]["models"]
    assert fams["ase"]["installed"] is True
    json.dumps(families())


def test_precision_spellings() -> None:
    assert normalize_precision("float64") == "float64"
    assert normalize_precision("Double") == "float64"
    assert normalize_precision("float32-high") == "float32"
    with pytest.raises(ValidationError) as info:
        normalize_precision("float16")
    assert info.value.field == "dtype"


def _write_meta(root: Path, model_id: str, **meta: object) -> Path:
    folder = root / model_id
    folder.mkdir(parents=True)
    doc = {
        "name": "My MACE",
        "framework": "mace",
        "with_d3": False,
        "config": {"precision": "float64"},
        "file": "model.model",
        **meta,
    }
    (folder / "meta.json").write_text(json.dumps(doc))
    (folder / str(doc["file"])).write_bytes(b"weights")
    return folder


def test_custom_model_resolves_by_prefix_and_bare_id(tmp_path: Path) -> None:
    _write_meta(tmp_path, "my_mace", with_d3=True, elements=["Zn", "O", "C", "H"])
    spec = resolve_model("custom:my_mace", tmp_path)
    assert spec.key == "custom:my_mace" and spec.family == "custom"
    assert spec.framework == "mace" and spec.default_dtype == "float64"
    assert spec.d3_trained is True and spec.elements == ["Zn", "O", "C", "H"]
    assert Path(spec.weights) == (tmp_path / "my_mace" / "model.model").resolve()
    assert resolve_model("my_mace", tmp_path).key == "custom:my_mace"
    assert "custom:my_mace" in [s.key for s in list_models(tmp_path)]
    # A folder without d3_included predates it: its with_d3 said the weights have D3.
    assert spec.d3_default is False
    # An explicit d3_trained wins over with_d3.
    _write_meta(tmp_path, "other", with_d3=True, d3_trained=False)
    assert resolve_model("custom:other", tmp_path).d3_trained is False


@pytest.mark.parametrize(
    ("meta", "trained", "default"),
    [
        ({"with_d3": True, "d3_included": False}, False, True),  # tasks add D3
        ({"with_d3": False, "d3_included": True}, True, False),  # the weights have it
        ({"with_d3": True}, True, False),  # an older upload: the old meaning
        ({"with_d3": False}, False, False),
        ({"with_d3": False, "config": {"d3_included": True}}, True, False),
    ],
)
def test_custom_d3_reads_both_meanings(
    tmp_path: Path, meta: dict[str, object], trained: bool, default: bool
) -> None:
    from mofsim_core.model_service import custom_public

    _write_meta(tmp_path, "m", **meta)
    spec = resolve_model("custom:m", tmp_path)
    assert (spec.d3_trained, spec.d3_default) == (trained, default)
    assert spec.to_full_dict()["d3_default"] is default
    public = custom_public(json.loads((tmp_path / "m" / "meta.json").read_text()), tmp_path)
    assert (public["d3_included"], public["with_d3"]) == (trained, default)


def test_custom_model_not_found_or_unsafe(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        resolve_model("custom:absent", tmp_path)
    with pytest.raises(ModelNotFound):
        resolve_model("custom:anything")  # no models directory configured
    with pytest.raises(ModelNotFound):
        resolve_model("custom:../etc", tmp_path)


@pytest.mark.parametrize(
    "meta",
    [
        {"framework": "tensorflow"},
        {"file": "../outside.model"},
        {"file": "model.exe"},
        {"config": {"precision": "float16"}},
        {"config": "float32"},
    ],
)
def test_broken_custom_meta_is_unavailable_and_unlisted(tmp_path: Path, meta: dict) -> None:
    _write_meta(tmp_path, "bad", **meta)
    with pytest.raises(ModelUnavailable):
        resolve_model("custom:bad", tmp_path)
    assert "custom:bad" not in [s.key for s in list_models(tmp_path)]


def test_unparsable_meta_json(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "meta.json").write_text("{not json")
    with pytest.raises(ModelUnavailable):
        resolve_model("custom:x", tmp_path)


def test_catalogue_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import executors.models, executors.loaders, executors.calc_cache; "
        "executors.models.families(); "
        "bad = [m for m in ('torch', 'ase', 'mace', 'sevenn', 'orb_models') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_uploaded_models_run_only_with_a_verdict_for_their_weights(tmp_path: Path) -> None:
    from executors.models import check_usable
    from executors.verdicts import file_digest, write_verdict
    from spool.errors import ModelUnavailable

    _write_meta(tmp_path, "fresh")
    checked = _write_meta(tmp_path, "checked", validated=True)
    _write_meta(tmp_path, "claims", validated=True)  # meta.json's word is not trusted
    failed = _write_meta(tmp_path, "failed")
    digest = file_digest(checked / "model.model")
    write_verdict(tmp_path, "checked", digest, {"ok": True, "exit_code": 0})
    write_verdict(tmp_path, "failed", digest, {"ok": True, "exit_code": 1})
    # Executors load the weights-only form only as validated (else the upload runs in
    # the sandbox).
    from executors.verdicts import trusted_form

    assert trusted_form(tmp_path, "checked") is None
    form = tmp_path / ".converted" / "checked"
    form.mkdir(parents=True)
    (form / "config.json").write_text("{}")
    (form / "state.pt").write_bytes(b"tensors")
    safe = {name: file_digest(form / name) for name in ("config.json", "state.pt")}
    write_verdict(tmp_path, "checked", digest, {"ok": True, "exit_code": 0}, safe)
    assert (failed / "model.model").read_bytes() == (checked / "model.model").read_bytes()
    for model_id in ("fresh", "claims", "failed"):
        with pytest.raises(ModelUnavailable, match="validat"):
            check_usable(resolve_model(f"custom:{model_id}", tmp_path))
    check_usable(resolve_model("custom:checked", tmp_path))
    check_usable(resolve_model("sevennet-0"))
    assert [m.key for m in list_models(tmp_path) if m.is_custom] == [
        "custom:checked",
        "custom:claims",
        "custom:failed",
        "custom:fresh",
    ]
    assert trusted_form(tmp_path, "checked") == form
    (form / "state.pt").write_bytes(b"other tensors")  # a changed safe form is not used
    assert trusted_form(tmp_path, "checked") is None
    (form / "state.pt").write_bytes(b"tensors")
    assert trusted_form(tmp_path, "checked") == form
    check_usable(resolve_model("custom:checked", tmp_path))
    # A weights file changed after validation is unvalidated.
    (checked / "model.model").write_bytes(b"weights, changed")
    with pytest.raises(ModelUnavailable, match="validat"):
        check_usable(resolve_model("custom:checked", tmp_path))


def test_the_description_says_whether_executors_run_an_upload_without_unpickling(
    tmp_path: Path,
) -> None:
    from mofsim_core.model_service import custom_public

    def weights_only(framework: str) -> bool:
        return bool(
            custom_public({"model_id": "m", "framework": framework}, tmp_path)["weights_only"]
        )

    assert weights_only("orb")  # a state dict, read weights-only as uploaded
    assert not weights_only("mace")  # no weights-only form written: the sandbox runs it
    assert not weights_only("sevennet")
