"""Several processes on one store, on SQLite and on PostgreSQL: every queued run is claimed
by exactly one of them, every lease has one holder at a time, and no write is lost to a
busy database."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

import sqlalchemy as sa

from passback.store.db import Store, make_engine
from passback.store.history import claim_run, submit_run
from passback.store.identity import IdentityRow, Pairing, load_identities, upsert_identities
from passback.store.leases import Held, Taken, release, take
from passback.store.tables import runs
from tests.store.test_store import pairing_in

RUNS = 40
WORKERS = 4


def _worker(url: str, run_ids: list[str], pairing: tuple[int, int], worker: int, out: multiprocessing.Queue) -> None:
    engine = make_engine(url)
    store = Store(engine)
    claimed = [run_id for run_id in run_ids if claim_run(store, run_id)]
    rows = [IdentityRow("score", f"c:{worker}:{i}", f"d{i}", None, {"points": i}) for i in range(50)]
    for start in range(0, len(rows), 5):  # many short transactions, side by side with the other processes
        with store.transaction() as db:
            upsert_identities(db, store, Pairing(*pairing), rows[start:start + 5])
    held: list[tuple[float, float]] = []
    for _ in range(20):
        answer = take(store, "course:test", actor=f"worker {worker}", run_id=None, ttl=30)
        if isinstance(answer, Taken):
            began = time.monotonic()  # one clock for every process of this machine
            time.sleep(0.01)
            held.append((began, time.monotonic()))
            release(store, answer.lease)
        else:
            assert isinstance(answer, Held)
    out.put((worker, claimed, held))
    engine.dispose()


def test_processes_claim_each_run_once_and_lose_no_write(store: Store) -> None:
    pairing = pairing_in(store)
    run_ids = [submit_run(store, pairing, pipeline="gradebook", request={}, trigger="t", scope={}, actor="test")
               for _ in range(RUNS)]
    url = store.engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_worker, args=(url, run_ids, (pairing.source_connection_id,
                                                                    pairing.destination_connection_id), w, out))
               for w in range(WORKERS)]
    for process in workers:
        process.start()
    results = [out.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    claims = Counter(run_id for _, claimed, _ in results for run_id in claimed)
    assert set(claims) == set(run_ids) and set(claims.values()) == {1}  # each run claimed by exactly one process
    with store.engine.connect() as db:
        statuses = Counter(row.status for row in db.execute(sa.select(runs.c.status)))
    assert statuses == Counter({"running": RUNS})
    rows = load_identities(store, pairing, ("score",))
    assert len(rows) == WORKERS * 50  # no write lost to a busy database
    spans = sorted(span for _, _, held in results for span in held)
    assert spans and all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))  # one holder

