"""The settings both programs read the same way (environment prefix ``NODULE_``).

``nodule-api`` (``app.settings.AppSettings``) and ``nodule-index``
(``indexer.settings.IndexerSettings``) extend this: the PACS it reads from and its credentials
are one set of variables with one set of defaults, whichever program reads them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.ct.pacs import PacsConfig

#: Where the network runs: ``auto`` takes a GPU when torch sees one.
Device = Literal["auto", "cpu", "cuda"]


class SharedSettings(BaseSettings):
    """Device and PACS settings; override with ``NODULE_*`` variables.

    Attributes:
        device: where the network runs (the indexer's ``--device`` overrides it).
        dicomweb_url: a PACS's DICOMweb root (``nodule-index build --dicomweb-url`` wins).
        dicomweb_user / dicomweb_password: HTTP basic credentials, or ``dicomweb_token`` for a
            bearer token; never logged, never on a command line.
        dicomweb_timeout_s: per request (connect, read), in seconds.
        dicomweb_max_attempts: tries per request; 429/503/504 answers are retried.
    """

    model_config = SettingsConfigDict(env_prefix="NODULE_", extra="ignore")

    device: Device = "auto"
    dicomweb_url: str | None = None
    dicomweb_user: str | None = None
    dicomweb_password: SecretStr | None = None
    dicomweb_token: SecretStr | None = None
    dicomweb_timeout_s: float = Field(default=10.0, gt=0, le=600)
    dicomweb_max_attempts: int = Field(default=2, ge=1, le=10)

    @field_validator("dicomweb_url", "dicomweb_user")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        # compose passes "" for unset variables: that means "none", not an empty user.
        return value.strip() or None if value is not None else None

    @field_validator("dicomweb_password", "dicomweb_token")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    def pacs_config(self, url: str | None = None) -> PacsConfig | None:
        """The PACS at ``url`` (default ``dicomweb_url``) with these credentials; None: none."""
        url = url or self.dicomweb_url
        if url is None:
            return None
        password, token = self.dicomweb_password, self.dicomweb_token
        return PacsConfig(
            url=url,
            user=self.dicomweb_user,
            password=password.get_secret_value() if password else None,
            token=token.get_secret_value() if token else None,
            timeout_s=self.dicomweb_timeout_s,
            max_attempts=self.dicomweb_max_attempts,
        )
