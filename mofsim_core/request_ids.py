"""The id of the API request being served, for whatever the core does on its behalf.

The HTTP server sets it for each request (a client's own ``X-Request-ID`` when it is a
sane token, else a new id); the core reads it where a request leaves a trace beyond
its answer: a submitted job keeps it (and with it the task's log lines, its record and
its webhooks), an audit record names it.  The request pool copies context variables
into its threads, so the blocking core functions see the id of the request they serve.
Outside a request (the CLI, the daemon) it is None.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token

from spool.job import safe_request_id

_CURRENT: ContextVar[str | None] = ContextVar("mofsim_request_id", default=None)


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:16]


def accept_request_id(header: str | None) -> str:
    """A client's X-Request-ID when it is a token of at most 128 characters (letters,
    digits and ``_.:/+=-``), else a new id."""
    return safe_request_id(header) or new_request_id()


def current_request_id() -> str | None:
    return _CURRENT.get()


def bind_request_id(request_id: str | None) -> Token[str | None]:
    return _CURRENT.set(request_id)


def unbind_request_id(token: Token[str | None]) -> None:
    _CURRENT.reset(token)
