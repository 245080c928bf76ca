"""Shared fixtures: where the real data lives and the real CT series extracted from it."""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Real DICOM series in ``shared/data``: key -> (tarball relative to the data folder, the folder
#: inside the tarball that holds the series' files).
REAL_SERIES: dict[str, tuple[str, str]] = {
    "LIDC-IDRI-0001": (
        "lidc_dicom/LIDC-IDRI-0001_series179049373636438705059720603192_133slices_dicom+xml.tar.xz",
        "LIDC-IDRI-0001/1.3.6.1.4.1.14519.5.2.1.6279.6001.298806137288633453246975630178/"
        "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192",
    ),
    "LIDC-IDRI-0002": (
        "lidc_dicom/LIDC-IDRI-0002_series619372068417051974713149104919_261slices_dicom+xml.tar.xz",
        "LIDC-IDRI-0002/1.3.6.1.4.1.14519.5.2.1.6279.6001.490157381160200744295382098329/"
        "1.3.6.1.4.1.14519.5.2.1.6279.6001.619372068417051974713149104919",
    ),
    "LIDC-IDRI-0003": (
        "lidc_dicom/LIDC-IDRI-0003_series170706757615202213033480003264_140slices_dicom+xml.tar.xz",
        "LIDC-IDRI-0003/1.3.6.1.4.1.14519.5.2.1.6279.6001.101370605276577556143013894866/"
        "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264",
    ),
    "CPTAC": ("ct/cptac-luad_C3N-00247_LUNG3.0_B70f_99slices_dicom.tar.xz", "cptac"),
}


def shared_data_dir() -> Path:
    """``$NODULE_SHARED_DATA``, or ``<project root>/../shared/data``."""
    env = os.environ.get("NODULE_SHARED_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; the test is skipped only when the folder itself is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(
            "../shared/data is absent (CI and dev machines have it); real-data test skipped"
        )
    return path


class RealSeries:
    """Real DICOM series folders, each tarball extracted on first use and kept for the session."""

    def __init__(self, data_dir: Path, out_dir: Path) -> None:
        self._data_dir = data_dir
        self._out_dir = out_dir
        self._folders: dict[str, Path] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> Path:
        """The folder holding the files of series ``key`` (a key of ``REAL_SERIES``)."""
        with self._lock:
            if key not in self._folders:
                tarball, inner = REAL_SERIES[key]
                target = self._out_dir / key
                with tarfile.open(self._data_dir / tarball, "r:xz") as tar:
                    tar.extractall(target, filter="data")
                folder = target / inner
                if not folder.is_dir():
                    raise FileNotFoundError(f"{tarball} does not hold {inner}")
                self._folders[key] = folder
            return self._folders[key]


@pytest.fixture(scope="session")
def real_series(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealSeries]:
    """Lazily extracted real series: ``real_series["LIDC-IDRI-0001"]`` is a DICOM folder.

    The extracted files (about 320 MB for all four) are removed at the end of the session, so the
    temporary folders pytest keeps from earlier runs do not pile up.
    """
    out_dir = tmp_path_factory.mktemp("real_ct")
    yield RealSeries(shared_data, out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
