"""POST /v1/search/upload: the same nodule in every format, and every bad upload."""

from __future__ import annotations

import csv
import io
import logging
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from app.uploads.parser import UploadParser
from model.ct.open import load_volume
from model.store.catalog import Catalog
from model.store.tables import Nodule
from tests.helpers.data import RealSeries
from tests.helpers.synthetic import metaimage_header, metaimage_via_dicom, metaimage_via_nifti


def _identity_nodule(
    app_index: Path, synth_set: Path
) -> tuple[int, Path, tuple[float, float, float]]:
    """An indexed nodule in a scan whose direction matrix is the identity."""
    catalog = Catalog.open(app_index)
    try:
        with catalog.sessions() as session:
            for nodule in session.query(Nodule).order_by(Nodule.id):
                if nodule.scan.direction == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]:
                    path = next(synth_set.glob(f"subset*/{nodule.series_uid}.mhd"))
                    return nodule.id, path, nodule.center_xyz
    finally:
        catalog.close()
    raise AssertionError("no identity-direction scan in the synthetic set")


def _post(client: TestClient, name: str, data: bytes, **form: str) -> tuple[int, dict[str, Any]]:
    response = client.post(
        "/v1/search/upload", files={"file": (name, data)}, data={"k": "3", **form}
    )
    return response.status_code, response.json()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_same_nodule_in_every_format(
    client: TestClient, app_index: Path, synth_set: Path, tmp_path: Path
) -> None:
    nodule_id, mhd, center = _identity_nodule(app_index, synth_set)
    center_text = ",".join(f"{v:.4f}" for v in center)
    volume = load_volume(mhd)
    results = {}
    # .mhd + .raw in a zip, and the same image as NIfTI and .mha
    results["mhd-zip"] = _post(
        client,
        "scan.zip",
        _zip(
            {
                mhd.name: mhd.read_bytes(),
                mhd.with_suffix(".raw").name: mhd.with_suffix(".raw").read_bytes(),
            }
        ),
        center_xyz=center_text,
    )
    image = sitk.ReadImage(str(mhd))
    for suffix in (".nii.gz", ".mha"):
        sitk.WriteImage(image, str(tmp_path / f"scan{suffix}"))
        results[suffix] = _post(
            client,
            f"scan{suffix}",
            (tmp_path / f"scan{suffix}").read_bytes(),
            center_xyz=center_text,
        )
    # A HU array (z, y, x) cut around the nodule, with its own frame: origin 0, identity.
    g = volume.geometry
    index = np.round(g.world_to_index_zyx(center)).astype(int)
    # Big enough for the model's field of view (40 mm) in every direction.
    half = np.ceil(25.0 / np.asarray(g.spacing_xyz[::-1])).astype(int)
    start = np.maximum(index - half, 0)
    stop = np.minimum(index + half + 1, g.shape_zyx)
    crop = volume.hu_zyx[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]]
    spacing_zyx = g.spacing_xyz[::-1]
    local_xyz = (g.world_to_index_zyx(center) - start)[::-1] * np.asarray(g.spacing_xyz)
    buffer = io.BytesIO()
    np.save(buffer, crop.astype(np.int16))
    results["npy"] = _post(
        client,
        "patch.npy",
        buffer.getvalue(),
        center_xyz=",".join(map(str, local_xyz)),
        spacing_zyx=",".join(map(str, spacing_zyx)),
    )
    for name, (status, body) in results.items():
        assert status == 200, (name, body)
        first = body["neighbors"][0]
        assert first["id"] == nodule_id, name
        assert first["similarity"] > 0.999, name


def test_dicom_zip_upload(client: TestClient, synth_set: Path, app_index: Path) -> None:
    (folder,) = list((synth_set / "dicom").iterdir())
    files = {f"series/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}
    catalog = Catalog.open(app_index)
    with catalog.sessions() as session:
        nodule = session.query(Nodule).filter(Nodule.series_uid == folder.name).first()
        expected = (nodule.id, nodule.center_xyz) if nodule else None
    catalog.close()
    center = ",".join(map(str, expected[1])) if expected else ""
    status, body = _post(
        client, "dicom.zip", _zip(files), **({"center_xyz": center} if expected else {})
    )
    assert status == 200, body
    if expected:
        assert body["neighbors"][0]["id"] == expected[0]


def test_metaimage_with_nifti_and_dicom_keys(
    client: TestClient, app_index: Path, synth_set: Path, tmp_path: Path
) -> None:
    """SimpleITK's conversions from NIfTI and DICOM carry their metadata keys into the header."""
    nodule_id, mhd, center = _identity_nodule(app_index, synth_set)
    image = sitk.ReadImage(str(mhd))
    (tmp_path / "pair").mkdir()
    mha = metaimage_via_nifti(image, tmp_path / "scan.mha")
    pair = metaimage_via_nifti(image, tmp_path / "pair" / "scan.mhd")
    for path in (mha, pair):
        assert "dim[0] = 3" in metaimage_header(path)  # guard: the NIfTI keys are there
    uploads = {
        "mha": ("scan.mha", mha.read_bytes()),
        "mhd-zip": (
            "scan.zip",
            _zip(
                {"scan.mhd": pair.read_bytes(), "scan.raw": pair.with_suffix(".raw").read_bytes()}
            ),
        ),
    }
    for name, (filename, data) in uploads.items():
        status, body = _post(client, filename, data, center_xyz=",".join(map(str, center)))
        assert status == 200, (name, body)
        assert body["neighbors"][0]["id"] == nodule_id, name
        assert body["neighbors"][0]["similarity"] > 0.999, name

    (folder,) = list((synth_set / "dicom").iterdir())
    from_dicom, _ = metaimage_via_dicom(folder, tmp_path / "dicom.mha")
    assert "0008|0060 = CT" in metaimage_header(from_dicom)
    catalog = Catalog.open(app_index)
    with catalog.sessions() as session:
        nodule = session.query(Nodule).filter(Nodule.series_uid == folder.name).first()
        expected = (nodule.id, nodule.center_xyz) if nodule else None
    catalog.close()
    form = {"center_xyz": ",".join(map(str, expected[1]))} if expected else {}
    status, body = _post(client, "dicom.mha", from_dicom.read_bytes(), **form)
    assert status == 200, body
    if expected:
        assert body["neighbors"][0]["id"] == expected[0]


@pytest.fixture(scope="module")
def small_limit_client(app_index: Path, synth_set: Path) -> Iterator[TestClient]:
    settings = AppSettings(index_dir=app_index, data_dir=synth_set, device="cpu", max_upload_mb=1)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_upload_over_the_limit_is_413(small_limit_client: TestClient) -> None:
    status, body = _post(small_limit_client, "big.npy", b"\0" * (2 * 1024 * 1024))
    assert status == 413
    assert "limit of 1 MB" in str(body["detail"])


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


EVIL_MHD = (
    b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
    b"ElementDataFile = ../../etc/passwd\n"
)
HU = np.random.default_rng(0).normal(-600, 300, (20, 20, 20)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "data", "form", "status", "phrase"),
    [
        ("scan.png", b"\x89PNG", {}, 415, "unsupported file type"),
        ("scan.npy", _npy(HU), {}, 422, "needs spacing_zyx"),
        ("scan.npy", _npy(HU[0]), {"spacing_zyx": "1,1,1"}, 422, "must be 3-D"),
        ("scan.npy", _npy(np.where(HU > 0, np.nan, HU)), {"spacing_zyx": "1,1,1"}, 422, "NaN"),
        (
            "scan.npy",
            _npy(np.random.default_rng(1).random((20, 20, 20))),
            {"spacing_zyx": "1,1,1"},
            422,
            "Hounsfield",
        ),
        ("scan.npy", b"garbage", {"spacing_zyx": "1,1,1"}, 422, "not a readable numpy file"),
        (
            "scan.npy",
            _npy(HU),
            {"spacing_zyx": "1,1,1", "center_xyz": "500,0,0"},
            422,
            "outside the volume",
        ),
        ("scan.npy", _npy(HU), {"spacing_zyx": "1,1"}, 422, "3 finite numbers"),
        ("scan.nii.gz", b"not nifti", {}, 422, "NIfTI"),
        ("scan.zip", b"not a zip", {}, 422, "not a readable zip"),
        ("scan.zip", _zip({"../evil.mhd": b"x"}), {}, 422, "outside the archive"),
        ("scan.zip", _zip({f"f{i}.dcm": b"" for i in range(5001)}), {}, 422, "members"),
        ("scan.zip", _zip({"zeros.raw": b"\0" * (30 * 1024 * 1024)}), {}, 422, "zip bomb"),
        (
            "scan.zip",
            _zip({"ct.mhd": EVIL_MHD}),
            {},
            422,
            "outside the header's folder",
        ),
    ],
)
def test_bad_uploads(
    client: TestClient, name: str, data: bytes, form: dict[str, str], status: int, phrase: str
) -> None:
    code, body = _post(client, name, data, **form)
    assert code == status, body
    assert phrase in str(body["detail"])


def test_chunked_upload_over_the_limit_is_cut_off_while_streaming(
    small_limit_client: TestClient,
) -> None:
    boundary = "nodule-boundary"
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.npy"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(8):  # 8 MB, no Content-Length: the limit must act on the stream
            sent["bytes"] += 1024 * 1024
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = small_limit_client.post(
        "/v1/search/upload",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert "limit of 1 MB" in response.json()["detail"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_lidc_dicom_upload_logs_no_patient_identifier(
    client: TestClient, real_series: RealSeries, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = real_series["LIDC-IDRI-0001"]
    files = {f"LIDC/{p.name}": p.read_bytes() for p in sorted(folder.glob("*.dcm"))}
    with (shared_data / "luna16/annotations.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["seriesuid"] == folder.name)
    center = f"{row['coordX']},{row['coordY']},{row['coordZ']}"
    with caplog.at_level(logging.DEBUG):
        status, body = _post(client, "lidc.zip", _zip(files), center_xyz=center)
    assert status == 200, body
    assert len(body["neighbors"]) == 3
    assert body["query"]["center_xyz"] == pytest.approx(
        [float(row[k]) for k in ("coordX", "coordY", "coordZ")]
    )
    for identifier in ("LIDC-IDRI-0001", "LIDC^IDRI", "PatientName"):
        assert identifier not in caplog.text


def _memory_bomb() -> bytes:
    """A 4.3 GB float64 array of zeros deflated to a few MB, within the accepted shape: reading
    it and turning it into float32 HU needs about 6.5 GB, more than the parser's 4 GB."""
    shape = (536, 1000, 1000)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    chunk = bytes(8 * 1000 * 1000)
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("ct.npy", "w", force_zip64=True) as member,
    ):
        member.write(header.getvalue())
        for _ in range(shape[0]):
            member.write(chunk)
    return buffer.getvalue()


@pytest.mark.slow
def test_parser_memory_bomb_and_timeout_are_422_and_the_service_lives(
    app_index: Path, synth_set: Path
) -> None:
    bomb = _memory_bomb()
    settings = AppSettings(
        index_dir=app_index, data_dir=synth_set, device="cpu", parser_memory_mb=4096
    )
    with TestClient(create_app(settings)) as limited:
        status, body = _post(limited, "bomb.npz", bomb, spacing_zyx="1,1,1")
        assert status == 422
        # Refused from the member's header, before a byte of it is decompressed.
        assert "reading them needs about 6.5 GB" in body["detail"]
        assert limited.get("/healthz").status_code == 200
        # The parser is rebuilt: the next upload is parsed normally.
        status, body = _post(limited, "ok.npy", _npy(HU), spacing_zyx="1,1,1")
        assert status == 200, body
    slow = AppSettings(
        index_dir=app_index, data_dir=synth_set, device="cpu", parser_timeout_s=0.001
    )
    with TestClient(create_app(slow)) as impatient:
        status, body = _post(impatient, "ok.npy", _npy(HU), spacing_zyx="1,1,1")
        assert status == 422
        assert "took longer" in body["detail"]


def test_parsers_are_bounded_and_a_full_house_is_503_with_retry_after(
    app_index: Path, synth_set: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    started = threading.Event()
    real_run = UploadParser._run

    def held(self: UploadParser, *args: Any) -> Any:
        started.set()
        release.wait(30)
        return real_run(self, *args)

    monkeypatch.setattr(UploadParser, "_run", held)
    settings = AppSettings(
        index_dir=app_index, data_dir=synth_set, device="cpu", max_parsers=1, parser_wait_s=0.1
    )
    with TestClient(create_app(settings)) as busy, ThreadPoolExecutor(1) as pool:
        first = pool.submit(_post, busy, "ok.npy", _npy(HU), spacing_zyx="1,1,1")
        assert started.wait(30)
        response = busy.post(
            "/v1/search/upload",
            files={"file": ("ok.npy", _npy(HU))},
            data={"spacing_zyx": "1,1,1"},
        )
        release.set()
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert "upload parsers are busy" in response.json()["detail"]
        assert first.result(timeout=60)[0] == 200
        # The slot is free again.
        assert _post(busy, "ok.npy", _npy(HU), spacing_zyx="1,1,1")[0] == 200


def test_a_series_uid_field_picks_one_series_out_of_a_zip(
    client: TestClient, synth_set: Path
) -> None:
    (folder,) = list((synth_set / "dicom").iterdir())
    files = {f"a/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}
    other = "1.2.826.0.1.3680043.10.999"
    for p in sorted(folder.iterdir()):
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = other
        buffer = io.BytesIO()
        ds.save_as(buffer)
        files[f"b/{p.name}"] = buffer.getvalue()
    both = _zip(files)
    status, body = _post(client, "two.zip", both)
    assert status == 422
    assert "2 CT series" in body["detail"]
    assert other in body["detail"]
    assert folder.name in body["detail"]
    status, body = _post(client, "two.zip", both, series_uid=other)
    assert status == 200, body
    status, body = _post(client, "two.zip", both, series_uid="1.2.3.4")
    assert status == 422
    assert "not found" in body["detail"]
    status, body = _post(client, "ok.npy", _npy(HU), spacing_zyx="1,1,1", series_uid=other)
    assert status == 422
    assert "zip of DICOM files only" in body["detail"]
