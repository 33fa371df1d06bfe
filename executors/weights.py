"""Foundation weights that are not on this machine yet: a quick verdict, never a hang.

Weights that are not bundled are fetched by the model package's own download code on a
connected machine.  Before a family's loader hands over to it, it looks in the
package's cache and calls ``ensure_downloadable``, which probes the download host with
a short timeout, so that an offline machine answers ``ModelUnavailable`` in seconds
instead of hanging on socket timeouts.  Setting ``MOFSIM_OFFLINE=1`` skips the probe and
never touches the network.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from spool.errors import ModelUnavailable

if TYPE_CHECKING:
    from executors.models import ModelSpec

PROBE_TIMEOUT_S = 5.0


def probe_url(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the URL's host (or its proxy) opens within
    ``timeout``; otherwise the reason.  Runs in a thread because name resolution has no
    timeout of its own."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_parts.hostname or "", proxy_parts.port or 80
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"cannot reach {host}:{port} ({exc})")

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    if not outcome:
        return f"no answer from {host}:{port} within {timeout:.0f} s"
    return outcome[0]


def ensure_downloadable(spec: ModelSpec, url: str, place: Path, remedy: str | None = None) -> None:
    """ModelUnavailable, naming where the file belongs (or ``remedy``, what to do
    instead), unless ``url`` can be fetched."""
    if os.environ.get("MOFSIM_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        reason = "offline mode (MOFSIM_OFFLINE) is set"
    else:
        reason = probe_url(url) or ""
    if reason:
        remedy = remedy or f"place the file from {url} at {place} or upload it as a custom model"
        raise ModelUnavailable(
            f"weights for {spec.key} are not cached and cannot be downloaded: {reason}; " + remedy,
            field="model",
        )


def unavailable(spec: ModelSpec, exc: BaseException, place: Path | None) -> ModelUnavailable:
    """The error for a foundation model whose package failed to load it."""
    cause = exc.__cause__ or exc
    where = f"; place the file at {place} or upload it as a custom model" if place else ""
    return ModelUnavailable(
        f"cannot load {spec.key}: {type(cause).__name__}: {cause}{where}", field="model"
    )
