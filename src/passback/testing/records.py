"""The contract every records destination passes, against its emulator over real HTTP.

A connector's test module subclasses :class:`RecordsDestinationContract` and provides two
fixtures:

* ``records_destination``: an opened :class:`~passback.connectors.base.RecordsDestination`
  pointed at the emulator (closed by the fixture after the test);
* ``record_case``: a dict describing one resource to write, with

  - ``"resource"``: the resource name (``"grades"``);
  - ``"body"``: the bytes of a valid record the server accepts;
  - ``"changed_body"``: the same natural key with another value;
  - ``"bad_body"``: a body the server refuses with a 4xx;
  - ``"raw"``: a callable returning the emulator's raw dict of that resource (id -> record),
    read from the emulator itself, never through the connector under test;

  and optionally

  - ``"natural_key"``: a callable from a record (dict) to its natural key, for the
    "exactly once" checks (without it a record is matched by the fields of its body);
  - ``"many_bodies"``: a list of valid bodies with distinct natural keys, used by the
    listing and streaming tests;
  - ``"page_size"``: the connector's page size; when given, the listing test checks that
    the raw state holds more records than one page.

Every assertion is on the emulator's raw state, so a connector cannot pass by agreeing
with itself. For example::

    @pytest.fixture
    async def records_destination(served): ...

    @pytest.fixture
    def record_case(served): ...

    class TestMyRecordsContract(RecordsDestinationContract):
        pass
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from passback.connectors.base import RecordAnswer, RecordsDestination


def _record(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    assert isinstance(value, dict)
    return value


def _holds(held: dict[str, Any], record: dict[str, Any]) -> bool:
    """The stored record carries every field of the body sent (the server may add its own)."""
    return all(held.get(field) == value for field, value in record.items())


def _raw(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(case["raw"]())


def _holding(case: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """Ids of the raw records with this record's natural key (or, lacking a key function, its fields)."""
    key: Callable[[dict[str, Any]], Any] | None = case.get("natural_key")
    raw = _raw(case)
    if key is not None:
        wanted = key(record)
        return [record_id for record_id, held in raw.items() if key(held) == wanted]
    return [record_id for record_id, held in raw.items() if _holds(held, record)]


class RecordsDestinationContract:
    @pytest.mark.anyio
    async def test_upsert_creates_then_updates_by_natural_key(self, records_destination: RecordsDestination,
                                                               record_case: dict[str, Any]) -> None:
        resource = record_case["resource"]
        before = _raw(record_case)
        created = await records_destination.upsert(resource, record_case["body"])
        assert isinstance(created, RecordAnswer)
        assert created.status == 201 and created.ok, created.detail
        assert created.record_id
        raw = _raw(record_case)
        assert set(raw) - set(before) == {created.record_id}
        assert _holds(raw[created.record_id], _record(record_case["body"]))
        assert _holding(record_case, _record(record_case["body"])) == [created.record_id]

        updated = await records_destination.upsert(resource, record_case["changed_body"])
        assert updated.status in (200, 201) and updated.ok, updated.detail
        if updated.record_id is not None:
            assert updated.record_id == created.record_id
        raw = _raw(record_case)
        assert len(raw) == len(before) + 1  # no second record
        changed = _record(record_case["changed_body"])
        assert _holds(raw[created.record_id], changed)  # the value changed in place
        assert not _holds(raw[created.record_id], _record(record_case["body"]))
        assert _holding(record_case, changed) == [created.record_id]

    @pytest.mark.anyio
    async def test_delete_removes_and_a_second_delete_is_404(self, records_destination: RecordsDestination,
                                                            record_case: dict[str, Any]) -> None:
        resource = record_case["resource"]
        created = await records_destination.upsert(resource, record_case["body"])
        assert created.ok and created.record_id, created.detail
        assert created.record_id in _raw(record_case)
        gone = await records_destination.delete(resource, created.record_id)
        assert gone.ok, gone.detail
        assert created.record_id not in _raw(record_case)
        assert _holding(record_case, _record(record_case["body"])) == []
        again = await records_destination.delete(resource, created.record_id)  # an answer, not an exception
        assert isinstance(again, RecordAnswer)
        assert again.status == 404 and not again.ok
        assert created.record_id not in _raw(record_case)

    @pytest.mark.anyio
    async def test_list_records_returns_every_record(self, records_destination: RecordsDestination,
                                                     record_case: dict[str, Any]) -> None:
        resource = record_case["resource"]
        bodies = list(record_case.get("many_bodies") or [record_case["body"]])
        answers = await asyncio.gather(*(records_destination.upsert(resource, body) for body in bodies))
        assert all(a.ok for a in answers), [a.detail for a in answers if not a.ok][:3]
        raw = _raw(record_case)
        if record_case.get("page_size"):
            assert len(raw) > int(record_case["page_size"]), "the case should hold more than one page"
        listed = await records_destination.list_records(resource)
        ids = [row["id"] for row in listed]
        assert len(ids) == len(set(ids))  # no record twice (pages do not overlap)
        assert set(ids) == set(raw)
        for row in listed:  # each listed record is the one the server holds
            held = raw[row["id"]]
            assert {k: v for k, v in row.items() if k != "id"} == held or _holds(row, held)

    @pytest.mark.anyio
    async def test_a_refused_body_is_an_answer_with_the_reason(self, records_destination: RecordsDestination,
                                                               record_case: dict[str, Any]) -> None:
        before = _raw(record_case)
        answer = await records_destination.upsert(record_case["resource"], record_case["bad_body"])
        assert isinstance(answer, RecordAnswer)
        assert 400 <= answer.status < 500 and not answer.ok
        assert answer.detail.strip()
        assert answer.detail != f"HTTP {answer.status}"  # the server's own explanation is carried
        assert _raw(record_case).keys() == before.keys()

    @pytest.mark.anyio
    async def test_stream_upserts_answers_every_tag_once(self, records_destination: RecordsDestination,
                                                         record_case: dict[str, Any]) -> None:
        if not records_destination.capabilities.streams:
            pytest.skip("this destination does not stream")
        resource = record_case["resource"]
        bodies = list(record_case.get("many_bodies") or [record_case["body"]])
        before = _raw(record_case)
        answers: list[Any] = []
        lock = threading.Lock()

        def on_answer(answer: Any) -> None:
            with lock:
                answers.append(answer)

        tagged = [(tag, body) for tag, body in enumerate(bodies, start=1000)]
        await records_destination.stream_upserts(resource, iter(tagged), on_answer)
        tags = Counter(answer.tag for answer in answers)
        assert tags == Counter(tag for tag, _ in tagged)  # every tag, exactly once
        assert all(200 <= answer.status < 300 for answer in answers), \
            [(a.tag, a.status) for a in answers if not 200 <= a.status < 300][:3]
        raw = _raw(record_case)
        assert len(raw) == len(before) + len(bodies)
        key: Callable[[dict[str, Any]], Any] | None = record_case.get("natural_key")
        if key is not None:
            held = Counter(key(record) for record in raw.values())
            assert all(held[key(_record(body))] == 1 for body in bodies)
        else:
            for body in bodies:
                assert len(_holding(record_case, _record(body))) == 1
