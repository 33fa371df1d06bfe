"""The [slurm] settings, Slurm's time and squeue formats, and the scheduler's rule that a
pilot takes no task its time limit would cut.  No Slurm needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mofsim_core.config import load_config
from mofsim_core.slurm_config import SlurmSettings, parse_time_limit
from mofsimd.pilot_channel import Tail, append, job_name, slot_id
from mofsimd.scheduler import FreeSlot, QueuedJob, expected_duration, plan
from mofsimd.slurm_cli import parse_squeue
from spool.errors import ValidationError
from tests.daemon_helpers import quick_job


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800.0),
        ("5:30", 330.0),
        ("04:00:00", 14400.0),
        ("2-12", 216000.0),
        ("1-00:30", 88200.0),
        ("1-00:00:10", 86410.0),
        ("UNLIMITED", None),
        ("soon", None),
        ("1:2:3:4", None),
    ],
)
def test_slurm_time_limits_parse(text: str, seconds: float | None) -> None:
    assert parse_time_limit(text) == seconds


def test_settings_from_the_configuration_file(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text(
        '[daemon]\nslots = "slurm"\n[slurm]\npartition = "gpu"\ngres = "gpu:1"\n'
        'memory = "16G"\nmax_pilots = 8\nsbatch_options = ["--exclude=n13"]\n'
        'python_env = "/proj/venv"\non_stop = "keep"\n'
    )
    s = load_config(f, env={}).slurm_settings
    assert s.gpu and s.max_pilots == 8 and s.on_stop == "keep"
    assert s.sbatch_args() == [
        "--cpus-per-task=1",
        "--time=04:00:00",
        "--partition=gpu",
        "--gres=gpu:1",
        "--mem=16G",
        "--exclude=n13",
    ]
    assert not SlurmSettings().gpu and SlurmSettings().time_limit_s == 14400.0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"on_stop": "pause"}, "slurm.on_stop"),
        ({"min_pilots": 3, "max_pilots": 2}, "slurm.max_pilots"),
        ({"max_pilots": "many"}, "slurm.max_pilots"),
        ({"time_limit": "soon"}, "slurm.time_limit"),
        ({"partitoin": "gpu"}, "slurm"),
    ],
)
def test_bad_settings_name_the_setting(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        SlurmSettings.from_dict(data)
    assert e.value.field == field


def test_squeue_lines_parse() -> None:
    text = (
        "41|RUNNING|None|node7|2026-12-03T10:00:00|2026-12-03T14:00:00|mofsim-pilot-x\n"
        "42|PENDING|ReqNodeNotAvail, UnavailableNodes:ghost|||N/A|mofsim-pilot-x\n"
        "garbage\n"
    )
    jobs = parse_squeue(text)
    assert set(jobs) == {"41", "42"}
    run, pend = jobs["41"], jobs["42"]
    assert run.live and run.node == "node7" and run.reason is None
    assert run.end is not None and run.start is not None and run.end - run.start == 14400
    assert pend.live and pend.reason == "ReqNodeNotAvail, UnavailableNodes:ghost"
    assert pend.node is None and pend.end is None
    assert not parse_squeue("43|CANCELLED|None|node7|||x")["43"].live


def test_a_pilot_takes_no_task_its_time_limit_would_cut() -> None:
    long = QueuedJob("long", "emt", 2, "0001-long.json", duration_s=600)
    short = QueuedJob("short", "emt", 2, "0002-short.json", duration_s=60)
    unknown = QueuedJob("unknown", "emt", 2, "0003-unknown.json")
    ending = FreeSlot("slurm:7:cpu0", time_left_s=300)
    local = FreeSlot("cpu0", order=1)
    got = plan([long, short, unknown], [ending], now=0)
    assert [(j.task_id, s.slot_id) for j, s in got.assignments] == [("short", "slurm:7:cpu0")]
    got = plan([long, short], [ending, local], now=0)
    assert {(j.task_id, s.slot_id) for j, s in got.assignments} == {
        ("long", "cpu0"),
        ("short", "slurm:7:cpu0"),
    }
    assert plan([unknown], [ending], now=0).assignments[0][0] is unknown


def test_expected_duration_comes_from_the_job() -> None:
    assert expected_duration(quick_job()) is None
    assert expected_duration(quick_job(options={"timeout": 90})) == 90
    assert expected_duration(quick_job(options={"timeout": 90, "expected_duration": 30})) == 30


def test_the_channel_reads_whole_lines_once(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    tail = Tail(path)
    assert tail.read() == []
    append(path, {"type": "ready"})
    with open(path, "a") as fh:
        fh.write('{"type": "fini')  # a line still being written
    assert tail.read() == [{"type": "ready"}]
    with open(path, "a") as fh:
        fh.write('shed"}\n')
    assert tail.read() == [{"type": "finished"}]
    assert tail.read() == []
    assert Tail(path, from_end=True).read() == []
    assert slot_id("12", "nvml") == "slurm:12:gpu0" and slot_id("12", "cpu") == "slurm:12:cpu0"
    assert job_name(tmp_path / "a") != job_name(tmp_path / "b")
