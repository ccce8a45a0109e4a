"""Posted grades from a SIS export (CSV), one row per posted grade.

A row that cannot be read is reported with its line number and the fix; the others are
still read. The columns are :data:`passback.model.posted_rows.COLUMNS`.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from passback.connectors.base import PostedGradesSource
from passback.model import PostedGrade
from passback.model.posted_rows import COLUMNS, REQUIRED, PostedExport, RowProblem, flag


def export_digest(path: Path) -> str | None:
    """One hash over the whole export: the cheapest way to know nothing in it changed."""
    if not path.exists():
        return None
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
"""UTF-8 first; a SIS on Windows often exports Windows-1252, and Latin-1 reads any byte left."""


def read_export(path: Path) -> PostedExport:
    """The export's rows, in the first encoding that reads the whole file; a binary file is a problem, not a crash."""
    if not path.exists():
        return PostedExport([], {}, {}, [RowProblem(0, f"the export {path} does not exist; check the csv connection's "
                                                          "path")], set())
    with path.open("rb") as handle:
        if b"\x00" in handle.read(8192):
            return PostedExport([], {}, {}, [RowProblem(0, f"the export {path} is not a CSV text file (it holds binary "
                                                           "data, as a spreadsheet does); export the posted grades as "
                                                           "CSV (UTF-8) and sync again")], set())
    for encoding in ENCODINGS:
        try:
            return _read_export(path, encoding)
        except UnicodeDecodeError:
            continue
        except csv.Error as exc:
            return PostedExport([], {}, {}, [RowProblem(0, f"the export {path} is not a CSV text file ({exc}); export "
                                                           "the posted grades as CSV (UTF-8) and sync again")], set())
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _read_export(path: Path, encoding: str) -> PostedExport:
    rows: dict[str, tuple[int, list[str]]] = {}
    hashes: dict[str, str] = {}
    deleted: set[str] = set()
    problems: list[RowProblem] = []
    with path.open(newline="", encoding=encoding) as handle:
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
            if at_deleted is not None and len(values) > at_deleted and flag(values[at_deleted]):
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


class CsvPostedGrades(PostedGradesSource):
    """A CSV export on disk, read whole on every run (its digest says when nothing changed)."""

    kind = "csv"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    async def read(self) -> PostedExport:
        return read_export(self.path)

    def digest(self) -> str | None:
        return export_digest(self.path)
