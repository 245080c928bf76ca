"""The upload parser: each upload is read in a fresh, limited ``python -m app.uploads.worker``.

The parser runs in a separate process with an address-space limit and a time limit: a crash or a
memory bomb while reading an untrusted file ends that process (-> 422), never the service.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.slots import Slots
from app.uploads.parse import UploadContentError, UploadJob, UploadPatch, read_result
from app.uploads.worker import EXIT_UNUSABLE, MEMORY_ENV

logger = logging.getLogger(__name__)


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
    """Parses each upload in a fresh ``python -m app.uploads.worker`` process.

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
                [sys.executable, "-m", "app.uploads.worker"],
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
