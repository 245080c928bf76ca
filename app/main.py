"""The FastAPI service: ``create_app`` factory and the ``nodule-api`` entry point."""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError

from app.access_log import AccessLogMiddleware
from app.errors import InputError
from app.metrics import Metrics
from app.retrieval import NotFoundError
from app.routers import admin, health, nodules, scans, search, upload
from app.settings import AppSettings
from app.state import CatalogUnavailableError, Serving, State
from app.uploads import ParserBusyError, UploadLimitMiddleware, UploadParser
from model.dicomweb import PacsUnavailableError, SeriesNotInPacsError
from model.embedder import EmbeddingInputError
from model.preprocessing import CoordinateOutsideVolumeError
from model.uploads import UnsupportedUploadError, UploadContentError
from model.volume import VolumeReadError

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: Swagger UI's and ReDoc's browser files (swagger-ui-bundle.js, swagger-ui.css,
#: redoc.standalone.js, favicon.png) as the fastapi-offline wheel ships them.
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs-assets"
#: Images, fonts and fetches of the docs pages from this origin only: ReDoc's side menu loads the
#: Redocly logo from cdn.redoc.ly whatever its options say, and the browser must not even try.
DOCS_CSP = "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"


def create_app(settings: AppSettings | None = None) -> FastAPI:
    """Build the application; the model and the catalogue load in the lifespan, not here."""
    settings = settings or AppSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        serving = Serving(settings)
        parser = UploadParser(
            settings.parser_memory_mb,
            settings.parser_timeout_s,
            slots=settings.max_parsers,
            wait_s=settings.parser_wait_s,
        )
        try:
            yield {"serving": serving, "settings": settings, "parser": parser}
        finally:
            parser.close()
            serving.close()

    app = FastAPI(
        title="nodule-search",
        version="0.1.0",
        description="Similar-case search for lung nodules in chest CT. Coordinates are world "
        "millimetres in the ITK/LPS frame (LUNA16 coordX, coordY, coordZ). Results are decision "
        "support from similar cases, not a diagnosis.",
        lifespan=lifespan,
        # /docs and /redoc are served below from local files, not FastAPI's CDN-loading pages.
        docs_url=None,
        redoc_url=None,
        # Swagger UI would send the spec's URL to validator.swagger.io for its badge.
        swagger_ui_parameters={"validatorUrl": None},
    )

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    async def unprocessable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's default echoes the input, which may hold NaN (not valid JSON) or patient data.
        assert isinstance(exc, RequestValidationError)
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
            problems.append(f"{where}: {error.get('msg', '')}")
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems)})

    app.add_exception_handler(RequestValidationError, invalid_request)

    async def unsupported(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=415, content={"detail": str(exc)})

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(SeriesNotInPacsError, not_found)
    app.add_exception_handler(PacsUnavailableError, unavailable)
    app.add_exception_handler(CatalogUnavailableError, unavailable)

    async def parsers_busy(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ParserBusyError)
        return JSONResponse(
            status_code=503,
            content={"detail": str(exc)},
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    app.add_exception_handler(ParserBusyError, parsers_busy)

    async def catalogue_unreadable(request: Request, exc: Exception) -> JSONResponse:
        # A version removed between the request's check and its query: the next request falls
        # back (Serving.retriever); this one cannot be answered.
        logger.warning("catalogue read failed: %s", type(exc).__name__)
        return JSONResponse(
            status_code=503, content={"detail": "the catalogue could not be read; retry"}
        )

    app.add_exception_handler(OperationalError, catalogue_unreadable)
    app.add_exception_handler(UnsupportedUploadError, unsupported)
    for error in (
        VolumeReadError,
        CoordinateOutsideVolumeError,
        EmbeddingInputError,
        UploadContentError,
        InputError,
    ):
        app.add_exception_handler(error, unprocessable)
    app.add_middleware(
        UploadLimitMiddleware, max_mb=settings.max_upload_mb, paths=(upload.UPLOAD_PATH,)
    )
    metrics = Metrics()
    app.state.metrics = metrics
    app.middleware("http")(metrics.middleware)

    @app.get("/metrics", tags=["health"], include_in_schema=True)
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus text format: requests and latencies per route, catalogue size."""
        serving = request.state.serving
        metrics.nodules.set(int(serving.retriever().catalog.index.ntotal))
        return metrics.render()

    # Added last, so it is outermost: it sees every answer, the 413s of the upload limit included.
    app.add_middleware(AccessLogMiddleware)

    app.include_router(health.router)
    app.include_router(search.router)
    app.include_router(upload.router)
    app.include_router(nodules.router)
    app.include_router(admin.router)
    app.include_router(scans.router)
    # The viewer: files shipped inside the package, nothing fetched from elsewhere at runtime.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def viewer() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    _add_docs(app)
    return app


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their scripts, styles and icon served here.

    FastAPI's own pages load them from a CDN and stay blank on a network without internet (most
    hospital networks); this is FastAPI's self-hosting recipe with the files of fastapi-offline.
    """
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that mounts the service under a prefix, links must carry it.
        root: str = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root: str = request.scope.get("root_path", "").rstrip("/")
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,  # the fonts would come from Google's servers
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nodule-api [--host H] [--port P]`` under uvicorn."""
    import uvicorn

    settings = AppSettings()
    parser = argparse.ArgumentParser(prog="nodule-api", description="nodule-search HTTP service")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    args = parser.parse_args(argv)
    settings = settings.model_copy(update={"host": args.host, "port": args.port})
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's access log prints raw paths and query strings (UIDs, patient ids): the app
        # writes its own under route templates (app.access_log).
        access_log=False,
        server_header=False,
    )
    return 0
