"""The LTI 1.3 launch, both sides, over loopback: the Canvas emulator as the platform, passback as the tool.

The whole browser flow is walked with httpx, form by form: Canvas's course navigation
page posts the login initiation to passback (``begin_login``), passback sends the
browser to Canvas's authorization endpoint, whose page posts the signed id token back
(``complete_launch``). Then every way a launch must be refused, each with its reason:
tokens forged with the emulator's own key (or another), replays, expiries, strangers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from passback.emulators import canvas as canvas_emulator
from passback.emulators.canvas import empty_state
from passback.emulators.lti_platform import LtiPlatform
from passback.emulators.state import StateFile
from passback.services import lti
from passback.services.lti import Launch, LtiError
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.store.tables import lti_launch_states
from passback.vault import load_key
from tests.conftest import District

TOOL = "https://grades.sandbox.example"
LAUNCH_URL = f"{TOOL}/lti/launch"
LTI_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/"


class FormReader(HTMLParser):
    """The first form of a page: where it posts and its fields (what a browser would send)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action, self.method, self._in_form = values.get("action", ""), values.get("method", "get"), True
        elif tag == "input" and self._in_form and "name" in values:
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def read_form(page: httpx.Response) -> FormReader:
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    reader = FormReader()
    reader.feed(page.text)
    assert reader.action, page.text
    assert reader.method == "post"
    assert "<button" in page.text  # the form can be sent without script
    return reader


@dataclass
class Tool:
    """passback registered with the emulated Canvas, and Canvas registered in passback's store."""

    district: District
    store: Store
    settings: Settings
    platform: dict[str, Any]
    client_id: str
    deployment_id: str

    @property
    def canvas(self) -> str:
        return self.district.canvas.url

    @property
    def emulated(self) -> LtiPlatform:
        return self.district.canvas.app.state.lti_platform

    def course(self, index: int = 0) -> dict[str, Any]:
        return sorted(self.district.canvas.state["courses"].values(), key=lambda c: c["id"])[index]

    def launch_page(self, login: str, course_id: int | None = None) -> httpx.Response:
        course = self.course()["id"] if course_id is None else course_id
        return httpx.get(f"{self.canvas}/courses/{course}/external_tools/{self.client_id}", params={"as_user": login})

    def login(self, login: str, course_id: int | None = None) -> str:
        """Steps 1 and 2: the course's launch page posts to passback, which answers the authorization URL."""
        initiation = read_form(self.launch_page(login, course_id))
        assert initiation.action == f"{TOOL}/lti/login"
        return lti.begin_login(self.store, self.settings, initiation.fields, launch_url=LAUNCH_URL)

    def authorize(self, auth_url: str) -> dict[str, str]:
        """Step 3: the browser at Canvas's authorization endpoint; the fields its page posts to passback."""
        assert auth_url.startswith(self.platform["auth_login_url"] + "?")
        answer = read_form(httpx.get(auth_url))
        assert answer.action == LAUNCH_URL
        return answer.fields

    async def complete(self, fields: dict[str, str]) -> Launch:
        return await lti.complete_launch(self.store, self.settings, id_token=fields["id_token"], state=fields["state"])

    async def walk(self, login: str, course_id: int | None = None) -> Launch:
        return await self.complete(self.authorize(self.login(login, course_id)))

    def genuine(self, login: str = "teacher1") -> tuple[dict[str, Any], str]:
        """A real launch's claims and its (unused) state, for a test to change and sign again."""
        fields = self.authorize(self.login(login))
        claims = dict(jwt.decode(fields["id_token"], self.emulated.key, algorithms=["RS256"]).claims)
        return claims, fields["state"]


@pytest.fixture(autouse=True)
def fresh_jwks_cache() -> Iterator[None]:
    lti.clear_jwks_cache()
    yield
    lti.clear_jwks_cache()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def tool(district: District, store: Store, settings: Settings) -> Tool:
    answer = httpx.post(f"{district.canvas.url}/_emulator/lti/developer_keys", json=lti.developer_key_json(TOOL))
    assert answer.status_code == 200, answer.text
    key = answer.json()
    assert key["client_id"] == "10000000000001"
    assert key["deployment_id"].startswith("1:") and len(key["deployment_id"]) == 42
    connection = save_connection(store, load_key(settings), name="canvas", kind="canvas", base_url=district.canvas.url,
                                 credentials={"token": district.credentials.canvas_token})
    platform = lti.register_platform(
        store, name="Canvas", issuer=key["issuer"], client_id=key["client_id"], auth_login_url=key["auth_login_url"],
        auth_token_url=key["auth_token_url"], jwks_url=key["jwks_url"], deployment_ids=[key["deployment_id"]],
        source_connection_id=connection.id)
    return Tool(district, store, settings, platform, key["client_id"], key["deployment_id"])


def student_login(tool: Tool) -> str:
    course_id = tool.course()["id"]
    state = tool.district.canvas.state
    enrollment = next(e for e in sorted(state["enrollments"].values(), key=lambda e: e["id"])
                      if e["course_id"] == course_id and e["type"] == "StudentEnrollment")
    return str(state["users"][str(enrollment["user_id"])]["login_id"])


# --- the flow --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_teacher_launches_as_instructor_of_the_course(tool: Tool) -> None:
    course = tool.course()
    launch = await tool.walk("teacher1")
    assert launch.role == "Instructor" and launch.roles == ("Instructor",)
    assert launch.course_id == str(course["id"])
    assert launch.context_title == course["name"]
    assert launch.login == "teacher1" and launch.name == "Teacher 1"
    assert launch.email == "teacher1@sandbox-district.example"
    assert launch.issuer == "https://canvas.instructure.com" and launch.platform_id == tool.platform["id"]
    assert launch.deployment_id == tool.deployment_id
    assert launch.source_connection_id == tool.platform["source_connection_id"]
    assert launch.subject and launch.subject != "teacher1"  # Canvas's opaque LTI user id
    assert launch.target_link_uri == LAUNCH_URL
    assert launch.lineitems_url == f"{tool.canvas}/api/lti/courses/{course['id']}/line_items"
    assert set(launch.ags_scopes) == set(lti.AGS_SCOPES)
    requests = tool.district.canvas.control("stats")["requests"]
    assert requests["GET /courses/{course_id}/external_tools/{client_id}"] == 1
    assert requests["GET /api/lti/authorize_redirect"] == 1
    assert requests["GET /api/lti/security/jwks"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize(("who", "role"), [("teacher1", "Instructor"), ("ta1", "TeachingAssistant"),
                                           ("admin", "Administrator"), ("student", "Learner")])
async def test_each_user_launches_with_their_role(tool: Tool, who: str, role: str) -> None:
    login = student_login(tool) if who == "student" else who
    launch = await tool.walk(login)
    assert launch.role == role
    assert launch.login == login
    assert launch.course_id == str(tool.course()["id"])


@pytest.mark.anyio
async def test_the_second_teacher_launches_in_the_second_course_and_not_in_the_first(tool: Tool) -> None:
    second = tool.course(1)
    launch = await tool.walk("teacher2", second["id"])
    assert (launch.role, launch.course_id) == ("Instructor", str(second["id"]))
    refused = tool.launch_page("teacher2")
    assert refused.status_code == 401 and "not enrolled" in refused.text
    assert tool.launch_page("nobody").status_code == 401


def test_the_id_token_carries_canvas_claims(tool: Tool) -> None:
    claims, _ = tool.genuine("ta1")
    course = tool.course()
    assert claims["aud"] == claims["azp"] == tool.client_id
    assert claims["exp"] - claims["iat"] == 3600
    assert claims[LTI_CLAIM + "message_type"] == "LtiResourceLinkRequest"
    assert claims[LTI_CLAIM + "version"] == "1.3.0"
    assert claims[LTI_CLAIM + "target_link_uri"] == LAUNCH_URL
    assert set(claims[LTI_CLAIM + "roles"]) >= {LIS + "membership/Instructor#TeachingAssistant",
                                                 LIS + "membership#Instructor"}
    assert claims[LTI_CLAIM + "context"]["title"] == course["name"]
    assert claims[LTI_CLAIM + "custom"] == {"canvas_course_id": str(course["id"]), "canvas_user_login_id": "ta1",
                                            "canvas_user_id": str(tool.emulated.user_by_login("ta1")["id"])}
    assert claims[LTI_CLAIM + "launch_presentation"]["document_target"] == "window"  # windowTarget _blank
    assert claims[LTI_CLAIM + "tool_platform"]["product_family_code"] == "canvas"
    assert claims[LTI_CLAIM + "resource_link"]["id"] == claims[LTI_CLAIM + "context"]["id"]
    assert claims["name"] == "Assistant 1" and claims["given_name"] == "Assistant"
    admin, _ = tool.genuine("admin")
    assert set(admin[LTI_CLAIM + "roles"]) >= {LIS + "institution/person#Administrator",
                                               LIS + "system/person#Administrator"}


@pytest.mark.anyio
async def test_a_rotated_platform_key_is_fetched_again(tool: Tool) -> None:
    await tool.walk("teacher1")  # the platform's keys are cached now
    rotated = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True, auto_kid=True)
    tool.emulated.lti["platform_key"] = rotated.as_dict(private=True)
    tool.emulated.key = rotated
    launch = await tool.walk("teacher1")
    assert launch.role == "Instructor"
    assert tool.district.canvas.control("stats")["requests"]["GET /api/lti/security/jwks"] == 2


def test_the_platform_key_survives_a_restart(tmp_path: Path) -> None:
    state_path = tmp_path / "canvas.json"
    first = canvas_emulator.create_app(empty_state(), state_path=state_path)
    first.state.lti_platform.register(lti.developer_key_json(TOOL))
    StateFile(state_path).save(first.state.emulator.state)
    again = canvas_emulator.create_app(state_path=state_path)
    assert again.state.lti_platform.kid == first.state.lti_platform.kid
    assert list(again.state.lti_platform.lti["developer_keys"]) == ["10000000000001"]


# --- the emulated Canvas refuses what Canvas refuses ----------------------------------------------


def test_the_authorization_endpoint_checks_the_request(tool: Tool) -> None:
    auth_url = tool.login("teacher1")
    base, query = auth_url.split("?", 1)
    params = dict(parse_qsl(query))

    bad_redirect = httpx.get(base, params={**params, "redirect_uri": "https://evil.example/launch"})
    assert bad_redirect.status_code == 400 and "redirect_uri" in bad_redirect.text
    unknown_client = httpx.get(base, params={**params, "client_id": "42"})
    assert unknown_client.status_code == 400

    def error_of(**changes: str | None) -> dict[str, str]:
        sent = {k: v for k, v in {**params, **changes}.items() if v is not None}
        fields = read_form(httpx.get(base, params=sent)).fields
        assert "id_token" not in fields and fields["state"] == params["state"]
        return fields

    assert error_of(scope="profile")["error"] == "invalid_scope"
    assert error_of(response_type="code")["error"] == "unsupported_response_type"
    assert error_of(response_mode="query")["error"] == "invalid_request_object"
    assert error_of(prompt="login")["error"] == "invalid_request_object"
    assert "nonce" in error_of(nonce=None)["error_description"]
    assert error_of(lti_message_hint="forged")["error_description"] == "Invalid lti_message_hint"
    assert error_of(login_hint="999999")["error"] == "login_required"
    posted = read_form(httpx.post(base, data=params)).fields  # the tool may POST the request as well
    assert posted["id_token"] and posted["state"] == params["state"]


def test_a_developer_key_without_its_urls_is_refused(tool: Tool) -> None:
    answer = httpx.post(f"{tool.canvas}/_emulator/lti/developer_keys", json={"title": "x"})
    assert answer.status_code == 400 and "oidc_initiation_url" in answer.json()["message"]
    keys = httpx.get(f"{tool.canvas}/_emulator/lti/developer_keys").json()
    assert [k["client_id"] for k in keys] == [tool.client_id]
    assert keys[0]["course_navigation"]["placement"] == "course_navigation"


# --- passback refuses forged, replayed and stale launches -----------------------------------------


async def refused(tool: Tool, claims: dict[str, Any], state: str, *, key: Any = None, kid: str | None = None,
                  header: dict[str, Any] | None = None) -> str:
    token = jwt.encode(header, claims, key) if header else tool.emulated.sign(claims, key=key, kid=kid)
    with pytest.raises(LtiError) as caught:
        await lti.complete_launch(tool.store, tool.settings, id_token=token, state=state)
    return str(caught.value)


Change = Callable[[dict[str, Any]], None]


def _set(name: str, value: Any) -> Change:
    return lambda claims: claims.__setitem__(name, value)


CLAIM_CASES: dict[str, tuple[Change, str]] = {
    "wrong aud": (_set("aud", "10000000000099"), "not to passback's client id 10000000000001"),
    "aud list without azp": (lambda c: (c.__setitem__("aud", ["10000000000001", "other"]), c.pop("azp")),
                             "no authorized party"),
    "wrong azp": (_set("azp", "other"), "authorized party (azp) 'other'"),
    "wrong iss": (_set("iss", "https://canvas.evil.example"), "issuer 'https://canvas.evil.example'"),
    "missing nonce": (lambda c: c.pop("nonce"), "nonce is missing"),
    "mismatched nonce": (_set("nonce", "another-login's-nonce"), "nonce is missing or is not the one"),
    "expired token": (lambda c: c.update(iat=int(time.time()) - 7300, exp=int(time.time()) - 3700), "expired"),
    "issued in the future": (_set("iat", int(time.time()) + 600), "in the future"),
    "unregistered deployment": (_set(LTI_CLAIM + "deployment_id", "3:abc"),
                                ("deployment id 3:abc is not registered for platform Canvas; add it on the LTI "
                                 "platforms page")),
    "unknown role": (_set(LTI_CLAIM + "roles", [LIS + "membership#Mentor", LIS + "system/person#User"]),
                     "not an instructor, teaching assistant, administrator or learner"),
    "deep linking": (_set(LTI_CLAIM + "message_type", "LtiDeepLinkingRequest"), "LtiResourceLinkRequest only"),
    "LTI 1.1": (_set(LTI_CLAIM + "version", "1.1"), "LTI 1.3.0"),
    "no user": (lambda c: c.pop("sub"), "names no user"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(CLAIM_CASES))
async def test_a_launch_with_a_wrong_claim_is_refused(tool: Tool, case: str) -> None:
    change, reason = CLAIM_CASES[case]
    claims, state = tool.genuine()
    change(claims)
    assert reason in await refused(tool, claims, state)


@pytest.mark.anyio
async def test_a_token_signed_by_another_key_is_refused(tool: Tool) -> None:
    claims, state = tool.genuine()
    stranger = RSAKey.generate_key(2048, private=True)
    message = await refused(tool, claims, state, key=stranger)  # the platform's kid, someone else's signature
    assert "signature does not verify with platform Canvas's key" in message


@pytest.mark.anyio
async def test_a_token_changed_on_the_way_is_refused(tool: Tool) -> None:
    fields = tool.authorize(tool.login(student_login(tool)))
    header, _payload, signature = fields["id_token"].split(".")
    claims, _state = tool.genuine()  # another login's claims: a learner promoted to instructor
    genuine_payload = tool.emulated.sign(claims).split(".")[1]
    with pytest.raises(LtiError, match="signature does not verify"):
        await lti.complete_launch(tool.store, tool.settings, id_token=f"{header}.{genuine_payload}.{signature}",
                                  state=fields["state"])


@pytest.mark.anyio
async def test_an_unknown_signing_key_is_refused_after_one_fresh_look(tool: Tool) -> None:
    claims, state = tool.genuine()
    stranger = RSAKey.generate_key(2048, private=True, auto_kid=True)
    await tool.walk("teacher1")  # cached
    message = await refused(tool, claims, state, key=stranger, kid="kid-nobody-published")
    assert "signed with key kid-nobody-published, which is not among platform Canvas's keys" in message
    assert tool.district.canvas.control("stats")["requests"]["GET /api/lti/security/jwks"] == 2  # looked once more


@pytest.mark.anyio
async def test_only_rs256_is_accepted(tool: Tool) -> None:
    claims, state = tool.genuine()
    secret = OctKey.generate_key(256)
    message = await refused(tool, claims, state, key=secret, header={"alg": "HS256", "kid": tool.emulated.kid})
    assert "signed with 'HS256'" in message


@pytest.mark.anyio
async def test_a_replayed_launch_is_refused(tool: Tool) -> None:
    fields = tool.authorize(tool.login("teacher1"))
    assert (await tool.complete(fields)).role == "Instructor"
    with pytest.raises(LtiError, match="already used"):
        await tool.complete(fields)


@pytest.mark.anyio
async def test_an_expired_state_is_refused(tool: Tool) -> None:
    fields = tool.authorize(tool.login("teacher1"))
    with tool.store.transaction() as db:
        db.execute(lti_launch_states.update().where(lti_launch_states.c.state == fields["state"])
                   .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with pytest.raises(LtiError, match="longer than 10 minutes"):
        await tool.complete(fields)


@pytest.mark.anyio
async def test_an_unknown_state_is_refused(tool: Tool) -> None:
    fields = tool.authorize(tool.login("teacher1"))
    with pytest.raises(LtiError, match="not one passback started"):
        await tool.complete({**fields, "state": "made-up"})
    with pytest.raises(LtiError, match="not a signed JWT"):
        await tool.complete({**fields, "id_token": "not-a-token"})


def test_a_login_from_a_stranger_is_refused(tool: Tool) -> None:
    fields = read_form(tool.launch_page("teacher1")).fields

    def refusal(**changes: str) -> str:
        with pytest.raises(LtiError) as caught:
            lti.begin_login(tool.store, tool.settings, {**fields, **changes}, launch_url=LAUNCH_URL)
        return str(caught.value)

    assert "No LTI platform with issuer https://moodle.example" in refusal(iss="https://moodle.example")
    assert "client id 42 is registered" in refusal(client_id="42")
    assert "deployment id 9:zzz is not registered for platform Canvas" in refusal(lti_deployment_id="9:zzz")
    assert "target_link_uri https://evil.example/steal" in refusal(target_link_uri="https://evil.example/steal")
    assert "missing login_hint" in refusal(login_hint="")


def test_a_login_without_client_id_is_refused_when_the_issuer_is_ambiguous(tool: Tool) -> None:
    fields = read_form(tool.launch_page("teacher1")).fields
    without = {k: v for k, v in fields.items() if k != "client_id"}
    assert urlsplit(lti.begin_login(tool.store, tool.settings, without, launch_url=LAUNCH_URL)).path.endswith(
        "/api/lti/authorize_redirect")  # one registration for the issuer: found without the client id
    lti.register_platform(tool.store, name="Canvas (test)", issuer=tool.platform["issuer"], client_id="10000000000777",
                          auth_login_url=tool.platform["auth_login_url"], auth_token_url=tool.platform["auth_token_url"],
                          jwks_url=tool.platform["jwks_url"], deployment_ids=["1:x"],
                          source_connection_id=tool.platform["source_connection_id"])
    with pytest.raises(LtiError, match="Several LTI platforms have the issuer"):
        lti.begin_login(tool.store, tool.settings, without, launch_url=LAUNCH_URL)
    assert lti.begin_login(tool.store, tool.settings, fields, launch_url=LAUNCH_URL)  # the client id tells them apart
