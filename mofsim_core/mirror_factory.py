"""Which mirror a configuration means: embedded SQLite, or PostgreSQL when a DSN is set.

``database_url`` unset (or empty): SQLite at ``<spool>/state/mirror.sqlite``.  A
``postgresql://`` or ``postgres://`` URL: PostgreSQL through psycopg.  Anything else is
a configuration error, reported before any connection is tried, so a typo never turns
into a daemon that silently retries a database it can never reach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mofsim_core.redact import mask_url
from spool.errors import ValidationError
from spool.layout import SpoolPaths

if TYPE_CHECKING:
    from mofsim_core.config import Config
    from mofsim_core.mirror import Mirror

PG_SCHEMES = ("postgresql://", "postgres://")
SQLITE_NAME = "mirror.sqlite"


def database_url(config_or_url: Config | str | None) -> str | None:
    """The DSN a configuration (or a bare URL) names; None for the embedded SQLite.
    Raises ValidationError (field ``database_url``) for an unsupported URL."""
    url = (
        config_or_url
        if config_or_url is None or isinstance(config_or_url, str)
        else config_or_url.database_url
    )
    if url is None or not str(url).strip():
        return None
    url = str(url).strip()
    if not url.lower().startswith(PG_SCHEMES):
        raise ValidationError(
            f"database_url must start with postgresql:// or postgres:// (got "
            f"{mask_url(url)!r}); leave it unset for the embedded SQLite mirror",
            field="database_url",
        )
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:
        raise ValidationError(
            "database_url names PostgreSQL, but psycopg is not installed (pip install "
            "'mofsim[server]')",
            field="database_url",
        ) from exc

    try:
        conninfo_to_dict(url)
    except psycopg.Error as exc:
        text = str(exc).replace(url, mask_url(url))  # never a password in a log line
        raise ValidationError(
            f"invalid database_url {mask_url(url)!r}: {text}", field="database_url"
        ) from exc
    return url


def mirror_location(config_or_url: Config | str | None, spool_paths: SpoolPaths) -> str:
    """Where the mirror lives, safe to print: the SQLite path or the masked DSN."""
    url = database_url(config_or_url)
    return mask_url(url) if url else str(spool_paths.state_dir / SQLITE_NAME)


def open_mirror(config_or_url: Config | str | None, spool_paths: SpoolPaths) -> Mirror:
    """Open (and migrate) the configured mirror.  Raises ValidationError for a bad
    ``database_url`` and DatabaseError when the database cannot be opened."""
    url = database_url(config_or_url)
    if url is None:
        from mofsim_core.mirror_sqlite import SqliteMirror

        return SqliteMirror(spool_paths.state_dir / SQLITE_NAME)
    from mofsim_core.mirror_pg import PostgresMirror

    return PostgresMirror(url)
