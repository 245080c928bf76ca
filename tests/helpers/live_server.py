"""Live servers for the tests that need one (a real ``nodule-api``, ``nodule-ohif``: the browser
tests and the log scan), and the browser they drive."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(
    url: str, process: subprocess.Popen[bytes], what: str, log_path: Path, timeout_s: float
) -> None:
    """Poll ``url`` until it answers; RuntimeError naming ``what`` and its log if it dies first
    or does not answer within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start (see {log_path})") from None
            time.sleep(0.2)


@contextmanager
def live_process(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    ready_url: str,
    what: str,
    timeout_s: float = 60,
) -> Iterator[int]:
    """``command`` with ``env`` added to this environment, output to ``log_path``, entered (with
    its process id) once ``ready_url`` answers; terminated on exit."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until_up(ready_url, process, what, log_path, timeout_s)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def live_api(env: dict[str, str], log_path: Path, timeout_s: float = 60) -> Iterator[str]:
    """``python -m app`` with ``NODULE_*`` settings ``env``, output to ``log_path``; its URL once
    ``/readyz`` answers. Terminated on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)]
    with live_process(command, env, log_path, f"{url}/readyz", "nodule-api", timeout_s):
        yield url


#: What OHIF shows a first-time user (its tour, its investigational-use notice), dismissed as a
#: returning user would have: they would cover the viewport a test clicks in.
OHIF_RETURNING_USER = (
    "localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));"
    "sessionStorage.setItem('investigationalUseDialog', 'hidden');"
)


def chromium_path() -> str:
    """Debian's Chromium (or ``NODULE_CHROMIUM``); the test fails naming the install otherwise."""
    found = os.environ.get("NODULE_CHROMIUM") or shutil.which("chromium")
    found = found or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "Chromium is not installed: `apt-get install chromium` (what .ci/run and `make test` "
            "do), or point NODULE_CHROMIUM at a Chromium binary"
        )
    return found


ROOT = Path(__file__).resolve().parents[2]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)
