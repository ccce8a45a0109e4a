"""A source's incremental cursor, declared once beside the listing it narrows (as dlt's ``incremental``).

A declaration says which fields of the rows read order them (``cursor_paths``), which
query parameters ask the API for rows past a value (``query_params``, one request each:
Canvas ANDs ``graded_since`` and ``submitted_since``, so asking for both in one request
would miss a grade on an old submission), how far back to look again (``lag``: a row
committed a moment after a later one was read still falls inside the window), and how
the next value is made from the rows (the largest value seen, as dlt's ``last_value_func=max``).

Nothing here does I/O: the connector reads, the pipeline keeps the value in the store
(:mod:`passback.store.cursors`) and decides when a full read must be made instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 instant as an aware datetime (UTC when the text has no zone); None when absent or garbled."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_instant(moment: datetime) -> str:
    """The form Canvas takes and gives: UTC, seconds, a ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Incremental:
    """Which rows a re-read asks for, and how the cursor moves after it."""

    name: str
    cursor_paths: tuple[str, ...]
    query_params: tuple[str, ...]
    lag: timedelta = timedelta(minutes=5)

    def since(self, last_value: datetime) -> str:
        """The value sent in each query parameter: the cursor, less the lag."""
        return format_instant(last_value - self.lag)

    def requests(self, last_value: datetime) -> list[tuple[str, str]]:
        """One (parameter, value) per request the re-read makes."""
        since = self.since(last_value)
        return [(param, since) for param in self.query_params]

    def last_value(self, rows: Iterable[Mapping[str, Any]], previous: datetime | None = None) -> datetime | None:
        """The largest cursor value among the rows (or the previous one, when none is larger)."""
        best = previous
        for row in rows:
            for path in self.cursor_paths:
                moment = parse_instant(row.get(path))
                if moment is not None and (best is None or moment > best):
                    best = moment
        return best
