"""API keys, the authentication middleware and per-key rate limits.

Keys are random tokens ``msk_<id>_<secret>``; only a salted SHA-256 of the secret is
stored (the secret carries 256 random bits, so a slow hash would add nothing), in a JSON
file written atomically and re-read when it changes, so ``mofsim keys create`` takes
effect on a running server.  A client sends its key as ``X-API-Key: K`` or
``Authorization: Bearer K``.

Rules: with no active key and a loopback bind, every request is allowed (a local user
needs no set-up); once a key exists every route except the public ones needs one, and
routes described ``admin=True`` need an admin key.  ``caller_of`` says who a request
is for the services: a user key sees its own tasks, structures and custom models only,
an admin key and a request without keys everything.  Each key (each client address when
anonymous) has a token bucket; an empty bucket answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from mofsim_core.api_keys import KeyStore
from mofsim_core.owners import OWNER, Caller
from mofsim_http.describe import description_of
from mofsim_http.envelope import API_KEY, API_KEY_ID, error_response
from spool.errors import (
    AuthError,
    ForbiddenError,
    MofsimError,
    PayloadTooLarge,
    RateLimited,
    ValidationError,
)

# Probes and documentation answer without a key, whatever the key set.
PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/healthz",
        "/readyz",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/openapi.yaml",
        "/api/v1/health",
    }
)
PUBLIC_PREFIXES = ("/docs/",)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_of(request: web.Request) -> str | None:
    """The key a request carries; AuthError for an Authorization header that is not
    ``Bearer KEY``, or for two headers naming different keys (neither is guessed at)."""
    key = (request.headers.get("X-API-Key") or "").strip() or None
    auth = request.headers.get("Authorization")
    bearer = None
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError("malformed Authorization header: send Authorization: Bearer KEY")
        bearer = value.strip()
    if key is not None and bearer is not None and key != bearer:
        raise AuthError("X-API-Key and Authorization name different keys: send one")
    return key or bearer


def caller_of(request: web.Request) -> Caller:
    """Who is asking: the request's key, or the machine's owner when it carries none
    (which the middleware allows only while no key exists, on loopback)."""
    key = request.get(API_KEY)
    if key is None:
        return OWNER
    return Caller(key_id=str(key["id"]), admin=bool(key.get("admin")))


# --- rate limits ----------------------------------------------------------------------------


@dataclass
class TokenBuckets:
    """``rate`` tokens per second up to ``burst``, one bucket per identity."""

    rate: float
    burst: int
    max_entries: int = 10_000
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.burst > 0

    def take(self, identity: str, now: float | None = None) -> float:
        """0 when a request may pass, else the seconds until one token is back."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.get(identity, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self.buckets[identity] = (tokens - 1.0, now)
            if len(self.buckets) > self.max_entries:
                self._prune(now)
            return 0.0
        self.buckets[identity] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled: they hold no information."""
        full_after = self.burst / self.rate
        for identity, (_, last) in list(self.buckets.items()):
            if now - last >= full_after:
                del self.buckets[identity]


# --- the middleware -------------------------------------------------------------------------


def is_loopback_host(host: str | None) -> bool:
    if host is None:
        return True
    text = host.strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False  # any other host name may resolve anywhere


@dataclass
class Guard:
    """Everything the middleware needs, kept on the application."""

    keys: KeyStore
    buckets: TokenBuckets
    bound_loopback: bool
    upload_limit: int


GUARD_KEY = web.AppKey("auth_guard", Guard)


def _is_public(request: web.Request) -> bool:
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    desc = description_of(request.match_info.handler)
    return bool(desc and desc.get("public"))


def _needs_admin(request: web.Request) -> bool:
    desc = description_of(request.match_info.handler)
    return bool(desc and desc.get("admin"))


def _too_large(request: web.Request, limit: int) -> web.Response:
    response = error_response(
        request,
        PayloadTooLarge(f"request body is over the limit of {limit / 2**20:g} MB", field="body"),
    )
    response.force_close()
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[GUARD_KEY]
    public = _is_public(request)
    try:
        token = token_of(request)
    except AuthError:
        if not public:
            raise
        token = None  # health probes answer whatever else a request carries
    key = guard.keys.verify(token) if token else None
    if key is not None:
        request[API_KEY_ID] = key["id"]
        request[API_KEY] = key
    if not public:
        identity = f"key:{key['id']}" if key else f"addr:{request.remote}"
        wait = guard.buckets.take(identity)
        if wait > 0:
            exc = RateLimited(f"too many requests; retry in {math.ceil(wait)} s")
            exc.headers = {"Retry-After": str(max(1, math.ceil(wait)))}  # type: ignore[attr-defined]
            raise exc
        if key is None:
            if token is not None:
                raise AuthError("invalid or revoked API key")
            if guard.keys.has_keys() or not (
                guard.bound_loopback and is_loopback_host(request.remote)
            ):
                raise AuthError(
                    "an API key is required: send X-API-Key: KEY or "
                    "Authorization: Bearer KEY (create one with `mofsim keys "
                    "create`)"
                )
        elif _needs_admin(request) and not key["admin"]:
            raise ForbiddenError("this operation needs an admin key")
    length = request.content_length
    if length is not None and length > guard.upload_limit:
        # Refused from the header alone: the body is never read.
        return _too_large(request, guard.upload_limit)
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _too_large(request, guard.upload_limit)
    except PayloadTooLarge as exc:
        response = error_response(request, exc)
        response.force_close()
        return response


def install(
    app: web.Application,
    keys: KeyStore,
    *,
    rate: float,
    burst: int,
    bound_loopback: bool,
    upload_limit: int,
) -> None:
    """Put the guard on ``app`` (its middleware is listed in ``create_app``)."""
    app[GUARD_KEY] = Guard(keys, TokenBuckets(rate, burst), bound_loopback, upload_limit)


def check_bind(host: str, keys: KeyStore) -> None:
    """Serving beyond this machine with nobody able to authenticate is refused."""
    try:
        has_keys = keys.has_keys()
    except MofsimError:
        has_keys = False
    if not is_loopback_host(host) and not has_keys:
        raise ValidationError(
            f"refusing to serve on {host} without an API key: anyone who can reach it could "
            "submit and cancel tasks. Create one first with `mofsim keys create --admin` "
            "(same --spool), or bind to 127.0.0.1",
            field="http",
        )
