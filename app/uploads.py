"""Receiving uploads: a size limit enforced while the body streams in, and a parser subprocess.

The parser runs in a separate process with an address-space limit and a time limit: a crash or a
memory bomb while reading an untrusted file kills that worker (-> 422), never the service.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import resource
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from threading import Lock
from typing import Any

from model.preprocessing import PatchSpec
from model.uploads import UploadContentError, UploadPatch, cut_upload

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class UploadTooLargeError(Exception):
    """The request body passed the configured limit."""

    def __init__(self, limit_mb: int) -> None:
        super().__init__(f"the upload is larger than the limit of {limit_mb} MB")


class UploadLimitMiddleware:
    """Counts body bytes of upload requests as they arrive and stops at the limit (413)."""

    def __init__(self, app: ASGIApp, max_mb: int, paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_mb = max_mb
        self.max_bytes = max_mb * 1024 * 1024
        self.paths = paths

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": str(UploadTooLargeError(self.max_mb))}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass other requests through; cut an upload off once it passes the limit (413)."""
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)  # refused before reading any of it
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
                if received > self.max_bytes:
                    # Stop reading: the app sees a disconnect; the client gets the 413 below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal answered
            if too_large:
                if not answered:
                    answered = True
                    await self._refuse(send)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not too_large:
                raise
        if too_large and not answered:
            await self._refuse(send)


def _limit_memory(max_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


class UploadParser:
    """A one-process pool that parses uploads; rebuilt after a crash or a time-out."""

    def __init__(self, memory_mb: int, timeout_s: float) -> None:
        self.memory_bytes = memory_mb * 1024 * 1024
        self.timeout_s = timeout_s
        self._lock = Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_limit_memory,
            initargs=(self.memory_bytes,),
        )

    def _reset(self) -> None:
        for process in list(getattr(self._pool, "_processes", {}).values()):
            process.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def parse(
        self,
        path: Path,
        kind: str,
        spec: PatchSpec,
        center_xyz: list[float] | None,
        spacing_zyx: list[float] | None,
        workdir: Path,
    ) -> UploadPatch:
        """Parse in the worker; a crash, a memory bomb or a time-out is an UploadContentError."""
        with self._lock:
            future = self._pool.submit(
                cut_upload, path, kind, spec, center_xyz, spacing_zyx, workdir
            )
            try:
                return future.result(timeout=self.timeout_s)
            except FutureTimeout:
                self._reset()
                raise UploadContentError(
                    f"parsing the file took longer than {self.timeout_s:.0f} s"
                ) from None
            except (BrokenProcessPool, MemoryError):
                self._reset()
                raise UploadContentError(
                    "the file could not be parsed (the parser ran out of memory or crashed)"
                ) from None

    def close(self) -> None:
        """Stop the worker."""
        self._pool.shutdown(wait=False, cancel_futures=True)
