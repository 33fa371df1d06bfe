"""Malicious checkpoints of every framework an upload accepts, validated through the HTTP
API: whatever their unpickling does stays in the sandbox's scratch directory."""

from __future__ import annotations

import io
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from executors.models import custom_frameworks, resolve_model
from executors.verdicts import read_verdict
from mofsim_core.config import Config
from mofsim_http.app import create_app
from tests.model_factories import LJ_CONFIG
from tests.test_sandbox import sandbox_pids

Client = TestClient[Any, Any]
# (framework, file name) for every extension the upload accepts
CASES = [(fw, "evil" + ext) for fw, exts in sorted(custom_frameworks().items()) for ext in exts]

# Runs while the weights are unpickled: writes markers, forks a grandchild that leaves
# the group, tries the network, then reports what it saw in the loader's error.
PAYLOAD = """
import json, os, socket, time
seen = {"uid": os.getuid(), "env": sorted(os.environ), "wrote": {}}
for target in TARGETS + [os.path.join(os.getcwd(), "inside")]:
    try:
        with open(target, "w") as fh:
            fh.write("marker")
        seen["wrote"][target] = True
    except OSError:
        seen["wrote"][target] = False
os.system("touch " + SYSTEM_TARGET + " 2>/dev/null")
if os.fork() == 0:
    os.setsid()
    time.sleep(300)
    os._exit(0)
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
    seen["network"] = True
except OSError:
    seen["network"] = False
raise RuntimeError("SANDBOX-REPORT " + json.dumps(seen) + " END")
"""


class Evil:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


@pytest_asyncio.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    monkeypatch.setenv("MOFSIM_DATABASE_URL", "postgresql://mofsim:secret@127.0.0.1/mofsim")
    config = Config(spool=str(tmp_path / "spool"), slots="cpu:1", http_rate_limit=0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


def _report(message: str) -> dict[str, Any] | None:
    start = message.find("SANDBOX-REPORT ")
    if start < 0:
        return None
    doc, _ = json.JSONDecoder().raw_decode(message[start + len("SANDBOX-REPORT ") :])
    return doc if isinstance(doc, dict) else None


@pytest.mark.asyncio
@pytest.mark.parametrize(("framework", "filename"), CASES)
async def test_a_malicious_checkpoint_stays_in_the_sandbox(
    client: Client, tmp_path: Path, listener: socket.socket, framework: str, filename: str
) -> None:
    import torch

    spool = tmp_path / "spool"
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    tag = f"mofsim-marker-{os.getpid()}-{time.time_ns()}"
    targets = [
        str(outside / "marker"),
        str(spool / "state" / "marker"),
        str(spool / "models" / "marker"),
        f"/tmp/{tag}",
        f"/var/tmp/{tag}",
    ]
    code = (
        f"TARGETS = {targets!r}\nSYSTEM_TARGET = {f'/tmp/{tag}-system'!r}\n"
        f"PORT = {listener.getsockname()[1]}\n" + PAYLOAD
    )
    buf = io.BytesIO()
    torch.save(Evil(code), buf)
    form = FormData()
    form.add_field("file", buf.getvalue(), filename=filename)
    form.add_field("framework", framework)
    form.add_field("name", "evil")
    if framework == "pytorch":  # its upload needs an interface
        form.add_field("config", json.dumps(LJ_CONFIG))
    resp = await client.post("/api/v1/models/custom", data=form)
    assert resp.status == 201, await resp.text()
    mid = (await resp.json())["data"]["model_id"]
    meta_before = (spool / "models" / mid / "meta.json").read_bytes()

    resp = await client.post(f"/api/v1/models/custom/{mid}/validate")
    assert resp.status == 200, await resp.text()
    outcome = (await resp.json())["data"]
    assert outcome["valid"] is False
    report = _report(str((outcome["validation"].get("error") or {}).get("message", "")))
    # MACE and SevenNet unpickle whole objects, so the payload runs; ORB loads state
    # dicts weights-only and PyTorch reads TorchScript archives only: both refuse it
    # before it runs.
    assert (report is not None) == (framework not in ("orb", "pytorch")), outcome["validation"]
    if report is not None:  # the loader unpickled it: the payload ran, confined
        assert not [k for k in report["env"] if k.startswith("MOFSIM")]
        inside = [t for t, wrote in report["wrote"].items() if t not in targets]
        assert len(inside) == 1 and report["wrote"][inside[0]] is True  # its scratch
        if os.geteuid() == 0:
            assert report["uid"] != 0 and report["network"] is False
            assert not any(report["wrote"][t] for t in targets)
    for target in [*targets, f"/tmp/{tag}-system"]:
        assert not Path(target).exists(), target
    assert (spool / "models" / mid / "meta.json").read_bytes() == meta_before
    verdict = read_verdict(spool / "models", mid)
    assert verdict is not None and verdict["valid"] is False
    if os.geteuid() == 0:
        assert sandbox_pids() == []
    resp = await client.post(f"/api/v1/models/custom:{mid}/load")
    assert resp.status == 409
    from executors.models import check_usable
    from spool.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable):
        check_usable(resolve_model(f"custom:{mid}", spool / "models"))


def test_every_framework_is_tried() -> None:
    assert {fw for fw, _ in CASES} >= {"mace", "sevennet", "orb", "pytorch"}


# Runs while the weights are unpickled in the sandbox: it writes a "safe form" of its own
# (a configuration and a state file that is itself a malicious pickle), then claims a
# passing validation and exits 0 before the validator can say otherwise.
LIAR = """
import base64, json, os
out = os.path.join(os.getcwd(), "converted")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "config.json"), "w") as fh:
    json.dump(CONFIG, fh)
with open(os.path.join(out, "state.pt"), "wb") as fh:
    fh.write(base64.b64decode(STATE))
os.write(1, (json.dumps({"ok": True, "safe_form": {"written": True}}) + "\\n").encode())
os._exit(0)
"""


@pytest.mark.asyncio
@pytest.mark.parametrize("framework", ["mace", "sevennet"])
@pytest.mark.parametrize("config_ref", [None, "os.system"], ids=["evil-state", "evil-ref"])
async def test_a_checkpoint_that_fakes_its_validation_still_runs_no_code(
    client: Client, tmp_path: Path, framework: str, config_ref: str | None
) -> None:
    import base64

    import torch

    from executors.loaders import load_calculator
    from executors.models import check_usable
    from spool.errors import ModelUnavailable

    marker = tmp_path / "outside" / "marker"
    marker.parent.mkdir()
    state = io.BytesIO()
    torch.save(Evil(f"open({str(marker)!r}, 'w').write('ran')"), state)
    kind = "ScaleShiftMACE" if framework == "mace" else "checkpoint"
    body: dict[str, Any] = {"r_max": 4.0}
    if config_ref:
        body["gate"] = {"$ref": config_ref}
    config = {"format": 1, "family": framework, "kind": kind, "config": body}
    code = f"CONFIG = {config!r}\nSTATE = {base64.b64encode(state.getvalue())!r}\n" + LIAR
    upload = io.BytesIO()
    torch.save(Evil(code), upload)
    form = FormData()
    form.add_field("file", upload.getvalue(), filename="liar.pt")
    form.add_field("framework", framework)
    form.add_field("name", "liar")
    resp = await client.post("/api/v1/models/custom", data=form)
    assert resp.status == 201, await resp.text()
    mid = (await resp.json())["data"]["model_id"]
    resp = await client.post(f"/api/v1/models/custom/{mid}/validate")
    assert resp.status == 200, await resp.text()
    # The sandbox's word is all the server has of the validation, and it lied...
    assert (await resp.json())["data"]["valid"] is True
    models = tmp_path / "spool" / "models"
    spec = resolve_model(f"custom:{mid}", models)
    check_usable(spec)
    # ...but what it left is read as data: no executor load runs its code.
    with pytest.raises(ModelUnavailable, match="converted model"):
        load_calculator(spec, models_root=models)
    assert not marker.exists()
