"""The generated district as a OneRoster server holds it: what a SIS serving OneRoster shows passback.

Built from the Canvas side of :func:`passback.sandbox.district.generate`, as the SIS that fed
Canvas would hold it: a class per Canvas section whose ``sourcedId`` is the section's SIS id,
a user per student whose ``sourcedId`` (and ``identifier``) is the student's SIS id, a student
enrollment per Canvas student enrollment, and the categories the Canvas assignment groups
were imported from (``sourcedId`` = the group's ``sis_source_id``: Homework, Quizzes, Tests,
Projects of each course's teacher, as PowerSchool's OneRoster lists its teacher categories),
plus one category no longer in use ("Participation", ``tobedeleted``). The term is split in
two grading periods; a teacher per course is rostered too. Fixed ids: the same district
gives the same state.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from passback.emulators.oneroster import empty_state
from passback.sandbox.district import TERM_END, TERM_START

CLIENT_ID, CLIENT_SECRET = "sandbox-oneroster", "sandbox-oneroster-secret"
DISTRICT, SCHOOL = "ORG-DISTRICT", "ORG-SCHOOL-100"
YEAR, TERM, PERIODS = "AS-2026-2027", "AS-S1-2026", ("AS-S1-Q1", "AS-S1-Q2")
INACTIVE_CATEGORY = "CAT-PARTICIPATION"
STAMP = "2026-08-01T12:00:00.000Z"


def _ref(sourced_id: str, kind: str, plural: str) -> dict[str, str]:
    service = "gradebook" if kind == "category" else "rostering"
    return {"href": f"/ims/oneroster/{service}/v1p2/{plural}/{sourced_id}", "sourcedId": sourced_id, "type": kind}


def _org(sourced_id: str, name: str, kind: str, parent: str | None) -> dict[str, Any]:
    return {"sourcedId": sourced_id, "status": "active", "dateLastModified": STAMP, "name": name, "type": kind,
            "identifier": sourced_id, "parent": _ref(parent, "org", "orgs") if parent else None, "children": []}


def _session(sourced_id: str, title: str, kind: str, start: date, end: date, parent: str | None) -> dict[str, Any]:
    return {"sourcedId": sourced_id, "status": "active", "dateLastModified": STAMP, "title": title, "type": kind,
            "startDate": start.isoformat(), "endDate": end.isoformat(), "schoolYear": "2027",
            "parent": _ref(parent, "academicSession", "academicSessions") if parent else None, "children": []}


def oneroster_from_canvas(canvas: dict[str, Any], client_id: str = CLIENT_ID,
                          client_secret: str = CLIENT_SECRET) -> dict[str, Any]:
    state = empty_state()
    state["clients"][client_id] = client_secret
    state["orgs"][DISTRICT] = _org(DISTRICT, "Sandbox District", "district", None)
    state["orgs"][SCHOOL] = _org(SCHOOL, "Sandbox High School", "school", DISTRICT)
    state["orgs"][DISTRICT]["children"] = [_ref(SCHOOL, "org", "orgs")]
    middle = TERM_START + timedelta(days=(TERM_END - TERM_START).days // 2)
    state["academicSessions"][YEAR] = _session(YEAR, "2026-2027", "schoolYear", TERM_START, TERM_END, None)
    state["academicSessions"][TERM] = _session(TERM, canvas["terms"]["1"]["name"], "term", TERM_START, TERM_END, YEAR)
    state["academicSessions"][PERIODS[0]] = _session(PERIODS[0], "Quarter 1", "gradingPeriod", TERM_START, middle, TERM)
    state["academicSessions"][PERIODS[1]] = _session(PERIODS[1], "Quarter 2", "gradingPeriod",
                                                     middle + timedelta(days=1), TERM_END, TERM)
    state["academicSessions"][TERM]["children"] = [_ref(p, "academicSession", "academicSessions") for p in PERIODS]
    school, term = _ref(SCHOOL, "org", "orgs"), _ref(TERM, "academicSession", "academicSessions")
    students = {e["user_id"] for e in canvas["enrollments"].values() if e["type"] == "StudentEnrollment"}
    for user in sorted(canvas["users"].values(), key=lambda u: u["id"]):
        if user["id"] not in students or not user.get("sis_user_id"):
            continue
        family, _, given = user["sortable_name"].partition(", ")
        sis = str(user["sis_user_id"])
        state["users"][sis] = {
            "sourcedId": sis, "status": "active", "dateLastModified": STAMP, "username": user.get("login_id") or sis,
            "userIds": [{"type": "SIS", "identifier": sis}], "enabledUser": "true", "givenName": given,
            "familyName": family, "middleName": "", "role": "student", "identifier": sis, "email": "", "sms": "",
            "phone": "", "agents": [], "orgs": [school], "grades": ["09"],
        }
    for course in sorted(canvas["courses"].values(), key=lambda c: c["id"]):
        course_key = str(course.get("sis_course_id") or f"COURSE-{course['id']}")
        state["courses"][course_key] = {
            "sourcedId": course_key, "status": "active", "dateLastModified": STAMP, "title": course["name"],
            "schoolYear": _ref(YEAR, "academicSession", "academicSessions"), "courseCode": course["course_code"],
            "grades": ["09"], "subjects": [], "org": school,
        }
        teacher = f"T-{course_key}"
        state["users"][teacher] = {
            "sourcedId": teacher, "status": "active", "dateLastModified": STAMP, "username": teacher.lower(),
            "userIds": [], "enabledUser": "true", "givenName": "Teacher", "familyName": course["name"],
            "middleName": "", "role": "teacher", "identifier": teacher, "email": "", "sms": "", "phone": "",
            "agents": [], "orgs": [school], "grades": [],
        }
        for section in sorted((s for s in canvas["sections"].values() if s["course_id"] == course["id"]),
                              key=lambda s: s["id"]):
            class_id = str(section["sis_section_id"])
            state["classes"][class_id] = {
                "sourcedId": class_id, "status": "active", "dateLastModified": STAMP,
                "title": f"{course['name']} - {section['name']}", "classCode": f"{course['course_code']}-{class_id}",
                "classType": "scheduled", "location": "", "grades": ["09"], "subjects": [],
                "course": _ref(course_key, "course", "courses"), "school": school, "terms": [term], "periods": [],
            }
            _enroll(state, f"E-{class_id}-{teacher}", class_id, teacher, "teacher")
            for enrollment in sorted(canvas["enrollments"].values(), key=lambda e: e["id"]):
                if enrollment["course_section_id"] != section["id"] or enrollment["type"] != "StudentEnrollment":
                    continue
                sis = str(canvas["users"][str(enrollment["user_id"])].get("sis_user_id") or "")
                if sis in state["users"]:
                    _enroll(state, f"E-{class_id}-{sis}", class_id, sis, "student")
    for group in sorted(canvas["assignment_groups"].values(), key=lambda g: g["id"]):
        if group.get("sis_source_id"):
            key = str(group["sis_source_id"])
            state["categories"][key] = {"sourcedId": key, "status": "active", "dateLastModified": STAMP,
                                        "title": group["name"], "weight": float(group.get("group_weight") or 0)}
    state["categories"][INACTIVE_CATEGORY] = {"sourcedId": INACTIVE_CATEGORY, "status": "tobedeleted",
                                              "dateLastModified": STAMP, "title": "Participation", "weight": 0.0}
    return state


def _enroll(state: dict[str, Any], sourced_id: str, class_id: str, user: str, role: str) -> None:
    state["enrollments"][sourced_id] = {
        "sourcedId": sourced_id, "status": "active", "dateLastModified": STAMP,
        "user": _ref(user, "user", "users"), "class": _ref(class_id, "class", "classes"),
        "school": _ref(SCHOOL, "org", "orgs"), "role": role, "primary": "true" if role == "teacher" else "false",
        "beginDate": TERM_START.isoformat(), "endDate": TERM_END.isoformat(),
    }
