"""A OneRoster gradebook (REST binding, v1p1 or v1p2) as a gradebook destination (D3).

Speaks the contract written down in :mod:`passback.emulators.oneroster`. What passback's
model becomes in OneRoster's:

* A destination section is a OneRoster ``class`` (its ``sourcedId``); its roster is the
  class's students (``/classes/{id}/students``); a student's destination id is the user's
  ``sourcedId``, found by the source's SIS id as that ``sourcedId`` or as the user's
  ``identifier``.
* An assignment is one ``lineItem`` per class it is given to (placement ``PER_CLASS``). Its
  section assignment ids are those lineItems' ``sourcedId``; its destination id is the
  lineItem of the first class (by ``sourcedId``). Read back, the lineItems of a course's
  classes that share a title and a due date are one assignment: the natural key
  PowerSchool's OneRoster server refuses twice in a class (seed error 2).
* Categories: OneRoster categories are global objects (no class, no teacher); every class
  offers every category, ``status`` "active" ones as active. A lineItem names its
  category by ``sourcedId``, so a source category maps to a category's ``sourcedId`` (the
  Canvas group's import link where the district imported them, else a mapping by hand).
* Ids are chosen by passback (``CLIENT_ASSIGNED``): a lineItem's ``sourcedId`` is a uuid5 of
  its class, title and due date (the natural key above), a result's a uuid5 of its lineItem
  and student. A create is a PUT to that id, so a create repeated after a lost answer, a
  crash or a retry is the same PUT again and lands on the same object. The title of a
  lineItem can later change (an update renames it in place); a create whose id is already
  held under another title takes the next id of the sequence, so a rename never lets a new
  assignment overwrite an old one. Within a run, the ids written are kept in the context
  (``handles``), so two source assignments with one title and due date are not merged: the
  second is refused as seed error 2, as the server would.
* A lineItem carries ``resultValueMin`` 0 and ``resultValueMax`` the points possible
  (extra credit passes as a score above it), the class's grading period covering the due
  date (else its term) as ``gradingPeriod``, and in v1p2 the class's school. Its
  ``dueDate`` and ``assignDate`` are the due date at 12:00 UTC: passback knows the local due
  date only, and noon UTC is the same date wherever the SIS shows it.

Scores (seed 000's transfer tables, as :mod:`passback.convert.scores` hands them over):

* points become ``score`` with ``scoreStatus`` "fully graded";
* excused becomes ``scoreStatus`` "exempt" (v1p1 requires a score: 0 is sent with it and
  never read back as a grade; v1p2 sends none);
* late: v1p2 sets ``late`` "true". OneRoster 1.1 has no late flag (its ``scoreStatus``
  vocabulary is closed), so v1p1 does not hold ``late``: the planner drops it and the
  result stays "fully graded";
* missing is not passed: no result is written, and one written before is deleted (a blank);
* incomplete: 0 points; a payload whose ``status`` is "incomplete" sets v1p2's
  ``incomplete`` "true" (the seed's own table does not pass that status);
* a comment is the result's ``comment``. ``scoreDate`` is the day of the write; it is not
  carried back as a value (OneRoster keeps a date, not an order of writes).

A DELETE that answers 404 is done already. A write to an assignment that is gone (404, or
``status`` "tobedeleted" as v1p2 servers answer a deletion) raises ``TargetGone``: each
update and each score write looks at its lineItems first, because a PUT would otherwise
bring a deleted lineItem back to life.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from passback.connectors.base import Destination
from passback.connectors.oneroster.client import OneRosterClient, segment
from passback.connectors.oneroster.errors import duplicate, gone, refused
from passback.errors import DestinationError, OutcomeUnknown, TargetGone
from passback.model import DestinationCategory, DestinationSection
from passback.model.values import (
    AssignmentPayload,
    Capabilities,
    CategoryScope,
    CreatedAssignment,
    DestinationContext,
    ExistingAssignment,
    IdAssignment,
    Placement,
    ScorePayload,
    ScoreRejection,
    ScoreWrite,
)

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://passback.invalid/oneroster")
NAME_LIMIT = 50
"""The title limit passback keeps: PowerSchool's OneRoster server refuses more than 50 characters
(seed error 9); the specification sets none, and a title of 50 or fewer suits every server."""
CLAIMS = "#oneroster-line-items-written"  # in the context's handles: lineItem id -> [title, due date]
ACTIVE, DELETED = "active", "tobedeleted"
INCOMPLETE = "incomplete"


def capabilities_for(version: str) -> Capabilities:
    """One lineItem per class, global categories offered in every class, ids chosen by passback.

    v1p1 results hold points, exempt and a comment; v1p2 adds late and the incomplete status.
    """
    fields = {"points", "exempt", "comment"} | ({"late", "status"} if version == "v1p2" else set())
    return Capabilities(placement=Placement.PER_CLASS, categories=CategoryScope.PER_CLASS,
                        ids=IdAssignment.CLIENT_ASSIGNED, score_fields=frozenset(fields),
                        name_max_length=NAME_LIMIT, requires_points_possible=True)


def line_item_id(class_id: str, title: str, due: str, n: int = 0) -> str:
    """The n-th candidate id of a lineItem with this natural key (n > 0 only after a rename took the first)."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(["lineItem", class_id, title, due, *([str(n)] if n else [])])))


def result_id(line_item: str, student: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"result\x1f{line_item}\x1f{student}"))


def noon(day: date) -> str:
    return f"{day.isoformat()}T12:00:00Z"


def is_true(value: Any) -> bool:
    """OneRoster 1.2's TrueFalseEnum is the strings "true"/"false"; a JSON boolean is taken too."""
    return value is True or str(value).strip().lower() == "true"


class OneRosterDestination(Destination):
    kind = "oneroster"

    def __init__(self, client: OneRosterClient) -> None:
        self.client = client
        self.version = client.version
        self.capabilities = capabilities_for(client.version)

    # --- references and bodies --------------------------------------------------------------
    def ref(self, sourced_id: str, kind: str) -> dict[str, str]:
        """A GUIDRef (``href``, ``sourcedId``, ``type``) to an object of either service."""
        where = {"class": (self.client.rostering, "classes"), "user": (self.client.rostering, "users"),
                 "org": (self.client.rostering, "orgs"), "academicSession": (self.client.rostering, "academicSessions"),
                 "category": (self.client.gradebook, "categories"), "lineItem": (self.client.gradebook, "lineItems")}
        service, plural = where[kind]
        return {"href": self.client.href(f"{service}/{plural}/{segment(sourced_id)}"), "sourcedId": sourced_id,
                "type": kind}

    def line_item_body(self, context: DestinationContext, sourced_id: str, class_id: str,
                       payload: AssignmentPayload) -> dict[str, Any]:
        handle = context.handles.get(class_id, {})
        body: dict[str, Any] = {
            "sourcedId": sourced_id, "status": ACTIVE, "title": payload.name, "description": payload.description,
            "assignDate": noon(payload.due_date), "dueDate": noon(payload.due_date),
            "class": self.ref(class_id, "class"), "resultValueMin": 0.0, "resultValueMax": payload.points_possible,
        }
        category = payload.category_ids.get(class_id)
        if category:
            body["category"] = self.ref(category, "category")
        period = grading_period(handle, payload.due_date)
        if period:
            body["gradingPeriod"] = self.ref(period, "academicSession")
        if self.version == "v1p2" and handle.get("school"):
            body["school"] = self.ref(handle["school"], "org")
        return {"lineItem": body}

    def result_body(self, class_id: str, line_item: str, write: ScoreWrite) -> dict[str, Any]:
        payload = write.payload
        status = "exempt" if payload.exempt else "fully graded" if payload.points is not None else "not submitted"
        body: dict[str, Any] = {
            "sourcedId": result_id(line_item, write.student_dest_id), "status": ACTIVE,
            "lineItem": self.ref(line_item, "lineItem"), "student": self.ref(write.student_dest_id, "user"),
            "scoreStatus": status, "scoreDate": datetime.now(UTC).date().isoformat(),
        }
        if payload.points is not None and not payload.exempt:
            body["score"] = payload.points
        elif self.version == "v1p1":
            body["score"] = 0.0  # 1.1 requires a score; with "exempt" or "not submitted" it is no grade
        if payload.comment is not None:
            body["comment"] = payload.comment
        if self.version == "v1p2":
            body["class"] = self.ref(class_id, "class")
            flags = {"inProgress": False, "incomplete": payload.status == INCOMPLETE, "late": payload.late,
                     "missing": False}
            body.update({name: "true" if value else "false" for name, value in flags.items()})
        return {"result": body}

    def score_of(self, result: dict[str, Any]) -> ScorePayload:
        """What a result holds, in the terms passback wrote it (see the module's note on scores)."""
        exempt = result.get("scoreStatus") == "exempt"
        score = result.get("score")
        points = None if exempt or score in (None, "") else float(score)
        v1p2 = self.version == "v1p2"
        return ScorePayload(
            points=points, exempt=exempt, late=v1p2 and is_true(result.get("late")),
            status=INCOMPLETE if v1p2 and is_true(result.get("incomplete")) else None,
            comment=str(result["comment"]) if result.get("comment") else None,
        ).held_by(self.capabilities.score_fields)

    def is_blank(self, payload: ScorePayload) -> bool:
        held = payload.held_by(self.capabilities.score_fields)
        return held.points is None and not held.exempt and not held.late and held.status is None

    # --- reading -----------------------------------------------------------------------------
    async def load_context(self, section_sis_ids: list[str]) -> DestinationContext:
        roster, gradebook = self.client.rostering, self.client.gradebook

        async def one_class(class_id: str) -> tuple[dict[str, Any], list[Any], list[Any], list[Any]] | None:
            try:
                found = (await self.client.get_json(f"{roster}/classes/{segment(class_id)}"))["class"]
            except TargetGone:
                return None
            if found.get("status") == DELETED:
                return None
            students, items, results = await asyncio.gather(
                self.client.pages(f"{roster}/classes/{segment(class_id)}/students", "users"),
                self.client.pages(f"{gradebook}/classes/{segment(class_id)}/lineItems", "lineItems"),
                self.client.pages(f"{gradebook}/classes/{segment(class_id)}/results", "results"),
            )
            return found, students, items, results

        found, categories, periods = await asyncio.gather(
            asyncio.gather(*(one_class(c) for c in dict.fromkeys(section_sis_ids))),
            self.client.cached_pages(f"{gradebook}/categories", "categories"),
            self.client.cached_pages(f"{roster}/gradingPeriods", "academicSessions"),
        )
        sections: dict[str, DestinationSection] = {}
        handles: dict[str, dict[str, Any]] = {}
        student_ids: dict[str, str] = {}
        items: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for entry in found:
            if entry is None:
                continue
            klass, students, class_items, class_results = entry
            key = str(klass["sourcedId"])
            active = [s for s in students if s.get("status", ACTIVE) == ACTIVE]
            sections[key] = DestinationSection(dest_id=key, name=str(klass.get("title") or key), sis_id=key,
                                               student_ids=tuple(str(s["sourcedId"]) for s in active))
            terms = [str(t["sourcedId"]) for t in klass.get("terms") or []]
            handles[key] = {
                "school": (klass.get("school") or {}).get("sourcedId"), "terms": terms,
                "periods": [[str(p["sourcedId"]), str(p.get("startDate", ""))[:10], str(p.get("endDate", ""))[:10]]
                            for p in periods if p.get("status", ACTIVE) == ACTIVE
                            and (p.get("parent") or {}).get("sourcedId") in terms],
            }
            for student in active:
                student_ids[str(student["sourcedId"])] = str(student["sourcedId"])
            items.extend(class_items)
            results.extend(class_results)
        for entry in found:  # identifiers second: a sourcedId always wins over another user's identifier
            for student in (entry[1] if entry else []):
                if student.get("identifier"):
                    student_ids.setdefault(str(student["identifier"]), str(student["sourcedId"]))
        offered = [c for c in categories if c.get("status") in (ACTIVE, DELETED)]
        context_categories = {
            key: [DestinationCategory(dest_id=str(c["sourcedId"]), section_id=key, name=str(c.get("title") or ""),
                                      active=c.get("status") == ACTIVE) for c in offered]
            for key in sections
        }
        assignments = group_line_items(items, set(sections))
        held_items = {li for a in assignments.values() for li in a.section_assignment_ids.values()}
        scores = {(str(r["lineItem"]["sourcedId"]), str(r["student"]["sourcedId"])): self.score_of(r)
                  for r in results if r.get("status", ACTIVE) == ACTIVE and str(r["lineItem"]["sourcedId"]) in held_items}
        return DestinationContext(sections=sections, categories=context_categories, student_ids=student_ids,
                                  assignments=assignments, scores=scores, holdings_known=True, handles=handles)

    async def read_scores(self, context: DestinationContext,
                          section_ids: list[str]) -> dict[tuple[str, str], ScorePayload]:
        pages = await asyncio.gather(*(
            self.client.pages(f"{self.client.gradebook}/classes/{segment(c)}/results", "results") for c in section_ids))
        return {(str(r["lineItem"]["sourcedId"]), str(r["student"]["sourcedId"])): self.score_of(r)
                for rows in pages for r in rows if r.get("status", ACTIVE) == ACTIVE}

    async def line_item(self, sourced_id: str) -> dict[str, Any]:
        """The lineItem as the server holds it now; ``TargetGone`` when deleted (404 or tobedeleted)."""
        try:
            held = (await self.client.get_json(f"{self.client.gradebook}/lineItems/{segment(sourced_id)}"))["lineItem"]
        except TargetGone as exc:
            raise gone(sourced_id) from exc
        if held.get("status") == DELETED:
            raise gone(sourced_id)
        return held

    async def find_assignment(self, context: DestinationContext,
                              payload: AssignmentPayload) -> CreatedAssignment | None:
        due = payload.due_date.isoformat()
        params = {"filter": f"title='{payload.name}'"} if "'" not in payload.name else {}
        found: dict[str, str] = {}
        for class_id in sorted(payload.section_ids):
            items = await self.client.pages(f"{self.client.gradebook}/classes/{segment(class_id)}/lineItems",
                                            "lineItems", params)
            matches = sorted(str(i["sourcedId"]) for i in items if i.get("status", ACTIVE) == ACTIVE
                             and i.get("title") == payload.name and str(i.get("dueDate", ""))[:10] == due)
            if not matches:
                return None
            found[class_id] = matches[0]
        return CreatedAssignment(found[min(found)], found)

    # --- writing assignments ------------------------------------------------------------------
    @staticmethod
    def _claims(context: DestinationContext) -> dict[str, list[str]]:
        """The lineItems this run wrote, with the title and due date it gave them (kept in the context)."""
        return context.handles.setdefault(CLAIMS, {})

    @staticmethod
    def _held(context: DestinationContext) -> dict[str, tuple[str, str]]:
        """The lineItems the destination held when the run began: id -> (title, due date)."""
        return {li: (a.name, a.due_date) for a in context.assignments.values() for li in a.section_assignment_ids.values()}

    def _free_id(self, context: DestinationContext, class_id: str, title: str, due: str) -> str:
        """The id a new lineItem of this natural key takes in this class (see the module's note on ids)."""
        claims, held = self._claims(context), self._held(context)
        for n in range(1000):
            candidate = line_item_id(class_id, title, due, n)
            if candidate in claims:
                if tuple(claims[candidate]) == (title, due):
                    raise duplicate(title, due)  # another assignment of this run has this title and due date
                continue  # renamed by this run: taken
            if candidate in held and held[candidate] != (title, due):
                continue  # renamed since it was made: taken
            return candidate
        raise DestinationError(None, f"No free lineItem id for {title!r} due {due} in class {class_id}.")

    async def _put_line_item(self, context: DestinationContext, sourced_id: str, class_id: str,
                             payload: AssignmentPayload) -> int:
        response = await self.client.request("PUT", f"{self.client.gradebook}/lineItems/{segment(sourced_id)}",
                                             json=self.line_item_body(context, sourced_id, class_id, payload))
        if response.status_code not in (200, 201):
            raise refused(response, f"PUT lineItem {sourced_id} (class {class_id})")
        return response.status_code

    async def _delete_line_item(self, sourced_id: str) -> None:
        response = await self.client.request("DELETE", f"{self.client.gradebook}/lineItems/{segment(sourced_id)}")
        if response.status_code not in (200, 204, 404):
            raise refused(response, f"DELETE lineItem {sourced_id}")

    async def _write_line_items(self, context: DestinationContext, ids: dict[str, str], payload: AssignmentPayload,
                                new: set[str]) -> None:
        """PUT each class's lineItem, all at once; a refusal takes back the new ones, so a create is all or nothing.

        The ids are claimed in the context before the first request goes out. When a class
        refuses (a name too long, a category not active), the lineItems of ``new`` that were
        not themselves refused are deleted again (404 is fine: never made), as PowerTeacher
        Pro refuses a whole assignment; the refusal is raised. When answers were only lost,
        nothing is taken back and the claims are released: the retry is the same PUT.
        """
        claims = self._claims(context)
        before = {li: claims.get(li) for li in ids.values()}
        claims.update({li: [payload.name, payload.due_date.isoformat()] for li in ids.values()})
        classes = sorted(ids)
        outcomes = await asyncio.gather(*(self._put_line_item(context, ids[c], c, payload) for c in classes),
                                        return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if not failures:
            return
        _restore(claims, before)
        refusals = [f for f in failures if isinstance(f, DestinationError) and not isinstance(f, OutcomeUnknown)]
        if not refusals:
            raise failures[0]
        for class_id, outcome in zip(classes, outcomes, strict=True):
            if ids[class_id] in new and not (isinstance(outcome, DestinationError)
                                             and not isinstance(outcome, OutcomeUnknown)):
                try:
                    await self._delete_line_item(ids[class_id])
                except DestinationError:
                    pass  # the next run's read shows it; the refusal is what the teacher must see
        raise refusals[0]

    async def create_assignment(self, context: DestinationContext, payload: AssignmentPayload) -> CreatedAssignment:
        due = payload.due_date.isoformat()
        ids = {c: self._free_id(context, c, payload.name, due) for c in sorted(payload.section_ids)}
        await self._write_line_items(context, ids, payload, set(ids.values()))  # claims before its first await
        return CreatedAssignment(ids[min(ids)], ids)

    async def update_assignment(self, context: DestinationContext, created: CreatedAssignment,
                                payload: AssignmentPayload) -> CreatedAssignment:
        held = dict(created.section_assignment_ids)
        await asyncio.gather(*(self.line_item(li) for li in held.values()))  # TargetGone when any is deleted
        ids = {c: held[c] for c in payload.section_ids if c in held}
        added = {c: self._free_id(context, c, payload.name, payload.due_date.isoformat())
                 for c in sorted(set(payload.section_ids) - set(held))}
        ids.update(added)
        await self._write_line_items(context, ids, payload, set(added.values()))
        for class_id in sorted(set(held) - set(ids)):
            await self._delete_line_item(held[class_id])
        return CreatedAssignment(ids[min(ids)], ids)

    async def delete_assignment(self, context: DestinationContext, created: CreatedAssignment) -> None:
        for sourced_id in created.section_assignment_ids.values():
            await self._delete_line_item(sourced_id)
            self._claims(context).pop(sourced_id, None)

    # --- writing scores -----------------------------------------------------------------------
    async def write_scores(self, context: DestinationContext, section_id: str, section_assignment_id: str,
                           writes: list[ScoreWrite]) -> list[ScoreRejection]:
        await self.line_item(section_assignment_id)  # TargetGone before any write: a PUT would not tell

        async def one(write: ScoreWrite) -> ScoreRejection | None:
            path = f"{self.client.gradebook}/results/{segment(result_id(section_assignment_id, write.student_dest_id))}"
            try:
                if self.is_blank(write.payload):
                    response = await self.client.request("DELETE", path)
                    done = response.status_code in (200, 204, 404)
                else:
                    body = self.result_body(section_id, section_assignment_id,
                                            replace(write, payload=write.payload.held_by(self.capabilities.score_fields)))
                    response = await self.client.request("PUT", path, json=body)
                    done = response.status_code in (200, 201)
            except OutcomeUnknown as exc:
                return ScoreRejection(write.student_dest_id, exc.code, exc.detail)
            if done:
                return None
            error = refused(response, f"result of student {write.student_dest_id}")
            return ScoreRejection(write.student_dest_id, error.code, error.detail)

        rejected = [r for r in await asyncio.gather(*(one(w) for w in writes)) if r is not None]
        if rejected:
            await self.line_item(section_assignment_id)  # refused because the lineItem went meanwhile?
        return rejected

    async def aclose(self) -> None:
        await self.client.aclose()


def _restore(claims: dict[str, list[str]], before: dict[str, list[str] | None]) -> None:
    for sourced_id, value in before.items():
        if value is None:
            claims.pop(sourced_id, None)
        else:
            claims[sourced_id] = value


def grading_period(handle: dict[str, Any], due: date) -> str | None:
    """The class's grading period whose dates hold the due date, else its first term, else none."""
    day = due.isoformat()
    for sourced_id, start, end in handle.get("periods") or []:
        if start <= day <= end:
            return str(sourced_id)
    terms = handle.get("terms") or []
    return str(terms[0]) if terms else None


def group_line_items(items: list[dict[str, Any]], classes: set[str]) -> dict[str, ExistingAssignment]:
    """The lineItems of a course's classes as assignments: one per title and due date, a lineItem per class.

    Its id is the lineItem of its first class, which is the id passback gave the assignment
    it created (see the module's note). Deleted lineItems (``tobedeleted``) are not held.
    """
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for item in sorted(items, key=lambda i: str(i["sourcedId"])):
        class_id = str((item.get("class") or {}).get("sourcedId"))
        if item.get("status", ACTIVE) != ACTIVE or class_id not in classes:
            continue
        key = (str(item.get("title") or ""), str(item.get("dueDate") or "")[:10])
        slots = groups.setdefault(key, [])
        slot = next((s for s in slots if class_id not in s), None)
        if slot is None:
            slot = {}
            slots.append(slot)
        slot[class_id] = str(item["sourcedId"])
    assignments = {}
    for (title, due), slots in groups.items():
        for slot in slots:
            dest_id = slot[min(slot)]
            assignments[dest_id] = ExistingAssignment(dest_id=dest_id, name=title, due_date=due,
                                                      section_assignment_ids=dict(slot))
    return assignments
