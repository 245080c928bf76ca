"""Typed settings of the OHIF server (``NODULE_OHIF_*``, and the PACS's ``NODULE_DICOMWEB_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from app.ohif.bundle import OHIF
from model.settings import SharedSettings

DEFAULT_DIST = Path("build/ohif") / OHIF.version


class OhifSettings(SharedSettings):
    """Where the viewer, the API and the PACS are; ``create_ohif_app`` takes an instance.

    Attributes:
        ohif_dist: the unpacked bundle (``nodule-ohif fetch``).
        ohif_api_url: the nodule-search API the panel's ``/v1`` calls are forwarded to.
        dicomweb_url (and the PACS credentials of ``SharedSettings``): the PACS whose DICOMweb
            reads (QIDO-RS, WADO-RS) OHIF gets at ``/dicom-web``; the credentials stay here.
        ohif_timeout_s: per forwarded request: connecting, and each wait for the next bytes.
        ohif_max_body_mb: the largest request body forwarded to the API (its upload limit).
        ohif_connections: connections to each upstream at once; more requests wait.
        ohif_allowed_hosts: Host header values answered (DNS rebinding), comma-separated.
    """

    ohif_dist: Path = DEFAULT_DIST
    ohif_api_url: str = "http://127.0.0.1:8000"
    ohif_host: str = "127.0.0.1"
    ohif_port: int = Field(default=3000, ge=1, le=65535)
    ohif_timeout_s: float = Field(default=30.0, gt=0, le=600)
    ohif_max_body_mb: int = Field(default=200, ge=1, le=4096)
    ohif_connections: int = Field(default=16, ge=1, le=1024)
    ohif_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"]
    )
    log_level: str = "info"

    @field_validator("ohif_allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("ohif_api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
