"""Typed settings of the batch job (environment prefix ``NODULE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.synth.lidc_table import TABLE_NAME


def _default_shared_data() -> Path:
    # The project's checkout sits beside shared/ on dev machines and in CI.
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


class IndexerSettings(BaseSettings):
    """Where the batch job finds shared reference data; override with ``NODULE_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="NODULE_", extra="ignore")

    shared_data: Path = _default_shared_data()
    lidc_table: Path | None = None

    def resolved_lidc_table(self) -> Path:
        """The LIDC characteristics table the synthetic generator draws reads from."""
        return self.lidc_table or self.shared_data / "lidc_maxslice" / TABLE_NAME
