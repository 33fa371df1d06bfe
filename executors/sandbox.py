"""A process for untrusted code: an uploaded weights file is a pickle, and unpickling runs
whatever the file says.

:func:`run_sandboxed` runs a command so that what it does cannot reach the server:

- an empty environment plus what Python and the model libraries need (nothing of the
  server's own, no ``MOFSIM_*`` setting, no database password);
- a fresh scratch directory as its working directory, ``HOME`` and ``TMPDIR``; the
  files it is given are copied there, read-only;
- resource limits (CPU seconds, address space, open files, file size, processes; no
  core dumps), set before it starts;
- its own session and process group, killed whole afterwards;
- where the kernel permits it (the server runs as root): new network, PID and mount
  namespaces (``unshare`` from util-linux), so there is no network, every process it
  leaves dies with it, and every file system but the scratch directory is read-only;
  and an unprivileged user of its own (:data:`SANDBOX_USER`, created when missing), so
  that it cannot write the spool or read the server's files.  Directories above the
  interpreter that this user may not enter (``/root`` when Python was installed
  there) are replaced in its namespace by an empty one holding only the interpreter.

Without root the namespaces are tried as an unprivileged user namespace, and without
those it runs with the limits and the environment alone; a log line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pwd
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

SANDBOX_USER = "mofsim-sandbox"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
_NS_FLAGS = ["--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
_OUTPUT_CAP = 1 << 20


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 900
    address_space: int = 32 << 30  # torch maps far more than it touches
    open_files: int = 512
    file_size: int = 1 << 30
    processes: int = 512


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool


def sandbox_user() -> tuple[int, int] | None:
    """(uid, gid) of :data:`SANDBOX_USER` when running as root (created when missing
    with ``useradd --system``); None otherwise, or when it cannot be created."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        pw = pwd.getpwnam(SANDBOX_USER)
        return pw.pw_uid, pw.pw_gid
    done = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SANDBOX_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        pw = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        logger.error("cannot create the sandbox user {}: {}", SANDBOX_USER, done.stderr.strip())
        return None
    return pw.pw_uid, pw.pw_gid


@functools.cache
def _namespaces() -> list[str] | None:
    """The ``unshare`` options this kernel permits us, or None."""
    if shutil.which("unshare") is None:
        logger.warning("sandbox: no unshare (util-linux); untrusted code keeps network access")
        return None
    tries = [_NS_FLAGS] if os.geteuid() == 0 else []
    tries.append(["--user", "--map-root-user", *_NS_FLAGS])
    for flags in tries:
        probe = subprocess.run(
            ["unshare", *flags, "--", "true"], capture_output=True, check=False, timeout=30
        )
        if probe.returncode == 0:
            return flags
    logger.warning(
        "sandbox: namespaces are not permitted here; untrusted code runs with limits and "
        "an empty environment only (network reachable, leftover processes killed by group)"
    )
    return None


def _hidden_dirs(paths: list[Path]) -> dict[Path, set[str]]:
    """For each path, the first ancestor others may not enter (mode without o+x),
    with the name of the entry below it that leads to the path."""
    out: dict[Path, set[str]] = {}
    for path in paths:
        parts = path.parts
        for depth in range(1, len(parts) - 1):
            here = Path(*parts[:depth])
            with contextlib.suppress(OSError):
                if not os.stat(here).st_mode & stat.S_IXOTH:
                    out.setdefault(here, set()).add(parts[depth])
                    break
    return out


def _mount_points() -> list[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ["/"]
    # Fields escape blanks as octal (\040); longest last so parents are remounted first.
    points = {ln.split()[1].encode().decode("unicode_escape") for ln in lines if ln.split()}
    return sorted(points, key=len)


def _setup_script(scratch: Path, user: tuple[int, int], argv: list[str]) -> str:
    """Run as root inside the new mount namespace: keep the interpreter reachable,
    make everything but the scratch read-only, then become the sandbox user."""
    q = shlex.quote
    keep = scratch / ".keep"
    lines = ["set -e", f"mount --bind {q(str(scratch))} {q(str(scratch))}"]
    needed = [Path(sys.executable).resolve(), Path(sys.base_prefix).resolve(), PROJECT_ROOT]
    needed.append(Path(sys.prefix).resolve())
    for n, (hidden, names) in enumerate(sorted(_hidden_dirs(needed).items())):
        for m, name in enumerate(sorted(names)):
            park = keep / f"{n}-{m}"
            park.mkdir(parents=True)
            lines.append(f"mount --bind {q(str(hidden / name))} {q(str(park))}")
        lines.append(f"mount -t tmpfs -o mode=0755,size=64k mofsim-sandbox {q(str(hidden))}")
        for m, name in enumerate(sorted(names)):
            park, target = keep / f"{n}-{m}", hidden / name
            make = "mkdir" if (hidden / name).is_dir() else "touch"
            lines += [
                f"{make} {q(str(target))}",
                f"mount --bind {q(str(park))} {q(str(target))}",
                f"umount {q(str(park))}",
            ]
    for point in _mount_points():
        if point.startswith(("/proc", "/sys")) or Path(point) == scratch:
            continue
        lines.append(f"mount -o remount,bind,ro {q(point)} 2>/dev/null || true")
    uid, gid = user
    lines.append(
        f"exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs -- "
        + " ".join(q(a) for a in argv)
    )
    return "\n".join(lines)


def _environment(scratch: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch),
        "TMPDIR": str(scratch / "tmp"),
        "XDG_CACHE_HOME": str(scratch / "cache"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "CUDA_VISIBLE_DEVICES": "",  # the cards belong to the daemon's executors
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
    }
    env.update({k: v for k, v in extra.items() if not k.startswith("MOFSIM_")})
    return env


def _limit(limits: Limits) -> None:
    """In the child before exec (no threads, no locks: only system calls)."""
    for which, value in (
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_AS, limits.address_space),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_FSIZE, limits.file_size),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))


def make_scratch(files: Mapping[str, Path]) -> Path:
    """A fresh scratch directory holding read-only copies of ``files`` (relative name
    -> source), writable by the sandbox user only at its top and in ``tmp/``."""
    scratch = Path(tempfile.mkdtemp(prefix="mofsim-sandbox-"))
    for rel, src in files.items():
        target = scratch / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        target.chmod(0o444)
    for d in {p.parent for p in (scratch / rel for rel in files)} - {scratch}:
        while d != scratch:
            d.chmod(0o555)
            d = d.parent
    for sub in ("tmp", "cache"):
        (scratch / sub).mkdir()
    user = sandbox_user()
    if user is not None:
        for p in (scratch, scratch / "tmp", scratch / "cache"):
            os.chown(p, *user)
    scratch.chmod(0o700)
    return scratch


def remove_scratch(scratch: Path) -> None:
    for d, dirs, _ in os.walk(scratch):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(d, name), 0o700)
    shutil.rmtree(scratch, ignore_errors=True)


def sandbox_command(argv: list[str], scratch: Path) -> list[str]:
    """The command line that runs ``argv`` in the sandbox rooted at ``scratch``."""
    flags = _namespaces()
    user = sandbox_user()
    if flags is None:
        return argv
    if user is not None and "--user" not in flags:
        return ["unshare", *flags, "--", "sh", "-c", _setup_script(scratch, user, argv)]
    if user is None and os.geteuid() == 0:
        logger.warning("sandbox: no {} user; untrusted code runs as root", SANDBOX_USER)
    return ["unshare", *flags, "--", *argv]


async def _drain(stream: asyncio.StreamReader | None) -> bytes:
    data = b""
    while stream is not None and (chunk := await stream.read(1 << 16)):
        data = (data + chunk)[-_OUTPUT_CAP:]
    return data


async def _group_gone(pgid: int, within: float) -> bool:
    """Wait until no process of the group is left.  The namespace's first process exits
    only once the kernel has killed every other process in it, so an empty group means
    an empty namespace too.  There is no event to await for another's process group."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        await asyncio.sleep(0.02)
    return False


async def run_sandboxed(
    argv: list[str],
    scratch: Path,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    limits: Limits | None = None,
) -> Outcome:
    """Run ``argv`` in the sandbox (see the module's description) within ``timeout``
    seconds of wall time; every process it started is gone when this returns."""
    limits = limits or Limits(cpu_seconds=max(1, int(timeout) + 5))
    proc = await asyncio.create_subprocess_exec(
        *sandbox_command(argv, scratch),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=scratch,
        env=_environment(scratch, env or {}),
        start_new_session=True,
        preexec_fn=functools.partial(_limit, limits),
    )
    readers = asyncio.gather(_drain(proc.stdout), _drain(proc.stderr))
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        timed_out = True
    except BaseException:  # the caller went away: nothing of the sandbox stays behind
        readers.cancel()
        raise
    finally:
        # The group, and with the PID namespace every process it left, dies now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if not await _group_gone(proc.pid, 10.0):
        logger.warning("sandbox: process group {} outlived SIGKILL", proc.pid)
    try:
        # A process that left the group and the namespace-less sandbox may hold the pipes.
        out, err = await asyncio.wait_for(readers, 5.0)
    except TimeoutError:
        out, err = b"", b"(output not closed: a process of the sandbox outlived it)"
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return Outcome(code, out, err, timed_out)


def start_sandboxed(
    argv: list[str],
    scratch: Path,
    *,
    env: Mapping[str, str] | None = None,
    limits: Limits | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the sandbox with pipes to its standard input and output, for a
    process that serves requests; :func:`stop_sandboxed` ends it and all it started."""
    return subprocess.Popen(
        sandbox_command(argv, scratch),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=scratch,
        env=_environment(scratch, env or {}),
        start_new_session=True,
        preexec_fn=functools.partial(_limit, limits or Limits()),
    )


def stop_sandboxed(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process and every process it started; return once they are gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:  # as in _group_gone: no event for another's group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        time.sleep(0.02)
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
