"""The public names of ``model.ct``: read by ``lazy_loader`` and by type checkers."""

from .dicom import (
    DicomSeriesSource,
    HeaderSnapshot,
    HeaderSource,
    SliceHeaders,
    evidence_header,
    read_series_uid,
    with_copied_type2,
)
from .dicomweb import DicomwebSeriesSource, Pacs, StoredInstance
from .evidence import ReportHeaderError, check_evidence, read_leniently
from .geometry import CT_SPACING_RANGE_MM, Geometry, GeometryError, axis_aligned, spacing_zyx
from .itk import MAX_DIM, MAX_VOXELS, load_itk_volume, open_itk_source, suffix_of, write_metaimage
from .open import load_volume, open_source, open_volume
from .pacs import (
    PacsConfig,
    PacsError,
    PacsUnavailableError,
    SeriesNotInPacsError,
    check_uid,
    pacs_address,
    parse_pacs_address,
)
from .volume import CTVolume, F32Array, VolumeReadError, VolumeSource, check_read_budget

__all__ = [
    "CT_SPACING_RANGE_MM",
    "MAX_DIM",
    "MAX_VOXELS",
    "CTVolume",
    "DicomSeriesSource",
    "DicomwebSeriesSource",
    "F32Array",
    "Geometry",
    "GeometryError",
    "HeaderSnapshot",
    "HeaderSource",
    "Pacs",
    "PacsConfig",
    "PacsError",
    "PacsUnavailableError",
    "ReportHeaderError",
    "SeriesNotInPacsError",
    "SliceHeaders",
    "StoredInstance",
    "VolumeReadError",
    "VolumeSource",
    "axis_aligned",
    "check_evidence",
    "check_read_budget",
    "check_uid",
    "evidence_header",
    "load_itk_volume",
    "load_volume",
    "open_itk_source",
    "open_source",
    "open_volume",
    "pacs_address",
    "parse_pacs_address",
    "read_leniently",
    "read_series_uid",
    "spacing_zyx",
    "suffix_of",
    "with_copied_type2",
    "write_metaimage",
]
