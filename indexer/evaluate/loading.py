"""What an evaluation reads: the catalogue version's nodules, their patches, masks and densities.

One pass over the scans (region reads through the one patch function) gives every row the
network, the baselines and the mask-quality table need.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from indexer.data.patches import ScanJob, iter_scan_patches
from indexer.evaluate.alike import (
    reader_matrix,
)
from indexer.evaluate.mask_quality import (
    NoduleMaskScore,
    read_reference,
    reference_mask_path,
    reference_nodule,
    score_nodule,
)
from indexer.evaluate.scores import (
    Neighbors,
)
from model.clinical.descriptors import DESCRIPTOR_NAMES, describe_region
from model.clinical.labels import CHARACTERISTICS, Characteristics, LabelRule, derive_label
from model.clinical.measure import MeasureError
from model.clinical.nodule_mask import find_nodule
from model.ct.open import open_source
from model.ct.volume import CTVolume, VolumeSource
from model.nn.checkpoint import load_model
from model.nn.embedder import Embedder
from model.nn.profile import PROFILE_NAMES
from model.preprocessing import PatchSpec
from model.store.catalog import Catalog
from model.store.manifest import Manifest
from model.store.tables import Nodule, NoduleRead

logger = logging.getLogger(__name__)


#: The density baseline's sphere at the nodule's centre: this share of its recorded radius.
DENSITY_SPHERE_FRACTION = 0.75


#: Finds the k neighbours of every query row, optionally without its own patient.
NeighborSearch = Callable[[Sequence[str | None] | None, int], Neighbors]


class EvaluationError(RuntimeError):
    """The catalogue cannot be evaluated (no labelled nodules, unreadable scans, ...)."""


@dataclass(frozen=True)
class EvaluateOptions:
    """Options of one evaluation run."""

    exclude_same_patient: bool = False
    """Headline numbers without neighbours of the query's own patient (both are reported)."""
    label_rule: LabelRule | None = None
    """Re-derive labels from the stored ratings with this rule; None: the catalogue's labels."""
    vote_k: int = 5
    bootstrap_replicates: int = 1000
    seed: int = 0
    workers: int = 1
    device: str = "auto"
    montage_queries: int = 6


@dataclass
class CatalogNodules:
    """Every nodule of a catalogue version, in ``embedding_row`` order."""

    ids: npt.NDArray[np.int64]
    series_uid: list[str]
    source_path: dict[str, Path]
    patient_id: list[str | None]
    center_xyz: list[tuple[float, float, float]]
    diameter_mm: npt.NDArray[np.float64]
    ratings: list[tuple[int, ...]]
    reader_ratings: list[npt.NDArray[np.float64]]
    """Each nodule's reads with all 9 characteristics, ``(readers, 9)`` (zero rows: none)."""
    mean_malignancy: list[float | None]
    label_binary: npt.NDArray[np.float64]
    """0/1, NaN where unlabelled."""
    label_4class: npt.NDArray[np.float64]
    """1/2/4/5, NaN where unlabelled."""
    vectors: npt.NDArray[np.float32]
    map_xy: npt.NDArray[np.float64] | None

    @property
    def labelled(self) -> npt.NDArray[np.int64]:
        """Rows with a binary (and so a 4-class) label."""
        return np.flatnonzero(~np.isnan(self.label_binary)).astype(np.int64)


def load_nodules(catalog: Catalog, rule: LabelRule | None) -> CatalogNodules:
    """Nodules, labels and stored vectors of an opened catalogue version."""
    with catalog.sessions() as session:
        rows = list(
            session.execute(
                select(Nodule)
                .order_by(Nodule.embedding_row)
                .options(
                    selectinload(Nodule.label),
                    selectinload(Nodule.scan),
                    selectinload(Nodule.reads),
                )
            ).scalars()
        )
        binary, four, ratings, means = [], [], [], []
        for n in rows:
            label = n.label
            values = tuple(label.ratings) if label is not None else ()
            b: int | None
            f: int | None
            if rule is not None:
                derived = derive_label(values, rule) if values else None
                b = derived.label_binary if derived else None
                f = derived.label_4class if derived else None
            else:
                b = label.label_binary if label else None
                f = label.label_4class if label else None
            binary.append(np.nan if b is None else float(b))
            four.append(np.nan if f is None else float(f))
            ratings.append(values)
            means.append(label.mean_malignancy if label else None)
        has_map = bool(rows) and all(n.map_x is not None and n.map_y is not None for n in rows)
        out = CatalogNodules(
            ids=np.array([n.id for n in rows], dtype=np.int64),
            series_uid=[n.series_uid for n in rows],
            source_path={
                n.series_uid: catalog.manifest.relocated(
                    Path(n.scan.source_path), catalog.index_dir
                )
                for n in rows
            },
            patient_id=[n.scan.patient_id for n in rows],
            center_xyz=[n.center_xyz for n in rows],
            diameter_mm=np.array([n.diameter_mm for n in rows], dtype=np.float64),
            ratings=ratings,
            reader_ratings=[reader_matrix(_characteristics(n.reads)) for n in rows],
            mean_malignancy=means,
            label_binary=np.array(binary, dtype=np.float64),
            label_4class=np.array(four, dtype=np.float64),
            vectors=np.asarray(catalog.embeddings[[n.embedding_row for n in rows]], np.float32),
            map_xy=(
                np.array([[n.map_x, n.map_y] for n in rows], dtype=np.float64) if has_map else None
            ),
        )
    return out


def _characteristics(reads: list[NoduleRead]) -> list[Characteristics]:
    """The reads that hold all 9 ratings (a malignancy-only read is left out)."""
    out = []
    for r in reads:
        values = {
            name: getattr(r, "internal_structure" if name == "internalStructure" else name)
            for name in CHARACTERISTICS
        }
        if all(v is not None for v in values.values()):
            out.append(Characteristics.from_mapping(values))
    return out


def density_job(
    nodules: CatalogNodules,
    uid: str,
    members: list[int],
    spec: PatchSpec,
    *,
    grow: bool = True,
    profile: bool = False,
) -> ScanJob:
    """The patches of a scan's nodules, each one's density sphere (and region-grown descriptors).

    ``grow``: the descriptors from region growing, in the worker (a model without a mask branch).
    ``profile``: each nodule's profile at its recorded diameter (a model with measured blocks).
    """
    return ScanJob(
        uid,
        nodules.source_path[uid],
        [nodules.center_xyz[r] for r in members],
        spec,
        sphere_radii_mm=[DENSITY_SPHERE_FRACTION * nodules.diameter_mm[r] / 2 for r in members],
        describe=grow,
        profile_diameters_mm=[float(nodules.diameter_mm[r]) for r in members] if profile else None,
    )


@dataclass(frozen=True)
class CutRows:
    """What the baselines read from the CT of each evaluated row, in row order."""

    patches: npt.NDArray[np.float32]
    """``(n, D, H, W)`` from the one patch function, the model's spec."""
    mean_hu: npt.NDArray[np.float64]
    """The density sphere's mean HU (``DENSITY_SPHERE_FRACTION`` of the recorded radius)."""
    descriptors: npt.NDArray[np.float64]
    """``(n, len(DESCRIPTOR_NAMES))`` of the mask the service finds
    (``model.clinical.nodule_mask``); NaN rows where none."""
    mask_scores: list[NoduleMaskScore]
    """The service's masks against the set's reference masks (rows whose scan has one)."""
    profiles: npt.NDArray[np.float64] | None = None
    """``(n, len(PROFILE_NAMES))`` at the recorded diameters (a model with measured blocks)."""


def cut_patches(
    nodules: CatalogNodules, rows: npt.NDArray[np.int64], embedder: Embedder, workers: int
) -> CutRows:
    """The rows' patches, densities and descriptors: one region-read pass per scan.

    Raises:
        EvaluationError: a scan cannot be read.
    """
    by_scan: dict[str, list[int]] = defaultdict(list)
    for r in rows.tolist():
        by_scan[nodules.series_uid[r]].append(r)
    spec = embedder.card.preprocessing
    grow = not embedder.segments
    profile = embedder.uses_profile
    jobs = [
        density_job(nodules, uid, members, spec, grow=grow, profile=profile)
        for uid, members in sorted(by_scan.items())
    ]
    patches = np.zeros((len(rows), *spec.patch_shape_zyx), dtype=np.float32)
    mean_hu = np.zeros(len(rows), dtype=np.float64)
    descriptors = np.full((len(rows), len(DESCRIPTOR_NAMES)), np.nan)
    profiles = np.full((len(rows), len(PROFILE_NAMES)), np.nan) if profile else None
    position = {r: i for i, r in enumerate(rows.tolist())}
    for result in iter_scan_patches(jobs, workers):
        if result.patches is None or result.mean_hu is None:
            raise EvaluationError(
                f"scan {result.key} cannot be read for the baselines ({result.error}); is the "
                "data folder the catalogue was built from still there?"
            )
        at = [position[r] for r in by_scan[result.key]]
        patches[at], mean_hu[at] = result.patches, result.mean_hu
        if result.descriptors is not None:
            descriptors[at] = result.descriptors
        if profiles is not None and result.profiles is not None:
            profiles[at] = result.profiles
    mask_scores: list[NoduleMaskScore] = []
    if not grow:
        measured = rows_network_descriptors(nodules, rows, patches, embedder)
        descriptors, mask_scores = measured.descriptors, measured.mask_scores
    return CutRows(patches, mean_hu, descriptors, mask_scores, profiles)


@dataclass(frozen=True)
class NetworkMeasured:
    """The rows' descriptors from the service's masks, and those masks' scores.

    Scores only where the set has reference masks (``mask_quality``).
    """

    descriptors: npt.NDArray[np.float64]
    """``(n, len(DESCRIPTOR_NAMES))``, NaN rows where no mask is found."""
    mask_scores: list[NoduleMaskScore]


def rows_network_descriptors(
    nodules: CatalogNodules,
    rows: npt.NDArray[np.int64],
    patches: npt.NDArray[np.float32],
    embedder: Embedder,
) -> NetworkMeasured:
    """The rows' descriptors from the masks the service finds (``network_descriptors``).

    ``patches``: the rows' patches, in row order. Each scan is opened once.
    """
    descriptors = np.full((len(rows), len(DESCRIPTOR_NAMES)), np.nan)
    scores: list[NoduleMaskScore] = []
    by_scan: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows.tolist()):
        by_scan[nodules.series_uid[r]].append(i)
    for uid, at in sorted(by_scan.items()):
        path = nodules.source_path[uid]
        scan = ScanRows(
            source=open_source(path),
            centers_xyz=[nodules.center_xyz[int(rows[i])] for i in at],
            diameters_mm=[float(nodules.diameter_mm[int(rows[i])]) for i in at],
            reference=read_reference(reference_mask_path(path, uid)),
        )
        measured = network_descriptors(embedder, scan, patches[at])
        descriptors[at] = measured.descriptors
        scores.extend(measured.mask_scores)
    return NetworkMeasured(descriptors, scores)


@dataclass(frozen=True)
class ScanRows:
    """The nodules of one scan to measure, and the scan's reference mask if the set has one."""

    source: VolumeSource
    centers_xyz: Sequence[tuple[float, float, float]]
    diameters_mm: Sequence[float]
    reference: CTVolume | None


def network_descriptors(
    embedder: Embedder, scan: ScanRows, patches: npt.NDArray[np.float32]
) -> NetworkMeasured:
    """Descriptors of the masks the service finds at the centres (``find_nodule``, one scan).

    Also their scores against the scan's reference mask where it has a nodule at the centre.

    ``patches``: the centres' patches, already cut. A NaN row where no mask is found.
    """
    out = np.full((len(scan.centers_xyz), len(DESCRIPTOR_NAMES)), np.nan)
    scores: list[NoduleMaskScore] = []
    for i, center in enumerate(scan.centers_xyz):
        try:
            found = find_nodule(embedder, scan.source, center, patches[i])
        except MeasureError:  # voxels too small to grow in: no mask, as when none is found
            continue
        if found is not None:
            out[i] = describe_region(scan.source, found.region).as_row()
        reference = None if scan.reference is None else reference_nodule(scan.reference, center)
        if reference is not None:
            scores.append(score_nodule(scan.source, center, scan.diameters_mm[i], found, reference))
    return NetworkMeasured(out, scores)


@dataclass(frozen=True)
class LoadedCatalogue:
    """What an evaluation reads from one catalogue version."""

    index_dir: Path
    version: str
    nodules: CatalogNodules
    manifest: Manifest


def read_catalogue(
    index_dir: Path, version: str | None, options: EvaluateOptions
) -> LoadedCatalogue:
    """The version's nodules and manifest; EvaluationError with fewer than 2 labelled."""
    catalog = Catalog.open(index_dir, version)
    try:
        nodules = load_nodules(catalog, options.label_rule)
        loaded = LoadedCatalogue(index_dir, catalog.version, nodules, catalog.manifest)
    finally:
        catalog.close()
    if len(nodules.labelled) < 2:
        raise EvaluationError(
            f"catalogue {loaded.version} has {len(nodules.labelled)} labelled nodules; "
            "leave-one-out needs 2 or more"
        )
    return loaded


def catalogue_embedder(source: LoadedCatalogue, device: str) -> Embedder:
    """The model the catalogue was built with (refused when its fingerprint differs)."""
    model_dir = source.manifest.model_dir_at(source.index_dir)
    network, card = load_model(model_dir, "cpu")
    if card.fingerprint != source.manifest.model_fingerprint:
        raise EvaluationError(
            f"the model in {model_dir} ({card.fingerprint[:12]}) is not the one catalogue "
            f"{source.version} was built with ({source.manifest.model_fingerprint[:12]})"
        )
    return Embedder(network, card, device, batch_size=64)
