"""Handlers describe themselves for the OpenAPI document.

``@describe(...)`` stores the operation's summary, tags, JSON Schemas of its request
body and query, and its responses on the handler; the OpenAPI builder walks the router
and reads them, so the document is generated from the same schemas the handlers
validate with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
Schema = dict[str, Any]


def describe(
    *,
    summary: str,
    tags: list[str] | None = None,
    body: Schema | Callable[[], Schema] | None = None,
    query: Schema | Callable[[], Schema] | None = None,
    responses: dict[int, str] | None = None,
    content_type: str = "application/json",
    admin: bool = False,
    public: bool = False,
    sse: bool = False,
    body_optional: bool = False,
) -> Callable[[F], F]:
    """``body``/``query``: JSON Schemas (``{"type": "object", "properties": ...}``), or
    functions returning them where they depend on what is installed (the model
    families), called each time a document is built.
    ``public``: no API key needed; ``admin``: needs an admin key; ``sse``: answers
    ``text/event-stream``; ``body_optional``: an empty body stands for ``{}``."""

    def mark(fn: F) -> F:
        fn.__openapi__ = {  # type: ignore[attr-defined]
            "summary": summary,
            "tags": tags or [],
            "body": body,
            "query": query,
            "responses": responses or {},
            "content_type": content_type,
            "admin": admin,
            "public": public,
            "sse": sse,
            "body_optional": body_optional,
            "description": (fn.__doc__ or "").strip(),
        }
        return fn

    return mark


def description_of(handler: Any) -> dict[str, Any] | None:
    return getattr(handler, "__openapi__", None)
