"""Reading CT files through SimpleITK: MetaImage (.mhd/.raw, .mha) and NIfTI (.nii, .nii.gz).

Headers are validated *before* any voxel buffer is allocated: absurd sizes are refused, a MetaImage
``ElementDataFile`` must name a file inside the header's own folder (an uploaded header must never
make the server read its own files), and uncompressed data must be as long as the header promises.
Uncompressed MetaImage supports streamed region reads, so a patch reads only the box it needs.
"""

from __future__ import annotations

import gzip
import logging
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from model.geometry import Geometry, GeometryError
from model.volume import CTVolume, F32Array, VolumeReadError, check_box

logger = logging.getLogger(__name__)

#: Largest size accepted along one axis, and in total, before anything is allocated. A chest CT is
#: at most about 512 x 512 x 2000 (2**29 voxels = 2 GiB as float32); anything bigger is a corrupt
#: or hostile header (a few MB of zlib can claim gigabytes).
MAX_DIM = 4096
MAX_VOXELS = 2**29

#: Bytes of a MetaImage header we are willing to scan for keys.
_MAX_HEADER_BYTES = 1 << 16

#: MetaImage element types and their numpy dtypes (byte order set from the header).
_MET_TYPES: dict[str, str] = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_LONG": "i8",
    "MET_ULONG": "u8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}

METAIMAGE_SUFFIXES = (".mhd", ".mha")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def suffix_of(path: Path) -> str:
    """Lower-case file suffix with ``.nii.gz`` kept whole."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


@dataclass(frozen=True)
class MetaHeader:
    """The parts of a MetaImage header that decide whether and how to read it."""

    size_xyz: tuple[int, int, int]
    element_type: str
    compressed: bool
    big_endian: bool
    data_path: Path
    data_offset: int
    """Byte offset of the voxel data in ``data_path`` (after the header for ``LOCAL`` data)."""

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of one stored voxel, with the header's byte order."""
        return np.dtype((">" if self.big_endian else "<") + _MET_TYPES[self.element_type])

    @property
    def data_bytes(self) -> int:
        """Bytes of uncompressed voxel data the header promises."""
        nx, ny, nz = self.size_xyz
        return nx * ny * nz * self.dtype.itemsize


def _parse_ints(path: Path, key: str, value: str, count: int) -> list[int]:
    try:
        numbers = [int(v) for v in value.split()]
    except ValueError:
        raise VolumeReadError(f"{path.name}: {key} must be integers, got {value!r}") from None
    if len(numbers) != count:
        raise VolumeReadError(f"{path.name}: {key} must have {count} values, got {value!r}")
    return numbers


def read_meta_header(path: Path) -> MetaHeader:
    """Parse and validate a MetaImage header (``.mhd`` or ``.mha``) without touching voxel data.

    Raises:
        VolumeReadError: garbage header, not 3-D, absurd ``DimSize``, unsupported element type,
            ``ElementDataFile`` outside the header's folder or missing, or truncated data.
    """
    try:
        with path.open("rb") as f:
            head = f.read(_MAX_HEADER_BYTES)
    except OSError as e:
        raise VolumeReadError(f"{path.name}: cannot open ({e.strerror})") from None
    fields: dict[str, str] = {}
    header_end = None
    offset = 0
    for raw_line in head.splitlines(keepends=True):
        offset += len(raw_line)
        try:
            line = raw_line.decode("ascii").strip()
        except UnicodeDecodeError:
            raise VolumeReadError(f"{path.name}: not a MetaImage header (binary data)") from None
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if m is None:
            raise VolumeReadError(f"{path.name}: not a MetaImage header (bad line {line[:40]!r})")
        fields[m.group(1)] = m.group(2).strip()
        if m.group(1) == "ElementDataFile":
            header_end = offset
            break
    if header_end is None:
        raise VolumeReadError(f"{path.name}: MetaImage header has no ElementDataFile")
    if fields.get("ObjectType", "Image") != "Image":
        raise VolumeReadError(f"{path.name}: ObjectType is {fields['ObjectType']!r}, not Image")
    ndims = _parse_ints(path, "NDims", fields.get("NDims", ""), 1)[0]
    if ndims != 3:
        raise VolumeReadError(f"{path.name}: a CT volume must be 3-D, header says NDims = {ndims}")
    if "DimSize" not in fields:
        raise VolumeReadError(f"{path.name}: MetaImage header has no DimSize")
    size = _parse_ints(path, "DimSize", fields["DimSize"], 3)
    if any(n < 1 or n > MAX_DIM for n in size) or int(np.prod(size)) > MAX_VOXELS:
        raise VolumeReadError(
            f"{path.name}: DimSize {size} is outside the accepted range (1..{MAX_DIM} per axis, "
            f"at most {MAX_VOXELS} voxels)"
        )
    channels = fields.get("ElementNumberOfChannels", "1")
    if channels != "1":
        raise VolumeReadError(f"{path.name}: a CT volume has one channel, header says {channels}")
    element_type = fields.get("ElementType", "")
    if element_type not in _MET_TYPES:
        raise VolumeReadError(f"{path.name}: unsupported ElementType {element_type!r}")
    compressed = fields.get("CompressedData", "False").lower() == "true"

    data_file = fields["ElementDataFile"]
    if data_file == "LOCAL":
        data_path, data_offset = path, header_end
    else:
        if data_file.upper() == "LIST" or "%" in data_file:
            raise VolumeReadError(f"{path.name}: multi-file ElementDataFile {data_file!r} refused")
        # SimpleITK opens the data file beside the header path *as given*; check that same path.
        # Only a bare file name is accepted, and it must not resolve (symlinks included) to
        # anywhere but the header's own folder.
        folder = path.absolute().parent
        data_path = (folder / data_file).resolve()
        if Path(data_file).name != data_file or data_path.parent != folder.resolve():
            raise VolumeReadError(
                f"{path.name}: ElementDataFile {data_file!r} points outside the header's folder"
            )
        if not data_path.is_file():
            raise VolumeReadError(f"{path.name}: data file {data_file!r} not found beside header")
        header_size = _parse_ints(path, "HeaderSize", fields.get("HeaderSize", "0"), 1)[0]
        data_offset = max(header_size, 0)
        if header_size == -1 and not compressed:
            nbytes = int(np.prod(size)) * np.dtype(_MET_TYPES[element_type]).itemsize
            data_offset = max(data_path.stat().st_size - nbytes, 0)
    msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False"))
    header = MetaHeader(
        size_xyz=(size[0], size[1], size[2]),
        element_type=element_type,
        compressed=compressed,
        big_endian=msb.lower() == "true",
        data_path=data_path,
        data_offset=data_offset,
    )
    if not compressed:
        available = data_path.stat().st_size - data_offset
        if available < header.data_bytes:
            raise VolumeReadError(
                f"{path.name}: voxel data is truncated ({available} bytes, header promises "
                f"{header.data_bytes})"
            )
    return header


def check_nifti(path: Path) -> None:
    """Validate a NIfTI-1/-2 header and the data length before SimpleITK allocates anything.

    SimpleITK (ITK's NIfTI IO) silently zero-fills a truncated ``.nii``/``.nii.gz``; a truncated
    compressed stream is caught here by gzip, a short data block by comparing lengths.

    Raises:
        VolumeReadError: not NIfTI, absurd dimensions, or fewer voxel bytes than the header says.
    """
    compressed = path.name.lower().endswith(".gz")
    try:
        with gzip.open(path, "rb") if compressed else path.open("rb") as f:
            head = f.read(540)
    except (OSError, EOFError, zlib.error):
        raise VolumeReadError(
            f"{path.name}: not a readable NIfTI file (corrupt or truncated)"
        ) from None
    if len(head) < 348:
        raise VolumeReadError(f"{path.name}: not a NIfTI file (header too short)")
    for order in "<>":
        sizeof_hdr = struct.unpack(f"{order}i", head[:4])[0]
        if sizeof_hdr in (348, 540):
            break
    else:
        raise VolumeReadError(f"{path.name}: not a NIfTI file (bad header size field)")
    if sizeof_hdr == 348:
        dims = struct.unpack(f"{order}8h", head[40:56])
        bitpix = struct.unpack(f"{order}h", head[72:74])[0]
        vox_offset = int(struct.unpack(f"{order}f", head[108:112])[0])
    else:
        if len(head) < 540:
            raise VolumeReadError(f"{path.name}: NIfTI-2 header is truncated")
        bitpix = struct.unpack(f"{order}h", head[14:16])[0]
        dims = struct.unpack(f"{order}8q", head[16:80])
        vox_offset = int(struct.unpack(f"{order}q", head[168:176])[0])
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix not in (8, 16, 32, 64, 128):
        raise VolumeReadError(f"{path.name}: NIfTI header has invalid dim[0]={ndim} or bitpix")
    sizes = [int(n) for n in dims[1 : ndim + 1]]
    if any(n < 1 or n > MAX_DIM for n in sizes) or int(np.prod(sizes)) > MAX_VOXELS:
        raise VolumeReadError(f"{path.name}: size {sizes} is outside the accepted range")
    needed = max(vox_offset, 348) + int(np.prod(sizes)) * bitpix // 8
    if compressed:
        # Decompress only as far as the header promises: detects truncation in bounded time.
        try:
            with gzip.open(path, "rb") as f:
                total = 0
                while total < needed:
                    chunk = f.read(min(1 << 22, needed - total))
                    if not chunk:
                        break
                    total += len(chunk)
        except (OSError, EOFError, zlib.error):
            raise VolumeReadError(
                f"{path.name}: compressed NIfTI data is corrupt or truncated"
            ) from None
    else:
        total = path.stat().st_size
    if total < needed:
        raise VolumeReadError(
            f"{path.name}: voxel data is truncated ({total} bytes, header promises {needed})"
        )


def _geometry_of(reader: sitk.ImageFileReader, path: Path) -> Geometry:
    size = reader.GetSize()
    if reader.GetDimension() != 3 or len(size) != 3:
        raise VolumeReadError(f"{path.name}: a CT volume must be 3-D, file has {len(size)} axes")
    if reader.GetNumberOfComponents() != 1:
        raise VolumeReadError(f"{path.name}: a CT volume has one channel per voxel")
    if any(n < 1 or n > MAX_DIM for n in size) or int(np.prod(size)) > MAX_VOXELS:
        raise VolumeReadError(f"{path.name}: size {list(size)} is outside the accepted range")
    if min(size) < 2:
        raise VolumeReadError(f"{path.name}: a CT volume needs at least 2 voxels along each axis")
    try:
        return Geometry.from_itk(
            reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection(), size
        )
    except GeometryError as e:
        raise VolumeReadError(f"{path.name}: {e}") from None


def _info_reader(path: Path, *, validated: bool = False) -> tuple[sitk.ImageFileReader, Geometry]:
    """SimpleITK's header reader and the geometry, after our own validation (unless done)."""
    suffix = suffix_of(path)
    if not validated and suffix in METAIMAGE_SUFFIXES:
        read_meta_header(path)
    elif not validated and suffix in NIFTI_SUFFIXES:
        check_nifti(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise VolumeReadError(f"{path.name}: not a readable {suffix} image header") from None
    return reader, _geometry_of(reader, path)


def _as_hu(image: sitk.Image, path: Path) -> F32Array:
    hu: F32Array = np.asarray(sitk.GetArrayFromImage(image), dtype=np.float32)
    if not np.all(np.isfinite(hu)):
        raise VolumeReadError(f"{path.name}: voxel data contains NaN or infinite values")
    return hu


def load_itk_volume(path: Path) -> CTVolume:
    """Read a whole ``.mhd``/``.mha``/``.nii``/``.nii.gz`` volume as HU float32 in the LPS frame.

    The stored values are taken as HU (LUNA16 ``.mhd`` files store int16 HU). NIfTI files are
    read by SimpleITK, which converts their RAS header to the ITK/LPS frame.
    """
    reader, geometry = _info_reader(path)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise VolumeReadError(f"{path.name}: voxel data cannot be read (corrupt file)") from None
    return CTVolume(hu_zyx=_as_hu(image, path), geometry=geometry, series_uid=_uid_from_name(path))


def _uid_from_name(path: Path) -> str:
    name = path.name
    for suffix in (*NIFTI_SUFFIXES[::-1], *METAIMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


class MetaImageRegionSource:
    """Reads boxes of an uncompressed MetaImage file without loading the whole volume.

    The raw voxel block is memory-mapped (read-only) at the offset the validated header gives, so
    a box read touches only the bytes of that box. Geometry comes from SimpleITK's header reader,
    the same one the whole-volume read uses.
    """

    def __init__(self, path: Path, header: MetaHeader | None = None) -> None:
        self.path = path
        self._header = header or read_meta_header(path)
        if self._header.compressed:
            raise VolumeReadError(f"{path.name}: compressed data cannot be region-read")
        _, self._geometry = _info_reader(path, validated=True)
        if self._geometry.size_xyz != self._header.size_xyz:
            raise VolumeReadError(f"{path.name}: header sizes disagree")
        self.series_uid = _uid_from_name(path)
        self._voxels: np.memmap[Any, np.dtype[Any]] | None = None

    @property
    def geometry(self) -> Geometry:
        """Geometry of the whole volume."""
        return self._geometry

    def _mapped(self) -> np.memmap[Any, np.dtype[Any]]:
        if self._voxels is None:
            try:
                self._voxels = np.memmap(
                    self._header.data_path,
                    dtype=self._header.dtype,
                    mode="r",
                    offset=self._header.data_offset,
                    shape=self._geometry.shape_zyx,
                )
            except (OSError, ValueError):
                raise VolumeReadError(f"{self.path.name}: voxel data cannot be mapped") from None
        return self._voxels

    def read_box(self, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> F32Array:
        """HU float32 of voxels ``start_zyx <= index < stop_zyx``."""
        check_box(self._geometry, start_zyx, stop_zyx)
        (z0, y0, x0), (z1, y1, x1) = (int(v) for v in start_zyx), (int(v) for v in stop_zyx)
        try:
            box = np.array(self._mapped()[z0:z1, y0:y1, x0:x1], dtype=np.float32)
        except OSError:  # the file shrank under us (SIGBUS is not catchable; EIO is)
            raise VolumeReadError(f"{self.path.name}: voxel data cannot be read") from None
        if not np.all(np.isfinite(box)):
            raise VolumeReadError(f"{self.path.name}: voxel data contains NaN or infinite values")
        return box


def open_itk_source(path: Path) -> CTVolume | MetaImageRegionSource:
    """A region source for uncompressed MetaImage, otherwise the whole volume in memory."""
    if suffix_of(path) in METAIMAGE_SUFFIXES:
        header = read_meta_header(path)
        if not header.compressed:
            return MetaImageRegionSource(path, header)
    return load_itk_volume(path)
