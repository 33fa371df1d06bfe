"""The version of mofsim, for ``mofsim --version``, the health answers and the OpenAPI
document: one lookup, one fallback."""

from __future__ import annotations

import functools
import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "mofsim"
UNKNOWN = "unknown"


@functools.cache
def package_version() -> str:
    """The installed distribution's version; from a checkout that is not installed, the
    version in the project file beside the packages; ``unknown`` when neither says."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    project = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        return str(tomllib.loads(project.read_text())["project"]["version"])
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return UNKNOWN
