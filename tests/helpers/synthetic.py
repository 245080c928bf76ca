"""Synthetic CT volumes with known geometry, written in every supported format."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import special

from indexer.data.synth.dicom_export import write_dicom_series
from model.clinical.measure import grow_at
from model.ct.dicom import DicomSeriesSource
from model.ct.geometry import Geometry
from model.ct.volume import CTVolume

F64 = npt.NDArray[np.float64]

#: Direction matrices (row-major, columns = world directions of array x, y, z) used by the tests.
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
#: y and z flipped (a 180 degree turn about x): det +1.
FLIP_YZ = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0)
#: Only z flipped (slices run head to feet in a left-handed frame): det -1.
FLIP_Z = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
#: Array x runs along world y and array y along world x: det -1.
SWAP_XY = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def rotation(angle_z_deg: float, angle_x_deg: float) -> tuple[float, ...]:
    """An oblique proper rotation R_z(a) @ R_x(b), row-major."""
    a, b = np.deg2rad(angle_z_deg), np.deg2rad(angle_x_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return tuple(float(v) for v in (rz @ rx).reshape(-1))


OBLIQUE = rotation(20.0, 10.0)


def make_geometry(
    shape_zyx: tuple[int, int, int],
    spacing_xyz: tuple[float, float, float],
    origin_xyz: tuple[float, float, float],
    direction: tuple[float, ...],
) -> Geometry:
    nz, ny, nx = shape_zyx
    return Geometry.from_itk(origin_xyz, spacing_xyz, direction, (nx, ny, nz))


def voxel_world_xyz(geometry: Geometry) -> F64:
    """World position (x, y, z) of every voxel centre, shape (*shape_zyx, 3)."""
    index = np.moveaxis(np.indices(geometry.shape_zyx, dtype=np.float64), 0, -1)
    return geometry.index_zyx_to_world(index)


def sphere_hu(
    geometry: Geometry,
    center_xyz: F64,
    radius_mm: float,
    *,
    background: float = -800.0,
    foreground: float = 200.0,
    edge_sigma_mm: float = 1.0,
) -> npt.NDArray[np.float32]:
    """A ball of ``foreground`` HU in ``background``, blurred edge, rounded to integer HU."""
    distance = np.linalg.norm(voxel_world_xyz(geometry) - center_xyz, axis=-1)
    inside = 0.5 * special.erfc((distance - radius_mm) / (edge_sigma_mm * np.sqrt(2.0)))
    return np.asarray(np.rint(background + (foreground - background) * inside), np.float32)


def to_sitk(volume: CTVolume) -> sitk.Image:
    image = sitk.GetImageFromArray(volume.hu_zyx.astype(np.int16))
    image.SetOrigin(volume.geometry.origin_xyz)
    image.SetSpacing(volume.geometry.spacing_xyz)
    image.SetDirection(volume.geometry.direction)
    return image


def write_itk(volume: CTVolume, path: Path, *, compress: bool = False) -> Path:
    """Write ``volume`` as int16 HU to ``path`` (.mhd, .mha, .nii or .nii.gz)."""
    sitk.WriteImage(to_sitk(volume), str(path), compress)
    return path


def write_dicom(
    volume: CTVolume, folder: Path, series_uid: str = "1.2.826.0.1.3680043.10.1"
) -> Path:
    write_dicom_series(volume, folder, series_uid=series_uid, shuffle_names_seed=7)
    return folder


def write_all_formats(volume: CTVolume, folder: Path) -> dict[str, Path]:
    """The same volume as .mhd/.raw, .nii.gz and a DICOM folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "mhd": write_itk(volume, folder / "ct.mhd"),
        "nii.gz": write_itk(volume, folder / "ct.nii.gz"),
        "dicom": write_dicom(volume, folder / "dicom"),
    }


def metaimage_via_nifti(image: sitk.Image, path: Path, *, compress: bool = False) -> Path:
    """``image`` as SimpleITK writes it after a trip through NIfTI, to ``path`` (.mha or .mhd).

    SimpleITK copies the NIfTI header fields it read (``dim[0]``, ``qform_code``,
    ``ITK_original_direction``, ...) into the MetaImage header, as any NIfTI to MetaImage
    conversion with SimpleITK does.
    """
    nifti = path.with_name(f"{path.name.split('.')[0]}-source.nii.gz")
    sitk.WriteImage(image, str(nifti))
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(path), compress)
    return path


def metaimage_via_dicom(folder: Path, path: Path) -> tuple[Path, sitk.Image]:
    """The DICOM series in ``folder`` read by SimpleITK and written to ``path`` (.mha or .mhd).

    ``ImageSeriesReader`` keeps the tags of each slice in its own dictionary and puts none on the
    image, so the written header would carry none; SimpleITK's series examples copy the first
    slice's tags (private ones included) onto the image, and so does this.

    Returns:
        The written path and the image SimpleITK read from the series.
    """
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOn()
    image = reader.Execute()
    for key in reader.GetMetaDataKeys(0):
        if not key.startswith("ITK_"):  # ITK's own array-valued entries have no text form
            image.SetMetaData(key, reader.GetMetaData(0, key))
    sitk.WriteImage(image, str(path))
    return path, image


def metaimage_header(path: Path) -> str:
    """The text of a MetaImage header, up to and including its ElementDataFile line."""
    data = path.read_bytes()
    end = data.index(b"\n", data.index(b"ElementDataFile"))
    return data[: end + 1].decode("latin-1")


def trilinear(hu_zyx: npt.NDArray[np.float32], index_zyx: F64) -> F64:
    """Reference trilinear interpolation at continuous indices (..., 3) inside [0, n-1]."""
    shape = np.asarray(hu_zyx.shape)
    i0 = np.clip(np.floor(index_zyx).astype(np.int64), 0, shape - 2)
    frac = index_zyx - i0
    out = np.zeros(index_zyx.shape[:-1])
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                weight = (
                    (frac[..., 0] if dz else 1 - frac[..., 0])
                    * (frac[..., 1] if dy else 1 - frac[..., 1])
                    * (frac[..., 2] if dx else 1 - frac[..., 2])
                )
                out += weight * hu_zyx[i0[..., 0] + dz, i0[..., 1] + dy, i0[..., 2] + dx]
    return out


def assert_patch_matches_reference(
    patch_hu_values: npt.NDArray[np.float32],
    hu_zyx: npt.NDArray[np.float32],
    index_zyx: F64,
    window: tuple[float, float],
    *,
    atol: float = 1e-3,
) -> tuple[int, int]:
    """Check HU patch values against the volume, whichever edge convention the sampler uses.

    Grid points inside ``[0, n-1]`` on every axis are the trilinear interpolation of the
    window-clipped HU; points a whole voxel or more outside the volume are air (the window's low
    end, at least -1000 HU); points in between are mixes of the two and stay within the window.

    Returns:
        (number of points checked as inside, number checked as air).
    """
    low, high = window
    air = max(-1000.0, low)
    shape = np.asarray(hu_zyx.shape)
    inside = np.all((index_zyx >= 0) & (index_zyx <= shape - 1), axis=-1)
    outside = np.any((index_zyx <= -1) | (index_zyx >= shape), axis=-1)
    clipped = np.clip(hu_zyx, low, high)
    np.testing.assert_allclose(
        patch_hu_values[inside], trilinear(clipped, index_zyx[inside]), atol=atol
    )
    # Not asserted bit-exact: a separable float32 blend of air with air may be off by 1e-4 HU.
    np.testing.assert_allclose(patch_hu_values[outside], air, atol=atol)
    band = ~inside & ~outside
    assert np.all(patch_hu_values[band] >= low - atol)
    assert np.all(patch_hu_values[band] <= high + atol)
    return int(inside.sum()), int(outside.sum())


def annotated_centers(table: Path, series_uid: str) -> list[tuple[float, float, float]]:
    """World centres (x, y, z mm) of a series' nodules in a LUNA16 annotations table."""
    with table.open() as f:
        rows = [r for r in csv.DictReader(f) if r["seriesuid"] == series_uid]
    return [(float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])) for r in rows]


def growable_nodule(synth_set: Path) -> tuple[DicomSeriesSource, tuple[float, float, float]]:
    """A DICOM series of the synthetic set and the centre of a nodule a mask grows at."""
    for folder in sorted((synth_set / "dicom").iterdir()):
        source = DicomSeriesSource(folder)
        for center in annotated_centers(synth_set / "annotations.csv", source.series_uid):
            if grow_at(source, center) is not None:
                return source, center
    raise AssertionError("no synthetic DICOM nodule grows a mask")


DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "flip_yz": (1, 0, 0, 0, -1, 0, 0, 0, -1),
    "permuted": (0, 1, 0, 0, 0, -1, 1, 0, 0),
    "permuted_flipped": (0, 0, -1, 1, 0, 0, 0, -1, 0),
    "oblique": tuple(
        np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))[0].reshape(-1).tolist()
    ),
}
