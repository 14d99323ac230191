"""The management HTTP API of mss (issue 8): REST + OpenAPI 3, tokens, events, metrics.

Layering: ``mss.api`` → ``mss.features`` → ``mss.storage``. It never imports ``mss.sip`` or
``mss.transport``; the server injects live SIP-side data through the Protocols of
:mod:`.services`.

* :func:`create_api` builds the FastAPI application from :class:`ApiServices`;
* :class:`ApiServer` serves it with uvicorn on the server's own event loop.
"""

from __future__ import annotations

from .app import create_api
from .server import ApiServer
from .services import ApiServices

__all__ = ("ApiServer", "ApiServices", "create_api")
