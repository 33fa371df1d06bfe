"""``mofsim bench``: a quick-suite campaign on EMT through a real daemon, resumed without
running anything twice, then reported against the DFT references (CLI files and API)."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mofsim_cli.main import app
from mofsim_core.bench_campaign import campaign_id, load_campaign, run_campaign
from mofsim_core.bench_report import compare
from mofsim_core.bench_suites import (
    StructureSource,
    bulk_modulus_references,
    heat_capacity_references,
    plan,
    structure_sets,
    unknown_files,
)
from spool.errors import ValidationError
from spool.store import Spool
from tests.daemon_helpers import LiveServer, wait_for

# Protocol values cut down to a smoke run; the code paths stay the benchmark's.
TINY = [
    "optimization.max_steps=3",
    "optimization.fmax=0.5",
    "bulk-modulus.pre_optimize=false",
    "bulk-modulus.num_points=5",
    "bulk-modulus.max_steps=2",
    "stability.relax_steps=1",
    "stability.nvt_steps=2",
    "stability.npt_steps=2",
    "stability.frame_interval=1",
    "heat-capacity.pre_optimize=false",
    "heat-capacity.temperature_range=[0,600,100]",
]


def _cli(*argv: str) -> Any:
    result = CliRunner().invoke(app, list(argv), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_shipped_references_cover_the_sets() -> None:
    sets = structure_sets()
    assert (len(sets["essential"]), len(sets["main_set"]), len(sets["hcmof"])) == (4, 100, 232)
    refs = bulk_modulus_references()
    assert refs["HKUST-1"]["B0_GPa"] == pytest.approx(23.581468)
    assert all(Path(p).stem.replace("_primitive", "") in refs for p in sets["main_set"])
    assert heat_capacity_references()["RSM0004"] == pytest.approx(0.4760596214817581)


def test_suites_plan_the_benchmark(mofsimbench_dir: Path) -> None:
    here = StructureSource.folder(mofsimbench_dir)
    quick, main, full = (plan(s, here) for s in ("quick", "main", "full"))
    assert (len(quick), len(main), len(full)) == (16, 532, 549)
    # The quick suite's heat capacity: the four smallest cells with a DFT reference.
    refs = heat_capacity_references()
    with_refs = [p for p in structure_sets()["hcmof"] if Path(p).stem in refs]
    by_size = sorted(with_refs, key=lambda p: ((mofsimbench_dir / p).stat().st_size, p))
    assert [e.path for e in quick if e.task_type == "heat-capacity"] == by_size[:4]
    assert len({e.key for e in full}) == 549
    variants = {e.variant for e in full if e.task_type == "stability"}
    assert variants == {"standard", "cu_paddlewheel", "temperature_ramp"}
    with pytest.raises(ValidationError) as err:
        plan("quick", StructureSource.folder(mofsimbench_dir / "nowhere"))
    assert err.value.field == "data"
    with pytest.raises(ValidationError):
        plan("huge", here)
    # Files sent with a request plan the same suite as the folder they came from.
    # Files that are not the benchmark's are left aside, whatever their size.
    files = {p: here.read(p) for p in {e.path for e in quick}}
    odd = {"main_set/../../etc/passwd": "x", "hcmof/tiny.cif": "data_x"}
    sent = StructureSource.sent({**files, **odd})
    assert plan("quick", sent) == quick
    assert unknown_files({**files, **odd}) == sorted(odd)
    with pytest.raises(ValidationError) as err:
        plan("quick", StructureSource.sent(odd))
    assert err.value.field == "structures"


@pytest.fixture(scope="module")
def live_options() -> dict[str, Any]:
    return {"slots": "cpu:2", "http_rate_limit": 0}


def test_quick_campaign_on_emt_end_to_end(
    live_server: LiveServer, mofsimbench_dir: Path, tmp_path: Path
) -> None:
    root = live_server.spool_root
    sets = ["--set", *" --set ".join(TINY).split(" ")]
    common = ["--model", "emt", "--suite", "quick", "--data", str(mofsimbench_dir)]
    first = json.loads(_cli("bench", "run", *common, *sets, "--json", "--spool", str(root)).output)
    cid = first["campaign_id"]
    assert cid == campaign_id("emt", False, "quick")
    # EMT knows H C N O Al Ni Cu Pd Ag Pt Au: HKUST-1 and one hcmof cell run, the rest are
    # refused at submission, with the reason kept.
    assert len(first["submitted"]) == 4 and first["states"]["REFUSED"] == 12
    sp = Spool(root)
    campaign = load_campaign(sp, cid)
    ids = {k: r["task_id"] for k, r in campaign["entries"].items() if r.get("task_id")}
    refused = campaign["entries"]["optimization/standard/MOF-5_primitive"]["refused"]
    assert "Zn" in refused

    # Again: nothing is submitted twice.
    again = json.loads(_cli("bench", "run", *common, *sets, "--json", "--spool", str(root)).output)
    assert again["submitted"] == []
    assert {
        k: r["task_id"] for k, r in load_campaign(sp, cid)["entries"].items() if r.get("task_id")
    } == ids
    with pytest.raises(ValidationError) as err:
        run_campaign(
            sp,
            model="emt",
            suite="quick",
            source=StructureSource.folder(mofsimbench_dir),
            overrides={"x": {"y": 1}},
        )
    assert err.value.field == "overrides"
    with open(root / "bench" / f"{cid}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ValidationError, match="another process"):
            run_campaign(
                sp, model="emt", suite="quick", source=StructureSource.folder(mofsimbench_dir)
            )

    def finished() -> bool:
        return all(sp.record(t)["status"] in ("COMPLETED", "FAILED") for t in ids.values())

    wait_for(finished, timeout=500, what="campaign tasks")
    assert {sp.record(t)["status"] for t in ids.values()} == {"COMPLETED"}

    report = compare(sp)
    (camp,) = report["campaigns"]
    assert camp["label"] == "emt (quick)" and camp["states"]["COMPLETED"] == 4
    assert [p["structure"] for p in camp["bulk_modulus"]["pairs"]] == ["HKUST-1_primitive"]
    assert camp["bulk_modulus"]["pairs"][0]["dft"] == pytest.approx(23.581468)
    assert camp["bulk_modulus"]["mae_GPa"] == pytest.approx(
        abs(camp["bulk_modulus"]["pairs"][0]["error"])
    )
    assert [p["structure"] for p in camp["heat_capacity"]["pairs"]] == ["RSM0011"]
    assert camp["heat_capacity"]["mae_J_per_K_g"] > 0
    (volume,) = camp["optimization"]["volume_vs_dft"]
    assert volume["dft"] == pytest.approx(4675.715)
    # The relaxed HKUST-1 against its DFT-optimized structure, atom by atom.
    (against,) = camp["optimization"]["vs_dft_structures"]
    assert against["structure"] == "HKUST-1_primitive" and 0 < against["rmsd_A"] < 2.0
    assert camp["optimization"]["rmsd_vs_dft_mean_A"] == pytest.approx(against["rmsd_A"])
    assert against["volume_error_percent"] == pytest.approx(volume["error"], abs=0.05)
    assert camp["stability"]["standard"]["n"] == 1

    out = tmp_path / "report"
    _cli("bench", "report", "--out", str(out), "--spool", str(root))
    md = (out / "report.md").read_text()
    assert "| metric | emt (quick) |" in md
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if "|" in line}
    assert rows["bulk modulus: MAE (GPa) (n)"].endswith(" (1) |")
    assert rows["tasks failed / refused / not finished"].endswith("| 0 / 12 / 0 |")
    summary = [line for line in md.split("## ")[0].splitlines() if line.startswith("|")]
    assert all(line.count("|") == 3 for line in summary)  # one column per campaign
    assert "| HKUST-1_primitive | 23.58 |" in md  # the per-structure table
    assert rows["optimization: RMSD to the DFT structure, mean / median (Å) (n)"].endswith("(1) |")
    assert "## Relaxed structures against the DFT-optimized ones" in md
    for name in ("parity_bulk_modulus.png", "parity_heat_capacity.png", "parity_volume.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
        assert f"]({name})" in md
    assert "<table" in (out / "report.html").read_text()

    api = httpx.get(f"{live_server.url}/api/v1/bench/report", timeout=60)
    assert api.status_code == 200, api.text
    data = api.json()["data"]
    assert data["report"]["campaigns"][0]["campaign_id"] == cid
    assert "data:image/png;base64," in data["html"] and "| emt (quick) |" in data["markdown"]
    page = httpx.get(f"{live_server.url}/api/v1/bench/report.html?campaign={cid}", timeout=60)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    missing = httpx.get(f"{live_server.url}/api/v1/bench/report?campaign=nope", timeout=60)
    assert missing.status_code == 404

    remote = tmp_path / "remote"
    _cli("bench", "report", "--out", str(remote), "--server", live_server.url)
    assert "| metric | emt (quick) |" in (remote / "report.md").read_text()
    assert "data:image/png;base64," in (remote / "report.html").read_text()
