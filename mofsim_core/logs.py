"""System, access and audit logs as JSON lines (spec 6.3), a file per day, kept forever.

Layout under the log directory (``<spool>/state/logs`` unless configured)::

    system-2026-11-22.jsonl      today and the last 7 days: plain JSON lines
    system-2026-11-10.jsonl.gz   8 to 30 days old: gzip
    system-2026-09.tar           older than 30 days: one archive per month of .gz files

Nothing is ever deleted: ``archive()`` only compresses and bundles, and ``read_day()``
reads a day back from whichever form it is in.  Task logs live in each task's
``events.jsonl`` (and the mirror); this module is for the daemon and the server.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import sys
import tarfile
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.config import Config

KINDS = ("system", "access", "audit")
GZIP_AFTER_DAYS = 7
BUNDLE_AFTER_DAYS = 30


def _record_to_json(record: Any, kind: str) -> str:
    extra = {k: v for k, v in record["extra"].items() if k not in ("kind", "task_id", "gpu_id")}
    body = {
        "timestamp": record["time"]
        .astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": record["level"].name,
        "logger": extra.pop("logger", None) or f"{kind}.{record['name']}",
        "message": record["message"],
        "task_id": record["extra"].get("task_id"),
        "gpu_id": record["extra"].get("gpu_id"),
        "extra": extra,
    }
    return json.dumps(body, default=str, ensure_ascii=False)


class DailyJsonSink:
    """A loguru sink appending to ``<kind>-<UTC date>.jsonl``, switching at midnight."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.directory = directory
        self.kind = kind
        self._lock = threading.Lock()
        self._day: date | None = None
        self._fh: io.TextIOWrapper | None = None

    def path_for(self, day: date) -> Path:
        return self.directory / f"{self.kind}-{day.isoformat()}.jsonl"

    def write(self, message: Any) -> None:
        record = message.record
        day = record["time"].astimezone(UTC).date()
        line = _record_to_json(record, self.kind) + "\n"
        with self._lock:
            if day != self._day or self._fh is None:
                if self._fh is not None:
                    self._fh.close()
                self.directory.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path_for(day), "a", encoding="utf-8")
                self._day = day
            self._fh.write(line)
            self._fh.flush()

    def stop(self) -> None:
        """Close the day's file; loguru calls it when the sink is removed."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def configure(log_dir: Path | None, level: str = "INFO", *, console: bool = True) -> None:
    """Route loguru: human lines on stderr, JSON files per kind (SSE streams follow
    these files, so they work across processes and survive restarts).

    Records bound with ``kind="access"`` or ``kind="audit"`` go to those files; all
    others are system records."""
    global _audit_sink, _fully_configured
    logger.remove()
    _audit_sink, _fully_configured = None, True
    level = level.upper()
    if console:
        logger.add(
            sys.stderr,
            level=level,
            filter=lambda r: r["extra"].get("kind", "system") == "system",
            format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {message}",
        )
    if log_dir is not None:
        for kind in KINDS:
            # The sink object, not its write method: loguru then stops it on removal.
            logger.add(
                DailyJsonSink(log_dir, kind),
                level=level if kind == "system" else "DEBUG",
                filter=_kind_filter(kind),
            )


# configure() ran: every kind already goes to its files.
_fully_configured = False
# audit_into()'s sink: (its directory, loguru's handler id).
_audit_sink: tuple[Path, int] | None = None


def audit_into(log_dir: Path) -> None:
    """For a process without the daemon's or the server's logging (the CLI on a spool):
    audit records go to ``log_dir``'s day files, where the server reads them, and no
    longer to stderr.  Nothing else changes; a process that logs all kinds to files
    already is left as it is."""
    global _audit_sink
    if _fully_configured or (_audit_sink is not None and _audit_sink[0] == log_dir):
        return
    if _audit_sink is not None:
        logger.remove(_audit_sink[1])
    else:
        with contextlib.suppress(ValueError):
            logger.remove(0)  # loguru's own stderr handler would print each audit record
            # The process's own stderr: sys.stderr may be a stand-in for the moment.
            logger.add(
                sys.__stderr__ or sys.stderr,
                level="DEBUG",
                filter=lambda r: r["extra"].get("kind") != "audit",
            )
    sink = logger.add(DailyJsonSink(log_dir, "audit"), level="DEBUG", filter=_kind_filter("audit"))
    _audit_sink = (log_dir, sink)


def _kind_filter(kind: str) -> Any:
    def accept(record: Any) -> bool:
        return bool(record["extra"].get("kind", "system") == kind)

    return accept


def audit(action: str, **details: Any) -> None:
    """Who did what to which task, model or key: kept forever like every log.  Within
    an API request, the record names the request's id."""
    from mofsim_core.request_ids import current_request_id

    details.setdefault("request_id", current_request_id())
    logger.bind(kind="audit", logger="audit", action=action, **details).info(action)


def _day_of(name: str, kind: str) -> date | None:
    stem = name[len(kind) + 1 :].split(".", 1)[0]
    try:
        return date.fromisoformat(stem)
    except ValueError:
        return None


def archive(log_dir: Path, today: date | None = None) -> dict[str, list[str]]:
    """Compress day files older than 7 days; bundle those older than 30 days into one
    tar per month.  Returns what was done; deletes nothing that is not preserved."""
    today = today or datetime.now(UTC).date()
    done: dict[str, list[str]] = {"gzipped": [], "bundled": []}
    if not log_dir.is_dir():
        return done
    for kind in KINDS:
        for p in sorted(log_dir.glob(f"{kind}-*.jsonl")):
            day = _day_of(p.name, kind)
            if day is not None and today - day > timedelta(days=GZIP_AFTER_DAYS):
                gz = p.with_name(p.name + ".gz")
                with open(p, "rb") as src, gzip.open(gz, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.utime(gz, (p.stat().st_atime, p.stat().st_mtime))
                p.unlink()
                done["gzipped"].append(gz.name)
        for gz in sorted(log_dir.glob(f"{kind}-*.jsonl.gz")):
            day = _day_of(gz.name, kind)
            if day is None or today - day <= timedelta(days=BUNDLE_AFTER_DAYS):
                continue
            bundle = log_dir / f"{kind}-{day.year:04d}-{day.month:02d}.tar"
            with tarfile.open(bundle, "a") as tar:
                if gz.name not in tar.getnames():
                    tar.add(gz, arcname=gz.name)
            gz.unlink()
            done["bundled"].append(f"{bundle.name}:{gz.name}")
    return done


def read_day(log_dir: Path, kind: str, day: date) -> list[dict[str, Any]]:
    """A day's records, whether plain, gzipped or inside its month's tar."""
    name = f"{kind}-{day.isoformat()}.jsonl"
    plain, gz = log_dir / name, log_dir / (name + ".gz")
    bundle = log_dir / f"{kind}-{day.year:04d}-{day.month:02d}.tar"
    if plain.exists():
        data = plain.read_bytes()
    elif gz.exists():
        data = gzip.decompress(gz.read_bytes())
    elif bundle.exists():
        with tarfile.open(bundle) as tar:
            member = tar.extractfile(name + ".gz")
            if member is None:
                return []
            data = gzip.decompress(member.read())
    else:
        return []
    out: list[dict[str, Any]] = []
    for line in data.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash mid-write: the rest stays readable
        if isinstance(record, dict):
            out.append(record)
    return out


def setup_logging(config: Config) -> Path:
    """System, access and audit logs as JSON lines per day, human lines on stderr."""
    log_dir = log_dir_of(config)
    configure(log_dir, config.log_level)
    return log_dir


def log_dir_of(config: Config) -> Path:
    configured = config.extra.get("log_dir") if isinstance(config.extra, dict) else None
    return Path(configured).expanduser() if configured else config.spool_path / "state" / "logs"
