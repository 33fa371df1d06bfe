"""Pagination of every ``/api/v1`` list: ``page``/``page_size`` or ``skip``/``limit``
(``offset`` too) in, ``data: {items, pagination: {page, page_size, total, total_pages}}``
out.

The query is read and the ``pagination`` object built by ``task_records.page_args`` and
``task_records.pagination``, the same functions ``/tasks`` pages with; this module adds
what the other lists need: the query's JSON Schema, the answer's schema, and the page of
a list already held in memory.  Catalogues (models, built-in structures, keys, rules)
answer everything on one page unless asked to page, so that a client reading ``items``
alone still sees the whole catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mofsim_core.task_records import MAX_PAGE, page_args, pagination

# A catalogue's default page: all of it, in practice.
CATALOGUE_PAGE = MAX_PAGE


def page_properties(max_size: int = MAX_PAGE, default_size: int | None = None) -> dict[str, Any]:
    """The four pagination parameters of a list's query schema."""
    size: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": max_size}
    if default_size is not None:
        size = {**size, "default": default_size}
    return {
        "page": {"type": "integer", "minimum": 1, "maximum": 10**9, "description": "1-based page"},
        "page_size": size,
        "skip": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10**9,
            "description": "items to skip (with limit, instead of page/page_size)",
        },
        "limit": {**size, "description": "items per page (with skip)"},
    }


def page_query(
    properties: Mapping[str, Any] | None = None,
    *,
    max_size: int = MAX_PAGE,
    default_size: int | None = None,
) -> dict[str, Any]:
    """A list's query schema: its own filters and the pagination parameters."""
    return {
        "type": "object",
        "properties": {**(properties or {}), **page_properties(max_size, default_size)},
    }


def page_of(
    query: Mapping[str, Any],
    items: Sequence[Any],
    *,
    default_size: int = CATALOGUE_PAGE,
    max_size: int = MAX_PAGE,
    **extra: Any,
) -> dict[str, Any]:
    """The page the query asks for of ``items`` (every matching item, in order), with
    ``extra`` keys beside ``items`` and ``pagination``."""
    limit, offset = page_args(query, default_size=default_size, max_size=max_size)
    return {
        "items": list(items[offset : offset + limit]),
        "pagination": pagination(len(items), limit, offset),
        **extra,
    }


PAGINATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["page", "page_size", "total", "total_pages"],
    "properties": {
        "page": {"type": "integer", "minimum": 1},
        "page_size": {"type": "integer", "minimum": 1},
        "total": {"type": "integer", "minimum": 0, "description": "items matching, all pages"},
        "total_pages": {"type": "integer", "minimum": 0},
        "skip": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 1},
    },
}


def list_schema(
    item: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``data`` of a list answer: ``items`` (each an ``item``), ``pagination`` and any
    ``extra`` properties."""
    return {
        "type": "object",
        "required": ["items", "pagination"],
        "properties": {
            "items": {"type": "array", "items": dict(item or {"type": "object"})},
            "pagination": {"$ref": "#/components/schemas/Pagination"},
            **(extra or {}),
        },
    }
