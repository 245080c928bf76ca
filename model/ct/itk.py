"""Reading CT files through SimpleITK: MetaImage (.mhd/.raw, .mha) and NIfTI (.nii, .nii.gz).

Headers are validated *before* any voxel buffer is allocated: absurd sizes are refused, a MetaImage
``ElementDataFile`` must name a file inside the header's own folder (an uploaded header must never
make the server read its own files), and uncompressed data must be as long as the header promises.
Header keys that do not decide how voxel bytes are read (NIfTI fields and DICOM tags that SimpleITK
copies into the headers it writes) are skipped, the way ITK's MetaIO skips them; the rest are read
the way MetaIO reads them, so the checks hold for the file SimpleITK then opens. Compressed data is
decoded once (output discarded) to catch a cut or broken stream, which ITK would zero-fill.
Uncompressed MetaImage supports streamed region reads, so a patch reads only the box it needs.
"""

from __future__ import annotations

import gzip
import itertools
import logging
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from model.ct.geometry import Geometry, GeometryError, check_ct_spacing
from model.ct.volume import CTVolume, F32Array, VolumeReadError, check_box, check_read_budget

logger = logging.getLogger(__name__)

#: Largest size accepted along one axis, and in total, before anything is allocated. A chest CT is
#: at most about 512 x 512 x 2000 (2**29 voxels = 2 GiB as float32); anything bigger is a corrupt
#: or hostile header (a few MB of zlib can claim gigabytes).
MAX_DIM = 4096
MAX_VOXELS = 2**29

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


#: Bytes of a MetaImage header we are willing to scan for keys. SimpleITK copies every NIfTI
#: field, or every DICOM tag of the first slice, into the MetaImage headers it writes (a few KiB,
#: more with private tags); the bound still caps the scan of a hostile file.
_MAX_HEADER_BYTES = 1 << 20

#: The keys this reader interprets; their values must be plain ASCII. Every other ``Key = value``
#: line (``dim[0]``, ``ITK_FileNotes``, ``0008|0060``, ...) is skipped, as ITK's MetaIO skips it.
#: Geometry keys (Offset, TransformMatrix, ElementSpacing, ...) are read by SimpleITK itself and
#: checked by ``Geometry``; these are the ones that decide which bytes become voxels.
_DATA_KEYS = frozenset(
    {
        "ObjectType",
        "NDims",
        "DimSize",
        "ElementType",
        "ElementNumberOfChannels",
        "BinaryData",
        "BinaryDataByteOrderMSB",
        "ElementByteOrderMSB",
        "CompressedData",
        "CompressedDataSize",
        "HeaderSize",
        "ElementDataFile",
    }
)

#: MetaIO ends a key at the first ``=`` or ``:``, and at the end of the line.
_SEPARATOR = re.compile(rb"[=:]")
#: A key as MetaIO compares it (a C string, blanks around it trimmed): printable ASCII, inner
#: blanks kept. A NUL would end MetaIO's key early, so control characters are refused.
_KEY = re.compile(rb"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")
#: Bytes that MetaIO and this parser would split lines or end strings at differently: NUL (a C
#: string ends there) and a carriage return that does not end the line (MetaIO ends a key there
#: but not a value).
_SPLITTERS = re.compile(rb"[\x00\r]")
_PRINTABLE = re.compile(rb"[\t\x20-\x7e]*")

#: The spellings of in-header data that MetaIO accepts (it compares exactly).
_LOCAL = ("LOCAL", "Local", "local")


def _meta_flag(fields: dict[str, str], key: str) -> bool:
    """A MetaIO boolean: true when the value starts with ``T``, ``t`` or ``1``, as MetaIO reads it.

    Reading only ``True`` would let ``CompressedData = 1`` mean compressed to SimpleITK and raw to
    the region reader.
    """
    return fields.get(key, "")[:1] in ("T", "t", "1")


def _not_a_header(path: Path, line: bytes, number: int) -> VolumeReadError:
    if not _PRINTABLE.fullmatch(line):
        return VolumeReadError(
            f"{path.name}: not a MetaImage header (binary data in line {number})"
        )
    text = line.decode("ascii")
    return VolumeReadError(f"{path.name}: not a MetaImage header (bad line {text[:40]!r})")


def _read_header_fields(path: Path) -> tuple[dict[str, str], int]:
    """The interpreted keys of a MetaImage header and the byte offset just past its last line.

    Lines end at a line feed only (a carriage return before it is dropped), as MetaIO reads
    values. A line without ``=`` is accepted only where MetaIO takes it the way we do: as the
    continuation of a multi-line value of a key we skip (SimpleITK writes DICOM values such as
    ImageComments that hold line breaks as they are). MetaIO takes such a line as a key of its
    own with the value after the next ``=``, swallowing the next line's key, so that key must be
    one we skip too.
    """
    fields: dict[str, str] = {}
    skipped: list[str] = []
    offset = 0
    continues = False  # the previous line was a skipped key (or its continuation)
    swallows = False  # MetaIO will read the next key's value as that of a line without "="
    try:
        with path.open("rb") as f:
            for number in itertools.count(1):
                raw_line = f.readline(_MAX_HEADER_BYTES - offset)
                offset += len(raw_line)
                if not raw_line.endswith(b"\n") and offset >= _MAX_HEADER_BYTES:
                    raise VolumeReadError(
                        f"{path.name}: MetaImage header has no ElementDataFile in its first "
                        f"{_MAX_HEADER_BYTES // 1024} KiB"
                    )
                if not raw_line:
                    raise VolumeReadError(f"{path.name}: MetaImage header has no ElementDataFile")
                line = raw_line.removesuffix(b"\n").removesuffix(b"\r")
                if _SPLITTERS.search(line):
                    raise VolumeReadError(
                        f"{path.name}: not a MetaImage header (binary data in line {number})"
                    )
                line = line.strip()
                if not line:
                    continue
                sep = _SEPARATOR.search(line)
                if sep is None:
                    # MetaIO takes the whole line as a key, and the value after the next "=".
                    if continues and line.decode("ascii", "replace") not in _DATA_KEYS:
                        swallows = True
                        continue
                    raise _not_a_header(path, line, number)
                key_bytes = line[: sep.start()].rstrip(b" \t")
                if not _KEY.fullmatch(key_bytes):
                    raise _not_a_header(path, line, number)
                key = key_bytes.decode("ascii")
                if key not in _DATA_KEYS:
                    skipped.append(key)
                    continues, swallows = True, False
                    continue
                if sep.group() != b"=":
                    raise _not_a_header(path, line, number)  # "NDims: 3" is not read here
                if swallows:
                    raise VolumeReadError(
                        f"{path.name}: {key} in line {number} follows a line without '=' (ITK "
                        "would read it as that line's value)"
                    )
                value = line[sep.end() :].lstrip(b" \t=:").strip()
                if not _PRINTABLE.fullmatch(value):
                    raise VolumeReadError(f"{path.name}: {key} is not plain ASCII text")
                fields[key] = value.decode("ascii")
                continues = False
                if key == "ElementDataFile":
                    break
    except OSError as e:
        raise VolumeReadError(f"{path.name}: cannot open ({e.strerror})") from None
    if skipped:
        # Key names only: values of DICOM-derived keys can hold patient data, and file names
        # are series UIDs (LUNA16) or patient ids.
        logger.debug(
            "MetaImage header: skipped %d keys the reader does not use (%s%s)",
            len(skipped),
            ", ".join(skipped[:5]),
            ", ..." if len(skipped) > 5 else "",
        )
    return fields, offset


def _check_compressed(path: Path, header: MetaHeader, stored: int) -> None:
    """Decode the first ``stored`` bytes of compressed voxel data and count what comes out.

    ITK zero-fills or keeps garbage where a zlib stream stops early or breaks (a cut ``.zraw``
    without CompressedDataSize, or a CompressedDataSize smaller than the data). Decoding here
    streams in bounded chunks and discards the output, so it costs time, not memory.
    """
    decoder = zlib.decompressobj(47)  # zlib or gzip header, as MetaIO's inflateInit2(47)
    decoded = 0
    try:
        with header.data_path.open("rb") as f:
            f.seek(header.data_offset)
            left = max(stored, 0)
            while decoded < header.data_bytes and not decoder.eof:
                chunk = decoder.unconsumed_tail
                if not chunk:
                    chunk = f.read(min(1 << 20, left))
                    left -= len(chunk)
                    if not chunk:
                        break
                decoded += len(decoder.decompress(chunk, 1 << 22))
    except zlib.error:
        raise VolumeReadError(f"{path.name}: compressed voxel data is corrupt") from None
    except OSError as e:
        raise VolumeReadError(f"{path.name}: voxel data cannot be read ({e.strerror})") from None
    if decoded < header.data_bytes:
        raise VolumeReadError(
            f"{path.name}: compressed voxel data is truncated (decodes to {decoded} bytes, "
            f"header promises {header.data_bytes})"
        )


def _check_image_fields(path: Path, fields: dict[str, str]) -> tuple[int, int, int]:
    """A 3-D, one-channel, binary image of a supported type and a sane size; returns DimSize."""
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
    if "BinaryData" in fields and not _meta_flag(fields, "BinaryData"):
        raise VolumeReadError(
            f"{path.name}: voxels stored as text (BinaryData = {fields['BinaryData']}) are not "
            "supported"
        )
    return (size[0], size[1], size[2])


def _data_location(
    path: Path, fields: dict[str, str], header_end: int, nbytes: int, compressed: bool
) -> tuple[Path, int]:
    """The file holding the voxels and the byte offset they start at.

    ``nbytes``: the uncompressed voxel bytes (for ``HeaderSize = -1``: the data is the tail).
    """
    data_file = fields["ElementDataFile"]
    if data_file in _LOCAL:
        return path, header_end
    # MetaIO reads a list of file names from the following lines for any name that starts
    # with LIST, and a numbered series for a name with %.
    if data_file.startswith("LIST") or data_file.upper() == "LIST" or "%" in data_file:
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
    if header_size == -1 and not compressed:
        return data_path, max(data_path.stat().st_size - nbytes, 0)
    return data_path, max(header_size, 0)


def _check_data_length(path: Path, fields: dict[str, str], header: MetaHeader) -> None:
    """The data file holds every voxel the header promises (decompressed, when compressed)."""
    available = header.data_path.stat().st_size - header.data_offset
    if not header.compressed:
        if available < header.data_bytes:
            raise VolumeReadError(
                f"{path.name}: voxel data is truncated ({available} bytes, header promises "
                f"{header.data_bytes})"
            )
        return
    # MetaIO allocates CompressedDataSize bytes and reads that many; with no such key, the
    # rest of the file.
    stored = available
    if "CompressedDataSize" in fields:
        stored = _parse_ints(path, "CompressedDataSize", fields["CompressedDataSize"], 1)[0]
        if stored > available:
            raise VolumeReadError(
                f"{path.name}: compressed voxel data is truncated ({available} bytes, "
                f"CompressedDataSize says {stored})"
            )
    _check_compressed(path, header, stored)


def read_meta_header(path: Path) -> MetaHeader:
    """Parse and validate a MetaImage header (``.mhd`` or ``.mha``) without touching voxel data.

    Keys that do not decide how voxel bytes are found and read (NIfTI or DICOM metadata that
    SimpleITK copies into the headers it writes) are skipped; the rest are read the way ITK's
    MetaIO reads them, so that the checks here hold for the file SimpleITK then opens.

    Raises:
        VolumeReadError: garbage header, not 3-D, absurd ``DimSize``, unsupported element type,
            text (non-binary) voxel data, ``ElementDataFile`` outside the header's folder or
            missing, or truncated data.
    """
    fields, header_end = _read_header_fields(path)
    size = _check_image_fields(path, fields)
    element_type = fields["ElementType"]
    compressed = _meta_flag(fields, "CompressedData")
    nbytes = int(np.prod(size)) * np.dtype(_MET_TYPES[element_type]).itemsize
    data_path, data_offset = _data_location(path, fields, header_end, nbytes, compressed)
    # MetaIO lets BinaryDataByteOrderMSB win when both are given, in either order.
    msb_key = (
        "BinaryDataByteOrderMSB" if "BinaryDataByteOrderMSB" in fields else "ElementByteOrderMSB"
    )
    header = MetaHeader(
        size_xyz=size,
        element_type=element_type,
        compressed=compressed,
        big_endian=_meta_flag(fields, msb_key),
        data_path=data_path,
        data_offset=data_offset,
    )
    _check_data_length(path, fields, header)
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
        check_ct_spacing(reader.GetSpacing())
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


def load_itk_volume(path: Path, max_read_bytes: int | None = None) -> CTVolume:
    """Read a whole ``.mhd``/``.mha``/``.nii``/``.nii.gz`` volume as HU float32 in the LPS frame.

    The stored values are taken as HU (LUNA16 ``.mhd`` files store int16 HU). NIfTI files are
    read by SimpleITK, which converts their RAS header to the ITK/LPS frame.

    Args:
        path: the image file.
        max_read_bytes: refuse (``VolumeTooLargeError``) a file whose declared size needs more
            memory to read than this, checked on the header before any voxel is read.
    """
    return _load_whole(path, validated=False, max_read_bytes=max_read_bytes)


#: Bytes of stored voxel each pixel type of SimpleITK takes (anything else: 8).
_SITK_ITEMSIZE = {
    sitk.sitkUInt8: 1,
    sitk.sitkInt8: 1,
    sitk.sitkUInt16: 2,
    sitk.sitkInt16: 2,
    sitk.sitkUInt32: 4,
    sitk.sitkInt32: 4,
    sitk.sitkFloat32: 4,
}


def whole_read_bytes_per_voxel(itemsize: int) -> float:
    """Peak bytes per voxel of a whole read of voxels of ``itemsize`` bytes.

    SimpleITK's image, numpy's copy of it, the float32 HU array and the finiteness mask are all
    alive at once.
    """
    return 2 * itemsize + 4 + 1


def _load_whole(path: Path, *, validated: bool, max_read_bytes: int | None = None) -> CTVolume:
    reader, geometry = _info_reader(path, validated=validated)
    itemsize = _SITK_ITEMSIZE.get(reader.GetPixelID(), 8)
    check_read_budget(
        geometry.shape_zyx, whole_read_bytes_per_voxel(itemsize), max_read_bytes, path.name
    )
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


def open_itk_source(
    path: Path, max_read_bytes: int | None = None
) -> CTVolume | MetaImageRegionSource:
    """A region source for uncompressed MetaImage, otherwise the whole volume in memory.

    ``max_read_bytes`` bounds whole reads as in ``load_itk_volume``; a region source maps the
    file and reads only the boxes asked for, so it is not bounded by it.
    """
    if suffix_of(path) in METAIMAGE_SUFFIXES:
        header = read_meta_header(path)
        if not header.compressed:
            return MetaImageRegionSource(path, header)
        # Checked just now; the checks decode compressed data, once is enough.
        return _load_whole(path, validated=True, max_read_bytes=max_read_bytes)
    return load_itk_volume(path, max_read_bytes)


def write_metaimage(hu_zyx: npt.ArrayLike, geometry: Geometry, path: Path) -> None:
    """Write HU as an uncompressed int16 ``.mhd`` + ``.raw`` pair, as LUNA16 ships its scans.

    Args:
        hu_zyx: HU values, shape (z, y, x); rounded and clipped to int16.
        geometry: origin, spacing and full direction matrix (ITK/LPS) written into the header.
        path: the ``.mhd`` to write (its folder is created).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.rint(np.asarray(hu_zyx, dtype=np.float64)).clip(-32768, 32767).astype(np.int16)
    image = sitk.GetImageFromArray(values)
    image.SetOrigin(geometry.origin_xyz)
    image.SetSpacing(geometry.spacing_xyz)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(path), useCompression=False)
