"""Posted grades from PowerSchool: the stored (store-code) grades, as state reporting reads them.

PowerSchool keeps a posted final grade in StoredGrades (student, section, term, store
code, letter grade, percent, credits). State reporting needs the state's ids as well:
the student's ``state_province_id``, the school's ``state_province_id`` and a section
identifier (course number and section number), so the rows are joined here with the
students, sections, terms and schools they name. The store code is the grading task.
The result is the same export the CSV source gives, so one engine serves both.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from passback.connectors.base import PostedGradesSource
from passback.connectors.powerschool.client import PowerSchoolClient
from passback.model.posted_rows import COLUMNS, PostedExport, RowProblem

PAGE = 100
YEAR_ZERO = 1991  # PowerSchool's yearid 36 is the 2026-2027 school year, reported as 2027


class PowerSchoolPostedGrades(PostedGradesSource):
    kind = "powerschool"

    def __init__(self, client: PowerSchoolClient) -> None:
        self.client = client

    async def _stored(self) -> list[dict[str, str]]:
        count = (await self.client.get_json("/ws/schema/table/storedgrades/count"))["count"]
        pages = await asyncio.gather(*(
            self.client.get_json("/ws/schema/table/storedgrades",
                                 {"projection": "*", "page": page, "pagesize": PAGE})
            for page in range(1, -(-count // PAGE) + 1)))
        return [record["tables"]["storedgrades"] for body in pages for record in body.get("record") or []]

    async def aclose(self) -> None:
        await self.client.aclose()

    async def read(self) -> PostedExport:
        stored = await self._stored()
        schools = sorted({row["schoolid"] for row in stored})
        sections = sorted({row["sectionid"] for row in stored})
        school_rows, students, terms, section_rows = await asyncio.gather(
            asyncio.gather(*(self.client.get_json(f"/ws/v1/school/{s}") for s in schools)),
            asyncio.gather(*(self.client.get_pages(f"/ws/v1/school/{s}/student", "students", "student")
                             for s in schools)),
            asyncio.gather(*(self.client.get_pages(f"/ws/v1/school/{s}/term", "terms", "term") for s in schools)),
            asyncio.gather(*(self.client.get_json(f"/ws/v1/section/{s}") for s in sections)),
        )
        state_school = {str(body["school"]["id"]): str(body["school"].get("state_province_id") or body["school"]["id"])
                        for body in school_rows}
        student_of = {str(s["id"]): s for rows in students for s in rows}
        term_of = {str(t["id"]): t for rows in terms for t in rows}
        section_of = {str(body["section"]["id"]): body["section"] for body in section_rows}
        rows: dict[str, tuple[int, list[str]]] = {}
        hashes: dict[str, str] = {}
        problems: list[RowProblem] = []
        for index, row in enumerate(stored, start=1):
            student = student_of.get(row["studentid"])
            term = term_of.get(row["termid"])
            section = section_of.get(row["sectionid"])
            posted_id = f"storedgrade-{row['dcid']}"
            if student is None or term is None or section is None:
                missing = "student" if student is None else "term" if term is None else "section"
                problems.append(RowProblem(index, f"stored grade {row['dcid']}: its {missing} is not readable in "
                                                  "PowerSchool; check the plugin's access to it"))
                continue
            name = student.get("name") or {}
            values = _values({
                "posted_id": posted_id, "student_id": str(student.get("state_province_id") or student["local_id"]),
                "student_name": f"{name.get('first_name', '')} {name.get('last_name', '')}".strip(),
                "section_id": f"{row['course_number']}-{section['section_number']}",
                "course_number": row["course_number"], "course_name": row.get("course_name", ""),
                "school_id": state_school.get(row["schoolid"], row["schoolid"]),
                "school_year": str(YEAR_ZERO + int(term["yearid"])), "grading_task": row["storecode"],
                "term_name": term["name"], "term_start": term["firstday"], "term_end": term["lastday"],
                "score": row.get("percent", ""), "letter": row.get("grade", ""),
                "posted_at": row.get("datestored", ""), "credits_earned": row.get("earnedcrhrs", ""),
            })
            rows[posted_id] = (index, values)
            hashes[posted_id] = hashlib.md5("\x1f".join(values).encode(), usedforsecurity=False).hexdigest()
        return PostedExport(list(COLUMNS), rows, hashes, problems, set())


def _values(fields: dict[str, Any]) -> list[str]:
    defaults = {"deleted": "0", "standard": "0", "course_active": "1", "state_report_exclude": "0",
                "school_exclude": "0", "calendar_exclude": "0"}
    return [str(fields.get(column, defaults.get(column, ""))) for column in COLUMNS]
