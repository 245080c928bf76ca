"""The catalogue's SQLite schema (SQLAlchemy 2.0 typed declarative).

One ``catalog.sqlite`` per index version: scans, nodules (``Nodule.id`` is the FAISS id), the
radiologists' reads, the derived labels, and the build that wrote them. World coordinates are mm
in the ITK/LPS frame.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of the catalogue tables."""


class Scan(Base):
    """One CT series and where it is stored."""

    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_uid: Mapped[str] = mapped_column(String, unique=True, index=True)
    patient_id: Mapped[str | None]
    source_path: Mapped[str]
    """Path of the ``.mhd`` file or DICOM folder the nodules were cut from."""
    source_kind: Mapped[str]
    """``mhd``, ``mha``, ``nifti`` or ``dicom``."""
    origin_xyz: Mapped[list[float]] = mapped_column(JSON)
    spacing_xyz: Mapped[list[float]] = mapped_column(JSON)
    direction: Mapped[list[float]] = mapped_column(JSON)
    size_xyz: Mapped[list[int]] = mapped_column(JSON)

    nodules: Mapped[list[Nodule]] = relationship(back_populates="scan")

    def __repr__(self) -> str:
        return f"Scan(id={self.id}, series_uid={self.series_uid!r})"


class Nodule(Base):
    """One indexed nodule; ``id`` is its id in the FAISS index."""

    __tablename__ = "nodules"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String, index=True)
    center_x: Mapped[float] = mapped_column(Float)
    center_y: Mapped[float] = mapped_column(Float)
    center_z: Mapped[float] = mapped_column(Float)
    diameter_mm: Mapped[float] = mapped_column(Float)
    source: Mapped[str]
    """Where the nodule came from (``annotations.csv`` of a data folder)."""
    embedding_row: Mapped[int] = mapped_column(Integer)
    """Row of this nodule's vector in the version's ``embeddings.npy``."""
    map_x: Mapped[float | None]
    """2-D map (t-SNE of the embeddings) coordinates, computed at build time (None: no map)."""
    map_y: Mapped[float | None]

    scan: Mapped[Scan] = relationship(back_populates="nodules")
    label: Mapped[Label | None] = relationship(back_populates="nodule")
    reads: Mapped[list[NoduleRead]] = relationship(back_populates="nodule")

    @property
    def center_xyz(self) -> tuple[float, float, float]:
        """World centre, mm (LPS)."""
        return (self.center_x, self.center_y, self.center_z)

    def __repr__(self) -> str:
        return f"Nodule(id={self.id}, series_uid={self.series_uid!r})"


class NoduleRead(Base):
    """One radiologist's read of an indexed nodule (characteristics null where not known)."""

    __tablename__ = "reads"

    id: Mapped[int] = mapped_column(primary_key=True)
    nodule_id: Mapped[int] = mapped_column(ForeignKey("nodules.id"), index=True)
    reader_id: Mapped[str | None]
    subtlety: Mapped[int | None]
    internal_structure: Mapped[int | None]
    calcification: Mapped[int | None]
    sphericity: Mapped[int | None]
    margin: Mapped[int | None]
    lobulation: Mapped[int | None]
    spiculation: Mapped[int | None]
    texture: Mapped[int | None]
    malignancy: Mapped[int | None]

    nodule: Mapped[Nodule] = relationship(back_populates="reads")

    def __repr__(self) -> str:
        return f"NoduleRead(nodule_id={self.nodule_id}, malignancy={self.malignancy})"


class Label(Base):
    """The derived malignancy labels of a nodule (``model.clinical.labels.derive_label``)."""

    __tablename__ = "labels"

    nodule_id: Mapped[int] = mapped_column(ForeignKey("nodules.id"), primary_key=True)
    n_readers: Mapped[int]
    ratings: Mapped[list[int]] = mapped_column(JSON)
    mean_malignancy: Mapped[float | None]
    label_binary: Mapped[int | None]
    label_4class: Mapped[int | None]

    nodule: Mapped[Nodule] = relationship(back_populates="label")

    def __repr__(self) -> str:
        return f"Label(nodule_id={self.nodule_id}, binary={self.label_binary})"


class Build(Base):
    """The build that wrote this catalogue version."""

    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String, unique=True)
    parent_version: Mapped[str | None]
    model_fingerprint: Mapped[str]
    preprocessing: Mapped[dict[str, object]] = mapped_column(JSON)
    data_fingerprint: Mapped[str]
    index_type: Mapped[str]
    index_params: Mapped[dict[str, object]] = mapped_column(JSON)
    n_scans: Mapped[int]
    n_nodules: Mapped[int]
    n_labelled: Mapped[int]
    n_embedded: Mapped[int]
    """Vectors computed by this build (the others were reused from the parent version)."""
    timings_s: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str]

    def __repr__(self) -> str:
        return f"Build(version={self.version!r}, status={self.status!r})"
