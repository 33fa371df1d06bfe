"""The sandbox for untrusted code: environment, scratch, user, limits, leftovers."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from executors import sandbox
from executors.sandbox import make_scratch, remove_scratch, run_sandboxed


def sandbox_pids() -> list[int]:
    """Processes of the sandbox user now (none when the user does not exist)."""
    user = sandbox.sandbox_user()
    if user is None:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == user[0]:
                    out.append(int(entry))
            except OSError:
                continue
    return out


PROBE = """
import json, os, sys, time
marks = {}
for target in sys.argv[1:]:
    try:
        with open(target, "w") as fh:
            fh.write("marker")
        marks[target] = True
    except OSError:
        marks[target] = False
if os.fork() == 0:  # a grandchild that leaves the group and would outlive us
    os.setsid()
    time.sleep(300)
    os._exit(0)
print(json.dumps({"env": dict(os.environ), "uid": os.getuid(), "cwd": os.getcwd(),
                  "marks": marks}))
"""


@pytest.mark.asyncio
async def test_untrusted_code_sees_nothing_of_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOFSIM_DATABASE_URL", "postgresql://mofsim:secret@127.0.0.1/mofsim")
    given = tmp_path / "given.txt"
    given.write_text("input")
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o777)
    outside.chmod(0o777)
    tag = f"mofsim-marker-{os.getpid()}-{time.time_ns()}"
    targets = [outside / "marker", Path("/tmp") / tag, Path("/var/tmp") / tag]
    targets += [Path("/dev/shm") / tag] if Path("/dev/shm").is_dir() else []
    scratch = make_scratch({"in/given.txt": given})
    inside = scratch / "inside-marker"
    try:
        t0 = time.monotonic()
        done = await run_sandboxed(
            [sys.executable, "-c", PROBE, str(inside), str(scratch / "in" / "given.txt")]
            + [str(t) for t in targets],
            scratch,
            timeout=120,
        )
        elapsed = time.monotonic() - t0
        assert done.returncode == 0 and not done.timed_out, done.stderr.decode()
        report = json.loads(done.stdout.decode().splitlines()[-1])
        assert inside.read_text() == "marker"  # the scratch is its to write
    finally:
        remove_scratch(scratch)
    assert report["marks"][str(inside)] is True
    assert report["marks"][str(scratch / "in" / "given.txt")] is False  # read-only copy
    assert not any(k.startswith("MOFSIM") for k in report["env"])
    assert report["env"]["HOME"] == str(scratch) and report["cwd"] == str(scratch)
    # It waited for the probe, not for the grandchild's sleep.
    assert elapsed < 100
    if os.geteuid() == 0:
        user = sandbox.sandbox_user()
        assert user is not None and report["uid"] == user[0]
        for target in targets:
            assert report["marks"][str(target)] is False, target
            assert not target.exists(), target
        assert sandbox_pids() == []
    assert not scratch.exists()


@pytest.mark.asyncio
async def test_a_sandbox_that_overruns_its_time_is_killed_whole(tmp_path: Path) -> None:
    scratch = make_scratch({})
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\ntime.sleep(300)\n"
    try:
        t0 = time.monotonic()
        done = await run_sandboxed([sys.executable, "-c", code], scratch, timeout=2)
    finally:
        remove_scratch(scratch)
    assert done.timed_out and time.monotonic() - t0 < 30
    if os.geteuid() == 0:
        assert sandbox_pids() == []


@pytest.mark.asyncio
async def test_limits_apply_inside(tmp_path: Path) -> None:
    scratch = make_scratch({})
    code = (
        "import resource, json\n"
        "print(json.dumps([resource.getrlimit(r)[0] for r in "
        "(resource.RLIMIT_CPU, resource.RLIMIT_NOFILE, resource.RLIMIT_CORE)]))"
    )
    try:
        done = await run_sandboxed(
            [sys.executable, "-c", code],
            scratch,
            timeout=60,
            limits=sandbox.Limits(cpu_seconds=7, open_files=99),
        )
    finally:
        remove_scratch(scratch)
    assert json.loads(done.stdout.decode()) == [7, 99, 0]


def test_the_sandbox_user_exists_when_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox user is made only by root")
    import pwd

    user = sandbox.sandbox_user()
    assert user is not None and pwd.getpwnam(sandbox.SANDBOX_USER).pw_uid == user[0] != 0
