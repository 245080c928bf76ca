"""The OHIF round on this machine (``make ohif-demo``): a PACS, the service, OHIF with the panel.

Starts Debian's Orthanc (with its DICOMweb plugin) on loopback with a random password, stores
the real LIDC series of the shared data in it (the indexer's own extraction), serves the
nodule-search API on a catalogue (``make demo`` builds ``index/demo``) reading from that PACS,
and serves OHIF with the panel over the same PACS. Prints where to go; Ctrl-C stops all three.
Nothing here is a deployment: docs/ohif.md says how to point nodule-ohif at a real PACS.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from app.ohif.bundle import OHIF
from indexer.data.realset import REAL_SCANS, extract_scan
from tests.helpers.live_server import live_process
from tests.helpers.orthanc import Orthanc

logger = logging.getLogger("ohif-demo")
BIN = Path(sys.executable).parent
#: The CT series of the shared data that have DICOM files (the CPTAC scan is a volume only).
SERIES = tuple(s for s in REAL_SCANS if s.key.startswith("LIDC-IDRI-"))


def _store_series(pacs: Orthanc, shared: Path, cache: Path) -> list[tuple[str, str]]:
    stored = []
    for scan in SERIES:
        folder = extract_scan(shared, scan, cache)
        stored.append(pacs.store(folder))
        logger.info("stored %s in the PACS", scan.key)
    return stored


def run(args: argparse.Namespace) -> int:
    """Start the three servers and wait for Ctrl-C."""
    if not (args.index / "CURRENT").is_file():
        sys.stderr.write(f"ohif-demo: no catalogue in {args.index}: run `make demo SERVE=0`\n")
        return 2
    work = Path(tempfile.mkdtemp(prefix="nodule-ohif-demo-"))
    (work / "pacs").mkdir()
    pacs = Orthanc(work / "pacs")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # the PACS's copy of the series
        stack.callback(pacs.stop)
        pacs.start()
        studies = _store_series(pacs, args.shared, work / "series")
        api = f"http://127.0.0.1:{args.api_port}"
        ohif = f"http://127.0.0.1:{args.ohif_port}"
        pacs_env = {
            "NODULE_DICOMWEB_URL": pacs.url,
            "NODULE_DICOMWEB_USER": pacs.user,
            "NODULE_DICOMWEB_PASSWORD": pacs.password,
        }
        api_env = {**pacs_env, "NODULE_INDEX_DIR": str(args.index), "NODULE_OHIF_URL": ohif}
        stack.enter_context(
            live_process(
                [str(BIN / "nodule-api"), "--port", str(args.api_port)],
                api_env,
                work / "api.log",
                f"{api}/readyz",
                "nodule-api",
            )
        )
        ohif_env = {
            **pacs_env,
            "NODULE_OHIF_API_URL": api,
            "NODULE_OHIF_DIST": str(args.ohif_dist / OHIF.version),
        }
        stack.enter_context(
            live_process(
                [str(BIN / "nodule-ohif"), "serve", "--port", str(args.ohif_port)],
                ohif_env,
                work / "ohif.log",
                f"{ohif}/app-config.js",
                "nodule-ohif",
            )
        )
        logger.info(
            "OHIF with the Similar nodules panel: %s/ (logs in %s while it runs)", ohif, work
        )
        for study, series in studies:
            logger.info(
                "  a study: %s/viewer?StudyInstanceUIDs=%s (series %s)", ohif, study, series
            )
        logger.info("the service's own viewer: %s/ ; Ctrl-C stops the demo", api)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            logger.info("stopping")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scripts.ohif_demo --shared ../shared/data --index index/demo``."""
    parser = argparse.ArgumentParser(prog="ohif-demo", description=__doc__)
    parser.add_argument("--shared", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--index", type=Path, default=Path("index/demo"), help="the catalogue")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--ohif-port", type=int, default=3000)
    parser.add_argument("--ohif-dist", type=Path, default=Path("build/ohif"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # a line per request
    # SIGTERM (a supervisor, `kill`) stops the demo as Ctrl-C does: the servers are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
