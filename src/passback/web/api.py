"""The REST API under /api/v1: what the pages do, as JSON, for scripts (API tokens) and for the pages' own calls.

Every answer has a response model, so /openapi.json describes it exactly (schemathesis
checks the server against it). Errors answer ``{"detail": "..."}`` with the status of
their kind.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field

from passback.services import accounts, courses, schedules, setup
from passback.services.history import catalogue
from passback.services.leases import Busy
from passback.services.views import readiness_view
from passback.store.history import list_audit
from passback.web.deps import AdminDep, CourseDep, LiveDep, SettingsDep, StoreDep, UserDep, actor_of

router = APIRouter(prefix="/api/v1", tags=["api"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": "ErrorOut", "description": "No session or API token"},
    403: {"model": "ErrorOut", "description": "Not allowed"},
    404: {"model": "ErrorOut", "description": "No such thing"},
}


def _utc(value: datetime) -> datetime:
    """SQLite gives back naive times; the store writes UTC, so say so (RFC 3339 needs the offset)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


Instant = Annotated[datetime, AfterValidator(_utc)]


class ErrorOut(BaseModel):
    detail: str


for _code in ERRORS:
    ERRORS[_code]["model"] = ErrorOut
ERRORS_AND_BUSY = ERRORS | {409: {"model": ErrorOut, "description": "Another run holds the course"},
                            400: {"model": ErrorOut, "description": "Not valid as given"},
                            503: {"model": ErrorOut, "description": "A system could not be reached"}}


class MeOut(BaseModel):
    id: int
    username: str
    display_name: str
    is_admin: bool


class RunRowOut(BaseModel):
    id: str
    trigger: str
    actor: str
    status: str
    started_at: Instant | None
    finished_at: Instant | None
    counts: dict[str, int]
    failure: str | None
    scope: dict[str, Any]


class CourseOut(BaseModel):
    source: str
    destination: str
    course_id: str
    name: str
    last_run: RunRowOut | None


class ProgressOut(BaseModel):
    label: str
    actor: str | None
    running: bool
    done: int | None
    total: int | None
    run_id: str | None
    status: str
    counts: dict[str, int] | None = None
    failure: str | None = None
    since: str | None = None


class ScheduleOut(BaseModel):
    mode: str
    next_run_at: Instant | None = None
    last_run_id: str | None = None


class CourseDetailOut(BaseModel):
    source: str
    destination: str
    course_id: str
    name: str
    runs: list[RunRowOut]
    in_progress: ProgressOut | None
    schedule: ScheduleOut | None


class ItemOut(BaseModel):
    id: int
    outcome: str
    object_kind: str
    source_id: str
    dest_id: str | None
    assignment_id: str | None
    student_id: str | None
    code: str | None
    message: str | None
    meaning: str | None = None
    fix: str | None = None
    seed_error: int | None = None
    link: str | None = None
    assignment_name: str | None = None


class RunItemsOut(BaseModel):
    run: RunRowOut
    items: list[ItemOut]


class SyncIn(BaseModel):
    assignment_id: str | None = Field(None, max_length=200)
    student_id: str | None = Field(None, max_length=200)


class ScheduleIn(BaseModel):
    mode: Literal["nightly", "manual", "none"]


class CatalogueOut(BaseModel):
    code: str
    seed_error: int | None
    outcome: str
    message: str
    meaning: str
    fix: str


class AuditOut(BaseModel):
    id: int
    run_id: str
    at: Instant
    actor: str
    trigger: str
    course_id: str | None
    action: str
    source_assignment_id: str
    source_student_id: str
    dest_assignment_id: str | None
    dest_student_id: str | None
    old_value: Any = None
    new_value: Any = None
    answer: str | None = None


def _progress(value: dict[str, Any] | None) -> ProgressOut | None:
    return None if value is None else ProgressOut(**value)


@router.get("/me", response_model=MeOut, responses=ERRORS)
def me(user: UserDep) -> MeOut:
    return MeOut(id=user["id"], username=user["username"], display_name=user.get("display_name") or user["username"],
                 is_admin=bool(user.get("is_admin")))


@router.get("/courses", response_model=list[CourseOut], responses=ERRORS)
async def list_courses(user: UserDep, store: StoreDep, settings: SettingsDep) -> list[dict[str, Any]]:
    return await courses.visible_courses(store, settings, user, accounts.courses_of(store, user["id"]))


@router.get("/courses/{source}/{course_id}", response_model=CourseDetailOut, responses=ERRORS)
def course_detail(ref: CourseDep, store: StoreDep, live: LiveDep) -> CourseDetailOut:
    schedule = courses.next_scheduled(store, ref)
    return CourseDetailOut(source=ref.source.name, destination=ref.destination.name, course_id=ref.course_id,
                           name=courses.course_name(store, ref), runs=courses.course_runs(store, ref),
                           in_progress=_progress(courses.in_progress(store, live, ref)),
                           schedule=ScheduleOut(**schedule) if schedule else None)


@router.get("/courses/{source}/{course_id}/runs/{run_id}/items", response_model=RunItemsOut, responses=ERRORS)
def run_items(ref: CourseDep, store: StoreDep, run_id: str,
              outcome: Literal["created", "updated", "unchanged", "deleted", "skipped", "error", "all"] | None = None,
              assignment_id: str | None = None, student_id: str | None = None) -> dict[str, Any]:
    return courses.run_items(store, ref, run_id, outcome=outcome, assignment_id=assignment_id, student_id=student_id)


@router.post("/courses/{source}/{course_id}/preview", responses=ERRORS_AND_BUSY)
async def preview(ref: CourseDep, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    """What a sync would create, update and delete, per assignment and per student; nothing is sent."""
    return await courses.preview(store, settings, ref)


@router.post("/courses/{source}/{course_id}/sync", status_code=202, response_model=ProgressOut,
             responses=ERRORS_AND_BUSY)
async def sync(ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep, live: LiveDep,
         body: SyncIn | None = None) -> Any:
    """Start a sync of the course (or one assignment or student) in the background; poll its progress."""
    body = body or SyncIn()
    request = ref.request(actor=actor_of(user), assignment_id=body.assignment_id, student_id=body.student_id)
    try:
        live.start(store, settings, request, label="Sync")
    except Busy as busy:
        return JSONResponse({"detail": str(busy)}, status_code=409)
    return _progress(courses.in_progress(store, live, ref))


@router.get("/courses/{source}/{course_id}/progress", response_model=ProgressOut | None, responses=ERRORS)
def progress(ref: CourseDep, store: StoreDep, live: LiveDep) -> ProgressOut | None:
    """The sync running now (this server's with its progress), else this server's latest, with its outcome."""
    return _progress(courses.in_progress(store, live, ref, finished_too=True))


@router.get("/courses/{source}/{course_id}/students", responses=ERRORS_AND_BUSY)
async def students(ref: CourseDep, store: StoreDep, settings: SettingsDep,
                   student_id: str | None = Query(None, max_length=200)) -> dict[str, Any]:
    return await courses.student_view(store, settings, ref, student_id)


@router.get("/courses/{source}/{course_id}/readiness", responses=ERRORS_AND_BUSY)
async def readiness(ref: CourseDep, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    return readiness_view(await setup.check_course(store, settings, ref.route, ref.course_id)).model_dump(mode="json")


@router.get("/courses/{source}/{course_id}/categories", responses=ERRORS_AND_BUSY)
async def categories(ref: CourseDep, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    return await setup.list_categories(store, settings, ref.route, ref.course_id)


@router.put("/courses/{source}/{course_id}/schedule", response_model=ScheduleOut | None, responses=ERRORS_AND_BUSY)
def put_schedule(ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep,
                 body: ScheduleIn) -> ScheduleOut | None:
    saved = schedules.set_schedule(store, settings, source_connection_id=ref.source.id,
                                   destination_connection_id=ref.destination.id, course_id=ref.course_id,
                                   mode=None if body.mode == "none" else body.mode, actor=actor_of(user))
    return ScheduleOut(**saved) if saved else None


@router.get("/errors", response_model=list[CatalogueOut], responses=ERRORS)
def errors(user: UserDep) -> list[dict[str, Any]]:
    return catalogue()


@router.get("/audit", response_model=list[AuditOut], responses=ERRORS)
def audit(admin: AdminDep, store: StoreDep, run_id: str | None = Query(None, max_length=36),
          assignment_id: str | None = Query(None, max_length=200), student_id: str | None = Query(None, max_length=200),
          action: Literal["created", "updated", "deleted"] | None = None,
          limit: int = Query(200, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000)) -> list[dict[str, Any]]:
    return list_audit(store, run_id=run_id, assignment_id=assignment_id, student_id=student_id, action=action,
                      limit=limit, offset=offset)
