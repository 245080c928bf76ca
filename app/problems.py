"""Every error answer is one shape: RFC 9457 problem details (``application/problem+json``).

``detail`` says what was wrong in words (never echoing the input, which may hold patient data or
NaN); 422s from request validation add ``errors``, one entry per bad field. The OpenAPI document
declares this schema and media type for every 4xx/5xx response (``document_problems``), so the
contract a client reads is the one it gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="where: body field path, query or form parameter name")
    message: str = Field(description="what was wrong with it")


class Problem(BaseModel):
    """Every error body: RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field(default="about:blank", description="no further types are defined")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(ge=400, le=599, description="the HTTP status code")
    detail: str = Field(description="what was wrong, in words")
    errors: list[FieldProblem] | None = Field(
        default=None, description="request validation (422): each invalid field"
    )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[FieldProblem] | None = None,
) -> JSONResponse:
    """A problem-details answer with ``status`` and ``detail``."""
    body = Problem(
        status=status, title=_title(status), detail=detail, errors=list(errors) if errors else None
    )
    return JSONResponse(
        status_code=status,
        content=body.model_dump(exclude_none=True),
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def handler(status: int) -> Any:
    """An exception handler answering ``status`` with the exception's message."""

    async def answer(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(status, str(exc))

    return answer


async def http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's HTTPException (unknown routes, 405s, the admin checks)."""
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """Request validation: which field and why, never the input (NaN, patient data)."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        errors.append(FieldProblem(field=where, message=str(error.get("msg", ""))))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(422, detail, errors=errors)


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document declare ``Problem`` for every error response.

    FastAPI documents its own ``HTTPValidationError`` for 422s and ``application/json`` for the
    responses routes declare; both are replaced by what the handlers above return.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        ref = {"$ref": "#/components/schemas/Problem"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                # Any operation may answer a 4xx (unknown route, body too large, bad input) or
                # a 503 (catalogue unavailable, PACS down, parsers busy).
                responses.setdefault("4XX", {"description": "the request cannot be answered"})
                responses.setdefault("503", {"description": "temporarily unavailable"})
                for code, response in responses.items():
                    if code[:1] in ("4", "5"):
                        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": ref}}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        if "Problem" not in components:  # routes that name it in responses= put it there
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(problem.pop("$defs", {}))
            components["Problem"] = problem
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
