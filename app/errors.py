"""Errors of the HTTP layer's input (422, or 404 for what is not there) and the triple parser."""

from __future__ import annotations

import math

from model.ct.geometry import CT_SPACING_RANGE_MM


class InputError(ValueError):
    """A query parameter or form field that cannot be used; the message says which and why."""


class NotFoundError(KeyError):
    """An unknown series or nodule id (404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


#: Voxel sizes a CT can have, mm: the readers' own bound (``model.ct.geometry``).
SPACING_RANGE_MM = CT_SPACING_RANGE_MM


def parse_triple(
    text: str | None, name: str, *, low: float | None = None, limit: float = 1e4
) -> list[float] | None:
    """``"x,y,z"`` (or ``"[x, y, z]"``, spaces allowed) -> 3 finite floats; None when empty.

    Args:
        text: the field's text.
        name: the field, for the message.
        low: the least value allowed (None: any down to ``-limit``).
        limit: the largest magnitude allowed.

    Raises:
        InputError: not 3 finite numbers in range.
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
    least = -limit if low is None else low
    if not all(least <= v <= limit for v in values):
        raise InputError(f"{name} must lie within {least:g}..{limit:g}, got {text[:60]!r}")
    return values
