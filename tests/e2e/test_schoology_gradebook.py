"""Schoology end to end, on the points its documentation settles: a category import whose
answers are lost creates each category once (``passback categories import``), and
assessments and graded discussions sync to PowerTeacher Pro with their grades while a
grade with an undocumented exception is written nowhere."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from passback.cli import app
from passback.emulators.schoology import add_grade_item
from passback.pipeline.plan import Scope
from passback.services.runs import Route, sync_courses
from passback.services.setup import map_category
from passback.settings import Settings
from passback.store.history import get_run_items
from passback.store.db import Store
from tests.conftest import SchoologyDistrict
from tests.e2e.drivers import SchoologyDriver

ROUTE = Route("lms", "sis")


@pytest.fixture
def driver(schoology_district: SchoologyDistrict, env: tuple[Store, Settings]) -> SchoologyDriver:
    connected = SchoologyDriver(schoology_district)
    connected.connect(*env)
    return connected


def import_categories_cli(course: str) -> list[dict[str, str]]:
    result = CliRunner().invoke(app, ["categories", "import", "--course", course, "--source", "lms",
                                      "--destination", "sis", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def category_posts(driver: SchoologyDriver) -> list[Any]:
    writes = driver.district.schoology.app.state.emulator.writes
    return [body for method, path, body in writes
            if method == "POST" and path == f"/v1/sections/{driver.course_id}/grading_categories"]


def test_categories_import_with_lost_answers_creates_each_once(driver: SchoologyDriver) -> None:
    driver.district.schoology.control("faults", {"fault_rate": 1.0, "fault_kinds": ["reset"], "only_methods": ["POST"]})
    before = {c["id"] for c in driver.state["grading_categories"].values() if c["section_id"] == driver.course_id}
    report = import_categories_cli(driver.course_id)
    assert {r["category"]: r["status"] for r in report} == dict.fromkeys(["Homework", "Quizzes", "Tests", "Projects"],
                                                                         "imported")
    posts = category_posts(driver)
    assert sorted(p["grading_categories"]["grading_category"][0]["title"] for p in posts) == [
        "Homework", "Projects", "Quizzes", "Tests"]
    new = {str(c["id"]): c["title"] for c in driver.state["grading_categories"].values()
           if c["section_id"] == driver.course_id and c["id"] not in before}
    assert {r["source_category_id"]: r["category"] for r in report} == new  # each adopted, none made twice
    again = import_categories_cli(driver.course_id)
    assert not [r for r in again if r["status"] == "imported"] and len(category_posts(driver)) == 4


def ps_scores(driver: SchoologyDriver, name: str) -> dict[int, float | None]:
    ps = driver.powerschool.state
    wanted = set(driver.dest_section_ids())
    asids = {s["assignmentsectionid"] for a in ps["assignments"].values() for s in a["_assignmentsections"]
             if s["name"] == name and str(s["sectionsdcid"]) in wanted}
    return {v["studentsdcid"]: v["scorepoints"] for v in ps["scores"].values() if v["assignmentsectionid"] in asids}


def test_assessments_and_graded_discussions_sync_with_their_grades(driver: SchoologyDriver,
                                                                   env: tuple[Store, Settings]) -> None:
    store, settings = env
    ps = driver.powerschool.state
    teacher = ps["sections"][driver.dest_section_ids()[0]]["staff_id"]
    quizzes_dest = next(c for c in ps["categories"].values() if c["usersdcid"] == teacher and c["name"] == "Quizzes")
    quizzes = driver.category("Quizzes")
    asyncio.run(map_category(store, settings, ROUTE, driver.course_id, quizzes, str(quizzes_dest["teachercategoryid"])))
    quiz = add_grade_item(driver.state, driver.course_id, "assessment", "Unit 2 Quiz", max_points="20",
                          due="2026-10-20 23:59:00", grading_category=quizzes)
    talk = add_grade_item(driver.state, driver.course_id, "discussion", "Debate", max_points="5",
                          due="2026-10-21 23:59:00", grading_category=quizzes)
    enrolled = sorted(driver.enrollments(), key=lambda e: int(e["id"]))
    for column, grade in ((quiz["id"], 17.0), (talk["id"], 4.0)):
        for enrollment in enrolled:
            driver.state["grades"][f"{column}:{enrollment['id']}"] = {
                "enrollment_id": int(enrollment["id"]), "assignment_id": column, "grade": grade,
                "exception": 7 if enrollment is enrolled[0] and column == talk["id"] else 0,
                "timestamp": 1793000000, "comment": ""}

    result = asyncio.run(sync_courses(store, settings, ROUTE, [Scope(course_id=driver.course_id)]))[0]
    assert result.counts["created"] > 0
    assert set(ps_scores(driver, "Unit 2 Quiz").values()) == {17.0}
    assert len(ps_scores(driver, "Unit 2 Quiz")) == len(enrolled)
    debate = ps_scores(driver, "Debate")
    assert set(debate.values()) == {4.0} and len(debate) == len(enrolled) - 1  # the exception-7 grade: not sent
    errors = get_run_items(store, result.run_id or "", ("error",))
    unreadable = [i for i in errors if i["code"] == "source-grade-unreadable"]
    assert len(unreadable) == 1 and "exception 7" in unreadable[0]["message"]  # on the run, with meaning and fix
    said = [i["message"] for i in get_run_items(store, result.run_id or "", ("error", "skipped")) if i["message"]]
    assert said and not [m for m in said if "Canvas" in m or "assignment group" in m or "Post to SIS" in m]
