"""OneRoster gradebook destination (D3) against the OneRoster emulator, v1p1 and v1p2, over real HTTP.

The shared contract runs once per version. Every check of what the server holds reads the
emulator's raw state and its write log, with a mapping of OneRoster's fields written here
(never the connector's): a result's ``score``, ``scoreStatus`` "exempt", and in v1p2 its
``late`` and ``incomplete`` strings.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from passback.connectors.base import Destination
from passback.connectors.config import ConnectionConfig
from passback.connectors.http import RetryPolicy
from passback.connectors.oneroster.client import OneRosterClient, scope_for
from passback.connectors.oneroster.config import OneRosterConfig
from passback.connectors.oneroster.destination import OneRosterDestination, line_item_id, result_id
from passback.connectors.registry import DESTINATION, HttpOptions, kind_of, open_connector
from passback.emulators.faults import FaultConfig
from passback.emulators.oneroster import create_app, status_body
from passback.errors import DestinationError
from passback.model.values import ScorePayload, ScoreWrite
from passback.sandbox.district import generate
from passback.sandbox.oneroster_district import CLIENT_ID, CLIENT_SECRET, INACTIVE_CATEGORY, oneroster_from_canvas
from passback.testing.gradebook import DestinationContract, HeldAssignment, payload_for
from tests.conftest import SMALL, ServedApp

VERSIONS = ("v1p1", "v1p2")
GRADEBOOK = {"v1p1": "/ims/oneroster/v1p1", "v1p2": "/ims/oneroster/gradebook/v1p2"}
ROSTERING = {"v1p1": "/ims/oneroster/v1p1", "v1p2": "/ims/oneroster/rostering/v1p2"}
FAST = RetryPolicy(initial_wait=0.01, max_wait=0.05)


@dataclass
class OneRosterServer:
    served: ServedApp
    version: str
    canvas: dict[str, Any]

    @property
    def state(self) -> dict[str, Any]:
        return self.served.state

    def path(self, tail: str) -> str:
        return f"{GRADEBOOK[self.version]}/{tail}"

    def client(self, **options: Any) -> OneRosterClient:
        return OneRosterClient(self.served.url, CLIENT_ID, CLIENT_SECRET, version=self.version, policy=FAST, **options)


def serve(version: str, **options: Any) -> Iterator[OneRosterServer]:
    canvas, _, _ = generate(SMALL)
    with ServedApp(create_app(oneroster_from_canvas(canvas), faults=FaultConfig(seed=5), **options)) as served:
        yield OneRosterServer(served, version, canvas)


@pytest.fixture(params=VERSIONS)
def oneroster(request: pytest.FixtureRequest) -> Iterator[OneRosterServer]:
    yield from serve(request.param)


@pytest.fixture
async def destination(oneroster: OneRosterServer) -> AsyncIterator[OneRosterDestination]:
    connector = OneRosterDestination(oneroster.client())
    yield connector
    await connector.aclose()


def first_course_setup(server: OneRosterServer) -> dict[str, Any]:
    """The first course's classes, its Homework category, and a student of each class."""
    canvas, state = server.canvas, server.state
    course = min(canvas["courses"].values(), key=lambda c: c["id"])
    classes = sorted(s["sis_section_id"] for s in canvas["sections"].values() if s["course_id"] == course["id"])
    homework = next(g["sis_source_id"] for g in canvas["assignment_groups"].values()
                    if g["course_id"] == course["id"] and g["name"] == "Homework")

    def students(class_id: str) -> list[str]:
        return sorted(e["user"]["sourcedId"] for e in state["enrollments"].values()
                      if e["class"]["sourcedId"] == class_id and e["role"] == "student")

    return {
        "section_ids": classes,
        "categories": dict.fromkeys(classes, str(homework)),
        "inactive_categories": dict.fromkeys(classes, INACTIVE_CATEGORY),
        "enrolled_student": students(classes[0])[0],
        "other_student": students(classes[1])[0],
    }


@pytest.fixture
def setup(oneroster: OneRosterServer) -> dict[str, Any]:
    return first_course_setup(oneroster)


def held_result(version: str, raw: dict[str, Any]) -> ScorePayload:
    """A stored result in the contract's terms, read as OneRoster defines its fields."""
    exempt = raw["scoreStatus"] == "exempt"
    return ScorePayload(points=None if exempt else raw.get("score"), exempt=exempt,
                        late=version == "v1p2" and raw.get("late") == "true",
                        status="incomplete" if version == "v1p2" and raw.get("incomplete") == "true" else None,
                        comment=raw.get("comment") or None)


class OneRosterBackdoor:
    """Into the emulator: an assignment is the lineItems of one title and due date, one per class."""

    def __init__(self, server: OneRosterServer) -> None:
        self.server = server
        self.served = server.served

    def lose_answers(self, method: str) -> None:
        # OneRoster creates by PUT: the contract's "lose the create answers" is every PUT's.
        self.served.control("faults", {"fault_rate": 1.0, "fault_kinds": ["reset"],
                                       "only_methods": ["PUT" if method == "POST" else method]})

    def answer_again(self) -> None:
        self.served.control("faults", {"fault_rate": 0})

    def _items(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.server.state["lineItems"].items() if v["status"] == "active"}

    def _group(self, dest_id: str) -> list[dict[str, Any]]:
        first = self._items().get(dest_id)
        if first is None:
            return []
        return [i for i in self._items().values()
                if i["title"] == first["title"] and i["dueDate"][:10] == first["dueDate"][:10]]

    def delete_assignment(self, dest_id: str) -> None:
        for item in self._group(dest_id):
            self.served.app.state.emulator.delete_by_hand(item["sourcedId"], soft=self.server.version == "v1p2")

    def assignments_named(self, name: str) -> int:
        per_class = Counter(i["class"]["sourcedId"] for i in self._items().values() if i["title"] == name)
        return max(per_class.values(), default=0)

    def held_assignment(self, dest_id: str) -> HeldAssignment | None:
        group = self._group(dest_id)
        if not group:
            return None
        assert len({(i["title"], i["dueDate"][:10], i["resultValueMax"]) for i in group}) == 1
        return HeldAssignment(
            name=group[0]["title"], due_date=group[0]["dueDate"][:10], points_possible=group[0]["resultValueMax"],
            section_assignment_ids={i["class"]["sourcedId"]: i["sourcedId"] for i in group},
            category_ids={i["class"]["sourcedId"]: i["category"]["sourcedId"] for i in group},
        )

    def held_scores(self) -> dict[tuple[str, str], ScorePayload]:
        items = self._items()
        return {(r["lineItem"]["sourcedId"], r["student"]["sourcedId"]): held_result(self.server.version, r)
                for r in self.server.state["results"].values()
                if r["status"] == "active" and r["lineItem"]["sourcedId"] in items}

    def accepted_creates(self, name: str) -> int:
        """Creates are PUTs answered 201; an assignment is created once when no class got two."""
        per_class: Counter[str] = Counter()
        for write in self.served.writes:
            if write.method == "PUT" and "/lineItems/" in write.path and write.status == 201:
                item = json.loads(write.body)["lineItem"]
                if item["title"] == name:
                    per_class[item["class"]["sourcedId"]] += 1
        return max(per_class.values(), default=0)

    def accepted_score_writes(self, section_assignment_id: str, student_id: str) -> int:
        """Accepted PUTs of the result, and accepted DELETEs of its path (a cleared score)."""
        result_paths: dict[str, tuple[str, str]] = {}
        count = 0
        for write in self.served.writes:
            if "/results/" not in write.path:
                continue
            if write.method == "PUT":
                result = json.loads(write.body)["result"]
                result_paths[write.path] = (result["lineItem"]["sourcedId"], result["student"]["sourcedId"])
            if result_paths.get(write.path) == (section_assignment_id, student_id):
                count += 1
        return count


@pytest.fixture
def backdoor(oneroster: OneRosterServer) -> OneRosterBackdoor:
    return OneRosterBackdoor(oneroster)


class TestOneRosterContract(DestinationContract):
    @pytest.mark.anyio
    async def test_only_v1p2_holds_the_late_flag(self, destination: Destination, backdoor: OneRosterBackdoor) -> None:
        """OneRoster 1.1's scoreStatus vocabulary is closed: it has nowhere to put "late"; 1.2's results do."""
        assert ("late" in destination.capabilities.score_fields) == (backdoor.server.version == "v1p2")


# --- the client: paging, throttling, lost answers --------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("total_count", "links", "requests"), [
    (True, True, 3), (True, False, 3), (False, True, 3), (False, False, 4)])
async def test_paging_reads_every_page_with_or_without_count_and_links(total_count: bool, links: bool,
                                                                       requests: int) -> None:
    """Six students in pages of two: Link or X-Total-Count end the read at the third page;
    with neither, a short (here: empty) page does."""
    for server in serve("v1p2", total_count=total_count, links=links):
        class_id = first_course_setup(server)["section_ids"][0]
        client = server.client(page_size=2)
        try:
            rows = await client.pages(f"{ROSTERING['v1p2']}/classes/{class_id}/students", "users")
        finally:
            await client.aclose()
        expected = sorted(e["user"]["sourcedId"] for e in server.state["enrollments"].values()
                          if e["class"]["sourcedId"] == class_id and e["role"] == "student")
        assert sorted(r["sourcedId"] for r in rows) == expected and len(expected) == 6
        asked = server.served.control("stats")["requests"]
        assert asked[f"GET {ROSTERING['v1p2']}/classes/{{id}}/students"] == requests


@pytest.mark.anyio
async def test_paging_stops_on_a_short_page_without_count(oneroster: OneRosterServer) -> None:
    for server in serve(oneroster.version, total_count=False, links=False):
        client = server.client(page_size=5)
        role = "role" if server.version == "v1p1" else "roles.role"  # 1.2 gives a user roles, not a role
        try:
            rows = await client.pages(f"{ROSTERING[server.version]}/users", "users",
                                      {"filter": f"{role}='student' AND status='active'"})
        finally:
            await client.aclose()
        students = sorted(u for u, row in server.state["users"].items() if row["role"] == "student")
        assert sorted(r["sourcedId"] for r in rows) == students and len(students) % 5 != 0
        asked = server.served.control("stats")["requests"][f"GET {ROSTERING[server.version]}/users"]
        assert asked == -(-len(students) // 5)  # the last page is short: no request after it


@pytest.mark.anyio
async def test_a_429_then_success_is_one_write(oneroster: OneRosterServer, destination: OneRosterDestination,
                                               setup: dict[str, Any], backdoor: OneRosterBackdoor) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    created = await destination.create_assignment(ctx, payload_for(setup, "Quiz 7"))
    section, student = setup["section_ids"][0], setup["enrolled_student"]
    asid = created.section_assignment_ids[section]
    path = oneroster.path(f"results/{result_id(asid, student)}")
    oneroster.served.control("faults", {"scripted": [
        {"path": path, "status": 429, "headers": {"retry-after": "0"}, "body": status_body("server_busy", "slow down")}]})
    assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, ScorePayload(points=7.0))]) == []
    assert oneroster.served.faults.injected["scripted"] == 1
    assert [(w.method, w.status) for w in oneroster.served.writes if w.path == path] == [("PUT", 201)]
    assert backdoor.held_scores() == {(asid, student): ScorePayload(points=7.0)}


@pytest.mark.anyio
async def test_a_throttled_server_is_waited_for(oneroster: OneRosterServer, destination: OneRosterDestination,
                                               setup: dict[str, Any]) -> None:
    """Over the server's rate, requests are answered 429 with Retry-After; the reads wait and complete."""
    oneroster.served.control("faults", {"rate_limit": 4})
    ctx = await destination.load_context(setup["section_ids"])
    stats = oneroster.served.control("stats")
    assert stats["throttled"] > 0 and stats["rate_limit"] == 4
    assert sorted(ctx.sections) == setup["section_ids"] and all(s.student_ids for s in ctx.sections.values())


@pytest.mark.anyio
async def test_a_lost_put_answer_is_retried_as_the_same_put(oneroster: OneRosterServer,
                                                            destination: OneRosterDestination,
                                                            setup: dict[str, Any], backdoor: OneRosterBackdoor) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    payload = payload_for(setup, "Quiz 8")
    first_class = setup["section_ids"][0]
    item = line_item_id(first_class, "Quiz 8", "2026-09-15")
    item_path = oneroster.path(f"lineItems/{item}")
    oneroster.served.control("faults", {"scripted": [{"path": item_path, "reset": True, "methods": ["PUT"]}]})
    created = await destination.create_assignment(ctx, payload)
    assert created.section_assignment_ids[first_class] == item
    puts = [w for w in oneroster.served.writes if w.path == item_path]
    assert [(w.method, w.status) for w in puts] == [("PUT", 201), ("PUT", 200)]  # made once, then the same PUT
    assert {json.loads(w.body)["lineItem"]["sourcedId"] for w in puts} == {item} and puts[0].body == puts[1].body
    assert sorted(k for k, v in oneroster.state["lineItems"].items() if v["title"] == "Quiz 8") == sorted(
        created.section_assignment_ids.values())
    assert backdoor.accepted_creates("Quiz 8") == 1

    student = setup["enrolled_student"]
    result_path = oneroster.path(f"results/{result_id(item, student)}")
    oneroster.served.control("faults", {"scripted": [{"path": result_path, "reset": True}]})
    assert await destination.write_scores(ctx, first_class, item, [ScoreWrite(student, ScorePayload(points=9.0))]) == []
    puts = [w for w in oneroster.served.writes if w.path == result_path]
    assert [w.status for w in puts] == [201, 200] and puts[0].body == puts[1].body
    held = [r for r in oneroster.state["results"].values() if r["lineItem"]["sourcedId"] == item]
    assert [r["sourcedId"] for r in held] == [result_id(item, student)]  # one resource, the id passback chose


@pytest.mark.anyio
async def test_a_renamed_line_item_is_never_taken_by_a_new_assignment_of_its_old_name(
        destination: OneRosterDestination, setup: dict[str, Any], backdoor: OneRosterBackdoor) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    old = await destination.create_assignment(ctx, payload_for(setup, "Essay"))
    await destination.update_assignment(ctx, old, payload_for(setup, "Essay (final)"))
    again = await destination.load_context(setup["section_ids"])  # the next run: the rename is held
    new = await destination.create_assignment(again, payload_for(setup, "Essay"))
    assert set(new.section_assignment_ids.values()).isdisjoint(old.section_assignment_ids.values())
    assert backdoor.held_assignment(old.dest_id).name == "Essay (final)"  # type: ignore[union-attr]
    assert backdoor.held_assignment(new.dest_id).name == "Essay"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_pending_create_of_an_earlier_run_is_the_same_put(destination: OneRosterDestination,
                                                                  setup: dict[str, Any],
                                                                  backdoor: OneRosterBackdoor) -> None:
    """A create whose run died after sending it: the next run's create lands on the same lineItems."""
    ctx = await destination.load_context(setup["section_ids"])
    first = await destination.create_assignment(ctx, payload_for(setup, "Lab 12"))
    later = await destination.load_context(setup["section_ids"])
    assert await destination.create_assignment(later, payload_for(setup, "Lab 12")) == first
    assert backdoor.accepted_creates("Lab 12") == 1 and backdoor.assignments_named("Lab 12") == 1


@pytest.mark.anyio
async def test_context_reads_v1p2_flags_and_categories(oneroster: OneRosterServer, destination: OneRosterDestination,
                                                       setup: dict[str, Any]) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    created = await destination.create_assignment(ctx, payload_for(setup, "Lab 13"))
    section, student = setup["section_ids"][0], setup["enrolled_student"]
    asid = created.section_assignment_ids[section]
    written = ScorePayload(points=0.0, late=True, status="incomplete", comment="see me")
    assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, written)]) == []
    raw = next(iter(oneroster.state["results"].values()))
    again = await destination.load_context(setup["section_ids"])
    assert again.scores[(asid, student)] == written.held_by(destination.capabilities.score_fields)
    assert again.assignments[created.dest_id].section_assignment_ids == created.section_assignment_ids
    if oneroster.version == "v1p2":
        assert (raw["late"], raw["incomplete"], raw["missing"], raw["scoreStatus"]) == ("true", "true", "false",
                                                                                          "fully graded")
        assert raw["class"]["sourcedId"] == section
    else:
        assert "late" not in raw and raw["scoreStatus"] == "fully graded" and raw["score"] == 0.0
    item = oneroster.state["lineItems"][asid]
    assert item["gradingPeriod"]["sourcedId"] == "AS-S1-Q1"  # 2026-09-15 is in the first quarter
    assert ("school" in item) == (oneroster.version == "v1p2")
    inactive = {c.dest_id: c.active for c in ctx.categories[section]}[INACTIVE_CATEGORY]
    assert inactive is False


# --- auth and the registry ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_bad_credentials_and_missing_scopes_name_the_fix(oneroster: OneRosterServer,
                                                              setup: dict[str, Any]) -> None:
    client = OneRosterClient(oneroster.served.url, "nobody", "wrong", version=oneroster.version, policy=FAST)
    try:
        with pytest.raises(DestinationError) as refused:
            await OneRosterDestination(client).load_context(setup["section_ids"])
    finally:
        await client.aclose()
    assert refused.value.code == "destination-auth" and "client id and secret" in refused.value.detail

    token = httpx.post(f"{oneroster.served.url}/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET),
                       data={"grant_type": "client_credentials",
                             "scope": scope_for(oneroster.version).split()[1]}).json()  # gradebook.readonly only
    assert token["token_type"] == "bearer" and "gradebook.readonly" in token["scope"]
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    put = httpx.put(f"{oneroster.served.url}{oneroster.path('categories/X')}", headers=headers,
                    json={"category": {"sourcedId": "X", "status": "active", "title": "X"}})
    assert put.status_code == 403 and put.json()["imsx_codeMajor"] == "failure"
    unscoped = httpx.post(f"{oneroster.served.url}/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET),
                          data={"grant_type": "client_credentials"})
    assert unscoped.status_code == 400 and unscoped.json()["error"] == "invalid_scope"
    anonymous = httpx.get(f"{oneroster.served.url}{oneroster.path('lineItems')}")
    body = anonymous.json()
    assert anonymous.status_code == 401 and (body["imsx_codeMajor"], body["imsx_severity"]) == ("failure", "error")
    assert body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"] == "unauthorisedrequest"


@pytest.mark.anyio
async def test_the_registry_opens_and_probes_a_oneroster_connection(oneroster: OneRosterServer) -> None:
    kind = kind_of("oneroster")
    config: ConnectionConfig = kind.config.parse(oneroster.served.url, {
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "version": oneroster.version})
    assert isinstance(config, OneRosterConfig) and config.token_endpoint() == f"{oneroster.served.url}/oauth/token"
    said = await kind.probe(config, HttpOptions())
    assert oneroster.version in said
    opened = open_connector(DESTINATION, config, HttpOptions(), "sis")
    try:
        assert isinstance(opened, OneRosterDestination) and opened.version == oneroster.version
    finally:
        await opened.aclose()
    with pytest.raises(Exception, match="version"):
        kind.config.parse(oneroster.served.url, {"client_id": "a", "client_secret": "b", "version": "v2"})


def test_a_v1p1_put_drops_what_only_v1p2_holds(oneroster: OneRosterServer) -> None:
    """One state, two bindings: a result written through v1p2 and replaced through v1p1 keeps 1.1's fields only."""
    emu = oneroster.served.app.state.emulator
    setup = first_course_setup(oneroster)
    class_id, student = setup["section_ids"][0], setup["enrolled_student"]
    item = {"lineItem": {"title": "T", "assignDate": "2026-09-01T12:00:00Z", "dueDate": "2026-09-01T12:00:00Z",
                         "class": {"sourcedId": class_id}, "category": {"sourcedId": setup["categories"][class_id]},
                         "gradingPeriod": {"sourcedId": "AS-S1-Q1"}, "school": {"sourcedId": "ORG-SCHOOL-100"}}}
    assert emu.put_line_item("v1p2", "li", item)[0] == 201
    result = {"lineItem": {"sourcedId": "li"}, "student": {"sourcedId": student}, "scoreStatus": "fully graded",
              "score": 3, "scoreDate": "2026-09-02", "late": "true"}
    assert emu.put_result("v1p2", "r", {"result": result})[0] == 201
    assert emu.state["results"]["r"]["late"] == "true"
    assert emu.put_result("v1p1", "r", {"result": result})[0] == 200  # "late" sent, but not 1.1's to keep
    assert "late" not in emu.state["results"]["r"]
