"""A similar-case search as a DICOM Comprehensive 3D SR (TID 1500, Measurement Report).

The report belongs to the queried study: highdicom copies the patient and study modules of the
evidence (the headers of the CT slices the query used) and references those instances; no other
patient's identifiers go in (neighbours are named by their catalogue id only). Its content tree:

- TID 1500 Imaging Measurement Report, observer: this software as a device (its model
  fingerprint as the device's model name);
- the query nodule as two TID 1410 planar ROI groups of one tracking identifier ("query
  nodule"): the point on the axial image through it (SCOORD POINT referencing that slice's SOP
  instance: what an image viewer such as OHIF jumps to and draws), then the same point in 3-D
  (SCOORD3D POINT in the queried series' frame of reference); finding type Nodule, finding site
  Lung; with a size estimate, its mean diameter (Lung-RADS, mm) and volume (mm3), and the type and
  Lung-RADS category as qualitative evaluations; when the estimated mask goes along as a SEG
  (``model.clinical.seg``), the size sits instead in a TID 1411 volumetric group of the same
  tracking identifier that references the SEG's segment (and the SEG is in the evidence);
- the vote group (TID 1501, the query nodule's tracking identifier): the best similarity and the
  threshold, whether the catalogue holds a close match, and only when the vote is not withheld
  (``model.clinical.vote.MatchState``) the similarity-weighted malignant share and its majority as a
  qualitative evaluation. A withheld vote codes neither: the SR never says more than the screen
  does;
- one TID 1501 group per neighbour, also of the query nodule's tracking identifier (each is a
  finding about the query: how alike it is to one catalogue nodule): the catalogue nodule named
  in a text item ("similar case 1: catalogue nodule 7"), the cosine similarity and the mean of its
  readers' malignancy ratings (codes of this project's private scheme ``99NODSRCH``: DICOM has
  none for them); and, when the catalogue version records a close-match threshold, whether it is a
  weak match (below the threshold), as the screen marks it;
- as text: the search's state in words (close match, or no close match with the best similarity
  and the threshold, the vote withheld) and the decision-support disclaimer.

A size the radiologist measured with the ruler (``model.clinical.measure.RulerMeasurement``) goes
into the query group as long axis, short axis and mean diameter with the method "measured by the
user", and its Lung-RADS category as such. It replaces the estimate's diameter and category
(the SR never holds two sizes or two categories); the estimate's volume and type stay, marked as
estimates.

Every measurement group carries the query nodule's tracking identifier, so every group has the
query's coordinates: viewers that draw a report's groups (OHIF merges the groups of one tracking
UID into one annotation) find a point for each, and none needs a group without one handled.

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

from model.clinical.measure import EstimatedBy, NoduleMeasurement, RulerMeasurement
from model.clinical.vote import UNKNOWN_MATCH, MatchState
from model.ct.dicom import SliceHeaders, with_copied_type2
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
WEAK_MATCH = hd.sr.CodedConcept("SIM008", SCHEME, "Weak match (below the close-match threshold)")
SEARCH_STATE = hd.sr.CodedConcept("SIM009", SCHEME, "Similar-case search state")
BEST_SIMILARITY = hd.sr.CodedConcept("SIM010", SCHEME, "Best similarity of the neighbours")
MATCH_THRESHOLD = hd.sr.CodedConcept("SIM011", SCHEME, "Close-match threshold")
CLOSE_MATCH = hd.sr.CodedConcept("SIM012", SCHEME, "Close match in the catalogue")
BY_USER = hd.sr.CodedConcept("SIM013", SCHEME, "Measured by the user (ruler)")
BY_ESTIMATE = hd.sr.CodedConcept("SIM014", SCHEME, "Estimated from the image (region growing)")
#: The method of an estimate's measurements, by how its mask was found (one code each).
ESTIMATE_METHODS: dict[EstimatedBy, hd.sr.CodedConcept] = {
    "region growing": BY_ESTIMATE,
    "network mask": hd.sr.CodedConcept(
        "SIM016", SCHEME, "Estimated from the image (the network's mask)"
    ),
    "uploaded mask": hd.sr.CodedConcept("SIM017", SCHEME, "Measured on the uploaded mask"),
}
LUNG_RADS_MEASURED = hd.sr.CodedConcept(
    "SIM015", SCHEME, "Lung-RADS v2022 size category (user's measurement)"
)
SIMILAR_CASE = hd.sr.CodedConcept("SIM018", SCHEME, "Similar case in the catalogue")
VOTE_TITLE = hd.sr.CodedConcept("SIM019", SCHEME, "Similar-case vote of the catalogue version")
NO_UNIT = hd.sr.CodedConcept("1", "UCUM", "no units")
DISCLAIMER = (
    "Decision support from similar cases, not a diagnosis. Sizes and types are estimates from "
    "the image unless marked as measured by the user."
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
    weak_match: bool | None = None
    """Below the catalogue's close-match threshold (None: the version records none)."""


@dataclass(frozen=True)
class SlicePoint:
    """The query point on the image through it: an image-referenced SCOORD, a viewer's link."""

    sop_class_uid: str
    sop_instance_uid: str
    column_row: tuple[float, float]
    """DICOM image coordinates of the point (column, row; the top left pixel's centre is at
    (0.5, 0.5), PS3.3 C.18.6.1.1)."""
    study_uid: str = ""
    series_uid: str = ""


def slice_point(headers: SliceHeaders, center_xyz: tuple[float, float, float]) -> SlicePoint | None:
    """The slice nearest ``center_xyz`` and the point on it (None: no header of that slice)."""
    index_z, index_y, index_x = headers.geometry.world_to_index_zyx(np.asarray(center_xyz))
    k = round(float(index_z))
    found = headers.slice_headers(k, k + 1)
    if not found:
        return None
    header = found[0]
    return SlicePoint(
        sop_class_uid=str(header.SOPClassUID),
        sop_instance_uid=str(header.SOPInstanceUID),
        column_row=(float(index_x) + 0.5, float(index_y) + 0.5),
        study_uid=str(header.get("StudyInstanceUID", "")),
        series_uid=str(header.get("SeriesInstanceUID", "")),
    )


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
    """The estimated mask's segment in a SEG that goes with the report (``model.clinical.seg``)."""
    match: MatchState = UNKNOWN_MATCH
    """Whether the catalogue holds a close match; a withheld vote is not coded."""
    measured: RulerMeasurement | None = None
    """The radiologist's own axes of the query nodule (the ruler), when given."""
    size_method: EstimatedBy = "region growing"
    """How the estimate's mask was found (its measurements' method code)."""
    on_slice: SlicePoint | None = None
    """The point on the slice through it (the SR's image-referenced SCOORD; None: 3-D only)."""


def _size_items(
    size: NoduleMeasurement | None, *, measured: bool = False, how: EstimatedBy = "region growing"
) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation]]:
    """The estimate's diameter, volume, type and Lung-RADS category (each marked an estimate).

    ``measured``: the user gave their own axes, which replace the estimate's diameter and
    Lung-RADS category (the answer and the viewer show only the user's): volume and type stay.
    """
    if size is None:
        return [], []
    method = ESTIMATE_METHODS[how]
    measurements = [
        hd.sr.Measurement(
            codes.SCT.Volume, size.volume_mm3, codes.UCUM.CubicMillimeter, method=method
        ),
    ]
    if not measured:
        diameter = hd.sr.Measurement(
            codes.SCT.Diameter, size.mean_diameter_mm, codes.UCUM.Millimeter, method=method
        )
        measurements.insert(0, diameter)
    evaluations = []
    if size.nodule_type is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(NODULE_TYPE, _TYPES[size.nodule_type]))
    if size.lung_rads is not None and not measured:
        evaluations.append(hd.sr.QualitativeEvaluation(LUNG_RADS, _category(size.lung_rads)))
    return measurements, evaluations


def _category(lung_rads: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(f"LR{lung_rads}", SCHEME, lung_rads)


def _ruler_items(
    ruler: RulerMeasurement,
) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation]]:
    """The user's long and short axis and their mean, and the Lung-RADS category they give."""
    mm = codes.UCUM.Millimeter
    measurements = [
        hd.sr.Measurement(codes.SCT.LongAxis, ruler.long_axis_mm, mm, method=BY_USER),
        hd.sr.Measurement(codes.SCT.ShortAxis, ruler.short_axis_mm, mm, method=BY_USER),
        hd.sr.Measurement(codes.SCT.Diameter, ruler.mean_diameter_mm, mm, method=BY_USER),
    ]
    evaluations = []
    if ruler.lung_rads is not None:
        evaluations.append(
            hd.sr.QualitativeEvaluation(LUNG_RADS_MEASURED, _category(ruler.lung_rads))
        )
    return measurements, evaluations


_QueryGroup = (
    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
)


def _query_regions(findings: SearchFindings) -> list[hd.sr.ImageRegion | hd.sr.ImageRegion3D]:
    """The query point on its slice (when known), then in 3-D."""
    regions: list[hd.sr.ImageRegion | hd.sr.ImageRegion3D] = []
    if findings.on_slice is not None:
        regions.append(
            hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POINT,
                graphic_data=np.asarray([findings.on_slice.column_row], dtype=np.float64),
                source_image=hd.sr.SourceImageForRegion(
                    referenced_sop_class_uid=findings.on_slice.sop_class_uid,
                    referenced_sop_instance_uid=findings.on_slice.sop_instance_uid,
                ),
            )
        )
    regions.append(
        hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.asarray([findings.center_xyz], dtype=np.float64),
            frame_of_reference_uid=findings.frame_of_reference_uid,
        )
    )
    return regions


def _query_groups(
    findings: SearchFindings, tracking: hd.sr.TrackingIdentifier
) -> list[_QueryGroup]:
    """The query point (TID 1410, on its slice and in 3-D); with a SEG, its segment (TID 1411).

    The size goes on the first point group, or with a SEG on the segment's group; the user's
    ruler measurement, when given, always sits on the point: it is the radiologist's own.
    """
    estimated, estimate_evaluations = _size_items(
        findings.size, measured=findings.measured is not None, how=findings.size_method
    )
    on_segment = findings.segment is not None
    point_items: list[hd.sr.Measurement] = [] if on_segment else estimated
    point_evaluations = [] if on_segment else estimate_evaluations
    if findings.measured is not None:
        ruler, ruler_evaluations = _ruler_items(findings.measured)
        point_items = ruler + point_items
        point_evaluations = point_evaluations + ruler_evaluations
    groups: list[_QueryGroup] = []
    for rank, region in enumerate(_query_regions(findings)):
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_region=region,
                finding_type=codes.SCT.Nodule,
                finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
                measurements=(point_items or None) if rank == 0 else None,
                qualitative_evaluations=(point_evaluations or None) if rank == 0 else None,
            )
        )
    if findings.segment is not None:
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_segment=findings.segment,
                finding_type=codes.SCT.Nodule,
                finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
                measurements=estimated or None,
                qualitative_evaluations=estimate_evaluations or None,
            )
        )
    return groups


def _yes_no(flag: bool) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept.from_code(codes.SCT.Yes if flag else codes.SCT.No)


def _titled(
    group: hd.sr.MeasurementsAndQualitativeEvaluations, name: hd.sr.CodedConcept, title: str
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """``group`` with ``title`` as a text item after its tracking identifiers."""
    group[0].ContentSequence.append(_text(name, title))
    return group


def _neighbor_group(
    case: SimilarCase, rank: int, tracking: hd.sr.TrackingIdentifier
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """How alike the query nodule (``tracking``) is to one catalogue nodule."""
    measurements = [hd.sr.Measurement(SIMILARITY, case.similarity, NO_UNIT)]
    if case.mean_rating is not None:
        measurements.append(hd.sr.Measurement(MEAN_RATING, case.mean_rating, NO_UNIT))
    evaluations = None
    if case.weak_match is not None:
        evaluations = [hd.sr.QualitativeEvaluation(WEAK_MATCH, _yes_no(case.weak_match))]
    weak = " (weak match)" if case.weak_match else ""
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=codes.SCT.Nodule,
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )
    return _titled(
        group, SIMILAR_CASE, f"similar case {rank}: catalogue nodule {case.nodule_id}{weak}"
    )


def _match_items(
    match: MatchState,
) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation]]:
    """The best similarity, the threshold and whether that is a close match, where known."""
    measurements = []
    if match.best_similarity is not None:
        measurements.append(hd.sr.Measurement(BEST_SIMILARITY, match.best_similarity, NO_UNIT))
    if match.threshold is not None:
        measurements.append(hd.sr.Measurement(MATCH_THRESHOLD, match.threshold, NO_UNIT))
    evaluations = []
    if match.close_match is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(CLOSE_MATCH, _yes_no(match.close_match)))
    return measurements, evaluations


def _vote_group(
    findings: SearchFindings, tracking: hd.sr.TrackingIdentifier
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The query nodule's match state, and its vote unless withheld (then no vote concept)."""
    measurements, evaluations = _match_items(findings.match)
    withheld = findings.match.withheld
    if not withheld and findings.malignant_probability is not None:
        measurements.append(
            hd.sr.Measurement(MALIGNANT_SHARE, findings.malignant_probability, NO_UNIT)
        )
    if not withheld and findings.vote_binary is not None:
        verdict = codes.SCT.Malignant if findings.vote_binary == 1 else codes.SCT.Benign
        evaluations.append(hd.sr.QualitativeEvaluation(VOTE, verdict))
    title = "similar-case vote withheld" if withheld else "similar-case vote"
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
    )
    return _titled(group, VOTE_TITLE, f"{title} ({findings.index_version})")


def state_text(match: MatchState) -> str:
    """The search's state in words, as the screen says it."""
    if match.best_similarity is None:
        return "No neighbour was found in the catalogue; no similar-case vote."
    if match.threshold is None:
        return (
            f"Best similarity {match.best_similarity:.3f}; this catalogue version records no "
            "close-match threshold, so no neighbour is marked as a weak match."
        )
    if match.withheld:
        return (
            f"No close match in the catalogue: the best similarity {match.best_similarity:.3f} "
            f"is below the close-match threshold {match.threshold:.3f}. The similar-case vote "
            "is withheld; the neighbours are listed for reference only."
        )
    return (
        f"Close match in the catalogue: the best similarity {match.best_similarity:.3f} is at or "
        f"above the close-match threshold {match.threshold:.3f}. Neighbours below it are "
        "marked as weak matches."
    )


def _text(name: hd.sr.CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
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
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="query nodule")
    groups: list[_QueryGroup | hd.sr.MeasurementsAndQualitativeEvaluations] = []
    groups += _query_groups(findings, tracking)
    # The vote before the neighbours it sums up: a viewer's label box lists the first numbers.
    groups.append(_vote_group(findings, tracking))
    groups += [_neighbor_group(c, i + 1, tracking) for i, c in enumerate(findings.neighbors)]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups,
    )
    root = report[0].ContentSequence
    # The state in words just before the measurements it qualifies; the notice closes the tree.
    root.insert(len(root) - 1, _text(SEARCH_STATE, state_text(findings.match)))
    root.append(_text(DISCLAIMER_NAME, DISCLAIMER))
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
