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

import dataclasses
import json
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict
from pydicom.dataset import Dataset

from model.clinical.masks import (
    IMAGE_MASK_SUFFIXES,
    SEG_SUFFIXES,
    centroid_xyz,
    mask_region,
    read_mask,
)
from model.clinical.measure import (
    GROW_METHOD,
    MASK_METHOD,
    NoduleMeasurement,
    NoduleRegion,
    grow_at,
)
from model.ct.dicom import DicomSeriesSource, HeaderSnapshot, evidence_header
from model.ct.geometry import Geometry, axis_aligned
from model.ct.itk import MAX_DIM, MAX_VOXELS, suffix_of
from model.ct.open import load_volume, open_volume
from model.ct.volume import CTVolume, VolumeReadError, VolumeSource, check_read_budget
from model.nn.profile import PROFILE_SHAPE_ZYX, PROFILE_SPACING_MM, profile_spec
from model.preprocessing import PatchSpec, extract_patch, patch_hu, patch_slice_range

ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha")
ZIP_SUFFIXES = (".zip",)
MAX_ZIP_MEMBERS = 5000
#: Deflated CT (DICOM, raw int16) shrinks 2-10 times; far more is padding meant to fill disks.
MAX_ZIP_RATIO = 50.0
#: Bytes a zip may write to disk, counted as they are written (declared sizes can lie).
MAX_ZIP_BYTES = 1024**3
#: Address space the parser takes before it reads a voxel (interpreter, numpy, SimpleITK,
#: pydicom: VmPeak 540 MB measured on a 64^3 upload); the rest of its cap is the voxels' budget.
PARSER_BASELINE_BYTES = 768 * 1024**2
#: Peak bytes per voxel of an array upload: the stored array, its float32 HU copy and the
#: finiteness mask (itemsize is added per array).
ARRAY_BYTES_PER_VOXEL = 4 + 1
#: DICOM series are read slice by slice for the box a patch needs; their declared stored size
#: (16-bit CT) is what is bounded.
DICOM_BYTES_PER_VOXEL = 2
#: How an upload's size estimate was made (the answer's ``size_estimate.method``).


def voxel_budget(memory_limit_bytes: int | None) -> int | None:
    """What the parser may allocate for voxels under its address-space limit (None: no limit)."""
    if memory_limit_bytes is None or memory_limit_bytes <= 0:
        return None
    return max(memory_limit_bytes - PARSER_BASELINE_BYTES, 0)


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
    size: NoduleMeasurement | None = None
    """From the uploaded mask, or grown from the point (``estimate_size``); None: neither."""
    size_method: str | None = None
    region: NoduleRegion | None = None
    """The measured mask itself (``report`` jobs)."""
    headers: HeaderSnapshot | None = None
    """``report`` jobs: the series' headers of the slices the patch and the region span."""
    profile_hu: npt.NDArray[np.float32] | None = None
    """``profile`` jobs: HU on the profile's grid around the centre (``model.nn.profile``)."""

    def profile_volume(self) -> CTVolume | None:
        """The profile grid as a CT (1 mm, axis-aligned, centred on the query), if cut.

        What the service measures an upload's nodule on when no mask came with it.
        """
        if self.profile_hu is None:
            return None
        shape = np.asarray(self.profile_hu.shape)
        spacing = PROFILE_SPACING_MM
        origin = np.asarray(self.center_xyz) - (shape[::-1] - 1) / 2.0 * spacing
        geometry = Geometry.from_itk(origin, (spacing,) * 3, np.eye(3).reshape(-1), shape[::-1])
        return CTVolume(np.asarray(self.profile_hu, dtype=np.float32), geometry)


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


def mask_kind(filename: str) -> str:
    """``image`` (NIfTI / MetaImage) or ``seg`` (DICOM SEG) from a mask's file name."""
    suffix = suffix_of(Path(PurePosixPath(filename).name or "mask"))
    if suffix in IMAGE_MASK_SUFFIXES:
        return "image"
    if suffix in SEG_SUFFIXES:
        return "seg"
    raise UnsupportedUploadError(
        f"unsupported mask type {suffix or '(none)'!r}; send .nii, .nii.gz, .mha or a DICOM SEG "
        "(.dcm)"
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


def read_array(
    path: Path, spacing_zyx: Sequence[float] | None, max_read_bytes: int | None = None
) -> CTVolume:
    """A HU volume from ``.npy`` / ``.npz`` (first array) with the given spacing.

    The declared shape and type are checked against ``max_read_bytes`` on the header, before
    anything is decompressed or converted.
    """
    if spacing_zyx is None:
        raise UploadContentError("an array upload needs spacing_zyx (mm, z y x)")
    spacing = [float(v) for v in spacing_zyx]
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        shown = ", ".join(f"{float(v):g}" for v in spacing_zyx)
        raise UploadContentError(f"spacing_zyx must be 3 positive numbers, got ({shown})")
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
                    shape, _, dtype = read_header(member)
                if len(shape) != 3 or int(np.prod(shape)) > MAX_VOXELS:
                    raise UploadContentError(f"array shape {shape} is outside the accepted range")
                check_read_budget(
                    shape,
                    dtype.itemsize + ARRAY_BYTES_PER_VOXEL,
                    max_read_bytes,
                    "the array",
                )
                array = loaded[names[0]]
        else:
            array = loaded  # memory-mapped: nothing is read before the checks below
    except (UploadContentError, VolumeReadError):
        raise  # already says what is wrong
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise UploadContentError(f"not a readable numpy file ({type(e).__name__})") from None
    if array.ndim != 3:
        raise UploadContentError(f"the array must be 3-D (z, y, x), got shape {array.shape}")
    if min(array.shape) < 2 or max(array.shape) > MAX_DIM or array.size > MAX_VOXELS:
        raise UploadContentError(f"array shape {array.shape} is outside the accepted range")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise UploadContentError(f"array type {array.dtype} is not a real number type")
    check_read_budget(
        array.shape, array.dtype.itemsize + ARRAY_BYTES_PER_VOXEL, max_read_bytes, "the array"
    )
    hu = np.asarray(array, dtype=np.float32)
    _check_hu(hu, "the array")
    return CTVolume(hu_zyx=hu, geometry=axis_aligned(hu.shape, spacing))


def extract_zip(path: Path, out: Path, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Extract a zip safely; returns the ``.mhd`` inside, or the folder (a DICOM series).

    Sizes a zip declares can lie, so the bytes are counted as they are written: extraction
    stops, and the partial files are left for the caller's temporary folder to remove, once
    more than ``max_bytes`` (or ``MAX_ZIP_RATIO`` times the zip's size) has been written.
    """
    packed = max(path.stat().st_size, 1)
    limit = min(max_bytes, int(packed * MAX_ZIP_RATIO))
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadContentError(
                    f"the zip holds {len(members)} members, more than {MAX_ZIP_MEMBERS}"
                )
            for member in members:
                name = PurePosixPath(member.filename)
                if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                    raise UploadContentError(
                        f"zip member {member.filename!r} points outside the archive"
                    )
            if sum(m.file_size for m in members) > limit:
                raise UploadContentError(_too_much(limit, packed))
            written = 0
            for member in members:
                written = _extract_member(archive, member, out, written, limit, packed)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error):
        raise UploadContentError("not a readable zip file") from None
    headers = sorted(out.rglob("*.mhd"))
    if len(headers) > 1:
        raise UploadContentError("the zip holds more than one .mhd")
    return headers[0] if headers else out


def _too_much(limit: int, packed: int) -> str:
    return (
        f"the zip expands to more than {limit / 1024**2:.0f} MB (at most {MAX_ZIP_BYTES >> 20} MB "
        f"and {MAX_ZIP_RATIO:g} times its {packed / 1024**2:.1f} MB; zip bomb?)"
    )


def _extract_member(
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    out: Path,
    written: int,
    limit: int,
    packed: int,
) -> int:
    """Copy one member under ``out`` in chunks; the running total of bytes written."""
    target = out / PurePosixPath(member.filename)
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return written
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(member) as source, target.open("wb") as sink:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise UploadContentError(_too_much(limit, packed))
            sink.write(chunk)
    return written


class UploadJob(BaseModel):
    """One upload to parse: what the service hands its parser process (as JSON).

    Attributes:
        path: the uploaded file, saved under a name with its suffix.
        kind: ``array``, ``image`` or ``zip`` (``upload_kind``).
        spec: the model's patch spec.
        center_xyz: world mm (LPS); None: the mask's centroid, else the volume's centre.
        spacing_zyx: mm, for arrays only.
        workdir: where a zip is extracted.
        series_uid: which series of a zip holding several DICOM series to read.
        mask_path / mask_kind: a nodule mask (``model.clinical.masks.mask_kind``) on the upload's
        CT. estimate_size: without a mask, grow one from the point
        (``model.clinical.measure.grow_at``). report: keep what a DICOM SR and SEG of the query
        need (``UploadPatch.headers``).
    """

    model_config = ConfigDict(extra="forbid")

    path: Path
    kind: str
    spec: PatchSpec
    center_xyz: tuple[float, float, float] | None = None
    spacing_zyx: tuple[float, float, float] | None = None
    workdir: Path
    series_uid: str | None = None
    mask_path: Path | None = None
    mask_kind: str | None = None
    estimate_size: bool = False
    report: bool = False
    """For a DICOM report: keep the headers of the slices the patch and the nodule's mask span
    (the upload must be a zip of a DICOM series), and grow a mask when none was sent."""
    profile: bool = False
    """Also cut the profile's HU grid (a model whose vector has measured blocks)."""


def _open_upload(job: UploadJob, max_read_bytes: int | None) -> VolumeSource:
    """The upload's CT as a region source (small formats read whole)."""
    if job.series_uid is not None and job.kind != "zip":
        raise UploadContentError("series_uid picks a series out of a zip of DICOM files only")
    if job.kind == "array":
        return read_array(job.path, job.spacing_zyx, max_read_bytes)
    if job.kind == "image":
        volume = load_volume(job.path, max_read_bytes=max_read_bytes)
        _check_hu(volume.hu_zyx, "the image")
        return volume
    target = extract_zip(job.path, job.workdir / "zip")
    if target.is_dir():
        # Headers only; slices are read for the patch's box.
        source = open_volume(target, job.series_uid)
        check_read_budget(
            source.geometry.shape_zyx, DICOM_BYTES_PER_VOXEL, max_read_bytes, "the series"
        )
        return source
    if job.series_uid is not None:
        raise UploadContentError("series_uid names a DICOM series, but the zip holds a .mhd")
    return open_volume(target, max_read_bytes=max_read_bytes)


def _size_of(
    job: UploadJob, source: VolumeSource, max_read_bytes: int | None
) -> tuple[NoduleRegion | None, str | None]:
    """The uploaded mask on the CT, or with ``estimate_size`` one grown later (None here)."""
    if job.mask_path is None:
        return None, None
    if job.center_xyz is not None:
        raise UploadContentError(
            "give either center_xyz or a mask: the mask's centroid is the centre"
        )
    mask = read_mask(job.mask_path, job.mask_kind or "image", max_read_bytes)
    return mask_region(source, mask), MASK_METHOD


def cut_upload(job: UploadJob, max_read_bytes: int | None = None) -> UploadPatch:
    """Read an upload and cut the model's patch at its centre (``UploadJob.center_xyz``).

    Args:
        job: what to parse.
        max_read_bytes: what reading the voxels may allocate; files declaring more are refused
            from their headers (``VolumeTooLargeError``), before the allocation.

    Raises:
        UploadContentError / VolumeReadError: unusable content (422).
        CoordinateOutsideVolumeError: the centre is outside the volume (422).
    """
    source = _open_upload(job, max_read_bytes)
    geometry = source.geometry
    region, method = _size_of(job, source, max_read_bytes)
    if region is not None:
        center = np.asarray(centroid_xyz(region), dtype=np.float64)
    elif job.center_xyz is None:
        middle = (np.asarray(geometry.shape_zyx, dtype=np.float64) - 1) / 2.0
        center = geometry.index_zyx_to_world(middle)
    else:
        center = np.asarray(job.center_xyz, dtype=np.float64)
    patch = extract_patch(source, center, job.spec)
    center_xyz = (float(center[0]), float(center[1]), float(center[2]))
    if region is None and (job.estimate_size or job.report):
        region, method = grow_at(source, center_xyz), GROW_METHOD
    index_zyx = geometry.world_to_index_zyx(center)
    return UploadPatch(
        patch=patch,
        center_xyz=center_xyz,
        index_zyx=(float(index_zyx[0]), float(index_zyx[1]), float(index_zyx[2])),
        size=region.measurement if region is not None else None,
        size_method=method if region is not None else None,
        region=region if job.report else None,
        headers=_report_headers(source, center_xyz, region, job.spec) if job.report else None,
        profile_hu=patch_hu(source, center, profile_spec(job.spec)) if job.profile else None,
    )


def _report_headers(
    source: VolumeSource,
    center_xyz: tuple[float, float, float],
    region: NoduleRegion | None,
    spec: PatchSpec,
) -> HeaderSnapshot:
    """The headers (``evidence_header``) of the slices the patch and the region span."""
    if not isinstance(source, DicomSeriesSource):
        raise UploadContentError(
            "a DICOM report belongs to a DICOM study: upload a .zip of the DICOM series"
        )
    start, stop = patch_slice_range(source.geometry, center_xyz, spec)
    wanted = set(range(max(0, start), min(stop, source.geometry.shape_zyx[0])))
    if region is not None:
        z0 = region.start_zyx[0]
        wanted |= set(range(z0, z0 + region.mask_zyx.shape[0]))
    low, high = min(wanted), max(wanted) + 1
    headers = source.slice_headers(low, high)
    return HeaderSnapshot(
        source.geometry,
        {low + i: evidence_header(h) for i, h in enumerate(headers) if low + i in wanted},
    )


#: The most characters of slice headers (JSON) a report job's parser sends to the server: the
#: evidence of a patch's slices is a few hundred KB at most (``evidence_header`` bounds each).
MAX_HEADERS_JSON_CHARS = 4 * 1024 * 1024


def write_result(path: Path, result: UploadPatch) -> None:
    """Save what the parser found (``read_result`` reads it back in the service)."""
    size = dataclasses.asdict(result.size) if result.size is not None else None
    arrays: dict[str, npt.NDArray[Any]] = {
        "patch": result.patch,
        "center_xyz": np.asarray(result.center_xyz),
        "index_zyx": np.asarray(result.index_zyx),
        "size_json": np.asarray(json.dumps({"size": size, "method": result.size_method})),
    }
    if result.profile_hu is not None:
        arrays["profile_hu"] = result.profile_hu
    if result.region is not None:
        arrays["region_mask"] = result.region.mask_zyx
        arrays["region_start"] = np.asarray(result.region.start_zyx)
    if result.headers is not None:
        snapshot = {
            "geometry": dataclasses.asdict(result.headers.geometry),
            "headers": {str(k): ds.to_json_dict() for k, ds in result.headers.headers.items()},
        }
        text = json.dumps(snapshot)
        if len(text) > MAX_HEADERS_JSON_CHARS:
            raise UploadContentError(
                f"the series' headers of the queried slices take {len(text) // 1024:,} KB, more "
                f"than a report's evidence may ({MAX_HEADERS_JSON_CHARS // 1024:,} KB)"
            )
        arrays["headers_json"] = np.asarray(text)
    # numpy's stubs match ``**arrays`` against its ``allow_pickle`` keyword.
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _triple(values: npt.ArrayLike) -> tuple[float, float, float]:
    v = [float(x) for x in np.asarray(values).reshape(-1)]
    return (v[0], v[1], v[2])


def read_result(path: Path) -> UploadPatch:
    """What ``write_result`` saved."""
    with np.load(path) as saved:
        size = json.loads(str(saved["size_json"]))
        measurement = NoduleMeasurement(**size["size"]) if size["size"] is not None else None
        headers = None
        if "headers_json" in saved:
            # Checked before it is loaded: the server decodes no more than the parser may send.
            stored = saved.zip.getinfo("headers_json.npy").file_size
            if stored > 4 * MAX_HEADERS_JSON_CHARS + 1024:  # numpy stores str as UCS-4
                raise UploadContentError("the parser's headers are larger than allowed")
            snapshot = json.loads(str(saved["headers_json"]))
            g = snapshot["geometry"]
            geometry = Geometry(
                origin_xyz=_triple(g["origin_xyz"]),
                spacing_xyz=_triple(g["spacing_xyz"]),
                direction=tuple(float(v) for v in g["direction"]),  # type: ignore[arg-type]
                shape_zyx=tuple(int(v) for v in g["shape_zyx"]),  # type: ignore[arg-type]
            )
            datasets = {int(k): Dataset.from_json(v) for k, v in snapshot["headers"].items()}
            headers = HeaderSnapshot(geometry, datasets)
        region = None
        if "region_mask" in saved and headers is not None and measurement is not None:
            mask = np.asarray(saved["region_mask"], dtype=bool)
            start = tuple(int(v) for v in saved["region_start"])
            box = headers.geometry.with_shape_zyx(
                (mask.shape[0], mask.shape[1], mask.shape[2]), start
            )
            region = NoduleRegion(mask, (start[0], start[1], start[2]), box, measurement)
        return UploadPatch(
            patch=np.asarray(saved["patch"], dtype=np.float32),
            center_xyz=_triple(saved["center_xyz"]),
            index_zyx=_triple(saved["index_zyx"]),
            size=measurement,
            size_method=size["method"],
            region=region,
            headers=headers,
            profile_hu=_profile_grid(saved),
        )


def _profile_grid(saved: Any) -> npt.NDArray[np.float32] | None:
    """The saved profile grid, checked for its shape (None when the job cut none)."""
    if "profile_hu" not in saved:
        return None
    stored = saved.zip.getinfo("profile_hu.npy").file_size
    if stored > 4 * int(np.prod(PROFILE_SHAPE_ZYX)) + 1024:  # before it is loaded
        raise UploadContentError("the parser's profile grid is larger than allowed")
    grid = np.asarray(saved["profile_hu"], dtype=np.float32)
    if grid.shape != PROFILE_SHAPE_ZYX:
        raise UploadContentError(f"the parser's profile grid has shape {grid.shape}")
    return grid


__all__ = [
    "UnsupportedUploadError",
    "UploadContentError",
    "UploadJob",
    "UploadPatch",
    "VolumeReadError",
    "cut_upload",
    "mask_kind",
    "read_result",
    "upload_kind",
    "write_result",
]
