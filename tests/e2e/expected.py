"""What the PowerTeacher Pro emulator must hold after a sync, computed from the raw Canvas
data with none of passback's code: the seed's rules and tables applied by hand."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

TITLE_LIMIT = 30


def _valid(assignment: dict[str, Any], canvas: dict[str, Any]) -> bool:
    course = canvas["courses"][str(assignment["course_id"])]
    term = canvas["terms"][str(course["enrollment_term_id"])]
    group = canvas["assignment_groups"].get(str(assignment["assignment_group_id"]))
    if not (assignment["published"] and assignment["post_to_sis"]):
        return False
    if assignment["points_possible"] is None or len(assignment["name"]) > TITLE_LIMIT:
        return False
    if group is None or group["sis_source_id"] is None or assignment["only_visible_to_overrides"]:
        return False
    due = datetime.fromisoformat(assignment["due_at"].replace("Z", "+00:00"))
    start = date.fromisoformat(term["start_at"][:10])
    end = date.fromisoformat(term["end_at"][:10])
    return start <= due.astimezone(ZoneInfo(course["time_zone"])).date() <= end


def expected_destination_scores(canvas: dict[str, Any],
                                powerschool: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(assignment name, section dcid, student dcid) -> the score PowerTeacher Pro must hold."""
    dcid_by_number = {str(s["local_id"]): s["id"] for s in powerschool["students"].values()}
    expected: dict[tuple[str, str, int], dict[str, Any]] = {}
    for assignment in canvas["assignments"].values():
        if not _valid(assignment, canvas):
            continue
        for submission in canvas["submissions"].values():
            if submission["assignment_id"] != assignment["id"]:
                continue
            enrollment = next(e for e in canvas["enrollments"].values()
                              if e["user_id"] == submission["user_id"] and e["course_id"] == assignment["course_id"])
            section_dcid = canvas["sections"][str(enrollment["course_section_id"])]["sis_section_id"]
            student = dcid_by_number[canvas["users"][str(submission["user_id"])]["sis_user_id"]]
            key = (assignment["name"], section_dcid, student)
            if submission["excused"]:
                expected[key] = {"scorepoints": None, "islate": False, "isexempt": True}
            elif submission["missing"] or submission["score"] is None:
                continue  # Missing: does not pass, displays as blank. Ungraded: nothing to send.
            elif submission["grade_matches_current_submission"]:
                expected[key] = {"scorepoints": float(submission["score"]), "islate": bool(submission["late"]),
                                 "isexempt": False}
    return expected


def held_destination_scores(powerschool: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    sections = {}
    for assignment in powerschool["assignments"].values():
        for section in assignment["_assignmentsections"]:
            sections[section["assignmentsectionid"]] = (section["name"], str(section["sectionsdcid"]))
    held = {}
    for score in powerschool["scores"].values():
        name, section = sections[score["assignmentsectionid"]]
        held[(name, section, score["studentsdcid"])] = {
            "scorepoints": score["scorepoints"], "islate": score["islate"], "isexempt": score["isexempt"]}
    return held


def destination_assignment_names(powerschool: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((s["name"], str(s["sectionsdcid"])) for a in powerschool["assignments"].values()
                  for s in a["_assignmentsections"])
