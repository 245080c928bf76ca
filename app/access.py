"""Who may call the service: a bearer token, a CORS allow-list, failed attempts limited.

- ``NODULE_ACCESS_TOKEN``: when set, every ``/v1`` route but the admin ones (they have their own
  key) needs ``Authorization: Bearer <token>``. Off by default (the demo on loopback); a hospital
  deployment sets it, because the catalogue's neighbours carry patient ids.
- ``NODULE_CORS_ORIGINS``: web origins whose pages may call the API from a browser. Empty by
  default: a request whose ``Origin`` is neither listed nor the service's own is refused (403)
  before it does anything, which also stops "simple" cross-site form posts that a browser sends
  without asking first.
- Failed token or admin-key attempts are counted per client address in a moving window
  (``limits``); past ``NODULE_AUTH_FAILURES_PER_MINUTE`` the client's further *failing* attempts
  get 429 with Retry-After. A correct credential is checked first and always passes: failures
  never lock anyone out (``FailedAttempts``).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.middleware.trustedhost import TrustedHostMiddleware

from app.asgi import ASGIApp, Message, Receive, Scope, Send
from app.problems import problem_response

logger = logging.getLogger(__name__)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AccessToken",
    description="NODULE_ACCESS_TOKEN of the deployment",
)


class FailedAttempts:
    """Failed authentication attempts per client, in a one-minute moving window.

    Only failures are limited: a correct credential is checked first and always passes, so
    nobody behind the same proxy or NAT can lock the others out by failing. Past the limit a
    client's further *failing* attempts are answered 429 (Retry-After) instead of 401, which
    stops a misconfigured client hammering the service and tells it to stop. Guessing is no
    shortcut either way: the token's length is the defence (a 32-byte random token).
    """

    def __init__(self, per_minute: int) -> None:
        self.limit = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def failed(self, scope: str, client: str) -> None:
        """Count one failed attempt; past the limit, refuse it as too many (429).

        Raises:
            HTTPException: 429 with Retry-After once the client has used up its failures.
        """
        if self._limiter.hit(self.limit, scope, client):
            return
        reset = self._limiter.get_window_stats(self.limit, scope, client).reset_time
        wait = max(1, int(reset - time.time()) + 1)
        raise HTTPException(
            status_code=429,
            detail=f"too many failed attempts; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def loopback(host: str) -> bool:
    """Whether a listening address is this machine's only (``127.0.0.1``, ``[::1]``, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def client_of(request: Request) -> str:
    """The client's address (the proxy's, behind one: configure uvicorn's forwarded headers)."""
    return request.client.host if request.client is not None else "-"


async def require_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The request carries the deployment's access token (a no-op when none is configured)."""
    token = request.state.settings.access_token
    if token is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, token.get_secret_value().encode()):
        attempts: FailedAttempts = request.state.failed_attempts
        attempts.failed("access", client_of(request))  # 429 past the limit
        logger.warning("request without a valid access token refused")
        raise HTTPException(
            status_code=401,
            detail="missing or wrong access token (Authorization: Bearer <NODULE_ACCESS_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


class OriginGuardMiddleware:
    """Refuses browser requests from origins other than the service's own and the allow-list."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass same-origin, allowed and non-browser requests; answer others 403."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin or origin in self.allowed or _same_origin(origin, headers, scope):
            await self.app(scope, receive, send)
            return
        response = problem_response(
            403, "cross-origin requests are not allowed from this origin (NODULE_CORS_ORIGINS)"
        )
        await response(scope, receive, send)


def _same_origin(origin: str, headers: dict[bytes, bytes], scope: Scope) -> bool:
    host = headers.get(b"host", b"").decode("latin-1")
    scheme = str(scope.get("scheme", "http"))
    return bool(host) and origin in (f"{scheme}://{host}", f"http://{host}", f"https://{host}")


class TrustedHostProblemMiddleware:
    """Starlette's ``TrustedHostMiddleware`` (DNS rebinding), its refusals as problem details.

    Starlette answers a Host it refuses, or cannot parse, in plain text; every error answer of
    this service is ``application/problem+json`` (``app.problems``), so the refusal is rewritten:
    when the check never reached the application, its answer is replaced by a 400 problem.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass allowed hosts on; answer the others 400 with a problem body."""
        if scope["type"] != "http":
            await TrustedHostMiddleware(self.app, allowed_hosts=self.allowed_hosts)(
                scope, receive, send
            )
            return
        passed = False

        async def allowed(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal passed
            passed = True
            await self.app(scope, receive, send)

        async def answer(message: Message) -> None:
            if passed:
                await send(message)
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                refusal = problem_response(
                    400, "the Host header is not one this service answers (NODULE_ALLOWED_HOSTS)"
                )
                await refusal(scope, receive, send)

        check = TrustedHostMiddleware(allowed, allowed_hosts=self.allowed_hosts, www_redirect=False)
        await check(scope, receive, answer)
