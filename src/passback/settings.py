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
    reconcile_days: float = 7.0  # each course's scores are read whole at least this often (weekly reconciliation)
    broker_url: str = "redis://127.0.0.1:6379/0"  # the task engine's broker (Redis; amqp://guest@127.0.0.1// for RabbitMQ)
    requeue_seconds: float = 60.0  # how often the beat hands the workers again the runs queued too long
    task_visibility_seconds: float = 300.0  # Redis: an unacknowledged task (its worker died) is delivered again after this
    lease_seconds: float = 60.0  # a run renews its lease every third of this; a dead run's expires after it
    # Canvas Live Events (POST /events/canvas): the publisher's keys, and how a burst of changes becomes one sync.
    live_events_jwks_url: str | None = None  # where the signing keys of Live Events are published (a connection may override)
    live_events_allow_unsigned: bool = False  # accept plain JSON events (no signature): only on a trusted network
    live_events_quiet_seconds: float = 2.0  # a course syncs once no event came for this long...
    live_events_max_wait_seconds: float = 10.0  # ...or this long after its first pending event, whichever is first
    live_events_jwks_refetch_seconds: float = 10.0  # an unknown key id refetches the keys at most this often
    # Limits per destination (a connection's kind and URL) shared by every worker process, kept in Redis.
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0; unset: each process keeps its own cap (concurrency)
    destination_concurrency: int | None = None  # in flight per destination, all workers together (default: concurrency)
    destination_rate: float | None = None  # requests started per second per destination, all workers together (unset: none)

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
