"""The one reader of JSON request bodies (and JSON-valued form fields).

Every handler goes through here, so that no body can reach Python's recursive parser
unbounded: nesting deeper than the spool's limit, ``1e400``, ``NaN`` and bad UTF-8 all
answer 400 (40001) naming the body, never 500.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from spool import jsonsafe
from spool.errors import ValidationError


def parse_json(raw: str | bytes, *, field: str = "body") -> Any:
    """Parse untrusted JSON text; a ``ValidationError`` on ``field`` when it is not."""
    try:
        return jsonsafe.loads(raw)
    except ValueError as exc:  # also UnicodeDecodeError and too deep a nesting
        raise ValidationError(f"the {field} is not valid JSON: {exc}", field=field) from None


async def read_json(request: web.Request, *, allow_empty: bool = False) -> Any:
    """The JSON body, or a 40001 naming what is wrong with it.  An empty body is ``{}``
    when ``allow_empty``."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise ValidationError("a JSON body is required", field="body")
    return parse_json(raw)


async def read_json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """``read_json`` that insists on an object."""
    body = await read_json(request, allow_empty=allow_empty)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", field="body")
    return body
