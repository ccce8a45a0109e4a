"""The LTI launch through passback's own routes, as the browser carries it, without a browser.

The admin registers the platform on the LTI page (the developer key JSON pasted into
the emulated Canvas); then a launch's forms are followed by hand: Canvas's launch page,
passback's login initiation, Canvas's authorization endpoint, passback's launch.
"""

from __future__ import annotations

import html
import json
import re
import time

import httpx

from tests.web.conftest import SOURCE, Web, csrf_of


def _form(page: str) -> tuple[str, dict[str, str]]:
    action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page).group(1))
    fields = {html.unescape(k): html.unescape(v)
              for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}
    return action, fields


def _register(web: Web) -> None:
    admin = web.client("admin")
    page = admin.get("/admin/lti")
    developer_key = json.loads(html.unescape(re.search(r'<pre id="developer-key"[^>]*>(.*?)</pre>', page.text,
                                                       re.S).group(1)))
    assert developer_key["extensions"][0]["settings"]["placements"][0]["placement"] == "course_navigation"
    key = httpx.post(f"{web.district.canvas.url}/_emulator/lti/developer_keys", json=developer_key).json()
    answer = admin.post("/admin/lti", data={
        "csrf_token": csrf_of(page.text), "name": "Canvas", "issuer": key["issuer"], "client_id": key["client_id"],
        "deployment_ids": key["deployment_id"], "auth_login_url": key["auth_login_url"],
        "auth_token_url": key["auth_token_url"], "jwks_url": key["jwks_url"], "source": SOURCE})
    assert answer.status_code == 303
    web.client_id = key["client_id"]  # type: ignore[attr-defined]


def _launch(web: Web, login: str, course: str) -> tuple[httpx.Client, httpx.Response, dict[str, str]]:
    """Follow the launch to passback's /lti/launch; returns the browser, passback's answer and what was posted."""
    browser = httpx.Client(timeout=30)
    page = browser.get(f"{web.district.canvas.url}/courses/{course}/external_tools/{web.client_id}",  # type: ignore
                       params={"as_user": login})
    action, fields = _form(page.text)
    assert action == f"{web.url}/lti/login"
    to_platform = browser.post(action, data=fields)
    assert to_platform.status_code == 302
    authorized = browser.get(to_platform.headers["location"])
    action, fields = _form(authorized.text)
    assert action == f"{web.url}/lti/launch" and "id_token" in fields
    return browser, browser.post(action, data=fields), fields


def test_a_teacher_launch_becomes_a_session_on_their_course(web: Web) -> None:
    _register(web)
    course = web.courses[0]
    browser, answer, _ = _launch(web, "teacher1", course)
    assert answer.status_code == 303 and answer.headers["location"] == f"/courses/{SOURCE}/{course}"
    assert "httponly" in answer.headers["set-cookie"].lower()
    landed = browser.get(f"{web.url}{answer.headers['location']}")
    assert landed.status_code == 200 and "Sync now" in landed.text
    me = browser.get(f"{web.url}/api/v1/me").json()
    assert me["username"].startswith("lti:teacher1") and not me["is_admin"]
    assert browser.get(f"{web.url}/courses/{SOURCE}/{web.courses[1]}").status_code == 403  # not their course


def test_a_replayed_launch_is_refused(web: Web) -> None:
    _register(web)
    course = web.courses[0]
    _, answer, posted = _launch(web, "teacher1", course)
    assert answer.status_code == 303
    replay = httpx.post(f"{web.url}/lti/launch", data=posted)
    assert replay.status_code == 400 and "already used" in replay.text


def test_a_student_sees_only_their_own_grades_and_can_send_their_score(web: Web) -> None:
    _register(web)
    course = web.courses[0]
    canvas = web.district.canvas.state
    students = [u for u in canvas["users"].values()
                if any(e["user_id"] == u["id"] and e["type"] == "StudentEnrollment" and str(e["course_id"]) == course
                       for e in canvas["enrollments"].values())]
    me, others = students[0], students[1:]
    browser, answer, _ = _launch(web, me["login_id"], course)
    assert answer.status_code == 303 and answer.headers["location"] == f"/my/{SOURCE}/{course}"
    page = browser.get(f"{web.url}{answer.headers['location']}")
    assert page.status_code == 200 and "My grades" in page.text
    for other in others:  # nothing of any other student: neither name nor id
        assert other["name"] not in page.text and other["sortable_name"] not in page.text
    assert browser.get(f"{web.url}/courses/{SOURCE}/{course}").status_code == 403  # not Grade Sync
    assert browser.get(f"{web.url}/api/v1/courses/{SOURCE}/{course}/students").status_code == 403
    assert browser.post(f"{web.url}/my/{SOURCE}/{course}/sync").status_code == 403  # no CSRF token
    sent = browser.post(f"{web.url}/my/{SOURCE}/{course}/sync", data={"csrf_token": csrf_of(page.text)})
    assert sent.status_code == 303
    deadline = time.monotonic() + 30
    while "in progress" in browser.get(f"{web.url}/my/{SOURCE}/{course}/progress").text:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    ps = web.district.powerschool.state
    dcid = next(int(d) for d, s in ps["students"].items() if str(s["local_id"]) == me["sis_user_id"])
    assert ps["scores"] and {s["studentsdcid"] for s in ps["scores"].values()} == {dcid}  # only this student's
    assert "in sync" in browser.get(f"{web.url}/my/{SOURCE}/{course}").text


def test_passback_serves_its_keys_and_its_developer_key(web: Web) -> None:
    keys = httpx.get(f"{web.url}/lti/jwks").json()["keys"]
    assert keys and all(k["kty"] == "RSA" and "d" not in k and k["kid"] for k in keys)  # public parts only
    config = httpx.get(f"{web.url}/lti/config.json").json()
    assert config["oidc_initiation_url"] == f"{web.url}/lti/login"
    assert config["target_link_uri"] == f"{web.url}/lti/launch"
    assert config["public_jwk_url"] == f"{web.url}/lti/jwks"
