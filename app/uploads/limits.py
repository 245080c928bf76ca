"""The body limit of every request: counted as the body streams in, refused past it (413).

Uploads get ``NODULE_MAX_UPLOAD_MB``; every other route ``NODULE_MAX_BODY_KB``.
"""

from __future__ import annotations

import json

from app.asgi import ASGIApp, Message, Receive, Scope, Send


def _size(n_bytes: int) -> str:
    return f"{n_bytes >> 20} MB" if n_bytes >= 1 << 20 else f"{n_bytes >> 10} KB"


class BodyLimitMiddleware:
    """Counts the body bytes of every request as they arrive and stops at the limit (413).

    Uploads get ``NODULE_MAX_UPLOAD_MB``; every other route ``NODULE_MAX_BODY_KB`` (their JSON
    bodies are a few hundred bytes), so no route can be made to buffer a huge body in memory.
    """

    def __init__(self, app: ASGIApp, default_bytes: int, per_path: dict[str, int]) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.per_path = per_path

    async def _refuse(self, send: Send, limit: int) -> None:
        detail = f"the request body is larger than the limit of {_size(limit)}"
        body = json.dumps({"detail": detail, "status": 413, "title": "Content Too Large"})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass requests through; cut one off once its body passes its route's limit (413)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default_bytes)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode()
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)  # refused before reading any of it
            return
        received = 0
        too_large = False
        answered = False

        async def limited() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Stop reading: the app sees a disconnect; the client gets the 413 below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal answered
            if too_large:
                if not answered:
                    answered = True
                    await self._refuse(send, limit)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not too_large:
                raise
        if too_large and not answered:
            await self._refuse(send, limit)
