"""When a request is tried again, shared by the sync and the async transport.

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

import random
import threading
import time

import httpx

from mofsim_client._http import Settings, retry_after_seconds
from mofsim_client.errors import (
    MOFSimError,
    ServerUnavailableError,
    error_from_response,
)

RETRY_ALWAYS = frozenset({429, 503})
RETRY_IDEMPOTENT = frozenset({502, 504})


class Retrier:
    """Decides, after each attempt, whether and how long to wait before the next."""

    def __init__(self, settings: Settings, gate: Gate, idempotent: bool) -> None:
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


class Gate:
    """A shared 'not before' time: set by a 429, honoured by every request."""

    def __init__(self) -> None:
        self.not_before = 0.0
        self._lock = threading.Lock()

    def close_for(self, seconds: float) -> None:
        with self._lock:
            self.not_before = max(self.not_before, time.monotonic() + seconds)

    def wait_s(self) -> float:
        return max(0.0, self.not_before - time.monotonic())


def is_idempotent(method: str, idempotent: bool | None) -> bool:
    return method.upper() in ("GET", "HEAD", "OPTIONS") if idempotent is None else idempotent
