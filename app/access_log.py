"""The HTTP access log, written by the app under the route template instead of the raw URL.

uvicorn's own access log prints the full path and query string, which would put series UIDs
(``/v1/scans/<uid>/axial.png``) and patient ids (``?exclude_patient_id=...``) in clear into the
log. ``nodule-api`` turns it off and this middleware writes one line per request instead:
client address, method (from a closed set), the matched route's template
(``/v1/scans/{series_uid}/axial.png``), status and duration. No query string, no raw path.
"""

from __future__ import annotations

import logging
import time

from app.asgi import ASGIApp, Message, Receive, Scope, Send
from app.telemetry import method_label

logger = logging.getLogger("app.access")


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request, or ``unmatched``."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) and template else "unmatched"


class AccessLogMiddleware:
    """One log line per HTTP request, with the route template in place of the path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through and log it once the response has started (or failed)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before starting a response

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            client = scope.get("client")
            logger.info(
                '%s "%s %s" %d %.1f ms',
                f"{client[0]}:{client[1]}" if client else "-",
                method_label(str(scope.get("method", ""))),
                route_template(scope),
                status,
                (time.perf_counter() - started) * 1000,
            )
