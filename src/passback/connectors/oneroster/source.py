"""A OneRoster REST server (1.1 or 1.2) as a source (S3): a teacher's gradebook the SIS holds, read per class.

**The same mapping as the CSV bundle.** What a OneRoster class means to passback (one
course with the class as its one section, SIS id = the class's ``sourcedId``; categories
imported with ``destination_ref`` = their ``sourcedId``; points = ``resultValueMax``; scores
by ``scoreStatus`` and the 1.2 flags; an enrolled student without a result is ungraded;
``tobedeleted`` is as if absent) is written once, in
:func:`passback.connectors.oneroster_csv.source.map_tables`. This module only reads one
class's objects over REST and flattens each into the row the CSV binding would hold for it
(``class.sourcedId`` -> ``classSourcedId``, ``terms`` -> ``termSourcedIds``...), so the two
bindings cannot drift apart. An object that cannot be read (a score that is not a number,
a ``scoreStatus`` outside the vocabulary) is a problem named by its collection and its
position in the listing as read (``results line 3``), and the other objects are still read.

**What is read for a class** (``rostering`` and ``gradebook`` are the version's service
paths, see :mod:`.client`): the class (a 404 or ``tobedeleted`` is "not found"); its terms
from ``academicSessions`` and its course (read once per connection / once per class); its
``enrollments`` and, for each student enrollment, the user; every ``category`` (global
objects, read once per connection); its ``lineItems``; and ``classes/{id}/results``, kept
to the results of those lineItems. Enrollments and lineItems are asked for with
``filter=class.sourcedId='...'``; a server that refuses the filter (400) is read whole and
filtered here, and what any server answers is filtered here again, so a server that
ignores ``filter`` reads the same. A server without ``classes/{id}/results`` (404 or 400)
has its ``results`` read whole, kept to the class's lineItems.

A OneRoster server's gradebook is the SIS's own: passback does not write to it as a source
(importing a category or fixing an assignment is done in the SIS's gradebook).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from passback.connectors.base import Source
from passback.connectors.oneroster.client import OneRosterClient, segment
from passback.connectors.oneroster_csv.binding import Row, Table
from passback.connectors.oneroster_csv.source import map_tables
from passback.errors import DestinationError, Invalid, Refused, SourceError, SourceNotFound, TargetGone
from passback.model import CourseSnapshot
from passback.model.values import AssignmentChanges

T = TypeVar("T")

COLUMNS: dict[str, tuple[str, ...]] = {
    "classes.csv": ("title", "courseSourcedId", "classCode", "termSourcedIds"),
    "academicSessions.csv": ("title", "type", "startDate", "endDate"),
    "courses.csv": ("title", "courseCode"),
    "users.csv": ("givenName", "familyName", "preferredGivenName", "identifier"),
    "enrollments.csv": ("classSourcedId", "userSourcedId", "role"),
    "categories.csv": ("title",),
    "lineItems.csv": ("title", "description", "dueDate", "classSourcedId", "categorySourcedId", "resultValueMax"),
    "results.csv": ("lineItemSourcedId", "studentSourcedId", "scoreStatus", "score", "textScore", "late", "missing",
                    "incomplete"),
}
"""The CSV binding's columns passback reads, per file; each is filled from the REST object's field of that name,
a ``...SourcedId`` column from the reference (``class`` -> ``classSourcedId``), ``termSourcedIds`` from ``terms``."""

VERSION = {"v1p1": "1.1", "v1p2": "1.2"}


def _text(value: Any) -> str:
    """A JSON value as the CSV binding writes it (booleans ``true``/``false``, numbers as written)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _ref(value: Any) -> str:
    return _text(value.get("sourcedId")) if isinstance(value, dict) else ""


def _refs(value: Any) -> str:
    return ",".join(r for r in (_ref(v) for v in value) if r) if isinstance(value, list) else ""


def flatten(file: str, obj: dict[str, Any]) -> dict[str, str]:
    """One REST object as the row of ``file`` the CSV binding would hold for it."""
    fields = {"sourcedId": _text(obj.get("sourcedId")), "status": _text(obj.get("status"))}
    for column in COLUMNS[file]:
        if column == "termSourcedIds":
            fields[column] = _refs(obj.get("terms"))
        elif column.endswith("SourcedId"):
            fields[column] = _ref(obj.get(column.removesuffix("SourcedId")))
        else:
            fields[column] = _text(obj.get(column))
    return fields


def table(file: str, objects: list[dict[str, Any]]) -> Table:
    """A listing as the CSV binding's table; an object's line is its position in the listing (1 = first)."""
    return Table(file, ("sourcedId", "status", *COLUMNS[file]),
                 [Row(index + 1, flatten(file, obj)) for index, obj in enumerate(objects)])


def _active(obj: dict[str, Any]) -> bool:
    return str(obj.get("status") or "active").lower() == "active"


class OneRosterSource(Source):
    """A OneRoster server's classes as courses; each read whole per run, only what that class needs."""

    kind = "oneroster"

    def __init__(self, client: OneRosterClient) -> None:
        self.client = client

    async def _read(self, what: str, reading: Callable[[], Awaitable[T]]) -> T:
        """A read, its failures in the words of a source: the server's refusals become :class:`SourceError`."""
        try:
            return await reading()
        except DestinationError as exc:
            raise SourceError(f"The OneRoster server at {self.client.base_url} could not be read ({what}: {exc}); "
                              "check the connection's URL, version, client id and secret, and that the server is "
                              "up, then sync again.") from exc

    async def _one(self, path: str, key: str) -> dict[str, Any] | None:
        """One object by its path; None when the server has no such object (404)."""
        try:
            body = await self.client.get_json(path)
        except TargetGone:
            return None
        found = body.get(key) if isinstance(body, dict) else None
        return found if isinstance(found, dict) else None

    async def _of_class(self, path: str, key: str, field: str, class_id: str) -> list[dict[str, Any]]:
        """The collection's objects whose ``field`` reference is the class: by ``filter`` where the server takes it."""
        rows: list[dict[str, Any]] | None = None
        if "'" not in class_id:  # the filter grammar has no escape for a quote
            try:
                rows = await self.client.pages(path, key, {"filter": f"{field}.sourcedId='{class_id}'"})
            except Refused as exc:
                if exc.status != 400:
                    raise
        if rows is None:
            rows = await self.client.pages(path, key)
        return [r for r in rows if _ref(r.get(field)) == class_id]

    async def _results(self, class_id: str, items: set[str]) -> list[dict[str, Any]]:
        try:
            rows = await self.client.pages(f"{self.client.gradebook}/classes/{segment(class_id)}/results", "results")
        except (TargetGone, Refused) as exc:
            if isinstance(exc, Refused) and exc.status != 400:
                raise
            rows = await self.client.pages(f"{self.client.gradebook}/results", "results")
        return [r for r in rows if _ref(r.get("lineItem")) in items]

    async def list_course_ids(self) -> list[str]:
        classes = await self._read("the classes", lambda: self.client.pages(f"{self.client.rostering}/classes",
                                                                             "classes"))
        return sorted({str(c["sourcedId"]) for c in classes if c.get("sourcedId") and _active(c)})

    async def read_course(self, course_id: str) -> CourseSnapshot:
        return await self._read(f"class {course_id}", lambda: self._read_class(course_id))

    async def _read_class(self, class_id: str) -> CourseSnapshot:
        rostering, gradebook = self.client.rostering, self.client.gradebook
        klass = await self._one(f"{rostering}/classes/{segment(class_id)}", "class")
        if klass is None or not _active(klass):
            raise SourceNotFound(f"Class {class_id} not found on the OneRoster server at {self.client.base_url} (or "
                                 "it is marked tobedeleted); a course of a OneRoster connection is a class: give the "
                                 "sourcedId of one of its classes.")
        course_id = _ref(klass.get("course"))
        sessions, course, enrollments, categories, items = await asyncio.gather(
            self.client.cached_pages(f"{rostering}/academicSessions", "academicSessions"),
            self._one(f"{rostering}/courses/{segment(course_id)}", "course") if course_id else _nothing(),
            self._of_class(f"{rostering}/enrollments", "enrollments", "class", class_id),
            self.client.cached_pages(f"{gradebook}/categories", "categories"),
            self._of_class(f"{gradebook}/lineItems", "lineItems", "class", class_id),
        )
        students = list(dict.fromkeys(_ref(e.get("user")) for e in enrollments
                                      if str(e.get("role") or "").lower() == "student" and _ref(e.get("user"))))
        users, results = await asyncio.gather(
            asyncio.gather(*(self._one(f"{rostering}/users/{segment(u)}", "user") for u in students)),
            self._results(class_id, {str(i.get("sourcedId")) for i in items}),
        )
        terms = set(_refs(klass.get("terms")).split(","))
        tables = {
            "classes.csv": table("classes.csv", [klass]),
            "academicSessions.csv": table("academicSessions.csv", [s for s in sessions if s.get("sourcedId") in terms]),
            "courses.csv": table("courses.csv", [course] if course else []),
            "users.csv": table("users.csv", [u for u in users if u is not None]),
            "enrollments.csv": table("enrollments.csv", enrollments),
            "categories.csv": table("categories.csv", categories),
            "lineItems.csv": table("lineItems.csv", items),
            "results.csv": table("results.csv", results),
        }
        version = VERSION.get(self.client.version, "1.1")
        snapshot = map_tables(self.client.base_url, version, tables).snapshot(class_id)
        if not snapshot.problems:
            return snapshot
        problems = tuple(p.model_copy(update={"file": p.file.removesuffix(".csv")}) for p in snapshot.problems)
        return snapshot.model_copy(update={"problems": problems})

    async def create_category(self, course_id: str, name: str, destination_ref: str) -> str:
        raise Invalid(f"passback does not write to the OneRoster server's gradebook: add the category {name!r} in the "
                      "SIS's gradebook (its sourcedId is the PowerTeacher Pro category id), then sync again.")

    async def update_assignment(self, course_id: str, assignment_id: str, changes: AssignmentChanges) -> None:
        raise Invalid(f"passback does not write to the OneRoster server's gradebook: change lineItem {assignment_id} "
                      "in the SIS's gradebook, then sync again.")

    async def aclose(self) -> None:
        await self.client.aclose()


async def _nothing() -> None:
    return None
