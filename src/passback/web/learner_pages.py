"""A student's own page: their scores, what the LMS or SIS holds, the sync state, and "send my score".

Reached only from a learner's LTI launch (the student's id in the source comes from the
verified id token and lives in the signed session). Nothing of another student is read
into the page: the student view is asked for this one student, and a sync in progress
is shown without whose it is.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from passback.services import courses
from passback.services.leases import Busy
from passback.web.deps import LearnerDep, LiveDep, SettingsDep, StoreDep, UserDep, actor_of
from passback.web.rendering import render
from passback.web.responses import flash, progress_fragment, take_flash

router = APIRouter(prefix="/my", include_in_schema=False)


def _private(progress: dict | None) -> dict | None:  # type: ignore[type-arg]
    """A sync in progress, without who started it or which student it is for."""
    if progress is None:
        return None
    return {"label": "A sync of this course", "running": progress.get("running"), "done": progress.get("done"),
            "total": progress.get("total"), "run_id": None, "actor": None, "failure": None}


@router.get("/{source}/{course_id}", response_class=HTMLResponse)
async def my_grades(request: Request, learner: LearnerDep, store: StoreDep, settings: SettingsDep,
                    live: LiveDep) -> HTMLResponse:
    ref, student = learner
    view = await courses.student_view(store, settings, ref, student)
    mine = next((s for s in view["students"] if s["student_id"] == student), None)
    return render(request, "my_grades.html", {
        "ref": ref, "course": view["course"], "me": mine, "base": f"/my/{ref.source.name}/{ref.course_id}",
        "progress": _private(courses.in_progress(store, live, ref)), "flash": take_flash(request)})


@router.get("/{source}/{course_id}/progress", response_class=HTMLResponse)
def my_progress(request: Request, learner: LearnerDep, store: StoreDep, live: LiveDep,
                was_running: bool = False) -> Response:
    ref, _ = learner
    return progress_fragment(request, _private(courses.in_progress(store, live, ref)),
                             f"/my/{ref.source.name}/{ref.course_id}", was_running)


@router.post("/{source}/{course_id}/sync")
async def send_my_score(request: Request, learner: LearnerDep, user: UserDep, store: StoreDep,
                        settings: SettingsDep, live: LiveDep) -> Response:
    """The student asks for their own score to be sent (seed 002: a student may initiate a passback)."""
    ref, student = learner
    base = f"/my/{ref.source.name}/{ref.course_id}"
    try:
        live.start(store, settings, ref.request(actor=actor_of(user), student_id=student), label="Sync of your score")
    except Busy:
        flash(request, "A sync of this course is running; try again in a minute.", "warn")
    return RedirectResponse(base, status_code=303)
