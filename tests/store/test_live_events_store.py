"""The Live Events log on SQLite and PostgreSQL: one row per event however often it arrives, by event time,
claimed by one coalescer at a time, gone with its connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from passback.settings import Settings
from passback.store import live_events as repo
from passback.store.connections import remove_connection, save_connection
from passback.store.db import Store
from passback.store.live_events import NewEvent
from passback.vault import load_key

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def _source(store: Store, tmp_path: Path, name: str = "lms") -> int:
    key = load_key(Settings(data_dir=tmp_path))
    return save_connection(store, key, name=name, kind="canvas", base_url=f"https://{name}.example.org",
                           credentials={"token": "t"}).id


def _event(key: str, *, at: datetime, course: str = "101") -> NewEvent:
    return NewEvent(course_id=course, event_name="grade_change", event_time=at, dedupe_key=key, assignment_id="7",
                    detail={"submission_id": "9", "user_id": "3"})


def test_an_event_is_kept_once_per_connection(store: Store, tmp_path: Path) -> None:
    lms, other = _source(store, tmp_path), _source(store, tmp_path, "other")
    first = repo.record(store, lms, _event("k1", at=T0))
    again = repo.record(store, lms, _event("k1", at=T0))
    elsewhere = repo.record(store, other, _event("k1", at=T0))
    assert not first.duplicate and again.duplicate and again.id == first.id
    assert not elsewhere.duplicate and elsewhere.id != first.id
    assert repo.count_events(store, lms) == 1 and repo.count_events(store) == 2


def test_pending_events_come_in_event_time_order_with_their_arrival(store: Store, tmp_path: Path) -> None:
    lms = _source(store, tmp_path)
    for n, offset in enumerate((5, 1, 3)):
        repo.record(store, lms, _event(f"k{n}", at=T0 + timedelta(seconds=offset)), now=T0 + timedelta(minutes=n))
    repo.record(store, lms, _event("other-course", at=T0, course="202"), now=T0)
    pending = repo.pending(store, lms, "101")
    assert [e.event_time for e in pending] == [T0 + timedelta(seconds=s) for s in (1, 3, 5)]
    assert pending[0].detail == {"submission_id": "9", "user_id": "3"} and pending[0].assignment_id == "7"
    courses = {c.course_id: c for c in repo.pending_courses(store)}
    assert (courses["101"].count, courses["101"].first_received_at, courses["101"].last_received_at) == (
        3, T0, T0 + timedelta(minutes=2))
    assert courses["202"].count == 1


def test_a_claim_is_one_holders_until_released_or_processed(store: Store, tmp_path: Path) -> None:
    lms = _source(store, tmp_path)
    for n in range(3):
        repo.record(store, lms, _event(f"k{n}", at=T0 + timedelta(seconds=n)))
    taken = repo.claim(store, lms, "101", ttl=60)
    assert [e.event_time for e in taken] == [T0 + timedelta(seconds=n) for n in range(3)]
    assert repo.claim(store, lms, "101", ttl=60) == []  # held
    assert len(repo.claim(store, lms, "101", ttl=60, now=datetime.now(UTC) + timedelta(seconds=61))) == 3  # expired
    repo.release(store, [e.id for e in taken])
    again = repo.claim(store, lms, "101", ttl=60)
    assert [e.id for e in again] == [e.id for e in taken]
    assert repo.mark_processed(store, [e.id for e in again], "run r1 succeeded") == 3
    assert repo.mark_processed(store, [e.id for e in again], "twice") == 0
    assert repo.pending(store, lms, "101") == [] and repo.pending_courses(store) == []
    done = repo.get_events(store, [e.id for e in again])
    assert {e.outcome for e in done} == {"run r1 succeeded"} and all(e.processed_at for e in done)


def test_removing_a_connection_removes_its_events(store: Store, tmp_path: Path) -> None:
    lms = _source(store, tmp_path)
    repo.record(store, lms, _event("k1", at=T0))
    remove_connection(store, "lms")
    assert repo.count_events(store) == 0 and repo.canvas_sources(store) == []
