"""The HTTP face: the aiohttp application for both API dialects (``/api/v1`` and MIRA's
``/mira/api/v1``), SSE, authentication, rate limits, the OpenAPI document and its
offline viewers.  Handlers are thin: the work is in ``mofsim_core``."""
