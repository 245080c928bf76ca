"""Uploaded CT data -> the patch the model sees, parsed defensively.

Formats: ``.npy``/``.npz`` arrays of HU in (z, y, x) order with ``spacing_zyx`` given (identity
direction, origin 0), ``.nii``/``.nii.gz``, ``.mha``, and ``.zip`` holding a DICOM series or a
``.mhd`` + ``.raw`` pair. Zip members are checked before extraction: no absolute paths or
``..``, a bounded number of members, and a bounded total and ratio of uncompressed size (zip
bombs). Parsing runs in ``cut_upload``, which the service calls in a worker subprocess with
memory and time limits, because image readers have had memory-safety bugs reachable from tiny
headers.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt

from model.ct import load_volume, open_volume
from model.geometry import Geometry
from model.itk_io import MAX_DIM, MAX_VOXELS, suffix_of
from model.preprocessing import PatchSpec, extract_patch
from model.volume import CTVolume, VolumeReadError, VolumeSource

ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha")
ZIP_SUFFIXES = (".zip",)
MAX_ZIP_MEMBERS = 5000
MAX_ZIP_RATIO = 200.0
MAX_ZIP_BYTES = 2 * 1024**3


class UnsupportedUploadError(ValueError):
    """The file type is not one the service reads (HTTP 415)."""


class UploadContentError(ValueError):
    """The upload is of a supported type but its content is unusable (HTTP 422)."""


@dataclass(frozen=True)
class UploadPatch:
    """What parsing an upload yields: the model's patch and where it was cut."""

    patch: npt.NDArray[np.float32]
    center_xyz: tuple[float, float, float]
    index_zyx: tuple[float, float, float]


def upload_kind(filename: str) -> str:
    """``array``, ``image`` or ``zip`` from the file name; refuses anything else."""
    suffix = suffix_of(Path(PurePosixPath(filename).name or "upload"))
    if suffix in ARRAY_SUFFIXES:
        return "array"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in ZIP_SUFFIXES:
        return "zip"
    raise UnsupportedUploadError(
        f"unsupported file type {suffix or '(none)'!r}; send .npy/.npz (with spacing_zyx), .nii, "
        ".nii.gz, .mha, or a .zip of a DICOM series or of a .mhd + .raw pair"
    )


def _check_hu(values: npt.NDArray[np.float32], what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise UploadContentError(f"{what} contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    # CT in HU spans air (-1000) to bone; arrays scaled to [0, 1] or [-1, 1] are not HU.
    if low < -4000 or high > 40000 or (high - low) < 100:
        raise UploadContentError(
            f"{what} values ({low:.3g}..{high:.3g}) do not look like Hounsfield units"
        )


def read_array(path: Path, spacing_zyx: Sequence[float] | None) -> CTVolume:
    """A HU volume from ``.npy`` / ``.npz`` (first array) with the given spacing."""
    if spacing_zyx is None:
        raise UploadContentError("an array upload needs spacing_zyx (mm, z y x)")
    spacing = [float(v) for v in spacing_zyx]
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise UploadContentError(f"spacing_zyx must be 3 positive numbers, got {list(spacing_zyx)}")
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r")
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = loaded.files
                if not names:
                    raise UploadContentError("the .npz holds no array")
                # The member's declared shape is checked before anything is decompressed.
                archive = loaded.zip
                if archive is None:
                    raise UploadContentError("the .npz cannot be read")
                with archive.open(f"{names[0]}.npy") as member:
                    major, _ = np.lib.format.read_magic(member)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if major == 1
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, _ = read_header(member)
                if len(shape) != 3 or int(np.prod(shape)) > MAX_VOXELS:
                    raise UploadContentError(f"array shape {shape} is outside the accepted range")
                array = loaded[names[0]]
        else:
            array = loaded  # memory-mapped: nothing is read before the checks below
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise UploadContentError(f"not a readable numpy file ({type(e).__name__})") from None
    if array.ndim != 3:
        raise UploadContentError(f"the array must be 3-D (z, y, x), got shape {array.shape}")
    if min(array.shape) < 2 or max(array.shape) > MAX_DIM or array.size > MAX_VOXELS:
        raise UploadContentError(f"array shape {array.shape} is outside the accepted range")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise UploadContentError(f"array type {array.dtype} is not a real number type")
    hu = np.asarray(array, dtype=np.float32)
    _check_hu(hu, "the array")
    nz, ny, nx = hu.shape
    geometry = Geometry.from_itk(
        (0.0, 0.0, 0.0), spacing[::-1], np.eye(3).reshape(-1), (nx, ny, nz)
    )
    return CTVolume(hu_zyx=hu, geometry=geometry)


def extract_zip(path: Path, out: Path) -> Path:
    """Extract a zip safely; returns the ``.mhd`` inside, or the folder (a DICOM series)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadContentError(
                    f"the zip holds {len(members)} members, more than {MAX_ZIP_MEMBERS}"
                )
            total = sum(m.file_size for m in members)
            packed = max(path.stat().st_size, 1)
            if total > MAX_ZIP_BYTES or total / packed > MAX_ZIP_RATIO:
                raise UploadContentError("the zip expands too much (zip bomb?)")
            for member in members:
                name = PurePosixPath(member.filename)
                if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                    raise UploadContentError(
                        f"zip member {member.filename!r} points outside the archive"
                    )
            archive.extractall(out)
    except zipfile.BadZipFile:
        raise UploadContentError("not a readable zip file") from None
    headers = sorted(out.rglob("*.mhd"))
    if len(headers) > 1:
        raise UploadContentError("the zip holds more than one .mhd")
    return headers[0] if headers else out


def cut_upload(
    path: Path,
    kind: str,
    spec: PatchSpec,
    center_xyz: Sequence[float] | None,
    spacing_zyx: Sequence[float] | None,
    workdir: Path,
) -> UploadPatch:
    """Read an upload and cut the model's patch at ``center_xyz`` (default: the volume's centre).

    Raises:
        UploadContentError / VolumeReadError: unusable content (422).
        CoordinateOutsideVolumeError: the centre is outside the volume (422).
    """
    source: VolumeSource
    if kind == "array":
        source = read_array(path, spacing_zyx)
    elif kind == "image":
        source = load_volume(path)
        _check_hu(source.hu_zyx, "the image")
    else:
        target = extract_zip(path, workdir / "unzipped")
        source = open_volume(target)
    geometry = source.geometry
    if center_xyz is None:
        middle = (np.asarray(geometry.shape_zyx, dtype=np.float64) - 1) / 2.0
        center = geometry.index_zyx_to_world(middle)
    else:
        center = np.asarray(center_xyz, dtype=np.float64)
    patch = extract_patch(source, center, spec)
    index_zyx = geometry.world_to_index_zyx(center)
    return UploadPatch(
        patch=patch,
        center_xyz=(float(center[0]), float(center[1]), float(center[2])),
        index_zyx=(float(index_zyx[0]), float(index_zyx[1]), float(index_zyx[2])),
    )


__all__ = [
    "UnsupportedUploadError",
    "UploadContentError",
    "UploadPatch",
    "VolumeReadError",
    "cut_upload",
    "upload_kind",
]
