"""Authorization, generated from the app's route table: a route added later is checked without a new test.

For every route and method: with no session it is refused (pages send the person to sign
in, the API answers 401); teacher A on teacher B's course is refused; a teacher on an
admin route is refused; the admin is let through. Every state-changing request without
the session's CSRF token is refused, whoever sends it. The only routes open to anyone are
named here, so making a route public is a visible decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from tests.web.conftest import SOURCE, Web, csrf_of

PUBLIC = {  # open to anyone, each for its reason
    ("GET", "/"): "redirects to sign-in or to the course list",
    ("GET", "/login"): "the sign-in form",
    ("POST", "/login"): "signing in (its form carries the CSRF token like every other)",
    ("POST", "/logout"): "signing out",
    ("GET", "/lti/login"): "OIDC login initiation from the LMS (state and nonce protect it)",
    ("POST", "/lti/login"): "OIDC login initiation from the LMS",
    ("POST", "/lti/launch"): "the LTI launch (the id token is verified against the platform's keys)",
    ("GET", "/lti/jwks"): "passback's public keys",
    ("GET", "/lti/config.json"): "the developer key JSON (no secret in it)",
    ("POST", "/events/canvas"): "Canvas Live Events (each verified against the publisher's keys; unsigned refused)",
    ("POST", "/events/courseware"): "courseware events (each verified by HMAC with the connection's events_secret)",
    ("GET", "/openapi.json"): "the API's description",
    ("GET", "/api/docs"): "the API's documentation page",
    ("GET", "/docs/oauth2-redirect"): "part of the documentation page",
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(web: Web) -> list[tuple[str, str]]:
    found = []
    for context in iter_route_contexts(web.app.app.routes):  # the included routers' routes, with their prefixes
        if isinstance(context.route, Mount):
            continue  # /static: the shipped CSS and htmx
        assert context.methods, context
        for method in sorted(context.methods):
            if method != "HEAD":
                found.append((method, context.path))
    return found


def _fill(path: str, course: str) -> str:
    values = {"source": SOURCE, "course_id": course, "run_id": "00000000-0000-0000-0000-000000000000",
              "platform_id": "1", "user_id": "3", "name": SOURCE, "student_id": "1"}
    filled = re.sub(r"{(\w+)(:[^}]*)?}", lambda m: values[m.group(1)], path)
    assert "{" not in filled, f"add a value for the path parameter of {path}"
    return filled


def _is_admin_route(path: str) -> bool:
    return path.startswith("/admin") or path.startswith("/api/v1/audit")


def _is_learner_route(path: str) -> bool:
    """A student's own grades: only for the student who launched from that course (tests/web/test_lti_launch_routes)."""
    return path.startswith("/my/")


def _is_course_route(path: str) -> bool:
    return "{course_id}" in path


def _csrf_headers(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRF-Token": csrf_of(client.get("/login").text if "passback_session" not in client.cookies
                                    else client.get("/account").text)}


@pytest.fixture
def people(web: Web) -> Iterator[dict[str, httpx.Client]]:
    clients = {"anonymous": web.client(), "teacher": web.client("teacher-a"), "admin": web.client("admin")}
    yield clients
    for client in clients.values():
        client.close()


def _call(client: httpx.Client, method: str, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.request(method, url, headers=headers or {}, data={} if method in UNSAFE else None)


def test_every_route_is_known_and_checked(web: Web, people: dict[str, httpx.Client]) -> None:
    routes = _routes(web)
    assert len(routes) > 40, "the route table was not read"
    stale = set(PUBLIC) - set(routes)
    assert not stale, f"routes listed as public that do not exist: {stale}"
    other_course = web.courses[1]  # teacher B's
    anonymous, teacher, admin = people["anonymous"], people["teacher"], people["admin"]
    tokens = {name: _csrf_headers(client) for name, client in people.items()}
    checked = 0
    for method, path in routes:
        url = _fill(path, other_course)
        if (method, path) in PUBLIC:
            continue
        # with no session (but with an anonymous session's CSRF token, so only the missing sign-in refuses)
        answer = _call(anonymous, method, url, tokens["anonymous"])
        if path.startswith("/api/"):
            assert answer.status_code == 401, (method, path, answer.status_code)
        else:
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), \
                (method, path, answer.status_code)
        # teacher A on teacher B's course, or on an admin route
        answer = _call(teacher, method, url, tokens["teacher"])
        if _is_course_route(path) or _is_admin_route(path) or _is_learner_route(path):
            assert answer.status_code == 403, (method, path, answer.status_code, answer.text[:200])
        else:
            assert answer.status_code not in (401, 403) and answer.status_code < 500, \
                (method, path, answer.status_code, answer.text[:200])
        # the admin sees and acts on everything (a bad or missing field may still be refused as such), but a
        # student's own page, which is nobody else's
        answer = _call(admin, method, url, tokens["admin"])
        if _is_learner_route(path):
            assert answer.status_code == 403, (method, path, answer.status_code)
        else:
            assert answer.status_code not in (401, 403) and answer.status_code < 500, \
                (method, path, answer.status_code, answer.text[:300])
        checked += 1
    assert checked > 30


def test_state_changing_requests_without_the_csrf_token_are_refused(web: Web,
                                                                    people: dict[str, httpx.Client]) -> None:
    own_course = web.courses[0]  # teacher A's: only the missing token can refuse
    unsafe = [(m, p) for m, p in _routes(web)
              if m in UNSAFE
              and p not in ("/login", "/lti/login", "/lti/launch", "/events/canvas", "/events/courseware")]
    assert unsafe
    for method, path in unsafe:
        if _is_learner_route(path):
            continue  # a student's session: tests/web/test_lti_launch_routes refuses its forms without the token
        client = people["admin"] if _is_admin_route(path) else people["teacher"]
        url = _fill(path, own_course)
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            answer = _call(client, method, url, headers)
            assert answer.status_code == 403, (method, path, answer.status_code)
            assert "CSRF" in answer.text
    # and the same request with the token goes through (the refusal was the token's)
    page = people["teacher"].get(f"/courses/{SOURCE}/{own_course}")
    answer = people["teacher"].post(f"/courses/{SOURCE}/{own_course}/schedule",
                                    data={"mode": "manual", "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 303


def test_a_teacher_sees_only_their_courses_and_an_admin_sees_all(web: Web, people: dict[str, httpx.Client]) -> None:
    mine = people["teacher"].get("/api/v1/courses", headers={"accept": "application/json"}).json()
    assert [c["course_id"] for c in mine] == [web.courses[0]]
    everyone = people["admin"].get("/api/v1/courses").json()
    assert sorted(c["course_id"] for c in everyone) == web.courses


def test_api_tokens_for_scripts(web: Web, people: dict[str, httpx.Client]) -> None:
    page = people["teacher"].get("/account")
    shown = people["teacher"].post("/account/tokens", data={"name": "nightly script", "csrf_token": csrf_of(page.text)})
    token = re.search(r'<code id="token">([^<]+)</code>', shown.text).group(1)
    with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token}"}) as script:
        assert script.get("/api/v1/me").json()["username"] == "teacher-a"
        assert script.get(f"/api/v1/courses/{SOURCE}/{web.courses[1]}").status_code == 403
        # a script has no cookie to ride on, so it needs no CSRF token
        answer = script.put(f"/api/v1/courses/{SOURCE}/{web.courses[0]}/schedule", json={"mode": "nightly"})
        assert answer.status_code == 200 and answer.json()["mode"] == "nightly"
    with httpx.Client(base_url=web.url, headers={"Authorization": "Bearer pb_not-a-token"}) as forged:
        assert forged.get("/api/v1/me").status_code == 401


def test_session_cookie_is_signed_httponly_and_samesite(web: Web) -> None:
    client = web.client()
    page = client.get("/login")
    answer = client.post("/login", data={"username": "admin", "password": "correct horse battery staple",
                                         "csrf_token": csrf_of(page.text)})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # served over plain HTTP here; Secure when the public URL is https
    value = client.cookies["passback_session"]
    client.cookies.set("passback_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert client.get("/api/v1/me").status_code == 401  # a tampered cookie is no session
