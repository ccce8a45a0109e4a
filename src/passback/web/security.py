"""Sessions and CSRF: what a browser carries, and the check every state-changing request passes.

Sessions live in a signed cookie (Starlette's SessionMiddleware, itsdangerous): HttpOnly,
SameSite=Lax, Secure when served over HTTPS. The signing secret is derived from the key
that encrypts credentials, so a district that sets nothing still has a secret that
survives a restart and is never written anywhere new.

CSRF: a synchronizer token kept in the session; a form sends it as ``csrf_token``, htmx
and scripts as the ``X-CSRF-Token`` header. Requests authenticated by an API token carry
no cookie a third-party page could ride on, so they need no CSRF token; the LTI login
and launch come from the platform's pages and are protected by their state and nonce, and Canvas Live
Events (``/events/canvas``) and courseware events (``/events/courseware``) come from those systems' servers,
authenticated by their signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request

from passback.errors import PassbackError
from passback.settings import Settings
from passback.vault import load_key

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_EXEMPT = frozenset({"/lti/login", "/lti/launch", "/events/canvas", "/events/courseware"})
CSRF_FIELD, CSRF_HEADER = "csrf_token", "x-csrf-token"
SESSION_COOKIE = "passback_session"


class CsrfRefused(PassbackError):
    """A state-changing request without the page's CSRF token."""


def session_secret(settings: Settings) -> str:
    """The cookie-signing secret: ``PASSBACK_SESSION_SECRET``, else derived from the credentials key."""
    if settings.session_secret:
        return settings.session_secret
    return hmac.new(load_key(settings), b"passback session cookies", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Refuse an unsafe request from a browser session that does not carry the session's token."""
    if request.method in SAFE_METHODS or request.url.path in CSRF_EXEMPT:
        return
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    expected = request.session.get("csrf")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        given = (await request.form()).get(CSRF_FIELD)
    if not expected or not isinstance(given, str) or not hmac.compare_digest(expected, given):
        raise CsrfRefused("This form has expired or did not come from passback (its CSRF token is missing or "
                          "wrong). Reload the page and try again.")
