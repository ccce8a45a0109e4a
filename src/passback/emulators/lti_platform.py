"""The Canvas emulator as an LTI 1.3 platform: developer keys, the course navigation launch, signed id tokens.

Contract (Canvas's "Configuring LTI Advantage Tools" and "Launch Overview" documentation,
``lib/lti/messages/jwt_message.rb`` and ``Lti::SubstitutionsHelper`` in canvas-lms):

* ``POST /_emulator/lti/developer_keys`` takes the developer key JSON a tool publishes
  ("Configure an LTI Key", Paste JSON) and answers the key's ``client_id`` (a global id
  such as ``10000000000001``) and the ``deployment_id`` of its installation in the root
  account (``1:<40 hex>``), with the platform's issuer and endpoint URLs. The redirect
  URIs are the configuration's ``redirect_uris`` when given, else its target link URIs.
* ``GET /courses/:course_id/external_tools/:client_id?as_user=<login_id>`` is the course
  navigation launch. The emulator has no sessions: ``as_user`` stands for the signed-in
  user. The answer is a page whose form posts the login initiation (``iss``,
  ``login_hint``, ``target_link_uri``, ``lti_message_hint``, ``client_id``,
  ``lti_deployment_id``, ``canvas_region``, ``canvas_environment``,
  ``lti_storage_target``) to the tool's ``oidc_initiation_url``, by script or by its
  button. ``lti_message_hint`` is a JWT the platform signed: course, user, key, placement.
  A user neither enrolled in the course nor an account admin gets 401. Placement
  visibility is not enforced (Canvas hides the tab; the emulator launches whoever asks).
* ``GET|POST /api/lti/authorize_redirect`` is the OIDC authorization endpoint. An unknown
  ``client_id`` or a ``redirect_uri`` not registered on the key is a 400 page (there is
  nowhere safe to send an error). Anything else wrong is posted back to the
  ``redirect_uri`` as ``error``/``error_description`` (with the ``state``): missing
  parameters, ``scope`` other than ``openid``, ``response_type`` other than ``id_token``,
  ``response_mode`` other than ``form_post``, ``prompt`` other than ``none``, a message
  hint that is not the platform's, for another key or expired, and a ``login_hint`` that
  is not the hint's user (``login_required``). Otherwise the page posts ``id_token`` and
  ``state``: an RS256 JWT (``kid`` in its header, valid one hour) with the claims Canvas
  sends for a resource link launch, the custom fields substituted.
* ``GET /api/lti/security/jwks`` is the platform's public key set.

Roles, as Canvas maps them: TeacherEnrollment is ``membership#Instructor``; TaEnrollment
is ``membership/Instructor#TeachingAssistant`` with its principal role
``membership#Instructor``; StudentEnrollment is ``membership#Learner``; an account admin
is ``institution/person#Administrator`` and ``system/person#Administrator``. Institution
roles (``institution/person#Instructor`` for anyone teaching, ``#Student`` for anyone
enrolled as a student) and ``system/person#User`` come with them.

The platform's RSA key is made when the app is created and kept in the emulator's state
(``state["lti"]``), so an emulator restarted on its state file keeps its key and keys.
"""

from __future__ import annotations

import hashlib
import html
import secrets
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from passback.emulators.canvas import CanvasEmulator

ISSUER = "https://canvas.instructure.com"
AUTHORIZE_PATH = "/api/lti/authorize_redirect"
JWKS_PATH = "/api/lti/security/jwks"
TOKEN_PATH = "/login/oauth2/token"
FIRST_CLIENT_ID = 10_000_000_000_001
ID_TOKEN_SECONDS = 3600  # Canvas's id tokens are good for an hour
MESSAGE_HINT_SECONDS = 600
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_ENDPOINT = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
AGS_SCOPE_PREFIX = "https://purl.imsglobal.org/spec/lti-ags/scope/"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
ENROLLMENT_ROLES = {
    "TeacherEnrollment": (LIS + "membership#Instructor",),
    "TaEnrollment": (LIS + "membership/Instructor#TeachingAssistant", LIS + "membership#Instructor"),
    "StudentEnrollment": (LIS + "membership#Learner",),
    "DesignerEnrollment": (LIS + "membership#ContentDeveloper",),
    "ObserverEnrollment": (LIS + "membership#Mentor",),
}
ADMIN_ROLES = (LIS + "institution/person#Administrator", LIS + "system/person#Administrator")
REQUIRED_AUTH_PARAMS = ("scope", "response_type", "response_mode", "prompt", "login_hint", "lti_message_hint", "nonce")


def _hex_id(*parts: object) -> str:
    """A stable 40-hex opaque id, like Canvas's ``lti_context_id`` and deployment ids."""
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()  # an id, not a secret: sha1 is fine


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                        f"</head><body>{body}</body></html>\n", status_code=status)


def form_post_page(action: str, fields: dict[str, str], title: str) -> HTMLResponse:
    """A page that posts ``fields`` to ``action`` at once (script), or on its button (no script)."""
    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in fields.items())
    return _page(title, f'<form id="lti" method="post" action="{html.escape(action)}">{inputs}'
                        f'<button type="submit">Continue</button></form>'
                        '<script>document.getElementById("lti").submit();</script>')


def _error_page(message: str, status: int) -> HTMLResponse:
    return _page("LTI launch error", f"<h1>{status}</h1><p>{html.escape(message)}</p>", status)


class LtiPlatform:
    """The platform's key, the developer keys registered with it, and the launch messages it signs."""

    def __init__(self, emu: CanvasEmulator, mark_dirty: Callable[[], None], issuer: str = ISSUER) -> None:
        self.emu = emu
        self.issuer = issuer
        self.mark_dirty = mark_dirty
        lti = emu.state.setdefault("lti", {})
        lti.setdefault("developer_keys", {})
        lti.setdefault("next_client_id", FIRST_CLIENT_ID)
        if "platform_key" not in lti:
            key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True, auto_kid=True)
            lti["platform_key"] = key.as_dict(private=True)
            mark_dirty()
        self.key = RSAKey.import_key(lti["platform_key"])

    @property
    def lti(self) -> dict[str, Any]:
        return self.emu.state["lti"]

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def jwks(self) -> dict[str, Any]:
        public = self.key.as_dict(private=False)
        public.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [public]}

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None, kid: str | None = None) -> str:
        """An RS256 JWT of ``claims``, with the platform's key unless another is given (tests forge with it)."""
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}, claims, key or self.key)

    # --- developer keys ---------------------------------------------------------------------------

    def register(self, config: dict[str, Any]) -> dict[str, Any]:
        """Save a developer key from its JSON configuration; raises ValueError naming what is missing."""
        missing = [f for f in ("title", "oidc_initiation_url", "target_link_uri") if not config.get(f)]
        if not config.get("public_jwk") and not config.get("public_jwk_url"):
            missing.append("public_jwk or public_jwk_url")
        if missing:
            raise ValueError(f"The developer key configuration is missing {', '.join(missing)}")
        client_id = str(self.lti["next_client_id"])
        self.lti["next_client_id"] += 1
        extension = self._canvas_extension(config)
        placements = {p.get("placement"): p for p in (extension.get("settings") or {}).get("placements") or []
                      if isinstance(p, dict)}
        redirect_uris = list(config.get("redirect_uris") or []) or list(dict.fromkeys(
            [config["target_link_uri"], *(p["target_link_uri"] for p in placements.values() if p.get("target_link_uri"))]))
        key = {
            "client_id": client_id,
            "deployment_id": f"{int(client_id) - FIRST_CLIENT_ID + 1}:{_hex_id('deployment', client_id, 'account', 1)}",
            "title": config["title"],
            "oidc_initiation_url": config["oidc_initiation_url"],
            "target_link_uri": config["target_link_uri"],
            "public_jwk_url": config.get("public_jwk_url"),
            "public_jwk": config.get("public_jwk"),
            "redirect_uris": redirect_uris,
            "scopes": list(config.get("scopes") or []),
            "privacy_level": extension.get("privacy_level") or config.get("privacy_level") or "anonymous",
            "custom_fields": dict(config.get("custom_fields") or {}),
            "course_navigation": placements.get("course_navigation"),
            "configuration": config,
        }
        self.lti["developer_keys"][client_id] = key
        self.mark_dirty()
        return key

    @staticmethod
    def _canvas_extension(config: dict[str, Any]) -> dict[str, Any]:
        for extension in config.get("extensions") or []:
            if isinstance(extension, dict) and extension.get("platform") in ("canvas.instructure.com", None):
                return extension
        return {}

    def endpoints(self, base: str) -> dict[str, str]:
        base = base.rstrip("/")
        return {"issuer": self.issuer, "auth_login_url": base + AUTHORIZE_PATH, "auth_token_url": base + TOKEN_PATH,
                "jwks_url": base + JWKS_PATH}

    # --- users and roles --------------------------------------------------------------------------

    def user_by_login(self, login_id: str) -> dict[str, Any] | None:
        return next((u for u in self.emu.state["users"].values() if u.get("login_id") == login_id), None)

    def is_admin(self, user_id: int) -> bool:
        return any(a.get("user_id") == user_id and a.get("workflow_state", "active") == "active"
                   for a in (self.emu.state.get("account_users") or {}).values())

    def enrollments_of(self, user_id: int, course_id: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self.emu.state["enrollments"].values()
                if e["user_id"] == user_id and e.get("enrollment_state") in ("active", "invited")
                and (course_id is None or e["course_id"] == course_id)]

    def roles(self, user: dict[str, Any], course: dict[str, Any]) -> list[str]:
        """The roles claim of ``user`` launching in ``course``, as Canvas builds it."""
        roles: list[str] = []
        for enrollment in self.enrollments_of(user["id"], course["id"]):
            roles.extend(ENROLLMENT_ROLES.get(enrollment["type"], ()))
        if self.is_admin(user["id"]):
            roles.extend(ADMIN_ROLES)
        types = {e["type"] for e in self.enrollments_of(user["id"])}
        if types & {"TeacherEnrollment", "TaEnrollment", "DesignerEnrollment"}:
            roles.append(LIS + "institution/person#Instructor")
        if "StudentEnrollment" in types:
            roles.append(LIS + "institution/person#Student")
        roles.append(LIS + "system/person#User")
        return list(dict.fromkeys(roles))

    def may_launch(self, user: dict[str, Any], course: dict[str, Any]) -> bool:
        return bool(self.enrollments_of(user["id"], course["id"])) or self.is_admin(user["id"])

    def subject(self, user: dict[str, Any]) -> str:
        """The user's LTI id (``sub``): stable, opaque, the same in every course."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.issuer}/users/{user['id']}"))

    # --- messages ---------------------------------------------------------------------------------

    def message_hint(self, key: dict[str, Any], course: dict[str, Any], user: dict[str, Any], base: str) -> str:
        now = int(time.time())
        return self.sign({"verifier": secrets.token_hex(16), "canvas_domain": urlsplit(base).netloc,
                          "context_type": "Course", "context_id": course["id"], "user_id": user["id"],
                          "client_id": key["client_id"], "deployment_id": key["deployment_id"],
                          "placement": "course_navigation", "iat": now, "exp": now + MESSAGE_HINT_SECONDS})

    def read_message_hint(self, hint: str) -> dict[str, Any] | None:
        """The hint's claims when the platform signed it and it has not expired; else None."""
        try:
            claims = dict(jwt.decode(hint, self.key, algorithms=["RS256"]).claims)
        except (JoseError, ValueError, TypeError):
            return None
        return claims if isinstance(claims.get("exp"), int) and claims["exp"] > time.time() else None

    def substitute(self, value: Any, user: dict[str, Any], course: dict[str, Any], base: str) -> Any:
        """A custom field's value with Canvas's variable substituted; an unknown variable is sent as it is."""
        if not isinstance(value, str) or not value.startswith("$"):
            return value
        sortable = user.get("sortable_name") or ""
        family, _, given = sortable.partition(", ")
        known = {
            "$Canvas.course.id": str(course["id"]),
            "$Canvas.course.sisSourceId": course.get("sis_course_id"),
            "$Canvas.user.id": str(user["id"]),
            "$Canvas.user.loginId": user.get("login_id"),
            "$Canvas.user.sisid": user.get("sis_user_id"),
            "$Canvas.api.domain": urlsplit(base).netloc,
            "$Context.title": course.get("name"),
            "$Context.id": _hex_id("course", course["id"]),
            "$Person.name.full": user.get("name"),
            "$Person.name.given": given or None,
            "$Person.name.family": family or None,
            "$Person.email.primary": user.get("email"),
        }
        found = known.get(value, value)
        return value if found is None else found

    def id_token_claims(self, key: dict[str, Any], course: dict[str, Any], user: dict[str, Any], nonce: str,
                        target_link_uri: str, base: str) -> dict[str, Any]:
        now = int(time.time())
        placement = key.get("course_navigation") or {}
        context_id = _hex_id("course", course["id"])
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": key["client_id"], "azp": key["client_id"], "sub": self.subject(user),
            "iat": now, "exp": now + ID_TOKEN_SECONDS, "nonce": nonce, "locale": "en",
            LTI + "message_type": "LtiResourceLinkRequest",
            LTI + "version": "1.3.0",
            LTI + "deployment_id": key["deployment_id"],
            LTI + "target_link_uri": target_link_uri,
            LTI + "resource_link": {"id": context_id, "title": course.get("name"), "description": None},
            LTI + "roles": self.roles(user, course),
            LTI + "context": {"id": context_id, "label": course.get("course_code"), "title": course.get("name"),
                              "type": [LIS + "course#CourseOffering"]},
            LTI + "tool_platform": {"guid": f"{_hex_id('platform', self.issuer)}:canvas-lms", "name": "Sandbox District",
                                    "version": "cloud", "product_family_code": "canvas"},
            LTI + "launch_presentation": {
                "document_target": "window" if placement.get("windowTarget") == "_blank" else "iframe",
                "return_url": f"{base}courses/{course['id']}/external_content/success/external_tool_redirect",
                "locale": "en"},
            LTI + "lis": {"person_sourcedid": user.get("sis_user_id"),
                          "course_offering_sourcedid": course.get("sis_course_id")},
            "https://www.instructure.com/placement": "course_navigation",
        }
        privacy = key.get("privacy_level") or "anonymous"
        if privacy in ("public", "name_only"):
            family, _, given = (user.get("sortable_name") or "").partition(", ")
            claims.update(name=user.get("name"), given_name=given or None, family_name=family or None)
        if privacy in ("public", "email_only") and user.get("email"):
            claims["email"] = user["email"]
        custom = {**key.get("custom_fields", {}), **(placement.get("custom_fields") or {})}
        if custom:
            claims[LTI + "custom"] = {k: self.substitute(v, user, course, base) for k, v in custom.items()}
        ags = [s for s in key.get("scopes", []) if s.startswith(AGS_SCOPE_PREFIX)]
        if ags:
            claims[AGS_ENDPOINT] = {"scope": ags, "lineitems": f"{base}api/lti/courses/{course['id']}/line_items"}
        return claims


def lti_routes(emu: CanvasEmulator, platform: LtiPlatform) -> tuple[list[BaseRoute], list[BaseRoute]]:
    """The platform's routes (counted, faulted like any) and its control routes (under ``/_emulator/``)."""

    def counted(path: str, handler: Callable[[Request], Any], methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            emu.requests[f"{request.method} {path}"] += 1
            return await handler(request)

        return Route(path, endpoint, methods=methods)

    async def jwks(request: Request) -> Response:
        return JSONResponse(platform.jwks())

    async def launch(request: Request) -> Response:
        course = emu.course(request.path_params["course_id"])
        key = platform.lti["developer_keys"].get(request.path_params["client_id"])
        if course is None or key is None:
            return _error_page("The specified resource does not exist.", 404)
        placement = key.get("course_navigation")
        if not placement or str(placement.get("enabled", True)).lower() == "false":
            return _error_page("The tool has no course navigation placement.", 404)
        login_id = request.query_params.get("as_user", "")
        user = platform.user_by_login(login_id) if login_id else None
        if user is None:
            return _error_page("You must be logged in to launch this tool (as_user=<login id>).", 401)
        if not platform.may_launch(user, course):
            return _error_page("You are not authorized to perform that action: not enrolled in this course.", 401)
        base = str(request.base_url)
        target = placement.get("target_link_uri") or key["target_link_uri"]
        return form_post_page(key["oidc_initiation_url"], {
            "iss": platform.issuer, "login_hint": str(user["id"]), "client_id": key["client_id"],
            "lti_deployment_id": key["deployment_id"], "target_link_uri": target,
            "lti_message_hint": platform.message_hint(key, course, user, base),
            "canvas_region": "unknown", "canvas_environment": "production",
            "lti_storage_target": "post_message_forwarding",
        }, key["title"])

    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        key = platform.lti["developer_keys"].get(params.get("client_id", ""))
        if key is None:
            return _error_page(f"Client id {params.get('client_id')!r} is not a developer key here.", 400)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in key["redirect_uris"]:
            return _error_page(f"Invalid redirect_uri {redirect_uri!r}: it must be one of the developer key's "
                               "redirect URIs.", 400)
        state = params.get("state")

        def refuse(error: str, description: str) -> Response:
            fields = {"error": error, "error_description": description}
            if state:
                fields["state"] = state
            return form_post_page(redirect_uri, fields, "LTI launch error")

        missing = [p for p in REQUIRED_AUTH_PARAMS if not params.get(p)]
        if missing:
            return refuse("invalid_request_object", f"The following parameters are missing: {', '.join(missing)}")
        if params["scope"] != "openid":
            return refuse("invalid_scope", "The scope must be openid")
        if params["response_type"] != "id_token":
            return refuse("unsupported_response_type", "The response_type must be id_token")
        if params["response_mode"] != "form_post":
            return refuse("invalid_request_object", "The response_mode must be form_post")
        if params["prompt"] != "none":
            return refuse("invalid_request_object", "The prompt must be none")
        hint = platform.read_message_hint(params["lti_message_hint"])
        if hint is None or hint.get("client_id") != key["client_id"]:
            return refuse("invalid_request_object", "Invalid lti_message_hint")
        if params["login_hint"] != str(hint.get("user_id")):
            return refuse("login_required", "The user is not logged in")
        course = emu.course(str(hint["context_id"]))
        user = emu.state["users"].get(str(hint["user_id"]))
        if course is None or user is None or not platform.may_launch(user, course):
            return refuse("login_required", "The user may not launch this tool in that course")
        placement = key.get("course_navigation") or {}
        target = placement.get("target_link_uri") or key["target_link_uri"]
        claims = platform.id_token_claims(key, course, user, params["nonce"], target, str(request.base_url))
        fields = {"id_token": platform.sign(claims)}
        if state:
            fields["state"] = state
        return form_post_page(redirect_uri, fields, key["title"])

    async def developer_keys(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(list(platform.lti["developer_keys"].values()))
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("The developer key configuration must be a JSON object")
            key = platform.register(body)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        return JSONResponse({"client_id": key["client_id"], "deployment_id": key["deployment_id"],
                             **platform.endpoints(str(request.base_url))})

    routes: list[BaseRoute] = [
        counted(JWKS_PATH, jwks, ["GET"]),
        counted("/courses/{course_id}/external_tools/{client_id}", launch, ["GET"]),
        counted(AUTHORIZE_PATH, authorize, ["GET", "POST"]),
    ]
    control: list[BaseRoute] = [Route("/_emulator/lti/developer_keys", developer_keys, methods=["GET", "POST"])]
    return routes, control
