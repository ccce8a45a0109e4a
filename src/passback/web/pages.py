"""The pages: sign-in, the course list, Grade Sync, setup and the student view of a course.

Each route reads the request, calls one service and renders a template; htmx swaps the
parts that change (progress, a setup row) and every form also works as a plain POST.
Admin pages live in web/admin_pages.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from passback.errors import Invalid
from passback.services import accounts, courses, schedules, setup
from passback.services.district import get_district
from passback.services.history import catalogue
from passback.services.leases import Busy
from passback.web.deps import (
    CourseDep,
    LiveDep,
    SettingsDep,
    StoreDep,
    UserDep,
    actor_of,
    optional_user,
)
from passback.web.rendering import render
from passback.web.responses import back_to, flash, progress_fragment, take_flash
from passback.web.security import csrf_token

router = APIRouter(include_in_schema=False)
FormStr = Annotated[str, Form()]
OptionalForm = Annotated[str | None, Form()]


def _course_url(ref: Any, tail: str = "") -> str:
    return f"/courses/{quote(ref.source.name)}/{quote(ref.course_id)}{tail}"


# --- sign-in --------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, store: StoreDep) -> RedirectResponse:
    return RedirectResponse("/courses" if optional_user(request, store) else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/courses") -> HTMLResponse:
    return render(request, "login.html", {"next": next if next.startswith("/") else "/courses"})


@router.post("/login")
def login(request: Request, store: StoreDep, username: FormStr, password: FormStr,
          next: Annotated[str, Form()] = "/courses") -> Response:
    user = accounts.authenticate(store, username, password)
    if user is None:
        return render(request, "login.html", {"next": next, "username": username,
                                              "error": "That username and password do not match an account."},
                      status_code=400)
    request.session.clear()
    request.session.update(user_id=user["id"], via="password")
    csrf_token(request)
    return RedirectResponse(next if next.startswith("/") and not next.startswith("//") else "/courses", status_code=303)


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# --- courses ---------------------------------------------------------------------------------


@router.get("/courses", response_class=HTMLResponse)
async def course_list(request: Request, user: UserDep, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    granted = accounts.courses_of(store, user["id"])
    listed = await courses.visible_courses(store, settings, user, granted)
    return render(request, "courses.html", {"courses": listed})


@router.get("/courses/{source}/{course_id}", response_class=HTMLResponse)
def grade_sync(request: Request, ref: CourseDep, store: StoreDep, live: LiveDep, run: str | None = None,
               outcome: str | None = None, assignment: str | None = None, student: str | None = None) -> HTMLResponse:
    history = courses.course_runs(store, ref)
    selected = run or (history[0]["id"] if history else None)
    detail = courses.run_items(store, ref, selected, outcome=outcome or None, assignment_id=assignment or None,
                               student_id=student or None) if selected else None
    return render(request, "grade_sync.html", {
        "ref": ref, "name": courses.course_name(store, ref), "runs": history, "detail": detail,
        "filters": {"outcome": outcome or "", "assignment": assignment or "", "student": student or ""},
        "outcomes": courses.ITEM_OUTCOMES, "progress": courses.in_progress(store, live, ref),
        "schedule": courses.next_scheduled(store, ref), "flash": take_flash(request), "base": _course_url(ref)})


@router.get("/courses/{source}/{course_id}/progress", response_class=HTMLResponse)
def progress(request: Request, ref: CourseDep, store: StoreDep, live: LiveDep, was_running: bool = False) -> Response:
    return progress_fragment(request, courses.in_progress(store, live, ref), _course_url(ref), was_running)


@router.post("/courses/{source}/{course_id}/sync")
async def sync_now(request: Request, ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep,
             live: LiveDep, student_id: OptionalForm = None, recalculate: OptionalForm = None) -> Response:
    label = f"Sync of student {student_id}" if student_id else ("Recalculate and sync" if recalculate else "Sync")
    trigger = "manual"
    try:
        live.start(store, settings, ref.request(actor=actor_of(user), trigger=trigger, student_id=student_id or None),
                   label=label)
    except Busy as busy:
        if request.headers.get("hx-request"):
            return render(request, "_message.html", {"message": str(busy), "kind": "warn"}, status_code=409)
        flash(request, str(busy), "warn")
        return RedirectResponse(_course_url(ref), status_code=303)
    if request.headers.get("hx-request"):
        return render(request, "_progress.html", {"progress": courses.in_progress(store, live, ref),
                                                  "base": _course_url(ref)})
    return RedirectResponse(_course_url(ref), status_code=303)


@router.get("/courses/{source}/{course_id}/preview", response_class=HTMLResponse)
async def preview(request: Request, ref: CourseDep, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    shown = await courses.preview(store, settings, ref)
    return render(request, "preview.html", {"ref": ref, "preview": shown, "base": _course_url(ref)})


@router.post("/courses/{source}/{course_id}/schedule")
def set_schedule(request: Request, ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep,
                 mode: FormStr) -> Response:
    if mode not in ("nightly", "manual", "none"):
        raise Invalid(f"Unknown schedule {mode!r}: choose nightly, manual or none.")
    schedules.set_schedule(store, settings, source_connection_id=ref.source.id,
                           destination_connection_id=ref.destination.id, course_id=ref.course_id,
                           mode=None if mode == "none" else mode, actor=actor_of(user))
    flash(request, {"nightly": "This course now syncs every night.", "manual": "Nothing is sent unless a person "
                     "asks (manual only).", "none": "The course has no schedule."}[mode])
    return back_to(request, _course_url(ref))


# --- setup (U3) ------------------------------------------------------------------------------


@router.get("/courses/{source}/{course_id}/setup", response_class=HTMLResponse)
async def setup_page(request: Request, ref: CourseDep, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    readiness = await setup.check_course(store, settings, ref.route, ref.course_id)
    categories = await setup.list_categories(store, settings, ref.route, ref.course_id)
    courses.remember_name(store, ref.source.id, ref.course_id, readiness.course_name)
    return render(request, "setup.html", {
        "ref": ref, "name": readiness.course_name, "readiness": readiness, "categories": categories,
        "source_label": ref.source.kind.capitalize(), "flash": take_flash(request), "base": _course_url(ref)})


@router.post("/courses/{source}/{course_id}/setup/categories/import")
async def import_categories(request: Request, ref: CourseDep, user: UserDep, store: StoreDep,
                            settings: SettingsDep) -> Response:
    report = await setup.import_categories(store, settings, ref.route, ref.course_id, actor=actor_of(user))
    made = [r["category"] for r in report if r["status"] == "imported"]
    flash(request, f"Imported {len(made)} categories: {', '.join(made)}." if made else
           "Every destination category is already in the course.")
    return back_to(request, _course_url(ref, "/setup"))


@router.post("/courses/{source}/{course_id}/setup/categories/map")
async def map_category(request: Request, ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep,
                       source_category_id: FormStr, dest_category_id: FormStr) -> Response:
    if not dest_category_id:
        await setup.unmap_category(store, settings, ref.route, ref.course_id, source_category_id, actor=actor_of(user))
        flash(request, "The category is no longer mapped.")
    else:
        mapping = await setup.map_category(store, settings, ref.route, ref.course_id, source_category_id,
                                           dest_category_id, actor=actor_of(user))
        flash(request, f"{mapping.source_category_name} now goes to {mapping.dest_category_name}.")
    return back_to(request, _course_url(ref, "/setup"))


@router.post("/courses/{source}/{course_id}/setup/switch")
async def switch(request: Request, ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep,
                 assignment_id: FormStr, on: FormStr) -> Response:
    wanted = on == "on"
    await setup.set_switch(store, settings, ref.route, ref.course_id, assignment_id, wanted, actor=actor_of(user))
    flash(request, f"Sync is {'on' if wanted else 'off'} for that assignment.")
    return back_to(request, _course_url(ref, "/setup"))


@router.post("/courses/{source}/{course_id}/setup/link")
async def link(request: Request, ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep,
               assignment_id: FormStr, dest_assignment_id: FormStr) -> Response:
    if dest_assignment_id in ("", "new"):
        await setup.unlink_assignment(store, settings, ref.route, ref.course_id, assignment_id, actor=actor_of(user))
        flash(request, "The assignment will go to a new destination assignment on the next sync.")
    else:
        linked = await setup.link_assignment(store, settings, ref.route, ref.course_id, assignment_id,
                                             dest_assignment_id, actor=actor_of(user))
        flash(request, f"Linked to the existing destination assignment {linked['name']}.")
    return back_to(request, _course_url(ref, "/setup"))


@router.post("/courses/{source}/{course_id}/setup/unlink")
async def unlink(request: Request, ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep,
                 assignment_id: FormStr) -> Response:
    had = await setup.unlink_assignment(store, settings, ref.route, ref.course_id, assignment_id, actor=actor_of(user))
    flash(request, "Unlinked; the destination keeps what it holds." if had else "That assignment was not linked.")
    return back_to(request, _course_url(ref, "/setup"))


@router.post("/courses/{source}/{course_id}/setup/fix")
async def fix(request: Request, ref: CourseDep, user: UserDep, store: StoreDep, settings: SettingsDep,
              assignment_id: FormStr, code: FormStr) -> Response:
    done = await setup.apply_fix(store, settings, ref.route, ref.course_id, assignment_id, code, actor=actor_of(user))
    flash(request, f"Changed in {ref.source.kind.capitalize()}: {done['applied']}.")
    return back_to(request, _course_url(ref, "/setup"))


# --- the student view (U2) -------------------------------------------------------------------


@router.get("/courses/{source}/{course_id}/students", response_class=HTMLResponse)
async def students(request: Request, ref: CourseDep, store: StoreDep, settings: SettingsDep, live: LiveDep,
                   student: str | None = None) -> HTMLResponse:
    view = await courses.student_view(store, settings, ref, student or None)
    return render(request, "students.html", {"ref": ref, "view": view, "base": _course_url(ref),
                                             "progress": courses.in_progress(store, live, ref),
                                             "student": student or "", "flash": take_flash(request)})


@router.get("/errors", response_class=HTMLResponse)
def errors(request: Request, user: UserDep) -> HTMLResponse:
    return render(request, "errors.html", {"errors": catalogue()})


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, user: UserDep, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    return render(request, "account.html", {"tokens": accounts.list_tokens(store, user["id"]),
                                            "district": get_district(store, settings), "flash": take_flash(request)})


@router.post("/account/tokens")
def new_token(request: Request, user: UserDep, store: StoreDep, name: FormStr) -> HTMLResponse:
    token = accounts.issue_token(store, user_id=user["id"], name=name or "script")
    return render(request, "token.html", {"token": token, "name": name})
