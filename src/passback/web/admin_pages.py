"""Admin pages: connections, district settings, LTI platforms, users, state reporting and the audit log.

Only district admins reach them (``AdminDep``). Secrets are never shown back: a
connection lists its kind and URL, and a test button makes one real request with what is
saved.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from passback.errors import Invalid, PassbackError
from passback.services import accounts, lti, statereport
from passback.services.connections import test_saved
from passback.services.district import get_district, update_district
from passback.services.history import explain_run
from passback.store.connections import connection_refs
from passback.store.history import list_audit, list_runs
from passback.web.deps import AdminDep, SettingsDep, StoreDep, actor_of
from passback.web.lti_routes import public_base
from passback.web.rendering import render
from passback.web.responses import back_to, flash, take_flash

router = APIRouter(prefix="/admin", include_in_schema=False)
FormStr = Annotated[str, Form()]


@router.get("", response_class=HTMLResponse)
def admin_home(request: Request, admin: AdminDep) -> HTMLResponse:
    return render(request, "admin/home.html")


# --- connections -------------------------------------------------------------------------------


@router.get("/connections", response_class=HTMLResponse)
def connections(request: Request, admin: AdminDep, store: StoreDep) -> HTMLResponse:
    return render(request, "admin/connections.html", {"connections": connection_refs(store),
                                                      "flash": take_flash(request)})


@router.post("/connections/{name}/test")
async def test_connection(request: Request, name: str, admin: AdminDep, store: StoreDep,
                          settings: SettingsDep) -> Response:
    try:
        shown = await test_saved(store, settings, name)
        flash(request, f"{name}: it works ({shown}).")
    except PassbackError as exc:
        flash(request, f"{name}: {exc}", "error")
    return back_to(request, "/admin/connections")


# --- district settings -------------------------------------------------------------------------


@router.get("/district", response_class=HTMLResponse)
def district(request: Request, admin: AdminDep, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    return render(request, "admin/district.html", {"district": get_district(store, settings),
                                                   "connections": connection_refs(store),
                                                   "flash": take_flash(request)})


def _routes(text: str) -> list[dict[str, str]]:
    """Routes typed one per line: ``source -> destination``."""
    routes = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        source, arrow, destination = line.partition("->")
        if not arrow or not source.strip() or not destination.strip():
            raise Invalid(f"Route line {number} ({line.strip()!r}) must read: source connection -> destination "
                          "connection.")
        routes.append({"source": source.strip(), "destination": destination.strip()})
    return routes


@router.post("/district")
def save_district(request: Request, admin: AdminDep, store: StoreDep, settings: SettingsDep, title_limit: FormStr,
                  nightly_window_start: FormStr, nightly_window_end: FormStr, time_zone: FormStr, routes: FormStr = "",
                  block_closed_terms: Annotated[str | None, Form()] = None) -> Response:
    try:
        limit = int(title_limit)
    except ValueError as exc:
        raise Invalid(f"The title limit must be a whole number of characters, not {title_limit!r}.") from exc
    update_district(store, settings, {"title_limit": limit, "block_closed_terms": block_closed_terms == "on",
                                      "nightly_window_start": nightly_window_start,
                                      "nightly_window_end": nightly_window_end, "time_zone": time_zone,
                                      "routes": _routes(routes)}, actor=actor_of(admin))
    flash(request, "District settings saved.")
    return back_to(request, "/admin/district")


# --- LTI platforms -------------------------------------------------------------------------------


@router.get("/lti", response_class=HTMLResponse)
def lti_platforms(request: Request, admin: AdminDep, store: StoreDep) -> HTMLResponse:
    base = public_base(request)
    return render(request, "admin/lti.html", {
        "platforms": lti.list_platforms(store), "connections": connection_refs(store), "base": base,
        "developer_key": json.dumps(lti.developer_key_json(base), indent=2), "flash": take_flash(request)})


@router.post("/lti")
def register_platform(request: Request, admin: AdminDep, store: StoreDep, name: FormStr, issuer: FormStr,
                      client_id: FormStr, auth_login_url: FormStr, auth_token_url: FormStr, jwks_url: FormStr,
                      deployment_ids: FormStr, source: FormStr) -> Response:
    found = next((c for c in connection_refs(store) if c.name == source), None)
    if found is None:
        raise Invalid(f"No connection {source!r}: pick the LMS connection whose courses launch Grade Sync.")
    lti.register_platform(store, name=name, issuer=issuer.strip(), client_id=client_id.strip(),
                          auth_login_url=auth_login_url.strip(), auth_token_url=auth_token_url.strip(),
                          jwks_url=jwks_url.strip(), deployment_ids=[d.strip() for d in deployment_ids.split(",")
                                                                     if d.strip()],
                          source_connection_id=found.id)
    flash(request, f"Platform {name} registered.")
    return back_to(request, "/admin/lti")


@router.post("/lti/{platform_id}/remove")
def remove_platform(request: Request, platform_id: int, admin: AdminDep, store: StoreDep) -> Response:
    lti.remove_platform(store, platform_id)
    flash(request, "Platform removed.")
    return back_to(request, "/admin/lti")


# --- users -----------------------------------------------------------------------------------------


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, admin: AdminDep, store: StoreDep) -> HTMLResponse:
    listed = [u | {"courses": accounts.courses_of(store, u["id"])} for u in accounts.list_users(store)]
    return render(request, "admin/users.html", {"users": listed, "connections": connection_refs(store),
                                                "flash": take_flash(request)})


@router.post("/users")
def add_user(request: Request, admin: AdminDep, store: StoreDep, username: FormStr, password: FormStr,
             display_name: FormStr = "", is_admin: Annotated[str | None, Form()] = None) -> Response:
    accounts.add_user(store, username=username.strip(), display_name=display_name.strip() or None, password=password,
                      is_admin=is_admin == "on")
    flash(request, f"User {username} added.")
    return back_to(request, "/admin/users")


@router.post("/users/{user_id}/grant")
def grant(request: Request, user_id: int, admin: AdminDep, store: StoreDep, source: FormStr, course_id: FormStr,
          role: FormStr = "Instructor") -> Response:
    found = next((c for c in connection_refs(store) if c.name == source), None)
    if found is None:
        raise Invalid(f"No connection {source!r}.")
    accounts.grant_course(store, user_id=user_id, source_connection_id=found.id, course_id=course_id.strip(),
                          role=role, granted_by=actor_of(admin))
    flash(request, f"Course {course_id} assigned.")
    return back_to(request, "/admin/users")


# --- state reporting ---------------------------------------------------------------------------------


@router.get("/state-reporting", response_class=HTMLResponse)
async def state_reporting(request: Request, admin: AdminDep, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    posted, ods = statereport.district_pair(store)
    shown, lines, errors = None, [], None
    if posted and ods:
        shown = await statereport.status(store, settings, posted, ods)
        lines = statereport.status_lines(shown)
        latest = next((r for r in list_runs(store, 50) if r.get("pipeline") == "statereport"), None)
        errors = explain_run(store, latest["id"]) if latest else None
    return render(request, "admin/state.html", {"posted": posted, "ods": ods, "status": shown, "lines": lines,
                                                "errors": errors, "flash": take_flash(request)})


@router.post("/state-reporting/toggle")
def state_toggle(request: Request, admin: AdminDep, store: StoreDep, settings: SettingsDep, on: FormStr) -> Response:
    _, ods = statereport.district_pair(store)
    if ods is None:
        raise Invalid("There is no Ed-Fi connection; add one with `passback connect edfi`.")
    flash(request, statereport.toggle(store, settings, ods, on == "on")["message"])
    return back_to(request, "/admin/state-reporting")


@router.post("/state-reporting/map-task")
def state_map_task(request: Request, admin: AdminDep, store: StoreDep, settings: SettingsDep, task: FormStr,
                   grade_type: FormStr, periods: FormStr = "") -> Response:
    _, ods = statereport.district_pair(store)
    if ods is None:
        raise Invalid("There is no Ed-Fi connection; add one with `passback connect edfi`.")
    statereport.map_task(store, settings, ods, task.strip(), grade_type.strip(),
                         [p.strip() for p in periods.split(",") if p.strip()])
    flash(request, f"Task {task} mapped.")
    return back_to(request, "/admin/state-reporting")


@router.post("/state-reporting/send")
async def state_send(request: Request, admin: AdminDep, store: StoreDep, settings: SettingsDep,
                     resync: Annotated[str | None, Form()] = None) -> Response:
    posted, ods = statereport.district_pair(store)
    if posted is None or ods is None:
        raise Invalid("State reporting needs a posted-grades source and an Ed-Fi connection.")
    result = await statereport.report(store, settings, posted, ods, resync=resync == "1", actor=actor_of(admin))
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items() if v)
    flash(request, f"{'Resync' if resync == '1' else 'Sync'}: {result.status}" + (f" ({counts})." if counts else "."),
           "error" if result.counts.get("error") or result.failure else "ok")
    return back_to(request, "/admin/state-reporting")


# --- the audit log --------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, admin: AdminDep, store: StoreDep, run: str | None = None, assignment: str | None = None,
          student: str | None = None, action: str | None = None, page: int = 0) -> HTMLResponse:
    rows = list_audit(store, run_id=run or None, assignment_id=assignment or None, student_id=student or None,
                      action=action or None, limit=100, offset=max(0, page) * 100)
    return render(request, "admin/audit.html", {"rows": rows, "page": max(0, page), "filters": {
        "run": run or "", "assignment": assignment or "", "student": student or "", "action": action or ""}})
