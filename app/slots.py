"""Bounded concurrency for expensive work: full slots answer 503 with ``Retry-After``.

A request that finds every slot taken waits a little (``wait_s``), then is refused instead of
queueing without end.

Two kinds of work are bounded: upload parsers (their memory caps add up, ``NODULE_MAX_PARSERS``)
and report / size work in the server process (a DICOM SR with its SEG costs about 0.5 s of CPU,
a size estimate about 50 ms; with 8 clients the estimate's p99 reached 2.1 s unbounded,
``NODULE_MAX_REPORTS``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SlotsBusyError(RuntimeError):
    """Every slot of a kind of work is taken (HTTP 503 with ``Retry-After``)."""

    def __init__(self, what: str, slots: int, setting: str, retry_after_s: int) -> None:
        super().__init__(
            f"all {slots} {what} are busy; retry in {retry_after_s} s "
            f"({setting} bounds how many run at once)"
        )
        self.retry_after_s = retry_after_s


class Slots:
    """At most ``slots`` holders at once; one that waits ``wait_s`` in vain is refused."""

    def __init__(
        self, what: str, setting: str, slots: int, wait_s: float, retry_after_s: int
    ) -> None:
        self.what = what
        self.setting = setting
        self.slots = slots
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self._free = threading.BoundedSemaphore(slots)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """One slot for the block.

        Raises:
            SlotsBusyError: none freed within ``wait_s``.
        """
        if not self._free.acquire(timeout=self.wait_s):
            raise SlotsBusyError(self.what, self.slots, self.setting, self.retry_after_s)
        try:
            yield
        finally:
            self._free.release()
