"""The two transports, ``SyncTransport`` and ``AsyncTransport``: one ``httpx`` client
each, and the same loop around ``Retrier`` for plain requests and for streaming GETs,
waiting with ``time.sleep`` or ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from mofsim_client._http import Settings, api_path, decode, raise_for_error
from mofsim_client._retry import (
    RETRY_ALWAYS,
    RETRY_IDEMPOTENT,
    Gate,
    Retrier,
    final_status_error,
    is_idempotent,
)


class SyncTransport:
    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.gate = Gate()
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
        retrier = Retrier(self.settings, self.gate, is_idempotent(method, idempotent))
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
        self.gate = Gate()
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
        retrier = Retrier(self.settings, self.gate, is_idempotent(method, idempotent))
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
