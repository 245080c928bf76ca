"""The FastAPI service: ``create_app`` factory and the ``nodule-api`` entry point."""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.access import (
    FailedAttempts,
    OriginGuardMiddleware,
    TrustedHostProblemMiddleware,
    loopback,
    require_access,
)
from app.access_log import AccessLogMiddleware
from app.errors import InputError, NotFoundError
from app.privacy import quiet_third_party_loggers
from app.problems import (
    document_problems,
    handler,
    http_exception,
    invalid_request,
    problem_response,
)
from app.routers import admin, health, nodules, reports, scans, search, upload, vocabulary
from app.settings import AppSettings
from app.slots import Slots, SlotsBusyError
from app.state import CatalogUnavailableError, Serving, State, index_dir_problem
from app.telemetry import Metrics
from app.uploads.limits import BodyLimitMiddleware
from app.uploads.parse import UnsupportedUploadError, UploadContentError
from app.uploads.parser import UploadParser
from model.clinical.measure import MeasureError
from model.ct.evidence import ReportHeaderError, read_leniently
from model.ct.pacs import PacsUnavailableError, SeriesNotInPacsError
from model.ct.volume import VolumeReadError
from model.nn.embedder import EmbeddingInputError
from model.preprocessing import CoordinateOutsideVolumeError

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: Swagger UI's and ReDoc's browser files (swagger-ui-bundle.js, swagger-ui.css,
#: redoc.standalone.js, favicon.png) as the fastapi-offline wheel ships them.
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs-assets"
OPENAPI_URL = "/openapi.json"
#: Images, fonts and fetches of the docs pages from this origin only: ReDoc's side menu loads the
#: Redocly logo from cdn.redoc.ly whatever its options say, and the browser must not even try.
DOCS_CSP = "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"


def _lifespan(settings: AppSettings) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    """The heavy resources (catalogue, model, upload parsers), opened at startup, closed at end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        read_leniently()  # header values are checked where they are copied, never logged
        quiet_third_party_loggers()
        serving = Serving(settings)
        parser = UploadParser(
            settings.parser_memory_mb,
            settings.parser_timeout_s,
            slots=settings.max_parsers,
            wait_s=settings.parser_wait_s,
        )
        attempts = FailedAttempts(settings.auth_failures_per_minute)
        reports = Slots(
            "report and size computations",
            "NODULE_MAX_REPORTS",
            settings.max_reports,
            settings.report_wait_s,
            retry_after_s=2,
        )
        try:
            yield {
                "serving": serving,
                "settings": settings,
                "parser": parser,
                "failed_attempts": attempts,
                "reports": reports,
            }
        finally:
            parser.close()
            serving.close()

    return lifespan


def _add_metrics(app: FastAPI) -> None:
    """Request metrics (a middleware) and ``GET /metrics``."""
    metrics = Metrics()
    app.state.metrics = metrics
    app.middleware("http")(metrics.middleware)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text exposition format 0.0.4",
            }
        },
    )
    async def metrics_endpoint(request: Request) -> Response:
        """Prometheus text format: requests and latencies per route, catalogue size."""
        serving = request.state.serving
        metrics.nodules.set(int(serving.served().catalog.index.ntotal))
        return metrics.render()


def _add_routes(app: FastAPI, settings: AppSettings) -> None:
    """The API routers and the viewer's files."""
    # Documented (and enforced) only where a token is configured.
    guarded = [Depends(require_access)] if settings.access_token is not None else []
    app.include_router(health.router)
    app.include_router(health.info_router, dependencies=guarded)
    app.include_router(search.router, dependencies=guarded)
    app.include_router(upload.router, dependencies=guarded)
    app.include_router(nodules.router, dependencies=guarded)
    app.include_router(admin.router)
    app.include_router(scans.router, dependencies=guarded)
    app.include_router(reports.router, dependencies=guarded)
    app.include_router(vocabulary.router, dependencies=guarded)
    # The viewer: files shipped inside the package, nothing fetched from elsewhere at runtime.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def viewer() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def create_app(settings: AppSettings | None = None) -> FastAPI:
    """Build the application; the model and the catalogue load in the lifespan, not here."""
    settings = settings or AppSettings()
    app = FastAPI(
        title="nodule-search",
        version="0.1.0",
        description="Similar-case search for lung nodules in chest CT. Coordinates are world "
        "millimetres in the ITK/LPS frame (LUNA16 coordX, coordY, coordZ). Results are decision "
        "support from similar cases, not a diagnosis.",
        lifespan=_lifespan(settings),
        # /docs and /redoc are served below from local files, not FastAPI's CDN-loading pages.
        docs_url=None,
        redoc_url=None,
        # Swagger UI would send the spec's URL to validator.swagger.io for its badge.
        swagger_ui_parameters={"validatorUrl": None},
        # Served by _add_openapi, which fills the examples from the served catalogue.
        openapi_url=None,
    )
    _add_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        default_bytes=settings.max_body_kb * 1024,
        per_path=dict.fromkeys(
            (upload.UPLOAD_PATH, reports.UPLOAD_PATH), settings.max_upload_mb * 1024 * 1024
        ),
    )
    _add_metrics(app)
    _add_browser_policy(app, settings)
    # Before anything else: a Host not allow-listed (DNS rebinding) gets a 400 and nothing more.
    app.add_middleware(TrustedHostProblemMiddleware, allowed_hosts=settings.allowed_hosts)
    # Added last, so it is outermost: it sees every answer, the 413s of the upload limit included.
    app.add_middleware(AccessLogMiddleware)
    _add_routes(app, settings)
    _add_openapi(app, settings)
    _add_docs(app)
    return app


#: POSTs whose body is a ``CoordinateQuery`` (and whether their series must be DICOM): their
#: examples name a nodule of the served catalogue.
_POINT_OPERATIONS = (("/v1/search/coordinate", False), ("/v1/reports/sr", True))


def _add_openapi(app: FastAPI, settings: AppSettings) -> None:
    """``/openapi.json`` with request examples that work on the catalogue being served.

    A coordinate example must name a series the service has, so it is taken from the served
    catalogue (its first nodule) when the API is open; with an access token the document, which
    anyone may read, names no series of the catalogue.
    """

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        schema = with_k_maximum(app.openapi(), settings.max_k)
        serving = getattr(request.state, "serving", None)  # None: run without its lifespan
        if settings.access_token is None and serving is not None:
            browser = serving.served().browser
            for path, dicom in _POINT_OPERATIONS:
                point = browser.example_point(dicom=dicom)
                if point is not None:
                    with_point_example(schema, path, *point)
        return JSONResponse(schema)


def with_k_maximum(schema: dict[str, Any], max_k: int) -> dict[str, Any]:
    """A copy of the document whose every ``k`` states this deployment's NODULE_MAX_K."""
    schema = copy.deepcopy(schema)
    for component in schema.get("components", {}).get("schemas", {}).values():
        k = component.get("properties", {}).get("k")
        if k is not None:
            k["maximum"] = max_k
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "k":
                    parameter.setdefault("schema", {})["maximum"] = max_k
    return schema


def with_point_example(
    schema: dict[str, Any], path: str, series_uid: str, center_xyz: tuple[float, float, float]
) -> None:
    """Set the request example of the POST at ``path`` to a query at this nodule, in place."""
    operation = schema.get("paths", {}).get(path, {}).get("post")
    body = (operation or {}).get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        body["example"] = {
            "series_uid": series_uid,
            "center_xyz": list(center_xyz),
            "k": 5,
            "estimate_size": True,
        }


def _add_browser_policy(app: FastAPI, settings: AppSettings) -> None:
    """CORS for the allow-listed origins; any other foreign origin is refused (app.access)."""
    allowed = frozenset(settings.cors_origins)
    if allowed:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(allowed),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
            expose_headers=["Retry-After", "X-Pixel-MM"],
        )
    # Outside CORS: a refused origin never reaches the routes, preflight or not.
    app.add_middleware(OriginGuardMiddleware, allowed=allowed)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, whatever raised it, answered as problem details (``app.problems``)."""
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_exception)
    for status, errors in (
        (404, (NotFoundError, SeriesNotInPacsError)),
        (415, (UnsupportedUploadError,)),
        (
            422,
            (
                VolumeReadError,
                CoordinateOutsideVolumeError,
                EmbeddingInputError,
                UploadContentError,
                InputError,
                ReportHeaderError,
                MeasureError,
            ),
        ),
        (503, (PacsUnavailableError, CatalogUnavailableError)),
    ):
        for error in errors:
            app.add_exception_handler(error, handler(status))

    async def slots_busy(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SlotsBusyError)
        return problem_response(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)})

    async def catalogue_unreadable(request: Request, exc: Exception) -> JSONResponse:
        # A version removed between the request's check and its query: the next request falls
        # back (Serving.retriever); this one cannot be answered.
        logger.warning("catalogue read failed: %s", type(exc).__name__)
        return problem_response(503, "the catalogue could not be read; retry")

    app.add_exception_handler(SlotsBusyError, slots_busy)
    app.add_exception_handler(OperationalError, catalogue_unreadable)
    document_problems(app)


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their scripts, styles and icon served here.

    FastAPI's own pages load them from a CDN and stay blank on a network without internet (most
    hospital networks); this is FastAPI's self-hosting recipe with the files of fastapi-offline.
    """
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    openapi_url = OPENAPI_URL
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


def _settings_problem() -> str | AppSettings:
    """The settings, or why the service cannot start with them, in one line."""
    try:
        settings = AppSettings()
    except ValidationError as e:
        fields = "; ".join(
            f"NODULE_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in e.errors()
        )
        return f"invalid settings: {fields}"
    problem = index_dir_problem(settings.index_dir)
    return settings if problem is None else problem


def open_access_problem(settings: AppSettings) -> str | None:
    """Why the service must not start open (no token beyond loopback); None when it may.

    The catalogue's neighbours carry patient ids: an address others can reach needs
    NODULE_ACCESS_TOKEN, or an explicit NODULE_ALLOW_OPEN=true (a warning is logged then).
    """
    if settings.access_token is not None or loopback(settings.host):
        return None
    if settings.allow_open:
        logger.warning(
            "serving on %s with no access token (NODULE_ALLOW_OPEN): anyone who can reach it "
            "reads the catalogue, patient ids included",
            settings.host,
        )
        return None
    return (
        f"--host {settings.host} is reachable beyond this machine and no NODULE_ACCESS_TOKEN is "
        "set: set one, or NODULE_ALLOW_OPEN=true to serve the catalogue (patient ids included) "
        "to anyone who can reach it"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nodule-api [--host H] [--port P]`` under uvicorn.

    Settings that cannot serve (a ``NODULE_INDEX_DIR`` with no catalogue, a value that does not
    parse) exit 2 with one line naming them, before uvicorn starts: the lifespan would otherwise
    print a long traceback.
    """
    import uvicorn

    parser = argparse.ArgumentParser(prog="nodule-api", description="nodule-search HTTP service")
    parser.add_argument("--host", default=None, help="address to listen on (NODULE_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (NODULE_PORT)")
    args = parser.parse_args(argv)
    found = _settings_problem()
    if isinstance(found, str):
        sys.stderr.write(f"nodule-api: error: {found}\n")
        return 2
    settings = found.model_copy(
        update={"host": args.host or found.host, "port": args.port or found.port}
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    refusal = open_access_problem(settings)
    if refusal is not None:
        sys.stderr.write(f"nodule-api: error: {refusal}\n")
        return 2
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
