"""Same-origin forwarding of the viewer's requests to the PACS and to the nodule-search API.

OHIF fetches DICOMweb from its own origin (Orthanc sends no CORS headers, and a same-origin
viewer needs none), and the panel calls the API the same way. Each forwarded request is
bounded: a body limit, a timeout for connecting and for each wait on the next bytes, and a
connection pool per upstream. Bodies stream through in both directions and are never held
whole in memory. Only named headers cross: the PACS's credentials are added here (the browser
never sees them), the browser's ``Authorization`` (the API's access token) goes to the API and
never to the PACS, cookies go nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import httpx2
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from app.problems import problem_response

logger = logging.getLogger(__name__)

#: Request headers a browser's DICOMweb or API call needs; nothing else is forwarded.
REQUEST_HEADERS = (
    "accept",
    "content-type",
    "content-length",
    "range",
    "if-none-match",
    "if-modified-since",
)
#: Response headers passed back (the body is forwarded as sent, so its encoding stays valid).
RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "content-encoding",
    "content-disposition",
    "content-range",
    "accept-ranges",
    "location",
    "www-authenticate",
    "retry-after",
    "etag",
    "last-modified",
    "cache-control",
)


class BodyTooLargeError(ValueError):
    """A request body over the forwarding limit."""


@dataclass
class Upstream:
    """One server the OHIF server forwards to.

    Attributes:
        name: what it is, in the messages a user reads ("the PACS").
        base_url: the root the forwarded path is appended to (no trailing slash).
        client: its connection pool.
        pass_authorization: forward the browser's ``Authorization`` header (the API's token).
        headers: added to every forwarded request (the PACS's credentials).
    """

    name: str
    base_url: str
    client: httpx2.AsyncClient
    pass_authorization: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # The headers hold the PACS's credentials: never printed.
        return f"Upstream({self.name!r}, {self.base_url!r})"


def unsafe_path(path: str) -> bool:
    """A forwarded path that could leave the upstream's root (``..``, ``.``, backslashes)."""
    return "\\" in path or any(part in (".", "..") for part in path.split("/"))


def _request_headers(request: Request, upstream: Upstream) -> dict[str, str]:
    names = REQUEST_HEADERS + (("authorization",) if upstream.pass_authorization else ())
    headers = {name: request.headers[name] for name in names if name in request.headers}
    # Bytes as stored, so a Content-Length and an ETag stay true.
    headers["accept-encoding"] = "identity"
    headers.update(upstream.headers)
    return headers


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise BodyTooLargeError
        yield chunk


def _declared_too_large(request: Request, limit: int) -> bool:
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > limit


async def forward(request: Request, upstream: Upstream, path: str, max_body: int) -> Response:
    """``request`` sent on to ``upstream``'s ``path`` (query string kept); its answer streamed.

    Unreachable upstreams answer 502, slow ones 504, bodies over ``max_body`` bytes 413; each
    with a problem naming which upstream and what went wrong.
    """
    if unsafe_path(path):
        return problem_response(400, "the path has '.' or '..' segments or backslashes")
    if _declared_too_large(request, max_body):
        return problem_response(413, f"the request body is over {max_body >> 20} MB")
    url = f"{upstream.base_url}/{path}"
    if request.url.query:  # as the browser wrote it: DICOMweb matching keys are kept verbatim
        url = f"{url}?{request.url.query}"
    has_body = request.method not in ("GET", "HEAD", "OPTIONS")
    outgoing = upstream.client.build_request(
        request.method,
        url,
        headers=_request_headers(request, upstream),
        content=_limited(request, max_body) if has_body else None,
    )
    try:
        answer = await upstream.client.send(outgoing, stream=True)
    except BodyTooLargeError:
        return problem_response(413, f"the request body is over {max_body >> 20} MB")
    except httpx2.TimeoutException:
        logger.warning("%s did not answer in time", upstream.name)
        return problem_response(504, f"{upstream.name} did not answer in time")
    except httpx2.HTTPError as e:
        logger.warning("%s cannot be reached (%s)", upstream.name, type(e).__name__)
        return problem_response(502, f"{upstream.name} cannot be reached")
    headers = {k: v for k, v in answer.headers.items() if k.lower() in RESPONSE_HEADERS}
    return StreamingResponse(
        answer.aiter_raw(),
        status_code=answer.status_code,
        headers=headers,
        background=BackgroundTask(answer.aclose),
    )
