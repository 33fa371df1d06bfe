"""Requests, retries and the envelope, shared by the sync and the async client.

The retry rules are one pure function (``Retrier.decide``); the two transports only loop
around it with ``time.sleep`` or ``asyncio.sleep``:

- 429 and 503 mean the server did not take the request (rate limit, full queue, not
  ready): retried for every method, waiting ``Retry-After`` when the server sends it.
  While one request waits out a 429, the others of the same client wait too, so a
  client with many tasks in flight does not hammer a server that asked for a pause.
- A connection that could not be opened: the request was never sent, so it is retried
  for every method.  A connection lost after the request went out: retried only for
  idempotent requests (GET, cancel, and submissions, which carry a client-made task id).
- 502/504 from a proxy: retried for idempotent requests.
- Backoff is exponential with jitter; after the last attempt the error is raised
  (``ServerUnavailableError`` when the server could not be reached at all).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from mofsim_client.errors import (
    MOFSimError,
    ServerUnavailableError,
    error_from_response,
)

DEFAULT_SERVER = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
# The SDK's release (``mofsim_client.__version__``): that of the server it ships with.
VERSION = "0.1.0"
USER_AGENT = f"mofsim-client/{VERSION}"
RETRY_ALWAYS = frozenset({429, 503})
RETRY_IDEMPOTENT = frozenset({502, 504})


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


class Retrier:
    """Decides, after each attempt, whether and how long to wait before the next."""

    def __init__(self, settings: Settings, gate: _Gate, idempotent: bool) -> None:
        self.settings = settings
        self.gate = gate
        self.idempotent = idempotent
        self.attempt = 0
        self.waited_for_server = 0.0

    def backoff(self) -> float:
        base = min(self.settings.backoff_max, self.settings.backoff * 2.0**self.attempt)
        return base * (0.5 + random.random() / 2)

    def decide_response(self, response: httpx.Response) -> float | None:
        status = response.status_code
        if status in RETRY_ALWAYS:
            hint = retry_after_seconds(response)
            if hint is not None:
                # The server asked for a pause: not a failure, so it does not use up
                # attempts, only the time budget.
                hint = max(hint, 0.05)
                if self.waited_for_server + hint > self.settings.retry_after_budget:
                    return None
                self.waited_for_server += hint
                if status == 429:
                    # Every request of this client waits at the gate, this one included.
                    self.gate.close_for(hint)
                    return 0.0
                return hint
            return self._next()
        if status in RETRY_IDEMPOTENT and self.idempotent:
            return self._next()
        return None

    def decide_exception(self, exc: httpx.TransportError) -> float | None:
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if never_sent or self.idempotent:
            return self._next()
        return None

    def _next(self) -> float | None:
        if self.attempt >= self.settings.retries:
            return None
        delay = self.backoff()
        self.attempt += 1
        return delay

    def final_error(self, exc: httpx.TransportError, method: str, url: str) -> MOFSimError:
        sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        what = type(exc).__name__
        text = str(exc) or what
        message = (
            f"cannot reach the MOFSim server at {self.settings.base_url} "
            f"({what}: {text}) after {self.attempt + 1} attempt(s)"
        )
        if sent and not self.idempotent:
            message += f"; the {method} may or may not have been processed"
        return ServerUnavailableError(message, detail=f"{method} {url}: {text}")


def final_status_error(response: httpx.Response) -> MOFSimError:
    """A retryable status that stayed after the last retry."""
    try:
        return error_from_response(
            response.status_code,
            response.json(),
            request_id=response.headers.get("X-Request-ID"),
            retry_after=retry_after_seconds(response),
        )
    except ValueError:
        if response.status_code in (502, 503, 504):
            return ServerUnavailableError(
                f"the server answered HTTP {response.status_code} without an API envelope "
                "(a proxy in front of a stopped server?)",
                http_status=response.status_code,
                body=response.text[:500],
            )
        return error_from_response(response.status_code, response.text)


class _Gate:
    """A shared 'not before' time: set by a 429, honoured by every request."""

    def __init__(self) -> None:
        self.not_before = 0.0
        self._lock = threading.Lock()

    def close_for(self, seconds: float) -> None:
        with self._lock:
            self.not_before = max(self.not_before, time.monotonic() + seconds)

    def wait_s(self) -> float:
        return max(0.0, self.not_before - time.monotonic())


def _idempotent(method: str, idempotent: bool | None) -> bool:
    return method.upper() in ("GET", "HEAD", "OPTIONS") if idempotent is None else idempotent


class SyncTransport:
    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.gate = _Gate()
        self.http = httpx.Client(
            base_url=settings.base_url,
            timeout=settings.timeout,
            headers=settings.request_headers(),
            verify=settings.verify,
            transport=transport,
        )

    def request(self, method: str, path: str, *, idempotent: bool | None = None, **kw: Any) -> Any:
        return decode(self.send(method, path, idempotent=idempotent, **kw))

    def send(
        self, method: str, path: str, *, idempotent: bool | None = None, **kw: Any
    ) -> httpx.Response:
        url = api_path(path)
        retrier = Retrier(self.settings, self.gate, _idempotent(method, idempotent))
        while True:
            time.sleep(self.gate.wait_s())
            try:
                response = self.http.request(method, url, **kw)
            except httpx.TransportError as exc:
                delay = retrier.decide_exception(exc)
                if delay is None:
                    raise retrier.final_error(exc, method, url) from exc
                time.sleep(delay)
                continue
            delay = retrier.decide_response(response)
            if delay is None:
                if response.status_code in RETRY_ALWAYS | RETRY_IDEMPOTENT:
                    raise final_status_error(response)
                return response
            time.sleep(delay)

    @contextmanager
    def stream(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> Iterator[httpx.Response]:
        """An open streaming GET (connect retried like any GET); non-2xx raises."""
        url = api_path(path)
        retrier = Retrier(self.settings, self.gate, True)
        timeout = httpx.Timeout(
            self.settings.timeout, read=read_timeout or self.settings.stream_read_timeout
        )
        while True:
            time.sleep(self.gate.wait_s())
            request = self.http.build_request(
                "GET", url, params=params, headers=headers, timeout=timeout
            )
            try:
                response = self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                delay = retrier.decide_exception(exc)
                if delay is None:
                    raise retrier.final_error(exc, "GET", url) from exc
                time.sleep(delay)
                continue
            if response.status_code < 400:
                break
            try:
                body = response.read()
            finally:
                response.close()
            delay = retrier.decide_response(response)
            if delay is None:
                raise_for_error(response, body)
            time.sleep(delay or 0.0)
        try:
            yield response
        finally:
            response.close()

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.gate = _Gate()
        # Every waiting task holds an event stream open: no cap on connections.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self.http = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=settings.timeout,
            headers=settings.request_headers(),
            verify=settings.verify,
            transport=transport,
            limits=limits,
        )

    async def request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kw: Any
    ) -> Any:
        return decode(await self.send(method, path, idempotent=idempotent, **kw))

    async def send(
        self, method: str, path: str, *, idempotent: bool | None = None, **kw: Any
    ) -> httpx.Response:
        url = api_path(path)
        retrier = Retrier(self.settings, self.gate, _idempotent(method, idempotent))
        while True:
            await asyncio.sleep(self.gate.wait_s())
            try:
                response = await self.http.request(method, url, **kw)
            except httpx.TransportError as exc:
                delay = retrier.decide_exception(exc)
                if delay is None:
                    raise retrier.final_error(exc, method, url) from exc
                await asyncio.sleep(delay)
                continue
            delay = retrier.decide_response(response)
            if delay is None:
                if response.status_code in RETRY_ALWAYS | RETRY_IDEMPOTENT:
                    raise final_status_error(response)
                return response
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        url = api_path(path)
        retrier = Retrier(self.settings, self.gate, True)
        timeout = httpx.Timeout(
            self.settings.timeout, read=read_timeout or self.settings.stream_read_timeout
        )
        while True:
            await asyncio.sleep(self.gate.wait_s())
            request = self.http.build_request(
                "GET", url, params=params, headers=headers, timeout=timeout
            )
            try:
                response = await self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                delay = retrier.decide_exception(exc)
                if delay is None:
                    raise retrier.final_error(exc, "GET", url) from exc
                await asyncio.sleep(delay)
                continue
            if response.status_code < 400:
                break
            try:
                body = await response.aread()
            finally:
                await response.aclose()
            delay = retrier.decide_response(response)
            if delay is None:
                raise_for_error(response, body)
            await asyncio.sleep(delay or 0.0)
        try:
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
