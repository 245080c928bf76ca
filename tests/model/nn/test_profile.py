"""The nodule profile (size, density, shape blocks) read off a CT at a point, given a size."""

from __future__ import annotations

import numpy as np
import pytest

from model.ct.geometry import Geometry
from model.ct.volume import CTVolume
from model.nn.profile import (
    DENSITY_NAMES,
    PROFILE_NAMES,
    SHAPE_NAMES,
    ProfileError,
    nodule_profile,
    profile_from_hu,
)
from model.preprocessing import PatchSpec

CENTER_XYZ = (10.0, -20.0, -100.0)
SPEC = PatchSpec(outside="air")


def _ball_ct(
    radius_mm: float, hu: float = 30.0, core_hu: float | None = None, spacing: float = 0.8
) -> CTVolume:
    """Lung (-850 HU) with a ball at ``CENTER_XYZ``; optionally a calcified core of radius / 2."""
    size = np.array([80, 80, 80])
    origin = np.asarray(CENTER_XYZ) - (size - 1) / 2.0 * spacing
    geometry = Geometry.from_itk(origin, (spacing,) * 3, np.eye(3).reshape(-1), size)
    index = np.indices(geometry.shape_zyx).reshape(3, -1).T
    distance = np.linalg.norm(geometry.index_zyx_to_world(index) - np.asarray(CENTER_XYZ), axis=1)
    values = np.where(distance <= radius_mm, hu, -850.0)
    if core_hu is not None:
        values = np.where(distance <= radius_mm / 2.0, core_hu, values)
    return CTVolume(values.reshape(geometry.shape_zyx).astype(np.float32), geometry)


def _value(profile_values: tuple[float, ...], name: str) -> float:
    return profile_values[PROFILE_NAMES.index(name)]


def test_a_solid_ball_reads_as_solid_round_and_its_size() -> None:
    profile = nodule_profile(_ball_ct(6.0), CENTER_XYZ, 12.0, SPEC)
    v = profile.values
    assert len(v) == len(PROFILE_NAMES) == 1 + len(DENSITY_NAMES) + len(SHAPE_NAMES)
    assert _value(v, "log_diameter_mm") == pytest.approx(np.log(12.0))
    assert _value(v, "p50_hu") == pytest.approx(0.030, abs=0.01)  # HU / 1000
    assert _value(v, "calcium_share") == 0.0
    assert _value(v, "halo_hu") == pytest.approx(-0.850, abs=0.01)
    assert _value(v, "boundary_radius") == pytest.approx(1.0, abs=0.1)
    assert _value(v, "boundary_cv") < 0.05
    assert _value(v, "boundary_min_max") > 0.85
    assert _value(v, "open_ray_share") == 0.0


def test_calcium_is_seen_though_the_network_window_clips_it() -> None:
    plain = nodule_profile(_ball_ct(6.0), CENTER_XYZ, 12.0, SPEC).values
    calcified = nodule_profile(_ball_ct(6.0, core_hu=800.0), CENTER_XYZ, 12.0, SPEC).values
    assert _value(calcified, "calcium_share") > 0.08
    assert _value(calcified, "p98_hu") == pytest.approx(0.8, abs=0.05)
    assert _value(plain, "p98_hu") < 0.1


def test_the_given_size_sets_the_scale() -> None:
    """Read at twice its size, a ball's boundary lies at half the radius."""
    at_size = nodule_profile(_ball_ct(5.0), CENTER_XYZ, 10.0, SPEC).values
    too_big = nodule_profile(_ball_ct(5.0), CENTER_XYZ, 20.0, SPEC).values
    assert _value(too_big, "boundary_radius") == pytest.approx(0.5, abs=0.15)
    assert _value(too_big, "mean_hu") < _value(at_size, "mean_hu")


def test_same_nodule_on_another_voxel_grid_has_nearly_the_same_profile() -> None:
    a = np.asarray(nodule_profile(_ball_ct(6.0, spacing=0.7), CENTER_XYZ, 12.0, SPEC).values)
    b = np.asarray(nodule_profile(_ball_ct(6.0, spacing=1.0), CENTER_XYZ, 12.0, SPEC).values)
    assert np.abs(a - b).max() < 0.12


@pytest.mark.parametrize("diameter", [float("nan"), 0.0, -3.0, float("inf")])
def test_an_unusable_diameter_is_refused(diameter: float) -> None:
    with pytest.raises(ProfileError, match="diameter"):
        nodule_profile(_ball_ct(6.0), CENTER_XYZ, diameter, SPEC)


def test_a_malformed_grid_is_refused() -> None:
    with pytest.raises(ProfileError, match="shape"):
        profile_from_hu(np.zeros((10, 10, 10), dtype=np.float32), 8.0)
    grid = np.zeros((48, 48, 48), dtype=np.float32)
    grid[0, 0, 0] = np.nan
    with pytest.raises(ProfileError, match="finite"):
        profile_from_hu(grid, 8.0)
