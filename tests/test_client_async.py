"""The async SDK against the real server (a real daemon, EMT and LJ models), with the
server's default rate limits on: 200 tasks at once must get through them."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mofsim_client import (
    AsyncMOFSimClient,
    AsyncTask,
    OptimizationResult,
    ServerUnavailableError,
    SinglePointResult,
    TaskCancelledError,
    TaskEvent,
    TaskNotFoundError,
    WaitTimeoutError,
)
from tests.daemon_helpers import LiveServer, cu_xyz


@pytest.fixture(scope="module")
def live_options() -> dict[str, Any]:
    return {"slots": "cpu:2"}  # the server's default limits: 20 requests/s, bursts of 60


@pytest.fixture(scope="module")
def cu_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("structures") / "cu.xyz"
    path.write_text(cu_xyz())
    return path


async def _slow(client: AsyncMOFSimClient, tmp_path: Path) -> AsyncTask:
    path = tmp_path / "cu108.xyz"
    path.write_text(cu_xyz(3, rattle=0.05))
    return await client.submit_optimization(
        path,
        model="emt",
        fmax=1e-30,
        max_steps=10_000_000,
        optimizer="FIRE",
        trajectory_interval=1_000_000,
    )


def test_async_example_under_asyncio_run(
    live_server: LiveServer, cu_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spec 10.2's flow with the async client, as a script would run it."""

    async def main() -> Any:
        async with AsyncMOFSimClient(base_url=live_server.url) as client:
            task = await client.submit_optimization(
                structure=str(cu_file), model="emt", priority="NORMAL"
            )
            async for log in task.stream_logs():
                print(log)
            return await task.result()

    result = asyncio.run(main())
    assert isinstance(result, OptimizationResult) and result.converged
    assert "BFGS optimization of 4 atoms" in capsys.readouterr().out


@pytest.mark.asyncio
async def test_200_tasks_submitted_and_awaited(live_server: LiveServer, cu_file: Path) -> None:
    """Each submit and each wait is its own request (and event stream), so the server's
    rate limit answers many of them with 429: the client waits them out and every
    task gets its result."""
    started = time.monotonic()
    async with AsyncMOFSimClient(live_server.url) as client:
        tasks = await asyncio.gather(
            *(client.submit_single_point(cu_file, model="emt") for _ in range(200))
        )
        assert len({t.task_id for t in tasks}) == 200
        results = await asyncio.gather(*(t.wait(timeout=240) for t in tasks))
    elapsed = time.monotonic() - started
    assert all(isinstance(r, SinglePointResult) for r in results)
    energies = {round(r.energy_eV or 0.0, 9) for r in results if isinstance(r, SinglePointResult)}
    assert len(energies) == 1
    assert {r.task_id for r in results} == {t.task_id for t in tasks}
    assert elapsed < 120, f"200 tasks took {elapsed:.0f} s"


@pytest.mark.asyncio
async def test_wait_timeout_is_exact_and_cancel_ends_the_task(
    live_server: LiveServer, tmp_path: Path
) -> None:
    async with AsyncMOFSimClient(live_server.url) as client:
        task = await _slow(client, tmp_path)
        t0 = time.monotonic()
        with pytest.raises(WaitTimeoutError) as info:
            await task.wait(timeout=1.5)
        assert 1.4 < time.monotonic() - t0 < 3.0
        assert info.value.task_id == task.task_id
        info_now = await task.refresh()
        assert info_now.status in ("QUEUED", "ASSIGNED", "RUNNING")
        await task.cancel()
        seen: list[TaskEvent] = []
        with pytest.raises(TaskCancelledError):
            await task.wait(timeout=60, on_progress=seen.append)
        assert seen[-1].status == "CANCELLED"
        assert task.status == "CANCELLED"


@pytest.mark.asyncio
async def test_listing_events_and_system(live_server: LiveServer, cu_file: Path) -> None:
    async with AsyncMOFSimClient(live_server.url) as client:
        outcomes = await client.submit_batch(
            [{"task_type": "single-point", "structure": cu_file, "model": "emt"}] * 3
        )
        tasks = [t for t in outcomes if isinstance(t, AsyncTask)]
        assert len(tasks) == 3
        for t in tasks:
            await t.wait(timeout=60)
        listed = [i.task_id async for i in client.list_tasks(status="COMPLETED", page_size=2)]
        assert {t.task_id for t in tasks} <= set(listed) and len(listed) == len(set(listed))
        events = [e async for e in client.stream_events(tasks[0].task_id)]
        assert [e.event for e in events][-1] == "end"
        assert any(e.event == "progress" for e in events)
        logs = await tasks[0].logs()
        assert logs and all(entry.task_id == tasks[0].task_id for entry in logs)
        with pytest.raises(TaskNotFoundError):
            await client.get_task("task_missing")
        status = await client.get_system_status()
        assert status.status in ("healthy", "degraded") and len(status.gpus) == 2
        models = await client.list_models()
        assert any(m.key == "lj" for m in models)
        upload = await client.upload_structure(cu_file.read_text(), name="cu-text", format="extxyz")
        assert upload.natoms == 4
        result = await (await client.submit_single_point(upload.file_id, model="emt")).wait(
            timeout=60
        )
        assert isinstance(result, SinglePointResult) and result.natoms == 4


@pytest.mark.asyncio
async def test_server_stopped_mid_wait_async(live_server: LiveServer, tmp_path: Path) -> None:
    """The async wait reports the outage and resumes its stream once the server is back
    (a second server on the same spool, so the module's server stays up)."""
    live = LiveServer(live_server.spool_root).start()
    back = threading.Event()
    seen: list[TaskEvent] = []

    def on_progress(ev: TaskEvent) -> None:
        seen.append(ev)
        if ev.event == "progress" and live.runner is not None and not back.is_set():
            threading.Thread(target=outage).start()

    def outage() -> None:
        live.stop()
        time.sleep(3.0)  # the server stays away this long
        live.start()
        back.set()

    try:
        async with AsyncMOFSimClient(live.url, retries=1, backoff=0.2) as client:
            path = tmp_path / "cu108.xyz"
            path.write_text(cu_xyz(3, rattle=0.05))
            task = await client.submit_optimization(
                path, model="emt", fmax=1e-30, max_steps=150, optimizer="FIRE"
            )
            result = await task.wait(timeout=120, on_progress=on_progress, poll_interval=0.5)
        assert back.is_set()
        assert isinstance(result, OptimizationResult) and result.steps == 150
        kinds = [e.event for e in seen]
        lost = kinds.index("disconnected")
        assert "reconnected" in kinds[lost:]
        assert isinstance(seen[lost].error, ServerUnavailableError)
        assert seen[-1].status == "COMPLETED" and task.status == "COMPLETED"
    finally:
        live.close()
