"""What every face shares: configuration, the database mirror, and the services behind
tasks, structures, models and custom models, queue statistics, slot state, alerts,
webhooks and retention.

It sits above ``spool`` (the protocol) and ``executors`` (the physics) and below the
supervisor (``mofsimd``) and the faces (``mofsim_http``, ``mofsim_cli``); it never
imports any of those.  Nothing here imports aiohttp.
"""
