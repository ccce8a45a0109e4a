"""Hostile Canvas data through the whole pipeline: Canvas emulator -> sync service -> PowerSchool emulator.

A small valid district is generated once; hypothesis adds hostile records to its Canvas side
(nulls where values belong, negative and huge numbers, numbers that are no numbers, names of 0
and 10,000 characters, RTL text, emoji, combining marks and NUL, ids listed twice, enrollments
without a section or in one that does not exist, garbled due dates) and each example is synced
by :func:`passback.services.runs.sync_courses`, as a district runs it.

For every example:

* the run finishes (succeeded or completed with errors, never failed);
* every item that did not sync is an error or a skip with a catalogue code, and every hostile
  record is accounted for by one (or, for a row the source cannot even key, by a
  ``source-row-unreadable`` error naming the row);
* every valid score no mutation touched is in PowerTeacher Pro with the value seed 000's table
  gives (points pass as points, percentages as their share of the points), worked out here
  from the raw Canvas data; a touched one is either there with that value or explained by an
  item; nothing else is there, so nothing landed on the wrong student.

The same holds after the valid district was synced once (the second property test): then no
hostile record may delete or clear a grade written before, whether the run reads the course
whole or only what changed since the last run. The records hypothesis found the product failing
on are kept below as named cases.

One served emulator pair serves the whole module: each example replaces their state and
starts from a copy of one migrated SQLite store. Examples are derandomized: a failure replays.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import math
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from passback.emulators import canvas as canvas_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.rules.catalogue import CATALOGUE
from passback.sandbox.district import DistrictShape, generate
from passback.services.runs import Route, sync_courses
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store, make_engine, migrate
from passback.store.history import get_run_items
from passback.vault import load_key
from tests.conftest import ServedApp
from tests.e2e.expected import expected_destination_scores, held_destination_scores

ROUTE = Route("lms", "sis")
# Six assignments: four points ones and one graded as a percentage (generate's index 5).
SHAPE = DistrictShape(courses=1, sections=2, students=6, assignments=6, seed=5, broken=False)
BASE_CANVAS, BASE_PS, CREDENTIALS = generate(SHAPE)
CHICAGO, KIRITIMATI = ZoneInfo("America/Chicago"), ZoneInfo("Pacific/Kiritimati")

# --- the valid district, read from its raw state -------------------------------------------------

COURSE = next(iter(BASE_CANVAS["courses"].values()))
C = COURSE["id"]
SECTIONS = sorted((s for s in BASE_CANVAS["sections"].values() if s["course_id"] == C), key=lambda s: s["id"])
DCID_BY_NUMBER = {str(s["local_id"]): s["id"] for s in BASE_PS["students"].values()}
STUDENTS = [  # every student of the course: Canvas user, Canvas section, PowerSchool student dcid
    {"user_id": e["user_id"], "section_id": e["course_section_id"],
     "dcid": DCID_BY_NUMBER[BASE_CANVAS["users"][str(e["user_id"])]["sis_user_id"]]}
    for e in sorted(BASE_CANVAS["enrollments"].values(), key=lambda e: e["id"])
    if e["course_id"] == C and e["type"] == "StudentEnrollment"
]
ASSIGNMENTS = sorted((a for a in BASE_CANVAS["assignments"].values() if a["course_id"] == C), key=lambda a: a["id"])
GROUPS = {g["name"]: g for g in BASE_CANVAS["assignment_groups"].values() if g["course_id"] == C}
TEACHER = next(iter(BASE_PS["sections"].values()))["staff_id"]
PS_CATEGORIES = {c["name"]: c["id"] for c in BASE_PS["categories"].values() if c["usersdcid"] == TEACHER}
PS_TERM = BASE_PS["terms"]["3401"]
TERM = (date.fromisoformat(PS_TERM["firstday"]), date.fromisoformat(PS_TERM["lastday"]))
VALID = expected_destination_scores(BASE_CANVAS, BASE_PS)  # (name, section dcid, student dcid) -> held score
VALID_NAMES = {a["name"] for a in ASSIGNMENTS}
SECTION_DCID = {s["id"]: s["sis_section_id"] for s in SECTIONS}
ASSIGNMENT_BY_NAME = {a["name"]: a for a in ASSIGNMENTS}
STUDENT_BY_DCID = {s["dcid"]: s for s in STUDENTS}
GHOST_SECTION, GHOST_ASSIGNMENT, GHOST_USER = 999_999, 777_777, 888_888

Key = tuple[str, str, int]  # (assignment name, section dcid, student dcid), as tests.e2e.expected keys them


def item_id(*parts: Any) -> str:
    """A run item's source id: course:assignment for an assignment, course:assignment:student for a score."""
    return ":".join(str(p) for p in (C, *parts))


# --- what the run must end with ----------------------------------------------------------------------


@dataclass
class Oracle:
    """Built from the mutations, from the raw Canvas data alone (never with passback's code).

    ``strict``: held exactly so in PowerTeacher Pro. ``either``: held exactly so, or (a touched
    valid score) explained by an error or skip item among the ids given. ``refused``: each must
    be explained by an error or skip item among its ids. ``mentioned``: a row the source cannot
    key, named by a source-row-unreadable error. ``names``: every assignment PowerTeacher Pro may hold.
    """

    strict: dict[Key, tuple[dict[str, Any], int, int]] = field(default_factory=dict)  # value, assignment, user
    either: dict[Key, tuple[dict[str, Any], frozenset[str] | None]] = field(default_factory=dict)
    refused: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    mentioned: list[tuple[str, str]] = field(default_factory=list)
    names: set[str] = field(default_factory=lambda: set(VALID_NAMES))
    touched_users: set[int] = field(default_factory=set)
    touched_assignments: set[int] = field(default_factory=set)
    touched_scores: set[tuple[int, int]] = field(default_factory=set)  # (assignment, user)
    unkeyed: set[tuple[int, int]] = field(default_factory=set)  # (assignment, user) whose row names neither
    candidates: list[tuple[str, int, set[Key]]] = field(default_factory=list)  # new assignments that may be created

    @classmethod
    def of_valid_district(cls) -> Oracle:
        oracle = cls()
        for key, value in VALID.items():
            oracle.strict[key] = (value, ASSIGNMENT_BY_NAME[key[0]]["id"], STUDENT_BY_DCID[key[2]]["user_id"])
        return oracle

    def refuse(self, why: str, *ids: str) -> None:
        self.refused.append((why, frozenset(ids)))

    def loosen(self, key: Key, assignment_id: int, user_id: int) -> None:
        if key in self.strict:
            value, _, _ = self.strict.pop(key)
            self.either[key] = (value, frozenset({item_id(assignment_id), item_id(assignment_id, user_id)}))

    def keep_written(self) -> None:
        """After a sync of the valid district: whatever the source now says of a valid score, what was
        written stays written (an unreadable, doubled or unmatched record is never a reason to clear it)."""
        for key, (value, _ids) in list(self.either.items()):
            if key in VALID:
                del self.either[key]
                self.strict[key] = (value, 0, 0)

    def settle(self, canvas: dict[str, Any]) -> None:
        """Touched valid scores may be refused; new assignments sharing a name may be refused as duplicates;
        a score whose row lost its keys is not read (its source-row-unreadable error, ``mentioned``, says so);
        a row a later mutation put another row in the place of is not listed at all."""
        listed = {str(row["id"]) for row in canvas["submissions"].values()}
        self.mentioned = [(why, row_id) for why, row_id in self.mentioned if row_id in listed]
        for key, (value, assignment_id, user_id) in list(self.strict.items()):
            if (assignment_id, user_id) in self.unkeyed:
                del self.strict[key]
                self.either[key] = (value, None)
        for key, (_, assignment_id, user_id) in list(self.strict.items()):
            if (assignment_id in self.touched_assignments or user_id in self.touched_users
                    or (assignment_id, user_id) in self.touched_scores):
                self.loosen(key, assignment_id, user_id)
        names = Counter(name for name, _, _ in self.candidates) + Counter(VALID_NAMES)
        for name, assignment_id, keys in self.candidates:
            for key in keys if names[name] > 1 else ():
                if key in self.strict:
                    self.loosen(key, assignment_id, self.strict[key][2])


def score(points: float, late: bool = False) -> dict[str, Any]:
    return {"scorepoints": points, "islate": late, "isexempt": False}


def number(value: Any) -> float | None | str:
    """A Canvas number as seed 000's table passes it (to 4 places); ``"bad"`` when it is no finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "bad"
    try:
        as_float = float(value)
    except OverflowError:
        return "bad"
    return round(as_float, 4) if math.isfinite(as_float) else "bad"


def due_in_term(due: Any) -> bool | None:
    """True / False when the due date is inside / outside the term in every reading of its day (UTC,
    Chicago, and the zones a course tweak may give); False for no date or one that is no date at all;
    None when the readings disagree, or the moment has no offset."""
    if not isinstance(due, str) or not due:
        return False
    try:
        moment = datetime.fromisoformat(due)
    except ValueError:
        return False
    if moment.tzinfo is None:
        return None
    inside = {TERM[0] <= moment.astimezone(z).date() <= TERM[1] for z in (UTC, CHICAGO, KIRITIMATI)}
    return inside.pop() if len(inside) == 1 else None


# --- the Canvas records hypothesis changes ---------------------------------------------------------------


CHANGED_AT = "2026-11-29T15:00:00Z"  # after every grade of the district: a change an incremental read lists


def submission(assignment_id: Any, user_id: Any, row_id: int, score_value: Any, grade: Any = None) -> dict[str, Any]:
    graded = score_value is not None or grade is not None
    return {
        "id": row_id, "user_id": user_id, "assignment_id": assignment_id, "score": score_value, "grade": grade,
        "entered_score": score_value, "entered_grade": grade, "excused": False, "attempt": 1 if graded else None,
        "submitted_at": CHANGED_AT if graded else None, "graded_at": CHANGED_AT if graded else None, "grader_id": None,
        "grade_matches_current_submission": True, "workflow_state": "graded" if graded else "unsubmitted",
        "late_policy_status": None, "points_deducted": None, "posted_at": None, "late": False, "missing": False,
        "seconds_late": 0, "submission_type": None,
    }


def assignment(assignment_id: int, name: Any, points: Any, due: Any, group: Any, grading: Any) -> dict[str, Any]:
    return {
        "id": assignment_id, "course_id": C, "name": name, "description": None,
        "created_at": "2026-08-01T12:00:00Z", "updated_at": "2026-08-01T12:00:00Z", "due_at": due,
        "unlock_at": None, "lock_at": None, "points_possible": points, "grading_type": grading,
        "assignment_group_id": group, "post_to_sis": True, "published": True, "only_visible_to_overrides": False,
        "omit_from_final_grade": False, "grading_standard_id": None, "position": assignment_id,
        "submission_types": ["online_text_entry"], "integration_id": None, "integration_data": {},
        "sis_assignment_id": None, "due_date_required": True, "max_name_length": 30, "overrides": [],
    }


@dataclass
class World:
    canvas: dict[str, Any]
    ps: dict[str, Any]
    oracle: Oracle
    ids: Iterator[int]

    def add_user(self, name: Any, sis: Any, section: Any) -> int:
        user_id = next(self.ids)
        self.canvas["users"][str(user_id)] = {
            "id": user_id, "name": name, "sortable_name": name, "short_name": name, "sis_user_id": sis,
            "integration_id": None, "login_id": f"hostile{user_id}"}
        self.enroll(user_id, section)
        return user_id

    def enroll(self, user_id: int, section: Any, first: bool = False) -> None:
        enrollment_id = next(self.ids)
        self.canvas["enrollments"][str(enrollment_id)] = {
            "id": enrollment_id - 600_000 if first else enrollment_id, "course_id": C, "course_section_id": section,
            "user_id": user_id, "type": "StudentEnrollment", "role": "StudentEnrollment",
            "enrollment_state": "active", "sis_section_id": None}

    def add_ps_student(self, section_dcid: str | None) -> str:
        dcid = next(self.ids) + 1_000_000
        number = str(dcid + 1_000_000)
        self.ps["students"][str(dcid)] = {"id": dcid, "local_id": int(number), "student_username": f"h{number}",
                                          "name": {"first_name": "Hostile", "last_name": str(dcid)}, "school_id": 1}
        if section_dcid is not None:
            self.ps["sections"][section_dcid]["students"].append(dcid)
        return number


TEXT = st.text(max_size=12)  # any code point but a lone surrogate: RTL, emoji, combining marks, NUL, controls
ODD_TEXT = st.sampled_from([
    "", " ", "\x00", "nul\x00inside", "مرحبا بالعالم", "שלום עולם\u200f", "\u202eevil override", "👩‍👩‍👧‍👦 🧪 Lab",
    "e\u0301\u0301\u0301\u0301 accents", "Z̷̢̛͔a̸l̵g̶o̴ text", "x" * 30, "é" * 31, "x" * 50, "y" * 51, "A" * 10_000,
])
NAMES = st.one_of(TEXT, ODD_TEXT, st.none(), st.integers(-10, 10))
SCORES = st.one_of(
    st.none(),
    st.sampled_from([-5, -5.0, 0, 1e308, -1e308, 5e-324, 7.25, 10**400, "NaN", "nan", "Infinity", "-inf", "abc",
                     "", " 7 ", True, [], {}]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-10**6, 10**6),
)
GRADES = st.sampled_from([None, "", "abc%", "85%", "1e400%", "nan%", "-5%", "A", 7])
POINTS = st.one_of(st.sampled_from([None, -5, -0.5, 0, 10, 1e308, "NaN", "Infinity", "abc", "", "10", True]),
                   st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**400))
DUE_MOMENTS = st.datetimes(min_value=datetime(2026, 7, 1), max_value=datetime(2027, 2, 1))
DUES = st.one_of(
    DUE_MOMENTS.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.sampled_from([None, "", "garbled", "2026-13-45T00:00:00Z", "2026-09-01T12:00:00", "2026-09-01",
                     "2026-10-01T12:00:00+14:00", "2026-12-19T03:00:00Z", "2026-08-10T03:00:00Z", "0000-00-00",
                     20260901, "2026-10-01T12:00:00.123456789Z"]),
)


@dataclass(frozen=True)
class NewAssignment:
    """An assignment with hostile fields, graded 1 point for every valid student."""

    name: Any
    points: Any
    due: Any
    group: str  # imported, practice (not imported), none, ghost
    grading: Any

    def apply(self, world: World) -> None:
        aid = next(world.ids)
        group = {"imported": GROUPS["Tests"]["id"], "practice": GROUPS["Extra Practice"]["id"], "none": None,
                 "ghost": 424_242}[self.group]
        world.canvas["assignments"][str(aid)] = assignment(aid, self.name, self.points, self.due, group, self.grading)
        for student in STUDENTS:
            world.canvas["submissions"][f"{aid}:{student['user_id']}"] = submission(aid, student["user_id"],
                                                                                    next(world.ids), 1)
        points = number(self.points)
        named = isinstance(self.name, str) and bool(self.name.strip()) and len(self.name) <= 30
        in_term = due_in_term(self.due)
        valid = named and isinstance(points, float) and float(self.points) >= 0 and self.group == "imported"
        if not valid or in_term is False:
            world.oracle.refuse(f"new assignment {aid}", item_id(aid))
            return
        keys = set()
        for student in STUDENTS:
            key = (self.name, SECTION_DCID[student["section_id"]], student["dcid"])
            world.oracle.strict[key] = (score(1.0), aid, student["user_id"])
            keys.add(key)
        world.oracle.names.add(self.name)
        world.oracle.candidates.append((self.name, aid, keys))
        if in_term is None:  # a due day read differently in UTC and in the course's zone: either is right
            for key in keys:
                world.oracle.loosen(key, aid, world.oracle.strict[key][2])


@dataclass(frozen=True)
class NewStudent:
    """A student with a hostile name, SIS id and section, and hostile scores on every valid assignment."""

    name: Any
    sis: str  # none, blank, ghost, unrostered, rostered, int, shared
    section: str  # first, second, none, ghost
    shared_with: int
    scores: tuple[Any, ...]
    grades: tuple[Any, ...]

    def apply(self, world: World) -> None:
        section = {"first": SECTIONS[0]["id"], "second": SECTIONS[1]["id"], "none": None,
                   "ghost": GHOST_SECTION}[self.section]
        real_section = SECTION_DCID.get(section) if section is not None else None
        shared = STUDENTS[self.shared_with % len(STUDENTS)]
        sis: Any = {"none": None, "blank": "", "ghost": "999999"}.get(self.sis)
        if self.sis == "unrostered":
            sis = world.add_ps_student(None)
        elif self.sis in ("rostered", "int"):
            sis = world.add_ps_student(real_section or SECTIONS[0]["sis_section_id"])
            sis = int(sis) if self.sis == "int" else sis
        elif self.sis == "shared":
            sis = world.canvas["users"][str(shared["user_id"])]["sis_user_id"]
            world.oracle.touched_users.add(shared["user_id"])
        user_id = world.add_user(self.name, sis, section)
        writable = self.sis in ("rostered", "int") and real_section is not None
        for index, a in enumerate(ASSIGNMENTS):
            value, grade = self.scores[index % len(self.scores)], self.grades[index % len(self.grades)]
            world.canvas["submissions"][f"{a['id']}:{user_id}"] = submission(a["id"], user_id, next(world.ids),
                                                                             value, grade)
            expected = self.expected(a, value, grade)
            if expected is None or not writable:
                world.oracle.refuse(f"score of new student {user_id} on {a['id']}", item_id(a["id"], user_id),
                                    item_id(a["id"]), f"student:{user_id}")
                continue
            key = (a["name"], real_section, dcid_of(world, sis))
            world.oracle.strict[key] = (score(expected), a["id"], user_id)
            if self.sis == "int":  # a SIS id Canvas would send as a string: read as one, or refused
                world.oracle.loosen(key, a["id"], user_id)

    @staticmethod
    def expected(a: dict[str, Any], value: Any, grade: Any) -> float | None:
        """What seed 000's table sends: points as points; a percentage (no score) as its share of the points."""
        points = number(value)
        if value is not None:
            return points if isinstance(points, float) else None
        if a["grading_type"] == "percent" and isinstance(grade, str) and grade.endswith("%"):
            try:
                share = float(grade[:-1]) / 100.0 * a["points_possible"]
            except ValueError:
                return None
            return round(share, 4) if math.isfinite(share) else None
        return None


def dcid_of(world: World, sis: Any) -> int:
    return next(s["id"] for s in world.ps["students"].values() if str(s["local_id"]) == str(sis))


@dataclass(frozen=True)
class ExtraEnrollment:
    """A second enrollment of a valid student: in the other section, one that does not exist, or none."""

    student: int
    section: str  # other, ghost, none
    first: bool

    def apply(self, world: World) -> None:
        student = STUDENTS[self.student % len(STUDENTS)]
        other = next(s["id"] for s in SECTIONS if s["id"] != student["section_id"])
        world.enroll(student["user_id"], {"other": other, "ghost": GHOST_SECTION, "none": None}[self.section],
                     self.first)
        world.oracle.touched_users.add(student["user_id"])


@dataclass(frozen=True)
class CopyAssignment:
    """A valid assignment listed twice (same id): the copy the same, or with some fields changed."""

    index: int
    changes: tuple[tuple[str, Any], ...]
    first: bool

    def apply(self, world: World) -> None:
        original = ASSIGNMENTS[self.index % len(ASSIGNMENTS)]
        copied = copy.deepcopy(original) | dict(self.changes)
        copied["position"] = original["position"] - 1 if self.first else original["position"] + 1
        world.canvas["assignments"][f"copy-{next(world.ids)}"] = copied
        if any(original[f] != v or type(original[f]) is not type(v) for f, v in self.changes):
            world.oracle.touched_assignments.add(original["id"])
            world.oracle.refuse(f"assignment {original['id']} listed twice, differently", item_id(original["id"]))


@dataclass(frozen=True)
class RogueSubmission:
    """A submission row whose assignment or student is not the one its place says: a copy of another
    student's row (the same or changed), a student or assignment that does not exist, or no id at all.

    It takes the place of a new student's row, or of a valid student's (``owner``): that row is then
    not listed at all, and a score Canvas does not list is neither sent nor cleared."""

    slot: int
    owner: int | None
    user: str  # valid, ghost, none, text
    user_index: int
    target: str  # slot, valid, ghost, none, text
    target_index: int
    value: Any  # a score, or "same": the row it copies, unchanged
    first: bool  # listed before the row it repeats (Canvas lists submissions by id)

    def apply(self, world: World) -> None:
        slot = ASSIGNMENTS[self.slot % len(ASSIGNMENTS)]
        victim = STUDENTS[self.user_index % len(STUDENTS)]
        user = {"valid": victim["user_id"], "ghost": GHOST_USER, "none": None, "text": "abc"}[self.user]
        target_assignment = ASSIGNMENTS[self.target_index % len(ASSIGNMENTS)]
        target = {"slot": slot["id"], "valid": target_assignment["id"], "ghost": GHOST_ASSIGNMENT, "none": None,
                  "text": "xyz"}[self.target]
        owner = None if self.owner is None else STUDENTS[self.owner % len(STUDENTS)]["user_id"]
        if owner is None or (target, user) == (slot["id"], owner):  # (in its own place, a row is just changed)
            carrier = world.add_user("Carrier", None, SECTIONS[0]["id"])
        else:
            carrier = owner
            world.oracle.unkeyed.add((slot["id"], carrier))
        row_id = next(world.ids) + (5_000_000 if self.first else 90_000_000)
        original = world.canvas["submissions"].get(f"{target}:{user}")
        if original is not None:  # regraded just now: both rows are changes an incremental read lists
            original.update(graded_at=CHANGED_AT, submitted_at=CHANGED_AT)
        if self.value == "same" and original is not None:
            row = copy.deepcopy(original) | {"id": row_id}
        else:
            row = submission(target, user, row_id, None if self.value == "same" else self.value)
        row.update(graded_at=CHANGED_AT, submitted_at=CHANGED_AT)  # a change, listed by an incremental read too
        world.canvas["submissions"][f"{slot['id']}:{carrier}"] = row
        if user is None or target is None or self.target in ("ghost", "text"):
            world.oracle.mentioned.append((f"submission row {row_id}", str(row_id)))
        elif self.user != "valid":
            world.oracle.refuse(f"submission {row_id} of a student not in the course", item_id(target, user),
                                item_id(target))
        elif not same_grade(row, original):
            world.oracle.touched_scores.add((target, user))
            world.oracle.refuse(f"submission {row_id} differs from the row it repeats", item_id(target, user),
                                item_id(target))


def same_grade(row: dict[str, Any], original: dict[str, Any] | None) -> bool:
    fields = ("score", "grade", "excused", "late", "missing", "grade_matches_current_submission", "graded_at")
    return original is not None and all(row.get(f) == original.get(f) and type(row.get(f)) is type(original.get(f))
                                        for f in fields)


@dataclass(frozen=True)
class HostileGroup:
    """An assignment group with a hostile name and import link, holding one otherwise valid assignment."""

    name: Any
    link: str  # valid, int, inactive, ghost, blank, none

    def apply(self, world: World) -> None:
        group_id, aid = next(world.ids), next(world.ids)
        link = {"valid": str(PS_CATEGORIES["Tests"]), "int": PS_CATEGORIES["Homework"],
                "inactive": str(PS_CATEGORIES["Participation"]), "ghost": "424242", "blank": "", "none": None}[self.link]
        world.canvas["assignment_groups"][str(group_id)] = {
            "id": group_id, "course_id": C, "name": self.name, "position": 9, "group_weight": 0.0,
            "sis_source_id": link, "integration_data": {}, "rules": {}}
        name = f"Grouped {aid}"
        world.canvas["assignments"][str(aid)] = assignment(aid, name, 10.0, "2026-10-15T17:00:00Z", group_id, "points")
        for student in STUDENTS:
            world.canvas["submissions"][f"{aid}:{student['user_id']}"] = submission(aid, student["user_id"],
                                                                                    next(world.ids), 4)
        if self.link not in ("valid", "int"):
            world.oracle.refuse(f"assignment {aid} in group {group_id} not linked to a category", item_id(aid))
            return
        world.oracle.names.add(name)
        for student in STUDENTS:
            key = (name, SECTION_DCID[student["section_id"]], student["dcid"])
            world.oracle.strict[key] = (score(4.0), aid, student["user_id"])
            if self.link == "int":  # an import link Canvas would send as a string: read as one, or refused
                world.oracle.loosen(key, aid, student["user_id"])


@dataclass(frozen=True)
class CorruptInPlace:
    """A valid assignment or submission made hostile where it stands."""

    index: int
    student: int
    change: tuple[str, Any]

    def apply(self, world: World) -> None:
        target = ASSIGNMENTS[self.index % len(ASSIGNMENTS)]
        student = STUDENTS[self.student % len(STUDENTS)]
        field_name, value = self.change
        if field_name in ("name", "due_at", "points_possible", "assignment_group_id"):
            world.canvas["assignments"][str(target["id"])][field_name] = value
            world.oracle.touched_assignments.add(target["id"])
            world.oracle.refuse(f"assignment {target['id']} with {field_name} {value!r:.40}", item_id(target["id"]))
            return
        row = world.canvas["submissions"][f"{target['id']}:{student['user_id']}"]
        row.update({field_name: value, "graded_at": CHANGED_AT, "submitted_at": CHANGED_AT})
        if field_name == "score":
            world.oracle.touched_scores.add((target["id"], student["user_id"]))
            world.oracle.refuse(f"submission {row['id']} with score {value!r:.40}",
                                item_id(target["id"], student["user_id"]), item_id(target["id"]))
        else:  # a row without its student or assignment, or of one the course does not list
            world.oracle.unkeyed.add((target["id"], student["user_id"]))
            world.oracle.mentioned.append((f"submission row {row['id']} with {field_name} {value!r}", str(row["id"])))


@dataclass(frozen=True)
class CourseTweak:
    """The course itself: a hostile name, a time zone that is no zone."""

    name: Any
    time_zone: Any

    def apply(self, world: World) -> None:
        world.canvas["courses"][str(C)].update(name=self.name, time_zone=self.time_zone)


MUTATIONS = st.one_of(
    st.builds(NewAssignment, name=NAMES, points=POINTS, due=DUES,
              group=st.sampled_from(["imported", "imported", "practice", "none", "ghost"]),
              grading=st.sampled_from(["points", "percent", None, "bogus", 7])),
    st.builds(NewStudent, name=NAMES,
              sis=st.sampled_from(["none", "blank", "ghost", "unrostered", "rostered", "int", "shared"]),
              section=st.sampled_from(["first", "second", "none", "ghost"]), shared_with=st.integers(0, 11),
              scores=st.lists(SCORES, min_size=1, max_size=6).map(tuple),
              grades=st.lists(GRADES, min_size=1, max_size=3).map(tuple)),
    st.builds(ExtraEnrollment, student=st.integers(0, 11), section=st.sampled_from(["other", "ghost", "none"]),
              first=st.booleans()),
    st.builds(CopyAssignment, index=st.integers(0, 5), first=st.booleans(),
              changes=st.lists(st.one_of(st.tuples(st.just("name"), NAMES), st.tuples(st.just("points_possible"), POINTS),
                                         st.tuples(st.just("due_at"), DUES),
                                         st.tuples(st.just("assignment_group_id"), st.sampled_from([None, 424_242]))),
                               max_size=2, unique_by=lambda c: c[0]).map(tuple)),
    st.builds(RogueSubmission, slot=st.integers(0, 5), owner=st.one_of(st.none(), st.integers(0, 11)),
              user=st.sampled_from(["valid", "valid", "ghost", "none", "text"]), user_index=st.integers(0, 11),
              target=st.sampled_from(["slot", "valid", "ghost", "none", "text"]),
              target_index=st.integers(0, 5), value=st.one_of(st.just("same"), SCORES), first=st.booleans()),
    st.builds(HostileGroup, name=NAMES, link=st.sampled_from(["valid", "int", "inactive", "ghost", "blank", "none"])),
    st.builds(CorruptInPlace, index=st.integers(0, 5), student=st.integers(0, 11), change=st.one_of(
        st.tuples(st.just("due_at"), st.sampled_from([None, "", "garbled", "2026-02-30T00:00:00Z", 20261001])),
        st.tuples(st.just("name"), st.sampled_from([None, "", "   ", 42, "A" * 10_000])),
        st.tuples(st.just("points_possible"), st.sampled_from([None, -5, "abc", "NaN", 10**400])),
        st.tuples(st.just("assignment_group_id"), st.sampled_from([None, 424_242])),
        st.tuples(st.just("score"), st.sampled_from(["NaN", "abc", 10**400, "", True, [1]])),
        st.tuples(st.just("user_id"), st.sampled_from([None, ""])),
        st.tuples(st.just("assignment_id"), st.sampled_from([None, "xyz", GHOST_ASSIGNMENT])),
    )),
    st.builds(CourseTweak, name=NAMES,
              time_zone=st.sampled_from([None, "", "Mars/Olympus_Mons", "../../etc/passwd", "UTC",
                                         "Pacific/Kiritimati", "Eastern Time (US & Canada)"])),
)


# --- one emulator pair and one migrated store for the module ----------------------------------------------


@dataclass
class Served:
    canvas: ServedApp
    powerschool: ServedApp
    template: Path
    settings: Settings
    runs: Iterator[int]
    synced: tuple[Path, dict[str, Any]] | None = None  # the store and PowerSchool after the valid district's sync
    last: Path | None = None  # the store of the latest example

    def load(self, canvas: dict[str, Any], ps: dict[str, Any]) -> None:
        self.canvas.app.state.emulator.state = canvas
        self.powerschool.app.state.emulator.state = ps
        self.powerschool.app.state.emulator.assignments_changed()
        self.canvas.writes.clear()
        self.powerschool.writes.clear()

    def store(self, template: Path | None = None) -> Store:
        path = self.template.with_name(f"example-{next(self.runs)}.db")
        shutil.copyfile(template or self.template, path)
        self.last = path
        return Store(make_engine(f"sqlite:///{path}"))

    def after_first_sync(self) -> tuple[Path, dict[str, Any]]:
        """The store and PowerSchool's state once the valid district was synced (made once)."""
        if self.synced is None:
            world, results, items = sync(self, [])
            check(world, results, items)
            path = self.template.with_name("synced.db")
            assert self.last is not None
            shutil.copyfile(self.last, path)
            self.synced = (path, world.ps)
        return self.synced


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("hostile")
    # Terms close on a date: the check of closed terms is not what this module is about.
    settings_ = Settings(data_dir=tmp, concurrency=4, block_closed_terms=False)
    with ServedApp(canvas_emulator.create_app(copy.deepcopy(BASE_CANVAS), faults=FaultConfig(seed=1))) as canvas, \
            ServedApp(powerschool_emulator.create_app(copy.deepcopy(BASE_PS), faults=FaultConfig(seed=2))) as ps:
        template = tmp / "template.db"
        engine = make_engine(f"sqlite:///{template}")
        migrate(engine)
        store = Store(engine)
        key = load_key(settings_)
        save_connection(store, key, name="lms", kind="canvas", base_url=canvas.url,
                        credentials={"token": CREDENTIALS.canvas_token})
        save_connection(store, key, name="sis", kind="powerschool", base_url=ps.url,
                        credentials={"client_id": CREDENTIALS.powerschool_client_id,
                                     "client_secret": CREDENTIALS.powerschool_client_secret})
        engine.dispose()
        yield Served(canvas, ps, template, settings_, itertools.count())


def sync(served: Served, mutations: list[Any], *, after_first_sync: bool = False
         ) -> tuple[World, list[Any], list[dict[str, Any]]]:
    template, ps = served.after_first_sync() if after_first_sync else (None, BASE_PS)
    world = World(copy.deepcopy(BASE_CANVAS), copy.deepcopy(ps), Oracle.of_valid_district(),
                  itertools.count(600_001))
    for mutation in mutations:
        mutation.apply(world)
    world.oracle.settle(world.canvas)
    if after_first_sync:
        world.oracle.keep_written()
    served.load(world.canvas, world.ps)
    store = served.store(template)
    try:
        results = asyncio.run(sync_courses(store, served.settings, ROUTE, all_courses=True))
        items = [i for r in results if r.run_id for i in get_run_items(store, r.run_id)]
    finally:
        store.engine.dispose()
    return world, results, items


def shown(value: Any) -> str:
    """A repr with long text cut short (a 10,000-character name reads as its length)."""
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:20]!r}...({len(value)} characters)"
    if isinstance(value, list | tuple):
        inner = ", ".join(shown(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if hasattr(value, "__dataclass_fields__"):
        fields = ", ".join(f"{k}={shown(getattr(value, k))}" for k in value.__dataclass_fields__)
        return f"{type(value).__name__}({fields})"
    return repr(value)


def not_synced(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(i["source_id"], i["outcome"], i["code"]) for i in items if i["outcome"] in ("error", "skipped")]


def check(world: World, results: list[Any], items: list[dict[str, Any]]) -> None:
    oracle = world.oracle
    assert [r.status for r in results] in (["succeeded"], ["completed_with_errors"]), [r.failure for r in results]
    for item in items:
        if item["outcome"] in ("error", "skipped"):
            assert item["code"] in CATALOGUE and item["message"], item
    explained = {i["source_id"] for i in items if i["outcome"] in ("error", "skipped")}
    explained |= {f"student:{i['context']['student_id']}" for i in items  # a student no grade of can be placed
                  if i["code"] == "source-row-unreadable" and "student_id" in (i["context"] or {})
                  and "assignment_id" not in i["context"]}
    held = held_destination_scores(world.ps)
    for key, (value, _, _) in oracle.strict.items():
        assert held.get(key) == value, (key, held.get(key), value)
    for key, value in held.items():
        if key not in oracle.strict:
            assert key in oracle.either and oracle.either[key][0] == value, ("not expected in PowerTeacher Pro", key, value)
    for key, (_value, ids) in oracle.either.items():
        assert key in held or ids is None or ids & explained, ("a touched valid score neither held nor explained",
                                                               key, ids)
    for why, ids in oracle.refused:
        assert ids & explained, ("not accounted for: " + why, ids)
    unreadable = [i["message"] for i in items if i["code"] == "source-row-unreadable" and i["outcome"] == "error"]
    for why, text in oracle.mentioned:
        assert any(text in message for message in unreadable), ("no source-row-unreadable error names " + why, unreadable)
    sections = [(s["name"], s["sectionsdcid"], s["duedate"]) for a in world.ps["assignments"].values()
                for s in a["_assignmentsections"]]
    assert len(sections) == len(set(sections)), sections  # no assignment made twice
    assert {s[0] for s in sections} <= oracle.names, {s[0] for s in sections} - oracle.names


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=5))
def test_hostile_canvas_data_never_fails_a_run_nor_loses_a_valid_grade(served: Served, mutations: list[Any]) -> None:
    note(f"mutations: {shown(mutations)}")
    world, results, items = sync(served, mutations)
    note(f"run items that did not sync: {not_synced(items)}")
    check(world, results, items)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=5))
def test_hostile_canvas_data_never_removes_what_an_earlier_sync_wrote(served: Served, mutations: list[Any]) -> None:
    """The valid district was synced; then Canvas turns hostile. Every score written stays, as written."""
    note(f"mutations: {shown(mutations)}")
    world, results, items = sync(served, mutations, after_first_sync=True)
    note(f"run items that did not sync: {not_synced(items)}")
    check(world, results, items)
    assert not any(i["outcome"] == "deleted" for i in items), [i for i in items if i["outcome"] == "deleted"]


# Each hostile record hypothesis first found the product failing on (its shrunk example), kept as a
# regression: before the fixes, each failed the run, wrote a value it should not have, or dropped
# a record without a word.
A_DAY = "2026-10-01T17:00:00Z"
KNOWN = {
    "assignment name null": [NewAssignment(None, 10, A_DAY, "imported", "points")],
    "assignment name blank": [NewAssignment("", 10, A_DAY, "imported", "points")],
    "points possible negative": [NewAssignment("Lab", -5, A_DAY, "imported", "points")],
    "points possible text": [NewAssignment("Lab", "abc", A_DAY, "imported", "points")],
    "points possible NaN": [NewAssignment("Lab", "NaN", A_DAY, "imported", "points")],
    "due date garbled": [NewAssignment("Lab", 10, "garbled", "imported", "points")],
    "due date a number": [NewAssignment("Lab", 10, 20260901, "imported", "points")],
    "score text": [NewStudent("S", "rostered", "first", 0, ("abc",), (None,))],
    "score NaN": [NewStudent("S", "rostered", "first", 0, ("NaN",), (None,))],
    "score past a float": [NewStudent("S", "rostered", "first", 0, (10**400,), (None,))],
    "percentage text": [NewStudent("S", "rostered", "first", 0, (None,), ("abc%",))],
    "percentage NaN": [NewStudent("S", "rostered", "first", 0, (None,), ("nan%",))],
    "SIS id a number": [NewStudent("S", "int", "first", 0, (1,), (None,))],
    "student name a number": [NewStudent(5, "rostered", "first", 0, (1,), (None,))],
    "SIS id shared with a valid student": [NewStudent("Twin", "shared", "first", 0, (1,), (None,))],
    "enrollment without a section": [NewStudent("S", "rostered", "none", 0, (1,), (None,))],
    "enrollment in a section that does not exist": [NewStudent("S", "rostered", "ghost", 0, (1,), (None,))],
    "assignment listed twice, differently": [CopyAssignment(0, (("name", "Renamed"),), first=True)],
    "submission listed twice, differently": [RogueSubmission(0, None, "valid", 0, "valid", 0, 9.5, first=False)],
    "submission listed twice, in two sections": [RogueSubmission(0, None, "valid", 8, "valid", 0, 9.5, first=True)],
    "submission without its student": [RogueSubmission(0, None, "none", 0, "slot", 0, 5, first=False)],
    "submission of an assignment not listed": [RogueSubmission(0, None, "valid", 0, "ghost", 0, 5, first=False)],
    "assignment group name null": [HostileGroup(None, "valid")],
    "course name null": [CourseTweak(None, "America/Chicago")],
}
KNOWN_AFTER_A_SYNC = {
    "submission listed twice, differently, in an incremental read": [
        RogueSubmission(3, 5, "valid", 0, "valid", 0, 9.5, first=False)],
    "due date garbled where it stood": [CorruptInPlace(0, 0, ("due_at", "garbled"))],
    "score text where it stood": [CorruptInPlace(0, 0, ("score", "abc"))],
}


@pytest.mark.parametrize(("after_a_sync", "mutations"), [
    *(pytest.param(False, m, id=name) for name, m in KNOWN.items()),
    *(pytest.param(True, m, id=name) for name, m in KNOWN_AFTER_A_SYNC.items()),
])
def test_known_hostile_records(served: Served, after_a_sync: bool, mutations: list[Any]) -> None:
    world, results, items = sync(served, mutations, after_first_sync=after_a_sync)
    check(world, results, items)


def test_the_valid_district_syncs_whole(served: Served) -> None:
    """The baseline the mutations start from: every valid score lands, and nothing else."""
    world, results, items = sync(served, [])
    check(world, results, items)
    assert held_destination_scores(world.ps) == VALID and len(VALID) > 40
