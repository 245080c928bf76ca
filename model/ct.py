"""The one CT reader: every supported format in, HU float32 plus ITK/LPS geometry out.

Formats: MetaImage (``.mhd`` + ``.raw``, ``.mha``), NIfTI (``.nii``, ``.nii.gz``) and DICOM series
folders. ``open_volume`` returns a region source where the format allows reading only the needed
box (uncompressed MetaImage, DICOM folders); ``load_volume`` always reads everything.
"""

from __future__ import annotations

from pathlib import Path

from model.dicom_io import DicomSeriesSource, load_dicom_series
from model.itk_io import (
    METAIMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    load_itk_volume,
    open_itk_source,
    suffix_of,
)
from model.volume import CTVolume, VolumeReadError, VolumeSource

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


def load_volume(path: Path, series_uid: str | None = None) -> CTVolume:
    """Read a whole CT volume.

    Args:
        path: a ``.mhd``/``.mha``/``.nii``/``.nii.gz`` file or a folder holding a DICOM series.
        series_uid: for DICOM folders with several CT series, which one to read.

    Raises:
        VolumeReadError: the file or series cannot be read; the message says which and why.
    """
    if _kind(path) == "dicom":
        return load_dicom_series(path, series_uid)
    return load_itk_volume(path)


def open_volume(path: Path, series_uid: str | None = None) -> VolumeSource:
    """Open a CT volume for region reads (only the box a patch needs is read, where possible)."""
    if _kind(path) == "dicom":
        return DicomSeriesSource(path, series_uid)
    return open_itk_source(path)
