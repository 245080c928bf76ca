"""POST /v1/search/upload with a mask: NIfTI, MetaImage or DICOM SEG, on any grid.

The mask's centroid is the query's centre and its voxels give the size (``model.clinical.masks``);
bad masks get a 4xx that names the problem.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from model.clinical.measure import grow_at
from model.clinical.seg import mask_segmentation
from model.ct.dicom import DicomSeriesSource
from model.ct.geometry import Geometry
from model.ct.volume import CTVolume
from tests.helpers.synthetic import OBLIQUE, make_geometry, sphere_hu, voxel_world_xyz, write_dicom

CENTER_XYZ = np.array([4.0, -6.0, 10.0])
RADIUS_MM = 5.0


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[CTVolume, bytes]:
    """An oblique CT with one 10 mm ball, and its bytes as .nii.gz."""
    geometry = make_geometry((40, 48, 48), (0.8, 0.8, 1.25), (-15.0, -25.0, -10.0), OBLIQUE)
    volume = CTVolume(sphere_hu(geometry, CENTER_XYZ, RADIUS_MM), geometry)
    path = tmp_path_factory.mktemp("mask_ct") / "ct.nii.gz"
    sitk.WriteImage(_image(volume.hu_zyx.astype(np.int16), geometry), str(path), True)
    return volume, path.read_bytes()


def _image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(geometry.origin_xyz)
    image.SetSpacing(geometry.spacing_xyz)
    image.SetDirection(geometry.direction)
    return image


def _ball_mask(geometry: Geometry, radius_mm: float = RADIUS_MM) -> np.ndarray:
    distance = np.linalg.norm(voxel_world_xyz(geometry) - CENTER_XYZ, axis=-1)
    return np.asarray(distance <= radius_mm, dtype=np.uint8)


def _file(array: np.ndarray, geometry: Geometry, tmp_path: Path, name: str) -> bytes:
    path = tmp_path / name
    sitk.WriteImage(_image(array, geometry), str(path), name.endswith(".gz"))
    return path.read_bytes()


def _post(
    client: TestClient, ct_name: str, ct_bytes: bytes, mask: tuple[str, bytes], **form: str
) -> tuple[int, dict[str, Any]]:
    answer = client.post(
        "/v1/search/upload",
        files={"file": (ct_name, ct_bytes), "mask": mask},
        data={"k": "3", **form},
    )
    return answer.status_code, answer.json()


def _assert_on_the_ball(body: dict[str, Any], diameter_mm: float) -> None:
    center = np.asarray(body["query"]["center_xyz"])
    assert np.linalg.norm(center - CENTER_XYZ) < 0.5, center
    size = body["size_estimate"]
    assert size["method"].startswith("from the uploaded mask")
    assert abs(size["mean_diameter_mm"] - diameter_mm) < 1.5, size
    assert size["nodule_type"] == "solid"
    assert "not a diagnosis" in size["note"]


def test_a_nifti_mask_on_the_cts_grid(
    client: TestClient, ct: tuple[CTVolume, bytes], tmp_path: Path
) -> None:
    volume, ct_bytes = ct
    mask = _file(_ball_mask(volume.geometry), volume.geometry, tmp_path, "mask.nii.gz")
    status, body = _post(client, "ct.nii.gz", ct_bytes, ("mask.nii.gz", mask))
    assert status == 200, body
    _assert_on_the_ball(body, 2 * RADIUS_MM)


def test_a_metaimage_mask_on_its_own_coarser_axis_aligned_grid(
    client: TestClient, ct: tuple[CTVolume, bytes], tmp_path: Path
) -> None:
    _, ct_bytes = ct
    own = make_geometry(
        (16, 16, 16), (1.0, 1.0, 1.0), (-4.0, -14.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)
    )
    mask = _file(_ball_mask(own), own, tmp_path, "mask.mha")
    status, body = _post(client, "ct.nii.gz", ct_bytes, ("mask.mha", mask))
    assert status == 200, body
    _assert_on_the_ball(body, 2 * RADIUS_MM)


def test_a_dicom_seg_gives_back_the_region_it_was_made_of(
    client: TestClient, ct: tuple[CTVolume, bytes], tmp_path: Path
) -> None:
    volume, _ = ct
    folder = write_dicom(volume, tmp_path / "dicom", series_uid="1.2.826.0.1.3680043.10.901")
    archive, seg = _seg_of_the_ball(folder)
    status, body = _post(client, "ct.zip", archive, ("mask.dcm", seg))
    assert status == 200, body
    size = body["size_estimate"]
    point = (float(CENTER_XYZ[0]), float(CENTER_XYZ[1]), float(CENTER_XYZ[2]))
    region = grow_at(DicomSeriesSource(folder), point)
    assert region is not None
    grown = region.measurement
    assert (size["mean_diameter_mm"], size["volume_mm3"]) == (
        grown.mean_diameter_mm,
        grown.volume_mm3,
    )
    _assert_on_the_ball(body, grown.mean_diameter_mm)


def test_without_a_mask_estimate_size_grows_one(
    client: TestClient, ct: tuple[CTVolume, bytes]
) -> None:
    _, ct_bytes = ct
    center = ",".join(str(v) for v in CENTER_XYZ)
    answer = client.post(
        "/v1/search/upload",
        files={"file": ("ct.nii.gz", ct_bytes)},
        data={"k": "3", "center_xyz": center, "estimate_size": "true"},
    )
    assert answer.status_code == 200, answer.text
    size = answer.json()["size_estimate"]
    assert size["method"].startswith("region growing")
    assert abs(size["mean_diameter_mm"] - 2 * RADIUS_MM) < 3.0


def test_bad_masks_are_refused_naming_the_problem(
    client: TestClient, ct: tuple[CTVolume, bytes], tmp_path: Path
) -> None:
    volume, ct_bytes = ct
    geometry = volume.geometry
    ball = _file(_ball_mask(geometry), geometry, tmp_path, "ball.nii.gz")
    empty = _file(np.zeros(geometry.shape_zyx, np.uint8), geometry, tmp_path, "empty.nii.gz")
    far = make_geometry(
        (8, 8, 8), (1.0, 1.0, 1.0), (500.0, 500.0, 500.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)
    )
    outside = _file(np.ones((8, 8, 8), np.uint8), far, tmp_path, "far.nii.gz")
    ct_slice = io.BytesIO()
    folder = write_dicom(volume, tmp_path / "slices", series_uid="1.2.826.0.1.3680043.10.902")
    ct_slice.write(next(folder.iterdir()).read_bytes())
    cases = [
        (("m.nii.gz", ball), {"center_xyz": "0,0,0"}, 422, "either center_xyz or a mask"),
        (("m.nii.gz", empty), {}, 422, "the mask is empty"),
        (("m.nii.gz", outside), {}, 422, "outside the CT volume"),
        (("m.nii.gz", b"not a nifti at all"), {}, 422, "mask.nii.gz: not a readable NIfTI"),
        (("m.png", ball), {}, 415, "unsupported mask type '.png'"),
        (("m.dcm", b"\0" * 300), {}, 422, "not a readable DICOM file"),
        (("m.dcm", ct_slice.getvalue()), {}, 422, "not a Segmentation"),
    ]
    for mask, form, status, detail in cases:
        got, body = _post(client, "ct.nii.gz", ct_bytes, mask, **form)
        assert (got, detail in body["detail"]) == (status, True), (mask[0], body)


def _seg_of_the_ball(folder: Path) -> tuple[bytes, bytes]:
    """A DICOM series of the CT (zipped) and a SEG of its ball grown on it."""
    source = DicomSeriesSource(folder)
    region = grow_at(source, (float(CENTER_XYZ[0]), float(CENTER_XYZ[1]), float(CENTER_XYZ[2])))
    assert region is not None
    seg = io.BytesIO()
    mask_segmentation(source, region, "test").save_as(seg, enforce_file_format=True)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.iterdir()):
            z.write(path, path.name)
    return archive.getvalue(), seg.getvalue()


@pytest.mark.parametrize(
    ("attribute", "says"),
    [("FrameOfReferenceUID", "FrameOfReferenceUID"), ("PatientID", "another patient")],
)
def test_a_seg_of_another_study_is_refused(
    client: TestClient, ct: tuple[CTVolume, bytes], tmp_path: Path, attribute: str, says: str
) -> None:
    volume, _ = ct
    folder = write_dicom(volume, tmp_path / "dicom", series_uid="1.2.826.0.1.3680043.10.903")
    archive, seg = _seg_of_the_ball(folder)
    other = pydicom.dcmread(io.BytesIO(seg))
    setattr(other, attribute, generate_uid() if attribute.endswith("UID") else "SOMEONE-ELSE")
    edited = io.BytesIO()
    other.save_as(edited, enforce_file_format=True)
    status, body = _post(client, "ct.zip", archive, ("mask.dcm", edited.getvalue()))
    assert status == 422, body
    assert says in body["detail"]


def test_a_mask_wider_than_any_nodule_is_refused(client: TestClient, tmp_path: Path) -> None:
    """A mask over the whole CT is no nodule (it measured 213 mm, Lung-RADS 4B, before)."""
    geometry = make_geometry((40, 80, 80), (1.0, 1.0, 2.0), (-40.0, -40.0, -40.0), OBLIQUE)
    hu = sphere_hu(geometry, CENTER_XYZ, RADIUS_MM).astype(np.int16)
    ct_bytes = _file(hu, geometry, tmp_path, "big.nii.gz")
    everything = _file(np.ones(geometry.shape_zyx, np.uint8), geometry, tmp_path, "all.nii.gz")
    status, body = _post(client, "ct.nii.gz", ct_bytes, ("m.nii.gz", everything))
    assert status == 422, body
    assert "no nodule is wider than 60 mm" in body["detail"]
