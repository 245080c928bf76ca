"""A catalogue version's ``manifest.json``: one typed record, written by the build, read by all.

The build writes it last (its presence marks a version complete); the catalogue, the service's
health and model lookup, the evaluation and the next build read it back as this same model, so a
field is named, typed and documented once. The ``builds`` table of the version's SQLite holds the
same record without the files' checksums.

Paths are recorded as the build saw them, with the index folder's own path then (``index_dir``).
A catalogue moved or mounted elsewhere together with its data and models (``index/`` beside
``data/`` and ``models/``) finds them at the same place relative to its new folder
(``Manifest.relocated``).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from model.ct.pacs import parse_pacs_address


class Manifest(BaseModel):
    """What one build wrote (``manifest.json``); every reader gets this, never a dict."""

    # Keys a newer build may add are left alone, not a reason to refuse the catalogue.
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: str
    parent_version: str | None = None
    """The version whose unchanged vectors this one reused (None: built from scratch)."""
    created_at: datetime
    model_fingerprint: str
    model_dir: str
    """The model folder when built (absolute); see ``model_dir_at``."""
    index_dir: str
    """The index folder when built (absolute): recorded paths are found relative to it when the
    catalogue has moved together with its data and models (``relocated``)."""
    model: dict[str, Any] = Field(default_factory=dict)
    """The model card's summary (``ModelCard.summary``)."""
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    """The patch the vectors were cut with (``PatchSpec``, JSON)."""
    data_fingerprint: str
    """sha256 over the data the build read (the next build compares it)."""
    index_type: str = "exact"
    index_params: dict[str, Any] = Field(default_factory=dict)
    n_scans: int
    n_nodules: int
    n_labelled: int
    n_embedded: int
    """Nodules embedded by this build; the rest were reused from ``parent_version``."""
    n_reused: int
    dim: int
    """The stored vector's length."""
    failed_scans: list[dict[str, str]] = Field(default_factory=list)
    match_threshold: dict[str, Any] | None = None
    """The calibrated close-match threshold (``model.store.calibration.MatchThreshold``)."""
    timings_s: dict[str, float] = Field(default_factory=dict)
    code_version: str
    files: dict[str, str] = Field(default_factory=dict)
    """sha256 of each data file of the version, by name."""

    @field_serializer("created_at")
    def _iso(self, value: datetime) -> str:
        # isoformat ("+00:00"), as every manifest has been written.
        return value.isoformat()

    def to_json(self) -> dict[str, Any]:
        """The object ``manifest.json`` holds."""
        return self.model_dump(mode="json")

    def relocated(self, recorded: Path, index_dir: Path) -> Path:
        """Where a path this build recorded is now, the catalogue being at ``index_dir``.

        ``recorded`` itself when it exists (or is a ``dicomweb:`` address); else the same place
        relative to ``index_dir`` as it was to the index folder when the version was built,
        when something is there; else ``recorded`` (the caller reports it missing).
        """
        if recorded.exists() or parse_pacs_address(str(recorded)):
            return recorded
        relative = os.path.relpath(recorded, self.index_dir)
        moved = Path(os.path.normpath(index_dir.absolute() / relative))
        return moved if moved.exists() else recorded

    def model_dir_at(self, index_dir: Path) -> Path:
        """The model folder this version was built with, the catalogue being at ``index_dir``."""
        return self.relocated(Path(self.model_dir), index_dir)
