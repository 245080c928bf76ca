"""Named points where tests can freeze a running build to kill it, or make a process crash.

When ``NODULE_FAILPOINT`` names the point being reached, the process writes the point's name to
the file ``NODULE_FAILPOINT_FILE`` and sleeps, waiting to be killed. When ``NODULE_CRASHPOINT`` is
``NAME`` (every time) or ``NAME@FILE`` (once: the first process to create FILE), the process
exits at once with status 70, as a segfaulting reader or an OOM-killed worker would. Unset
(always, outside tests), reaching a point costs one environment lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_POINT = "NODULE_FAILPOINT"
ENV_FILE = "NODULE_FAILPOINT_FILE"
ENV_CRASH = "NODULE_CRASHPOINT"
CRASH_STATUS = 70


def reached(name: str) -> None:
    """Freeze here if a test asked for this point."""
    if os.environ.get(ENV_POINT) != name:
        return
    marker = os.environ.get(ENV_FILE)
    if marker:
        Path(marker).write_text(name, encoding="utf-8")
    time.sleep(120)


def crash_if(name: str) -> None:
    """Exit this process abruptly if a test asked for a crash here (see the module docstring)."""
    spec = os.environ.get(ENV_CRASH)
    if not spec:
        return
    point, _, once = spec.partition("@")
    if point != name:
        return
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os._exit(CRASH_STATUS)
