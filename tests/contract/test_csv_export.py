"""The posted-grades export as districts produce it: UTF-8, Windows-1252 or Latin-1 text, and
now and then a file that is not text at all. Every case reads or says why, never a traceback."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from passback.connectors.csv_export.source import read_export
from passback.model.posted_rows import COLUMNS, parse_row


def _export_text(name: str) -> str:
    row = dict.fromkeys(COLUMNS, "")
    row.update(posted_id="p1", student_id="100001", student_name=name, section_id="MATH101-00001",
               course_number="MATH101", school_id="255901", school_year="2027", grading_task="S1 Final",
               term_name="S1", term_start="2026-08-10", term_end="2026-12-18", score="91.5", letter="A")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerow([row[c] for c in COLUMNS])
    return out.getvalue()


def _name_read(path: Path) -> str:
    export = read_export(path)
    assert not export.problems
    line, values = export.rows["p1"]
    return parse_row(dict(zip(export.names, values, strict=False))).student_name


def test_windows_1252_and_latin_1_exports_are_read(tmp_path: Path) -> None:
    for encoding, name in (("utf-8", "Zoë Nuñez"), ("cp1252", "Zoë Nuñez – “Jr”"), ("latin-1", "Zoë Nuñez\x81")):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(_export_text(name).encode(encoding))
        assert _name_read(path) == name, encoding


def test_a_binary_file_is_a_problem_naming_the_path_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "grades.xlsx"
    path.write_bytes(b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)) * 4)
    export = read_export(path)
    assert not export.rows and len(export.problems) == 1
    assert str(path) in export.problems[0].message and "CSV" in export.problems[0].message
