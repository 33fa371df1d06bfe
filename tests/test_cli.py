"""The ``mofsim`` CLI in local mode, against a real temporary spool (no daemon).

Task states are made with the spool's own API (claim, events, result.json, finish), the
same calls the daemon makes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mofsim_cli import follow as follow_mod
from mofsim_cli.main import app
from mofsim_cli.submission import parse_param, parse_params
from spool import Job, Spool, transitions
from spool.errors import ValidationError
from spool.recovery import record_failure

ROOT = Path(__file__).resolve().parents[1]
SMALL_CIF = "RSM0020.cif"  # hcmof: 50 lines, C Cu H N (all within EMT's elements)
EU_CIF = "RSM0004.cif"  # hcmof: contains Eu


def cli(*args: str | Path, spool: Path | None = None) -> Any:
    argv = [str(a) for a in args]
    if spool is not None:
        argv += ["--spool", str(spool)]
    return CliRunner().invoke(app, argv, catch_exceptions=False)


def make_task(sp: Spool, created_at: int | None = None, **kw: Any) -> Job:
    data: dict[str, Any] = {
        "task_type": "single-point-energy",
        "model": "emt",
        "structure": "builtin:HKUST-1",
    }
    data.update(kw)
    if created_at is not None:
        data["created_at"] = created_at
    job = Job.from_dict(data)
    sp.submit(job)
    return job


def start(sp: Spool, job: Job, slot: str = "cpu0") -> Path:
    loc = sp.locate(job.task_id)
    assert loc is not None and loc.state == "QUEUED"
    claimed = transitions.claim(sp.paths, loc.path, slot, job.task_id)
    assert claimed is not None
    ev = sp.events(job.task_id)
    ev.status("RUNNING", f"Task started on {slot}", slot=slot, structure_name="HKUST-1_primitive")
    ev.emit("BFGS started", logger="task.optimization")
    ev.emit("progress", event="progress", progress=0.5, step=5, energy=-12.5, fmax=0.25)
    return claimed


def finish(
    sp: Spool,
    job: Job,
    state: str = "COMPLETED",
    *,
    result: dict | None = None,
    error: tuple[int, str] | None = None,
) -> None:
    claimed = start(sp, job)
    if result is not None:
        transitions.atomic_write_json(sp.paths, sp.paths.result_file(job.task_id), result)
    if error is not None:
        record_failure(sp, job.task_id, state, error[0], error[1])
    if state != "COMPLETED":
        sp.events(job.task_id).emit("something went wrong", level="ERROR")
    transitions.finish(sp.paths, claimed, state)
    sp.events(job.task_id).status(state, f"Task {state.lower()}")


RESULT_BODY = {
    "result": {
        "converged": True,
        "final_energy_eV": -1234.567,
        "steps": 12,
        "cell_parameters": {"a": 25.832, "alpha": 90.0},
        "forces_eV_A": [[0.0, 0.1, 0.2]] * 20,
        "output_files": {
            "optimized_structure": "optimized.cif",
            "trajectory": "trajectory.traj",
            "plot": None,
        },
    },
    "metrics": {"avg_step_time_ms": 2085.0, "model_load_seconds": 0.1},
    "structure_name": "HKUST-1_primitive",
    "duration_seconds": 325.5,
    "provenance": {"model": "emt", "dtype": "float32"},
}


# -- help and version ------------------------------------------------------------------


def test_help_does_not_import_torch_or_ase() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mofsim_cli.main import app\n"
        "for argv in (['--help'], ['submit', '--help'], ['logs', '--help']):\n"
        "    r = CliRunner().invoke(app, argv)\n"
        "    assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'ase', 'numpy') if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_help_groups_commands_and_version() -> None:
    r = cli("--help")
    assert r.exit_code == 0
    for word in (
        "Tasks",
        "Daemon",
        "Data",
        "submit",
        "status",
        "result",
        "logs",
        "cancel",
        "list",
        "daemon",
        "mirror",
    ):
        assert word in r.stdout
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("mofsim ")


# -- parameters ------------------------------------------------------------------------


def test_param_values_are_json_when_they_parse_else_text() -> None:
    params = parse_params(
        [
            "fmax=0.05",
            "optimizer=FIRE",
            "supercell=[2,2,2]",
            "with_d3=true",
            "label=a=b",
            "note=",
            'gas={"name": "CO2"}',
            "steps=100",
            "seed=null",
        ]
    )
    assert params == {
        "fmax": 0.05,
        "optimizer": "FIRE",
        "supercell": [2, 2, 2],
        "with_d3": True,
        "label": "a=b",
        "note": "",
        "gas": {"name": "CO2"},
        "steps": 100,
        "seed": None,
    }
    assert isinstance(params["steps"], int)
    for bad in ("fmax", "=3", "x=NaN", "y=Infinity"):
        with pytest.raises(ValidationError):
            parse_param(bad)
    with pytest.raises(ValidationError, match="twice"):
        parse_params(["fmax=1", "fmax=2"])


# -- submit ----------------------------------------------------------------------------


def test_submit_builtin_json(tmp_path: Path) -> None:
    pytest.importorskip("executors.structure_io")
    r = cli("submit", "single-point", "builtin:HKUST-1", "--model", "EMT", "--json", spool=tmp_path)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["status"] == "QUEUED" and data["priority"] == "NORMAL"
    assert data["queue_position"] == 1 and data["created_at"].endswith("Z")
    assert data["task_type"] == "single-point-energy" and data["model"] == "emt"
    sp = Spool(tmp_path)
    job = sp.load_job(data["task_id"])
    assert job.structure == {"source": "builtin", "name": "HKUST-1"}
    loc = sp.locate(data["task_id"])
    assert loc is not None and loc.path.parent.name == "2-normal"


def test_submit_cif_embeds_the_file_with_params_priority_timeout(
    tmp_path: Path, mofsimbench_dir: Path
) -> None:
    pytest.importorskip("executors.structure_io")
    spool = tmp_path / "spool"
    first = cli(
        "submit", "single-point-energy", "builtin:HKUST-1", "-m", "emt", "--json", spool=spool
    )
    assert first.exit_code == 0, first.output
    cif = mofsimbench_dir / "hcmof" / SMALL_CIF
    r = cli(
        "submit",
        "optimization",
        cif,
        "--model",
        "emt",
        "--param",
        "fmax=0.05",
        "--param",
        "optimizer=FIRE",
        "-p",
        "max_steps=200",
        "--priority",
        "high",
        "--timeout",
        "120",
        "--json",
        spool=spool,
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    # HIGH goes ahead of the NORMAL task submitted first.
    assert data["priority"] == "HIGH" and data["queue_position"] == 1
    assert data["structure_name"] == "RSM0020"
    assert "content" not in data["structure"]
    job = Spool(spool).load_job(data["task_id"])
    assert job.parameters == {"fmax": 0.05, "optimizer": "FIRE", "max_steps": 200}
    assert job.options == {"priority": "HIGH", "timeout": 120.0}
    assert job.structure["source"] == "inline" and job.structure["format"] == "cif"
    assert job.structure["content"] == cif.read_text()
    assert job.structure["name"] == "RSM0020"
    assert str(cif) not in json.dumps(job.to_dict())
    listed = json.loads(cli("list", "--json", spool=spool).stdout)
    assert len(listed) == 2


def test_submit_expected_duration_goes_into_the_options(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    args = ("submit", "single-point-energy", "builtin:HKUST-1", "-m", "emt", "--json")
    r = cli(*args, "--expected-duration", "300", spool=spool)
    assert r.exit_code == 0, r.output
    job = Spool(spool).load_job(json.loads(r.stdout)["task_id"])
    assert job.options == {"priority": "NORMAL", "expected_duration": 300.0}
    r = cli(*args, "--expected-duration", "0", spool=spool)
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"]["field"] == "options.expected_duration"


def test_submit_human_output_and_numeric_priority(tmp_path: Path) -> None:
    pytest.importorskip("executors.structure_io")
    r = cli(
        "submit",
        "single-point-energy",
        "builtin:HKUST-1",
        "-m",
        "emt",
        "--priority",
        "0",
        spool=tmp_path,
    )
    assert r.exit_code == 0, r.output
    assert "Submitted task_" in r.stdout and "CRITICAL" in r.stdout
    assert "mofsim logs task_" in r.stdout
    assert [q.priority for q in Spool(tmp_path).queued()] == [0]


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (
            ["submit", "optimization", "builtin:HKUST-1", "-m", "emt", "--priority", "URGENT"],
            40001,
            "invalid priority 'URGENT'",
        ),
        (
            ["submit", "optimization", "builtin:HKUST-1", "-m", "emt", "--param", "fmax"],
            40001,
            "KEY=VALUE",
        ),
        (["submit", "dance", "builtin:HKUST-1", "-m", "emt"], 40001, "unknown task type 'dance'"),
        (
            ["submit", "optimization", "builtin:HKUST-1", "-m", "emt", "--timeout", "-5"],
            40001,
            "--timeout",
        ),
    ],
)
def test_submit_refuses_bad_requests_before_publishing(
    tmp_path: Path, argv: list[str], code: int, needle: str
) -> None:
    r = cli(*argv, spool=tmp_path)
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error {code}: ")
    assert needle in r.stderr
    assert "Traceback" not in r.output
    assert Spool(tmp_path).queued() == []
    rj = cli(*argv, "--json", spool=tmp_path)
    assert rj.exit_code == 1
    err = json.loads(rj.stdout)["error"]
    assert err["code"] == code and needle in err["message"]


def test_submit_checks_model_structure_and_parameters(
    tmp_path: Path, mofsimbench_dir: Path
) -> None:
    pytest.importorskip("executors.structure_io")
    pytest.importorskip("executors.tasks.optimization")
    cases: list[tuple[list[str | Path], int, str]] = [
        (["optimization", "builtin:HKUST-1", "-m", "sevenet"], 30001, "did you mean"),
        (["optimization", "builtin:NoSuchMOF", "-m", "emt"], 30002, "NoSuchMOF"),
        (["optimization", tmp_path / "missing.cif", "-m", "emt"], 30002, "missing.cif"),
        (["optimization", mofsimbench_dir / "hcmof" / EU_CIF, "-m", "emt"], 40002, "Eu"),
        (["optimization", "builtin:HKUST-1", "-m", "emt", "-p", "fmax=-1"], 40001, "fmax"),
    ]
    for argv, code, needle in cases:
        r = cli("submit", *argv, "--json", spool=tmp_path)
        assert r.exit_code == 1, (argv, r.output)
        err = json.loads(r.stdout)["error"]
        assert err["code"] == code and needle in err["message"], (argv, err)
    bad = tmp_path / "junk.cif"
    bad.write_text("data_junk\n_cell_length_a 5\n")
    r = cli("submit", "single-point-energy", bad, "-m", "emt", spool=tmp_path)
    assert r.exit_code == 1 and r.stderr.startswith("error 4000")
    assert Spool(tmp_path).queued() == []


def test_submit_wait_follows_until_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("executors.structure_io")
    sp = Spool(tmp_path)
    steps: list[str] = []

    def daemon_step(_: float) -> None:
        # Each poll of the follower advances the task by one transition, as a daemon would.
        if not steps:
            (q,) = sp.queued()
            start(sp, sp.load_job(str(q.task_id)))
            steps.append("running")
        elif len(steps) == 1:
            tid = next(iter(sp.iter_task_ids()))
            loc = sp.locate(tid)
            assert loc is not None
            transitions.atomic_write_json(sp.paths, sp.paths.result_file(tid), RESULT_BODY)
            transitions.finish(sp.paths, loc.path, "COMPLETED")
            sp.events(tid).status("COMPLETED", "Task completed")
            steps.append("done")
        else:
            raise AssertionError("follower kept polling after the task ended")

    monkeypatch.setattr(follow_mod, "_sleep", daemon_step)
    r = cli("submit", "optimization", "builtin:HKUST-1", "-m", "emt", "--wait", spool=tmp_path)
    assert r.exit_code == 0, r.output
    assert steps == ["running", "done"]
    out = r.stdout
    assert "RUNNING" in out and "progress  50.0%" in out and "step 5" in out
    assert "COMPLETED" in out and "final_energy_eV" in out and "-1234.567" in out


def test_submit_wait_json_exits_1_when_the_task_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("executors.structure_io")
    sp = Spool(tmp_path)

    def fail(_: float) -> None:
        (q,) = sp.queued()
        job = sp.load_job(str(q.task_id))
        claimed = start(sp, job)
        record_failure(sp, job.task_id, "FAILED", 50006, "energy exploded at step 7")
        transitions.finish(sp.paths, claimed, "FAILED")
        sp.events(job.task_id).status("FAILED", "Task failed", level="ERROR")

    monkeypatch.setattr(follow_mod, "_sleep", fail)
    r = cli(
        "submit", "optimization", "builtin:HKUST-1", "-m", "emt", "--wait", "--json", spool=tmp_path
    )
    assert r.exit_code == 1
    err = json.loads(r.stdout)["error"]
    assert err["code"] == 50006 and "energy exploded" in err["message"]


# -- status, list, cancel ----------------------------------------------------------------


def test_unknown_task_is_one_line_error(tmp_path: Path) -> None:
    Spool(tmp_path)
    for command in ("status", "result", "logs", "cancel"):
        r = cli(command, "task_x", spool=tmp_path)
        assert r.exit_code == 1
        assert r.stderr == "error 30003: task task_x not found\n", command
        assert r.stdout == ""
    r = cli("status", "task_x", "--json", spool=tmp_path)
    assert r.exit_code == 1
    assert json.loads(r.stdout) == {
        "error": {
            "code": 30003,
            "type": "TaskNotFound",
            "message": "task task_x not found",
            "field": None,
        }
    }


def test_missing_spool_directory_is_an_error_for_readers(tmp_path: Path) -> None:
    r = cli("list", spool=tmp_path / "nope")
    assert r.exit_code == 1 and "does not exist" in r.stderr
    assert not (tmp_path / "nope").exists()


def test_status_of_queued_and_running_tasks(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    a = make_task(sp, created_at=1000)
    b = make_task(sp, created_at=2000)
    start(sp, a)
    ra = json.loads(cli("status", a.task_id, "--json", spool=tmp_path).stdout)
    assert ra["status"] == "RUNNING" and ra["started_at"] and ra["completed_at"] is None
    assert ra["progress"] == 0.5 and ra["slot"] == "cpu0" and ra["queue_position"] is None
    assert ra["created_at"] == "1970-01-01T00:00:01.000Z"
    rb = json.loads(cli("status", b.task_id, "--json", spool=tmp_path).stdout)
    assert rb["status"] == "QUEUED" and rb["queue_position"] == 1
    text = cli("status", a.task_id, spool=tmp_path).stdout
    assert a.task_id in text and "RUNNING" in text and "50.0%" in text and "fmax 0.25" in text


def test_list_newest_first_with_state_filter_and_limit(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    jobs = [make_task(sp, created_at=1000 * (i + 1)) for i in range(4)]
    finish(sp, jobs[0], result=RESULT_BODY)
    finish(sp, jobs[1], "FAILED", error=(50001, "boom"))
    start(sp, jobs[2])
    ids = [r["task_id"] for r in json.loads(cli("list", "--json", spool=tmp_path).stdout)]
    assert ids == [j.task_id for j in reversed(jobs)]
    done = json.loads(cli("list", "--state", "completed", "--json", spool=tmp_path).stdout)
    assert [r["task_id"] for r in done] == [jobs[0].task_id]
    two = json.loads(cli("list", "-n", "2", "--json", spool=tmp_path).stdout)
    assert [r["status"] for r in two] == ["QUEUED", "RUNNING"]
    table = cli("list", spool=tmp_path).stdout
    for j in jobs:
        assert j.task_id in table
    assert "FAILED" in table and "COMPLETED" in table
    r = cli("list", "--state", "sleeping", spool=tmp_path)
    assert r.exit_code == 1 and r.stderr.startswith("error 40001: unknown state 'sleeping'")


def test_cancel_queued_running_and_terminal(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    queued, running, done = (make_task(sp) for _ in range(3))
    start(sp, running)
    finish(sp, done, result=RESULT_BODY)
    r = cli("cancel", queued.task_id, "--json", spool=tmp_path)
    assert json.loads(r.stdout) == {
        "task_id": queued.task_id,
        "status": "CANCELLED",
        "cancel_requested": False,
    }
    loc = sp.locate(queued.task_id)
    assert loc is not None and loc.state == "CANCELLED"
    # No daemon runs here: after its short wait the answer is the state the task is in.
    r = cli("cancel", running.task_id, spool=tmp_path)
    assert r.exit_code == 0 and "RUNNING" in r.stdout and "cancel requested" in r.stdout
    assert sp.cancel_requested(running.task_id)
    r = cli("cancel", done.task_id, spool=tmp_path)
    assert r.exit_code == 1 and r.stderr.startswith("error 50005: ")
    # Both cancels are in the spool's audit log, where the server shows them.
    audit = [
        json.loads(line)
        for f in sorted((tmp_path / "state" / "logs").glob("audit-*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert [(a["message"], a["task_id"], a["extra"]["state"]) for a in audit] == [
        ("task.cancel", queued.task_id, "QUEUED"),
        ("task.cancel", running.task_id, "RUNNING"),
    ]
    assert all(a["extra"]["by"].startswith("cli:") for a in audit)


# -- logs ------------------------------------------------------------------------------


def test_logs_text_json_level_and_follow(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    job = make_task(sp)
    finish(sp, job, "FAILED", error=(50001, "boom"))
    text = cli("logs", job.task_id, spool=tmp_path).stdout.splitlines()
    assert len(text) == 6  # QUEUED, RUNNING, log, progress, error, FAILED
    assert "QUEUED" in text[0] and "BFGS started" in text[2] and "progress  50.0%" in text[3]
    lines = [
        json.loads(x)
        for x in cli("logs", job.task_id, "--json", spool=tmp_path).stdout.splitlines()
    ]
    assert [x["event"] for x in lines] == ["status", "status", "log", "progress", "log", "status"]
    assert lines[0]["seq"] == 0 and lines[1]["seq"] > 0
    errors = cli("logs", job.task_id, "--level", "error", "--json", spool=tmp_path).stdout
    assert [json.loads(x)["message"] for x in errors.splitlines()] == ["something went wrong"]
    r = cli("logs", job.task_id, "--level", "LOUD", spool=tmp_path)
    assert r.exit_code == 1 and "unknown log level" in r.stderr
    followed = cli("logs", job.task_id, "--follow", spool=tmp_path)
    assert followed.exit_code == 0
    assert followed.stdout.splitlines()[-1] == f"Task {job.task_id} FAILED"


# -- result ----------------------------------------------------------------------------


def test_result_json_shape_and_table(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    job = make_task(sp, task_type="optimization")
    finish(sp, job, result=RESULT_BODY)
    view = json.loads(cli("result", job.task_id, "--json", spool=tmp_path).stdout)
    for key in (
        "task_id",
        "task_type",
        "status",
        "model",
        "structure_name",
        "created_at",
        "started_at",
        "completed_at",
        "duration_seconds",
        "gpu_id",
        "result",
        "metrics",
    ):
        assert key in view
    assert view["status"] == "COMPLETED" and view["task_type"] == "optimization"
    assert view["duration_seconds"] == 325.5 and view["metrics"]["avg_step_time_ms"] == 2085.0
    assert view["result"]["final_energy_eV"] == -1234.567
    workspace = sp.paths.workspace(job.task_id)
    assert view["output_files"] == {
        "optimized_structure": str(workspace / "optimized.cif"),
        "trajectory": str(workspace / "trajectory.traj"),
    }
    text = cli("result", job.task_id, spool=tmp_path).stdout
    assert "final_energy_eV" in text and "-1234.567" in text
    assert "cell_parameters.a" in text and "25.832" in text
    assert "forces_eV_A" not in text  # bulky arrays stay out of the table
    assert str(workspace / "optimized.cif") in text


def test_result_of_unfinished_failed_and_cancelled_tasks(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    queued, failed, cancelled = (make_task(sp) for _ in range(3))
    finish(sp, failed, "FAILED", error=(50006, "energy diverged"))
    sp.request_cancel(cancelled.task_id)
    r = cli("result", queued.task_id, spool=tmp_path)
    assert r.exit_code == 1 and r.stderr.startswith("error 50003: ")
    r = cli("result", failed.task_id, spool=tmp_path)
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error 50006: task {failed.task_id} failed: energy diverged")
    r = cli("result", cancelled.task_id, "--json", spool=tmp_path)
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == 50004


# -- data and daemon -------------------------------------------------------------------


def test_mirror_rebuild_counts_tasks_and_logs(tmp_path: Path) -> None:
    pytest.importorskip("sqlite_utils")
    from mofsim_core.mirror_sqlite import SqliteMirror

    sp = Spool(tmp_path)
    a, b = make_task(sp), make_task(sp)
    finish(sp, a, result=RESULT_BODY)
    r = cli("mirror", "rebuild", "--json", spool=tmp_path)
    assert r.exit_code == 0, r.output
    counts = json.loads(r.stdout)
    assert counts["tasks"] == 2 and counts["logs"] == 6
    assert counts["by_status"] == {"COMPLETED": 1, "QUEUED": 1}
    mirror = SqliteMirror(tmp_path / "state" / "mirror.sqlite")
    try:
        row = mirror.get_task(a.task_id)
        assert row is not None and row["status"] == "COMPLETED"
        assert len(mirror.task_logs(a.task_id)) == 5
        assert mirror.get_task(b.task_id) is not None
    finally:
        mirror.close()
    assert "Mirror rebuilt" in cli("mirror", "rebuild", spool=tmp_path).stdout


def test_daemon_passes_flags_to_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mofsim_cli import launch

    seen: list[Any] = []

    def run_daemon(cfg: Any) -> int:
        seen.append(cfg)
        return 3

    monkeypatch.setattr(launch, "run_daemon", run_daemon)
    monkeypatch.delenv("MOFSIM_CONFIG", raising=False)
    conf = tmp_path / "mofsim.toml"
    conf.write_text('[daemon]\nslots = "cpu:4"\nmax_attempts = 5\n')
    r = cli(
        "daemon",
        "--spool",
        tmp_path / "sp",
        "--slots",
        "simulate:2",
        "--http",
        "127.0.0.1:8123",
        "--config",
        conf,
    )
    assert r.exit_code == 3
    cfg = seen[-1]
    assert cfg.spool_path == (tmp_path / "sp").resolve()
    assert cfg.slots == "simulate:2" and cfg.http == "127.0.0.1:8123" and cfg.max_attempts == 5
    cli("daemon", "--config", conf, "--no-http")
    assert seen[-1].http is None and seen[-1].slots == "cpu:4"
    r = cli("daemon", "--http", "nowhere")
    assert r.exit_code == 1 and r.stderr.startswith("error 40001: --http must be HOST:PORT")
    r = cli("daemon", "--config", tmp_path / "absent.toml")
    assert r.exit_code == 1 and "not found" in r.stderr
    assert len(seen) == 2
