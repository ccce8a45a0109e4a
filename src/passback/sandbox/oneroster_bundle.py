"""A OneRoster CSV bundle (1.1 or 1.2) mirroring a generated district, for tests and demos.

The bundle is what an LMS would export for passback to send to PowerTeacher Pro, built
from :func:`passback.sandbox.district.generate`'s Canvas and PowerSchool states:

* one ``classes.csv`` row per Canvas section, ``sourcedId`` = the PowerSchool section id
  the section's ``sis_section_id`` holds; ``courses.csv`` rows are the Canvas courses
  (``sourcedId`` = ``sis_course_id``); the term is PowerSchool's (``academicSessions.csv``);
* ``users.csv``: the students, ``sourcedId`` and ``identifier`` = the SIS id (student
  number), and each section's teacher; ``enrollments.csv`` (and in 1.2 ``roles.csv``);
* ``categories.csv``: the course's assignment groups; an imported group is the PowerSchool
  teacher category it came from (``sourcedId`` = ``teachercategoryid``), so a lineItem
  lands in the right PowerTeacher Pro category; a group never imported keeps a Canvas id,
  which PowerTeacher Pro does not know (seed error 7);
* ``lineItems.csv``: each published assignment set to Post to SIS, once per section
  (a lineItem belongs to one class): points = ``resultValueMax``, due date written as the
  district's local date-time with its offset;
* ``results.csv``: every submission: excused -> ``exempt``, missing -> ``not submitted``
  (1.2: ``missing`` true), graded -> ``fully graded`` with the score (1.2: ``late``, and a
  pass/fail grade's ``textScore``), submitted ungraded -> ``submitted`` with no score.

Bulk files leave ``status`` and ``dateLastModified`` blank (blank status reads as active). With
``bad_rows`` a few rows are broken on purpose (:data:`BAD_ROWS`), and where each one is
(file and line) is given back, so a test can look for each by file and line.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from passback.connectors.oneroster_csv.binding import COLUMNS, MANIFEST, MANIFEST_FILES, MANIFEST_VERSION
from passback.sandbox.district import TIME_ZONE

SCHOOL = "school-1"
SCHOOL_YEAR = "sy-34"
UNKNOWN_CLASS, UNKNOWN_STUDENT, UNKNOWN_USER = "NO-SUCH-CLASS", "NO-SUCH-STUDENT", "NO-SUCH-USER"
BAD_ROWS = {
    "score-not-a-number": "results.csv: a fully graded result whose score is 'twelve'",
    "short-result": "results.csv: a result cut short after its studentSourcedId",
    "unknown-student": "results.csv: a result naming a student users.csv does not hold",
    "unknown-class": "lineItems.csv: a lineItem naming a class classes.csv does not hold",
    "points-not-a-number": "lineItems.csv: a lineItem whose resultValueMax is 'ten' (its results are withheld)",
    "unknown-user": "enrollments.csv: a student enrollment naming a user users.csv does not hold",
    "late-not-a-flag": "results.csv (1.2 only): a result whose late is 'maybe'",
}


@dataclass(frozen=True)
class PlantedRow:
    """A row broken on purpose: where it is, and which of :data:`BAD_ROWS` it is."""

    file: str
    line: int
    kind: str
    source_id: str  # the row's sourcedId (a lineItem's: the column it withholds)


@dataclass
class Bundle:
    version: str
    files: dict[str, list[list[str]]] = field(default_factory=dict)  # name -> rows, the header first
    planted: list[PlantedRow] = field(default_factory=list)

    def text(self, name: str) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows(self.files[name])
        return out.getvalue()

    def write(self, path: Path) -> Path:
        """The zip: ``manifest.csv`` and each data file at its root."""
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name in self.files:
                bundle.writestr(name, self.text(name))
        return path


def _row(version: str, file: str, /, **values: Any) -> list[str]:
    unknown = set(values) - set(COLUMNS[version][file])
    if unknown:
        raise ValueError(f"{file} (OneRoster {version}) has no column {sorted(unknown)}")
    return ["" if values.get(c) is None else str(values[c]) for c in COLUMNS[version][file]]


def _plain(html: str | None) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html or "")).strip()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def build_bundle(canvas: dict[str, Any], powerschool: dict[str, Any], version: str = "1.2",
                 bad_rows: bool = False) -> Bundle:
    """The bundle's rows; ``bad_rows`` breaks a few of them on purpose (see :data:`BAD_ROWS`)."""
    if version not in COLUMNS:
        raise ValueError(f"OneRoster {version!r}: the bundle is written as 1.1 or 1.2")
    v12 = version == "1.2"
    bundle = Bundle(version)
    data: dict[str, list[list[str]]] = {name: [list(COLUMNS[version][name])] for name in COLUMNS[version]}

    def add(file: str, /, **values: Any) -> None:
        data[file].append(_row(version, file, **values))

    add("orgs.csv", sourcedId=SCHOOL, name=powerschool["schools"]["1"]["name"], type="school",
        identifier=powerschool["schools"]["1"]["school_number"])
    terms = sorted(powerschool["terms"].values(), key=lambda t: t["id"])
    year_start, year_end = min(t["firstday"] for t in terms), max(t["lastday"] for t in terms)
    add("academicSessions.csv", sourcedId=SCHOOL_YEAR, title=f"{year_start[:4]}-{year_end[:4]}", type="schoolYear",
        startDate=year_start, endDate=year_end, schoolYear=year_end[:4])
    for term in terms:
        add("academicSessions.csv", sourcedId=term["id"], title=term["name"], type="semester",
            startDate=term["firstday"], endDate=term["lastday"], parentSourcedId=SCHOOL_YEAR, schoolYear=year_end[:4])

    sections = sorted(canvas["sections"].values(), key=lambda s: s["id"])
    students = sorted((e for e in canvas["enrollments"].values() if e["type"] == "StudentEnrollment"),
                      key=lambda e: e["id"])
    section_of = {(e["course_id"], e["user_id"]): e["course_section_id"] for e in students}
    teachers: dict[str, dict[str, Any]] = {}
    for section in sections:
        staff = powerschool["sections"][section["sis_section_id"]]["staff_id"]
        teachers[f"teacher-{staff}"] = powerschool["teachers"][str(staff)]
    for course in sorted(canvas["courses"].values(), key=lambda c: c["id"]):
        add("courses.csv", sourcedId=course["sis_course_id"], schoolYearSourcedId=SCHOOL_YEAR, title=course["name"],
            courseCode=course["course_code"], orgSourcedId=SCHOOL)
    for section in sections:
        course = canvas["courses"][str(section["course_id"])]
        ps_section = powerschool["sections"][section["sis_section_id"]]
        add("classes.csv", sourcedId=section["sis_section_id"], title=f"{course['name']} - {section['name']}",
            courseSourcedId=course["sis_course_id"], classCode=f"{course['course_code']}.{ps_section['section_number']}",
            classType="scheduled", schoolSourcedId=SCHOOL, termSourcedIds=ps_section["term_id"],
            periods=ps_section["section_number"])

    people = sorted({e["user_id"] for e in students})
    for user_id in people:
        user = canvas["users"][str(user_id)]
        family, _, given = user["sortable_name"].partition(", ")
        person = {"sourcedId": user["sis_user_id"], "enabledUser": "true", "username": user["login_id"],
                  "givenName": given, "familyName": family, "identifier": user["sis_user_id"]}
        add("users.csv", **person, **({"primaryOrgSourcedId": SCHOOL} if v12 else
                                      {"orgSourcedIds": SCHOOL, "role": "student"}))
    for sourced_id, teacher in teachers.items():
        person = {"sourcedId": sourced_id, "enabledUser": "true", "username": sourced_id, "givenName": "Teacher",
                  "familyName": teacher["name"], "identifier": teacher["users_dcid"]}
        add("users.csv", **person, **({"primaryOrgSourcedId": SCHOOL} if v12 else
                                      {"orgSourcedIds": SCHOOL, "role": "teacher"}))
    if v12:
        for user_id in people:
            sis = canvas["users"][str(user_id)]["sis_user_id"]
            add("roles.csv", sourcedId=f"role-{sis}", userSourcedId=sis, roleType="primary", role="student",
                orgSourcedId=SCHOOL)
        for sourced_id in teachers:
            add("roles.csv", sourcedId=f"role-{sourced_id}", userSourcedId=sourced_id, roleType="primary",
                role="teacher", orgSourcedId=SCHOOL)
    for section in sections:
        staff = powerschool["sections"][section["sis_section_id"]]["staff_id"]
        add("enrollments.csv", sourcedId=f"enr-t-{section['sis_section_id']}", classSourcedId=section["sis_section_id"],
            schoolSourcedId=SCHOOL, userSourcedId=f"teacher-{staff}", role="teacher", primary="true")
    for enrollment in students:
        add("enrollments.csv", sourcedId=f"enr-{enrollment['id']}", classSourcedId=enrollment["sis_section_id"],
            schoolSourcedId=SCHOOL, userSourcedId=canvas["users"][str(enrollment["user_id"])]["sis_user_id"],
            role="student", primary="false")

    category_of: dict[int, str] = {}
    for group in sorted(canvas["assignment_groups"].values(), key=lambda g: g["id"]):
        category_of[group["id"]] = group["sis_source_id"] or f"canvas-group-{group['id']}"
        add("categories.csv", sourcedId=category_of[group["id"]], title=group["name"],
            **({"weight": _number(group["group_weight"])} if v12 else {}))

    zone = ZoneInfo(TIME_ZONE)
    term_of = {s["sis_section_id"]: powerschool["sections"][s["sis_section_id"]]["term_id"] for s in sections}
    for assignment in sorted(canvas["assignments"].values(), key=lambda a: a["id"]):
        if not (assignment["published"] and assignment["post_to_sis"]):
            continue  # what the teacher has not chosen to send is not exported for the SIS
        due = assignment["due_at"] and datetime.fromisoformat(assignment["due_at"]).astimezone(zone).isoformat()
        for section in (s for s in sections if s["course_id"] == assignment["course_id"]):
            item = f"{assignment['id']}-{section['sis_section_id']}"
            add("lineItems.csv", sourcedId=item, title=assignment["name"], description=_plain(assignment["description"]),
                assignDate=assignment["created_at"], dueDate=due, classSourcedId=section["sis_section_id"],
                categorySourcedId=category_of.get(assignment["assignment_group_id"]),
                gradingPeriodSourcedId=term_of[section["sis_section_id"]], resultValueMin="0",
                resultValueMax=_number(assignment["points_possible"]),
                **({"academicSessionSourcedId": term_of[section["sis_section_id"]]} if v12 else {}))
            for submission in sorted(canvas["submissions"].values(), key=lambda s: s["id"]):
                if submission["assignment_id"] != assignment["id"] or \
                        section_of.get((assignment["course_id"], submission["user_id"])) != section["id"]:
                    continue
                add("results.csv", **_result(submission, item, canvas, assignment, v12))

    manifest = [["propertyName", "value"], ["manifest.version", MANIFEST_VERSION], ["oneroster.version", version]]
    manifest += [[f"file.{n}", "bulk" if f"{n}.csv" in data else "absent"] for n in MANIFEST_FILES[version]]
    manifest += [["source.systemName", "passback sandbox"], ["source.systemCode", "passback"]]
    bundle.files = {MANIFEST: manifest, **data}
    if bad_rows:
        _break_rows(bundle)
    return bundle


def _result(submission: dict[str, Any], item: str, canvas: dict[str, Any], assignment: dict[str, Any],
            v12: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"sourcedId": f"res-{submission['id']}", "lineItemSourcedId": item,
                           "studentSourcedId": canvas["users"][str(submission["user_id"])]["sis_user_id"],
                           "scoreDate": (submission.get("graded_at") or "")[:10]}
    flags = {"inProgress": "false", "incomplete": "false", "late": "false", "missing": "false"}
    if submission["excused"]:
        row.update(scoreStatus="exempt")
    elif submission["missing"]:
        row.update(scoreStatus="not submitted")
        flags["missing"] = "true"
    elif submission["score"] is None:
        row.update(scoreStatus="submitted")
    else:
        row.update(scoreStatus="fully graded", score=_number(float(submission["score"])))
        flags["late"] = "true" if submission["late"] else "false"
        if v12 and assignment["grading_type"] == "pass_fail":
            row["textScore"] = submission["grade"]
    return row | flags if v12 else row


def _break_rows(bundle: Bundle) -> None:
    """Break :data:`BAD_ROWS` in place (or add them), each recorded with its file and line."""
    version, files = bundle.version, bundle.files
    items, results, enrollments = files["lineItems.csv"], files["results.csv"], files["enrollments.csv"]
    li_cols, res_cols = COLUMNS[version]["lineItems.csv"], COLUMNS[version]["results.csv"]
    col = {name: i for i, name in enumerate(res_cols)}
    first_class = items[1][li_cols.index("classSourcedId")]
    in_first = [i for i in range(1, len(items)) if items[i][li_cols.index("classSourcedId")] == first_class]
    kept, broken = items[in_first[0]][0], items[in_first[1]]

    def plant(name: str, index: int, kind: str) -> None:
        bundle.planted.append(PlantedRow(name, index + 1, kind, files[name][index][0]))

    broken[li_cols.index("resultValueMax")] = "ten"
    plant("lineItems.csv", items.index(broken), "points-not-a-number")
    graded = [i for i in range(1, len(results))
              if results[i][col["lineItemSourcedId"]] == kept and results[i][col["scoreStatus"]] == "fully graded"]
    results[graded[0]][col["score"]] = "twelve"
    plant("results.csv", graded[0], "score-not-a-number")
    results[graded[1]] = results[graded[1]][: col["studentSourcedId"] + 1]
    plant("results.csv", graded[1], "short-result")
    if version == "1.2":
        results[graded[2]][col["late"]] = "maybe"
        plant("results.csv", graded[2], "late-not-a-flag")
    stranger = list(results[graded[3]])
    stranger[col["sourcedId"]], stranger[col["studentSourcedId"]] = "res-stranger", UNKNOWN_STUDENT
    results.append(stranger)
    plant("results.csv", len(results) - 1, "unknown-student")
    orphan = list(items[in_first[0]])
    orphan[0], orphan[li_cols.index("classSourcedId")] = "li-orphan", UNKNOWN_CLASS
    items.append(orphan)
    plant("lineItems.csv", len(items) - 1, "unknown-class")
    en_cols = COLUMNS[version]["enrollments.csv"]
    ghost = list(next(r for r in enrollments[1:] if r[en_cols.index("role")] == "student"))
    ghost[0], ghost[en_cols.index("userSourcedId")] = "enr-ghost", UNKNOWN_USER
    enrollments.append(ghost)
    plant("enrollments.csv", len(enrollments) - 1, "unknown-user")


def write_bundle(path: Path, canvas: dict[str, Any], powerschool: dict[str, Any], version: str = "1.2",
                 bad_rows: bool = False) -> Bundle:
    """Build the bundle and write it as a zip at ``path``; returns it (with its planted rows)."""
    bundle = build_bundle(canvas, powerschool, version, bad_rows)
    bundle.write(path)
    return bundle
