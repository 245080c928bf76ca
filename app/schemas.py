"""The API contract (pydantic), separate from the catalogue tables."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from model.clinical.measure import (
    RULER_MAX_MM,
    RULER_METHOD,
    EstimatedBy,
    NoduleMeasurement,
    RulerMeasurement,
    estimated_by,
)
from model.nn.query import SIZE_SOURCE_TITLES, QuerySize, SizeSource

XYZ = tuple[float, float, float]
#: The largest ``k`` any request may name; the service's own ``NODULE_MAX_K`` may be lower.
K_LIMIT = 1000
#: World coordinates beyond 10 m from the scanner's origin are no point in a CT.
COORDINATE_LIMIT_MM = 1e4


class Filters(BaseModel):
    """Which catalogue nodules may be returned."""

    model_config = ConfigDict(extra="forbid")

    exclude_patient_id: str | None = Field(
        default=None,
        max_length=128,
        description="drop this patient's nodules too (a coordinate search on a catalogue scan "
        "already drops that scan's patient unless include_own_patient is set)",
    )
    min_diameter_mm: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        allow_inf_nan=False,
        description="only neighbours whose recorded diameter is at least this (mm)",
    )
    max_diameter_mm: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        allow_inf_nan=False,
        description="only neighbours whose recorded diameter is at most this (mm)",
    )
    labelled_only: bool = Field(
        default=False,
        description="only neighbours with a benign/malignant label (mean rating not 3)",
    )


class MeasuredAxes(BaseModel):
    """The radiologist's own long and short axis of the queried nodule (a ruler, one slice)."""

    model_config = ConfigDict(extra="forbid")

    long_axis_mm: float = Field(
        gt=0, le=RULER_MAX_MM, allow_inf_nan=False, description="longest diameter, mm"
    )
    short_axis_mm: float = Field(
        gt=0,
        le=RULER_MAX_MM,
        allow_inf_nan=False,
        description="longest diameter perpendicular to it on the same slice, mm (the smaller of "
        "the two is taken as the short axis)",
    )


class CoordinateQuery(BaseModel):
    """A point in a stored CT series."""

    model_config = ConfigDict(extra="forbid")

    series_uid: str = Field(
        min_length=1,
        max_length=128,
        description="Series Instance UID of a stored CT (a catalogue scan, one under the data "
        "root, or with study_uid one in the PACS)",
    )
    study_uid: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="with a configured PACS (NODULE_DICOMWEB_URL): read the series from the "
        "PACS over DICOMweb",
    )
    center_xyz: XYZ = Field(description="world mm, ITK/LPS frame (LUNA16 coordX, coordY, coordZ)")
    # No static maximum: NODULE_MAX_K is the deployment's, checked with one message
    # (Retriever.neighbors); the served OpenAPI document states it (app.main).
    k: int = Field(default=5, ge=1, description="neighbours (at most NODULE_MAX_K)")
    filters: Filters = Field(default=Filters(), description="which catalogue nodules may answer")
    estimate_size: bool = Field(
        default=False,
        description="also estimate the queried nodule's size, type and Lung-RADS size category "
        "from the network's mask at the point (size_estimate.method names how)",
    )
    include_own_patient: bool = Field(
        default=False,
        description="also return nodules of the queried scan's patient (default: when the "
        "series is a catalogue scan, its patient's nodules are left out, as in the paper's "
        "protocol; query.excluded_patient_id says which). The nodule at the point itself is "
        "never a neighbour",
    )
    measured_axes_mm: MeasuredAxes | None = Field(
        default=None,
        description="the radiologist's own long and short axis of the nodule (the viewer's "
        "ruler): answered as size_measured with its Lung-RADS size category, and written into "
        "the SR marked as measured by the user; it replaces the estimate's size and category "
        "everywhere (size_estimate.superseded says so)",
    )

    @field_validator("center_xyz")
    @classmethod
    def _finite(cls, value: XYZ) -> XYZ:
        if not all(math.isfinite(v) and abs(v) <= COORDINATE_LIMIT_MM for v in value):
            raise ValueError(
                f"center_xyz must be finite numbers within +-{COORDINATE_LIMIT_MM:g} mm"
            )
        return value


class SearchSize(BaseModel):
    """The diameter the query's search vector was read at, and where it came from."""

    diameter_mm: float | None = Field(
        description="mean diameter, mm (null: none known, the image features alone searched)"
    )
    source: SizeSource = Field(
        description="measured: the radiologist's axes (or uploaded mask); recorded: the "
        "catalogue's diameter of the nodule at the point; estimated: from the image (an "
        "estimate, not a measurement); none"
    )
    title: str = Field(description="the source in words")

    @classmethod
    def of(cls, size: QuerySize) -> SearchSize:
        """From the service's choice (``model.nn.query``)."""
        return cls(
            diameter_mm=None if size.diameter_mm is None else round(size.diameter_mm, 1),
            source=size.source,
            title=SIZE_SOURCE_TITLES[size.source],
        )


class QueryInfo(BaseModel):
    """Where the query was taken, and what was left out of its answer."""

    center_xyz: XYZ | None = Field(
        default=None, description="the query point, world mm (ITK/LPS frame)"
    )
    index_zyx: XYZ | None = Field(
        default=None,
        description="the query point as a continuous voxel index of the queried series, numpy "
        "(z, y, x) order, 0-based (voxel centres at whole numbers)",
    )
    series_uid: str | None = Field(default=None, description="the queried series")
    nodule_id: int | None = Field(
        default=None,
        description="the catalogue nodule queried: the one asked for, or the catalogue nodule "
        "of the queried series whose recorded radius holds the point. It is never among the "
        "neighbours and never counts in the vote",
    )
    excluded_patient_id: str | None = Field(
        default=None,
        description="the patient whose nodules were left out of the neighbours (the queried "
        "scan's, the paper's protocol); null when none was",
    )
    own_patient_included: bool = Field(
        default=False,
        description="true when the request asked for the queried scan's patient's nodules too "
        "(include_own_patient)",
    )
    index_version: str = Field(description="the catalogue version that answered")
    levels: list[str] = Field(
        default_factory=list,
        description="names of the blocks of neighbors[].level_similarity: the search vector's "
        "blocks (features, size, density, shape, learned) for a model with a search space, "
        "else the network's encoder levels, fine to coarse",
    )
    size_for_search: SearchSize | None = Field(
        default=None,
        description="the size the measured and learned blocks of the vector were read at "
        "(point, upload and SR queries; null for a model whose vector reads no size)",
    )
    preview_png_base64: str | None = Field(
        default=None,
        description="uploads with preview=true: axial, coronal and sagittal slices of the query "
        "patch as a base64 PNG",
    )
    best_similarity: float | None = Field(
        default=None,
        description="cosine similarity of the nearest returned neighbour (null: no neighbour)",
    )
    match_threshold: float | None = Field(
        default=None,
        description="the catalogue version's calibrated close-match threshold (the 5th "
        "percentile of its nodules' nearest other-patient similarity); null for versions built "
        "before thresholds were recorded",
    )
    close_match: bool | None = Field(
        default=None,
        description="best_similarity >= match_threshold; false: no close match in the catalogue "
        "(the vote is withheld); null when there is no threshold or no neighbour",
    )


class LabelOut(BaseModel):
    """Radiologists' ratings of a catalogue nodule and the labels derived from them."""

    ratings: list[int] = Field(
        description="each reader's LIDC malignancy rating, 1 (highly unlikely) to 5 (highly "
        "suspicious)"
    )
    n_readers: int = Field(description="readers who marked the nodule")
    mean: float | None = Field(
        description="mean of the ratings, 1-5 (null without a rating)", ge=1, le=5
    )
    label_binary: int | None = Field(
        description="0 benign (mean rounds to 1-2), 1 malignant (4-5); null when it rounds to 3"
    )
    label_4class: int | None = Field(
        description="rounded mean rating: 1, 2, 4 or 5; null when it rounds to 3"
    )


class NoduleOut(BaseModel):
    """A catalogue nodule."""

    id: int = Field(description="catalogue nodule id (stable within a catalogue)")
    series_uid: str = Field(description="the CT series it lies in")
    patient_id: str | None = Field(description="the catalogue's patient id (LIDC-IDRI-xxxx)")
    center_xyz: XYZ = Field(description="its centre, world mm (ITK/LPS frame)")
    diameter_mm: float = Field(description="recorded diameter (annotations.csv), mm")
    labels: LabelOut | None = Field(description="the readers' ratings; null when unrated")


class Neighbor(NoduleOut):
    """A similar nodule with its cosine similarity to the query."""

    similarity: float = Field(
        description="cosine similarity of the search vectors, -1 to 1 (1: the same vector)"
    )
    weak_match: bool | None = Field(
        default=None,
        description="similarity below the catalogue's calibrated close-match threshold (null: "
        "the version records no threshold)",
    )
    level_similarity: list[float] | None = Field(
        default=None,
        description="why similar: the cosine similarity within each block of the search vector "
        "(features, size, density, shape, learned; or the encoder levels, fine to coarse, and "
        "the size profile if used), named by query.levels; 0 for a block the query has no "
        "value of (no size)",
    )


class Vote(BaseModel):
    """Decision support from the labelled neighbours; not a diagnosis."""

    malignant_share: float | None = Field(
        ge=0,
        le=1,
        description="similarity-weighted share of malignant neighbours among the labelled ones, "
        "0-1: a share of similar cases, not a probability of malignancy",
    )
    binary: int | None = Field(
        description="majority label of the labelled neighbours: 0 benign, 1 malignant"
    )
    four_class: dict[str, float] = Field(
        description="share of each rounded mean rating (keys 1, 2, 4, 5) among the labelled "
        "neighbours, 0-1"
    )
    n_labelled: int = Field(description="neighbours with a benign/malignant label, the voters")
    withheld: bool = Field(
        default=False,
        description="true when the query has no close match in the catalogue "
        "(query.close_match false): the numbers are computed but should not be relied on, and "
        "the SR carries no vote",
    )

    # Marked deprecated in the schema only: pydantic's own ``deprecated=`` warns on every
    # serialisation, and answering the alias is this release's promise, not a misuse.
    @computed_field(  # type: ignore[prop-decorator]
        description="deprecated alias of malignant_share (renamed: it is a share, not a "
        "probability); answered for one release, removed in the next",
        json_schema_extra={"deprecated": True},
    )
    @property
    def malignant_probability(self) -> float | None:
        """Deprecated: the old name of ``malignant_share``."""
        return self.malignant_share


class SizeEstimate(BaseModel):
    """Size and type of the queried nodule, estimated from the image.

    Not a measurement a radiologist made, and not a diagnosis (``model.clinical.measure``,
    docs/measurement.md).
    """

    long_axis_mm: float = Field(description="longest in-plane diameter of the mask, mm")
    short_axis_mm: float = Field(
        description="longest diameter perpendicular to it on the same slice, mm"
    )
    mean_diameter_mm: float = Field(description="(long + short axis) / 2, to 0.1 mm")
    volume_mm3: float = Field(description="voxels of the estimated mask x voxel volume, mm^3")
    nodule_type: Literal["solid", "part-solid", "ground-glass"] | None = Field(
        description="from the share of the mask's core at or above -300 HU (null: not known)"
    )
    solid_fraction: float | None = Field(description="share of the core at or above -300 HU")
    lung_rads: Literal["2", "3", "4A", "4B"] | None = Field(
        description="Lung-RADS v2022 baseline category from size and type alone (no prior, no "
        "modifiers); null for part-solid nodules"
    )
    method: str = Field(description="how the nodule's extent was found")
    estimated_by: EstimatedBy = Field(
        description="the method in two words (the viewer's size box names it)"
    )
    superseded: bool = Field(
        default=False,
        description="the query carried the radiologist's own axes (measured_axes_mm): they "
        "replace this estimate's size and Lung-RADS category in the answer, the viewer and the "
        "SR (size_measured); its volume and type are still shown, as estimates",
    )
    note: str = Field(
        default="estimate from the image for decision support, not a diagnosis",
        description="how to read these numbers",
    )

    @classmethod
    def of(cls, found: NoduleMeasurement, method: str, *, superseded: bool = False) -> SizeEstimate:
        """The answer's form of a measurement (``model.clinical.measure``)."""
        return cls(
            estimated_by=estimated_by(method),
            superseded=superseded,
            long_axis_mm=found.long_axis_mm,
            short_axis_mm=found.short_axis_mm,
            mean_diameter_mm=found.mean_diameter_mm,
            volume_mm3=found.volume_mm3,
            nodule_type=found.nodule_type,
            solid_fraction=found.solid_fraction,
            lung_rads=found.lung_rads,
            method=method,
        )


class SizeMeasured(BaseModel):
    """The queried nodule's size as the radiologist measured it (the ruler), with Lung-RADS."""

    long_axis_mm: float = Field(description="the user's long axis, mm")
    short_axis_mm: float = Field(description="the user's short axis, mm")
    mean_diameter_mm: float = Field(description="(long + short axis) / 2, to 0.1 mm")
    nodule_type: Literal["solid", "part-solid", "ground-glass"] | None = Field(
        description="the type the Lung-RADS category used: the image estimate's when there is "
        "one; null when none was made (solid is then assumed, see type_assumed)"
    )
    type_assumed: bool = Field(
        description="no type was estimated: the category takes the nodule as solid (the "
        "higher of the two size rules)"
    )
    lung_rads: Literal["2", "3", "4A", "4B"] | None = Field(
        description="Lung-RADS v2022 baseline category from the measured size and the type "
        "(no prior, no modifiers); null for part-solid nodules"
    )
    method: str = Field(default=RULER_METHOD, description="how the size was measured")
    note: str = Field(
        default="measured by the user; the category is from size and type alone",
        description="how to read these numbers",
    )

    @classmethod
    def of(cls, ruler: RulerMeasurement) -> SizeMeasured:
        """The answer's form of a ruler measurement (``model.clinical.measure``)."""
        return cls(
            long_axis_mm=ruler.long_axis_mm,
            short_axis_mm=ruler.short_axis_mm,
            mean_diameter_mm=ruler.mean_diameter_mm,
            nodule_type=ruler.nodule_type,
            type_assumed=ruler.type_assumed,
            lung_rads=ruler.lung_rads,
        )


class NoduleDetail(NoduleOut):
    """A catalogue nodule with what its readers saw, for a side-by-side comparison."""

    characteristics: dict[str, float] | None = Field(
        default=None,
        description="the readers' median of each LIDC characteristic (subtlety, "
        "internalStructure, calcification, sphericity, margin, lobulation, spiculation, "
        "texture, malignancy); null without reads",
    )
    size_estimate: SizeEstimate | None = Field(
        default=None,
        description="estimate_size=true: size and type at its centre, as a query's size_estimate",
    )
    texture_type: Literal["ground-glass", "part-solid", "solid"] | None = Field(
        default=None,
        description="the type the readers' median Texture stands for (1-2 ground-glass, 3-4 "
        "part-solid, 5 solid; GET /v1/vocabulary); null without reads",
    )


class SearchResponse(BaseModel):
    """The answer to every search."""

    query: QueryInfo = Field(description="where the query was taken and what was left out")
    neighbors: list[Neighbor] = Field(description="the most similar catalogue nodules, best first")
    vote: Vote = Field(description="the labelled neighbours' vote (decision support)")
    size_estimate: SizeEstimate | None = Field(
        default=None,
        description="with estimate_size, or an upload with a mask: the queried nodule's size "
        "and type, from the network's mask branch (region growing for a model without one, or "
        "where the branch finds nothing), or from the uploaded mask; always an estimate (null "
        "when no nodule is found at the point, or not asked)",
    )
    size_measured: SizeMeasured | None = Field(
        default=None,
        description="with measured_axes_mm: the radiologist's own measurement and its Lung-RADS "
        "size category (null when none was given)",
    )


class MatchThresholdOut(BaseModel):
    """How the served version's close-match threshold was chosen."""

    value: float = Field(description="cosine similarity")
    percentile: float = Field(description="of the nodules' nearest other-patient similarity")
    n_queries: int = Field(description="catalogue nodules the percentile was taken over")
    rule: str = Field(description="how the threshold was chosen, in words")


class IndexInfo(BaseModel):
    """The catalogue version being served."""

    version: str = Field(description="the served catalogue version (a folder name)")
    n_nodules: int = Field(description="nodules in the catalogue")
    n_scans: int = Field(description="CT series they lie in")
    n_labelled: int = Field(description="nodules with a benign/malignant label")
    index_type: str = Field(description="the FAISS index kind (flat: exact search)")
    created_at: str = Field(description="when the version was built (ISO 8601, UTC)")
    model: dict[str, object] = Field(
        description="the model card's summary: architecture, fingerprint, patch, embedding size"
    )
    match_threshold: MatchThresholdOut | None = Field(
        default=None, description="null for versions built before thresholds were recorded"
    )


class ReadyOut(BaseModel):
    """The service is ready: what it serves."""

    status: str = Field(default="ready", description="always ready (else 503)")
    index_version: str = Field(description="the served catalogue version")


class ScanSummary(BaseModel):
    """A CT series of the catalogue."""

    series_uid: str = Field(description="Series Instance UID")
    patient_id: str | None = Field(description="the catalogue's patient id; null if unknown")
    n_nodules: int = Field(description="catalogue nodules in it")
    dicom: bool = Field(
        default=False,
        description="stored as a DICOM series (under the data root or in the PACS), so a DICOM "
        "SR can be made of a search in it; false for image files (MetaImage, NIfTI)",
    )


class ScanList(BaseModel):
    """A page of the catalogue's scans."""

    total: int = Field(description="scans in the catalogue (all pages)")
    scans: list[ScanSummary] = Field(description="this page's scans, by series UID")


class ScanOut(BaseModel):
    """A stored CT series: its world extent and the catalogue nodules in it.

    ``extent_min_xyz``/``extent_max_xyz`` bound the voxel centres (world mm, LPS); axial slices
    from ``/v1/scans/{series_uid}/axial.png`` are drawn on that box.
    """

    series_uid: str = Field(description="Series Instance UID")
    patient_id: str | None = Field(description="the catalogue's patient id; null if unknown")
    extent_min_xyz: XYZ = Field(description="the first voxel centre's corner, world mm")
    extent_max_xyz: XYZ = Field(description="the last voxel centre's corner, world mm")
    spacing_xyz: XYZ = Field(description="voxel spacing, mm, (x, y, z)")
    size_xyz: tuple[int, int, int] = Field(description="voxels along x, y, z")
    nodules: list[NoduleOut] = Field(description="the catalogue nodules in this scan")
    dicom: bool = Field(
        default=False,
        description="stored as a DICOM series, so a DICOM SR can be made of a search in it",
    )
    from_pacs: bool = Field(
        default=False,
        description="read from the PACS (DICOMweb): an OHIF Viewer over that PACS shows it "
        "(GET /v1/scans/{series_uid}/ohif)",
    )


class ViewerLink(BaseModel):
    """Where an OHIF Viewer over the PACS opens a series at the slice through a point."""

    url: str = Field(
        description="the OHIF Viewer's /viewer route with StudyInstanceUIDs, SeriesInstanceUIDs "
        "and initialSOPInstanceUID"
    )
    study_uid: str = Field(description="Study Instance UID of the series")
    series_uid: str = Field(description="Series Instance UID")
    sop_instance_uid: str = Field(description="the axial image through the point")


class MapPoint(BaseModel):
    """A nodule on the catalogue's 2-D map (t-SNE of the embeddings, computed at build time)."""

    id: int = Field(description="catalogue nodule id")
    x: float = Field(
        description="map position (t-SNE units: only distances on the map mean something)"
    )
    y: float = Field(description="map position (t-SNE units)")
    diameter_mm: float = Field(description="recorded diameter, mm")
    label_binary: int | None = Field(description="0 benign, 1 malignant; null when unlabelled")
    label_4class: int | None = Field(
        description="rounded mean rating 1, 2, 4 or 5; null when unlabelled"
    )


class MapOut(BaseModel):
    """The catalogue's 2-D map; empty when the version has none (too few or too many nodules)."""

    index_version: str = Field(description="the catalogue version the map belongs to")
    points: list[MapPoint] = Field(description="every nodule's map position")


class WindowPresetOut(BaseModel):
    """A standard CT display window."""

    name: str = Field(description="lung, mediastinum or bone")
    width: float = Field(description="window width, HU")
    level: float = Field(description="window centre, HU")


class CharacteristicOut(BaseModel):
    """One LIDC characteristic and its readers' scale."""

    name: str = Field(description="as in characteristics of GET /v1/nodules/{id}")
    title: str = Field(description="in words")
    scale: list[str] = Field(description="the meaning of each value, value 1 first")


class TextureTypeOut(BaseModel):
    """The nodule type one value of the readers' Texture rating stands for."""

    texture: int = Field(description="the rating, 1 to 5")
    type: Literal["ground-glass", "part-solid", "solid"] = Field(
        description="the nodule type it stands for"
    )


class Vocabulary(BaseModel):
    """The domain terms a client shows: display windows, the LIDC scales, texture types.

    Served so that a client (the viewer) writes none of them itself.
    """

    window_presets: list[WindowPresetOut] = Field(description="standard CT display windows")
    window_width_range: tuple[float, float] = Field(description="allowed window widths, HU")
    window_level_range: tuple[float, float] = Field(description="allowed window centres, HU")
    characteristics: list[CharacteristicOut] = Field(
        description="the 9 LIDC characteristics, in the LIDC XML's order, with their scales"
    )
    texture_types: list[TextureTypeOut] = Field(
        description="each Texture rating's nodule type; a median between two ratings is "
        "ground-glass up to 2, part-solid below 5 (NoduleDetail.texture_type applies it)"
    )
