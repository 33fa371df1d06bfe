"""What the ``models``, ``structures`` and ``system`` command groups share: the help
panel they are listed under, and the opening of each of their commands.

A command of these groups takes the common options (``--json``, ``--output``,
``--spool``, ``--server``, ``--api-key``) and turns them into an output (``output.py``)
and a backend to ask (``backend.connect``: the spool in local mode, the server through
the SDK in remote mode).
"""

# No ``from __future__ import annotations`` here, as in every command module of the CLI.
from pathlib import Path
from typing import Any

from mofsim_cli.backend import connect
from mofsim_cli.output import Output, make_output

PANEL = "Resources"


def output_and_backend(
    as_json: bool, output: str | None, spool: Path | None, server: str | None, api_key: str | None
) -> tuple[Output, Any]:
    """The command's output and its (not yet entered) backend context."""
    return make_output(as_json, output), connect(spool, server, api_key)
