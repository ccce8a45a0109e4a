"""OneRoster CSV bundles as a source (S3), 1.1 and 1.2: the shared source contract over a
bundle generated from the sandbox district, its truth read from the bundle's CSV text here
(never through the connector); then the bad rows, each named by file and line while every
good row is still read, and the binding's vocabulary (tobedeleted, scoreStatus, 1.2 flags)."""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from passback.connectors.oneroster_csv.source import OneRosterCsvSource
from passback.connectors.registry import HttpOptions, kind_of
from passback.errors import Invalid, SourceError
from passback.model import CourseSnapshot
from passback.sandbox.district import generate
from passback.sandbox.oneroster_bundle import Bundle, build_bundle
from passback.testing.sources import SourceContract
from tests.conftest import SMALL

VERSIONS = ("1.1", "1.2")


def csv_rows(path: Path, name: str) -> list[tuple[int, dict[str, str]]]:
    """A file of the zip as (line, row by column name); line 1 is the header."""
    with zipfile.ZipFile(path) as bundle:
        text = bundle.read(name).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return [(index + 2, row) for index, row in enumerate(reader)]


def bundle_truth(path: Path, skip: Collection[tuple[str, int]] = ()) -> dict[str, Any]:
    """What each class holds, from the CSV text alone; rows at ``skip`` (file, line) are left out,
    and so are the results of a skipped lineItem."""
    version = {r["propertyName"]: r["value"] for _, r in csv_rows(path, "manifest.csv")}["oneroster.version"]

    def rows(name: str) -> list[dict[str, str]]:
        return [r for line, r in csv_rows(path, name) if (name, line) not in skip and r.get("status") != "tobedeleted"]

    users = {u["sourcedId"]: u for u in rows("users.csv")}
    categories = {c["sourcedId"] for c in rows("categories.csv")}
    skipped_items = {r["sourcedId"] for line, r in csv_rows(path, "lineItems.csv") if ("lineItems.csv", line) in skip}
    courses: dict[str, Any] = {}
    for klass in rows("classes.csv"):
        cid = klass["sourcedId"]
        enrolled = [e["userSourcedId"] for e in rows("enrollments.csv")
                    if e["classSourcedId"] == cid and e["role"] == "student" and e["userSourcedId"] in users]
        items = {i["sourcedId"]: i for i in rows("lineItems.csv") if i["classSourcedId"] == cid}
        results = [r for r in rows("results.csv") if r["lineItemSourcedId"] in items
                   and r["lineItemSourcedId"] not in skipped_items and r["studentSourcedId"] in enrolled]
        missing_word = (lambda r: r["scoreStatus"] == "not submitted") if version == "1.1" else \
            (lambda r: r["missing"] == "true")
        courses[cid] = {
            "section_sis_ids": [cid],
            "student_sis_ids": [users[u]["identifier"] or u for u in enrolled],
            "assignments": {k: (i["title"], float(i["resultValueMax"]) if i["resultValueMax"] else None)
                            for k, i in items.items()},
            "graded_scores": {(r["lineItemSourcedId"], r["studentSourcedId"]): float(r["score"]) for r in results
                              if r["scoreStatus"] in ("fully graded", "partially graded", "submitted") and r["score"]},
            "excused": {(r["lineItemSourcedId"], r["studentSourcedId"]) for r in results if r["scoreStatus"] == "exempt"},
            "missing": {(r["lineItemSourcedId"], r["studentSourcedId"]) for r in results if missing_word(r)},
            "imported_categories": {c: c for c in {i["categorySourcedId"] for i in items.values()} if c in categories},
            "late": {(r["lineItemSourcedId"], r["studentSourcedId"]) for r in results if r.get("late") == "true"},
        }
    return {"courses": courses, "version": version}


def write(bundle: Bundle, tmp_path: Path, name: str = "bundle.zip") -> Path:
    return bundle.write(tmp_path / name)


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def generated(version: str) -> Bundle:
    canvas, powerschool, _ = generate(SMALL)
    return build_bundle(canvas, powerschool, version)


@pytest.fixture
def bundle_path(generated: Bundle, tmp_path: Path) -> Path:
    return write(generated, tmp_path)


@pytest.fixture
def source(bundle_path: Path) -> OneRosterCsvSource:
    return OneRosterCsvSource(bundle_path)


@pytest.fixture
def truth(bundle_path: Path) -> dict[str, Any]:
    return bundle_truth(bundle_path)


class TestOneRosterCsvContract(SourceContract):
    pass


def read(path: Path) -> dict[str, CourseSnapshot]:
    source = OneRosterCsvSource(path)

    async def every() -> dict[str, CourseSnapshot]:
        return {c: await source.read_course(c) for c in await source.list_course_ids()}

    return asyncio.run(every())


def assert_holds(snapshot: CourseSnapshot, expected: dict[str, Any]) -> None:
    assert sorted(s.sis_id for s in snapshot.students) == sorted(expected["student_sis_ids"])
    assert {a.source_id: (a.name, a.points_possible) for a in snapshot.assignments} == expected["assignments"]
    assert {(s.assignment_id, s.student_id): s.score for s in snapshot.scores if s.graded and not s.excused} == \
        expected["graded_scores"]
    assert {(s.assignment_id, s.student_id) for s in snapshot.scores if s.excused} == expected["excused"]
    assert {(s.assignment_id, s.student_id) for s in snapshot.scores if s.missing} == expected["missing"]
    assert {(s.assignment_id, s.student_id) for s in snapshot.scores if s.late} == expected["late"]


def test_a_class_is_a_course_with_itself_as_its_one_section(bundle_path: Path) -> None:
    classes = {r["sourcedId"]: r for _, r in csv_rows(bundle_path, "classes.csv")}
    for class_id, snapshot in read(bundle_path).items():
        assert [(s.source_id, s.sis_id) for s in snapshot.sections] == [(class_id, class_id)]
        assert snapshot.course.sis_id == classes[class_id]["courseSourcedId"]
        assert snapshot.course.name == classes[class_id]["title"]
        assert all(c.imported and c.destination_ref == c.source_id for c in snapshot.categories)
        assert not snapshot.problems
        # every enrolled student has a score on every column: a result, or ungraded (Canvas lists unsubmitted too)
        assert len(snapshot.scores) == len(snapshot.assignments) * len(snapshot.students)


def test_due_dates_keep_the_day_the_export_wrote(bundle_path: Path) -> None:
    due = {r["sourcedId"]: r["dueDate"] for _, r in csv_rows(bundle_path, "lineItems.csv")}
    for snapshot in read(bundle_path).values():
        for assignment in snapshot.assignments:
            written = due[assignment.source_id]
            assert (assignment.due_at.date().isoformat() if assignment.due_at else "") == written[:10]


def test_bad_rows_are_named_by_file_and_line_and_every_good_row_is_read(version: str, tmp_path: Path) -> None:
    canvas, powerschool, _ = generate(SMALL)
    bundle = build_bundle(canvas, powerschool, version, bad_rows=True)
    path = write(bundle, tmp_path)
    snapshots = read(path)
    assert {p.kind for p in bundle.planted} >= {"score-not-a-number", "short-result", "unknown-student",
                                                "unknown-class", "points-not-a-number", "unknown-user"}
    reported = {(p.file, p.line): p for s in snapshots.values() for p in s.problems}
    for planted in bundle.planted:
        problem = reported[(planted.file, planted.line)]
        assert problem.text.startswith(f"{planted.file} line {planted.line}: "), problem.text
        assert problem.fix
    assert set(reported) == {(p.file, p.line) for p in bundle.planted}  # nothing else is called bad
    said = {p.kind: reported[(p.file, p.line)].text for p in bundle.planted}
    line = {p.kind: p.line for p in bundle.planted}
    assert said["score-not-a-number"] == f"results.csv line {line['score-not-a-number']}: score 'twelve' is not a number"
    assert said["points-not-a-number"] == \
        f"lineItems.csv line {line['points-not-a-number']}: resultValueMax 'ten' is not a number"
    assert "names class NO-SUCH-CLASS, which classes.csv does not hold" in said["unknown-class"]
    assert "names student NO-SUCH-STUDENT, who is not in users.csv" in said["unknown-student"]
    assert "fields where the header has" in said["short-result"]
    # a lineItem with no class it can be placed in is shown on every class's run; the others on their own class's
    assert all(any(p.line == line["unknown-class"] and p.file == "lineItems.csv" for p in s.problems)
               for s in snapshots.values())

    truth = bundle_truth(path, skip={(p.file, p.line) for p in bundle.planted})
    for class_id, snapshot in snapshots.items():
        assert_holds(snapshot, truth["courses"][class_id])
    # a bad result's grade is withheld (no score at all: neither sent nor cleared), not read as ungraded
    bad_results = [p for p in bundle.planted if p.file == "results.csv" and p.kind != "unknown-student"]
    rows = dict(csv_rows(path, "results.csv"))
    for planted in bad_results:
        row = rows[planted.line]
        pair = (row["lineItemSourcedId"], row["studentSourcedId"])
        assert not [s for snap in snapshots.values() for s in snap.scores if (s.assignment_id, s.student_id) == pair]
    # the withheld lineItem names itself, so a sync never deletes the column it was
    withheld = next(p for p in bundle.planted if p.kind == "points-not-a-number")
    assert any(p.assignment_id == withheld.source_id for s in snapshots.values() for p in s.problems)


def _column(bundle: Bundle, name: str, column: str) -> int:
    return bundle.files[name][0].index(column)


def test_tobedeleted_rows_are_left_out_as_if_absent(generated: Bundle, tmp_path: Path) -> None:
    items, results = generated.files["lineItems.csv"], generated.files["results.csv"]
    status_i, status_r = _column(generated, "lineItems.csv", "status"), _column(generated, "results.csv", "status")
    gone_item = items[1][0]
    items[1][status_i] = "tobedeleted"
    li = _column(generated, "results.csv", "lineItemSourcedId")
    kept = next(r for r in results[1:] if r[li] != gone_item)
    kept[status_r] = "tobedeleted"
    snapshots = read(write(generated, tmp_path))
    everything = [s for snap in snapshots.values() for s in snap.assignments]
    assert gone_item not in {a.source_id for a in everything}
    assert not [p for snap in snapshots.values() for p in snap.problems]  # left out, not a problem
    pair = (kept[li], kept[_column(generated, "results.csv", "studentSourcedId")])
    found = [s for snap in snapshots.values() for s in snap.scores if (s.assignment_id, s.student_id) == pair]
    assert len(found) == 1 and not found[0].graded and not found[0].excused  # as if absent: ungraded, cleared if sent


@pytest.mark.parametrize("version", ["1.2"])
def test_the_1_2_flags_and_text_scores_follow_the_seed(generated: Bundle, tmp_path: Path) -> None:
    results = generated.files["results.csv"]
    col = {c: _column(generated, "results.csv", c) for c in results[0]}
    points = {r[0]: float(r[_column(generated, "lineItems.csv", "resultValueMax")] or 0)
              for r in generated.files["lineItems.csv"][1:]}
    graded = [r for r in results[1:] if r[col["scoreStatus"]] == "fully graded"]
    late, missing, incomplete, complete, failed, in_progress = graded[:6]
    late[col["late"]] = "TRUE"
    missing[col["missing"]] = "true"
    incomplete[col["score"]], incomplete[col["incomplete"]] = "", "true"
    complete[col["score"]], complete[col["textScore"]] = "", "complete"
    failed[col["score"]], failed[col["textScore"]] = "", "incomplete"
    in_progress[col["scoreStatus"]], in_progress[col["score"]] = "submitted", ""
    scores = {(s.assignment_id, s.student_id): s for snap in read(write(generated, tmp_path)).values()
              for s in snap.scores}

    def of(row: list[str]) -> Any:
        return scores[(row[col["lineItemSourcedId"]], row[col["studentSourcedId"]])]

    assert of(late).late and of(late).graded
    assert of(missing).missing  # missing does not pass (the planner skips it), whatever the score
    assert of(incomplete).score == 0.0 and of(incomplete).graded  # Incomplete: 0, the status not passed
    assert of(complete).score == points[complete[col["lineItemSourcedId"]]]  # Complete: full credit
    assert of(failed).score == 0.0
    assert not of(in_progress).graded and of(in_progress).score is None  # submitted, not graded yet


def test_not_submitted_is_missing_in_1_1_and_ungraded_in_1_2_without_the_flag(version: str, tmp_path: Path) -> None:
    canvas, powerschool, _ = generate(SMALL)
    bundle = build_bundle(canvas, powerschool, version)
    results = bundle.files["results.csv"]
    col = {c: _column(bundle, "results.csv", c) for c in results[0]}
    row = next(r for r in results[1:] if r[col["scoreStatus"]] == "not submitted")
    if version == "1.2":
        row[col["missing"]] = "false"
    scores = {(s.assignment_id, s.student_id): s for snap in read(write(bundle, tmp_path)).values() for s in snap.scores}
    score = scores[(row[col["lineItemSourcedId"]], row[col["studentSourcedId"]])]
    assert not score.graded and score.missing is (version == "1.1")


def test_an_exempt_result_is_excused(bundle_path: Path) -> None:
    rows = [r for _, r in csv_rows(bundle_path, "results.csv") if r["scoreStatus"] == "exempt"]
    assert rows
    scores = {(s.assignment_id, s.student_id): s for snap in read(bundle_path).values() for s in snap.scores}
    assert all(scores[(r["lineItemSourcedId"], r["studentSourcedId"])].excused for r in rows)


def test_a_value_outside_the_vocabulary_is_a_problem(generated: Bundle, tmp_path: Path) -> None:
    results = generated.files["results.csv"]
    col = {c: _column(generated, "results.csv", c) for c in results[0]}
    results[5][col["scoreStatus"]] = "graded"
    results[6][col["status"]] = "inactive"
    duplicate = list(results[7])
    results.append(duplicate)
    problems = {p.line: p.text for snap in read(write(generated, tmp_path)).values() for p in snap.problems}
    assert problems[6] == ("results.csv line 6: scoreStatus is 'graded', not one of: exempt, fully graded, "
                           "not submitted, partially graded, submitted")
    assert problems[7] == "results.csv line 7: status 'inactive' is not one of active, tobedeleted"
    last = len(results)
    assert problems[last] == f"results.csv line {last}: sourcedId {duplicate[0]} is also on line 8; this row is not read"


def test_a_bundle_passback_cannot_use_is_refused_whole_with_the_fix(generated: Bundle, tmp_path: Path) -> None:
    manifest = generated.files["manifest.csv"]
    results_mode = next(r for r in manifest if r[0] == "file.results")
    results_mode[1] = "delta"
    with pytest.raises(SourceError, match="file.results=delta; passback reads a whole gradebook"):
        read(write(generated, tmp_path, "delta.zip"))
    results_mode[1] = "bulk"
    version = next(r for r in manifest if r[0] == "oneroster.version")
    version[1] = "1.0"
    with pytest.raises(SourceError, match=r"line 3 says oneroster.version='1.0'; passback reads OneRoster 1.1 and 1.2"):
        read(write(generated, tmp_path, "old.zip"))
    version[1] = generated.version
    header = generated.files["results.csv"][0]
    header[header.index("studentSourcedId")] = "student"
    with pytest.raises(SourceError, match="results.csv line 1 of .* has no studentSourcedId column"):
        read(write(generated, tmp_path, "header.zip"))
    header[header.index("student")] = "studentSourcedId"
    header[header.index("score")] = "points"
    snapshots = read(write(generated, tmp_path, "needed.zip"))  # a column read but not a key: told on line 1
    assert any(p.text == "results.csv line 1: the header has no score column; every row is read with it blank"
               for s in snapshots.values() for p in s.problems)
    (tmp_path / "not.zip").write_text("propertyName,value\n")
    with pytest.raises(SourceError, match="is not a zip file"):
        read(tmp_path / "not.zip")


def test_the_probe_opens_the_zip_and_checks_the_manifest(bundle_path: Path, tmp_path: Path) -> None:
    kind = kind_of("oneroster_csv")
    config = kind.config.parse(str(bundle_path), {})
    said = asyncio.run(kind.probe(config, HttpOptions()))
    assert said.startswith("a OneRoster 1.") and "lineItems.csv" in said and "results.csv" in said
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(Invalid, match="is not a zip file"):
        asyncio.run(kind.probe(kind.config.parse(str(tmp_path / "broken.zip"), {}), HttpOptions()))
    with pytest.raises(Invalid, match="There is no file at"):
        asyncio.run(kind.probe(kind.config.parse(str(tmp_path / "nowhere.zip"), {}), HttpOptions()))


@pytest.mark.anyio
async def test_a_bundle_is_read_only_and_read_once_while_unchanged(source: OneRosterCsvSource) -> None:
    first = await source.bundle()
    assert await source.bundle() is first  # sync --all reads the zip once
    with pytest.raises(SourceError, match="cannot be written to"):
        await source.create_category("x", "Homework", "1")
    with pytest.raises(SourceError, match="cannot be written to"):
        await source.update_assignment("x", "y", None)  # type: ignore[arg-type]
