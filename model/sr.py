"""A similar-case search as a DICOM Comprehensive 3D SR (TID 1500, Measurement Report).

The report belongs to the queried study: highdicom copies the patient and study modules of the
evidence (the headers of the CT slices the query used) and references those instances; no other
patient's identifiers go in (neighbours are named by their catalogue id only). Its content tree:

- TID 1500 Imaging Measurement Report, observer: this software as a device (its model
  fingerprint as the device's model name);
- one TID 1410 planar ROI group, "query nodule": the query point as an image region (SCOORD3D
  POINT in the queried series' frame of reference), finding type Nodule, finding site Lung; with
  a size estimate, its mean diameter (Lung-RADS, mm) and volume (mm3), and the type and Lung-RADS
  category as qualitative evaluations; when the estimated mask goes along as a SEG
  (``model.seg``), the size sits instead in a TID 1411 volumetric group of the same tracking
  identifier that references the SEG's segment (and the SEG is in the evidence);
- one TID 1501 group per neighbour: its catalogue id as the tracking identifier, the cosine
  similarity and the mean of its readers' malignancy ratings (codes of this project's private
  scheme ``99NODSRCH``: DICOM has none for them);
- the vote: the similarity-weighted malignant share and its majority as a qualitative
  evaluation, with the decision-support disclaimer as text.

Built with highdicom (the maintained library for DICOM SR, SEG and their templates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from model.dicom_io import SliceHeaders, with_copied_type2
from model.measure import NoduleMeasurement
from model.preprocessing import PatchSpec, patch_slice_range

#: This project's private coding scheme (DICOM PS3.16 8.2: designators starting with 99).
SCHEME = "99NODSRCH"
SIMILARITY = hd.sr.CodedConcept("SIM001", SCHEME, "Cosine similarity to the query nodule")
MEAN_RATING = hd.sr.CodedConcept("SIM002", SCHEME, "Mean malignancy rating of the readers")
MALIGNANT_SHARE = hd.sr.CodedConcept("SIM003", SCHEME, "Similarity-weighted malignant share")
VOTE = hd.sr.CodedConcept("SIM004", SCHEME, "Similar-case malignancy vote")
NODULE_TYPE = hd.sr.CodedConcept("SIM005", SCHEME, "Nodule type (estimate)")
LUNG_RADS = hd.sr.CodedConcept("SIM006", SCHEME, "Lung-RADS v2022 size category (estimate)")
DISCLAIMER_NAME = hd.sr.CodedConcept("SIM007", SCHEME, "Decision support notice")
NO_UNIT = hd.sr.CodedConcept("1", "UCUM", "no units")
DISCLAIMER = (
    "Decision support from similar cases, not a diagnosis. Sizes and types are estimates from "
    "the image."
)
_TYPES = {
    "solid": hd.sr.CodedConcept("SIM101", SCHEME, "Solid"),
    "part-solid": hd.sr.CodedConcept("SIM102", SCHEME, "Part-solid"),
    "ground-glass": hd.sr.CodedConcept("SIM103", SCHEME, "Ground-glass"),
}


@dataclass(frozen=True)
class SimilarCase:
    """One neighbour as the report names it: no identifier of its patient."""

    nodule_id: int
    similarity: float
    mean_rating: float | None


@dataclass(frozen=True)
class SearchFindings:
    """What a search found, for the report."""

    center_xyz: tuple[float, float, float]
    frame_of_reference_uid: str
    neighbors: Sequence[SimilarCase]
    malignant_probability: float | None
    vote_binary: int | None
    size: NoduleMeasurement | None
    model_fingerprint: str
    index_version: str
    segment: hd.sr.ReferencedSegment | None = None
    """The estimated mask's segment in a SEG that goes with the report (``model.seg``)."""


def _size_items(
    size: NoduleMeasurement | None,
) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation]]:
    if size is None:
        return [], []
    measurements = [
        hd.sr.Measurement(codes.SCT.Diameter, size.mean_diameter_mm, codes.UCUM.Millimeter),
        hd.sr.Measurement(codes.SCT.Volume, size.volume_mm3, codes.UCUM.CubicMillimeter),
    ]
    evaluations = []
    if size.nodule_type is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(NODULE_TYPE, _TYPES[size.nodule_type]))
    if size.lung_rads is not None:
        category = hd.sr.CodedConcept(f"LR{size.lung_rads}", SCHEME, size.lung_rads)
        evaluations.append(hd.sr.QualitativeEvaluation(LUNG_RADS, category))
    return measurements, evaluations


_QueryGroup = (
    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
)


def _query_groups(findings: SearchFindings) -> list[_QueryGroup]:
    """The query point (TID 1410); with a SEG, the size on its segment (TID 1411) instead."""
    region = hd.sr.ImageRegion3D(
        graphic_type=hd.sr.GraphicTypeValues3D.POINT,
        graphic_data=np.asarray([findings.center_xyz], dtype=np.float64),
        frame_of_reference_uid=findings.frame_of_reference_uid,
    )
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="query nodule")
    measurements, evaluations = _size_items(findings.size)
    on_point = findings.segment is None
    groups: list[_QueryGroup] = [
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_region=region,
            finding_type=codes.SCT.Nodule,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
            measurements=(measurements or None) if on_point else None,
            qualitative_evaluations=(evaluations or None) if on_point else None,
        )
    ]
    if findings.segment is not None:
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_segment=findings.segment,
                finding_type=codes.SCT.Nodule,
                finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
                measurements=measurements or None,
                qualitative_evaluations=evaluations or None,
            )
        )
    return groups


def _neighbor_group(case: SimilarCase, rank: int) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements = [hd.sr.Measurement(SIMILARITY, case.similarity, NO_UNIT)]
    if case.mean_rating is not None:
        measurements.append(hd.sr.Measurement(MEAN_RATING, case.mean_rating, NO_UNIT))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"similar case {rank}: catalogue nodule {case.nodule_id}"
        ),
        finding_type=codes.SCT.Nodule,
        measurements=measurements,
    )


def _vote_group(findings: SearchFindings) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements = None
    if findings.malignant_probability is not None:
        share = hd.sr.Measurement(MALIGNANT_SHARE, findings.malignant_probability, NO_UNIT)
        measurements = [share]
    evaluations = None
    if findings.vote_binary is not None:
        verdict = codes.SCT.Malignant if findings.vote_binary == 1 else codes.SCT.Benign
        evaluations = [hd.sr.QualitativeEvaluation(VOTE, verdict)]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"similar-case vote ({findings.index_version})"
        ),
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def evidence_for(
    source: SliceHeaders, center_xyz: tuple[float, float, float], spec: PatchSpec
) -> list[Dataset]:
    """The headers of the slices a model's patch around ``center_xyz`` spans (the evidence)."""
    return source.slice_headers(*patch_slice_range(source.geometry, center_xyz, spec))


def search_report(
    evidence: Sequence[Dataset],
    findings: SearchFindings,
    *,
    series_number: int = 990,
) -> hd.sr.Comprehensive3DSR:
    """The SR of one search; ``evidence``: headers of the queried CT slices (one study).

    Raises:
        ValueError: no evidence, or evidence of several studies (highdicom's own checks too).
    """
    if not evidence:
        raise ValueError("an SR needs the headers of the queried CT series (DICOM)")
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["nodule-search", findings.model_fingerprint]),
            name="nodule-search",
            model_name=findings.model_fingerprint[:12],
        ),
    )
    groups: list[_QueryGroup | hd.sr.MeasurementsAndQualitativeEvaluations] = []
    groups += _query_groups(findings)
    groups += [_neighbor_group(c, i + 1) for i, c in enumerate(findings.neighbors)]
    groups.append(_vote_group(findings))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
    )
    notice = hd.sr.TextContentItem(
        name=DISCLAIMER_NAME,
        value=DISCLAIMER,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    report[0].ContentSequence.append(notice)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[with_copied_type2(h) for h in evidence],
        content=report[0],
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="nodule-search",
        is_complete=True,
    )
    # A private coding scheme is declared in the object that uses it (PS3.3 C.12.1.1.2).
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "nodule-search similar-case search"
    scheme.CodingSchemeResponsibleOrganization = "nodule-search project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr
