"""An ASE calculator whose model runs in the sandbox: for uploads without a weights-only
form (a SevenNet TorchScript file, a MACE model of another class), which executors must
not unpickle themselves.

The executor keeps this calculator like any other (warm in its cache); each force call
sends the atoms to ``executors.model_host`` in the sandbox (``executors.sandbox``) and
reads back the results.  The host sees a read-only copy of the upload, a scratch
directory, no network and none of the server's environment; it dies with its executor
(its input closes) and when the calculator is closed or collected.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator, all_changes

from executors.sandbox import (
    Limits,
    make_scratch,
    remove_scratch,
    start_sandboxed,
    stop_sandboxed,
)
from spool import jsonsafe
from spool.errors import ModelUnavailable

# A force call of a large cell on a CPU can take minutes; a host that answers nothing for
# this long is stuck.
CALL_TIMEOUT_S = 3600.0
LOAD_TIMEOUT_S = 900.0
# The host is untrusted: an answer longer than forces of the largest cell is not read.
MAX_ANSWER = 256 << 20
# Threads and devices the executor was given pass on to the host.
_PASSED_ON = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SandboxedCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self, models_root: Path, model_id: str, weights: Path, device: str, dtype: str
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.model_id = model_id
        self._lock = threading.Lock()
        self._scratch: Path | None = make_scratch(
            {
                f"models/{model_id}/meta.json": Path(models_root) / model_id / "meta.json",
                f"models/{model_id}/{weights.name}": weights,
            }
        )
        argv = [sys.executable, "-B", "-s", "-m", "executors.model_host"]
        argv += ["--models-root", str(self._scratch / "models"), "--model-id", model_id]
        argv += ["--device", device, "--dtype", dtype]
        env = {k: os.environ[k] for k in _PASSED_ON if k in os.environ}
        limits = Limits(cpu_seconds=30 * 86400)
        try:
            self._proc = start_sandboxed(argv, self._scratch, env=env, limits=limits)
            ready = self._read(LOAD_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        if not ready.get("ok"):
            self.close()
            raise _unavailable(model_id, ready)

    def calculate(
        self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)  # type: ignore[no-untyped-call]
        here: Any = self.atoms
        wanted = list(properties or ["energy"])
        if "stress" in wanted and not here.cell.rank == 3:
            wanted.remove("stress")
        request = {
            "numbers": here.numbers.tolist(),
            "positions": here.positions.tolist(),
            "cell": here.cell.array.tolist(),
            "pbc": [bool(p) for p in here.pbc],
            "properties": [p for p in wanted if p in ("forces", "stress")],
        }
        with self._lock:
            stdin = self._proc.stdin
            if stdin is None or self._proc.poll() is not None:
                raise ModelUnavailable(f"the sandboxed model {self.model_id} has stopped")
            try:
                stdin.write((json.dumps(request) + "\n").encode())
                stdin.flush()
            except OSError as exc:
                raise ModelUnavailable(f"the sandboxed model {self.model_id} has stopped") from exc
            answer = self._read(CALL_TIMEOUT_S)
        if not answer.get("ok"):
            error = answer.get("error") or {}
            raise RuntimeError(f"{error.get('type', 'Error')}: {error.get('message', '')}")
        import numpy as np

        results = answer.get("results") or {}
        n = len(here)
        try:
            self.results["energy"] = self.results["free_energy"] = float(results["energy"])
            if "forces" in results:
                self.results["forces"] = np.asarray(results["forces"], dtype=float).reshape(n, 3)
            if "stress" in results:
                self.results["stress"] = np.asarray(results["stress"], dtype=float).reshape(6)
        except (KeyError, TypeError, ValueError) as exc:
            raise RuntimeError(f"the sandboxed model answered malformed results: {exc}") from exc

    def _read(self, timeout: float) -> dict[str, Any]:
        """One answer line, or a failure once the host is gone or silent for ``timeout``."""
        import select

        stdout = self._proc.stdout
        if stdout is None:
            return {"ok": False, "error": {"message": "no pipe to the sandboxed model"}}
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline(MAX_ANSWER) if ready else b""
        if not line or not line.endswith(b"\n"):
            code = self._proc.poll()
            why = "stopped" if code is not None else f"gave no answer within {timeout:g} s"
            stop_sandboxed(self._proc)
            return {"ok": False, "error": {"message": f"the sandboxed model {why}"}}
        try:
            doc = jsonsafe.loads(line)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return {"ok": False, "error": {"message": "the sandboxed model answered nonsense"}}
        return doc

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None:
            stop_sandboxed(proc)
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            remove_scratch(scratch)
            self._scratch = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _unavailable(model_id: str, doc: dict[str, Any]) -> ModelUnavailable:
    error = doc.get("error") or {}
    message = str(error.get("message") or "it did not start")
    return ModelUnavailable(
        f"custom model {model_id!r} did not load in the sandbox: {message}"[:2000], field="model"
    )
