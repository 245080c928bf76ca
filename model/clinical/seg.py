"""The estimated mask of a queried nodule as a DICOM Segmentation (binary SEG), with highdicom.

The SEG belongs to the queried study like the SR (``model.clinical.sr``), which references its one
segment: source images are the CT slices the mask covers (their headers,
``HeaderSource.slice_headers``), one frame per slice that holds any of the mask (highdicom leaves
empty frames out). The segment is a nodule (SCT) found from the point a user gave (semi-automatic):
by the network's mask branch (``model.clinical.nodule_mask``), by region growing
(``model.clinical.measure.grow_region``) or given as an uploaded mask; the algorithm's name and the
content description say which.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from model.clinical.measure import EstimatedBy, NoduleRegion
from model.ct.dicom import SliceHeaders, with_copied_type2

SEGMENT_NUMBER = 1
SEGMENT_LABEL = "query nodule (estimate)"
ALGORITHM = "nodule-search region growing"


#: The segment's recommended display colour: an orange that stands out on lung and soft tissue.
DISPLAY_COLOR = hd.color.CIELabColor.from_string("orange")


def _description(version: str, how: EstimatedBy) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=SEGMENT_NUMBER,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=f"nodule-search {how}", version=version, family=codes.DCM.AnalyticalAlgorithm
        ),
        # Viewers draw the segment in it (OHIF warns and picks its own colour without one).
        display_color=DISPLAY_COLOR,
    )


def series_mask(region: NoduleRegion, headers: list[Dataset]) -> np.ndarray:
    """The region's mask on the full slices of ``headers`` (z, rows, columns) as uint8.

    ``headers``: the series' slices ``region.start_zyx[0]`` onwards, one per mask slice.
    """
    depth, height, width = region.mask_zyx.shape
    if len(headers) != depth:
        raise ValueError(f"{len(headers)} slice headers for a mask of {depth} slices")
    rows, columns = int(headers[0].Rows), int(headers[0].Columns)
    _, y0, x0 = region.start_zyx
    out = np.zeros((depth, rows, columns), dtype=np.uint8)
    out[:, y0 : y0 + height, x0 : x0 + width] = region.mask_zyx
    return out


def mask_segmentation(
    source: SliceHeaders,
    region: NoduleRegion,
    software_version: str,
    *,
    series_number: int = 991,
    how: EstimatedBy = "region growing",
) -> hd.seg.Segmentation:
    """A binary SEG of a nodule region on the slices of ``source`` it covers.

    ``how``: how the region was found (named in the algorithm and the content description).

    Raises:
        ValueError: the headers do not match the mask (highdicom's checks too).
    """
    z0 = region.start_zyx[0]
    headers = source.slice_headers(z0, z0 + region.mask_zyx.shape[0])
    return hd.seg.Segmentation(
        source_images=[with_copied_type2(h) for h in headers],
        pixel_array=series_mask(region, headers),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(software_version, how)],
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="nodule-search",
        manufacturer_model_name="nodule-search",
        software_versions=software_version,
        device_serial_number="none",
        content_label="NODULE",
        content_description=f"Estimated nodule mask ({how}), not a diagnosis",
    )


def segment_reference(seg: hd.seg.Segmentation) -> hd.sr.ReferencedSegment:
    """The SR's reference to the SEG's segment (TID 1411), with the source series."""
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=SEGMENT_NUMBER,
        source_series=hd.sr.SourceSeriesForSegmentation(
            str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
        ),
    )
