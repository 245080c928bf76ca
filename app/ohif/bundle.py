"""The pinned OHIF Viewer bundle: fetched from the npm registry, checked, unpacked (never in git).

``@ohif/app`` ships its production build (``dist/``: ``index.html``, ``app-config.js``, the
bundles) in the npm package, so no Node toolchain is needed. The tarball is checked against the
registry's SHA-512 ``integrity`` recorded here when the pin was chosen (docs/ohif.md: how to move
the pin), then unpacked with tarfile's ``data`` filter (no absolute paths, no links out, no device
files). What this project does not serve is left out: the 136 MB ONNX runtime (``ort/``, for
OHIF's AI segmentation tools) and the slide microscopy viewer.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

logger = logging.getLogger(__name__)

DEFAULT_REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class BundlePin:
    """One released ``@ohif/app`` package, as the npm registry lists it."""

    version: str
    integrity: str
    """The registry's ``dist.integrity``: ``sha512-`` and the base64 digest of the tarball."""
    licence: str = "MIT"

    def tarball_url(self, registry: str = DEFAULT_REGISTRY) -> str:
        """Where the registry serves the package's tarball."""
        return f"{registry.rstrip('/')}/@ohif/app/-/app-{self.version}.tgz"


#: The OHIF release this project serves and tests against.
OHIF = BundlePin(
    version="3.13.2",
    integrity="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==",
)
#: Folders of ``dist/`` left out: the ONNX runtime and the microscopy viewer (unused modes).
LEFT_OUT = ("ort", "dicom-microscopy-viewer")
#: The largest tarball accepted (3.13.2's is 50 MB): a wrong URL must not fill the disk.
MAX_TARBALL_BYTES = 200 * 1024 * 1024


class BundleError(RuntimeError):
    """The bundle could not be fetched, or is not the pinned one."""


def registry_url() -> str:
    """The npm registry: ``NPM_CONFIG_REGISTRY`` (npm's own setting, for mirrors) or npmjs."""
    return os.environ.get("NPM_CONFIG_REGISTRY") or DEFAULT_REGISTRY


def check_integrity(data: bytes, integrity: str) -> None:
    """``data`` has the Subresource-Integrity style SHA-512 ``integrity``.

    Raises:
        BundleError: another digest (or another algorithm named).
    """
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise BundleError(f"only sha512 integrity values are pinned, not {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if actual != expected:
        raise BundleError(
            "the downloaded OHIF package does not match the pinned integrity hash (a corrupted "
            "download, or the registry serves another file): refusing to unpack it"
        )


def download(url: str, timeout_s: float = 120.0) -> bytes:
    """The tarball's bytes (at most ``MAX_TARBALL_BYTES``).

    Raises:
        BundleError: unreachable, an HTTP error, or too large.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            data: bytes = answer.read(MAX_TARBALL_BYTES + 1)
    except OSError as e:
        raise BundleError(f"cannot download the OHIF package from {url}: {e}") from e
    if len(data) > MAX_TARBALL_BYTES:
        raise BundleError(f"the OHIF package at {url} is over {MAX_TARBALL_BYTES >> 20} MB")
    return data


def _kept(name: str) -> str | None:
    """The path under ``dist/`` a tar member unpacks to, or None when it is not served."""
    parts = PurePosixPath(name).parts
    if len(parts) < 3 or parts[:2] != ("package", "dist") or parts[2] in LEFT_OUT:
        return None
    if any(part in ("..", ".") for part in parts):  # a member may not climb out of dist/
        return None
    return str(PurePosixPath(*parts[2:]))


def unpack(tarball: Path, out: Path) -> int:
    """``dist/`` of the package into ``out`` (emptied first), less ``LEFT_OUT``; files written."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = 0
    with tarfile.open(tarball, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            kept = _kept(member.name)
            if kept is not None and (member.isfile() or member.isdir()):
                member.name = kept
                members.append(member)
                written += member.isfile()
        archive.extractall(out, members=members, filter="data")
    return written


def fetch(out_root: Path, pin: BundlePin = OHIF, registry: str | None = None) -> Path:
    """The pinned bundle unpacked under ``out_root/<version>``; reused when already there.

    Written next to its final place and renamed in, so an interrupted fetch never leaves a
    half-unpacked viewer that a later run would take for the real one.
    """
    target = out_root / pin.version
    if (target / "index.html").is_file():
        logger.info("OHIF %s is already unpacked in %s", pin.version, target)
        return target
    url = pin.tarball_url(registry or registry_url())
    logger.info("downloading OHIF %s from %s", pin.version, url)
    data = download(url)
    check_integrity(data, pin.integrity)
    out_root.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a folder without index.html: not a viewer this module unpacked
        shutil.rmtree(target)
    with tempfile.TemporaryDirectory(dir=out_root, prefix=".fetch-") as scratch:
        tarball = Path(scratch) / "app.tgz"
        tarball.write_bytes(data)
        staged = Path(scratch) / "dist"
        n_files = unpack(tarball, staged)
        if not (staged / "index.html").is_file():
            raise BundleError("the OHIF package has no dist/index.html: not a viewer build")
        staged.rename(target)
    logger.info("OHIF %s (%s licence): %d files in %s", pin.version, pin.licence, n_files, target)
    return target
