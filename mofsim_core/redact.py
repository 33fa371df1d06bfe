"""Secrets kept out of everything a person or a log sees: URLs and settings."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# Settings whose values are credentials, whatever section they sit in.
_SECRET_KEY = re.compile(r"secret|password|passwd|token|api_?key|credential|dsn", re.I)


def mask_url(url: str) -> str:
    """The URL with its password hidden: ``postgresql://me:***@db/x``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, host = rest.rsplit("@", 1)
    if ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:{MASK}@{host}"


def mask_secrets(value: Any) -> Any:
    """Values under secret-looking keys replaced by ``***`` at any depth; passwords in
    URLs masked."""
    if isinstance(value, dict):
        return {
            k: (MASK if _SECRET_KEY.search(str(k)) and v not in (None, "") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value
