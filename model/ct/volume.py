"""The CT volume types every reader returns: HU values plus geometry, whole or region-readable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from model.ct.geometry import Geometry

F32Array = npt.NDArray[np.float32]


class VolumeReadError(ValueError):
    """A CT file or DICOM series cannot be read; the message says which file and why.

    Readers raise this one type for every bad input (truncated data, garbage headers, absurd sizes,
    paths outside the header's folder, missing slices, mixed series), so callers can map it to a
    single 4xx answer.
    """


class VolumeTooLargeError(VolumeReadError):
    """The voxels a file declares would need more memory to read than the reader may use."""


def check_read_budget(
    shape_zyx: Sequence[int],
    bytes_per_voxel: float,
    budget_bytes: int | None,
    what: str,
) -> None:
    """Refuse a read, before anything is allocated, whose declared size exceeds the budget.

    Args:
        shape_zyx: the declared shape (from the header).
        bytes_per_voxel: the reader's peak bytes per voxel (every copy it holds at once).
        budget_bytes: what the reader may allocate; None: no limit.
        what: the file or array, for the message.

    Raises:
        VolumeTooLargeError: the estimated peak exceeds the budget.
    """
    if budget_bytes is None:
        return
    voxels = 1
    for n in shape_zyx:
        voxels *= int(n)
    needed = voxels * bytes_per_voxel
    if needed > budget_bytes:
        shape = "x".join(str(int(n)) for n in shape_zyx)
        raise VolumeTooLargeError(
            f"{what} declares {shape} (z, y, x) voxels; reading them needs about "
            f"{needed / 1024**3:.1f} GB, more than the {budget_bytes / 1024**3:.1f} GB this "
            "reader may use"
        )


@runtime_checkable
class VolumeSource(Protocol):
    """Anything a patch can be cut from: a geometry plus a reader of integer index boxes.

    ``read_box`` returns HU as float32 with shape ``stop_zyx - start_zyx``; the box must lie inside
    ``geometry.shape_zyx`` (callers clip). Region sources read only that box from disk.
    """

    @property
    def geometry(self) -> Geometry:
        """Geometry of the whole volume."""
        ...

    def read_box(self, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> F32Array:
        """HU values of voxels ``start_zyx <= index < stop_zyx`` (numpy z, y, x order)."""
        ...


def check_box(geometry: Geometry, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``[start, stop)`` is a non-empty box inside the volume."""
    start, stop = np.asarray(start_zyx), np.asarray(stop_zyx)
    shape = np.asarray(geometry.shape_zyx)
    if start.shape != (3,) or stop.shape != (3,):
        raise ValueError(f"box corners must be 3 integers, got {start_zyx} and {stop_zyx}")
    if np.any(start < 0) or np.any(stop > shape) or np.any(stop <= start):
        raise ValueError(
            f"box {list(start)}..{list(stop)} is not inside volume shape {list(shape)}"
        )


@dataclass(frozen=True)
class CTVolume:
    """A CT volume held in memory.

    Attributes:
        hu_zyx: Hounsfield units, float32, shape ``geometry.shape_zyx`` (slices, rows, columns).
        geometry: world placement (ITK/LPS mm).
        series_uid: DICOM SeriesInstanceUID or LUNA16 ``seriesuid`` when known (no patient data).
    """

    hu_zyx: F32Array
    geometry: Geometry
    series_uid: str | None = None

    def __post_init__(self) -> None:
        if self.hu_zyx.ndim != 3 or tuple(self.hu_zyx.shape) != self.geometry.shape_zyx:
            raise ValueError(
                f"array shape {self.hu_zyx.shape} does not match geometry {self.geometry.shape_zyx}"
            )
        if self.hu_zyx.dtype != np.float32:
            raise ValueError(f"hu_zyx must be float32, got {self.hu_zyx.dtype}")

    def read_box(self, start_zyx: Sequence[int], stop_zyx: Sequence[int]) -> F32Array:
        """HU values of a box of the in-memory array (a view; do not modify)."""
        check_box(self.geometry, start_zyx, stop_zyx)
        (z0, y0, x0), (z1, y1, x1) = (int(v) for v in start_zyx), (int(v) for v in stop_zyx)
        return self.hu_zyx[z0:z1, y0:y1, x0:x1]
