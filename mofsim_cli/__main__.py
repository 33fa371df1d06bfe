"""``python -m mofsim_cli``: the same as the ``mofsim`` command."""

from mofsim_cli.main import app

app(prog_name="mofsim")
