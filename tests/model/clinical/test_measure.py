"""Size, type and Lung-RADS size category of nodule masks (model.clinical.measure)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from model.clinical.measure import (
    GROUND_GLASS_MAX_SOLID,
    SOLID_MIN_SOLID,
    MeasureError,
    grow_region,
    lung_rads_category,
    mask_core,
    mean_hu_in_sphere,
    measure,
    nodule_type,
)
from model.ct.geometry import Geometry, axis_aligned
from model.ct.open import load_volume
from model.ct.volume import CTVolume

SOLID_HU, LUNG_HU, GGO_HU = 40.0, -850.0, -650.0


def _ellipsoid(
    geometry: Geometry, semi_axes_mm: tuple[float, float, float], center_zyx: tuple[int, int, int]
) -> np.ndarray:
    """A mask of an ellipsoid with semi-axes (x, y, z) in mm around a voxel."""
    sx, sy, sz = geometry.spacing_xyz
    z, y, x = np.indices(geometry.shape_zyx)
    ax, ay, az = semi_axes_mm
    cz, cy, cx = center_zyx
    return np.asarray(
        ((x - cx) * sx / ax) ** 2 + ((y - cy) * sy / ay) ** 2 + ((z - cz) * sz / az) ** 2 <= 1
    )


@pytest.mark.parametrize(
    ("kind", "mean_mm", "category"),
    [
        ("solid", 5.9, "2"),
        ("solid", 6.0, "3"),
        ("solid", 7.9, "3"),
        ("solid", 8.0, "4A"),
        ("solid", 14.9, "4A"),
        ("solid", 15.0, "4B"),
        ("ground-glass", 29.9, "2"),
        ("ground-glass", 30.0, "3"),
        ("part-solid", 12.0, None),
    ],
)
def test_lung_rads_size_category_at_each_boundary(
    kind: str, mean_mm: float, category: str | None
) -> None:
    assert lung_rads_category(kind, mean_mm) == category  # type: ignore[arg-type]


@pytest.mark.parametrize("flip_x", [False, True])
def test_an_ellipsoid_measures_its_axes_and_volume(flip_x: bool) -> None:
    direction = np.diag([-1.0 if flip_x else 1.0, 1.0, 1.0]).reshape(-1)
    geometry = Geometry.from_itk((10.0, -5.0, 3.0), (0.5, 0.5, 1.0), direction, (64, 64, 40))
    mask = _ellipsoid(geometry, (8.0, 5.0, 4.0), (20, 32, 32))
    found = measure(mask, geometry, np.where(mask, SOLID_HU, LUNG_HU))
    # Edge to edge on a 0.5 mm grid: within one voxel of 16 and 10 mm.
    assert found.long_axis_mm == pytest.approx(16.0, abs=0.6)
    assert found.short_axis_mm == pytest.approx(10.0, abs=0.6)
    assert found.mean_diameter_mm == round((found.long_axis_mm + found.short_axis_mm) / 2, 1)
    assert found.volume_mm3 == pytest.approx(4 / 3 * np.pi * 8 * 5 * 4, rel=0.05)
    assert found.slice_index == 20
    assert found.nodule_type == "solid"
    assert found.lung_rads == "4A"


def test_type_follows_the_solid_fraction_of_the_core() -> None:
    geometry = axis_aligned((20, 48, 48), (1.0, 0.7, 0.7))
    mask = _ellipsoid(geometry, (7.0, 7.0, 5.0), (10, 24, 24))
    ground_glass = measure(mask, geometry, np.where(mask, GGO_HU, LUNG_HU))
    assert ground_glass.nodule_type == "ground-glass"
    assert ground_glass.lung_rads == "2"
    # The in-plane edge does not count: a dense edge around a ground-glass core is ground-glass.
    edge = mask & ~mask_core(mask)
    dense_edge = np.where(mask, GGO_HU, LUNG_HU)
    dense_edge[edge] = SOLID_HU
    assert edge.sum() > 0.2 * mask.sum()
    assert measure(mask, geometry, dense_edge).nodule_type == "ground-glass"
    # Half of the core solid: above both cut-points.
    half = np.where(mask, GGO_HU, LUNG_HU)
    half[:, :, 24:] = np.where(mask[:, :, 24:], SOLID_HU, LUNG_HU)
    assert measure(mask, geometry, half).nodule_type == "solid"
    assert nodule_type((GROUND_GLASS_MAX_SOLID + SOLID_MIN_SOLID) / 2) == "part-solid"


def test_region_growing_keeps_the_nodule_and_cuts_a_thin_vessel() -> None:
    geometry = axis_aligned((40, 64, 64), (1.0, 0.7, 0.7))
    nodule = _ellipsoid(geometry, (6.0, 6.0, 6.0), (20, 32, 32))
    hu = np.where(nodule, SOLID_HU, LUNG_HU).astype(np.float32)
    hu[20, 32, 32:] = SOLID_HU  # a one-voxel vessel leaving the nodule
    center = tuple(float(v) for v in geometry.index_zyx_to_world(np.array([20.0, 32.0, 32.0])))
    grown = grow_region(hu, geometry, center)  # type: ignore[arg-type]
    dice = 2 * (grown & nodule).sum() / (grown.sum() + nodule.sum())
    assert dice > 0.9
    assert not grown[20, 32, 60]  # the vessel's far end is not part of the nodule


def test_unmeasurable_input_is_refused() -> None:
    geometry = axis_aligned((8, 8, 8), (1.0, 1.0, 1.0))
    with pytest.raises(MeasureError, match="empty"):
        measure(np.zeros((8, 8, 8), dtype=bool), geometry)
    with pytest.raises(MeasureError, match="shape"):
        measure(np.ones((4, 8, 8), dtype=bool), geometry)
    with pytest.raises(MeasureError, match="outside"):
        grow_region(np.zeros((8, 8, 8)), geometry, (100.0, 0.0, 0.0))


@pytest.mark.shared_data
@pytest.mark.slow  # real CT: make test, not make test-fast
def test_real_masks_measure_close_to_the_readers_diameter(shared_data: Path) -> None:
    """The first 40 real VOIs: the mask's mean diameter tracks LUNA16's diameter_mm."""
    root = shared_data / "lidc_vois"
    with (root / "nodules.csv").open(newline="", encoding="utf-8") as f:
        vois = list(csv.DictReader(f))[:40]
    ours, theirs = [], []
    for voi in vois:
        image = load_volume(root / voi["image"])
        mask = load_volume(root / voi["mask"]).hu_zyx > 0.5
        found = measure(mask, image.geometry, image.hu_zyx)
        assert found.nodule_type is not None
        ours.append(found.mean_diameter_mm)
        theirs.append(float(voi["diameter_mm"]))
    assert np.corrcoef(ours, theirs)[0, 1] > 0.85
    assert np.median(np.abs(np.subtract(ours, theirs))) < 4.0


def test_mean_hu_in_a_sphere_is_the_mean_of_the_voxels_within_it() -> None:
    """Expected by formula: a 10 mm ball of 40 HU in -850 HU lung, on an anisotropic grid."""
    geometry = axis_aligned((40, 48, 48), (0.8, 0.8, 1.25), (-20.0, -19.0, -25.0))
    center_zyx = (20, 24, 24)
    ball = _ellipsoid(geometry, (5.0, 5.0, 5.0), center_zyx)
    hu = np.where(ball, SOLID_HU, LUNG_HU).astype(np.float32)
    volume = CTVolume(hu, geometry)
    x0, y0, z0 = (float(v) for v in geometry.index_zyx_to_world(np.asarray(center_zyx)))
    center = (x0, y0, z0)
    inside = mean_hu_in_sphere(volume, center, 3.75)  # 0.75 x the radius: all ball
    assert inside == pytest.approx(SOLID_HU)
    z, y, x = np.indices(geometry.shape_zyx)
    sx, sy, sz = geometry.spacing_xyz
    cz, cy, cx = center_zyx
    # 7.9 mm: no voxel centre lies exactly on it (8.0 would tie with rounding).
    within = ((x - cx) * sx) ** 2 + ((y - cy) * sy) ** 2 + ((z - cz) * sz) ** 2 <= 7.9**2
    expected = float(hu[within].astype(np.float64).mean())
    assert mean_hu_in_sphere(volume, center, 7.9) == pytest.approx(expected)
    # Smaller than a voxel: the voxel at the point.
    assert mean_hu_in_sphere(volume, center, 0.01) == pytest.approx(SOLID_HU)
    with pytest.raises(MeasureError, match="outside the volume"):
        mean_hu_in_sphere(volume, (500.0, 0.0, 0.0), 3.0)
