"""Where the things a catalogue names are found: its scans and its model.

A catalogue records each scan as an *address*: a ``.mhd``/``.mha``/``.nii(.gz)`` file, a DICOM
folder, or ``dicomweb:STUDY/SERIES`` for a series a PACS holds. ``open_source`` opens any of
them for region reads, for the index build, the evaluation and the service alike.

Paths are recorded as the build saw them, with the index folder's own path then
(``manifest["index_dir"]``). A catalogue moved or mounted elsewhere together with its data and
models (``index/`` beside ``data/`` and ``models/``) finds them at the same place relative to
its new folder (``relocated``); the service also looks a scan up by series UID under its data
root (``NODULE_DATA_DIR``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.ct import open_volume
from model.dicomweb import DicomwebSeriesSource, Pacs, parse_pacs_address
from model.volume import VolumeReadError, VolumeSource


def open_source(
    address: str | Path, pacs: Pacs | None = None, series_uid: str | None = None
) -> VolumeSource:
    """The CT at a catalogue address, for region reads.

    Args:
        address: a file, a DICOM folder, or a ``dicomweb:`` address read from ``pacs``.
        pacs: the PACS ``dicomweb:`` addresses are read from (a connection of the caller's).
        series_uid: which series of a DICOM folder that holds several.

    Raises:
        VolumeReadError: unreadable, or a ``dicomweb:`` address and no PACS (the message does
            not repeat the address: it names UIDs).
    """
    parsed = parse_pacs_address(str(address))
    if parsed is None:
        return open_volume(Path(address), series_uid)
    if pacs is None:
        raise VolumeReadError("a series held by a PACS, but no PACS is configured")
    return DicomwebSeriesSource(pacs, parsed[0], parsed[1])


def relocated(recorded: Path, index_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """Where a path a build recorded is now.

    ``recorded`` itself when it exists (or is a ``dicomweb:`` address); else the same place
    relative to ``index_dir`` as it was to the index folder when the version was built, when
    something is there; else ``recorded`` (the caller reports it missing).
    """
    built_in = manifest.get("index_dir")
    if recorded.exists() or parse_pacs_address(str(recorded)) or not built_in:
        return recorded
    moved = Path(os.path.normpath(index_dir.absolute() / os.path.relpath(recorded, built_in)))
    return moved if moved.exists() else recorded


def model_dir_of(index_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """The model folder a catalogue version was built with (``relocated``, see the docstring)."""
    return relocated(Path(str(manifest["model_dir"])), index_dir, manifest)
