"""Typed settings of the service (environment prefix ``NODULE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AppSettings(BaseSettings):
    """Service settings; ``create_app`` takes an instance, tests pass their own."""

    model_config = SettingsConfigDict(env_prefix="NODULE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"
