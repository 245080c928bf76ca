"""The FastAPI service: ``create_app`` factory and the ``nodule-api`` entry point."""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from app.errors import InputError
from app.metrics import Metrics
from app.retrieval import NotFoundError
from app.routers import admin, health, nodules, scans, search, upload
from app.settings import AppSettings
from app.state import Serving, State
from app.uploads import UploadLimitMiddleware, UploadParser
from model.dicomweb import PacsUnavailableError, SeriesNotInPacsError
from model.embedder import EmbeddingInputError
from model.preprocessing import CoordinateOutsideVolumeError
from model.uploads import UnsupportedUploadError, UploadContentError
from model.volume import VolumeReadError

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: AppSettings | None = None) -> FastAPI:
    """Build the application; the model and the catalogue load in the lifespan, not here."""
    settings = settings or AppSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        serving = Serving(settings)
        parser = UploadParser(settings.parser_memory_mb, settings.parser_timeout_s)
        try:
            yield {"serving": serving, "settings": settings, "parser": parser}
        finally:
            parser.close()
            serving.current.catalog.close()

    app = FastAPI(
        title="nodule-search",
        version="0.1.0",
        description="Similar-case search for lung nodules in chest CT. Coordinates are world "
        "millimetres in the ITK/LPS frame (LUNA16 coordX, coordY, coordZ). Results are decision "
        "support from similar cases, not a diagnosis.",
        lifespan=lifespan,
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
        metrics.nodules.set(int(serving.current.catalog.index.ntotal))
        return metrics.render()

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

    return app


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
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )
    return 0
