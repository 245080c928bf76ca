"""Where the things a catalogue names are found: its scans and its model.

A catalogue records each scan as an *address*: a ``.mhd``/``.mha``/``.nii(.gz)`` file, a DICOM
folder, or ``dicomweb:STUDY/SERIES`` for a series a PACS holds. ``open_source`` opens any of
them for region reads, for the index build, the evaluation and the service alike.
"""

from __future__ import annotations

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


def model_dir_of(index_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """The model folder a catalogue version was built with.

    The path the build recorded; when that holds no model (the catalogue and its models were
    moved or mounted elsewhere together), the same place relative to ``index_dir``.
    """
    recorded = Path(str(manifest["model_dir"]))
    relative = manifest.get("model_dir_relative")
    if (recorded / "card.json").is_file() or not relative:
        return recorded
    moved = (index_dir / str(relative)).resolve()
    return moved if (moved / "card.json").is_file() else recorded
