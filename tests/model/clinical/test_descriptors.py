"""Measured descriptors (model.clinical.descriptors) of known shapes, by formula."""

from __future__ import annotations

import numpy as np
import pytest

from model.clinical.descriptors import DESCRIPTOR_NAMES, describe, describe_grown
from model.clinical.measure import MeasureError
from model.ct.geometry import Geometry, axis_aligned
from model.ct.volume import CTVolume

SOLID_HU, LUNG_HU = 40.0, -850.0


def _ball(geometry: Geometry, radius_mm: float, center_zyx: tuple[int, int, int]) -> np.ndarray:
    sx, sy, sz = geometry.spacing_xyz
    z, y, x = np.indices(geometry.shape_zyx)
    cz, cy, cx = center_zyx
    return np.asarray(
        ((x - cx) * sx) ** 2 + ((y - cy) * sy) ** 2 + ((z - cz) * sz) ** 2 <= radius_mm**2
    )


def test_a_balls_descriptors() -> None:
    geometry = axis_aligned((40, 48, 48), (0.8, 0.8, 1.0), (-20.0, -19.0, -25.0))
    ball = _ball(geometry, 6.0, (20, 24, 24))
    # Two densities inside (a solid half and a ground-glass half): the percentiles see both.
    hu = np.where(ball, SOLID_HU, LUNG_HU).astype(np.float32)
    hu[:20][ball[:20]] = -500.0
    found = describe(ball, geometry, hu)
    assert found.mean_diameter_mm == pytest.approx(12.0, abs=0.8)
    assert found.volume_mm3 == pytest.approx(4 / 3 * np.pi * 6.0**3, rel=0.05)
    assert found.mean_hu == pytest.approx(float(hu[ball].mean()))
    assert found.p10_hu == -500.0
    assert found.p90_hu == SOLID_HU
    assert 0.4 < found.solid_fraction < 0.6
    assert 0.85 < found.sphericity <= 1.0
    assert len(found.as_row()) == len(DESCRIPTOR_NAMES)
    with pytest.raises(MeasureError):
        describe(ball, geometry, hu[:-1])


def test_descriptors_of_a_grown_region_and_none_in_empty_lung() -> None:
    geometry = axis_aligned((40, 48, 48), (0.8, 0.8, 1.0), (-20.0, -19.0, -25.0))
    ball = _ball(geometry, 5.0, (20, 24, 24))
    volume = CTVolume(np.where(ball, SOLID_HU, LUNG_HU).astype(np.float32), geometry)
    x, y, z = (float(v) for v in geometry.index_zyx_to_world(np.array([20, 24, 24])))
    grown = describe_grown(volume, (x, y, z))
    assert grown is not None
    assert grown.mean_diameter_mm == pytest.approx(10.0, abs=1.0)
    assert grown.mean_hu == pytest.approx(SOLID_HU)
    x, y, z = (float(v) for v in geometry.index_zyx_to_world(np.array([5, 5, 5])))
    assert describe_grown(volume, (x, y, z)) is None
