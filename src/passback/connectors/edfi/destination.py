"""The Ed-Fi ODS/API as a records destination (D2): upsert by natural key, delete by id, list,
and what changed since a change version (the v7 change queries).

One-by-one writes go through :class:`~passback.connectors.edfi.client.EdFiClient`
(aiohttp, retried); a bulk send streams its POSTs through libcurl's multi interface
(:mod:`.curl_sender`) on one worker thread, and hands every answer, refusals and
transient failures alike, to the caller, which records or retries them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from passback.connectors.base import RecordAnswer, RecordsDestination
from passback.connectors.edfi.client import EdFiClient
from passback.connectors.edfi.curl_sender import CurlSender, Posted
from passback.model.values import IdAssignment, RecordCapabilities


@dataclass(frozen=True)
class TrackedChanges:
    """What happened to a resource's records after a change version: key changes, new or
    changed records, deletes (to be applied in that order, as the ODS/API guide advises)."""

    key_changes: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    deletes: list[dict[str, Any]]

    def __bool__(self) -> bool:
        return bool(self.key_changes or self.rows or self.deletes)


class EdFiDestination(RecordsDestination):
    kind = "edfi"
    capabilities = RecordCapabilities(upsert_by_natural_key=True, ids=IdAssignment.SERVER_ASSIGNED, streams=True)

    def __init__(self, client: EdFiClient) -> None:
        self.client = client

    @property
    def concurrency(self) -> int:
        return self.client.concurrency

    async def upsert(self, resource: str, body: bytes) -> RecordAnswer:
        return await self.client.upsert(resource, body)

    async def delete(self, resource: str, record_id: str) -> RecordAnswer:
        return await self.client.delete(resource, record_id)

    async def list_records(self, resource: str) -> list[dict[str, Any]]:
        return await self.client.get_all(resource)

    async def newest_change_version(self) -> int | None:
        """The ODS's newest change version; None where change queries are not offered."""
        return await self.client.newest_change_version()

    async def changes_since(self, resource: str, version: int) -> TrackedChanges:
        """Everything that changed in ``resource`` after ``version`` (no upper bound: a change
        made while reading is seen now and again next time, which applying by id makes harmless)."""
        window = {"minChangeVersion": version + 1}
        key_changes, rows, deletes = await asyncio.gather(
            self.client.get_all(f"{resource}/keyChanges", window), self.client.get_all(resource, window),
            self.client.get_all(f"{resource}/deletes", window))
        return TrackedChanges(key_changes, rows, deletes)

    async def stream_upserts(self, resource: str, bodies: Iterable[tuple[int, bytes]],
                             on_answer: Callable[[Posted], None]) -> None:
        """POST every (tag, body) over ``concurrency`` keep-alive connections; each answer to ``on_answer``.

        ``on_answer`` runs on the sender's thread, which alone touches the caller's state
        meanwhile. An expired token shows as 401 answers; the token is renewed after the
        stream, for the caller's retries.
        """
        url = await self.client.post_url(resource)
        token = self.client.token or await self.client.authenticate()
        sender = CurlSender(self.client.concurrency, self.client.timeout_seconds)
        refused_token = False

        def answered(answer: Posted) -> None:
            nonlocal refused_token
            refused_token |= answer.status == 401
            on_answer(answer)

        try:
            await asyncio.to_thread(sender.stream, url, [f"Authorization: Bearer {token}"], iter(bodies), answered)
        finally:
            self.client.count_many(sender.requests)
        if refused_token:
            await self.client.authenticate(stale=token)

    async def aclose(self) -> None:
        await self.client.aclose()
