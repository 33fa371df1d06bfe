"""The sync SDK against the real server (``live_server``: ``create_app`` on a loopback
port, a real daemon on the same spool), EMT and LJ models."""

from __future__ import annotations

import ast
import asyncio
import logging
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mofsim_client import (
    AuthenticationError,
    InvalidStructureError,
    ModelNotFoundError,
    MOFSimClient,
    MOFSimError,
    OptimizationResult,
    ResultNotReadyError,
    ServerUnavailableError,
    SinglePointResult,
    Task,
    TaskAlreadyFinishedError,
    TaskCancelledError,
    TaskEvent,
    TaskNotFoundError,
    UnsupportedFormatError,
    ValidationError,
)
from tests.daemon_helpers import LiveServer, cu_xyz


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[MOFSimClient]:
    with MOFSimClient(live_server.url) as c:
        yield c


@pytest.fixture(scope="module")
def cu_cif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ase.build import bulk
    from ase.io import write

    path = tmp_path_factory.mktemp("structures") / "cu.cif"
    write(str(path), bulk("Cu", "fcc", a=3.61, cubic=True), format="cif")
    return path


def slow_optimization(
    client: MOFSimClient, tmp_path: Path, steps: int = 10_000_000, **kw: Any
) -> Task:
    """An EMT optimization that cannot converge: it runs ``steps`` steps (or until
    cancelled), reporting progress as it goes."""
    path = tmp_path / "cu108.xyz"
    path.write_text(cu_xyz(3, rattle=0.05))
    return client.submit_optimization(
        str(path),
        model="emt",
        fmax=1e-30,
        max_steps=steps,
        optimizer="FIRE",
        trajectory_interval=1_000_000,
        **kw,
    )


def wait_running(task: Task) -> None:
    for ev in task.stream_events():
        if ev.status == "RUNNING" or ev.event == "progress":
            return
    raise AssertionError(f"{task} ended before it ran")


# --- the spec's example ---------------------------------------------------------------------

# Section 10.2 of the engineering spec, character for character.
SPEC_10_2 = """from mofsim_client import MOFSimClient

# 初始化客户端
client = MOFSimClient(
    base_url="http://server:8000",
    api_key="your-api-key"
)

# 提交任务
task = client.submit_optimization(
    structure="path/to/mof.cif",
    model="mace_prod",
    priority="NORMAL"
)

# 等待结果（同步）
result = task.wait()

# 或异步获取
async for log in task.stream_logs():
    print(log)

result = await task.result()
"""


def test_spec_10_2_example_runs_unmodified(
    live_spool: Path, cu_cif: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example's code runs as written; only its four placeholder values become this
    test's server, key, file and model (mace_prod's weights cannot be downloaded here).
    Top-level ``await`` runs as in IPython or ``python -m asyncio``."""
    from mofsim_core.api_keys import KeyStore

    keys = tmp_path / "keys.json"
    _, token = KeyStore(keys).create("spec example")
    live = LiveServer(live_spool, api_keys_file=str(keys)).start()
    try:
        values = {
            "http://server:8000": live.url,
            "your-api-key": token,
            "path/to/mof.cif": str(cu_cif),
            "mace_prod": "emt",
        }
        source = SPEC_10_2
        for placeholder, value in values.items():
            assert source.count(f'"{placeholder}"') == 1
            source = source.replace(f'"{placeholder}"', repr(value))
        code = compile(source, "spec_10_2.py", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        namespace: dict[str, Any] = {}
        coro = eval(code, namespace)  # noqa: S307 - the spec's own example
        asyncio.run(coro)
        namespace["client"].close()
    finally:
        live.close()
    result = namespace["result"]
    assert isinstance(result, OptimizationResult) and result.converged is True
    assert result.final_energy_eV is not None and result.status == "COMPLETED"
    printed = capsys.readouterr().out
    assert "BFGS optimization of 4 atoms" in printed  # the task's log, line by line


# --- submitting ------------------------------------------------------------------------------


def test_every_form_of_structure(client: MOFSimClient, cu_cif: Path) -> None:
    from ase.io import read

    uploaded = client.upload_structure(cu_cif, name="copper")
    assert uploaded.file_id and uploaded.file_id.startswith("struct_")
    assert uploaded.natoms == 4 and uploaded.name == "copper"
    assert any(s.file_id == uploaded.file_id for s in client.list_structures())
    tasks = {
        "path": client.submit_single_point(str(cu_cif), model="emt"),
        "pathlib": client.submit_single_point(cu_cif, model="emt"),
        "atoms": client.submit_single_point(read(str(cu_cif)), model="emt"),
        "upload": client.submit_single_point(uploaded.file_id, model="emt"),
    }
    energies = {}
    for form, task in tasks.items():
        result = task.wait(timeout=60)
        assert isinstance(result, SinglePointResult), form
        energies[form] = result.energy_eV
    assert len({round(e or 0.0, 9) for e in energies.values()}) == 1, energies
    builtin = client.submit_single_point("builtin:CALF-20", model="lj").wait(timeout=60)
    assert isinstance(builtin, SinglePointResult) and builtin.natoms == 44
    assert builtin.structure_name and "CALF-20" in builtin.structure_name
    names = [s.name for s in client.list_builtin_structures()]
    assert "CALF-20" in names


def test_optimization_reports_progress_and_gives_a_typed_result(
    client: MOFSimClient, tmp_path: Path
) -> None:
    path = tmp_path / "cu32.xyz"
    path.write_text(cu_xyz(2, rattle=0.05, seed=3))
    task = client.submit_optimization(str(path), model="emt", priority="HIGH", fmax=0.05)
    assert task.info.status == "QUEUED" and task.info.priority == "HIGH"
    seen: list[TaskEvent] = []
    result = task.wait(timeout=120, on_progress=seen.append)
    assert isinstance(result, OptimizationResult)
    assert result.converged and result.final_fmax is not None and result.final_fmax <= 0.05
    assert result.steps is not None and result.steps > 0
    assert result.cell_parameters is not None and result.cell_parameters.a == pytest.approx(
        7.22, abs=0.01
    )
    statuses = [e.status for e in seen if e.event == "status"]
    assert statuses[0] == "QUEUED" and "RUNNING" in statuses and statuses[-1] == "COMPLETED"
    assert any(e.event == "progress" and e.progress is not None for e in seen)
    assert task.status == "COMPLETED"
    cif = client.download(result.output_files["optimized_structure"], tmp_path / "opt.cif")
    assert "_cell_length_a" in cif.read_text()
    logs = task.logs()
    assert any("optimization" in entry.message for entry in logs)
    streamed = [entry.message for entry in task.stream_logs()]  # ends with the task
    assert streamed == [entry.message for entry in logs if entry.event == "log"]


def test_cancel_a_running_task(client: MOFSimClient, tmp_path: Path) -> None:
    task = slow_optimization(client, tmp_path)
    wait_running(task)
    with pytest.raises(ResultNotReadyError):
        task.result()
    outcome = task.cancel()
    assert outcome.task_id == task.task_id
    with pytest.raises(TaskCancelledError) as info:
        task.wait(timeout=60)
    assert info.value.task_id == task.task_id and task.status == "CANCELLED"
    with pytest.raises(TaskAlreadyFinishedError):
        task.cancel()


def test_errors_carry_the_servers_code_and_field(client: MOFSimClient, cu_cif: Path) -> None:
    with pytest.raises(TaskNotFoundError) as nf:
        client.get_task("task_doesnotexist")
    assert nf.value.code == 30003 and nf.value.http_status == 404 and nf.value.request_id
    with pytest.raises(ModelNotFoundError) as model:
        client.submit_single_point(cu_cif, model="no-such-model")
    assert model.value.field == "model"
    with pytest.raises(ValidationError) as param:
        client.submit_optimization(cu_cif, model="emt", fmax=-1)
    assert param.value.field == "parameters.fmax" and param.value.code == 40001
    with pytest.raises(InvalidStructureError) as structure:
        client.submit_single_point("builtin:MOF-5", model="emt")  # EMT has no Zn
    assert "Zn" in str(structure.value)
    with pytest.raises(FileNotFoundError):
        client.submit_single_point("no/such/mof.cif", model="emt")


def test_batch_list_and_resumable_event_stream(client: MOFSimClient, cu_cif: Path) -> None:
    items: list[dict[str, Any]] = [
        {"task_type": "single-point", "structure": cu_cif, "model": "emt"} for _ in range(5)
    ]
    items.insert(2, {"task_type": "single-point", "structure": cu_cif, "model": "nope"})
    outcomes = client.submit_batch(items)
    assert len(outcomes) == 6 and isinstance(outcomes[2], ModelNotFoundError)
    tasks = [t for t in outcomes if isinstance(t, Task)]
    assert len(tasks) == 5
    for t in tasks:
        t.wait(timeout=60)
    listed = [
        info.task_id
        for info in client.list_tasks(
            task_type="single-point-energy", status="COMPLETED", page_size=2
        )
    ]
    assert len(listed) == len(set(listed))
    assert {t.task_id for t in tasks} <= set(listed)
    assert len(list(client.list_tasks(page_size=2, limit=3))) == 3

    events = list(client.stream_events(tasks[0].task_id))
    assert events[-1].event == "end" and events[-1].status == "COMPLETED"
    resumed = list(client.stream_events(tasks[0].task_id, last_event_id=events[1].id))
    assert [e.id for e in resumed] == [e.id for e in events[2:]]


def test_models_health_and_system_status(client: MOFSimClient) -> None:
    keys = {m.key for m in client.list_models()}
    assert {"emt", "lj", "sevennet-0"} <= keys
    assert client.get_model("emt").key == "emt"
    assert client.health()["status"] == "healthy"
    status = client.get_system_status()
    assert status.healthy and len(status.gpus) == 2
    assert "queued" in status.queue


def test_api_keys(live_spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mofsim_core.api_keys import KeyStore

    keys = tmp_path / "keys.json"
    _, token = KeyStore(keys).create("sdk")
    live = LiveServer(live_spool, api_keys_file=str(keys)).start()
    try:
        monkeypatch.delenv("MOFSIM_API_KEY", raising=False)
        with MOFSimClient(live.url) as anonymous, pytest.raises(AuthenticationError) as info:
            anonymous.list_models()
        assert info.value.code == 20001 and info.value.http_status == 401
        with (
            MOFSimClient(live.url, api_key="msk_wrong_key") as wrong,
            pytest.raises(AuthenticationError),
        ):
            wrong.list_models()
        monkeypatch.setenv("MOFSIM_SERVER", live.url)
        monkeypatch.setenv("MOFSIM_API_KEY", token)
        with MOFSimClient() as from_env:
            assert any(m.key == "emt" for m in from_env.list_models())
    finally:
        live.close()


# --- the server goes away -------------------------------------------------------------------


def test_server_stopped_mid_wait_is_reported_and_the_wait_resumes(
    live_spool: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = LiveServer(live_spool).start()
    restarted = threading.Event()
    seen: list[TaskEvent] = []

    def on_progress(ev: TaskEvent) -> None:
        seen.append(ev)
        if ev.event == "progress" and live.runner is not None and not restarted.is_set():
            live.stop()  # the server goes down while the task runs

            def bring_back() -> None:
                live.start()
                restarted.set()

            threading.Timer(3.0, bring_back).start()

    try:
        # Few, quick retries: the 3 s outage outlasts them, so the wait has to notice.
        with (
            MOFSimClient(live.url, retries=1, backoff=0.2) as c,
            caplog.at_level(logging.WARNING, logger="mofsim_client"),
        ):
            task = slow_optimization(c, tmp_path, steps=150)
            result = task.wait(timeout=120, on_progress=on_progress, poll_interval=0.5)
        assert restarted.is_set()
        assert isinstance(result, OptimizationResult) and result.steps == 150
        kinds = [e.event for e in seen]
        lost = kinds.index("disconnected")
        assert "reconnected" in kinds[lost:]
        error = seen[lost].error
        assert isinstance(error, ServerUnavailableError)
        assert live.url in str(error) and "ConnectError" in str(error)
        assert seen[-1].status == "COMPLETED"
        assert any(live.url in r.getMessage() for r in caplog.records)
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        live.close()


def test_wait_gives_up_when_the_server_stays_away(live_spool: Path, tmp_path: Path) -> None:
    live = LiveServer(live_spool).start()
    try:
        with MOFSimClient(live.url, retries=1, backoff=0.1) as c:
            task = slow_optimization(c, tmp_path)
            wait_running(task)
            live.stop()
            started = time.monotonic()
            with pytest.raises(ServerUnavailableError) as info:
                task.wait(timeout=3, poll_interval=0.2)
            assert time.monotonic() - started < 10
            assert "unreachable" in str(info.value) and task.task_id in str(info.value)
            live.start()
            assert task.cancel().task_id == task.task_id
            with pytest.raises(TaskCancelledError):
                task.wait(timeout=60)
    finally:
        live.close()


def test_unreachable_server_fails_fast_with_a_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        MOFSimClient(f"http://127.0.0.1:{port}", retries=1, backoff=0.05) as c,
        pytest.raises(ServerUnavailableError) as info,
    ):
        c.list_models()
    assert f"127.0.0.1:{port}" in str(info.value) and isinstance(info.value, MOFSimError)


def test_upload_a_custom_model(client: MOFSimClient, tmp_path: Path) -> None:
    """The upload is stored unvalidated (the server never unpickles it); a file that is
    not a PyTorch file is refused with the field named."""
    weights = tmp_path / "mine.model"
    weights.write_bytes(pickle.dumps({"weights": [0.0]}))
    info = client.upload_model(
        weights,
        name="mine",
        framework="mace",
        description="a test upload",
        config={"precision": "float64"},
    )
    assert info.key.startswith("custom:") and info.name == "mine" and info.model_id
    assert info.validated is False and info.raw["config"] == {"precision": "float64"}
    assert info.with_d3 is False and info.d3_included is False
    adds = client.upload_model(weights, name="adds", framework="mace", with_d3=True)
    assert adds.with_d3 is True and adds.d3_included is False  # tasks add D3
    has = client.upload_model(weights, name="has", framework="mace", d3_included=True)
    assert has.with_d3 is False and has.d3_included is True  # the weights include it
    junk = tmp_path / "junk.model"
    junk.write_text("not weights")
    with pytest.raises(UnsupportedFormatError) as refused:
        client.upload_model(junk, name="junk", framework="mace")
    assert refused.value.field == "file" and refused.value.http_status == 415


@pytest.mark.slow
def test_validate_a_custom_model(client: MOFSimClient, tmp_path: Path) -> None:
    """Validation loads the weights in a separate process on the server (seconds of
    imports): a file that is a pickle but not a model is reported invalid, with why."""
    weights = tmp_path / "fake.model"
    weights.write_bytes(pickle.dumps({"not": "a model"}))
    info = client.upload_model(weights, name="fake", framework="mace")
    verdict = client.validate_model(info.key)
    assert verdict["valid"] is False and verdict["model_key"] == info.key
    assert verdict["validation"]["error"]["code"] == 30005


def test_the_sdk_ships_its_type_hints(tmp_path: Path) -> None:
    """PEP 561: ``py.typed`` is in the installed package, and a wheel built with the
    project's packaging settings carries it."""
    import importlib.resources
    import shutil
    import subprocess
    import sys
    import zipfile

    assert importlib.resources.files("mofsim_client").joinpath("py.typed").is_file()
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "mofsim_client", src / "mofsim_client")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + [str(src), "-w", str(tmp_path / "out")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "out").glob("*.whl")
    assert "mofsim_client/py.typed" in zipfile.ZipFile(wheel).namelist()
