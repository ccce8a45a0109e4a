"""Process-wide settings, read from ``PASSBACK_*`` environment variables.

Kept in one place so the CLI, the workers and the tests agree on where the data
directory and the store live without passing paths around.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSBACK_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("passback")))
    database_url: str | None = None
    secret_key: str | None = None
    concurrency: int = 8
    course_concurrency: int = 3
    http_timeout: float = 30.0
    district_title_limit: int = 30
    block_closed_terms: bool = True
    session_secret: str | None = None  # signs the web's session cookies; derived from the credentials key if unset
    public_url: str | None = None  # where people and the LMS reach `passback serve`, e.g. https://passback.district.org
    scheduler_seconds: float = 30.0  # how often the embedded scheduler looks for due nightly syncs
    lease_seconds: float = 60.0  # a run renews its lease every third of this; a dead run's expires after it

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'passback.db'}"

    def ensure_data_dir(self) -> Path:
        """The data directory, owner-only: it holds the key file and the SQLite store."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.data_dir.stat().st_mode & 0o077:
            self.data_dir.chmod(0o700)
        return self.data_dir


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
