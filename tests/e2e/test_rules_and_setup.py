"""Seeds 000 and 001 end to end, for every source: a course with one assignment breaking
each rule, every error shown by `passback runs show` with its meaning and fix while every
valid assignment syncs; category rename, drift, changes that propagate, links and their
release, and a closed term."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

import pytest

from passback.store.identity import Pairing
from passback.store.setup_log import list_setup_changes
from typer.testing import CliRunner

from passback.cli import app
from passback.pipeline.plan import Scope
from passback.services.runs import Route, sync_courses
from passback.settings import Settings
from passback.services.setup import link_assignment, list_categories, map_category, set_switch
from passback.store.db import Store
from tests.e2e.drivers import CanvasDriver, Driver, SchoologyDriver

ROUTE = Route("lms", "sis")
LONG = "Unit 3 Lab Report: Measuring the Speed of Sound in Air"  # 55 characters


@pytest.fixture(params=["canvas", "schoology"])
def driver(request: pytest.FixtureRequest) -> Driver:
    if request.param == "canvas":
        return CanvasDriver(request.getfixturevalue("district"))
    return SchoologyDriver(request.getfixturevalue("schoology_district"))


def sync(store: Store, settings: Settings, driver: Driver, **kwargs: Any) -> Any:
    return asyncio.run(sync_courses(store, settings, ROUTE, [Scope(course_id=driver.course_id)], **kwargs))[0]


def ps_teacher_and_categories(driver: Driver) -> tuple[int, dict[str, dict[str, Any]]]:
    ps = driver.powerschool.state
    teacher = ps["sections"][driver.dest_section_ids()[0]]["staff_id"]
    return teacher, {c["name"]: c for c in ps["categories"].values() if c["usersdcid"] == teacher}


def ps_assignments(driver: Driver) -> dict[str, dict[str, Any]]:
    wanted = set(driver.dest_section_ids())
    return {s["name"]: s for a in driver.powerschool.state["assignments"].values() for s in a["_assignmentsections"]
            if str(s["sectionsdcid"]) in wanted}


def ps_scores_of(driver: Driver, name: str) -> dict[int, dict[str, Any]]:
    asids = {s["assignmentsectionid"] for a in driver.powerschool.state["assignments"].values()
             for s in a["_assignmentsections"] if s["name"] == name and str(s["sectionsdcid"]) in driver.dest_section_ids()}
    return {v["studentsdcid"]: v for v in driver.powerschool.state["scores"].values() if v["assignmentsectionid"] in asids}


def add_manual_ps_assignment(driver: Driver, name: str, due: str, category: dict[str, Any]) -> int:
    ps = driver.powerschool.state
    ps["next_id"] += 1
    assignment_id = ps["next_id"]
    sections = []
    for section in driver.dest_section_ids():
        ps["next_id"] += 1
        sections.append({"_name": "assignmentsection", "assignmentsectionid": ps["next_id"], "assignmentid": assignment_id,
                         "sectionsdcid": int(section), "name": name, "description": "", "duedate": due,
                         "scoretype": "POINTS", "scoreentrypoints": 10.0, "totalpointvalue": 10.0,
                         "extracreditpoints": 0.0, "weight": 1.0,
                         "_assignmentcategoryassociations": [{"teachercategoryid": category["teachercategoryid"],
                                                              "isprimary": True}]})
    ps["assignments"][str(assignment_id)] = {"_name": "assignment", "assignmentid": assignment_id,
                                             "_assignmentsections": sections}
    driver.powerschool.app.state.emulator.assignments_changed()
    return assignment_id


def runs_show(run_id: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["runs", "show", run_id, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_rule_explained_while_the_valid_assignments_sync(driver: Driver, env: tuple[Store, Settings]) -> None:
    store, settings = env
    driver.connect(store, settings)
    teacher, ps_categories = ps_teacher_and_categories(driver)
    if driver.kind == "schoology":  # seed 001 step C: map the categories first
        for name in ("Homework", "Quizzes", "Tests", "Projects"):
            asyncio.run(map_category(store, settings, ROUTE, driver.course_id, driver.category(name),
                                     str(ps_categories[name]["teachercategoryid"])))
    problems = asyncio.run(list_categories(store, settings, ROUTE, driver.course_id))["problems"]
    assert [p["name"] for p in problems] == ["Extra Practice"]

    homework, quizzes, practice = driver.category("Homework"), driver.category("Quizzes"), driver.category("Extra Practice")
    ps_categories["Posters"] = dict(ps_categories["Homework"], teachercategoryid=990001, id=990001, name="Posters")
    driver.powerschool.state["categories"]["990001"] = ps_categories["Posters"]
    posters = driver.add_category_linked_to("Posters", "990001")
    if driver.kind == "schoology":
        asyncio.run(map_category(store, settings, ROUTE, driver.course_id, posters, "990001"))
    driver.powerschool.state["categories"]["990001"]["isactive"] = False  # seed 7, found at sync time

    expected: dict[str, str] = {
        driver.add_assignment("Field Trip Essay", date(2027, 2, 1), 10.0, homework): "due-date-outside-term",
        driver.add_assignment("Undated Reading", None, 10.0, homework): "due-date-missing",
        driver.add_assignment("Chapter Seven Vocabulary Review", date(2026, 10, 2), 10.0, homework):
            "name-over-district-limit",
        driver.add_assignment(LONG, date(2026, 10, 3), 10.0, homework): "name-over-destination-limit",
        driver.add_assignment("Pair Project", date(2026, 10, 4), 10.0, homework, individuals=True):
            "assigned-to-individuals",
        driver.add_assignment("Bonus Round", date(2026, 10, 6), 10.0, practice): "not-in-imported-group",
        driver.add_assignment("Loose Worksheet", date(2026, 10, 7), 10.0, None): "grading-category-missing",
        driver.add_assignment("Reading Log Two", date(2026, 10, 8), None, homework): "points-possible-none",
        driver.add_assignment("Lab Safety Quiz", date(2026, 10, 9), 10.0, quizzes): "duplicate-destination-assignment",
        driver.add_assignment("Poster", date(2026, 10, 10), 10.0, posters): "category-not-valid-for-section",
    }
    quiet = driver.add_assignment("Quiet Reading", date(2026, 10, 11), 10.0, homework)
    expected[quiet] = "sync-off"
    if "sync-switch-in-source" in driver.supports:
        driver.switch_off_in_source(quiet)  # type: ignore[attr-defined]
    else:
        assert asyncio.run(set_switch(store, settings, ROUTE, driver.course_id, quiet, False)) == "passback"
    if "mastery-paths" in driver.supports:
        expected[driver.add_assignment("Path Quiz", date(2026, 10, 12), 10.0, quizzes, mastery=True)] = "mastery-paths"
    add_manual_ps_assignment(driver, "Lab Safety Quiz", "2026-10-09", ps_categories["Quizzes"])
    foreign = driver.enrol_foreign_student()
    good = driver.add_assignment("Good Quiz", date(2026, 10, 13), 10.0, quizzes, grade=7.0)
    resubmitted = driver.resubmit_one(good) if "score-removed-after-grading" in driver.supports else None  # type: ignore[attr-defined]

    result = sync(store, settings, driver)
    shown = runs_show(result.run_id[:8])
    by_assignment = {i["source_id"].split(":")[1]: i for i in shown["items"] if i["object_kind"] == "assignment"}
    assert {a: by_assignment[a]["code"] for a in expected} == expected
    for item in by_assignment.values():
        assert item["message"] and item["meaning"] and item["fix"]
    seeds = {i["seed_error"] for i in shown["items"] if i.get("seed_error")}
    assert seeds >= {1, 2, 4, 5, 6, 7, 9} | ({8} if resubmitted else set())
    score_codes = {(i["source_id"].split(":")[2], i["code"]) for i in shown["items"] if i["object_kind"] == "score"}
    assert (foreign, "student-not-in-destination-section") in score_codes
    assert any(code == "student-not-graded" for _, code in score_codes)  # seed 3
    if resubmitted:
        assert (resubmitted, "score-removed-after-grading") in score_codes

    held = ps_assignments(driver)
    blocked_names = {"Field Trip Essay", "Undated Reading", "Chapter Seven Vocabulary Review", LONG, "Pair Project",
                     "Bonus Round", "Loose Worksheet", "Reading Log Two", "Poster", "Quiet Reading", "Path Quiz"}
    assert not blocked_names & set(held)
    assert "Good Quiz" in held and list(held).count("Lab Safety Quiz") == 1
    good_scores = ps_scores_of(driver, "Good Quiz")
    expected_good = len(driver.dest_section_ids()) and sum(
        1 for section in driver.dest_section_ids()
        for _ in driver.powerschool.state["sections"][section]["students"])
    assert len(good_scores) == expected_good - (1 if resubmitted else 0)
    assert {v["scorepoints"] for v in good_scores.values()} == {7.0}
    valid_generated = [a for a in held if a not in {"Good Quiz", "Lab Safety Quiz"}]
    assert len(valid_generated) >= 4 and all(ps_scores_of(driver, name) for name in valid_generated)

    # Renaming a mapped category does not break the sync.
    driver.rename_category(homework, "Homework (Semester 1)")
    again = sync(store, settings, driver)
    assert again.counts["created"] == again.counts["updated"] == 0
    renamed = asyncio.run(list_categories(store, settings, ROUTE, driver.course_id))
    row = next(r for r in renamed["categories"] if r["source_category_id"] == homework)
    assert row["destination_category"] == "Homework"


def test_drift_propagation_links_and_release(driver: Driver, env: tuple[Store, Settings]) -> None:
    store, settings = env
    driver.connect(store, settings)
    _, ps_categories = ps_teacher_and_categories(driver)
    quizzes = driver.category("Quizzes")
    if driver.kind == "schoology":
        asyncio.run(map_category(store, settings, ROUTE, driver.course_id, quizzes,
                                 str(ps_categories["Quizzes"]["teachercategoryid"])))
    good = driver.add_assignment("Good Quiz", date(2026, 10, 13), 10.0, quizzes, grade=7.0)
    sync(store, settings, driver)

    # B2: a grade changed by hand in the destination is a conflict, left alone unless overwritten.
    scores = driver.powerschool.state["scores"]
    key, row = next((k, v) for k, v in scores.items()
                    if v["assignmentsectionid"] == ps_assignments(driver)["Good Quiz"]["assignmentsectionid"])
    row["scorepoints"] = 9.5
    conflict = sync(store, settings, driver)
    items = [i for i in runs_show(conflict.run_id[:8])["items"] if i["object_kind"] == "score" and i["outcome"] == "error"]
    assert [i["code"] for i in items] == ["destination-changed-by-hand"]
    assert "9.5" in items[0]["message"] and "7" in items[0]["message"]
    assert scores[key]["scorepoints"] == 9.5
    overwritten = sync(store, settings, driver, overwrite_drift=True)
    assert overwritten.counts["updated"] == 1 and scores[key]["scorepoints"] == 7.0

    # B1: name, due date and points changed in the source reach the destination.
    if driver.kind == "canvas":
        row = driver.state["assignments"][good]  # type: ignore[attr-defined]
        row.update(name="Good Quiz II", points_possible=12.0, due_at="2026-10-20T04:59:00Z")
    else:
        row = driver.state["assignments"][good]  # type: ignore[attr-defined]
        row.update(title="Good Quiz II", max_points="12", due="2026-10-19 23:59:00")
    changed = sync(store, settings, driver)
    assert changed.counts["updated"] == 1 and changed.counts["created"] == 0
    held = ps_assignments(driver)["Good Quiz II"]
    assert held["scoreentrypoints"] == 12.0 and held["duedate"] == "2026-10-19"

    # C3: link to an existing destination assignment; deleting it there releases the link.
    manual = add_manual_ps_assignment(driver, "Manual Project", "2026-11-02", ps_categories["Quizzes"])
    project = driver.add_assignment("Project Link", date(2026, 11, 2), 10.0, quizzes, grade=5.0)
    asyncio.run(link_assignment(store, settings, ROUTE, driver.course_id, project, str(manual), actor="ms.rivera"))
    changes = list_setup_changes(store, _pairing(store, settings), driver.course_id)
    assert {"actor": "ms.rivera", "action": "link_assignment",
            "detail": {"assignment_id": project, "dest_assignment_id": str(manual)}}.items() <= changes[-1].items()
    linked = sync(store, settings, driver)
    assert str(manual) in driver.powerschool.state["assignments"]
    assert "Project Link" in ps_assignments(driver) and "Manual Project" not in ps_assignments(driver)
    assert {v["scorepoints"] for v in ps_scores_of(driver, "Project Link").values()} == {5.0}
    assert linked.counts["created"] > 0  # its scores; the assignment itself was updated, not created
    del driver.powerschool.state["assignments"][str(manual)]
    driver.powerschool.app.state.emulator.assignments_changed()
    released = sync(store, settings, driver)
    item = next(i for i in runs_show(released.run_id[:8])["items"] if i["code"] == "destination-assignment-missing")
    assert item["outcome"] == "skipped" and "passback link" in item["fix"]
    recreated = sync(store, settings, driver)
    assert recreated.counts["created"] > 0 and "Project Link" in ps_assignments(driver)


def test_closed_term_writes_nothing(driver: Driver, env: tuple[Store, Settings]) -> None:
    store, settings = env
    driver.connect(store, settings)
    driver.close_term(date(2026, 11, 1))
    result = sync(store, settings, driver)
    codes = {i["code"] for i in runs_show(result.run_id[:8])["items"] if i["object_kind"] == "assignment"}
    assert "term-closed" in codes
    assert result.counts["created"] == 0 and ps_assignments(driver) == {}


def test_import_categories_named_exactly_and_marked(driver: Driver, env: tuple[Store, Settings]) -> None:
    """Seed 000 step 2: the destination's categories appear in the source course, exactly named."""
    from passback.services.setup import import_categories

    store, settings = env
    driver.connect(store, settings)
    _, ps_categories = ps_teacher_and_categories(driver)
    if driver.kind == "canvas":  # one imported group was deleted by the teacher
        del driver.state["assignment_groups"][driver.category("Tests")]  # type: ignore[attr-defined]
    report = asyncio.run(import_categories(store, settings, ROUTE, driver.course_id))
    imported = {r["category"] for r in report if r["status"] == "imported"}
    assert imported == ({"Tests"} if driver.kind == "canvas" else {"Homework", "Quizzes", "Tests", "Projects"})
    assert "Participation" not in {r["category"] for r in report}  # inactive in PowerTeacher Pro
    listed = asyncio.run(list_categories(store, settings, ROUTE, driver.course_id))
    tests_rows = [r for r in listed["categories"] if r["destination_category"] == "Tests"]
    assert tests_rows and all(r["name"] == "Tests" for r in tests_rows)
    assert tests_rows[-1]["destination_category_id"] == str(ps_categories["Tests"]["teachercategoryid"])
    again = asyncio.run(import_categories(store, settings, ROUTE, driver.course_id))
    assert not [r for r in again if r["status"] == "imported"]  # importing twice adds nothing


def test_a_deleted_or_unmapped_category_is_reported_with_its_fix(driver: Driver, env: tuple[Store, Settings]) -> None:
    store, settings = env
    driver.connect(store, settings)
    _, ps_categories = ps_teacher_and_categories(driver)
    practice = driver.category("Extra Practice")
    asyncio.run(map_category(store, settings, ROUTE, driver.course_id, practice,
                             str(ps_categories["Projects"]["teachercategoryid"])))
    mapped = asyncio.run(list_categories(store, settings, ROUTE, driver.course_id))
    assert not [p for p in mapped["problems"] if p["source_category_id"] == practice]
    if driver.kind == "canvas":  # the teacher deletes the mapped group
        del driver.state["assignment_groups"][practice]  # type: ignore[attr-defined]
    else:
        del driver.state["grading_categories"][practice]  # type: ignore[attr-defined]
    report = asyncio.run(list_categories(store, settings, ROUTE, driver.course_id))
    problem = next(p for p in report["problems"] if p["source_category_id"] == practice)
    assert problem["problem"] == "mapped, but deleted in the source"
    assert f"passback categories unmap --course {driver.course_id} --category {practice}" in problem["fix"]


def _pairing(store: Store, settings: Settings) -> Pairing:
    from passback.services.connections import load

    return Pairing(load(store, settings, ROUTE.source).id, load(store, settings, ROUTE.destination).id)
