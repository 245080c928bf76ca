"""``nodule-ohif``: the OHIF Viewer at the root of its own port, with our panel and proxies.

Routes, first match wins:

- ``GET /app-config.js``: the viewer's configuration (``app.ohif.config``);
- ``/nodule-search/panel/*``: the panel's ES modules (``app/ohif/static``);
- ``/v1/*``, ``/static/*`` and ``/nodule-search/viewer``: the nodule-search API and its viewer
  (the comparison view), forwarded;
- ``GET|HEAD /dicom-web/*``: the PACS's DICOMweb reads (QIDO-RS, WADO-RS), forwarded with the
  PACS's credentials; any other method is refused (405): reports reach the PACS only through
  the API's authenticated ``POST /v1/reports/sr?store=true``;
- ``GET /*``: the bundle's files; a path that is no file (an OHIF route such as ``/viewer``)
  gets ``index.html`` (the single-page app's fallback).

Every request is logged under its route template, never its path or query (study UIDs);
cross-origin requests and unknown Host headers are refused as in the API (``app.access``).
"""

from __future__ import annotations

import argparse
import base64
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.access import OriginGuardMiddleware, TrustedHostProblemMiddleware, loopback
from app.access_log import AccessLogMiddleware
from app.ohif import bundle
from app.ohif.config import DICOMWEB_PATH, PANEL_PREFIX, VIEWER_PATH, app_config_js
from app.ohif.proxy import Upstream, forward, unsafe_path
from app.ohif.settings import OhifSettings
from app.problems import http_exception, problem_response
from model.ct.pacs import PacsConfig

logger = logging.getLogger(__name__)

PANEL_DIR = Path(__file__).parent / "static"
#: Hashed bundle names never change content: cached for a day; index.html and the config never.
NO_STORE = {"Cache-Control": "no-store"}
READ_METHODS = ["GET", "HEAD"]
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
#: Where the page may fetch from and run code: this origin only. OHIF needs the rest: its inline
#: bootstrap ('unsafe-inline'), its WebAssembly codecs ('wasm-unsafe-eval'), the ndarray code
#: that loads a SEG ('unsafe-eval': it compiles with new Function), workers made from blobs.
CSP = (
    "default-src 'self'; "
    "script-src 'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' blob:; "
    "worker-src 'self' blob:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; connect-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'self'"
)


def _pacs_headers(pacs: PacsConfig) -> dict[str, str]:
    """The PACS's credentials as headers: token, else user and password (as the client)."""
    if pacs.token:
        return {"authorization": f"Bearer {pacs.token}"}
    if pacs.user is not None:
        pair = f"{pacs.user}:{pacs.password or ''}".encode()
        return {"authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
    return {}


def _client(
    settings: OhifSettings, transport: httpx2.AsyncBaseTransport | None
) -> httpx2.AsyncClient:
    limits = httpx2.Limits(
        max_connections=settings.ohif_connections,
        max_keepalive_connections=settings.ohif_connections,
    )
    timeout = httpx2.Timeout(settings.ohif_timeout_s, pool=settings.ohif_timeout_s)
    # No redirects followed (a redirect off the PACS must not be fetched with its credentials),
    # no environment proxies (the PACS is reached directly).
    return httpx2.AsyncClient(limits=limits, timeout=timeout, trust_env=False, transport=transport)


def _lifespan(
    settings: OhifSettings, transport: httpx2.AsyncBaseTransport | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    """The two upstreams' connection pools, opened at startup and closed at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        config = settings.pacs_config()
        if config is None:
            raise RuntimeError("nodule-ohif needs a PACS: set NODULE_DICOMWEB_URL")
        async with (
            _client(settings, transport) as pacs_client,
            _client(settings, transport) as api_client,
        ):
            pacs = Upstream(
                "the PACS", config.url.rstrip("/"), pacs_client, headers=_pacs_headers(config)
            )
            api = Upstream(
                "the nodule-search service",
                settings.ohif_api_url,
                api_client,
                pass_authorization=True,
            )
            yield {"pacs": pacs, "api": api}

    return lifespan


def _dist_file(dist: Path, path: str) -> Path | None:
    """The bundle's file at ``path``, or None (no such file, or a path leaving ``dist``)."""
    if not path or unsafe_path(path):
        return None
    candidate = (dist / path).resolve()
    if not candidate.is_relative_to(dist) or not candidate.is_file():
        return None
    return candidate


def _add_routes(app: FastAPI, dist: Path, max_body: int) -> None:
    @app.get("/app-config.js", include_in_schema=False)
    def config() -> Response:
        return Response(app_config_js(), media_type="text/javascript", headers=NO_STORE)

    app.mount(PANEL_PREFIX, StaticFiles(directory=PANEL_DIR), name="panel")

    @app.api_route("/v1/{path:path}", methods=ALL_METHODS, include_in_schema=False)
    async def api(request: Request, path: str) -> Response:
        return await forward(request, request.state.api, f"v1/{path}", max_body)

    @app.get("/static/{path:path}", include_in_schema=False)
    async def api_static(request: Request, path: str) -> Response:
        return await forward(request, request.state.api, f"static/{path}", max_body)

    @app.get(VIEWER_PATH, include_in_schema=False)
    async def viewer(request: Request) -> Response:
        return await forward(request, request.state.api, "", max_body)

    @app.api_route(f"{DICOMWEB_PATH}/{{path:path}}", methods=READ_METHODS, include_in_schema=False)
    async def pacs(request: Request, path: str) -> Response:
        return await forward(request, request.state.pacs, path, max_body)

    @app.api_route(
        f"{DICOMWEB_PATH}/{{path:path}}",
        methods=["POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    def pacs_write(path: str) -> Response:
        return problem_response(
            405,
            "the PACS is read-only through the viewer: reports are stored with "
            "POST /v1/reports/sr?store=true",
            headers={"Allow": "GET, HEAD"},
        )

    @app.get("/{path:path}", include_in_schema=False)
    def files(path: str) -> Response:
        found = _dist_file(dist, path)
        if found is not None:
            return FileResponse(found, headers={"Cache-Control": "public, max-age=86400"})
        if "." in path.rsplit("/", 1)[-1]:  # a missing asset is a 404, not the app's page
            return problem_response(404, "no such file in the viewer")
        return FileResponse(dist / "index.html", headers=NO_STORE)


def create_ohif_app(
    settings: OhifSettings, transport: httpx2.AsyncBaseTransport | None = None
) -> FastAPI:
    """The OHIF server; the bundle must be unpacked (``nodule-ohif fetch``).

    ``transport``: how both upstreams are reached (default: the network; tests pass an ASGI
    transport to stand-in servers).
    """
    dist = settings.ohif_dist.resolve()
    if not (dist / "index.html").is_file():
        raise FileNotFoundError(
            f"no OHIF bundle in {settings.ohif_dist}: run `make ohif` (nodule-ohif fetch)"
        )
    app = FastAPI(
        title="nodule-search OHIF server",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan(settings, transport),
    )
    app.add_exception_handler(StarletteHTTPException, http_exception)
    _add_routes(app, dist, settings.ohif_max_body_mb << 20)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    app.add_middleware(OriginGuardMiddleware, allowed=frozenset())
    app.add_middleware(TrustedHostProblemMiddleware, allowed_hosts=settings.ohif_allowed_hosts)
    app.add_middleware(AccessLogMiddleware)
    return app


def _serve(settings: OhifSettings, host: str | None, port: int | None, allow_open: bool) -> int:
    import uvicorn

    host = host or settings.ohif_host
    if not loopback(host) and not allow_open:
        sys.stderr.write(
            f"nodule-ohif: error: --host {host} is reachable beyond this machine, and the server "
            "reads the PACS with its own credentials for whoever asks: put it behind the "
            "site's authenticating proxy and pass --allow-open\n"
        )
        return 2
    if settings.dicomweb_url is None:
        sys.stderr.write("nodule-ohif: error: no PACS: set NODULE_DICOMWEB_URL\n")
        return 2
    try:
        app = create_ohif_app(settings)
    except FileNotFoundError as e:
        sys.stderr.write(f"nodule-ohif: error: {e}\n")
        return 2
    uvicorn.run(
        app,
        host=host,
        port=port or settings.ohif_port,
        log_level=settings.log_level,
        access_log=False,  # raw paths carry study UIDs: app.access_log writes templates
        server_header=False,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``nodule-ohif fetch [--out DIR]`` or ``nodule-ohif serve [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(
        prog="nodule-ohif", description="OHIF Viewer with the nodule-search panel"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser(
        "fetch", help=f"download the pinned OHIF {bundle.OHIF.version} bundle and unpack it"
    )
    fetch.add_argument(
        "--out", type=Path, default=Path("build/ohif"), help="unpacked into OUT/<version>"
    )
    serve = commands.add_parser("serve", help="serve OHIF with the panel and the proxies")
    serve.add_argument("--host", default=None, help="address (NODULE_OHIF_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (NODULE_OHIF_PORT)")
    serve.add_argument(
        "--allow-open",
        action="store_true",
        help="listen beyond loopback (behind an authenticating proxy only)",
    )
    args = parser.parse_args(argv)
    settings = OhifSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "fetch":
        try:
            bundle.fetch(args.out)
        except bundle.BundleError as e:
            sys.stderr.write(f"nodule-ohif: error: {e}\n")
            return 1
        return 0
    return _serve(settings, args.host, args.port, args.allow_open)
