"""Write a CT volume as a DICOM series (CT Image Storage, one file per slice).

Used by the synthetic data set (a few scans are also exported as DICOM, as a hospital would hold
them) and by tests. Geometry is written the way scanners do: ImageOrientationPatient from the
direction matrix's first two columns, ImagePositionPatient per slice, PixelSpacing as
(row spacing, column spacing), stored values with RescaleIntercept -1024 / slope 1.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from model.ct.volume import CTVolume

RESCALE_INTERCEPT = -1024.0


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if len(text) <= 16 else f"{value:.8g}"


def write_dicom_series(
    volume: CTVolume,
    folder: Path,
    *,
    series_uid: str,
    study_uid: str | None = None,
    patient_id: str = "SYNTHETIC",
    shuffle_names_seed: int | None = None,
) -> list[Path]:
    """Write ``volume`` as one DICOM file per slice into ``folder``.

    Args:
        volume: HU volume; slice k of ``hu_zyx`` becomes one file at its world position.
        folder: output folder (created).
        series_uid: SeriesInstanceUID for every slice.
        study_uid: StudyInstanceUID (generated when None).
        patient_id: PatientID to write (synthetic data only; never a real identifier).
        shuffle_names_seed: when given, file names are shuffled so that readers that sort by file
            name or InstanceNumber instead of position would fail.

    Returns:
        The written paths, in slice (array) order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    geometry = volume.geometry
    d = geometry.direction_matrix
    orientation = [*d[:, 0].tolist(), *d[:, 1].tolist()]
    sx, sy, _ = geometry.spacing_xyz
    nz, ny, nx = geometry.shape_zyx
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    names = np.arange(nz)
    if shuffle_names_seed is not None:
        names = np.random.default_rng(shuffle_names_seed).permutation(nz)
    stored = np.clip(np.rint(volume.hu_zyx - RESCALE_INTERCEPT), 0, 65535).astype(np.uint16)
    today = dt.date(2000, 1, 1).strftime("%Y%m%d")
    paths = []
    for k in range(nz):
        position = geometry.index_zyx_to_world([k, 0, 0])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{int(names[k]):05d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientID = patient_id
        ds.PatientName = "SYNTHETIC^PHANTOM"
        ds.StudyDate = today
        ds.SeriesNumber = 1
        # Instance numbers run against position order on purpose: readers must sort by position.
        ds.InstanceNumber = nz - k
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in orientation]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(geometry.spacing_xyz[2])
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = _ds(RESCALE_INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
