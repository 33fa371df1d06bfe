"""An uploaded model that has no weights-only form, served from inside the sandbox.

``python -m executors.model_host --models-root DIR --model-id ID --device D --dtype T``
loads the upload (a pickle: this process runs in the sandbox of ``executors.sandbox``)
and answers force calls over its standard input and output, one JSON line each way::

    -> {"numbers": [...], "positions": [[x, y, z], ...], "cell": [[...]], "pbc": [...],
        "properties": ["energy", "forces", "stress"]}
    <- {"ok": true, "results": {"energy": e, "forces": [[...]], "stress": [...]}}
    <- {"ok": false, "error": {"type": ..., "message": ...}}

The first line it writes says whether the model loaded: ``{"ok": true, "ready": ...}``.
It exits when its input closes (the executor that started it is gone).
:class:`executors.sandboxed_calc.SandboxedCalculator` is the other end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, Any

# A request carries positions of at most this many atoms (the spool's own limit is lower).
MAX_LINE = 64 << 20


def _answer(out: IO[str], doc: dict[str, Any]) -> None:
    out.write(json.dumps(doc, allow_nan=False) + "\n")
    out.flush()


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)[:2000]}}


def serve(args: argparse.Namespace, inp: IO[str], out: IO[str]) -> int:
    from ase import Atoms

    from executors.loaders import load_calculator
    from executors.models import custom_spec

    try:
        spec = custom_spec(args.model_id, Path(args.models_root))
        calc = load_calculator(
            spec,
            device=args.device,
            dtype=args.dtype,
            models_root=Path(args.models_root),
            allow_pickle=True,
        )
    except Exception as exc:  # noqa: BLE001 - reported to the executor, which raises it
        _answer(out, _failure(exc))
        return 1
    _answer(out, {"ok": True, "ready": spec.key})
    while line := inp.readline(MAX_LINE):
        try:
            req = json.loads(line)
            atoms = Atoms(
                numbers=req["numbers"],
                positions=req["positions"],
                cell=req["cell"],
                pbc=req["pbc"],
            )
            atoms.calc = calc
            results: dict[str, Any] = {"energy": float(atoms.get_potential_energy())}
            wanted = set(req.get("properties") or [])
            if "forces" in wanted:
                results["forces"] = atoms.get_forces().tolist()
            if "stress" in wanted:
                results["stress"] = atoms.get_stress().tolist()
            _answer(out, {"ok": True, "results": results})
        except Exception as exc:  # noqa: BLE001 - one bad call, not the end of the host
            _answer(out, _failure(exc))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="executors.model_host")
    ap.add_argument("--models-root", required=True)
    ap.add_argument("--model-id", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    # The answers own stdout; model libraries print to stderr instead.
    out = sys.stdout
    sys.stdout = sys.stderr
    return serve(args, sys.stdin, out)


if __name__ == "__main__":
    sys.exit(main())
