"""Daemon configuration: ``etc/mofsim.toml`` defaults, a user file, env vars, CLI flags.

Later sources win: built-in defaults < TOML file < ``MOFSIM_*`` environment < flags.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spool.errors import ValidationError

if TYPE_CHECKING:
    from mofsim_core.slurm_config import SlurmSettings
from spool.limits import (
    DEFAULT_MAX_ATOMS,
    DEFAULT_MAX_QUEUED,
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_TIMEOUT_S,
    Limits,
)

DEFAULT_SPOOL = "~/.local/share/mofsim/spool"
# Where `mofsim serve` listens when neither the flag nor the configuration says.
DEFAULT_BIND = "127.0.0.1:8000"


@dataclass(frozen=True)
class Config:
    spool: str = DEFAULT_SPOOL
    slots: str = "auto"
    # "HOST:PORT" to serve the HTTP API inside the daemon; None: no HTTP.
    http: str | None = None
    # Seconds a task may run when its job sets no options.timeout.
    default_timeout: float = 86400.0
    # Attempts before a task whose executor keeps dying is marked FAILED.
    max_attempts: int = 3
    retry_backoff_s: float = 2.0
    retry_backoff_max_s: float = 60.0
    # After a cancel request, how long the executor gets to stop at a step boundary.
    cancel_grace_s: float = 10.0
    # SIGTERM: how long running tasks may finish before they are requeued.
    shutdown_grace_s: float = 60.0
    rescan_interval_s: float = 2.0
    # Seconds without a heartbeat from an executor before its slot counts as offline:
    # a CRITICAL alert, no new task, an assigned task not yet begun goes back to the queue.
    heartbeat_timeout_s: float = 60.0
    calculator_cache_size: int = 2
    dtype: str = "float32"
    # Slots whose device reports less free memory than this are not given work.
    min_free_memory_mb: int = 2048
    # Spare slots ("gpu7", or GPU indices "7"): for model warm-up, and standing in for a
    # lost or offline compute slot (spec 2.1); empty: every slot computes.
    spare_slots: str = ""
    database_url: str | None = None  # None: embedded SQLite in the spool's state/
    log_level: str = "INFO"
    # HTTP: request bodies above this are refused (413) before they are read.
    max_upload_mb: float = 100.0
    # Token bucket per API key (per client address when anonymous): a steady rate in
    # requests per second and a burst; 0 turns rate limiting off.
    http_rate_limit: float = 50.0
    http_rate_burst: int = 100
    # Threads for the short work of one request (status, list, submit, cancel): few,
    # because they share the interpreter lock (see mofsim_http.request_pool).
    http_request_threads: int = 1
    # Hashed API keys; None: <spool>/state/api_keys.json.
    api_keys_file: str | None = None
    # Seconds between comment heartbeats on SSE streams.
    sse_heartbeat_s: float = 15.0
    # Retention (spec 8); see retention.Policy.
    retention_keep_days: float = 180.0
    retention_compress_after_days: float = 30.0
    retention_remind_days: float = 14.0
    retention_auto_extend: bool = False
    # Bounds of a submission (spool.limits): atoms after any supercell the task builds,
    # any one step count, options.timeout, and queued tasks (beyond: 30006).
    max_atoms: int = DEFAULT_MAX_ATOMS
    max_steps: int = DEFAULT_MAX_STEPS
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    max_queued: int = DEFAULT_MAX_QUEUED
    # Above this many atoms a task's default BFGS optimizer becomes LBFGS (BFGS keeps a
    # dense 3N x 3N Hessian); a job that names its optimizer keeps it.
    large_structure_atoms: int = 2000
    # Webhook receivers (options.notify_url, the alert webhook) on loopback, link-local,
    # private, multicast or unspecified addresses are refused unless allowed here: all
    # of them, or those in the listed networks ("10.1.0.0/16", "127.0.0.1/32").
    webhook_allow_private: bool = False
    webhook_allowed_networks: tuple[str, ...] = ()
    # The [slurm] section (mofsim_core.slurm_config), used when slots = "slurm".
    slurm: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Out-of-range bounds and malformed networks are refused when the config is made.
        _ = self.limits
        from mofsim_core.webhook_targets import parse_networks

        parse_networks(self.webhook_allowed_networks)
        _ = self.slurm_settings

    @property
    def slurm_settings(self) -> SlurmSettings:
        from mofsim_core.slurm_config import SlurmSettings

        return SlurmSettings.from_dict(self.slurm)

    @property
    def limits(self) -> Limits:
        return Limits(
            max_atoms=self.max_atoms,
            max_steps=self.max_steps,
            max_timeout_s=self.max_timeout_s,
            max_queued=self.max_queued,
            webhook_allow_private=self.webhook_allow_private,
            webhook_allowed_networks=self.webhook_allowed_networks,
        )

    @property
    def spool_path(self) -> Path:
        return Path(self.spool).expanduser().resolve()

    @property
    def api_keys_path(self) -> Path:
        if self.api_keys_file:
            return Path(self.api_keys_file).expanduser().resolve()
        return self.spool_path / "state" / "api_keys.json"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def masked(self) -> dict[str, Any]:
        """For display: passwords in URLs and secret-looking settings hidden."""
        from mofsim_core.redact import mask_secrets, mask_url

        data = self.to_dict()
        if data.get("database_url"):
            data["database_url"] = mask_url(str(data["database_url"]))
        data["extra"] = mask_secrets(data.get("extra") or {})
        return data


_ENV = {
    "MOFSIM_SPOOL": "spool",
    "MOFSIM_SLOTS": "slots",
    "MOFSIM_HTTP": "http",
    "MOFSIM_DATABASE_URL": "database_url",
    "MOFSIM_DEFAULT_TIMEOUT": "default_timeout",
    "MOFSIM_LOG_LEVEL": "log_level",
    "MOFSIM_API_KEYS_FILE": "api_keys_file",
}


def _coerce(name: str, value: Any) -> Any:
    kinds = {f.name: f.type for f in fields(Config)}
    kind = str(kinds.get(name))
    try:
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"config {name}: {value!r} is not a number", field=name) from exc
    if name in ("http", "api_keys_file") and value in ("", "none", "off", False):
        return None
    if kind == "tuple[str, ...]":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ValidationError(f"config {name}: {value!r} is not a list of strings", field=name)
        return tuple(i.strip() for i in items if i.strip())
    if kind == "bool" and not isinstance(value, bool):
        text = str(value).strip().lower()
        if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValidationError(f"config {name}: {value!r} is not true or false", field=name)
        return text in ("1", "true", "yes", "on")
    return value


def load_config(
    path: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
) -> Config:
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    path = path or env.get("MOFSIM_CONFIG")
    if path:
        p = Path(path).expanduser()
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError as exc:
            raise ValidationError(f"config file {p} not found", field="config") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"config file {p}: {exc}", field="config") from exc
        section = data.get("daemon", data)
        values.update(section)
        if isinstance(data.get("slurm"), dict):
            values["slurm"] = data["slurm"]
    for var, name in _ENV.items():
        if var in env:
            values[name] = env[var]
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    known = {f.name for f in fields(Config)}
    extra = {k: v for k, v in values.items() if k not in known}
    kwargs = {k: _coerce(k, v) for k, v in values.items() if k in known}
    cfg = replace(Config(), **kwargs)
    if extra:
        cfg = replace(cfg, extra={**cfg.extra, **extra})
    return cfg
