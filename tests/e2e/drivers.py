"""Per-source test drivers: put a course into the state a teacher would, in the emulator.

The end-to-end tests are written once against this small surface and run for every
source; each driver edits its emulator's data the way the LMS's own UI would.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from passback.sandbox.district import TIME_ZONE
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.vault import load_key
from tests.conftest import SCHOOLOGY_KEY, SCHOOLOGY_SECRET, District, SchoologyDistrict, ServedApp


def local_due(day: date) -> datetime:
    return datetime.combine(day, time(23, 59), tzinfo=ZoneInfo(TIME_ZONE))


class Driver:
    kind: str
    supports: frozenset[str] = frozenset()
    powerschool: ServedApp
    course_id: str

    def connect(self, store: Store, settings: Settings) -> None:
        key = load_key(settings)
        save_connection(store, key, name="sis", kind="powerschool", base_url=self.powerschool.url,
                        credentials={"client_id": self.credentials.powerschool_client_id,
                                     "client_secret": self.credentials.powerschool_client_secret})

    # what every driver answers
    def category(self, name: str) -> str: ...
    def add_assignment(self, name: str, due: date | None, points: float | None, category: str | None,
                       individuals: bool = False, mastery: bool = False, grade: float | None = None) -> str: ...
    def rename_category(self, category_id: str, name: str) -> None: ...
    def enrol_foreign_student(self) -> str: ...
    def dest_section_ids(self) -> list[str]: ...
    def add_category_linked_to(self, name: str, dest_category_id: str) -> str: ...
    def close_term(self, last_day: date) -> None: ...


class CanvasDriver(Driver):
    kind = "canvas"
    supports = frozenset({"mastery-paths", "score-removed-after-grading", "sync-switch-in-source"})

    def __init__(self, district: District) -> None:
        self.district = district
        self.powerschool = district.powerschool
        self.credentials = district.credentials
        self.state = district.canvas.state
        self.course_id = str(min(int(c) for c in self.state["courses"]))
        self.course = int(self.course_id)

    def connect(self, store: Store, settings: Settings) -> None:
        super().connect(store, settings)
        save_connection(store, load_key(settings), name="lms", kind="canvas", base_url=self.district.canvas.url,
                        credentials={"token": self.credentials.canvas_token})

    def _new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"]

    def students(self) -> list[int]:
        return [e["user_id"] for e in self.state["enrollments"].values() if e["course_id"] == self.course]

    def category(self, name: str) -> str:
        return next(str(g["id"]) for g in self.state["assignment_groups"].values()
                    if g["course_id"] == self.course and g["name"] == name)

    def add_assignment(self, name: str, due: date | None, points: float | None, category: str | None,
                       individuals: bool = False, mastery: bool = False, grade: float | None = None) -> str:
        assignment_id = self._new_id()
        overrides: list[dict[str, Any]] = []
        if individuals:
            overrides = [{"id": self._new_id(), "assignment_id": assignment_id, "title": "2 students",
                          "student_ids": self.students()[:2]}]
        if mastery:
            overrides = [{"id": self._new_id(), "assignment_id": assignment_id, "title": "Mastery Paths", "noop_id": 1}]
        self.state["assignments"][str(assignment_id)] = {
            "id": assignment_id, "course_id": self.course, "name": name, "description": "",
            "due_at": local_due(due).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if due else None,
            "unlock_at": None, "lock_at": None, "points_possible": points, "grading_type": "points",
            "assignment_group_id": int(category) if category else 999_999_999, "post_to_sis": True,
            "published": True, "only_visible_to_overrides": bool(overrides), "omit_from_final_grade": False,
            "grading_standard_id": None, "position": assignment_id, "overrides": overrides,
        }
        if grade is not None:
            for user_id in self.students():
                self.state["submissions"][f"{assignment_id}:{user_id}"] = {
                    "id": assignment_id * 100_000 + user_id, "user_id": user_id, "assignment_id": assignment_id,
                    "score": grade, "grade": f"{grade:g}", "excused": False, "late": False, "missing": False,
                    "workflow_state": "graded", "graded_at": "2026-11-02T15:00:00Z",
                    "grade_matches_current_submission": True}
        return str(assignment_id)

    def switch_off_in_source(self, assignment_id: str) -> None:
        self.state["assignments"][assignment_id]["post_to_sis"] = False

    def resubmit_one(self, assignment_id: str) -> str:
        user_id = self.students()[0]
        self.state["submissions"][f"{assignment_id}:{user_id}"].update(
            workflow_state="submitted", grade_matches_current_submission=False)
        return str(user_id)

    def rename_category(self, category_id: str, name: str) -> None:
        self.state["assignment_groups"][category_id]["name"] = name

    def enrol_foreign_student(self) -> str:
        other = next(e for e in self.state["enrollments"].values() if e["course_id"] != self.course)
        section = next(s for s in self.state["sections"].values() if s["course_id"] == self.course)
        enrollment_id = self._new_id()
        self.state["enrollments"][str(enrollment_id)] = {**other, "id": enrollment_id, "course_id": self.course,
                                                          "course_section_id": section["id"]}
        return str(other["user_id"])

    def dest_section_ids(self) -> list[str]:
        return [s["sis_section_id"] for s in self.state["sections"].values() if s["course_id"] == self.course]

    def add_category_linked_to(self, name: str, dest_category_id: str) -> str:
        group_id = self._new_id()
        self.state["assignment_groups"][str(group_id)] = {
            "id": group_id, "course_id": self.course, "name": name, "position": 9, "group_weight": 0.0,
            "sis_source_id": dest_category_id, "integration_data": {}, "rules": {}}
        return str(group_id)

    def close_term(self, last_day: date) -> None:
        self.state["terms"]["1"]["end_at"] = f"{last_day.isoformat()}T23:00:00Z"


class SchoologyDriver(Driver):
    kind = "schoology"

    def __init__(self, district: SchoologyDistrict) -> None:
        self.district = district
        self.powerschool = district.powerschool
        self.credentials = district.credentials
        self.state = district.schoology.state
        self.course_id = str(min(int(s) for s in self.state["sections"]))
        self.pending_mappings: dict[str, str] = {}

    def connect(self, store: Store, settings: Settings) -> None:
        super().connect(store, settings)
        save_connection(store, load_key(settings), name="lms", kind="schoology", base_url=self.district.schoology.url,
                        credentials={"consumer_key": SCHOOLOGY_KEY, "consumer_secret": SCHOOLOGY_SECRET})

    def _new_id(self) -> int:
        self.state["next_id"] += 1
        return self.state["next_id"]

    def enrollments(self) -> list[dict[str, Any]]:
        return [e for e in self.state["enrollments"].values() if e["section_id"] == self.course_id and e["admin"] == 0]

    def category(self, name: str) -> str:
        return next(str(c["id"]) for c in self.state["grading_categories"].values()
                    if c["section_id"] == self.course_id and c["title"] == name)

    def add_assignment(self, name: str, due: date | None, points: float | None, category: str | None,
                       individuals: bool = False, mastery: bool = False, grade: float | None = None) -> str:
        assignment_id = self._new_id()
        self.state["assignments"][str(assignment_id)] = {
            "id": assignment_id, "section_id": self.course_id, "title": name, "description": "",
            "due": local_due(due).strftime("%Y-%m-%d %H:%M:%S") if due else "", "grading_scale": "0",
            "grading_period": "0", "grading_category": category or "0",
            "max_points": "" if points is None else f"{points:g}", "factor": "1", "is_final": "0", "published": 1,
            "type": "assignment", "grade_item_id": assignment_id, "count_in_grade": 1,
            "assignees": [int(e["id"]) for e in self.enrollments()[:2]] if individuals else [],
            "grading_group_ids": [],
        }
        if grade is not None:
            for enrollment in self.enrollments():
                self.state["grades"][f"{assignment_id}:{enrollment['id']}"] = {
                    "enrollment_id": int(enrollment["id"]), "assignment_id": assignment_id, "grade": grade,
                    "exception": 0, "timestamp": 1793000000, "comment": ""}
        return str(assignment_id)

    def rename_category(self, category_id: str, name: str) -> None:
        self.state["grading_categories"][category_id]["title"] = name

    def enrol_foreign_student(self) -> str:
        other = next(e for e in self.state["enrollments"].values() if e["section_id"] != self.course_id)
        enrollment_id = str(self._new_id())
        self.state["enrollments"][enrollment_id] = {**other, "id": enrollment_id, "section_id": self.course_id}
        return str(other["uid"])

    def dest_section_ids(self) -> list[str]:
        return [self.state["sections"][self.course_id]["section_school_code"]]

    def add_category_linked_to(self, name: str, dest_category_id: str) -> str:
        category_id = self._new_id()
        self.state["grading_categories"][str(category_id)] = {
            "id": category_id, "section_id": self.course_id, "title": name, "delta": 9, "calculation_type": 2,
            "weight": 0}
        self.pending_mappings[str(category_id)] = dest_category_id
        return str(category_id)

    def close_term(self, last_day: date) -> None:
        for period in self.state["sections"][self.course_id]["grading_periods"]:
            self.state["grading_periods"][str(period)]["end"] = f"{last_day.isoformat()} 00:00:00"
