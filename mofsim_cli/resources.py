"""``mofsim models ...``, ``mofsim structures ...``, ``mofsim system ...``.

The same commands in local mode (the spool: the catalogue, uploads kept in the spool,
the daemon's slot snapshot, its queue and alert store) and in remote mode (the server's
``/api/v1/models``, ``/structures`` and ``/system`` routes).  ``system health`` and
``system config`` describe the HTTP server and need ``--server``.  Each command prints
through the output layer: the document as the API answers it with ``--json``, tables
otherwise.  Each group lives in its own module (``models_cmd``, ``structures_cmd``,
``system_cmd``); what they share is in ``resource_common``.
"""

import typer

from mofsim_cli import calibrate_cmd  # noqa: F401 - registers models calibrate
from mofsim_cli.models_cmd import models_app
from mofsim_cli.resource_common import PANEL
from mofsim_cli.structures_cmd import structures_app
from mofsim_cli.system_cmd import system_app


def register(app: typer.Typer) -> None:
    """Add the three groups to the ``mofsim`` command, under the resources panel."""
    app.add_typer(models_app, name="models", rich_help_panel=PANEL)
    app.add_typer(structures_app, name="structures", rich_help_panel=PANEL)
    app.add_typer(system_app, name="system", rich_help_panel=PANEL)
