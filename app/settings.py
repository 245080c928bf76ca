"""Typed settings of the service (environment prefix ``NODULE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from model.settings import SharedSettings
from model.threads import ThreadPolicy


class AppSettings(SharedSettings):
    """Service settings; ``create_app`` takes an instance, tests pass their own.

    Attributes:
        index_dir: the catalogue (``INDEX_DIR`` with ``CURRENT``).
        model_dir: the model; default: the one the current catalogue version was built with.
        data_dir: a root of stored CTs for series the catalogue does not hold: ``.mhd``/``.mha``/
            NIfTI files named ``<uid>``, LUNA16 ``subset*/<uid>.mhd``, or DICOM series in any
            folder layout (found by their SeriesInstanceUID headers).
        dicom_rescan_s: a miss rebuilds the DICOM header lookup at most this often.
        open_volumes: opened stored CTs kept for repeated queries.
        dicomweb_url (and the other PACS settings of ``SharedSettings``): coordinate queries
            with a ``study_uid`` (and series found nowhere else) are read from this PACS.
        log_hash_key: key of the hash that stands for series/study UIDs in logs (default: a
            key made per process, so hashes match only within one run).
        torch_threads / faiss_threads: CPU threads per request (one query is faster on one
            thread than on two: OpenMP start-up dominates).
    """

    index_dir: Path = Path("index/demo")
    model_dir: Path | None = None
    data_dir: Path | None = None
    dicom_rescan_s: float = Field(default=60.0, ge=0)
    open_volumes: int = Field(default=16, ge=0, le=1024)
    max_upload_mb: int = Field(default=200, ge=1, le=4096)
    max_body_kb: int = Field(default=256, ge=1, le=1024 * 1024)
    """Body limit of every route but the upload (JSON bodies are a few hundred bytes)."""
    parser_memory_mb: int = Field(default=3072, ge=1024, le=1024 * 1024)
    """Address-space limit of one upload parser process; files whose declared voxels need more
    (less the parser's own 768 MB) are refused from their headers."""
    parser_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_parsers: int = Field(default=2, ge=1, le=64)
    """Upload parsers running at once (each may take ``parser_memory_mb``)."""
    parser_wait_s: float = Field(default=2.0, ge=0, le=60)
    max_reports: int = Field(default=2, ge=1, le=64)
    """Report (SR, SEG) and size-estimate computations at once; more wait, then get 503."""
    report_wait_s: float = Field(default=2.0, ge=0, le=60)
    """How long an upload waits for a free parser before a 503."""
    api_key: SecretStr | None = None
    access_token: SecretStr | None = None
    """When set, every /v1 route but admin needs ``Authorization: Bearer <token>``."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Web origins (``https://viewer.example``) whose pages may call the API; comma-separated."""
    auth_failures_per_minute: int = Field(default=10, ge=1, le=10_000)
    """Failed token/admin-key attempts a client may make per minute before 429s."""
    log_hash_key: SecretStr | None = None
    max_k: int = Field(default=50, ge=1, le=1000)
    torch_threads: int = Field(default=1, ge=1, le=256)
    faiss_threads: int = Field(default=1, ge=1, le=256)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"]
    )
    """Host header values answered (comma-separated; ``*.example.org`` patterns); any other
    gets 400 before anything else runs. Stops DNS rebinding reading an open service."""
    allow_open: bool = False
    """Serve without an access token on an address beyond loopback (refused otherwise)."""
    ohif_url: str | None = None
    """An OHIF Viewer over the same PACS (``http://localhost:3000``, docs/ohif.md): the viewer
    links a PACS series' point to it (``GET /v1/scans/{series_uid}/ohif``)."""

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip().rstrip("/") for v in value.split(",") if v.strip()]
        return value

    @field_validator("ohif_url")
    @classmethod
    def _url_or_none(cls, value: str | None) -> str | None:
        return value.strip().rstrip("/") or None if value is not None else None

    @field_validator("api_key", "access_token", "log_hash_key")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # compose passes NODULE_API_KEY="" when unset: that must disable admin, not open it.
        return value if value is not None and value.get_secret_value().strip() else None

    def threads(self) -> ThreadPolicy:
        """The CPU threads of one request's network pass and search."""
        return ThreadPolicy(torch_threads=self.torch_threads, faiss_threads=self.faiss_threads)
