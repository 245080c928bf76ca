"""Named points where tests can freeze a running build to kill it (crash-safety tests).

When ``NODULE_FAILPOINT`` names the point being reached, the process writes the point's name to
the file ``NODULE_FAILPOINT_FILE`` and sleeps, waiting to be killed. Unset (always, outside
tests), reaching a point costs one environment lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_POINT = "NODULE_FAILPOINT"
ENV_FILE = "NODULE_FAILPOINT_FILE"


def reached(name: str) -> None:
    """Freeze here if a test asked for this point."""
    if os.environ.get(ENV_POINT) != name:
        return
    marker = os.environ.get(ENV_FILE)
    if marker:
        Path(marker).write_text(name, encoding="utf-8")
    time.sleep(120)
