"""The FastAPI service: ``create_app`` factory and the ``nodule-api`` entry point."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fastapi import FastAPI

from app.settings import AppSettings


def create_app(settings: AppSettings | None = None) -> FastAPI:
    """Build the application; nothing heavy happens at import or here."""
    settings = settings or AppSettings()
    app = FastAPI(title="nodule-search", version="0.1.0")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process is up and serving HTTP."""
        return {"status": "ok"}

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
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )
    return 0
