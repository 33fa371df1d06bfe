"""The command-line face: the Typer app ``mofsim`` (local mode on the spool through
``mofsim_core``, remote mode through the SDK) and the ``mofsim top`` view.  It is also
where the daemon and the HTTP server are started (``launch``)."""
