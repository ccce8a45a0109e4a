"""One source, several destinations in one run (B3): each written under its own limits, one history for all.

Two PowerSchool SIS instances (two emulators with the same roster) stand for two systems
of record. What each received is read from its own write log and state; the history is
read through `passback runs show`, as a person would.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.sandbox.district import generate
from passback.store.connections import save_connection
from passback.store.db import open_store
from passback.settings import Settings
from passback.vault import load_key
from tests.conftest import SMALL, District, ServedApp
from tests.e2e.test_cli import passback


@pytest.fixture
def two_sis(district: District, tmp_path: Path) -> Iterator[tuple[Path, ServedApp, ServedApp]]:
    _, second_state, _ = generate(SMALL)
    with ServedApp(powerschool_emulator.create_app(second_state, faults=FaultConfig(seed=5))) as second:
        settings = Settings(data_dir=tmp_path)
        store = open_store(settings)
        key, creds = load_key(settings), district.credentials
        save_connection(store, key, name="lms", kind="canvas", base_url=district.canvas.url,
                        credentials={"token": creds.canvas_token})
        for name, served in (("sis-a", district.powerschool), ("sis-b", second)):
            save_connection(store, key, name=name, kind="powerschool", base_url=served.url,
                            credentials={"client_id": creds.powerschool_client_id,
                                         "client_secret": creds.powerschool_client_secret})
        store.dispose()
        yield tmp_path, district.powerschool, second


def _score_writes(served: ServedApp) -> Counter[tuple[int, int]]:
    """Every score each SIS accepted, by (section assignment, student): from its write log."""
    seen: Counter[tuple[int, int]] = Counter()
    for write in served.writes:
        if write.path == "/ws/xte/score" and write.status == 200:
            for row in json.loads(write.body)["assignment_scores"]:
                section_assignment = (row.get("_assignmentsection") or {}).get("assignmentsectionid") \
                    or row.get("assignmentsectionid")
                seen[(int(section_assignment), int(row["studentsdcid"]))] += 1
    return seen


def test_one_run_writes_every_destination_and_shows_one_history(two_sis: tuple[Path, ServedApp, ServedApp]) -> None:
    data_dir, sis_a, sis_b = two_sis
    course = "101"
    done = passback(data_dir, "sync", "--course", course, "--source", "lms", "--destination", "sis-a",
                    "--destination", "sis-b", "--json", codes=(0, 2))
    runs = json.loads(done.stdout)["runs"]
    assert len(runs) == 1  # one run for the course, not one per destination
    parent = runs[0]
    parts = parent["stats"]["destinations"]
    assert len(parts) == 2 and all(p["counts"]["created"] > 0 for p in parts.values())
    assert parent["counts"]["created"] == sum(p["counts"]["created"] for p in parts.values())
    a, b = _score_writes(sis_a), _score_writes(sis_b)
    assert a and b and max(a.values()) == 1 and max(b.values()) == 1  # every grade once, to each
    assert len(a) == len(b) == len(sis_a.state["scores"]) == len(sis_b.state["scores"])
    def held(served: ServedApp) -> list[tuple[str, ...]]:
        return sorted(tuple(str(s[k]) for k in ("scorepoints", "islate", "isexempt", "ismissing"))
                      for s in served.state["scores"].values())

    assert held(sis_a) == held(sis_b)  # the same grades in both systems
    shown = json.loads(passback(data_dir, "runs", "show", parent["run_id"][:8], "--all", "--json").stdout)
    by_destination = Counter(item["destination"] for item in shown["items"])
    assert set(by_destination) == {"sis-a", "sis-b"} and by_destination["sis-a"] == by_destination["sis-b"]
    assert {p["destination"] for p in shown["parts"]} == {"sis-a", "sis-b"}
    text = passback(data_dir, "runs", "show", parent["run_id"][:8]).stdout
    assert "to sis-a:" in text and "to sis-b:" in text
    again = json.loads(passback(data_dir, "sync", "--course", course, "--source", "lms", "--destination", "sis-a",
                                "--destination", "sis-b", "--json", codes=(0, 2)).stdout)["runs"][0]
    assert again["counts"]["created"] == again["counts"]["updated"] == 0
    assert _score_writes(sis_a) == a and _score_writes(sis_b) == b  # nothing sent the second time


def test_a_destination_that_fails_does_not_stop_the_other(two_sis: tuple[Path, ServedApp, ServedApp]) -> None:
    data_dir, sis_a, sis_b = two_sis
    sis_b.faults.update({"fault_rate": 1.0, "fault_kinds": ["500"]})  # the second SIS answers nothing but errors
    done = passback(data_dir, "sync", "--course", "101", "--source", "lms", "--destination", "sis-a",
                    "--destination", "sis-b", "--json", codes=(1, 2))
    parent = json.loads(done.stdout)["runs"][0]
    statuses = {p["status"] for p in parent["stats"]["destinations"].values()}
    assert "failed" in statuses and parent["status"] == "failed"
    assert _score_writes(sis_a) and not _score_writes(sis_b)  # the first SIS got its grades all the same
