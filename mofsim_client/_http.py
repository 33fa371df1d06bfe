"""The API's conventions, shared by the sync and the async client: where the server is and
how a request presents itself (``Settings``), the ``/api/v1`` paths, and the envelope
every answer comes in (its ``data``, or the error its code maps to).

Sending requests, retrying them and streaming answers are ``_transport.py`` and
``_retry.py``; both read their settings from here.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from mofsim_client.errors import error_from_response

DEFAULT_SERVER = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
# The SDK's release (``mofsim_client.__version__``): that of the server it ships with.
VERSION = "0.1.0"
USER_AGENT = f"mofsim-client/{VERSION}"


@dataclass
class Settings:
    """Everything a transport needs; both clients build one from their arguments."""

    base_url: str = DEFAULT_SERVER
    api_key: str | None = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    backoff_max: float = 10.0
    # Total seconds one request may spend waiting out 429/503 Retry-After answers.
    retry_after_budget: float = 300.0
    # An SSE stream sends a heartbeat at least every 15 s; silence this long is a
    # dead connection.
    stream_read_timeout: float = 60.0
    verify: bool | str = True
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        **kw: Any,
    ) -> Settings:
        """Arguments first, then ``MOFSIM_SERVER`` / ``MOFSIM_API_KEY``, then defaults."""
        url = base_url or os.environ.get("MOFSIM_SERVER") or DEFAULT_SERVER
        key = api_key if api_key is not None else (os.environ.get("MOFSIM_API_KEY") or None)
        out = cls(base_url=normalize_base_url(url), api_key=key, **kw)
        if timeout is not None:
            out.timeout = float(timeout)
        if retries is not None:
            out.retries = max(0, int(retries))
        return out

    def request_headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **self.headers}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers


def normalize_base_url(url: str) -> str:
    """``host:8000``, ``http://host:8000/`` and ``http://host:8000/api/v1`` all mean the
    server's root."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    return url


def api_path(path: str) -> str:
    """``tasks/ID`` is under ``/api/v1``; an absolute path (``/health``, a file URL from a
    result) or a full URL is used as it is."""
    if path.startswith(("/", "http://", "https://")):
        return path
    return f"{API_PREFIX}/{path}"


def retry_after_seconds(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def decode(response: httpx.Response) -> Any:
    """The ``data`` of an envelope (the body itself when it is not one); an error
    answer becomes the exception for its code."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    failed = response.status_code >= 400 or (
        isinstance(body, dict) and body.get("success") is False
    )
    if failed:
        raise error_from_response(
            response.status_code,
            body,
            request_id=response.headers.get("X-Request-ID"),
            retry_after=retry_after_seconds(response),
        )
    if isinstance(body, dict) and "success" in body and "data" in body:
        return body["data"]
    return body


def raise_for_error(response: httpx.Response, body: bytes | None = None) -> None:
    """For streamed answers: raise the mapped error of a non-2xx response."""
    if response.status_code < 400:
        return
    try:
        parsed: Any = json.loads(body or b"")
    except ValueError:
        parsed = (body or b"").decode("utf-8", "replace")
    raise error_from_response(
        response.status_code,
        parsed,
        request_id=response.headers.get("X-Request-ID"),
        retry_after=retry_after_seconds(response),
    )
