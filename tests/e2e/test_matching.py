"""Matching end to end, over real HTTP: Canvas sections and students whose SIS ids are not
PowerSchool's ids fail until a rule (or an override by hand) matches them; then every
grade reaches the PowerTeacher Pro emulator, as computed from the raw Canvas data."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from passback.cli import app
from passback.pipeline.plan import Scope
from passback.services.matching import make_rule, set_rule
from passback.services.runs import Route, sync_courses
from passback.services.setup import check_course
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.store.history import get_run_items
from passback.vault import load_key
from tests.conftest import District
from tests.e2e.expected import expected_destination_scores, held_destination_scores

ROUTE = Route("lms", "sis")
CONNECTIONS = ["--source", "lms", "--destination", "sis"]


def connect(store: Store, settings: Settings, district: District) -> None:
    key = load_key(settings)
    save_connection(store, key, name="lms", kind="canvas", base_url=district.canvas.url,
                    credentials={"token": district.credentials.canvas_token})
    save_connection(store, key, name="sis", kind="powerschool", base_url=district.powerschool.url,
                    credentials={"client_id": district.credentials.powerschool_client_id,
                                 "client_secret": district.credentials.powerschool_client_secret})


def sync(store: Store, settings: Settings, courses: list[str] | None = None) -> list[Any]:
    scopes = [Scope(course_id=c) for c in courses or []]
    return asyncio.run(sync_courses(store, settings, ROUTE, scopes, all_courses=courses is None))


def codes(store: Store, results: list[Any], kind: str) -> set[str]:
    return {i["code"] for r in results for i in get_run_items(store, r.run_id, ("error", "skipped"))
            if i["object_kind"] == kind}


def total(results: list[Any], outcome: str) -> int:
    return sum(r.counts[outcome] for r in results)


def disguise_section(canvas: dict[str, Any], section: dict[str, Any], sis_id: str) -> None:
    """Give a Canvas section (and its enrollments) an SIS id PowerSchool does not know."""
    section["sis_section_id"] = sis_id
    for enrollment in canvas["enrollments"].values():
        if enrollment["course_section_id"] == section["id"]:
            enrollment["sis_section_id"] = sis_id


def course_sections(canvas: dict[str, Any], course_id: str) -> list[dict[str, Any]]:
    return [s for s in canvas["sections"].values() if str(s["course_id"]) == course_id]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, concurrency=4)


def test_rules_match_prefixed_sections_and_students(store: Store, settings: Settings, district: District) -> None:
    canvas, ps = district.canvas.state, district.powerschool.state
    connect(store, settings, district)
    expected = expected_destination_scores(canvas, ps)  # from the raw data, before the ids differ
    assert expected
    for section in canvas["sections"].values():
        disguise_section(canvas, section, f"S-{section['sis_section_id']}-2026")
    for user in canvas["users"].values():
        user["sis_user_id"] = f"STU{user['sis_user_id']}"
    first_course = str(min(int(c) for c in canvas["courses"]))

    before = sync(store, settings)
    assert "section-not-in-destination" in codes(store, before, "assignment")
    assert total(before, "created") == 0 and held_destination_scores(ps) == {}
    readiness = asyncio.run(check_course(store, settings, ROUTE, first_course))
    sections = [i for i in readiness.unmatched if i["kind"] == "section"]
    assert {i["source_value"] for i in sections} == {s["sis_section_id"] for s in course_sections(canvas, first_course)}
    assert all(i["fix"].startswith(f"passback match section --course {first_course} --source-section ")
               for i in sections)

    set_rule(store, settings, ROUTE, make_rule("section", pattern=r"^S-(\d+)-2026$"))
    sections_only = sync(store, settings)
    assert "section-not-in-destination" not in codes(store, sections_only, "assignment")
    assert codes(store, sections_only, "score") >= {"student-not-in-destination-section"}
    assert held_destination_scores(ps) == {}  # the assignments are there; no student matched yet
    readiness = asyncio.run(check_course(store, settings, ROUTE, first_course))
    assert {i["kind"] for i in readiness.unmatched} == {"student", "category"}  # Extra Practice is not imported
    student = next(i for i in readiness.unmatched if i["kind"] == "student")
    assert student["source_value"].startswith("STU") and "--source-student" in student["fix"]

    set_rule(store, settings, ROUTE, make_rule("student", strip_prefix="STU"))
    after = sync(store, settings)
    assert held_destination_scores(ps) == expected
    assert "student-not-in-destination-section" not in codes(store, after, "score")
    readiness = asyncio.run(check_course(store, settings, ROUTE, first_course))
    assert [i["kind"] for i in readiness.unmatched] == ["category"]

    again = sync(store, settings)
    assert total(again, "created") == total(again, "updated") == total(again, "deleted") == 0


def passback(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, [*args, *CONNECTIONS])
    assert result.exit_code == code, result.output
    return result.stdout


def check(course: str) -> list[dict[str, Any]]:
    return json.loads(passback("check", "--course", course, "--json"))["unmatched"]


def test_overrides_by_hand_from_the_command_line(env: tuple[Store, Settings], district: District) -> None:
    store, settings = env
    canvas, ps = district.canvas.state, district.powerschool.state
    connect(store, settings, district)
    course = str(min(int(c) for c in canvas["courses"]))
    sections = course_sections(canvas, course)
    dcids = {str(s["id"]): s["sis_section_id"] for s in sections}
    expected = {k: v for k, v in expected_destination_scores(canvas, ps).items() if k[1] in dcids.values()}
    assert expected
    for section in sections:  # text ids no rule could turn into a DCID
        disguise_section(canvas, section, f"BIO-{section['name'].replace(' ', '')}-FALL")
    odd = canvas["users"][str(next(e["user_id"] for e in canvas["enrollments"].values()
                                   if str(e["course_id"]) == course))]
    number = odd["sis_user_id"]
    odd["sis_user_id"] = "legacy-abc"
    odd_dcid = next(str(s["id"]) for s in ps["students"].values() if str(s["local_id"]) == number)

    before = sync(store, settings, [course])
    assert "section-not-in-destination" in codes(store, before, "assignment")
    assert held_destination_scores(ps) == {}
    unmatched = check(course)
    assert {(i["kind"], i["source_id"]) for i in unmatched} >= {("section", s) for s in dcids}
    # a rule that fits none of these ids: the overrides below beat it
    passback("match", "rule", "section", "--pattern", r"^S-(\d+)$")
    for item in unmatched:
        if item["kind"] == "section":
            fix = item["fix"].split()
            assert fix[:3] == ["passback", "match", "section"] and fix[-1] == "DEST_SECTION_ID"
            passback(*fix[1:-1], dcids[item["source_id"]])

    unmatched = check(course)
    student = next(i for i in unmatched if i["kind"] == "student")
    assert (student["source_id"], student["source_value"]) == (str(odd["id"]), "legacy-abc")
    assert student["fix"] == f"passback match student --source-student {odd['id']} --to DEST_STUDENT_ID"
    passback("match", "student", "--source-student", str(odd["id"]), "--to", number, "--course", course)
    assert [i["kind"] for i in check(course)] == ["category"]  # Extra Practice: mapped by `categories map`

    listed = json.loads(passback("match", "list", "--json"))
    assert {(o["kind"], o["source_id"], o["to"]) for o in listed["overrides"]} == {
        *(("section", s, d) for s, d in dcids.items()), ("student", str(odd["id"]), odd_dcid)}
    assert next(r for r in listed["rules"] if r["kind"] == "section")["set"]

    sync(store, settings, [course])
    assert held_destination_scores(ps) == expected

    removed = next(iter(dcids))
    assert "Removed." in passback("match", "remove", "section", "--course", course, "--source-section", removed)
    assert ("section", removed) in {(i["kind"], i["source_id"]) for i in check(course)}
    assert "no such override" in passback("match", "remove", "section", "--course", course,
                                          "--source-section", removed)
    passback("match", "section", "--course", course, "--source-section", removed, "--to", "424242", code=1)
    passback("match", "rule", "section", "--pattern", "(a)(b)", code=1)
