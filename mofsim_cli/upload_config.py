"""``mofsim models upload --config``: the loader's config, inline or from a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spool.errors import ValidationError


def read_config(text: str) -> dict[str, Any]:
    """A JSON object, or the path of a JSON or YAML file holding one."""
    path = Path(text).expanduser()
    source = text
    if not text.lstrip().startswith("{") and path.is_file():
        source = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            return _object(_yaml(source, path))
    try:
        value = json.loads(source)
    except ValueError as exc:
        raise ValidationError(
            f"--config is neither a JSON object nor a JSON/YAML file: {exc}", field="config"
        ) from exc
    return _object(value)


def _yaml(source: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise ValidationError(
            "reading a YAML --config needs PyYAML; give JSON instead", field="config"
        ) from exc
    try:
        return yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path}: not valid YAML: {exc}", field="config") from exc


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("--config must hold an object", field="config")
    return value
