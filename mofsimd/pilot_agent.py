"""The pilot: what a Slurm batch job runs on its allocation.

``python -m mofsimd.pilot_agent --spool DIR`` starts the same warm executor a local
slot has (``executors.worker`` through ``executor_pool.Executor``: its own process
group, ``CUDA_VISIBLE_DEVICES`` as Slurm set it, the claim lock around every run) and
relays between it and the daemon through ``pilot_channel``'s files in the shared spool.
The daemon claims tasks by rename into ``claimed/slurm:<jobid>:gpu0/`` exactly as for
a local slot and sends ``run``; replies go back line for line.  ``kill`` (a timeout or
a forced cancel) kills the executor's group, which is then started afresh; ``leave``
ends the pilot, and with it the Slurm job.

The pilot outlives the daemon: a restarted daemon adopts it.  Slurm's SIGTERM (scancel,
the time limit, preemption) ends it at once; the daemon reads the job's end from Slurm
and the stopped heartbeat, and requeues what it was running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mofsim_core.devices import Slot, SlotKind
from mofsimd import pilot_channel
from mofsimd.executor_pool import Executor, Message
from spool.limits import DEFAULT_MAX_ATOMS


class Pilot:
    def __init__(
        self,
        spool_root: Path,
        job_id: str,
        *,
        cache_size: int = 2,
        dtype: str = "float32",
        max_atoms: int = DEFAULT_MAX_ATOMS,
        large_structure_atoms: int = 2000,
        poll_s: float = 0.02,
        heartbeat_s: float = 1.0,
        abandon_after_s: float = 0.0,
    ) -> None:
        self.spool_root = spool_root
        self.job_id = job_id
        self.dir = pilot_channel.pilot_dir(spool_root, job_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pace = pilot_channel.Pace(poll_s)
        self.heartbeat_s = heartbeat_s
        # The daemon pings its pilots; one that hears nothing this long while idle takes
        # the daemon for gone for good and frees its allocation (0: never).
        self.abandon_after_s = abandon_after_s
        self.last_word = time.monotonic()
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        self.gpus = gpus if gpus and gpus not in ("NoDevFiles", "-1") else ""
        kind: SlotKind = "nvml" if self.gpus else "cpu"
        self.node = socket.gethostname()
        slot = Slot(
            pilot_channel.slot_id(job_id, kind),
            kind,
            0,
            f"{self.node} ({'GPU ' + self.gpus if self.gpus else 'CPU'})",
            self.gpus,
        )
        cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("SLURM_CPUS_ON_NODE")
        self.ex = Executor(
            slot,
            spool_root,
            cache_size=cache_size,
            dtype=dtype,
            max_atoms=max_atoms,
            large_structure_atoms=large_structure_atoms,
            threads=int(cpus) if cpus and cpus.isdigit() and kind == "cpu" else None,
            on_message=self._on_message,
            on_exit=self._on_exit,
        )
        self.current: str | None = None
        self.leaving = False
        self.done = asyncio.Event()

    # -- executor side -----------------------------------------------------------------
    def _on_message(self, ex: Executor, msg: Message) -> None:
        if msg.get("type") == "started":
            self.current = str(msg.get("task_id"))
        elif msg.get("type") == "finished":
            self.current = None
        pilot_channel.append(self.dir / pilot_channel.OUTBOX, msg)
        self.pace.touch()
        if msg.get("type") in ("ready", "finished"):
            self._heartbeat()

    def _on_exit(self, ex: Executor, code: int | None) -> None:
        self.current = None
        pilot_channel.append(self.dir / pilot_channel.OUTBOX, {"type": "exited", "code": code})
        if not self.leaving:
            asyncio.ensure_future(self.ex.start())

    # -- daemon side -------------------------------------------------------------------
    def _handle(self, cmd: dict[str, Any]) -> None:
        kind = cmd.get("type")
        if kind == "leave":
            self.leaving = True
            self.done.set()
        elif kind == "kill":
            self.ex.kill()
        elif kind in ("run", "load", "unload"):
            try:
                self.ex.send(cmd)
            except (RuntimeError, OSError):
                # The executor is gone: its exit (already relayed, or about to be) tells
                # the daemon; a run it never saw is answered so that nothing waits on it.
                if kind == "run":
                    pilot_channel.append(
                        self.dir / pilot_channel.OUTBOX,
                        {"type": "exited", "code": None, "task_id": cmd.get("task_id")},
                    )

    def _heartbeat(self) -> None:
        with contextlib.suppress(OSError):
            pilot_channel.write_heartbeat(
                self.dir,
                {
                    "job_id": self.job_id,
                    "slot_id": self.ex.slot_id,
                    "node": self.node,
                    "pid": os.getpid(),
                    "executor_pid": self.ex.proc.pid if self.ex.proc else None,
                    "ready": self.ex.ready,
                    "current": self.current,
                    "loaded": list(self.ex.loaded_models),
                    "loaded_memory_mb": dict(self.ex.loaded_memory_mb),
                    "gpus": self.gpus,
                    "leaving": self.leaving,
                },
            )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._terminated)
        # Commands from before this start were for an earlier run of the same job (Slurm
        # requeued it): the daemon sends nothing new before this pilot says it is ready.
        inbox = pilot_channel.Tail(self.dir / pilot_channel.INBOX, from_end=True)
        self._heartbeat()
        await self.ex.start()
        beat = 0.0
        while not self.done.is_set():
            for cmd in inbox.read():
                self.pace.touch()
                self.last_word = time.monotonic()
                self._handle(cmd)
            now = time.monotonic()
            quiet = now - self.last_word
            if self.abandon_after_s and self.current is None and quiet > self.abandon_after_s:
                print(
                    f"pilot {self.job_id}: no word from the daemon for {quiet:.0f} s; leaving",
                    file=sys.stderr,
                )
                self.leaving = True
                break
            if now - beat >= self.heartbeat_s:
                self._heartbeat()
                beat = now
            await asyncio.sleep(self.pace.wait())
        self._heartbeat()
        await self.ex.stop()

    def _terminated(self) -> None:
        # Slurm ends the job: the executor's group goes now, not after KillWait.
        self.leaving = True
        self.ex.kill()
        self.done.set()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mofsimd.pilot_agent")
    ap.add_argument("--spool", required=True)
    ap.add_argument("--job-id", default=os.environ.get("SLURM_JOB_ID"))
    ap.add_argument("--cache-size", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-atoms", type=int, default=DEFAULT_MAX_ATOMS)
    ap.add_argument("--large-structure-atoms", type=int, default=2000)
    ap.add_argument("--poll-s", type=float, default=0.02)
    ap.add_argument("--abandon-after-s", type=float, default=0.0)
    args = ap.parse_args(argv)
    if not args.job_id:
        print("mofsimd.pilot_agent: no SLURM_JOB_ID; run it through sbatch", file=sys.stderr)
        return 2
    pilot = Pilot(
        Path(args.spool),
        str(args.job_id),
        cache_size=args.cache_size,
        dtype=args.dtype,
        max_atoms=args.max_atoms,
        large_structure_atoms=args.large_structure_atoms,
        poll_s=args.poll_s,
        abandon_after_s=args.abandon_after_s,
    )
    asyncio.run(pilot.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
