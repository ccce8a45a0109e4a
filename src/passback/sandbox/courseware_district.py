"""A generated courseware district (S4): courses of pages and activities, students part way through.

The same seed gives the same state, byte for byte. Each course has one section whose
``sis_id`` is a PowerSchool section DCID, and students whose ``sis_id`` is their
PowerSchool student number, so :func:`powerschool_for` can build the PowerSchool side
that matches it (sections, rosters, the teacher and the teacher's categories).

Pages start at 0 points, as in seed 002's example, where the instructor gives every page
five points only after students have started. Students are spread so every case of the
course score shows: the first student of a course has not started, the second has
completed no page but attempted a quiz, the rest completed the first pages (a random
number of them) and attempted the activities on those pages, some quizzes twice, some
assignments not scored yet.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from passback.emulators.courseware import empty_state as empty_courseware
from passback.emulators.powerschool import empty_state as empty_powerschool
from passback.sandbox.district import FIRST_NAMES, LAST_NAMES, SUBJECTS, TERM_END, TERM_START, TIME_ZONE

ACTIVITY_KINDS = (("quiz", 10.0), ("poll", 0.0), ("assignment", 20.0), ("quiz", 5.0), ("poll", 2.0))
COURSE_DUE = date(2026, 12, 11)
CATEGORIES = ("Courseware", "Homework", "Tests")
FIRST_STUDENT_NUMBER = 300001
FIRST_SECTION_DCID = 8001


def _stamp(day_offset: int, minute: int = 0) -> str:
    day = TERM_START + timedelta(days=day_offset)
    return f"{day.isoformat()}T{14 + minute // 60:02d}:{minute % 60:02d}:00Z"


def generate_courseware(seed: int = 5, courses: int = 1, students: int = 8, pages: int = 6,
                        activities: int = 5) -> dict[str, Any]:
    """The courseware emulator's state: ``courses`` courses, each with its pages, activities and students."""
    rng = random.Random(seed)
    state = empty_courseware()
    state["tokens"][f"sandbox-courseware-{rng.getrandbits(64):016x}"] = {"role": "admin"}
    ids = iter(range(101, 10**8))
    numbers = iter(range(FIRST_STUDENT_NUMBER, 10**8))
    for index in range(courses):
        subject = SUBJECTS[index % len(SUBJECTS)]
        course_id, section_id = next(ids), next(ids)
        state["courses"][str(course_id)] = {
            "id": course_id, "title": f"{subject} Interactive Text", "code": f"CW-{subject[:4].upper()}-{index + 1}",
            "sis_course_id": f"PS-COURSE-{index + 1}", "gradebook_title": f"{subject} courseware"[:30],
            "passback_mode": "automatic" if index % 2 == 0 else "manual", "time_zone": TIME_ZONE,
            "due_date": COURSE_DUE.isoformat(),
            "term": {"name": "Semester 1 2026-2027", "start_date": TERM_START.isoformat(),
                     "end_date": TERM_END.isoformat()},
            "sections": [{"id": section_id, "name": "Period 1", "sis_id": str(FIRST_SECTION_DCID + index)}],
        }
        page_ids = []
        for position in range(1, pages + 1):
            page_id = next(ids)
            page_ids.append(page_id)
            state["pages"][str(page_id)] = {"id": page_id, "course_id": course_id, "title": f"Lesson {position}",
                                            "position": position, "points": 0.0}
        activity_rows = []
        for number in range(activities):
            kind, points = ACTIVITY_KINDS[number % len(ACTIVITY_KINDS)]
            activity_id = next(ids)
            row = {"id": activity_id, "course_id": course_id, "page_id": page_ids[number % len(page_ids)],
                   "title": f"{kind.title()} {number + 1}", "kind": kind, "points_possible": points}
            state["activities"][str(activity_id)] = row
            activity_rows.append(row)
        instructor = next(ids)
        state["users"][str(instructor)] = {"id": instructor, "name": f"Teacher {index + 1}",
                                           "sortable_name": f"{index + 1}, Teacher", "sis_id": None}
        _enroll(state, next(ids), course_id, instructor, "instructor", section_id)
        for student_index in range(students):
            user_id = next(ids)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            state["users"][str(user_id)] = {"id": user_id, "name": f"{first} {last}", "sortable_name": f"{last}, {first}",
                                            "sis_id": str(next(numbers))}
            _enroll(state, next(ids), course_id, user_id, "student", section_id)
            _work(state, rng, ids, student_index, user_id, page_ids, activity_rows)
    state["next_id"] = next(ids) + 10_000
    return state


def _enroll(state: dict[str, Any], enrollment_id: int, course_id: int, user_id: int, role: str,
            section_id: int) -> None:
    state["enrollments"][str(enrollment_id)] = {"id": enrollment_id, "course_id": course_id, "user_id": user_id,
                                                "role": role, "section_id": section_id, "status": "active"}


def _work(state: dict[str, Any], rng: random.Random, ids: Any, student_index: int, user_id: int,
          page_ids: list[int], activity_rows: list[dict[str, Any]]) -> None:
    """What one student has done so far: see the module docstring for the spread."""
    if student_index == 0:
        return  # not started
    if student_index == 1:
        quiz = next((a for a in activity_rows if a["kind"] == "quiz"), None)
        if quiz is not None:
            _attempt(state, next(ids), quiz, user_id, 1, round(quiz["points_possible"] * 0.7 * 2) / 2, _stamp(3))
        return
    done = rng.randint(1, len(page_ids))
    for offset, page_id in enumerate(page_ids[:done]):
        state["completions"][f"{page_id}:{user_id}"] = {"page_id": page_id, "user_id": user_id,
                                                        "completed_at": _stamp(2 + offset, student_index)}
    for activity in activity_rows:
        if activity["page_id"] not in page_ids[:done]:
            continue
        possible = activity["points_possible"]
        tries = 2 if activity["kind"] == "quiz" and rng.random() < 0.3 else 1
        for number in range(1, tries + 1):
            if activity["kind"] == "poll":
                score: float | None = possible
            elif activity["kind"] == "assignment" and rng.random() < 0.2:
                score = None  # submitted, not scored yet
            else:
                score = round(rng.uniform(0.4, 1.0) * possible * 2) / 2
            _attempt(state, next(ids), activity, user_id, number, score, _stamp(3 + number, student_index))


def _attempt(state: dict[str, Any], attempt_id: int, activity: dict[str, Any], user_id: int, number: int,
             score: float | None, at: str) -> None:
    state["attempts"][str(attempt_id)] = {
        "id": attempt_id, "activity_id": activity["id"], "user_id": user_id, "attempt": number, "score": score,
        "points_possible_at_attempt": activity["points_possible"], "submitted_at": at}


def courseware_token(state: dict[str, Any]) -> str:
    """The admin token the generator made (the one a sandbox connection uses)."""
    return next(token for token, row in state["tokens"].items() if row.get("role") == "admin")


def powerschool_for(courseware: dict[str, Any], client_id: str = "sandbox-plugin-courseware",
                    client_secret: str = "sandbox-courseware-secret") -> dict[str, Any]:
    """The PowerSchool that matches a courseware state: its sections, rosters, teachers and categories.

    Each courseware section's ``sis_id`` is a PowerSchool section DCID; each student's
    ``sis_id`` is a PowerSchool student number (``local_id``). Each course's teacher has
    the active categories in :data:`CATEGORIES`, "Courseware" first.
    """
    ps = empty_powerschool()
    ps["clients"][client_id] = client_secret
    ps["terms"]["3401"] = {"id": 3401, "yearid": 34, "name": "Semester 1 2026-2027", "abbreviation": "S1",
                           "firstday": TERM_START.isoformat(), "lastday": TERM_END.isoformat()}
    ps["schools"]["1"] = {"id": 1, "name": "Sandbox High School", "school_number": 100}
    ids = iter(range(20_001, 10**8))
    students = {u["id"]: u for u in courseware["users"].values() if u.get("sis_id")}
    dcid_of: dict[int, int] = {}
    for course in sorted(courseware["courses"].values(), key=lambda c: c["id"]):
        teacher = next(ids)
        ps["teachers"][str(teacher)] = {"users_dcid": teacher, "name": f"Teacher of {course['title']}"}
        for position, name in enumerate(CATEGORIES, start=1):
            category_id = next(ids)
            ps["categories"][str(category_id)] = {
                "_name": "teachercategory", "teachercategoryid": category_id, "id": category_id, "name": name,
                "description": "", "categorytype": "district", "usersdcid": teacher, "color": str(position),
                "displayposition": position, "isactive": True, "isinfinalgrades": True,
                "defaultscoretype": "POINTS", "defaultscoreentrypoints": 10, "defaulttotalvalue": 10,
                "defaultextracreditpoints": 0, "defaultweight": 1,
            }
        for section in course["sections"]:
            roster = []
            for enrollment in sorted(courseware["enrollments"].values(), key=lambda e: e["id"]):
                if enrollment["section_id"] != section["id"] or enrollment["role"] != "student":
                    continue
                user = students[enrollment["user_id"]]
                if user["id"] not in dcid_of:
                    dcid = dcid_of[user["id"]] = next(ids)
                    first, _, last = user["name"].partition(" ")
                    ps["students"][str(dcid)] = {"id": dcid, "local_id": int(user["sis_id"]),
                                                 "student_username": f"s{user['sis_id']}",
                                                 "name": {"first_name": first, "last_name": last}, "school_id": 1}
                roster.append(dcid_of[user["id"]])
            dcid = int(section["sis_id"])
            ps["sections"][str(dcid)] = {"id": dcid, "school_id": 1, "course_id": 900 + course["id"],
                                         "staff_id": teacher, "term_id": 3401, "section_number": "1",
                                         "expression": "1(A)", "students": roster}
    ps["next_id"] = next(ids) + 100_000
    return ps


def lms_course_for(canvas: Any, courseware: dict[str, Any], course_id: str, name: str = "Chemistry") -> int:
    """The LMS course a courseware course is used in, added to the Canvas emulator ``canvas``
    (its ``CanvasEmulator``): the courseware's students, by SIS id, in one section. Returns its id."""
    state = canvas.state
    course, section = canvas.new_id(), canvas.new_id()
    sis_course, sis_section = f"CW-{course_id}", f"CW-{course_id}-1"
    state["courses"][str(course)] = {
        "id": course, "name": name, "course_code": sis_course, "sis_course_id": sis_course,
        "workflow_state": "available", "account_id": 1, "enrollment_term_id": 1, "start_at": None, "end_at": None,
        "time_zone": TIME_ZONE, "grading_standard_id": None, "default_view": "modules"}
    state["sections"][str(section)] = {
        "id": section, "name": "Period 1", "course_id": course, "nonxlist_course_id": None, "start_at": None,
        "end_at": None, "restrict_enrollments_to_section_dates": False, "sis_section_id": sis_section,
        "sis_course_id": sis_course, "integration_id": None}
    for enrollment in courseware["enrollments"].values():
        if str(enrollment["course_id"]) != str(course_id) or enrollment["role"] != "student":
            continue
        student = courseware["users"][str(enrollment["user_id"])]
        user_id, enrollment_id = canvas.new_id(), canvas.new_id()
        state["users"][str(user_id)] = {"id": user_id, "name": student["name"], "sortable_name": student["sortable_name"],
                                        "short_name": student["name"], "sis_user_id": student["sis_id"],
                                        "integration_id": None, "login_id": f"cw{student['sis_id']}"}
        state["enrollments"][str(enrollment_id)] = {
            "id": enrollment_id, "course_id": course, "course_section_id": section, "user_id": user_id,
            "type": "StudentEnrollment", "role": "StudentEnrollment", "enrollment_state": "active",
            "sis_section_id": sis_section}
    return course
