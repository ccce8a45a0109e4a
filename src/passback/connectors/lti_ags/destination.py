"""LTI Advantage Assignment and Grade Services as a gradebook destination (D4).

passback, as an LTI 1.3 tool of the platform, keeps one line item per source assignment
in a course's gradebook (the 1EdTech AGS 2.0 line items container, on Canvas
``/api/lti/courses/:course_id/line_items``) and posts each student's score to it.

What a destination "section" is here: the course context, named by its line items
container URL (the ``lineitems`` of the launch's AGS endpoint claim). A run's source
sections are matched to it by a section override (``passback match section``); every
source section lands in that one place (``Placement.PER_COURSE``). Its roster comes from
the Names and Role Provisioning Service of the same context (on Canvas the sibling path
``/names_and_roles``): the active learners, each by LTI user id (``sub``), matched to the
source's students by the SIS id the platform gives (``lis_person_sourcedid``).

Line items: created with ``label``, ``scoreMaximum``, ``endDateTime`` (the due date's last
second in UTC: the payload carries a date only), ``tag`` ``passback`` and a ``resourceId``
passback chooses: a digest of the assignment's natural key (name and due date), the same
key the planner holds unique in a destination and the identity map records. The payload
names no source assignment, so the id is stable for as long as that key is; an update
that renames or re-dates an assignment writes the new ``resourceId`` with the new label.
Before a create the container is asked for the ``resourceId`` (a second line item with
that key is refused as ``AlreadyExists``, as PowerTeacher Pro refuses one by name and due
date), and after a lost create answer ``find_assignment`` finds the line item by it: never
a duplicate. The platform assigns the line item's id (its URL), which is both the
assignment id and the section assignment id. Descriptions, categories and extra credit
points have no place in a line item: a score above ``scoreMaximum`` is extra credit.

Scores (``POST {lineitem}/scores``, ``application/vnd.ims.lis.v1.score+json``), status by
status:

==============================  ==============================================================
source                          score sent
==============================  ==============================================================
points                          ``scoreGiven`` = points, ``scoreMaximum`` = the line item's,
                                ``activityProgress`` Completed, ``gradingProgress`` FullyGraded
blank (grade removed)           no ``scoreGiven``: ``activityProgress`` Initialized ("reset for
                                that student"), ``gradingProgress`` FullyGraded; the platform
                                clears the grade
excused                         as a blank: AGS has no excused or exempt, and "no score" is the
                                one thing it can hold that does not count against the student
                                (``exempt`` is not in the capabilities, so the planner sends it
                                as a blank and a drift check compares blanks)
late                            not sent: AGS has no late flag; the LMS marks lateness from its
                                own submission times
missing                         nothing is sent (seed 000: never a zero)
comment                         ``comment``
==============================  ==============================================================

Every score carries ``timestamp``, the moment it is sent, with microseconds: the platform
keeps the latest and refuses an older one. Each batch is confirmed by reading the line
item's results back (``GET {lineitem}/results``); a score whose answer was lost is looked
up before it is sent again (with a new timestamp), so a retry never writes it twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from passback.connectors.base import Destination
from passback.connectors.http import UncertainWrite
from passback.connectors.lti_ags.client import LINEITEM, LINEITEMS, MEMBERSHIPS, RESULTS, SCORE, AgsClient
from passback.connectors.lti_ags.errors import refused
from passback.errors import AlreadyExists, OutcomeUnknown, Refused, TargetGone
from passback.model import DestinationSection
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

CAPABILITIES = Capabilities(
    placement=Placement.PER_COURSE, categories=CategoryScope.NONE, ids=IdAssignment.SERVER_ASSIGNED,
    score_fields=frozenset({"points", "comment"}), name_max_length=255, requires_points_possible=True,
    score_batch_size=100,
)
"""One line item per course, no categories, ids the platform assigns (found again by ``resourceId``).
A score is points and a comment: the fields a result gives back. The score's ``timestamp`` is sent
with every score but a result does not carry it, so it is not a field the destination holds (a drift
check would otherwise differ on every score); Canvas names a gradebook column in 255 characters."""

TAG = "passback"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
CONTAINER_PATH = "/line_items"  # Canvas's line items container; its Names and Role service is the sibling
MEMBERSHIPS_PATH = "/names_and_roles"
SEND_ATTEMPTS = 3


def resource_id(payload: AssignmentPayload) -> str:
    """The ``resourceId`` passback gives an assignment's line item: a digest of its natural key."""
    key = json.dumps([payload.name, payload.due_date.isoformat()], ensure_ascii=False, separators=(",", ":"))
    return "passback:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def end_date_time(payload: AssignmentPayload) -> str:
    return f"{payload.due_date.isoformat()}T23:59:59Z"


def due_date_of(value: Any) -> str:
    """The UTC date of a line item's ``endDateTime`` (what :func:`end_date_time` wrote), or ``""``."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone(UTC).date().isoformat()
    except ValueError:
        return value[:10]


def service_url(lineitem: str, service: str) -> str:
    """A line item's ``/scores`` or ``/results`` URL: its path with the service appended, its query kept."""
    parts = urlsplit(lineitem)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + service, parts.query, ""))


def memberships_url(container: str) -> str | None:
    """The Names and Role service of the context whose line items container this is (Canvas's paths)."""
    parts = urlsplit(container)
    path = parts.path.rstrip("/")
    if not path.endswith(CONTAINER_PATH) or parts.query:
        return None
    return urlunsplit((parts.scheme, parts.netloc, path[: -len(CONTAINER_PATH)] + MEMBERSHIPS_PATH, "", ""))


def line_item_body(payload: AssignmentPayload) -> dict[str, Any]:
    return {"label": payload.name, "scoreMaximum": payload.points_possible, "resourceId": resource_id(payload),
            "tag": TAG, "endDateTime": end_date_time(payload)}


def sent_points(payload: ScorePayload) -> float | None:
    """The points a score sends: none for a blank, an excused (exempt) or a missing score."""
    return None if payload.exempt or payload.missing else payload.points


def score_body(write: ScoreWrite, score_maximum: float, timestamp: str) -> dict[str, Any]:
    """The AGS score for one write (the mapping in the module docstring)."""
    points = sent_points(write.payload)
    body: dict[str, Any] = {"userId": write.student_dest_id, "timestamp": timestamp, "gradingProgress": "FullyGraded"}
    if points is None:
        body["activityProgress"] = "Initialized"
    else:
        body.update(activityProgress="Completed", scoreGiven=points, scoreMaximum=score_maximum)
    if write.payload.comment:
        body["comment"] = write.payload.comment
    return body


def held_payload(result: dict[str, Any]) -> ScorePayload | None:
    """What a result holds, in passback's terms; None where it holds no score (a blank)."""
    score, comment = result.get("resultScore"), result.get("comment") or None
    if score is None and comment is None:
        return None
    return ScorePayload(points=None if score is None else round(float(score), 4), comment=comment)


def expected_payload(payload: ScorePayload) -> ScorePayload | None:
    """What the platform should hold after a write of ``payload``, in :func:`held_payload`'s terms."""
    points = sent_points(payload)
    if points is None and not payload.comment:
        return None
    return ScorePayload(points=None if points is None else round(points, 4), comment=payload.comment or None)


def now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class LtiAgsDestination(Destination):
    kind = "lti_ags"

    def __init__(self, client: AgsClient, *, score_batch_size: int = 100) -> None:
        self.client = client
        self.capabilities = replace(CAPABILITIES, score_batch_size=score_batch_size)

    # --- reading ---------------------------------------------------------------------------

    async def load_context(self, section_sis_ids: list[str]) -> DestinationContext:
        containers = [s for s in dict.fromkeys(section_sis_ids) if self.client.on_platform(s) and memberships_url(s)]
        found = await asyncio.gather(*(self._roster(c) for c in containers))
        sections: dict[str, DestinationSection] = {}
        student_ids: dict[str, str] = {}
        for container, roster in zip(containers, found, strict=True):
            if roster is None:
                continue
            title, members = roster
            learners = [m for m in members if str(m.get("status", "Active")) == "Active"
                        and LEARNER in (m.get("roles") or []) and m.get("user_id")]
            sections[container] = DestinationSection(dest_id=container, name=title, sis_id=container,
                                                     student_ids=tuple(str(m["user_id"]) for m in learners))
            student_ids.update({str(m["lis_person_sourcedid"]): str(m["user_id"])
                                for m in learners if m.get("lis_person_sourcedid")})
        assignments, scores = await self._holdings(list(sections))
        return DestinationContext(sections=sections, categories={s: [] for s in sections}, student_ids=student_ids,
                                  assignments=assignments, scores=scores, holdings_known=True)

    async def _roster(self, container: str) -> tuple[str, list[dict[str, Any]]] | None:
        """The context's title and members, or None when the platform has no such course."""
        url = memberships_url(container)
        assert url is not None
        try:
            first, members = await self.client.get_all(url, MEMBERSHIPS, {"role": LEARNER}, items="members")
        except TargetGone:
            return None
        context = (first.get("context") if isinstance(first, dict) else None) or {}
        return str(context.get("title") or context.get("label") or container), members

    async def _line_items(self, container: str, **filters: str) -> list[dict[str, Any]]:
        return await self.client.get_pages(container, LINEITEMS, dict(filters))

    async def _results(self, lineitem: str, user_id: str | None = None) -> dict[str, ScorePayload]:
        """What the line item holds now, by LTI user id (blanks left out)."""
        params = {"user_id": user_id} if user_id else None
        rows = await self.client.get_pages(service_url(lineitem, "results"), RESULTS, params)
        held = {}
        for row in rows:
            payload = held_payload(row)
            if payload is not None and row.get("userId") is not None:
                held[str(row["userId"])] = payload
        return held

    async def _holdings(self, containers: list[str]
                        ) -> tuple[dict[str, ExistingAssignment], dict[tuple[str, str], ScorePayload]]:
        """Every line item of these contexts (the tool's own: the platform lists no other) and its results."""
        lists = await asyncio.gather(*(self._line_items(c) for c in containers))
        items = [(container, item) for container, rows in zip(containers, lists, strict=True) for item in rows]
        results = await asyncio.gather(*(self._results(str(item["id"])) for _, item in items))
        assignments: dict[str, ExistingAssignment] = {}
        scores: dict[tuple[str, str], ScorePayload] = {}
        for (container, item), held in zip(items, results, strict=True):
            url = str(item["id"])
            assignments[url] = ExistingAssignment(dest_id=url, name=str(item.get("label", "")),
                                                  due_date=due_date_of(item.get("endDateTime")),
                                                  section_assignment_ids={container: url})
            scores.update({(url, user): payload for user, payload in held.items()})
        return assignments, scores

    async def read_scores(self, context: DestinationContext,
                          section_ids: list[str]) -> dict[tuple[str, str], ScorePayload]:
        return (await self._holdings([s for s in section_ids if s in context.sections]))[1]

    # --- line items ------------------------------------------------------------------------

    @staticmethod
    def _container(payload: AssignmentPayload) -> str:
        if len(payload.section_ids) != 1:
            raise Refused(None, f"An LTI Advantage line item belongs to one course context, not to "
                                f"{len(payload.section_ids)}; match every source section to the course's line items URL.")
        return payload.section_ids[0]

    async def create_assignment(self, context: DestinationContext, payload: AssignmentPayload) -> CreatedAssignment:
        container = self._container(payload)
        existing = await self.find_assignment(context, payload)
        if existing is not None:
            raise AlreadyExists(None, f"An assignment already exists with this name {payload.name} and due date "
                                      f"{payload.due_date.isoformat()} in the course's gradebook (line item "
                                      f"{existing.dest_id}).")
        try:
            response = await self.client.request(
                "POST", container, content=json.dumps(line_item_body(payload)).encode(),
                headers={"Content-Type": LINEITEM, "Accept": LINEITEM})
        except UncertainWrite as exc:
            raise OutcomeUnknown(str(exc)) from exc
        if response.status_code not in (200, 201):
            raise refused(response)
        url = str(response.json()["id"])
        return CreatedAssignment(url, {container: url})

    async def find_assignment(self, context: DestinationContext,
                              payload: AssignmentPayload) -> CreatedAssignment | None:
        container = self._container(payload)
        rows = await self._line_items(container, resource_id=resource_id(payload))
        found = sorted(str(r["id"]) for r in rows if r.get("resourceId") == resource_id(payload))
        return CreatedAssignment(found[0], {container: found[0]}) if found else None

    async def update_assignment(self, context: DestinationContext, created: CreatedAssignment,
                                payload: AssignmentPayload) -> CreatedAssignment:
        container = self._container(payload)
        body = {"id": created.dest_id, **line_item_body(payload)}
        response = await self.client.request("PUT", created.dest_id, content=json.dumps(body).encode(),
                                             headers={"Content-Type": LINEITEM, "Accept": LINEITEM})
        if response.status_code >= 400:
            raise refused(response)
        return CreatedAssignment(created.dest_id, {container: created.dest_id})

    async def delete_assignment(self, context: DestinationContext, created: CreatedAssignment) -> None:
        response = await self.client.request("DELETE", created.dest_id, headers={"Accept": LINEITEM})
        if response.status_code not in (200, 204, 404):
            raise refused(response)

    # --- scores ----------------------------------------------------------------------------

    async def write_scores(self, context: DestinationContext, section_id: str, section_assignment_id: str,
                           writes: list[ScoreWrite]) -> list[ScoreRejection]:
        lineitem = section_assignment_id
        try:
            item = await self.client.get_json(lineitem, LINEITEM)  # gone: TargetGone before any score is sent
        except Refused as exc:  # the token or its scopes refused: every score of the batch, with the fix
            return [ScoreRejection(w.student_dest_id, exc.code, exc.detail) for w in writes]
        maximum = float(item.get("scoreMaximum") or 0.0)
        answers = await asyncio.gather(*(self._send(lineitem, maximum, w) for w in writes), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer  # gone, unreachable: the whole batch (repeating the others is harmless)
        rejected = {r.student_dest_id: r for r in answers if isinstance(r, ScoreRejection)}
        try:
            held = await self._results(lineitem) if len(rejected) < len(writes) else {}
        except Refused as exc:
            return [rejected.get(w.student_dest_id) or ScoreRejection(
                w.student_dest_id, exc.code, f"The score was sent but could not be read back: {exc.detail}")
                for w in writes]
        for write in writes:
            if write.student_dest_id in rejected:
                continue
            wanted, now = expected_payload(write.payload), held.get(write.student_dest_id)
            if now != wanted:
                rejected[write.student_dest_id] = ScoreRejection(
                    write.student_dest_id, "destination-rejected",
                    f"The platform accepted the score but holds {_shown(now)} instead of {_shown(wanted)}.")
        return [rejected[w.student_dest_id] for w in writes if w.student_dest_id in rejected]

    async def _send(self, lineitem: str, maximum: float, write: ScoreWrite) -> ScoreRejection | None:
        """Post one score: None once the platform took it, a rejection when it refused it.

        A lost answer is settled by reading the student's result: held as sent means taken
        (not sent again); otherwise it is sent again with a new timestamp.
        """
        reason = "no attempt"
        for _attempt in range(SEND_ATTEMPTS):
            body = json.dumps(score_body(write, maximum, now_stamp())).encode()
            try:
                response = await self.client.request("POST", service_url(lineitem, "scores"), content=body,
                                                     headers={"Content-Type": SCORE, "Accept": "application/json"})
            except UncertainWrite as exc:
                reason = str(exc)
                try:
                    held = await self._results(lineitem, write.student_dest_id)
                except Refused as refusal:
                    return ScoreRejection(write.student_dest_id, refusal.code, f"The answer to the score was lost and "
                                          f"the score could not be read back: {refusal.detail}")
                if held.get(write.student_dest_id) == expected_payload(write.payload):
                    return None
                continue
            if 200 <= response.status_code < 300:
                return None
            refusal = refused(response)
            if isinstance(refusal, TargetGone):
                raise refusal
            return ScoreRejection(write.student_dest_id, refusal.code, refusal.detail)
        raise OutcomeUnknown(f"the score of {write.student_dest_id} was not confirmed after {SEND_ATTEMPTS} "
                             f"attempts (last: {reason})")

    async def aclose(self) -> None:
        await self.client.aclose()


def _shown(payload: ScorePayload | None) -> str:
    if payload is None:
        return "no score"
    text = "no score" if payload.points is None else f"{payload.points:g} points"
    return text + (f" with the comment {payload.comment!r}" if payload.comment else "")
