"""Input errors of the HTTP layer (answered 422 with the message) and the triple parser."""

from __future__ import annotations

import math


class InputError(ValueError):
    """A query parameter or form field that cannot be used; the message says which and why."""


def parse_triple(text: str | None, name: str) -> list[float] | None:
    """``"x,y,z"`` (or ``"[x, y, z]"``, spaces allowed) -> 3 finite floats; None when empty.

    Raises:
        InputError: not 3 finite numbers.
    """
    if text is None or not text.strip():
        return None
    try:
        values = [
            float(v)
            for v in text.replace("[", "").replace("]", "").replace(" ", ",").split(",")
            if v
        ]
    except ValueError:
        raise InputError(f"{name} must be 3 numbers, got {text[:60]!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{name} must be 3 finite numbers, got {text[:60]!r}")
    return values
