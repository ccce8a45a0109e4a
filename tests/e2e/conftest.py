"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from passback.settings import Settings, get_settings
from passback.store import open_store
from passback.store.db import Store


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, Settings]]:
    """A data directory of the test's own, with its store, as the CLI in this process sees them."""
    monkeypatch.setenv("PASSBACK_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    settings = get_settings()
    store = open_store(settings)
    yield store, settings
    store.dispose()
    get_settings.cache_clear()
