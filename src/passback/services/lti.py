"""LTI 1.3 launches: passback as a tool an LMS (Canvas) opens from a course, teacher signed in.

The launch is the IMS Security Framework's OpenID Connect third-party flow:

1. The platform sends the browser to ``/lti/login`` (:func:`begin_login`): passback finds
   the registration by issuer (and client id), remembers a one-time state and nonce for
   ten minutes, and sends the browser to the platform's authorization endpoint.
2. The platform posts a signed ``id_token`` and the state to ``/lti/launch``
   (:func:`complete_launch`): the state is used up in one transaction (a replay is
   refused), the token's signature is checked with the platform's published keys (cached,
   refetched once for an unknown ``kid``: the platform rotated its key), then its claims
   (issuer, audience, nonce, times, deployment, message type and version).

What comes out is a :class:`Launch`: who the user is, which course, and their role in
it, reduced to the four roles passback acts on. Every refusal is an :class:`LtiError`
whose message says what was wrong and what an admin should check.

passback's own key pair (:func:`tool_jwks`, :func:`tool_signing_key`) is what the
platform checks passback's client assertions with (Assignment and Grade Services); the
private half is kept encrypted with the vault key.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import RSAKey

from passback.errors import Invalid, NotFound
from passback.services.jwks import parse_jwks
from passback.settings import Settings
from passback.store import lti as lti_store
from passback.store.db import Store
from passback.vault import decrypt, encrypt, load_key

STATE_TTL = timedelta(minutes=10)
LEEWAY_SECONDS = 60  # clocks of the platform and passback may differ this much
JWKS_TTL_SECONDS = 300.0  # a platform's keys are fetched again after this long
ALGORITHM = "RS256"  # the only algorithm LTI 1.3 platforms sign with; anything else is refused
KEY_BITS = 2048

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_ENDPOINT = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
AGS_SCOPES = (
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
)
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"  # the AGS destination's roster
TEACHING_ASSISTANT_URI = LIS + "membership/Instructor#TeachingAssistant"
INSTRUCTOR_URI = LIS + "membership#Instructor"
ROLE_OF_URI = {
    INSTRUCTOR_URI: "Instructor",
    TEACHING_ASSISTANT_URI: "TeachingAssistant",
    LIS + "membership#Administrator": "Administrator",
    LIS + "institution/person#Administrator": "Administrator",
    LIS + "system/person#Administrator": "Administrator",
    LIS + "membership#Learner": "Learner",
}
ROLES_HIGHEST_FIRST = ("Administrator", "Instructor", "TeachingAssistant", "Learner")
PLATFORMS_PAGE = "the LTI platforms page"


class LtiError(Invalid):
    """A launch (or a registration) refused; the message says what was wrong and what to check."""


class UnknownPlatform(NotFound):
    """No LTI platform registration with that id."""


@dataclass(frozen=True)
class Launch:
    """A verified launch: who, in which course, with which role (the highest of the four passback knows)."""

    platform_id: int
    issuer: str
    subject: str
    name: str
    email: str | None
    login: str
    roles: tuple[str, ...]
    role: str
    course_id: str
    context_title: str | None
    deployment_id: str
    source_connection_id: int
    target_link_uri: str = ""
    lineitems_url: str | None = None  # the AGS endpoint claim: where a tool posts scores into this course
    ags_scopes: tuple[str, ...] = ()
    source_user_id: str | None = None  # the person's id in the source (Canvas's user id): a learner's own grades


# --- passback's own keys ---------------------------------------------------------------------------


def _new_tool_key(settings: Settings) -> tuple[str, str]:
    key = RSAKey.generate_key(KEY_BITS, parameters={"use": "sig", "alg": ALGORITHM}, private=True, auto_kid=True)
    private = json.dumps(key.as_dict(private=True))
    return str(key.kid), encrypt({"jwk": private}, load_key(settings))


def _tool_keys(store: Store, settings: Settings) -> list[RSAKey]:
    stored = lti_store.ensure_tool_key(store, lambda: _new_tool_key(settings))
    secret = load_key(settings, create=False)
    return [RSAKey.import_key(json.loads(decrypt(row.private_key, secret)["jwk"])) for row in stored]


def tool_jwks(store: Store, settings: Settings) -> dict[str, Any]:
    """passback's public JWKS (what ``public_jwk_url`` serves); the key pair is made on first use."""
    keys = []
    for key in _tool_keys(store, settings):
        public = key.as_dict(private=False)
        public.update(kid=key.kid, use="sig", alg=ALGORITHM)
        keys.append(public)
    return {"keys": keys}


def tool_signing_key(store: Store, settings: Settings) -> RSAKey:
    """The private key passback signs with (the oldest active one: a new key is published before it is used)."""
    return _tool_keys(store, settings)[0]


# --- the developer key Canvas is given -------------------------------------------------------------


def developer_key_json(base_url: str, title: str = "Grade Sync") -> dict[str, Any]:
    """Canvas's LTI 1.3 developer key configuration ("Configure an LTI Key", method "Paste JSON").

    One course navigation placement, opened in a new tab (passback's pages are not meant for
    an iframe), visible to every member of the course (``visibility: members``): teachers,
    TAs and admins land on the course's Grade Sync page, a student on their own grades and
    sync state (and nothing of anyone else's). The custom fields give the course's and the
    user's Canvas ids and login, which passback matches with the Canvas connection.
    """
    base = base_url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LtiError(f"passback's address {base_url!r} is not an http(s) URL; give the address people open "
                       "passback at, such as https://grades.example.org.")
    launch = f"{base}/lti/launch"
    return {
        "title": title,
        "description": f"{title} sends the grades teachers give in Canvas to the student information system, "
                       "checked first and explained when something cannot go.",
        "oidc_initiation_url": f"{base}/lti/login",
        "target_link_uri": launch,
        "public_jwk_url": f"{base}/lti/jwks",
        "scopes": [*AGS_SCOPES, NRPS_SCOPE],
        "extensions": [{
            "domain": parts.hostname,
            "tool_id": "passback",
            "platform": "canvas.instructure.com",
            "privacy_level": "public",
            "settings": {
                "text": title,
                "placements": [{
                    "placement": "course_navigation",
                    "message_type": "LtiResourceLinkRequest",
                    "target_link_uri": launch,
                    "text": title,
                    "windowTarget": "_blank",
                    "default": "enabled",
                    "visibility": "members",
                }],
            },
        }],
        "custom_fields": {
            "canvas_course_id": "$Canvas.course.id",
            "canvas_user_login_id": "$Canvas.user.loginId",
            "canvas_user_id": "$Canvas.user.id",
        },
    }


# --- platform registrations ------------------------------------------------------------------------


def _url(value: str, what: str) -> str:
    text = (value or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LtiError(f"The platform's {what} {value!r} is not an http(s) URL; copy it from the platform's "
                       "LTI documentation (for Canvas: https://sso.canvaslms.com/api/lti/...).")
    return text


def _deployment_ids(values: list[str]) -> list[str]:
    ids = list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    if not ids:
        raise LtiError("Give at least one deployment id: Canvas shows it on the app's \"Deployment Id\" menu item "
                       "after the developer key was added to the account or course.")
    return ids


def _checked(store: Store, values: dict[str, Any]) -> dict[str, Any]:
    checked = dict(values)
    if "name" in checked:
        checked["name"] = str(checked["name"] or "").strip()
        if not checked["name"]:
            raise LtiError("Give the platform a name (such as \"Canvas\"): it is how launches and errors name it.")
    if "issuer" in checked:
        checked["issuer"] = _url(checked["issuer"], "issuer")  # compared exactly, as the spec says
    if "client_id" in checked:
        checked["client_id"] = str(checked["client_id"] or "").strip()
        if not checked["client_id"]:
            raise LtiError("Give the platform's client id: for Canvas, the developer key's id (a number such as "
                           "10000000000001) shown on the Developer Keys page.")
    for field, what in (("auth_login_url", "authorization URL"), ("auth_token_url", "token URL"),
                        ("jwks_url", "JWKS URL")):
        if field in checked:
            checked[field] = _url(checked[field], what)
    if "deployment_ids" in checked:
        checked["deployment_ids"] = _deployment_ids(list(checked["deployment_ids"]))
    if "source_connection_id" in checked:
        connection_id = int(checked["source_connection_id"])
        if not lti_store.connection_exists(store, connection_id):
            raise LtiError(f"There is no connection with id {connection_id} for launches to read courses from; "
                           "save the Canvas connection first, then register the platform with its id.")
        checked["source_connection_id"] = connection_id
    return checked


def register_platform(store: Store, *, name: str, issuer: str, client_id: str, auth_login_url: str,
                      auth_token_url: str, jwks_url: str, deployment_ids: list[str],
                      source_connection_id: int) -> dict[str, Any]:
    """Trust launches from an LMS registration (its issuer and client id); the saved registration."""
    values = _checked(store, {
        "name": name, "issuer": issuer, "client_id": client_id, "auth_login_url": auth_login_url,
        "auth_token_url": auth_token_url, "jwks_url": jwks_url, "deployment_ids": deployment_ids,
        "source_connection_id": source_connection_id,
    })
    return get_platform(store, lti_store.insert_platform(store, values))


def list_platforms(store: Store) -> list[dict[str, Any]]:
    return lti_store.list_platforms(store)


def get_platform(store: Store, platform_id: int) -> dict[str, Any]:
    platform = lti_store.get_platform(store, platform_id)
    if platform is None:
        raise UnknownPlatform(f"There is no LTI platform with id {platform_id}; see {PLATFORMS_PAGE} for those there are.")
    return platform


def update_platform(store: Store, platform_id: int, *, name: str | None = None, issuer: str | None = None,
                    client_id: str | None = None, auth_login_url: str | None = None,
                    auth_token_url: str | None = None, jwks_url: str | None = None,
                    deployment_ids: list[str] | None = None,
                    source_connection_id: int | None = None) -> dict[str, Any]:
    """Change what is given (None leaves a field as it is); the registration as saved."""
    given = {"name": name, "issuer": issuer, "client_id": client_id, "auth_login_url": auth_login_url,
             "auth_token_url": auth_token_url, "jwks_url": jwks_url, "deployment_ids": deployment_ids,
             "source_connection_id": source_connection_id}
    values = _checked(store, {key: value for key, value in given.items() if value is not None})
    if not lti_store.update_platform(store, platform_id, values):
        get_platform(store, platform_id)  # raises: no such platform
    return get_platform(store, platform_id)


def remove_platform(store: Store, platform_id: int) -> None:
    """Stop trusting a platform; launches it started and has not finished are forgotten too."""
    if not lti_store.delete_platform(store, platform_id):
        get_platform(store, platform_id)  # raises: no such platform


# --- step 1: login initiation ----------------------------------------------------------------------


def _param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value).strip()


def _find_platform(store: Store, issuer: str, client_id: str) -> dict[str, Any]:
    platforms = lti_store.find_platforms(store, issuer, client_id or None)
    if not platforms:
        which = f"issuer {issuer}" + (f" and client id {client_id}" if client_id else "")
        raise LtiError(f"No LTI platform with {which} is registered; add it on {PLATFORMS_PAGE} "
                       "(the issuer and client id must be exactly what the LMS sends).")
    if len(platforms) > 1:
        raise LtiError(f"Several LTI platforms have the issuer {issuer} and the launch names no client id, so "
                       "passback cannot tell which registration it is; have the LMS send client_id with the "
                       "login (Canvas always does), or remove the registration that is not used.")
    return platforms[0]


def _same_host(url: str, other: str) -> bool:
    return (urlsplit(url).hostname or "").lower() == (urlsplit(other).hostname or "").lower()


def begin_login(store: Store, settings: Settings, params: Mapping[str, str], *, launch_url: str) -> str:
    """Answer the platform's login initiation: the URL of its authorization endpoint to send the browser to.

    ``params`` are the request's query (GET) or form (POST); ``launch_url`` is passback's
    launch address, the ``redirect_uri`` the platform posts the id token to.
    """
    issuer, login_hint = _param(params, "iss"), _param(params, "login_hint")
    target_link_uri = _param(params, "target_link_uri")
    missing = [name for name, value in (("iss", issuer), ("login_hint", login_hint),
                                        ("target_link_uri", target_link_uri)) if not value]
    if missing:
        raise LtiError(f"The LTI login is missing {', '.join(missing)}; it must come from the LMS's launch "
                       "(open passback from the course's navigation), not be opened directly.")
    platform = _find_platform(store, issuer, _param(params, "client_id"))
    deployment_id = _param(params, "lti_deployment_id")
    if deployment_id and deployment_id not in platform["deployment_ids"]:
        raise LtiError(_unregistered_deployment(deployment_id, platform))
    if not _same_host(target_link_uri, launch_url):
        raise LtiError(f"The launch's target_link_uri {target_link_uri} is not on passback ({launch_url}); check "
                       "the developer key's Target Link URI: it must be passback's /lti/launch address.")
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    lti_store.add_launch_state(store, state=state, nonce=nonce, platform_id=platform["id"],
                               target_link_uri=target_link_uri, expires_at=datetime.now(UTC) + STATE_TTL)
    query = {
        "scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
        "client_id": platform["client_id"], "redirect_uri": launch_url, "login_hint": login_hint,
        "state": state, "nonce": nonce,
    }
    message_hint = _param(params, "lti_message_hint")
    if message_hint:
        query["lti_message_hint"] = message_hint
    parts = urlsplit(platform["auth_login_url"])
    combined = urlencode(parse_qsl(parts.query, keep_blank_values=True) + list(query.items()))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, combined, parts.fragment))


def _unregistered_deployment(deployment_id: str, platform: dict[str, Any]) -> str:
    return (f"The launch's deployment id {deployment_id} is not registered for platform {platform['name']}; "
            f"add it on {PLATFORMS_PAGE} (registered: {', '.join(platform['deployment_ids'])}).")


# --- step 2: the launch --------------------------------------------------------------------------------


@dataclass
class _Jwks:
    fetched_at: float
    keys: dict[str, RSAKey]


_jwks_cache: dict[str, _Jwks] = {}


def clear_jwks_cache() -> None:
    """Forget every platform's cached keys (tests; an admin who changed a JWKS URL need not wait)."""
    _jwks_cache.clear()


async def _fetch_jwks(url: str, platform: dict[str, Any], transport: httpx.AsyncBaseTransport | None,
                      timeout: float) -> _Jwks:
    fix = f"check the JWKS URL of platform {platform['name']} on {PLATFORMS_PAGE}"
    try:
        async with httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=True) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise LtiError(f"passback could not fetch the platform's signing keys from {url} ({exc!r}); {fix}, "
                       "and that passback can reach it.") from exc
    if response.status_code != 200:
        raise LtiError(f"The platform's JWKS URL {url} answered {response.status_code}; {fix}.")
    try:
        document = response.json()
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError("keys is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise LtiError(f"The platform's JWKS URL {url} did not answer a JSON Web Key Set; {fix}.") from exc
    found = _Jwks(time.monotonic(), parse_jwks(entries))
    _jwks_cache[url] = found
    return found


async def _platform_key(platform: dict[str, Any], kid: str, transport: httpx.AsyncBaseTransport | None,
                        timeout: float) -> RSAKey:
    url = platform["jwks_url"]
    cached = _jwks_cache.get(url)
    fresh = cached is None or time.monotonic() - cached.fetched_at > JWKS_TTL_SECONDS
    if fresh:
        cached = await _fetch_jwks(url, platform, transport, timeout)
    assert cached is not None
    key = cached.keys.get(kid)
    if key is None and not fresh:  # a key we have not seen: the platform may have rotated; look once more
        cached = await _fetch_jwks(url, platform, transport, timeout)
        key = cached.keys.get(kid)
    if key is None:
        raise LtiError(f"The launch was signed with key {kid}, which is not among platform {platform['name']}'s keys "
                       f"at {url}; check that the platform's JWKS URL is the one of the LMS that launched.")
    return key


def _header(id_token: str) -> dict[str, Any]:
    try:
        return dict(jws.extract_compact(id_token.encode()).headers())
    except (JoseError, ValueError, TypeError, UnicodeError) as exc:
        raise LtiError("The launch's id_token is not a signed JWT; the launch must be the form the LMS posts "
                       "to passback's /lti/launch, unchanged.") from exc


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return list(aud)
    return []


def _check_claims(claims: dict[str, Any], platform: dict[str, Any], nonce: str) -> None:
    name = platform["name"]
    if claims.get("iss") != platform["issuer"]:
        raise LtiError(f"The launch's issuer {claims.get('iss')!r} is not platform {name}'s ({platform['issuer']}); "
                       f"check the issuer on {PLATFORMS_PAGE}.")
    audiences = _audiences(claims)
    client_id = platform["client_id"]
    if client_id not in audiences:
        raise LtiError(f"The launch is addressed to {claims.get('aud')!r}, not to passback's client id {client_id} on "
                       f"platform {name}; check the client id on {PLATFORMS_PAGE} (the developer key's id).")
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise LtiError(f"The launch's authorized party (azp) {azp!r} is not passback's client id {client_id} on "
                       f"platform {name}; check the client id on {PLATFORMS_PAGE}.")
    if azp is None and len(audiences) > 1:
        raise LtiError(f"The launch names several audiences but no authorized party (azp); platform {name} must "
                       "say which one the launch is for.")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise LtiError("The launch's nonce is missing or is not the one passback sent for this login (a launch "
                       "answered for another login, or tampered with); start the launch again from the course.")
    now = time.time()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise LtiError(f"The launch from platform {name} has no expiry time (exp); it cannot be accepted.")
    if exp + LEEWAY_SECONDS <= now:
        raise LtiError(f"The launch expired {int(now - exp)} seconds ago; start it again from the course (and check "
                       "that the clocks of passback's server and the LMS are right).")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise LtiError(f"The launch from platform {name} has no issue time (iat); it cannot be accepted.")
    if iat - LEEWAY_SECONDS > now:
        raise LtiError(f"The launch was issued {int(iat - now)} seconds in the future; check the clock of "
                       "passback's server (and of the LMS).")
    deployment_id = claims.get(LTI + "deployment_id")
    if not isinstance(deployment_id, str) or deployment_id not in platform["deployment_ids"]:
        raise LtiError(_unregistered_deployment(str(deployment_id), platform))
    message_type = claims.get(LTI + "message_type")
    if message_type != "LtiResourceLinkRequest":
        raise LtiError(f"The launch is a {message_type!r} message; passback answers LtiResourceLinkRequest only. "
                       "Check the developer key's placement: course_navigation with message type "
                       "LtiResourceLinkRequest.")
    if claims.get(LTI + "version") != "1.3.0":
        raise LtiError(f"The launch says LTI version {claims.get(LTI + 'version')!r}; passback speaks LTI 1.3.0. "
                       "Check that the LMS's registration is an LTI 1.3 developer key.")


def canonical_roles(uris: Any) -> tuple[str, ...]:
    """The roles passback knows among a roles claim's URIs, highest first.

    A TA comes from Canvas with both ``membership/Instructor#TeachingAssistant`` and its
    principal role ``membership#Instructor`` (LIS sends a sub-role with its principal role),
    so when the TA sub-role is there the principal role does not make the user an Instructor.
    """
    if not isinstance(uris, list):
        return ()
    given = {uri for uri in uris if isinstance(uri, str)}
    found = {ROLE_OF_URI[uri] for uri in given if uri in ROLE_OF_URI}
    if TEACHING_ASSISTANT_URI in given:
        found.discard("Instructor")
    return tuple(role for role in ROLES_HIGHEST_FIRST if role in found)


def _custom(claims: dict[str, Any], name: str) -> str | None:
    """A custom field's value; one Canvas left unsubstituted (``$Canvas...``) counts as absent."""
    custom = claims.get(LTI + "custom")
    value = custom.get(name) if isinstance(custom, dict) else None
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return None if not text or text.startswith("$") else text


def _launch(claims: dict[str, Any], platform: dict[str, Any], state: lti_store.LaunchState) -> Launch:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise LtiError(f"The launch from platform {platform['name']} names no user (sub); set the developer key's "
                       "privacy level so the user is sent, and launch signed in.")
    roles = canonical_roles(claims.get(LTI + "roles"))
    if not roles:
        raise LtiError("The launch's user is not an instructor, teaching assistant, administrator or learner in the "
                       "course (roles: " + ", ".join(map(str, claims.get(LTI + "roles") or [])) + "), so passback "
                       "cannot tell what they may do; enroll them with one of those roles in the course.")
    context = claims.get(LTI + "context")
    context = context if isinstance(context, dict) else {}
    course_id = _custom(claims, "canvas_course_id") or (str(context["id"]) if context.get("id") else None)
    if not course_id:
        raise LtiError("The launch names no course; passback is opened from a course's navigation. Check that the "
                       "developer key's placement is course_navigation and its custom fields include "
                       "canvas_course_id=$Canvas.course.id.")
    target = claims.get(LTI + "target_link_uri")
    if isinstance(target, str) and target and target != state.target_link_uri:
        raise LtiError(f"The launch's target_link_uri {target} is not the one its login named "
                       f"({state.target_link_uri}); start the launch again from the course.")
    given, family = claims.get("given_name"), claims.get("family_name")
    login = _custom(claims, "canvas_user_login_id") or subject
    name = claims.get("name") or " ".join(str(p) for p in (given, family) if p) or login
    email = claims.get("email")
    ags = claims.get(AGS_ENDPOINT)
    ags = ags if isinstance(ags, dict) else {}
    scopes = ags.get("scope")
    title = context.get("title")
    return Launch(
        platform_id=platform["id"], issuer=platform["issuer"], subject=subject, name=str(name),
        email=email if isinstance(email, str) and email else None, login=login, roles=roles, role=roles[0],
        course_id=course_id, context_title=str(title) if title else None,
        deployment_id=str(claims[LTI + "deployment_id"]), source_connection_id=platform["source_connection_id"],
        target_link_uri=state.target_link_uri,
        lineitems_url=ags["lineitems"] if isinstance(ags.get("lineitems"), str) else None,
        ags_scopes=tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
        source_user_id=_custom(claims, "canvas_user_id") or _custom(claims, "user_id"),
    )


async def complete_launch(store: Store, settings: Settings, *, id_token: str, state: str,
                          transport: httpx.AsyncBaseTransport | None = None) -> Launch:
    """Verify the platform's authentication response (the posted ``id_token`` and ``state``): the launch, or LtiError.

    The state is used up first, whatever follows: a launch that fails is started again
    from the course, and a replayed one never gets as far as its token.
    """
    if not state or not id_token:
        raise LtiError("The launch is missing its id_token or state; it must be the form the LMS posts to "
                       "passback's /lti/launch. Start it again from the course.")
    claim, launch_state = lti_store.claim_launch_state(store, state)
    if claim == "unknown":
        raise LtiError("The launch's state is not one passback started (or it was forgotten after expiring); "
                       "start the launch again from the course.")
    if claim == "used":
        raise LtiError("This launch was already used (a launch is accepted once: a reloaded or replayed launch "
                       "page is refused); start it again from the course.")
    if claim == "expired":
        raise LtiError(f"The launch took longer than {int(STATE_TTL.total_seconds() // 60)} minutes between the "
                       "LMS and passback; start it again from the course.")
    assert launch_state is not None
    platform = lti_store.get_platform(store, launch_state.platform_id)
    if platform is None:
        raise LtiError(f"The platform this launch was started for was removed; register it again on {PLATFORMS_PAGE}.")
    header = _header(id_token)
    if header.get("alg") != ALGORITHM:
        raise LtiError(f"The launch is signed with {header.get('alg')!r}; LTI 1.3 launches are signed with "
                       f"{ALGORITHM} and passback accepts nothing else.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise LtiError(f"The launch's token names no signing key (kid); platform {platform['name']} must say "
                       "which of its keys signed it.")
    key = await _platform_key(platform, kid, transport, settings.http_timeout)
    try:
        token = jwt.decode(id_token, key, algorithms=[ALGORITHM])
    except BadSignatureError as exc:
        raise LtiError(f"The launch's signature does not verify with platform {platform['name']}'s key {kid}: it was "
                       "not signed by that platform, or it was changed on the way. Start it again from the "
                       "course; if it keeps failing, check the platform's JWKS URL.") from exc
    except (JoseError, ValueError, TypeError) as exc:
        raise LtiError(f"The launch's id_token could not be read ({exc}); start it again from the course.") from exc
    claims = dict(token.claims)
    _check_claims(claims, platform, launch_state.nonce)
    return _launch(claims, platform, launch_state)
