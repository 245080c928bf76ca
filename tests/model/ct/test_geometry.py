"""World (x, y, z mm) <-> index (z, y, x) conversions under spacing, origin and any direction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from model.ct.geometry import Geometry, GeometryError, itk_index_xyz, spacing_zyx

# Derandomized: CI runs the same 100 examples every time (a fresh clone has no example database).
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)

spacings = st.tuples(*[st.floats(0.3, 5.0, allow_subnormal=False)] * 3)
origins = st.tuples(*[st.floats(-500.0, 500.0, allow_subnormal=False)] * 3)
shapes = st.tuples(*[st.integers(1, 600)] * 3)
indices_zyx = st.tuples(*[st.floats(-50.0, 650.0, allow_subnormal=False)] * 3)
worlds_xyz = st.tuples(*[st.floats(-1500.0, 1500.0, allow_subnormal=False)] * 3)


@st.composite
def signed_permutations(draw: st.DrawFn) -> tuple[float, ...]:
    """Axis permutations with flips: every orientation a scanner or a converter produces."""
    perm = draw(st.permutations([0, 1, 2]))
    signs = draw(st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3))
    d = np.zeros((3, 3))
    for column, (row, sign) in enumerate(zip(perm, signs, strict=True)):
        d[row, column] = sign
    return tuple(float(v) for v in d.reshape(-1))


@st.composite
def rotations(draw: st.DrawFn) -> tuple[float, ...]:
    """Random orthonormal matrices (proper and improper) from the QR of a random matrix."""
    m = np.array(
        draw(st.lists(st.floats(-1.0, 1.0, allow_subnormal=False), min_size=9, max_size=9))
    ).reshape(3, 3)
    assume(abs(np.linalg.det(m)) > 0.05)
    q, _ = np.linalg.qr(m)
    return tuple(float(v) for v in q.reshape(-1))


directions = st.one_of(signed_permutations(), rotations())


def geometry_of(
    origin: tuple[float, float, float],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...],
    shape_zyx: tuple[int, int, int] = (40, 50, 60),
) -> Geometry:
    nz, ny, nx = shape_zyx
    return Geometry.from_itk(origin, spacing, direction, (nx, ny, nz))


@SETTINGS
@given(origins, spacings, directions, indices_zyx)
def test_index_world_index_round_trip(
    origin: tuple[float, float, float],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...],
    index: tuple[float, float, float],
) -> None:
    g = geometry_of(origin, spacing, direction)
    back = g.world_to_index_zyx(g.index_zyx_to_world(index))
    np.testing.assert_allclose(back, index, atol=1e-7)


@SETTINGS
@given(origins, spacings, directions, worlds_xyz)
def test_world_index_world_round_trip(
    origin: tuple[float, float, float],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...],
    world: tuple[float, float, float],
) -> None:
    g = geometry_of(origin, spacing, direction)
    back = g.index_zyx_to_world(g.world_to_index_zyx(world))
    np.testing.assert_allclose(back, world, atol=1e-7)


@SETTINGS
@given(origins, spacings, directions, st.lists(indices_zyx, min_size=1, max_size=5))
def test_matches_simpleitk(
    origin: tuple[float, float, float],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...],
    points: list[tuple[float, float, float]],
) -> None:
    """SimpleITK's own index <-> physical point transform is the reference (x, y, z order)."""
    g = geometry_of(origin, spacing, direction)
    image = sitk.Image(2, 2, 2, sitk.sitkUInt8)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    for index_zyx in points:
        expected = image.TransformContinuousIndexToPhysicalPoint(index_zyx[::-1])
        np.testing.assert_allclose(g.index_zyx_to_world(index_zyx), expected, atol=1e-7)
        expected_index_xyz = image.TransformPhysicalPointToContinuousIndex(expected)
        np.testing.assert_allclose(
            g.world_to_index_zyx(expected), expected_index_xyz[::-1], atol=1e-7
        )
    # Arrays of points convert row by row, keeping the leading shape.
    batch = np.asarray(points).reshape(len(points), 1, 3)
    world = g.index_zyx_to_world(batch)
    assert world.shape == batch.shape
    np.testing.assert_allclose(g.world_to_index_zyx(world), batch, atol=1e-7)


@SETTINGS
@given(origins, spacings, directions)
def test_origin_and_unit_steps(
    origin: tuple[float, float, float],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...],
) -> None:
    """Index (0,0,0) is the origin; index (0,0,1) (z, y, x order) is one x step along column 0."""
    g = geometry_of(origin, spacing, direction)
    d = np.asarray(direction).reshape(3, 3)
    o = np.asarray(origin)
    np.testing.assert_allclose(g.index_zyx_to_world([0, 0, 0]), o, atol=1e-9)
    np.testing.assert_allclose(g.index_zyx_to_world([0, 0, 1]), o + spacing[0] * d[:, 0], atol=1e-9)
    np.testing.assert_allclose(g.index_zyx_to_world([0, 1, 0]), o + spacing[1] * d[:, 1], atol=1e-9)
    np.testing.assert_allclose(g.index_zyx_to_world([1, 0, 0]), o + spacing[2] * d[:, 2], atol=1e-9)
    # The inverse: one x step from the origin is index (0, 0, 1).
    np.testing.assert_allclose(
        g.world_to_index_zyx(o + spacing[0] * d[:, 0]), [0.0, 0.0, 1.0], atol=1e-9
    )


def test_flipped_axes_by_hand() -> None:
    """A worked example: x flipped, y and z swapped, anisotropic spacing."""
    # Column x -> world -x, column y -> world z, column z -> world y.
    direction = (-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)
    g = Geometry.from_itk((10.0, 20.0, 30.0), (0.5, 0.7, 2.5), direction, (100, 80, 60))
    assert g.shape_zyx == (60, 80, 100)
    assert g.size_xyz == (100, 80, 60)
    # index z=2, y=3, x=4 -> x: 10 - 4*0.5, y: 20 + 2*2.5, z: 30 + 3*0.7
    np.testing.assert_allclose(g.index_zyx_to_world([2, 3, 4]), [8.0, 25.0, 32.1], atol=1e-12)
    np.testing.assert_allclose(g.world_to_index_zyx([8.0, 25.0, 32.1]), [2, 3, 4], atol=1e-12)


@SETTINGS
@given(origins, spacings, directions, shapes, st.tuples(*[st.integers(0, 30)] * 3), indices_zyx)
def test_sub_box_geometry(
    origin: tuple[float, float, float],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...],
    shape: tuple[int, int, int],
    start: tuple[int, int, int],
    index: tuple[float, float, float],
) -> None:
    """Index i of a sub-box starting at ``start`` is index start + i of the whole volume."""
    g = geometry_of(origin, spacing, direction, shape)
    sub = g.with_shape_zyx((5, 6, 7), start)
    assert sub.shape_zyx == (5, 6, 7)
    assert sub.spacing_xyz == g.spacing_xyz
    assert sub.direction == g.direction
    np.testing.assert_allclose(
        sub.index_zyx_to_world(index), g.index_zyx_to_world(np.add(index, start)), atol=1e-7
    )


@SETTINGS
@given(origins, spacings, signed_permutations(), st.tuples(*[st.integers(1, 9)] * 3))
def test_extent_and_contains(
    origin: tuple[float, float, float],
    spacing: tuple[float, float, float],
    direction: tuple[float, ...],
    shape: tuple[int, int, int],
) -> None:
    g = geometry_of(origin, spacing, direction, shape)
    centers = g.index_zyx_to_world(np.moveaxis(np.indices(shape), 0, -1).reshape(-1, 3))
    low, high = g.extent_world_xyz()
    np.testing.assert_allclose(low, centers.min(axis=0), atol=1e-9)
    np.testing.assert_allclose(high, centers.max(axis=0), atol=1e-9)
    upper = np.asarray(shape, dtype=np.float64) - 1
    for corner in itertools.product(*[(0.0, 1.0)] * 3):
        edge = np.asarray(corner) * upper
        outward = np.where(np.asarray(corner) > 0, 1.0, -1.0)
        # Voxel extents reach half a voxel beyond the outer centres, and no further.
        assert g.contains_world(g.index_zyx_to_world(edge + 0.49 * outward))
        assert not g.contains_world(g.index_zyx_to_world(edge + 0.51 * outward))


def test_axis_order_helpers() -> None:
    g = Geometry.from_itk((0, 0, 0), (0.6, 0.7, 2.5), (1, 0, 0, 0, 1, 0, 0, 0, 1), (30, 20, 10))
    assert spacing_zyx(g) == (2.5, 0.7, 0.6)
    assert itk_index_xyz((3, 4, 5)) == [5, 4, 3]


GOOD_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    "direction",
    [
        pytest.param((2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), id="scaled-column"),
        pytest.param((1.0, 0.1, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), id="sheared"),
        pytest.param((1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0), id="repeated-axis"),
        pytest.param((0.0,) * 9, id="zero"),
        pytest.param((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, float("nan")), id="nan"),
    ],
)
def test_refuses_non_orthonormal_direction(direction: tuple[float, ...]) -> None:
    with pytest.raises(GeometryError, match="not orthonormal"):
        Geometry.from_itk((0, 0, 0), (1, 1, 1), direction, (4, 4, 4))


def test_refuses_direction_of_wrong_length() -> None:
    with pytest.raises(GeometryError, match="9 values"):
        Geometry.from_itk((0, 0, 0), (1, 1, 1), GOOD_DIRECTION[:8], (4, 4, 4))


@pytest.mark.parametrize(
    "spacing",
    [(0.0, 1.0, 1.0), (1.0, -0.5, 1.0), (1.0, 1.0, float("nan")), (1.0, float("inf"), 1.0)],
)
def test_refuses_non_positive_spacing(spacing: tuple[float, float, float]) -> None:
    with pytest.raises(GeometryError, match="spacing must be 3 positive finite numbers"):
        Geometry.from_itk((0, 0, 0), spacing, GOOD_DIRECTION, (4, 4, 4))


@pytest.mark.parametrize("origin", [(float("nan"), 0.0, 0.0), (0.0, 0.0, float("-inf"))])
def test_refuses_non_finite_origin(origin: tuple[float, float, float]) -> None:
    with pytest.raises(GeometryError, match="origin must be 3 finite numbers"):
        Geometry.from_itk(origin, (1, 1, 1), GOOD_DIRECTION, (4, 4, 4))


@pytest.mark.parametrize("size_xyz", [(0, 4, 4), (4, 4, -1)])
def test_refuses_empty_shape(size_xyz: tuple[int, int, int]) -> None:
    with pytest.raises(GeometryError, match="shape must be 3 positive sizes"):
        Geometry.from_itk((0, 0, 0), (1, 1, 1), GOOD_DIRECTION, size_xyz)


def test_refuses_points_of_wrong_shape() -> None:
    g = Geometry.from_itk((0, 0, 0), (1, 1, 1), GOOD_DIRECTION, (4, 4, 4))
    with pytest.raises(GeometryError, match=r"shape \(\.\.\., 3\)"):
        g.world_to_index_zyx([1.0, 2.0])
    with pytest.raises(GeometryError, match=r"shape \(\.\.\., 3\)"):
        g.index_zyx_to_world(np.zeros((4, 2)))
