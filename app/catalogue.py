"""Browsing the served catalogue version: its nodules, scans, map and viewer links; no search.

``CatalogueRows`` keeps the rows a version is asked for (a published version never changes, so
a query costs no SQL for the neighbours it has seen before); the search (``app.retrieval``) and
the browser share one per version.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.errors import InputError, NotFoundError
from app.scans import ScanDoor, from_pacs, is_dicom_source
from app.schemas import (
    XYZ,
    LabelOut,
    MapOut,
    MapPoint,
    NoduleDetail,
    NoduleOut,
    ScanList,
    ScanOut,
    ScanSummary,
    SizeEstimate,
    ViewerLink,
)
from model.clinical.labels import CHARACTERISTICS, texture_type
from model.clinical.nodule_mask import find_nodule
from model.clinical.sr import slice_point
from model.ct.dicomweb import DicomwebSeriesSource
from model.nn.embedder import Embedder
from model.preprocessing import CoordinateOutsideVolumeError
from model.store.catalog import Catalog, ScanNodules
from model.store.tables import Nodule, NoduleRead, Scan

#: Catalogue rows kept in memory per served version (a few hundred bytes each).
ROWS_CACHED = 100_000
#: Catalogue scans whose patient and nodule spheres are kept (for the query's exclusions).
SCANS_CACHED = 10_000


@dataclass(frozen=True)
class NoduleRow:
    """A catalogue nodule as answered, whether it is labelled, and its vector's row."""

    nodule: NoduleOut
    labelled: bool
    embedding_row: int


def _label_out(nodule: Nodule) -> LabelOut | None:
    if nodule.label is None:
        return None
    label = nodule.label
    return LabelOut(
        ratings=list(label.ratings),
        n_readers=label.n_readers,
        mean=label.mean_malignancy,
        label_binary=label.label_binary,
        label_4class=label.label_4class,
    )


def _labelled(nodule: Nodule) -> bool:
    return nodule.label is not None and nodule.label.label_binary is not None


def _nodule_out(nodule: Nodule) -> NoduleOut:
    return NoduleOut(
        id=nodule.id,
        series_uid=nodule.series_uid,
        patient_id=nodule.scan.patient_id,
        center_xyz=nodule.center_xyz,
        diameter_mm=nodule.diameter_mm,
        labels=_label_out(nodule),
    )


def median_characteristics(reads: list[NoduleRead]) -> dict[str, float] | None:
    """The readers' median of each LIDC characteristic (those some reader rated); None: no read."""
    out: dict[str, float] = {}
    for name in CHARACTERISTICS:
        column = "internal_structure" if name == "internalStructure" else name
        values = [v for r in reads if (v := getattr(r, column)) is not None]
        if values:
            out[name] = float(np.median(values))
    return out or None


class CatalogueRows:
    """The served version's nodule rows and scans' nodule spheres, kept as they are read."""

    def __init__(self, catalog: Catalog, capacity: int = ROWS_CACHED) -> None:
        self.catalog = catalog
        self.capacity = capacity
        self._rows: OrderedDict[int, NoduleRow] = OrderedDict()
        self._scans: OrderedDict[str, ScanNodules] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, ids: list[int]) -> dict[int, NoduleRow]:
        """Rows of catalogue nodules by id (ids not in the catalogue are absent)."""
        found: dict[int, NoduleRow] = {}
        with self._lock:
            for i in ids:
                row = self._rows.get(i)
                if row is not None:
                    self._rows.move_to_end(i)
                    found[i] = row
        missing = [i for i in ids if i not in found]
        if not missing:
            return found
        with self.catalog.sessions() as session:
            query = (
                select(Nodule)
                .where(Nodule.id.in_(missing))
                .options(selectinload(Nodule.label), selectinload(Nodule.scan))
            )
            fetched = {
                n.id: NoduleRow(_nodule_out(n), _labelled(n), n.embedding_row)
                for n in session.execute(query).scalars()
            }
        with self._lock:
            for i, row in fetched.items():
                self._rows[i] = row
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)
        return {**found, **fetched}

    def nodule(self, nodule_id: int) -> NoduleOut:
        """One catalogue nodule.

        Raises:
            NotFoundError: no such id.
        """
        rows = self.rows([nodule_id])
        if nodule_id not in rows:
            raise NotFoundError(f"nodule {nodule_id} is not in the catalogue")
        return rows[nodule_id].nodule

    def recorded_diameter(self, nodule_id: int | None) -> float | None:
        """The recorded diameter (mm) of a catalogue nodule; None for no nodule."""
        if nodule_id is None:
            return None
        rows = self.rows([nodule_id])
        return rows[nodule_id].nodule.diameter_mm if nodule_id in rows else None

    def scan_nodules(self, series_uid: str) -> ScanNodules | None:
        """A catalogue scan's patient and nodule spheres (None: not a catalogue scan).

        Unknown UIDs are not kept (they are unbounded).
        """
        with self._lock:
            if series_uid in self._scans:
                self._scans.move_to_end(series_uid)
                return self._scans[series_uid]
        found = self.catalog.scan_nodules(series_uid)
        if found is None:
            return None
        with self._lock:
            self._scans[series_uid] = found
            while len(self._scans) > SCANS_CACHED:
                self._scans.popitem(last=False)
        return found


class CatalogueBrowser:
    """The served version's nodules, scans and map as the API lists them."""

    def __init__(self, rows: CatalogueRows, scans: ScanDoor, embedder: Embedder) -> None:
        self.rows = rows
        self.catalog = rows.catalog
        self.scans = scans
        self.embedder = embedder
        self._map: MapOut | None = None

    def nodule(self, nodule_id: int) -> NoduleOut:
        """One catalogue nodule (NotFoundError: no such id)."""
        return self.rows.nodule(nodule_id)

    def nodule_detail(self, nodule_id: int, *, estimate_size: bool = False) -> NoduleDetail:
        """One catalogue nodule with its readers' median characteristics (and a size estimate).

        Raises:
            NotFoundError: no such id.
        """
        nodule = self.rows.nodule(nodule_id)
        with self.catalog.sessions() as session:
            reads = session.execute(
                select(NoduleRead).where(NoduleRead.nodule_id == nodule_id)
            ).scalars()
            characteristics = median_characteristics(list(reads))
        size = None
        if estimate_size:
            source = self.scans.open(nodule.series_uid)
            found = find_nodule(self.embedder, source, nodule.center_xyz)
            if found is not None:
                size = SizeEstimate.of(found.region.measurement, found.method)
        texture = characteristics.get("texture") if characteristics else None
        return NoduleDetail(
            **nodule.model_dump(),
            characteristics=characteristics,
            size_estimate=size,
            texture_type=texture_type(texture) if texture is not None else None,
        )

    def scan_page(self, limit: int, offset: int) -> ScanList:
        """A page of the catalogue's scans, by series UID."""
        with self.catalog.sessions() as session:
            total = session.scalar(select(func.count()).select_from(Scan)) or 0
            counts = (
                select(Scan, func.count(Nodule.id))
                .outerjoin(Nodule, Nodule.scan_id == Scan.id)
                .group_by(Scan.id)
                .order_by(Scan.series_uid)
                .limit(limit)
                .offset(offset)
            )
            rows = [
                ScanSummary(
                    series_uid=scan.series_uid,
                    patient_id=scan.patient_id,
                    n_nodules=n,
                    dicom=self.scans.is_dicom(scan.series_uid, self.scans.recorded(scan)),
                )
                for scan, n in session.execute(counts).all()
            ]
        return ScanList(total=int(total), scans=rows)

    def scan(self, series_uid: str) -> ScanOut:
        """A stored series' geometry and its catalogue nodules.

        Raises:
            NotFoundError: the series is neither in the catalogue nor under the data root.
        """
        source = self.scans.open(series_uid)
        with self.catalog.sessions() as session:
            ids = list(
                session.execute(
                    select(Nodule.id).where(Nodule.series_uid == series_uid).order_by(Nodule.id)
                ).scalars()
            )
            scan = session.execute(
                select(Scan).where(Scan.series_uid == series_uid)
            ).scalar_one_or_none()
            patient = scan.patient_id if scan is not None else None
            recorded = self.scans.recorded(scan) if scan is not None else None
        rows = self.rows.rows(ids)
        dicom = is_dicom_source(source) or self.scans.is_dicom(series_uid, recorded)
        g = source.geometry
        low, high = g.extent_world_xyz()
        return ScanOut(
            series_uid=series_uid,
            patient_id=patient,
            extent_min_xyz=(float(low[0]), float(low[1]), float(low[2])),
            extent_max_xyz=(float(high[0]), float(high[1]), float(high[2])),
            spacing_xyz=(
                float(g.spacing_xyz[0]),
                float(g.spacing_xyz[1]),
                float(g.spacing_xyz[2]),
            ),
            size_xyz=(int(g.size_xyz[0]), int(g.size_xyz[1]), int(g.size_xyz[2])),
            nodules=[rows[i].nodule for i in ids if i in rows],
            dicom=dicom,
            from_pacs=from_pacs(source),
        )

    def viewer_link(self, series_uid: str, center_xyz: XYZ, ohif_url: str | None) -> ViewerLink:
        """Where an OHIF Viewer over the PACS opens a PACS series at the slice through a point.

        Raises:
            NotFoundError: no OHIF Viewer is configured, or the series is nowhere.
            InputError: the series is not read from the PACS (OHIF shows the PACS's studies).
            CoordinateOutsideVolumeError: no slice of the series is through the point.
        """
        if ohif_url is None:
            raise NotFoundError("no OHIF Viewer is configured (NODULE_OHIF_URL)")
        source = self.scans.open(series_uid)
        if not isinstance(source, DicomwebSeriesSource):
            raise InputError(
                "this series is not read from the PACS, so an OHIF Viewer over the PACS cannot "
                "show it"
            )
        on_slice = slice_point(source, center_xyz)
        if on_slice is None:
            raise CoordinateOutsideVolumeError("no slice of the series passes through the point")
        query = urlencode(
            {
                "StudyInstanceUIDs": on_slice.study_uid,
                "SeriesInstanceUIDs": on_slice.series_uid,
                "initialSOPInstanceUID": on_slice.sop_instance_uid,
            }
        )
        return ViewerLink(
            url=f"{ohif_url}/viewer?{query}",
            study_uid=on_slice.study_uid,
            series_uid=on_slice.series_uid,
            sop_instance_uid=on_slice.sop_instance_uid,
        )

    def example_point(self, *, dicom: bool = False) -> tuple[str, XYZ] | None:
        """A catalogue nodule's series and centre, for the API docs' examples (None: none).

        ``dicom``: the first nodule of a series stored as DICOM (an SR can be made there).
        """
        with self.catalog.sessions() as session:
            query = select(Nodule).options(selectinload(Nodule.scan)).order_by(Nodule.id)
            for nodule in session.execute(query.limit(1 if not dicom else 10_000)).scalars():
                scan = nodule.scan
                if not dicom or self.scans.is_dicom(scan.series_uid, self.scans.recorded(scan)):
                    return nodule.series_uid, nodule.center_xyz
        return None

    def map_points(self) -> MapOut:
        """Every nodule's 2-D map position (none when the version has no map)."""
        if self._map is None:
            with self.catalog.sessions() as session:
                query = (
                    select(Nodule)
                    .where(Nodule.map_x.is_not(None))
                    .options(selectinload(Nodule.label))
                    .order_by(Nodule.id)
                )
                points = [
                    MapPoint(
                        id=n.id,
                        x=float(n.map_x or 0.0),
                        y=float(n.map_y or 0.0),
                        diameter_mm=n.diameter_mm,
                        label_binary=n.label.label_binary if n.label else None,
                        label_4class=n.label.label_4class if n.label else None,
                    )
                    for n in session.execute(query).scalars()
                ]
            self._map = MapOut(index_version=self.catalog.version, points=points)
        return self._map
