"""Receiving uploads: body-size limits while bodies stream in, the forms, a parser subprocess.

The parser runs in a separate process with an address-space limit and a time limit: a crash or a
memory bomb while reading an untrusted file ends that process (-> 422), never the service.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import File, Form, UploadFile

from app.asgi import ASGIApp, Message, Receive, Scope, Send
from app.errors import SPACING_RANGE_MM, parse_triple
from app.problems import Problem
from app.schemas import COORDINATE_LIMIT_MM
from app.slots import Slots
from model.preprocessing import PatchSpec
from model.upload_worker import EXIT_UNUSABLE, MEMORY_ENV
from model.uploads import (
    UnsupportedUploadError,
    UploadContentError,
    UploadJob,
    UploadPatch,
    mask_kind,
    read_result,
    upload_kind,
)

logger = logging.getLogger(__name__)


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


#: Environment variables the parser inherits: what Python needs to start and find the project,
#: and the locale. Nothing else (no API key, no PACS credentials, no proxy settings).
_PARSER_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LANG", "LC_ALL", "TMPDIR")


def parser_environment(memory_bytes: int) -> dict[str, str]:
    """The minimal environment of a parser process."""
    env = {name: os.environ[name] for name in _PARSER_ENV if name in os.environ}
    return {
        **env,
        MEMORY_ENV: str(memory_bytes),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONNOUSERSITE": "1",
    }


class UploadParser:
    """Parses each upload in a fresh ``python -m model.upload_worker`` process.

    The child gets an address-space limit, no core dumps, one BLAS/OpenMP thread, a time limit
    and a minimal environment; it imports only the readers (never the service's modules). A
    crash, a memory bomb or a time-out is reported as an unusable upload (422), and the service
    carries on. At most ``slots`` parsers run at once (their memory caps add up): a request that
    finds them all busy for ``wait_s`` gets a 503 with ``Retry-After``.
    """

    def __init__(self, memory_mb: int, timeout_s: float, slots: int = 2, wait_s: float = 2.0):
        self.memory_bytes = memory_mb * 1024 * 1024
        self.timeout_s = timeout_s
        self.slots = Slots(
            "upload parsers", "NODULE_MAX_PARSERS", slots, wait_s, max(1, round(timeout_s / 4))
        )

    def parse(self, job: UploadJob) -> UploadPatch:
        """Run the worker on ``job``; its patch, or an UploadContentError saying what went wrong.

        Raises:
            SlotsBusyError: no parser slot freed within ``wait_s``.
            UploadContentError: the upload is unusable (or broke its parser).
        """
        out = job.workdir / "patch.npz"
        request = {"job": job.model_dump(mode="json"), "out": str(out)}
        with self.slots.hold():
            return self._run(request, out)

    def _run(self, request: dict[str, Any], out: Path) -> UploadPatch:
        """One worker process on ``request``; its patch from ``out``."""
        env = parser_environment(self.memory_bytes)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "model.upload_worker"],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                env=env,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise UploadContentError(
                f"parsing the file took longer than {self.timeout_s:g} s"
            ) from None
        if done.returncode == EXIT_UNUSABLE:
            try:
                detail = str(json.loads(done.stdout)["detail"])
            except (ValueError, KeyError):
                detail = "the file content is unusable"
            raise UploadContentError(detail)
        if done.returncode != 0 or not out.is_file():
            # Only the status and the exception's type: the parser's own text could quote
            # header values of the upload (patient data).
            logger.warning(
                "upload parser exited with status %s (%s)",
                done.returncode,
                _exception_type(done.stderr),
            )
            raise UploadContentError(
                "the file could not be parsed (the parser ran out of memory or crashed)"
            )
        return read_result(out)

    def close(self) -> None:
        """Nothing is kept between uploads."""


def _exception_type(stderr: str) -> str:
    """The exception class on a traceback's last line ("MemoryError"), or "no traceback"."""
    lines = stderr.strip().splitlines()
    if lines:
        name = lines[-1].split(":", 1)[0].strip()
        if name and all(part.isidentifier() for part in name.split(".")):
            return name.rsplit(".", 1)[-1]
    return "no traceback"


#: The error answers of both upload routes, for their OpenAPI documents.
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem},
    415: {"model": Problem},
    422: {"model": Problem},
    503: {"model": Problem, "description": "every upload parser is busy (Retry-After)"},
}

#: Form fields both upload routes take (``/v1/search/upload``, ``/v1/reports/sr/upload``).
SeriesUidField = Annotated[
    str | None,
    Form(description="which series of a zip holding several DICOM series", max_length=128),
]
KField = Annotated[int, Form(ge=1, description="neighbours (at most NODULE_MAX_K)")]
ExcludePatientField = Annotated[
    str | None, Form(max_length=128, description="drop this patient's nodules")
]
LabelledOnlyField = Annotated[
    bool, Form(description="only neighbours with a benign/malignant label")
]
MaskField = Annotated[
    UploadFile | None,
    File(
        description="a nodule mask on the uploaded CT (.nii, .nii.gz, .mha or a DICOM SEG .dcm; "
        "any grid): its centroid is the centre (no center_xyz), its voxels the size"
    ),
]


@dataclass
class UploadForm:
    """The fields of an upload form (``/v1/search/upload``, ``/v1/reports/sr/upload``)."""

    file: UploadFile
    mask: UploadFile | None = None
    center_xyz: str | None = None
    spacing_zyx: str | None = None
    series_uid: str | None = None
    estimate_size: bool = False
    report: bool = False


@dataclass(frozen=True)
class ReceivedUpload:
    """A parsed upload: the parser's answer, what was sent (for the log) and its size."""

    patch: UploadPatch
    what: str
    n_bytes: int


def receive_upload(
    parser: UploadParser, spec: PatchSpec, form: UploadForm, *, profile: bool = False
) -> ReceivedUpload:
    """Check the form, save its files to a temporary folder, parse them in the parser process.

    ``profile``: also cut the profile's HU grid (the model's vector has measured blocks).

    Raises:
        UnsupportedUploadError: a file type the service does not read (415).
        InputError / UploadContentError: a bad field or unusable content (422).
        SlotsBusyError: every parser is busy (503).
    """
    kind = upload_kind(form.file.filename or "")
    if form.report and kind != "zip":
        # Before any parsing: the parser's own message would name fields this form lacks.
        raise UnsupportedUploadError(
            f"an SR belongs to a DICOM study: send a .zip of the DICOM CT series, not a {kind} file"
        )
    # A form whose mask field was left empty sends a part with no file name.
    mask = form.mask if form.mask is not None and form.mask.filename else None
    kind_of_mask = mask_kind(mask.filename or "") if mask is not None else None
    center = parse_triple(form.center_xyz, "center_xyz", limit=COORDINATE_LIMIT_MM)
    spacing = parse_triple(
        form.spacing_zyx, "spacing_zyx", low=SPACING_RANGE_MM[0], limit=SPACING_RANGE_MM[1]
    )
    with tempfile.TemporaryDirectory(prefix="nodule-upload-") as tmp:
        path, size = save_file(form.file, Path(tmp), "upload")
        mask_path = None
        if mask is not None:
            mask_path, mask_size = save_file(mask, Path(tmp), "mask")
            size += mask_size
        job = UploadJob(
            path=path,
            kind=kind,
            spec=spec,
            center_xyz=_triple(center),
            spacing_zyx=_triple(spacing),
            workdir=Path(tmp),
            series_uid=form.series_uid or None,
            mask_path=mask_path,
            mask_kind=kind_of_mask,
            estimate_size=form.estimate_size,
            report=form.report,
            profile=profile,
        )
        patch = parser.parse(job)
    what = kind + (f" with a {kind_of_mask} mask" if kind_of_mask else "")
    return ReceivedUpload(patch, what, size)


def save_file(file: UploadFile, folder: Path, stem: str) -> tuple[Path, int]:
    """Stream an uploaded file into ``folder``; its path and size in bytes.

    Only the suffix of the client's name is kept: nothing else of it reaches a path.
    """
    name = PurePosixPath(file.filename or stem).name
    suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else PurePosixPath(name).suffix.lower()
    path = folder / f"{stem}{suffix}"
    size = 0
    with path.open("wb") as out:
        while chunk := file.file.read(1 << 20):
            out.write(chunk)
            size += len(chunk)
    return path, size


def _triple(values: list[float] | None) -> tuple[float, float, float] | None:
    return None if values is None else (values[0], values[1], values[2])
