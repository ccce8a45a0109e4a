"""The posted-grades row format every posted-grades source gives, and its parsing.

A CSV export has these columns; PowerSchool's stored grades are read into the same rows,
so one state-reporting pipeline serves both.

Columns: posted_id, student_id, student_name, section_id, course_number, course_name,
school_id, school_year, grading_task, grading_task_code, term_name, term_start,
term_end, score, letter, posted_at, deleted, standard, course_active,
state_report_exclude, school_exclude, calendar_exclude, credits_earned, subject_code.
A row that cannot be read is reported with its line number and the fix; the others are
still read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from passback.model import PostedGrade, Term

COLUMNS = ("posted_id", "student_id", "student_name", "section_id", "course_number", "course_name", "school_id",
           "school_year", "grading_task", "grading_task_code", "term_name", "term_start", "term_end", "score",
           "letter", "posted_at", "deleted", "standard", "course_active", "state_report_exclude", "school_exclude",
           "calendar_exclude", "credits_earned", "subject_code")
REQUIRED = ("posted_id", "student_id", "section_id", "school_id", "school_year", "grading_task", "term_start",
            "term_end")


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str


@dataclass
class PostedExport:
    """The export's rows, hashed; a row becomes a PostedGrade only when someone asks for it.

    An unchanged re-send needs only the hashes, so reading 20,000 unchanged rows costs a
    digest each, not a model each.
    """

    names: list[str]
    rows: dict[str, tuple[int, list[str]]]  # posted id -> (line, raw values)
    hashes: dict[str, str]  # posted id -> digest of its row
    problems: list[RowProblem]
    deleted: set[str]

    def grade(self, posted_id: str) -> PostedGrade | None:
        found = self.rows.get(posted_id)
        if found is None:
            return None
        line, values = found
        try:
            return parse_row(dict(zip(self.names, values, strict=False)))
        except (ValueError, KeyError) as exc:
            self.problems.append(RowProblem(line, f"row {line}: {exc}; fix the row in the export and sync again"))
            return None

    def grades(self, posted_ids: list[str] | None = None) -> dict[str, PostedGrade]:
        wanted = self.rows if posted_ids is None else posted_ids
        return {p: g for p in wanted if (g := self.grade(p)) is not None}


def flag(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "y", "x")


def _number(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


_TERMS: dict[tuple[str, str, str], Term] = {}


def _term(name: str, start: str, end: str) -> Term:
    """Terms repeat across thousands of rows; each distinct one is built once."""
    key = (name, start, end)
    term = _TERMS.get(key)
    if term is None:
        term = _TERMS[key] = Term(source_id=name, name=name, start=date.fromisoformat(start),
                                  end=date.fromisoformat(end))
    return term


def parse_row(row: dict[str, str]) -> PostedGrade:
    missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    # Validated by pydantic-core, which here costs half of what model_construct's Python loop does.
    return PostedGrade(
        source_id=row["posted_id"], student_id=row["student_id"], student_name=row.get("student_name") or "",
        section_id=row["section_id"], course_number=row.get("course_number") or "",
        course_name=row.get("course_name") or "", school_id=row["school_id"], school_year=int(row["school_year"]),
        grading_task=row["grading_task"], grading_task_code=row.get("grading_task_code") or None,
        term=_term(row.get("term_name") or "", row["term_start"], row["term_end"]),
        score=_number(row.get("score")), letter=row.get("letter") or None,
        posted_at=datetime.fromisoformat(row["posted_at"]) if row.get("posted_at") else None,
        deleted=flag(row.get("deleted")), standard=flag(row.get("standard")),
        course_active=flag(row.get("course_active"), default=True),
        state_report_exclude=flag(row.get("state_report_exclude")), school_exclude=flag(row.get("school_exclude")),
        calendar_exclude=flag(row.get("calendar_exclude")), credits_earned=_number(row.get("credits_earned")),
        subject_code=row.get("subject_code") or None,
    )


