"""Webhooks against a real local HTTP receiver: signatures, retries, one id per delivery."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mofsim_core.webhook_targets import TargetPolicy
from mofsim_core.webhooks import (
    Subscription,
    WebhookDispatcher,
    deliveries,
    read_totals,
    sign,
    validate_options,
    verify,
)
from spool.errors import ValidationError


class Receiver:
    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.got = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                failing = len(outer.requests) <= outer.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()
                if not failing:
                    outer.got.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()


# The receivers here listen on loopback, which a server refuses unless its configuration
# allows it: one test allows the receiver's network, the others every internal address.
LOOPBACK_NET = TargetPolicy(allowed_networks=("127.0.0.0/8",))
ANY_INTERNAL = TargetPolicy(allow_private=True)

RECORD = {
    "task_id": "task_abc",
    "status": "COMPLETED",
    "error": None,
    "progress": 1.0,
    "result": {"duration_seconds": 3.5, "result": {"converged": True, "final_energy_eV": -12.5}},
}


def test_failing_twice_then_accepted_is_retried_signed_and_recorded(
    tmp_path: Path, receiver: Receiver
) -> None:
    d = WebhookDispatcher(tmp_path, targets=LOOPBACK_NET)
    d.start()
    try:
        sub = Subscription(receiver.url, secret="s3cret", retry_times=3, retry_interval_s=0.05)
        delivery = d.notify("task_abc", "task.completed", RECORD, sub)
        assert delivery is not None
        assert receiver.got.wait(10)
        assert d.wait_idle(10)
    finally:
        d.stop()
    assert len(receiver.requests) == 3
    ids = {h["X-MOFSim-Delivery"] for h, _ in receiver.requests}
    assert ids == {delivery.delivery_id}  # one id, stable across retries
    headers, body = receiver.requests[-1]
    assert headers["X-MOFSim-Event"] == "task.completed"
    assert verify("s3cret", body, headers["X-MOFSim-Signature"])
    assert not verify("wrong", body, headers["X-MOFSim-Signature"])
    payload = json.loads(body)
    assert payload["event"] == "task.completed" and payload["status"] == "COMPLETED"
    assert payload["summary"]["converged"] is True
    assert payload["summary"]["final_energy_eV"] == -12.5
    assert payload["result_url"] == "/api/v1/tasks/task_abc/result"
    attempts = deliveries(tmp_path, "task_abc")
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert attempts[-1]["final"] is True
    assert read_totals(tmp_path) == {"task.completed": {"delivered": 1, "retrying": 2, "failed": 0}}


def test_totals_survive_a_restart(tmp_path: Path) -> None:
    """A port nobody listens on: each attempt fails; a second dispatcher on the same
    directory goes on counting where the first stopped."""
    closed = Receiver(fail_first=0)
    url = closed.url
    closed.close()
    for _ in range(2):
        d = WebhookDispatcher(tmp_path, targets=ANY_INTERNAL)
        d.start()
        try:
            d.notify(
                "task_x",
                "task.failed",
                {**RECORD, "status": "FAILED"},
                Subscription(url, retry_times=0, retry_interval_s=0.01),
            )
            assert d.wait_idle(10)
        finally:
            d.stop()
    assert read_totals(tmp_path)["task.failed"]["failed"] == 2


def test_gives_up_after_retry_times_and_skips_unsubscribed_events(tmp_path: Path) -> None:
    r = Receiver(fail_first=100)
    d = WebhookDispatcher(tmp_path, targets=ANY_INTERNAL)
    d.start()
    try:
        sub = Subscription(r.url, retry_times=1, retry_interval_s=0.01)
        assert d.notify("t2", "task.started", RECORD, sub) is None  # not subscribed
        d.notify("t2", "task.failed", RECORD | {"status": "FAILED"}, sub)
        assert d.wait_idle(10)
    finally:
        d.stop()
        r.close()
    attempts = deliveries(tmp_path, "t2")
    assert len(attempts) == 2 and not any(a["ok"] for a in attempts)
    assert attempts[-1]["final"] is True


def test_unreachable_receiver_is_a_failed_attempt_not_a_crash(tmp_path: Path) -> None:
    d = WebhookDispatcher(tmp_path, timeout_s=1, targets=ANY_INTERNAL)
    d.start()
    try:
        d.notify(
            "t3",
            "task.completed",
            RECORD,
            Subscription("http://127.0.0.1:9/nothing", retry_times=0),
        )
        assert d.wait_idle(10)
    finally:
        d.stop()
    (attempt,) = deliveries(tmp_path, "t3")
    assert attempt["ok"] is False and attempt["error"]


def test_signature_format_and_option_validation() -> None:
    header = sign("k", b"{}", 1700000000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert not verify("k", b"{}", header)  # too old
    assert verify("k", b"{}", header, now=1700000010)
    validate_options({"notify_url": "https://x.example/h", "notify_events": ["task.failed"]})
    with pytest.raises(ValidationError) as e:
        validate_options({"notify_url": "ftp://x"})
    assert e.value.field == "options.notify_url"
    with pytest.raises(ValidationError) as e:
        validate_options({"notify_url": "http://x", "notify_events": ["task.exploded"]})
    assert e.value.field == "options.notify_events"


def test_internal_receivers_are_refused_at_delivery_unless_allowed(
    tmp_path: Path, receiver: Receiver
) -> None:
    """By default nothing is sent to loopback, named or not (``localhost`` is resolved
    before each attempt); the refusal is recorded once, with its reason, and not retried."""
    named = receiver.url.replace("127.0.0.1", "localhost")
    d = WebhookDispatcher(tmp_path)
    d.start()
    try:
        for task, url in (("t_ip", receiver.url), ("t_name", named)):
            d.notify(task, "task.completed", RECORD, Subscription(url, retry_times=3))
        assert d.wait_idle(10)
    finally:
        d.stop()
    assert receiver.requests == []
    for task in ("t_ip", "t_name"):
        (attempt,) = deliveries(tmp_path, task)
        assert attempt["ok"] is False and attempt["final"] is True
        assert attempt["error"].startswith("refused: ") and "loopback" in attempt["error"]
