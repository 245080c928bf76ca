"""Typed settings of the batch job (environment prefix ``NODULE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.synth.lidc_table import TABLE_NAME
from model.dicomweb import PacsConfig


def _default_shared_data() -> Path:
    # The project's checkout sits beside shared/ on dev machines and in CI.
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


class IndexerSettings(BaseSettings):
    """Where the batch job finds shared reference data; override with ``NODULE_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="NODULE_", extra="ignore")

    shared_data: Path = _default_shared_data()
    lidc_table: Path | None = None
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

    def resolved_lidc_table(self) -> Path:
        """The LIDC characteristics table the synthetic generator draws reads from."""
        return self.lidc_table or self.shared_data / "lidc_maxslice" / TABLE_NAME
