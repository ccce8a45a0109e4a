"""The OneRoster CSV binding (1EdTech OneRoster 1.1 and 1.2): a zip of CSV files and its manifest.

What is written down here is the binding itself, shared by the reader
(:mod:`passback.connectors.oneroster_csv.source`) and the sandbox's bundle writer:

* ``manifest.csv`` has the header ``propertyName,value``; ``manifest.version`` is ``1.0``,
  ``oneroster.version`` ``1.1`` or ``1.2``, each ``file.<name>`` is ``bulk``, ``delta`` or
  ``absent``, and ``source.systemName`` / ``source.systemCode`` name the exporter;
* each data file's header, in the binding's column order (:data:`COLUMNS`); 1.2 adds
  ``categories.weight``, ``lineItems.academicSessionSourcedId``, the results' ``textScore``,
  ``inProgress``, ``incomplete``, ``late`` and ``missing``, moves a user's role and orgs
  from ``users.csv`` to ``roles.csv``, and adds the users' master identifier, preferred
  names, primary org and pronouns;
* the vocabularies: ``status`` ``active`` / ``tobedeleted`` (blank in bulk files means
  active), ``scoreStatus`` ``exempt``, ``fully graded``, ``not submitted``, ``partially
  graded``, ``submitted``; booleans ``true`` / ``false``; multiple values in one field
  comma-separated inside quotes.

Columns are read by name, never by position, so a file with the columns in another order
or with extension columns (``metadata.*``) is read the same. (The 1.2 headers below were
written from the binding's tables with no 1EdTech conformance set at hand; the sandbox
writes them in this order, the reader depends on the names alone.) A file that lacks a column
passback cannot place a row without (:data:`KEYS`) cannot be read at all; a file that lacks
another column passback reads (:data:`NEEDED`) is read with that field blank, and the
missing column is reported as a problem on its line 1.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field

from passback.errors import SourceError

MANIFEST = "manifest.csv"
MANIFEST_VERSION = "1.0"
VERSIONS = ("1.1", "1.2")
MODES = ("bulk", "delta", "absent")
ACTIVE, TO_BE_DELETED = "active", "tobedeleted"
STATUSES = (ACTIVE, TO_BE_DELETED)
EXEMPT, FULLY_GRADED, NOT_SUBMITTED, PARTIALLY_GRADED, SUBMITTED = (
    "exempt", "fully graded", "not submitted", "partially graded", "submitted")
SCORE_STATUSES = (EXEMPT, FULLY_GRADED, NOT_SUBMITTED, PARTIALLY_GRADED, SUBMITTED)
BOOLEANS = ("true", "false")

_COMMON = ("sourcedId", "status", "dateLastModified")
_SESSIONS = (*_COMMON, "title", "type", "startDate", "endDate", "parentSourcedId", "schoolYear")
_CLASSES = (*_COMMON, "title", "grades", "courseSourcedId", "classCode", "classType", "location", "schoolSourcedId",
            "termSourcedIds", "subjects", "subjectCodes", "periods")
_COURSES = (*_COMMON, "schoolYearSourcedId", "title", "courseCode", "grades", "orgSourcedId", "subjects", "subjectCodes")
_ENROLLMENTS = (*_COMMON, "classSourcedId", "schoolSourcedId", "userSourcedId", "role", "primary", "beginDate",
                "endDate")
_ORGS = (*_COMMON, "name", "type", "identifier", "parentSourcedId")

COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "1.1": {
        "academicSessions.csv": _SESSIONS,
        "categories.csv": (*_COMMON, "title"),
        "classes.csv": _CLASSES,
        "courses.csv": _COURSES,
        "enrollments.csv": _ENROLLMENTS,
        "lineItems.csv": (*_COMMON, "title", "description", "assignDate", "dueDate", "classSourcedId",
                          "categorySourcedId", "gradingPeriodSourcedId", "resultValueMin", "resultValueMax"),
        "orgs.csv": _ORGS,
        "results.csv": (*_COMMON, "lineItemSourcedId", "studentSourcedId", "scoreStatus", "score", "scoreDate",
                        "comment"),
        "users.csv": (*_COMMON, "enabledUser", "orgSourcedIds", "role", "username", "userIds", "givenName",
                      "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades",
                      "password"),
    },
    "1.2": {
        "academicSessions.csv": _SESSIONS,
        "categories.csv": (*_COMMON, "title", "weight"),
        "classes.csv": _CLASSES,
        "courses.csv": _COURSES,
        "enrollments.csv": _ENROLLMENTS,
        "lineItems.csv": (*_COMMON, "title", "description", "assignDate", "dueDate", "classSourcedId",
                          "categorySourcedId", "gradingPeriodSourcedId", "academicSessionSourcedId",
                          "resultValueMin", "resultValueMax"),
        "orgs.csv": _ORGS,
        "results.csv": (*_COMMON, "lineItemSourcedId", "studentSourcedId", "scoreStatus", "score", "textScore",
                        "scoreDate", "comment", "inProgress", "incomplete", "late", "missing"),
        "roles.csv": (*_COMMON, "userSourcedId", "roleType", "role", "beginDate", "endDate", "orgSourcedId",
                      "userProfileSourcedId"),
        "users.csv": (*_COMMON, "enabledUser", "username", "userIds", "givenName", "familyName", "middleName",
                      "identifier", "email", "sms", "phone", "agentSourcedIds", "grades", "password",
                      "userMasterIdentifier", "resourceSourcedIds", "preferredGivenName", "preferredMiddleName",
                      "preferredFamilyName", "primaryOrgSourcedId", "pronouns"),
    },
}
"""Each data file's header, in the binding's order, per OneRoster version."""

MANIFEST_FILES: dict[str, tuple[str, ...]] = {
    "1.1": ("academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
            "demographics", "enrollments", "lineItems", "orgs", "resources", "results", "users"),
    "1.2": ("academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
            "demographics", "enrollments", "lineItemLearningObjectiveIds", "lineItems", "lineItemScoreScales", "orgs",
            "resources", "resultLearningObjectiveIds", "results", "resultScoreScales", "roles", "scoreScales",
            "userProfiles", "userResources", "users"),
}
"""The ``file.<name>`` properties of each version's manifest."""

REQUIRED_FILES = ("classes.csv", "users.csv", "enrollments.csv", "lineItems.csv", "results.csv")
"""What passback cannot sync without: the rosters, the columns and the grades."""
OPTIONAL_FILES = ("academicSessions.csv", "courses.csv", "categories.csv")
"""Read when the bundle has them: the terms, the course names, the categories."""

KEYS: dict[str, tuple[str, ...]] = {
    "academicSessions.csv": ("sourcedId",),
    "categories.csv": ("sourcedId",),
    "classes.csv": ("sourcedId",),
    "courses.csv": ("sourcedId",),
    "enrollments.csv": ("sourcedId", "classSourcedId", "userSourcedId", "role"),
    "lineItems.csv": ("sourcedId", "classSourcedId"),
    "results.csv": ("sourcedId", "lineItemSourcedId", "studentSourcedId"),
    "users.csv": ("sourcedId",),
}
"""Columns without which no row of the file can be placed: their absence stops the read."""

NEEDED: dict[str, tuple[str, ...]] = {
    "academicSessions.csv": ("title", "startDate", "endDate"),
    "categories.csv": ("title",),
    "classes.csv": ("title", "termSourcedIds"),
    "courses.csv": ("title",),
    "enrollments.csv": (),
    "lineItems.csv": ("title", "dueDate", "categorySourcedId", "resultValueMax"),
    "results.csv": ("scoreStatus", "score"),
    "users.csv": ("givenName", "familyName"),
}
"""Other columns passback reads: a file without one is read with that field blank, and told."""


@dataclass(frozen=True)
class Row:
    """One data row: its line in the file (1 is the header) and its fields by column name.

    ``short`` says how many fields the row lacks against the header (its fields are read as
    far as they go); ``extra`` how many it has beyond it.
    """

    line: int
    fields: dict[str, str]
    short: int = 0
    extra: int = 0

    def get(self, column: str) -> str:
        return self.fields.get(column, "").strip()


@dataclass
class Table:
    file: str
    header: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    lacking: tuple[str, ...] = ()  # needed columns the header lacks


@dataclass
class Manifest:
    version: str
    modes: dict[str, str]  # "results.csv" -> "bulk" / "delta" / "absent"
    system_name: str = ""


def manifest_of(bundle: zipfile.ZipFile, where: str) -> Manifest:
    """The manifest, checked: a bundle passback cannot trust is refused as a whole, naming the line."""
    rows = _csv_rows(_text(bundle, MANIFEST, where), MANIFEST, where)
    if not rows or [c.strip() for c in rows[0][1]] != ["propertyName", "value"]:
        raise SourceError(f"{MANIFEST} line 1 of {where} is not the header propertyName,value; export the bundle "
                          "again as OneRoster CSV (1.1 or 1.2).")
    values: dict[str, tuple[int, str]] = {}
    for line, cells in rows[1:]:
        if len(cells) >= 2 and cells[0].strip():
            values[cells[0].strip()] = (line, cells[1].strip())
    version = values.get("oneroster.version", (0, ""))
    if version[1] not in VERSIONS:
        said = f"line {version[0]} says oneroster.version={version[1]!r}" if version[0] else "has no oneroster.version"
        raise SourceError(f"{MANIFEST} of {where} {said}; passback reads OneRoster 1.1 and 1.2 bundles. Export the "
                          "bundle as OneRoster 1.1 or 1.2.")
    modes: dict[str, str] = {}
    for name, (line, mode) in values.items():
        if not name.startswith("file."):
            continue
        if mode not in MODES:
            raise SourceError(f"{MANIFEST} line {line} of {where} says {name}={mode!r}; a file is one of "
                              f"{', '.join(MODES)}. Correct the manifest and sync again.")
        modes[name.removeprefix("file.") + ".csv"] = mode
    return Manifest(version[1], modes, values.get("source.systemName", (0, ""))[1])


def read_tables(path: str, data: bytes) -> tuple[Manifest, dict[str, Table]]:
    """The manifest and every file passback reads, as rows by column name.

    Raises :class:`SourceError` when the bundle cannot be used at all: not a zip, no
    manifest, a version passback does not read, a file it needs marked ``delta`` (a delta
    is not the whole gradebook, and reading it as one would delete what it leaves out) or
    ``absent``, a file the manifest lists missing from the zip, a file that is not UTF-8,
    or a file lacking a column without which no row can be placed.
    """
    try:
        bundle = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{path} is not a zip file ({exc}); export the OneRoster CSV bundle as a .zip.") from exc
    with bundle:
        manifest = manifest_of(bundle, path)
        return manifest, {name: _table(name, _text(bundle, name, path), path, manifest.version)
                          for name in files_to_read(manifest, bundle.namelist(), path)}


def files_to_read(manifest: Manifest, held: list[str], path: str) -> list[str]:
    """The data files passback reads from this bundle; SourceError when one it needs is not there in bulk."""
    wanted = []
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        mode = manifest.modes.get(name, "absent")
        if mode == "delta":
            raise SourceError(f"{MANIFEST} of {path} says file.{name[:-4]}=delta; passback reads a whole gradebook "
                              "and needs a bulk file (a delta would read as if everything it leaves out were "
                              "deleted). Export a bulk bundle.")
        if mode == "absent":
            if name in REQUIRED_FILES:
                raise SourceError(f"{MANIFEST} of {path} says file.{name[:-4]}=absent; passback needs {name} to "
                                  "sync grades. Export a bundle with the rosters and the gradebook (classes, "
                                  "users, enrollments, lineItems, results).")
            continue
        if name not in held:
            raise SourceError(f"{MANIFEST} of {path} says file.{name[:-4]}=bulk, but the zip has no {name}; "
                              "export the bundle again.")
        wanted.append(name)
    return wanted


def _text(bundle: zipfile.ZipFile, name: str, where: str) -> str:
    try:
        raw = bundle.read(name)
    except KeyError as exc:
        raise SourceError(f"{where} has no {name}; a OneRoster CSV bundle holds {MANIFEST} and its data files at "
                          "the root of the zip.") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{name} in {where} is not UTF-8 (byte {exc.start}); the CSV binding is UTF-8. Export "
                          "the bundle as UTF-8.") from exc


def _csv_rows(text: str, name: str, where: str) -> list[tuple[int, list[str]]]:
    """Records with the line each starts on (a quoted field may span lines); blank lines left out."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise SourceError(f"{name} line {reader.line_num} of {where} is not CSV ({exc}); export the bundle "
                          "again.") from exc
    return rows


def _table(name: str, text: str, where: str, version: str) -> Table:
    rows = _csv_rows(text, name, where)
    if not rows:
        raise SourceError(f"{name} in {where} is empty; a bulk file has at least its header.")
    header = tuple(c.strip() for c in rows[0][1])
    absent = [c for c in KEYS[name] if c not in header]
    if absent:
        raise SourceError(f"{name} line 1 of {where} has no {', '.join(absent)} column; without it no row can be "
                          f"placed. OneRoster {version}'s header is: {','.join(COLUMNS[version][name])}. "
                          "Export the bundle again.")
    table = Table(name, header, lacking=tuple(c for c in NEEDED[name] if c not in header))
    for line, cells in rows[1:]:
        fields = dict(zip(header, cells, strict=False))
        table.rows.append(Row(line, fields, short=max(0, len(header) - len(cells)),
                              extra=max(0, len(cells) - len(header))))
    return table
