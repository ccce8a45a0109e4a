"""A generated district: the same courses in an emulated Canvas and PowerSchool.

A fixed seed gives the same district, byte for byte. The PowerSchool side holds the
sections, rosters and teacher categories; the Canvas side mirrors them as a real SIS
import would (section ``sis_section_id`` = PowerSchool section DCID, user
``sis_user_id`` = student number, assignment groups imported with ``sis_source_id`` =
teacher category id). With ``broken`` on, one course carries assignments that break
seed 000's rules, so the error path shows in every demo.

Canvas also has the people who open passback from a course (LTI): ``teacher1``,
``teacher2``, ... teach the first, second, ... course (TeacherEnrollment), ``ta1`` is a
TA in the first course, and ``admin`` is an account admin enrolled nowhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from passback.emulators.canvas import empty_state as empty_canvas
from passback.emulators.powerschool import empty_state as empty_powerschool

FIRST_NAMES = ("Ava", "Liam", "Mia", "Noah", "Zoe", "Eli", "Ivy", "Leo", "Ada", "Kai", "Nia", "Owen",
               "Ruby", "Finn", "Lena", "Omar", "Sara", "Theo", "Uma", "Yara")
LAST_NAMES = ("Garcia", "Nguyen", "Smith", "Patel", "Johnson", "Kim", "Lopez", "Brown", "Davis",
              "Martinez", "Wilson", "Clark", "Lewis", "Walker", "Young", "Allen")
SUBJECTS = ("Algebra I", "Biology", "World History", "English 9", "Chemistry", "Geometry",
            "Spanish I", "Physics", "Economics", "Art I")
CATEGORIES = ("Homework", "Quizzes", "Tests", "Projects")
INACTIVE_CATEGORY = "Participation"
KINDS = (("Homework", "Homework", 10.0), ("Quiz", "Quizzes", 20.0), ("Test", "Tests", 100.0),
         ("Project", "Projects", 50.0))
TIME_ZONE = "America/Chicago"
TERM_START = date(2026, 8, 10)
TERM_END = date(2026, 12, 18)
LONG_NAME = "Unit 3 Lab Report: Measuring the Speed of Sound in Air"  # 55 characters


@dataclass(frozen=True)
class DistrictShape:
    courses: int = 3
    sections: int = 2
    students: int = 25
    assignments: int = 12
    seed: int = 7
    broken: bool = True


@dataclass(frozen=True)
class Credentials:
    canvas_token: str
    powerschool_client_id: str
    powerschool_client_secret: str


def _due(day: date) -> str:
    local = datetime.combine(day, time(23, 59, 59), tzinfo=ZoneInfo(TIME_ZONE))
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(shape: DistrictShape) -> tuple[dict[str, Any], dict[str, Any], Credentials]:
    rng = random.Random(shape.seed)
    canvas, ps = empty_canvas(), empty_powerschool()
    credentials = Credentials(
        canvas_token=f"sandbox-canvas-{rng.getrandbits(64):016x}",
        powerschool_client_id=f"sandbox-plugin-{rng.getrandbits(32):08x}",
        powerschool_client_secret=f"{rng.getrandbits(128):032x}",
    )
    canvas["tokens"][credentials.canvas_token] = {"user_id": 1, "role": "admin"}
    ps["clients"][credentials.powerschool_client_id] = credentials.powerschool_client_secret
    ps["terms"]["3401"] = {"id": 3401, "yearid": 34, "name": "Semester 1 2026-2027", "abbreviation": "S1",
                           "firstday": TERM_START.isoformat(), "lastday": TERM_END.isoformat()}
    ps["schools"]["1"] = {"id": 1, "name": "Sandbox High School", "school_number": 100}
    canvas["terms"]["1"] = {"id": 1, "name": "Semester 1 2026-2027",
                            "start_at": f"{TERM_START.isoformat()}T05:00:00Z", "end_at": f"{TERM_END.isoformat()}T05:59:59Z"}

    next_ps = iter(range(5001, 10**7))
    next_canvas = iter(range(101, 10**7))
    student_number = iter(range(200001, 10**7))
    first_sections: list[dict[str, Any]] = []  # per course, for its staff's enrollments (made last)
    for course_index in range(shape.courses):
        subject = SUBJECTS[course_index % len(SUBJECTS)]
        teacher = next(next_ps)
        ps["teachers"][str(teacher)] = {"users_dcid": teacher, "name": f"Teacher {course_index + 1}"}
        category_ids: dict[str, int] = {}
        for position, name in enumerate(CATEGORIES + (INACTIVE_CATEGORY,), start=1):
            category_id = next(next_ps)
            category_ids[name] = category_id
            ps["categories"][str(category_id)] = {
                "_name": "teachercategory", "teachercategoryid": category_id, "id": category_id, "name": name,
                "description": "", "categorytype": "district", "usersdcid": teacher, "color": str(position),
                "displayposition": position, "isactive": name != INACTIVE_CATEGORY, "isinfinalgrades": True,
                "defaultscoretype": "POINTS", "defaultscoreentrypoints": 10, "defaulttotalvalue": 10,
                "defaultextracreditpoints": 0, "defaultweight": 1,
            }
        course_id = next(next_canvas)
        canvas["courses"][str(course_id)] = {
            "id": course_id, "name": f"{subject} ({course_index + 1})",
            "course_code": f"{subject[:4].upper()}-{course_index + 1}",
            "sis_course_id": f"PS-COURSE-{course_index + 1}", "workflow_state": "available", "account_id": 1,
            "enrollment_term_id": 1, "start_at": None, "end_at": None, "time_zone": TIME_ZONE,
            "grading_standard_id": None, "default_view": "modules",
        }
        students_in_course: list[int] = []
        for section_index in range(shape.sections):
            section_dcid = next(next_ps)
            roster: list[int] = []
            section_id = next(next_canvas)
            canvas["sections"][str(section_id)] = {
                "id": section_id, "name": f"Period {section_index + 1}", "course_id": course_id,
                "nonxlist_course_id": None, "start_at": None, "end_at": None,
                "restrict_enrollments_to_section_dates": False, "sis_section_id": str(section_dcid),
                "sis_course_id": f"PS-COURSE-{course_index + 1}", "integration_id": None,
            }
            for _ in range(shape.students):
                dcid = next(next_ps)
                number = next(student_number)
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                ps["students"][str(dcid)] = {"id": dcid, "local_id": number, "student_username": f"s{number}",
                                             "name": {"first_name": first, "last_name": last}, "school_id": 1}
                roster.append(dcid)
                user_id = next(next_canvas)
                canvas["users"][str(user_id)] = {
                    "id": user_id, "name": f"{first} {last}", "sortable_name": f"{last}, {first}",
                    "short_name": f"{first} {last}", "sis_user_id": str(number), "integration_id": None,
                    "login_id": f"s{number}",
                }
                enrollment_id = next(next_canvas)
                canvas["enrollments"][str(enrollment_id)] = {
                    "id": enrollment_id, "course_id": course_id, "course_section_id": section_id,
                    "user_id": user_id, "type": "StudentEnrollment", "role": "StudentEnrollment",
                    "enrollment_state": "active", "sis_section_id": str(section_dcid),
                }
                students_in_course.append(user_id)
            if section_index == 0:
                first_sections.append(canvas["sections"][str(section_id)])
            ps["sections"][str(section_dcid)] = {
                "id": section_dcid, "school_id": 1, "course_id": 900 + course_index, "staff_id": teacher,
                "term_id": 3401, "section_number": str(section_index + 1),
                "expression": f"{section_index + 1}(A)", "students": roster,
            }
        groups: dict[str, int] = {}
        for position, name in enumerate(CATEGORIES, start=1):
            group_id = next(next_canvas)
            groups[name] = group_id
            canvas["assignment_groups"][str(group_id)] = {
                "id": group_id, "course_id": course_id, "name": name, "position": position,
                "group_weight": 25.0, "sis_source_id": str(category_ids[name]),
                "integration_data": {"powerschool": {"teachercategoryid": category_ids[name]}}, "rules": {},
            }
        practice = next(next_canvas)
        canvas["assignment_groups"][str(practice)] = {
            "id": practice, "course_id": course_id, "name": "Extra Practice", "position": 5, "group_weight": 0.0,
            "sis_source_id": None, "integration_data": {}, "rules": {},
        }
        span = (date(2026, 11, 20) - TERM_START).days
        for index in range(shape.assignments):
            label, group_name, points = KINDS[index % len(KINDS)]
            number = index // len(KINDS) + 1
            due = TERM_START + timedelta(days=10 + (span - 10) * index // max(shape.assignments, 1))
            grading = "points"
            if index % 7 == 5:
                grading = "percent"
            elif index % 11 == 9:
                grading = "pass_fail"
            assignment_id = next(next_canvas)
            canvas["assignments"][str(assignment_id)] = _assignment(
                assignment_id, course_id, f"{label} {number}", f"<p>{label} {number} for {subject}.</p>",
                _due(due), points, grading, groups[group_name],
            )
            _grade_all(canvas, rng, assignment_id, students_in_course, points, grading)
        if shape.broken and course_index == 0:
            broken = [
                (LONG_NAME, 25.0, groups["Projects"], True),   # seed error 9
                ("Reading Log", None, groups["Homework"], True),  # seed error 5
                ("Bonus Puzzle", 5.0, practice, True),         # seed error 1
                ("Study Guide", 10.0, groups["Homework"], False),  # sync switch off: skipped
            ]
            for offset, (name, points, group, sync) in enumerate(broken):
                assignment_id = next(next_canvas)
                row = _assignment(assignment_id, course_id, name, "", _due(date(2026, 10, 1) + timedelta(days=offset)),
                                  points, "points", group)
                row["post_to_sis"] = sync
                canvas["assignments"][str(assignment_id)] = row
                _grade_all(canvas, rng, assignment_id, students_in_course, points or 10.0, "points")
    _add_staff(canvas, next_canvas, first_sections)
    canvas["next_id"] = next(next_canvas)
    ps["next_id"] = next(next_ps) + 100_000
    return canvas, ps, credentials


def _add_staff(canvas: dict[str, Any], next_canvas: Any, first_sections: list[dict[str, Any]]) -> None:
    """The Canvas users who launch passback: a teacher per course, a TA in the first, an account admin.

    Made after everything else, so the students, courses and assignments keep the ids they
    always had; nothing here draws on the district's random numbers. Staff have no SIS id
    (the SIS sync matches students only) and are in the course's first section, as Canvas
    puts a teacher added to an SIS course.
    """

    def user(login_id: str, first: str, last: str) -> int:
        user_id = next(next_canvas)
        canvas["users"][str(user_id)] = {
            "id": user_id, "name": f"{first} {last}", "sortable_name": f"{last}, {first}",
            "short_name": f"{first} {last}", "sis_user_id": None, "integration_id": None, "login_id": login_id,
            "email": f"{login_id}@sandbox-district.example",
        }
        return user_id

    def enroll(user_id: int, section: dict[str, Any], kind: str) -> None:
        enrollment_id = next(next_canvas)
        canvas["enrollments"][str(enrollment_id)] = {
            "id": enrollment_id, "course_id": section["course_id"], "course_section_id": section["id"],
            "user_id": user_id, "type": kind, "role": kind, "enrollment_state": "active",
            "sis_section_id": section["sis_section_id"],
        }

    for index, section in enumerate(first_sections, start=1):
        enroll(user(f"teacher{index}", "Teacher", str(index)), section, "TeacherEnrollment")
    if first_sections:
        enroll(user("ta1", "Assistant", "1"), first_sections[0], "TaEnrollment")
    admin = user("admin", "District", "Admin")
    account_user = next(next_canvas)
    canvas.setdefault("account_users", {})[str(account_user)] = {
        "id": account_user, "account_id": 1, "user_id": admin, "role": "AccountAdmin", "workflow_state": "active"}


def _assignment(assignment_id: int, course_id: int, name: str, description: str, due_at: str,
                points: float | None, grading: str, group_id: int) -> dict[str, Any]:
    return {
        "id": assignment_id, "course_id": course_id, "name": name, "description": description,
        "created_at": "2026-08-01T12:00:00Z", "updated_at": "2026-08-01T12:00:00Z", "due_at": due_at,
        "unlock_at": None, "lock_at": None, "points_possible": points, "grading_type": grading,
        "assignment_group_id": group_id, "post_to_sis": True, "published": True,
        "only_visible_to_overrides": False, "omit_from_final_grade": False, "grading_standard_id": None,
        "position": assignment_id, "submission_types": ["online_text_entry"], "integration_id": None,
        "integration_data": {}, "sis_assignment_id": None, "due_date_required": True, "max_name_length": 30,
        "overrides": [],
    }


def _stamps(due_at: str) -> tuple[str, str]:
    """When an assignment's work was handed in and graded: the evening before it was due, and the next day.

    Spread over the term as the due dates are (and never after today), as a real
    gradebook's are: an incremental read of the submissions graded since the last run
    then finds only what changed.
    """
    due = datetime.fromisoformat(due_at.replace("Z", "+00:00"))
    submitted = due - timedelta(hours=20)
    graded = datetime.combine(due.date() + timedelta(days=1), time(15, 0), tzinfo=UTC)
    return submitted.strftime("%Y-%m-%dT%H:%M:%SZ"), graded.strftime("%Y-%m-%dT%H:%M:%SZ")


def _grade_all(canvas: dict[str, Any], rng: random.Random, assignment_id: int, students: list[int],
               points: float, grading: str) -> None:
    submitted_at, graded_at = _stamps(canvas["assignments"][str(assignment_id)]["due_at"])
    for user_id in students:
        roll = rng.random()
        base = {
            "id": assignment_id * 100_000 + user_id, "user_id": user_id, "assignment_id": assignment_id,
            "score": None, "grade": None, "entered_score": None, "entered_grade": None, "excused": False,
            "attempt": None, "submitted_at": None, "graded_at": None, "grader_id": None,
            "grade_matches_current_submission": True, "workflow_state": "unsubmitted",
            "late_policy_status": None, "points_deducted": None, "posted_at": None, "late": False,
            "missing": False, "seconds_late": 0, "submission_type": None,
        }
        if roll < 0.04:
            base.update(missing=True, late_policy_status="missing")
        elif roll < 0.06:
            base.update(excused=True, workflow_state="graded", graded_at=graded_at)
        elif roll < 0.08:
            base.update(attempt=1, submitted_at=submitted_at, workflow_state="submitted",
                        submission_type="online_text_entry")
        else:
            late = roll > 0.95
            if grading == "pass_fail":
                complete = rng.random() < 0.85
                score, grade = (points if complete else 0.0), ("complete" if complete else "incomplete")
            else:
                score = round(rng.uniform(0.55, 1.0) * points * 2) / 2
                grade = f"{round(score / points * 100, 2):g}%" if grading == "percent" else f"{score:g}"
            base.update(score=score, grade=grade, entered_score=score, entered_grade=grade, attempt=1,
                        submitted_at=submitted_at, graded_at=graded_at,
                        posted_at=graded_at, workflow_state="graded", late=late,
                        seconds_late=3600 if late else 0, late_policy_status="late" if late else None,
                        submission_type="online_text_entry")
        canvas["submissions"][f"{assignment_id}:{user_id}"] = base


def schoology_from_canvas(canvas: dict[str, Any], consumer_key: str = "sandbox-schoology",
                          consumer_secret: str = "sandbox-schoology-secret") -> dict[str, Any]:
    """The same district as a Schoology school: one section gradebook per Canvas section.

    Categories carry the Canvas group names but no link to PowerSchool: in Schoology they
    are mapped per course (seed 001, step C). Grades copy the Canvas submissions (excused
    -> exception 1; a missing submission has no grade: Schoology documents no missing exception).
    """
    from passback.emulators.schoology import empty_state as empty_schoology

    state = empty_schoology()
    ids = iter(range(700_001, 10**8))
    teacher = next(ids)
    state["consumers"][consumer_key] = {"secret": consumer_secret, "uid": teacher}
    state["users"][str(teacher)] = {"uid": str(teacher), "id": teacher, "school_uid": "T-1", "name_first": "Sandbox",
                                    "name_last": "Teacher", "tz_name": TIME_ZONE}
    term = canvas["terms"]["1"]
    period = next(ids)
    state["grading_periods"][str(period)] = {"id": period, "title": term["name"], "weight": 100,
                                             "start": f"{TERM_START.isoformat()} 00:00:00",
                                             "end": f"{TERM_END.isoformat()} 00:00:00"}
    students = {e["user_id"] for e in canvas["enrollments"].values() if e["type"] == "StudentEnrollment"}
    for user in canvas["users"].values():
        if user["id"] not in students:
            continue  # Canvas's teachers, TAs and admins are not in the Schoology copy
        name_last, _, name_first = user["sortable_name"].partition(", ")
        state["users"][str(user["id"])] = {"uid": str(user["id"]), "id": user["id"], "school_uid": user["sis_user_id"],
                                           "name_first": name_first, "name_last": name_last, "tz_name": TIME_ZONE}
    zone = ZoneInfo(TIME_ZONE)
    for section in sorted(canvas["sections"].values(), key=lambda s: s["id"]):
        course = canvas["courses"][str(section["course_id"])]
        section_id = str(next(ids))
        state["sections"][section_id] = {
            "id": section_id, "course_title": course["name"], "course_code": course["course_code"],
            "course_id": str(course["id"]), "school_id": "1", "section_title": section["name"], "section_code": "",
            "section_school_code": section["sis_section_id"], "active": 1, "grading_periods": [period],
            "teacher_uid": teacher,
        }
        enrollment_of: dict[int, str] = {}
        for enrollment in sorted(canvas["enrollments"].values(), key=lambda e: e["id"]):
            if enrollment["course_section_id"] != section["id"] or enrollment["type"] != "StudentEnrollment":
                continue
            enrollment_id = str(next(ids))
            enrollment_of[enrollment["user_id"]] = enrollment_id
            state["enrollments"][enrollment_id] = {"id": enrollment_id, "uid": enrollment["user_id"],
                                                   "section_id": section_id, "admin": 0, "status": "1"}
        category_of: dict[int, int] = {}
        for group in sorted(canvas["assignment_groups"].values(), key=lambda g: g["id"]):
            if group["course_id"] != course["id"]:
                continue
            category_id = next(ids)
            category_of[group["id"]] = category_id
            state["grading_categories"][str(category_id)] = {
                "id": category_id, "section_id": section_id, "title": group["name"], "delta": group["position"],
                "calculation_type": 2, "weight": int(group["group_weight"])}
        for assignment in sorted(canvas["assignments"].values(), key=lambda a: a["id"]):
            if assignment["course_id"] != course["id"]:
                continue
            assignment_id = next(ids)
            due = datetime.fromisoformat(assignment["due_at"].replace("Z", "+00:00")).astimezone(zone)
            points = assignment["points_possible"]
            state["assignments"][str(assignment_id)] = {
                "id": assignment_id, "section_id": section_id, "title": assignment["name"],
                "description": assignment["description"] or "", "due": due.strftime("%Y-%m-%d %H:%M:%S"),
                "grading_scale": "0", "grading_period": str(period),
                "grading_category": str(category_of.get(assignment["assignment_group_id"], 0)),
                "max_points": "" if points is None else f"{points:g}", "factor": "1", "is_final": "0",
                "published": 1, "type": "assignment", "grade_item_id": assignment_id, "count_in_grade": 1,
                "assignees": [], "grading_group_ids": [], "web_url": f"https://app.schoology.com/assignment/{assignment_id}",
            }
            for user_id, enrollment_id in enrollment_of.items():
                submission = canvas["submissions"].get(f"{assignment['id']}:{user_id}")
                if submission is None:
                    continue
                if submission["excused"]:
                    exception, grade = 1, None
                elif submission["score"] is not None and not submission["missing"]:
                    exception, grade = 0, float(submission["score"])
                else:
                    continue
                state["grades"][f"{assignment_id}:{enrollment_id}"] = {
                    "enrollment_id": int(enrollment_id), "assignment_id": assignment_id, "grade": grade,
                    "exception": exception, "timestamp": 1793000000, "comment": ""}
    state["next_id"] = next(ids)
    return state
