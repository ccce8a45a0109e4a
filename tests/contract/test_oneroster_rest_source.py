"""A OneRoster REST server as a source (S3), 1.1 and 1.2: the shared source contract against the OneRoster
emulator over real HTTP, its truth read from the emulator's raw state here (never through the connector).

The emulator's state is the sandbox district's OneRoster CSV bundle put into the REST binding's objects
(:func:`rest_state`), so the same data can be read both ways: the REST source and the CSV source must give
the same snapshot of every class, which is what keeps the two bindings on one mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from passback.connectors.oneroster.client import OneRosterClient
from passback.connectors.oneroster.source import OneRosterSource
from passback.connectors.oneroster_csv.source import OneRosterCsvSource
from passback.connectors.registry import SOURCE, HttpOptions, kind_of, open_connector
from passback.emulators import oneroster as oneroster_emulator
from passback.emulators.faults import FaultConfig
from passback.errors import Invalid, Refused, SourceNotFound, TargetGone
from passback.sandbox.district import generate
from passback.sandbox.oneroster_bundle import Bundle, build_bundle
from passback.testing.sources import SourceContract
from tests.conftest import SMALL, ServedApp

CLIENT_ID, CLIENT_SECRET = "rest-source", "rest-source-secret"
CSV_VERSION = {"v1p1": "1.1", "v1p2": "1.2"}
PAGE_SIZE = 5  # smaller than a class's enrollments, lineItems and results: every listing is paged


def _rows(bundle: Bundle, name: str) -> list[dict[str, str]]:
    header, *rows = bundle.files[name]
    return [dict(zip(header, row, strict=False)) for row in rows]


def _ref(sourced_id: str, kind: str) -> dict[str, str] | None:
    return {"href": f"/{kind}s/{sourced_id}", "sourcedId": sourced_id, "type": kind} if sourced_id else None


def _num(text: str) -> float | str | None:
    """A number field as a REST server sends it: a JSON number (a text that is none is sent as it is)."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def rest_state(bundle: Bundle) -> dict[str, Any]:
    """The bundle's rows as the OneRoster emulator's objects (the REST binding's field names and references)."""
    state = oneroster_emulator.empty_state()
    state["clients"][CLIENT_ID] = CLIENT_SECRET
    v12 = bundle.version == "1.2"
    role_of = {r["userSourcedId"]: r["role"] for r in _rows(bundle, "roles.csv")} if v12 else {}

    def put(collection: str, row: dict[str, str], **fields: Any) -> None:
        state[collection][row["sourcedId"]] = {"sourcedId": row["sourcedId"], "status": row["status"] or "active",
                                               "dateLastModified": "2026-08-01T12:00:00.000Z", **fields}

    for r in _rows(bundle, "orgs.csv"):
        put("orgs", r, name=r["name"], type=r["type"], identifier=r["identifier"])
    for r in _rows(bundle, "academicSessions.csv"):
        put("academicSessions", r, title=r["title"], type=r["type"], startDate=r["startDate"], endDate=r["endDate"],
            schoolYear=r["schoolYear"], parent=_ref(r["parentSourcedId"], "academicSession"))
    for r in _rows(bundle, "courses.csv"):
        put("courses", r, title=r["title"], courseCode=r["courseCode"], org=_ref(r["orgSourcedId"], "org"))
    for r in _rows(bundle, "classes.csv"):
        put("classes", r, title=r["title"], classCode=r["classCode"], classType=r["classType"],
            course=_ref(r["courseSourcedId"], "course"), school=_ref(r["schoolSourcedId"], "org"),
            terms=[_ref(t, "academicSession") for t in r["termSourcedIds"].split(",") if t])
    for r in _rows(bundle, "users.csv"):
        org = r.get("primaryOrgSourcedId") or r.get("orgSourcedIds") or ""
        put("users", r, username=r["username"], enabledUser=r["enabledUser"], givenName=r["givenName"],
            familyName=r["familyName"], identifier=r["identifier"], role=role_of.get(r["sourcedId"], r.get("role")),
            orgs=[_ref(org, "org")] if org else [])
    for r in _rows(bundle, "enrollments.csv"):
        put("enrollments", r, role=r["role"], primary=r["primary"], user=_ref(r["userSourcedId"], "user"),
            **{"class": _ref(r["classSourcedId"], "class")}, school=_ref(r["schoolSourcedId"], "org"))
    for r in _rows(bundle, "categories.csv"):
        put("categories", r, title=r["title"], **({"weight": _num(r["weight"])} if v12 else {}))
    for r in _rows(bundle, "lineItems.csv"):
        put("lineItems", r, title=r["title"], description=r["description"], assignDate=r["assignDate"],
            dueDate=r["dueDate"], **{"class": _ref(r["classSourcedId"], "class")},
            category=_ref(r["categorySourcedId"], "category"),
            gradingPeriod=_ref(r["gradingPeriodSourcedId"], "academicSession"),
            resultValueMin=_num(r["resultValueMin"]), resultValueMax=_num(r["resultValueMax"]))
    flags = ("textScore", "inProgress", "incomplete", "late", "missing") if v12 else ()
    for r in _rows(bundle, "results.csv"):
        put("results", r, lineItem=_ref(r["lineItemSourcedId"], "lineItem"),
            student=_ref(r["studentSourcedId"], "user"), scoreStatus=r["scoreStatus"], score=_num(r["score"]),
            scoreDate=r["scoreDate"], comment=r["comment"], **{f: r[f] for f in flags})
    return state


def rest_truth(state: dict[str, Any], version: str) -> dict[str, Any]:
    """What each active class holds, from the emulator's raw objects alone (``version``: v1p1 or v1p2)."""
    def live(collection: str) -> list[dict[str, Any]]:
        return [o for o in state[collection].values() if o.get("status", "active") == "active"]

    def pair(result: dict[str, Any]) -> tuple[str, str]:
        return result["lineItem"]["sourcedId"], result["student"]["sourcedId"]

    users = {u["sourcedId"]: u for u in live("users")}
    categories = {c["sourcedId"] for c in live("categories")}
    courses: dict[str, Any] = {}
    for klass in live("classes"):
        cid = klass["sourcedId"]
        enrolled = [e["user"]["sourcedId"] for e in live("enrollments")
                    if e["class"]["sourcedId"] == cid and e["role"] == "student" and e["user"]["sourcedId"] in users]
        items = {i["sourcedId"]: i for i in live("lineItems") if i["class"]["sourcedId"] == cid}
        results = [r for r in live("results") if r["lineItem"]["sourcedId"] in items
                   and r["student"]["sourcedId"] in enrolled]
        courses[cid] = {
            "section_sis_ids": [cid],
            "student_sis_ids": [users[u]["identifier"] or u for u in enrolled],
            "assignments": {k: (i["title"], i["resultValueMax"]) for k, i in items.items()},
            "graded_scores": {pair(r): float(r["score"]) for r in results if r["score"] is not None
                              and r["scoreStatus"] in ("fully graded", "partially graded", "submitted")},
            "excused": {pair(r) for r in results if r["scoreStatus"] == "exempt"},
            "missing": {pair(r) for r in results if (r["scoreStatus"] == "not submitted" if version == "v1p1"
                                                     else r.get("missing") == "true")},
            "imported_categories": {c: c for c in {i["category"]["sourcedId"] for i in items.values()}
                                    if c in categories},
            "late": {pair(r) for r in results if r.get("late") == "true"},
        }
    return {"courses": courses}


@pytest.fixture(params=["v1p1", "v1p2"])
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bundle(version: str) -> Bundle:
    canvas, powerschool, _ = generate(SMALL)
    return build_bundle(canvas, powerschool, CSV_VERSION[version])


@pytest.fixture
def served(bundle: Bundle, version: str) -> Iterator[ServedApp]:
    """v1p2 is served without X-Total-Count and Link (the spec makes both optional): read until a short page."""
    plain = version == "v1p2"
    app = oneroster_emulator.create_app(rest_state(bundle), faults=FaultConfig(), total_count=not plain,
                                        links=not plain)
    with ServedApp(app) as served:
        yield served


@pytest.fixture
async def source(served: ServedApp, version: str) -> AsyncIterator[OneRosterSource]:
    client = OneRosterClient(served.url, CLIENT_ID, CLIENT_SECRET, version=version, page_size=PAGE_SIZE)
    yield OneRosterSource(client)
    await client.aclose()


@pytest.fixture
def truth(served: ServedApp, version: str) -> dict[str, Any]:
    return rest_truth(served.state, version)


class TestOneRosterRestContract(SourceContract):
    pass


@pytest.mark.anyio
async def test_rest_and_csv_give_the_same_snapshot_of_every_class(source: OneRosterSource, bundle: Bundle,
                                                                   tmp_path: Path) -> None:
    csv_source = OneRosterCsvSource(bundle.write(tmp_path / "bundle.zip"))
    classes = await csv_source.list_course_ids()
    assert classes and await source.list_course_ids() == classes
    for class_id in classes:
        over_rest, from_csv = await source.read_course(class_id), await csv_source.read_course(class_id)
        assert over_rest == from_csv
        assert not over_rest.problems and len(over_rest.scores) == len(over_rest.students) * len(over_rest.assignments)


@pytest.mark.anyio
async def test_a_class_is_read_by_filter_and_its_own_results_listing(source: OneRosterSource, served: ServedApp,
                                                                      truth: dict[str, Any]) -> None:
    class_id = next(iter(truth["courses"]))
    before = dict(served.control("stats")["requests"])
    snapshot = await source.read_course(class_id)
    asked = {k: v - before.get(k, 0) for k, v in served.control("stats")["requests"].items() if v != before.get(k, 0)}
    assert {a.source_id for a in snapshot.assignments} == set(truth["courses"][class_id]["assignments"])
    assert not any(k.endswith(("/lineItems/{id}", "/results/{id}")) for k in asked)  # no object by object
    assert any(k.endswith("/classes/{id}/results") for k in asked)
    assert sum(v for k, v in asked.items() if k.endswith("/users/{id}")) == len(snapshot.students)


@pytest.mark.anyio
async def test_tobedeleted_objects_are_left_out_and_bad_ones_are_problems(source: OneRosterSource,
                                                                          served: ServedApp) -> None:
    state = served.state
    klass = next(iter(state["classes"]))
    items = [i for i in state["lineItems"].values() if i["class"]["sourcedId"] == klass]
    gone, kept = items[0], items[1]
    gone["status"] = "tobedeleted"
    result = next(r for r in state["results"].values() if r["lineItem"]["sourcedId"] == kept["sourcedId"]
                  and r["scoreStatus"] == "fully graded")
    result["score"] = "twelve"
    snapshot = await source.read_course(klass)
    assert gone["sourcedId"] not in {a.source_id for a in snapshot.assignments}
    assert [p.problem for p in snapshot.problems] == ["score 'twelve' is not a number"]
    assert snapshot.problems[0].file == "results" and snapshot.problems[0].student_id == result["student"]["sourcedId"]
    key = (kept["sourcedId"], result["student"]["sourcedId"])
    assert key not in {(s.assignment_id, s.student_id) for s in snapshot.scores}  # withheld, neither sent nor cleared
    state["classes"][klass]["status"] = "tobedeleted"
    assert klass not in await source.list_course_ids()
    with pytest.raises(SourceNotFound, match="not found"):
        await source.read_course(klass)


@pytest.mark.anyio
async def test_the_kind_is_a_source_too_and_cannot_be_written_to(served: ServedApp, version: str) -> None:
    kind = kind_of("oneroster")
    assert SOURCE in kind.roles and "destination" in kind.roles
    config = kind.config.parse(served.url, {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "version": version})
    source = open_connector(SOURCE, config, HttpOptions(), "sis")
    try:
        assert isinstance(source, OneRosterSource) and source.course_url("x") is None
        assert await source.list_course_ids()
        with pytest.raises(Invalid, match="SIS's gradebook"):
            await source.create_category("x", "Homework", "1")
        with pytest.raises(Invalid, match="SIS's gradebook"):
            await source.update_assignment("x", "y", None)  # type: ignore[arg-type]
    finally:
        await source.aclose()


@pytest.mark.anyio
async def test_a_server_without_filter_or_class_results_reads_the_same(source: OneRosterSource,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses ``filter`` (400) and has no ``classes/{id}/results`` (404): read whole, kept here."""
    class_id = (await source.list_course_ids())[0]
    expected = await source.read_course(class_id)
    pages = source.client.pages

    async def plainer(path: str, key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if params and "filter" in params:
            raise Refused(None, "invalid_filter_field", 400)
        if path.endswith("/results") and "/classes/" in path:
            raise TargetGone(None, "no such path", 404)
        return await pages(path, key, params)

    monkeypatch.setattr(source.client, "pages", plainer)
    assert await source.read_course(class_id) == expected
