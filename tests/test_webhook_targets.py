"""Which webhook receivers a server refuses, and what its configuration allows."""

from __future__ import annotations

import pytest

from mofsim_core.task_options import validate_options
from mofsim_core.webhook_targets import TargetPolicy
from spool.errors import ValidationError
from spool.limits import Limits

REFUSED = [
    "http://127.0.0.1:8000/hook",
    "http://127.8.9.10/",
    "http://localhost:5432/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/h",
    "http://172.20.0.1/h",
    "http://192.168.1.1/h",
    "http://100.64.0.1/h",  # shared address space (carrier-grade NAT)
    "http://0.0.0.0:8000/",
    "http://224.0.0.1/",
    "http://[::1]:8000/",
    "http://[fe80::1%25eth0]/",
    "http://[fd00::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::]/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_internal_addresses_are_refused_by_default(url: str) -> None:
    with pytest.raises(ValidationError) as e:
        TargetPolicy().check(url)
    assert e.value.field == "options.notify_url"
    assert TargetPolicy(allow_private=True).check(url) is None


def test_public_and_unresolvable_hosts_pass() -> None:
    TargetPolicy().check("https://8.8.8.8/hook")
    TargetPolicy().check("https://[2606:4700:4700::1111]/hook")
    # A name that resolves to nothing now reaches nothing; the delivery checks it again.
    TargetPolicy().check("https://no-such-host.invalid/hook")


def test_allowed_networks_open_exactly_those() -> None:
    policy = TargetPolicy(allowed_networks=("10.20.0.0/16", "::1/128"))
    policy.check("http://10.20.3.4/h")
    policy.check("http://[::1]/h")
    for url in ("http://10.21.0.1/h", "http://127.0.0.1/h"):
        with pytest.raises(ValidationError):
            policy.check(url)


def test_submission_options_use_the_configured_policy() -> None:
    options = {"notify_url": "http://192.168.0.5:9000/done"}
    with pytest.raises(ValidationError) as e:
        validate_options(dict(options))
    assert e.value.field == "options.notify_url" and "private" in e.value.message
    allowed = Limits(webhook_allowed_networks=("192.168.0.0/24",))
    assert validate_options(dict(options), allowed)["notify_url"] == options["notify_url"]


def test_the_connection_itself_goes_only_to_permitted_addresses() -> None:
    """A name that passed the check and then answers with a loopback address (DNS
    rebinding) gets no connection: the transport resolves and checks when it connects."""
    import http.server
    import threading

    import httpx

    from mofsim_core.webhook_targets import pinned_transport

    hits: list[str] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        strict = httpx.Client(transport=pinned_transport(TargetPolicy()), timeout=5)
        for host in ("localhost", "127.0.0.1"):
            with pytest.raises(ValidationError, match="resolves to"):
                strict.post(f"http://{host}:{port}/hook", content=b"{}")
        assert hits == []
        open_ = httpx.Client(transport=pinned_transport(TargetPolicy(allow_private=True)))
        assert open_.post(f"http://localhost:{port}/hook", content=b"{}").status_code == 204
        allowed = TargetPolicy(allowed_networks=("127.0.0.0/8",))
        listed = httpx.Client(transport=pinned_transport(allowed))
        assert listed.post(f"http://127.0.0.1:{port}/x", content=b"{}").status_code == 204
        assert hits == ["/hook", "/x"]
        with pytest.raises(httpx.ConnectError):
            strict.post("http://no-such-host.invalid/hook", content=b"{}")
        for client in (strict, open_, listed):
            client.close()
    finally:
        server.shutdown()
        server.server_close()
