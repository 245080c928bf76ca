"""LIDC-IDRI XML reads (``LidcReadMessage``): one record per reader per mark.

Structure read: ``ResponseHeader/SeriesInstanceUid``; each ``readingSession`` has a
``servicingRadiologistID`` and ``unblindedReadNodule`` elements (``characteristics`` and one
``roi`` per slice with ``imageZposition``, ``inclusion`` and ``edgeMap`` boundary pixels) and
``nonNodule`` elements (one ``locus`` point). A nodule read without characteristics and with a
single-point outline is a nodule < 3 mm.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.labels.errors import LabelSourceError
from indexer.labels.outline import Outline, summarise, to_world
from model.clinical.labels import CHARACTERISTICS, Characteristics, Read, ReadKind
from model.ct.geometry import Geometry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class XmlRead:
    """One mark as the XML states it, before geometry turns pixels into world mm."""

    series_uid: str
    reader_id: str
    kind: ReadKind
    characteristics: Characteristics | None
    outlines: tuple[Outline, ...]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if _local(child.tag) == name)


def _text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _points(parent: ET.Element, name: str, path: Path) -> np.ndarray:
    points = []
    for point in _children(parent, name):
        try:
            points.append(
                (float(_text(_child(point, "xCoord"))), float(_text(_child(point, "yCoord"))))
            )
        except ValueError:
            raise LabelSourceError(f"{path.name}: {name} without numeric xCoord/yCoord") from None
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _characteristics(node: ET.Element, path: Path) -> Characteristics | None:
    element = _child(node, "characteristics")
    if element is None:
        return None
    values = {}
    for name in CHARACTERISTICS:
        text = _text(_child(element, name))
        if not text:
            return None
        try:
            values[name] = int(float(text))
        except ValueError:
            raise LabelSourceError(f"{path.name}: characteristic {name} is {text!r}") from None
    try:
        return Characteristics.from_mapping(values)
    except ValueError as e:
        logger.warning("%s: read with out-of-range characteristics ignored (%s)", path.name, e)
        return None


def _z(element: ET.Element, path: Path) -> float:
    try:
        return float(_text(_child(element, "imageZposition")))
    except ValueError:
        raise LabelSourceError(f"{path.name}: roi without a numeric imageZposition") from None


def parse_lidc_xml(path: Path) -> list[XmlRead]:
    """All marks of one LIDC XML file.

    Raises:
        LabelSourceError: the file is not well-formed XML or not an LIDC read message.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise LabelSourceError(f"{path.name}: not a readable XML file ({e})") from None
    if _local(root.tag) != "LidcReadMessage":
        raise LabelSourceError(f"{path.name}: not an LIDC read message (root <{_local(root.tag)}>)")
    header = _child(root, "ResponseHeader")
    series_uid = _text(_child(header, "SeriesInstanceUid")) if header is not None else ""
    if not series_uid:
        raise LabelSourceError(f"{path.name}: no ResponseHeader/SeriesInstanceUid")
    reads: list[XmlRead] = []
    for index, session in enumerate(_children(root, "readingSession")):
        reader = _text(_child(session, "servicingRadiologistID")) or f"session-{index + 1}"
        for node in _children(session, "unblindedReadNodule"):
            outlines = tuple(
                Outline(
                    z_mm=_z(roi, path),
                    points_col_row=_points(roi, "edgeMap", path),
                    inclusion=_text(_child(roi, "inclusion")).upper() != "FALSE",
                )
                for roi in _children(node, "roi")
            )
            outlines = tuple(o for o in outlines if len(o.points_col_row))
            if not outlines:
                logger.warning("%s: nodule read without outline ignored", path.name)
                continue
            characteristics = _characteristics(node, path)
            single_point = sum(len(o.points_col_row) for o in outlines) == 1
            kind = ReadKind.SMALL_NODULE if single_point else ReadKind.NODULE
            reads.append(XmlRead(series_uid, reader, kind, characteristics, outlines))
        for node in _children(session, "nonNodule"):
            outline = Outline(z_mm=_z(node, path), points_col_row=_points(node, "locus", path))
            if len(outline.points_col_row):
                reads.append(XmlRead(series_uid, reader, ReadKind.NON_NODULE, None, (outline,)))
    return reads


def to_reads(xml_reads: list[XmlRead], geometry: Geometry, source: str) -> list[Read]:
    """Turn XML marks into world-coordinate reads with the scan's geometry."""
    reads = []
    for r in xml_reads:
        if r.kind is ReadKind.NODULE:
            center, diameter, _ = summarise(r.outlines, geometry)
            size: float | None = diameter
        else:
            o = r.outlines[0]
            center = to_world(geometry, o.z_mm, o.points_col_row.mean(axis=0, keepdims=True))[0]
            size = None
        reads.append(
            Read(
                series_uid=r.series_uid,
                reader_id=r.reader_id,
                kind=r.kind,
                center_xyz=(float(center[0]), float(center[1]), float(center[2])),
                diameter_mm=size,
                characteristics=r.characteristics if r.kind is ReadKind.NODULE else None,
                source=source,
            )
        )
    return reads


GeometryLookup = Callable[[Path, str], Geometry | None]


def read_xml_folder(folder: Path, geometry_of: GeometryLookup) -> list[Read]:
    """Reads of every ``*.xml`` below ``folder``.

    Args:
        folder: where the LIDC XML files are (searched recursively).
        geometry_of: ``(xml_path, series_uid) -> Geometry`` or None when unknown.

    Raises:
        LabelSourceError: no XML files, a malformed file, or a series without CT geometry.
    """
    files = sorted(folder.rglob("*.xml")) if folder.is_dir() else []
    if not files:
        raise LabelSourceError(f"{folder}: no LIDC XML files (*.xml) found")
    reads: list[Read] = []
    for path in files:
        marks = parse_lidc_xml(path)
        if not marks:
            continue
        geometry = geometry_of(path, marks[0].series_uid)
        if geometry is None:
            raise LabelSourceError(
                f"{path.name}: no CT geometry for series {marks[0].series_uid}: no DICOM series "
                "or .mhd beside it, and not in the --geometry table"
            )
        reads.extend(to_reads(marks, geometry, source=f"lidc-xml:{path.name}"))
    return reads
