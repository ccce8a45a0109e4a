"""The LTI 1.3 launch: OIDC login initiation, the launch itself, passback's JWKS and its Canvas developer key.

The checks live in services/lti (signature against the platform's JWKS, iss, aud, azp,
nonce, state, exp, deployment id); here the launch becomes a session: the person, the
course they launched from (granted to them), and their role in it. A learner lands on
their own grades (web/learner_pages): Grade Sync's pages act on every student's grades.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.datastructures import FormData, QueryParams

from passback.services import accounts, lti
from passback.services.accounts import STAFF_ROLES
from passback.services.courses import course_ref, remember_name
from passback.web.deps import Forbidden, SettingsDep, StoreDep

router = APIRouter(prefix="/lti", tags=["lti"])
LEARNER = "Learner"


def public_base(request: Request) -> str:
    """Where the LMS reaches passback: the configured public URL, else the URL this request came to."""
    configured = request.app.state.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def _params(values: QueryParams | FormData) -> dict[str, str]:
    return {k: str(v) for k, v in values.items()}


@router.api_route("/login", methods=["GET", "POST"], include_in_schema=False)
async def login_initiation(request: Request, store: StoreDep, settings: SettingsDep) -> RedirectResponse:
    params = _params(request.query_params) | (_params(await request.form()) if request.method == "POST" else {})
    target = lti.begin_login(store, settings, params, launch_url=f"{public_base(request)}/lti/launch")
    return RedirectResponse(target, status_code=302)


@router.post("/launch", include_in_schema=False)
async def launch(request: Request, store: StoreDep, settings: SettingsDep) -> RedirectResponse:
    form = await request.form()
    if form.get("error"):
        raise lti.LtiError(f"The LMS refused the launch: {form.get('error')} ({form.get('error_description', '')}).")
    launched = await lti.complete_launch(store, settings, id_token=str(form.get("id_token", "")),
                                         state=str(form.get("state", "")))
    if launched.role not in (*STAFF_ROLES, LEARNER):
        raise Forbidden(f"Grade Sync has nothing for the role {launched.role} in this course.")
    if launched.role == LEARNER and not launched.source_user_id:
        raise lti.LtiError("The launch does not say which student you are (the custom field canvas_user_id is "
                           "missing); an admin adds it to the developer key's custom fields.")
    user = accounts.user_for_launch(store, issuer=launched.issuer, subject=launched.subject,
                                    name=launched.name or launched.login, login=launched.login)
    accounts.grant_course(store, user_id=user["id"], source_connection_id=launched.source_connection_id,
                          course_id=launched.course_id, role=launched.role, granted_by="lti")
    ref = course_ref(store, settings, launched.source_connection_id, launched.course_id)
    remember_name(store, ref.source.id, ref.course_id, launched.context_title)
    request.session.clear()
    request.session.update(user_id=user["id"], via="lti", role=launched.role)
    if launched.role == LEARNER:  # a student: their own grades only, kept in the signed session
        request.session["learner"] = {"source": ref.source.id, "course": ref.course_id,
                                      "student": launched.source_user_id}
        return RedirectResponse(f"/my/{ref.source.name}/{ref.course_id}", status_code=303)
    return RedirectResponse(f"/courses/{ref.source.name}/{ref.course_id}", status_code=303)


@router.get("/jwks", summary="passback's public keys (the LMS verifies passback's signed requests with them)")
def jwks(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    return JSONResponse(lti.tool_jwks(store, settings))


@router.get("/config.json", summary="The Canvas developer key JSON (LTI 1.3, course navigation placement)")
def developer_key(request: Request) -> dict[str, Any]:
    return lti.developer_key_json(public_base(request))
