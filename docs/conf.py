"""Sphinx configuration of the MOFSim Python SDK documentation.

Build with ``make docs`` (or ``python -m sphinx -W --keep-going -b html docs
build/docs``).  The API reference is generated from the docstrings of
``mofsim_client``, which imports only httpx, so the build needs neither the server nor
the simulation packages, and no network (no intersphinx).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the SDK from this checkout, installed or not

from mofsim_client import __version__ as release  # noqa: E402 - needs the path above

project = "MOFSim Python SDK"
author = "the MOFSim developers"
copyright = "the MOFSim developers"
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_theme = "alabaster"
html_title = "MOFSim Python SDK"
html_theme_options = {"description": "Sync and async clients of the MOFSim job server"}

# Type hints stay in the signatures, in their short form (``Task``, not
# ``mofsim_client.task.Task``); members in the order of the source, which groups them.
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
add_module_names = False
# undoc-members: many methods and dataclass fields have no docstring, but their
# signatures alone say what they take and return.
autodoc_default_options = {"members": True, "undoc-members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False


def _drop_signature(
    app: Any,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, None] | None:
    """No constructor signature for the result and record classes (the SDK builds them
    from the server's answers; their fields are listed below each one) nor for the
    exceptions that take exactly ``MOFSimError``'s arguments."""
    from mofsim_client.errors import MOFSimError

    if what == "class" and dataclasses.is_dataclass(obj) and obj.__module__.endswith("models"):
        return "", None
    if what == "exception" and obj is not MOFSimError and obj.__init__ is MOFSimError.__init__:
        return "", None
    return None


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-signature", _drop_signature)
    return {"parallel_read_safe": True}
