"""Uploads are bounded from their headers: declared voxels vs the parser's budget, zip output
counted as it is written, and a series picked out of a multi-series zip."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.uploads.parse import (
    UploadContentError,
    UploadJob,
    cut_upload,
    extract_zip,
    voxel_budget,
)
from app.uploads.parser import parser_environment
from app.uploads.worker import EXIT_UNUSABLE, MEMORY_ENV
from model.ct.volume import CTVolume, VolumeTooLargeError
from model.preprocessing import PatchSpec
from tests.helpers.synthetic import IDENTITY, make_geometry, sphere_hu, write_dicom, write_itk

SPEC = PatchSpec(patch_shape_zyx=(16, 16, 16), spacing_mm=1.0)
SHAPE = (40, 40, 40)  # 64,000 voxels: 448 KB to read as an int16 array


def _volume() -> CTVolume:
    geometry = make_geometry(SHAPE, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), IDENTITY)
    hu = sphere_hu(geometry, np.array([20.0, 20.0, 20.0]), 5.0)
    return CTVolume(hu_zyx=hu, geometry=geometry, series_uid="1.2.3")


def _zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return out


def _uploads(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    volume = _volume()
    np.save(tmp_path / "ct.npy", volume.hu_zyx.astype(np.int16))
    np.savez_compressed(tmp_path / "ct.npz", volume.hu_zyx.astype(np.int16))
    write_itk(volume, tmp_path / "ct.nii.gz")
    write_itk(volume, tmp_path / "ct.mha")
    (tmp_path / "zraw").mkdir()
    write_itk(volume, tmp_path / "zraw" / "ct.mhd", compress=True)
    write_dicom(volume, tmp_path / "dicom" / "series")
    return {
        "npy": (tmp_path / "ct.npy", "array"),
        "npz": (tmp_path / "ct.npz", "array"),
        "nii.gz": (tmp_path / "ct.nii.gz", "image"),
        "mha": (tmp_path / "ct.mha", "image"),
        "zraw zip": (_zip_folder(tmp_path / "zraw", tmp_path / "zraw.zip"), "zip"),
        "dicom zip": (_zip_folder(tmp_path / "dicom", tmp_path / "dicom.zip"), "zip"),
    }


def test_every_format_is_refused_from_its_header_when_its_voxels_exceed_the_budget(
    tmp_path: Path,
) -> None:
    for name, (path, kind) in _uploads(tmp_path).items():
        work = tmp_path / f"work-{name}"
        spacing = (1.0, 1.0, 1.0) if kind == "array" else None
        job = UploadJob(path=path, kind=kind, spec=SPEC, spacing_zyx=spacing, workdir=work / "a")
        patch = cut_upload(job, 64 * 1024**2)
        assert patch.patch.shape == SPEC.patch_shape_zyx, name
        # 64,000 voxels are at least 128 KB (DICOM, stored int16) to read: 100 KB is too little.
        with pytest.raises(VolumeTooLargeError, match=r"declares 40x40x40 \(z, y, x\) voxels"):
            cut_upload(job.model_copy(update={"workdir": work / "b"}), 100 * 1024)


def _npz_declaring(shape: tuple[int, int, int], descr: str) -> bytes:
    """An .npz whose one member declares ``shape`` but holds no data (a few hundred bytes)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ct.npy", header.getvalue())
    return buffer.getvalue()


def _worker_peak(request: dict[str, object], memory_bytes: int) -> tuple[int, str, int]:
    """Run the parser worker as the service does; its exit status, stdout and VmPeak (bytes)."""
    probe = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('app.uploads.worker', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "peak = open('/proc/self/status').read().split('VmPeak:')[1].split()[0]\n"
        "sys.stderr.write(f'{peak}\\n')\n"
        "raise SystemExit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=parser_environment(memory_bytes),
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, int(done.stderr.strip().splitlines()[-1]) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_tiny_npz_declaring_2_to_the_29_voxels_stays_under_the_parser_cap(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bomb.npz"
    path.write_bytes(_npz_declaring((512, 1024, 1024), "|u1"))  # 2^29 uint8 voxels
    assert path.stat().st_size < 1024
    cap = 3072 * 1024**2  # the default NODULE_PARSER_MEMORY_MB
    job = UploadJob(
        path=path, kind="array", spec=SPEC, spacing_zyx=(1.0, 1.0, 1.0), workdir=tmp_path
    )
    request: dict[str, object] = {
        "job": job.model_dump(mode="json"),
        "out": str(tmp_path / "patch.npz"),
    }
    status, stdout, peak = _worker_peak(request, cap)
    assert status == EXIT_UNUSABLE
    assert "reading them needs about 3.0 GB" in json.loads(stdout)["detail"]
    assert peak < cap
    assert voxel_budget(cap) is not None


def test_zip_output_is_counted_as_it_is_written(tmp_path: Path) -> None:
    upload = tmp_path / "up.zip"
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_STORED) as archive:
        for i in range(4):
            archive.writestr(f"part{i}.dcm", os.urandom(256 * 1024))
    out = tmp_path / "out"
    # Declared sizes pass a 2 MB cap; written bytes are counted too (sizes in a zip can lie).
    extract_zip(upload, out, max_bytes=2 * 1024**2)
    with pytest.raises(UploadContentError, match="expands to more than"):
        extract_zip(upload, tmp_path / "small", max_bytes=600 * 1024)
    written = sum(p.stat().st_size for p in (tmp_path / "small").rglob("*") if p.is_file())
    assert written <= 600 * 1024


def test_a_series_is_picked_out_of_a_zip_of_two(tmp_path: Path) -> None:
    volume = _volume()
    write_dicom(volume, tmp_path / "two" / "a", series_uid="1.2.826.0.1.3680043.10.71")
    write_dicom(volume, tmp_path / "two" / "b", series_uid="1.2.826.0.1.3680043.10.72")
    upload = _zip_folder(tmp_path / "two", tmp_path / "two.zip")
    job = UploadJob(path=upload, kind="zip", spec=SPEC, workdir=tmp_path / "w1")
    with pytest.raises(ValueError, match=r"2 CT series.*series_uid.*10\.71.*10\.72"):
        cut_upload(job)
    picked = {"workdir": tmp_path / "w2", "series_uid": "1.2.826.0.1.3680043.10.72"}
    patch = cut_upload(job.model_copy(update=picked))
    assert patch.patch.shape == SPEC.patch_shape_zyx
    with pytest.raises(ValueError, match="not found"):
        cut_upload(job.model_copy(update={"workdir": tmp_path / "w3", "series_uid": "1.2.3.4"}))


def test_the_parser_environment_carries_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODULE_API_KEY", "secret-key")
    monkeypatch.setenv("NODULE_DICOMWEB_PASSWORD", "pacs-password")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud")
    env = parser_environment(1024**3)
    assert env[MEMORY_ENV] == str(1024**3)
    assert "PATH" in env
    assert not any("secret" in v or "password" in v or v == "cloud" for v in env.values())
    assert not any(name.startswith(("NODULE_API", "NODULE_DICOMWEB", "AWS")) for name in env)
