"""The one door to a CT: an address in, HU float32 plus ITK/LPS geometry out.

An *address* is what a catalogue records for a scan and what a caller names: a ``.mhd``/``.mha``/
``.nii``/``.nii.gz`` file, a DICOM series folder, or ``dicomweb:STUDY/SERIES`` for a series a PACS
holds (``model.ct.pacs``). ``open_source`` turns any of them into a region source, for the
index build, the evaluation and the service alike; ``load_volume`` reads a whole file or folder.

Which reader serves an address is decided here and nowhere else (as nnU-Net's reader registry
does): MetaImage and NIfTI by ``model.ct.itk``, DICOM folders by ``model.ct.dicom``, PACS series by
``model.ct.dicomweb``. Region sources read only the box a patch needs where the format allows it
(uncompressed MetaImage, DICOM folders, DICOMweb frames).
"""

from __future__ import annotations

from pathlib import Path

from model.ct.dicom import DicomSeriesSource, load_dicom_series
from model.ct.dicomweb import DicomwebSeriesSource, Pacs
from model.ct.itk import (
    METAIMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    load_itk_volume,
    open_itk_source,
    suffix_of,
)
from model.ct.pacs import parse_pacs_address
from model.ct.volume import CTVolume, VolumeReadError, VolumeSource

SUPPORTED = "a .mhd/.raw pair, .mha, .nii, .nii.gz or a DICOM series folder"


def _kind(path: Path) -> str:
    if path.is_dir():
        return "dicom"
    if not path.is_file():
        raise VolumeReadError(f"{path.name}: no such file or folder")
    suffix = suffix_of(path)
    if suffix in METAIMAGE_SUFFIXES or suffix in NIFTI_SUFFIXES:
        return "itk"
    raise VolumeReadError(f"{path.name}: unsupported file type {suffix!r}; expected {SUPPORTED}")


def load_volume(
    path: Path, series_uid: str | None = None, max_read_bytes: int | None = None
) -> CTVolume:
    """Read a whole CT volume.

    Args:
        path: a ``.mhd``/``.mha``/``.nii``/``.nii.gz`` file or a folder holding a DICOM series.
        series_uid: for DICOM folders with several CT series, which one to read.
        max_read_bytes: refuse an image file whose decoded voxels would take more (untrusted
            uploads); None: no bound.

    Raises:
        VolumeReadError: the file or series cannot be read; the message says which and why.
    """
    if _kind(path) == "dicom":
        return load_dicom_series(path, series_uid)
    return load_itk_volume(path, max_read_bytes)


def open_volume(
    path: Path, series_uid: str | None = None, max_read_bytes: int | None = None
) -> VolumeSource:
    """Open a CT file or DICOM folder for region reads (only the box a patch needs, if it can).

    ``max_read_bytes``: as ``load_volume``'s, for image files read whole.
    """
    if _kind(path) == "dicom":
        return DicomSeriesSource(path, series_uid)
    return open_itk_source(path, max_read_bytes)


def open_source(
    address: str | Path, pacs: Pacs | None = None, series_uid: str | None = None
) -> VolumeSource:
    """The CT at an address, for region reads.

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
    return open_pacs_series(pacs, parsed[0], parsed[1])


def open_pacs_series(pacs: Pacs, study_uid: str | None, series_uid: str) -> VolumeSource:
    """A series the PACS holds, for region reads.

    ``study_uid`` None: the PACS is asked which study holds the series.

    Raises:
        SeriesNotInPacsError / PacsUnavailableError: from the PACS.
        VolumeReadError: a UID that is not one.
    """
    return DicomwebSeriesSource(pacs, study_uid, series_uid)
