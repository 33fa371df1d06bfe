"""The supervisor process: watches the spool, schedules queued tasks onto slots, drives
one executor process per slot (start, assign, cancel, time out, restart), records every
transition in the mirror, and runs the operations loop (alerts, webhooks, retention).

It builds on ``mofsim_core``; an embedded HTTP server, when there is one, is handed in
by whoever starts the daemon (``mofsim_cli.launch``)."""
