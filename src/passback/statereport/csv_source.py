"""Posted grades from a SIS export (CSV), one row per posted grade.

Columns: posted_id, student_id, student_name, section_id, course_number, course_name,
school_id, school_year, grading_task, grading_task_code, term_name, term_start,
term_end, score, letter, posted_at, deleted, standard, course_active,
state_report_exclude, school_exclude, calendar_exclude, credits_earned, subject_code.
A row that cannot be read is reported with its line number and the fix; the others are
still read.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

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


def _flag(value: str | None, default: bool = False) -> bool:
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
        deleted=_flag(row.get("deleted")), standard=_flag(row.get("standard")),
        course_active=_flag(row.get("course_active"), default=True),
        state_report_exclude=_flag(row.get("state_report_exclude")), school_exclude=_flag(row.get("school_exclude")),
        calendar_exclude=_flag(row.get("calendar_exclude")), credits_earned=_number(row.get("credits_earned")),
        subject_code=row.get("subject_code") or None,
    )


def export_digest(path: Path) -> str | None:
    """One hash over the whole export: the cheapest way to know nothing in it changed."""
    if not path.exists():
        return None
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_export(path: Path) -> PostedExport:
    rows: dict[str, tuple[int, list[str]]] = {}
    hashes: dict[str, str] = {}
    deleted: set[str] = set()
    problems: list[RowProblem] = []
    if not path.exists():
        return PostedExport([], {}, {}, [RowProblem(0, f"the export {path} does not exist; check the csv connection's "
                                                          "path")], set())
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return PostedExport([], {}, {}, [RowProblem(1, "the file is empty; export the posted grades with a header row")],
                                set())
        names = [h.strip() for h in header]
        unknown = [n for n in REQUIRED if n not in names]
        if unknown:
            return PostedExport(names, {}, {}, [RowProblem(1, f"the header lacks {', '.join(unknown)}; "
                                                              f"the columns are: {', '.join(COLUMNS)}")], set())
        at_id, at_deleted = names.index("posted_id"), names.index("deleted") if "deleted" in names else None
        for line, values in enumerate(reader, start=2):
            posted_id = values[at_id].strip() if len(values) > at_id else ""
            if not posted_id:
                problems.append(RowProblem(line, f"row {line}: missing posted_id; fix the row in the export and sync again"))
                continue
            rows[posted_id] = (line, values)
            hashes[posted_id] = hashlib.md5("\x1f".join(values).encode(), usedforsecurity=False).hexdigest()
            if at_deleted is not None and len(values) > at_deleted and _flag(values[at_deleted]):
                deleted.add(posted_id)
    return PostedExport(names, rows, hashes, problems, deleted)


def write_export(path: Path, grades: list[PostedGrade]) -> None:
    """The export format, written (used by the sandbox and the benchmark)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for g in grades:
            writer.writerow([g.source_id, g.student_id, g.student_name, g.section_id, g.course_number, g.course_name,
                             g.school_id, g.school_year, g.grading_task, g.grading_task_code or "", g.term.name,
                             g.term.start.isoformat() if g.term.start else "", g.term.end.isoformat() if g.term.end else "",
                             "" if g.score is None else f"{g.score:g}", g.letter or "",
                             g.posted_at.isoformat() if g.posted_at else "", int(g.deleted), int(g.standard),
                             int(g.course_active), int(g.state_report_exclude), int(g.school_exclude),
                             int(g.calendar_exclude), "" if g.credits_earned is None else f"{g.credits_earned:g}",
                             g.subject_code or ""])
