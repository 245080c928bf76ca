"""A real Orthanc PACS with its DICOMweb plugin, started for tests as a plain background process.

Loopback only, a free port, DICOM port off, HTTP basic auth with a random password, no remote
access, no HTTP compression. When Orthanc is missing the tests fail with the install command:
CI installs it (``make test`` does), so they never skip silently.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

ORTHANC = os.environ.get("NODULE_ORTHANC", "/usr/sbin/Orthanc")
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
INSTALL = "apt-get install orthanc orthanc-dicomweb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One running Orthanc; ``url`` is its DICOMweb root."""

    def __init__(self, workdir: Path) -> None:
        if not (Path(ORTHANC).is_file() and Path(PLUGIN).is_file()):
            pytest.fail(f"Orthanc with its DICOMweb plugin is not installed: `{INSTALL}`")
        self.workdir = workdir
        self.port = _free_port()
        self.user = "nodule"
        self.password = secrets.token_urlsafe(16)
        config = {
            "Name": "nodule-search-test",
            "StorageDirectory": str(workdir / "db"),
            "IndexDirectory": str(workdir / "db"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "HttpCompressionEnabled": False,
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.port}"},
        }
        (workdir / "orthanc.json").write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """The server's HTTP root."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The DICOMweb root."""
        return f"{self.base}/dicom-web"

    def start(self) -> None:
        """Start and wait until it answers (within a second on these machines)."""
        with (self.workdir / "orthanc.log").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [ORTHANC, str(self.workdir / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(
                    f"{self.base}/system", auth=(self.user, self.password), timeout=1
                ).ok:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"Orthanc did not start (see {self.workdir / 'orthanc.log'})")

    def stop(self) -> None:
        """SIGTERM, then wait for it to go."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        self.process = None

    def client(self) -> DICOMwebClient:
        """A DICOMweb client of this server, logged in."""
        session = requests.Session()
        session.auth = (self.user, self.password)
        return DICOMwebClient(self.url, session=session)

    def retrieve_bytes(self, instance_url: str) -> bytes:
        """One instance by WADO-RS, as the Part 10 bytes the server sends (the multipart cut)."""
        answer = requests.get(
            instance_url,
            auth=(self.user, self.password),
            headers={"Accept": 'multipart/related; type="application/dicom"'},
            timeout=10,
        )
        answer.raise_for_status()
        boundary = answer.headers["Content-Type"].split("boundary=")[1].split(";")[0].strip('"')
        parts = [p for p in answer.content.split(b"--" + boundary.encode()) if b"\r\n\r\n" in p]
        assert len(parts) == 1, f"expected one instance, got {len(parts)} parts"
        body = parts[0].split(b"\r\n\r\n", 1)[1]
        return body[:-2] if body.endswith(b"\r\n") else body

    def store(self, folder: Path) -> tuple[str, str]:
        """STOW-RS every DICOM file of ``folder``; returns (study UID, series UID)."""
        client = self.client()
        datasets = [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))]
        client.store_instances(datasets)
        return str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)


def orthanc_available() -> bool:
    """Whether this machine has Orthanc and the plugin (the tests fail without them)."""
    return shutil.which(ORTHANC) is not None and Path(PLUGIN).is_file()
