"""passback as an LTI 1.3 tool, on its own and against a platform we did not write.

The registrations, the login initiation, passback's own keys and the role mapping on
both stores; the platform's keys fetched through a mock transport when a test is about
what a bad answer does. Then ``lti1p3platform`` (a third-party Python platform
implementation) produces the login initiation and the id token, its key set served by a
small HTTP server on loopback, and passback must accept it, and refuse it changed.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import MessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration
from lti1p3platform.request import Request as PlatformRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from passback.errors import Conflict, NotFound
from passback.services import lti
from passback.services.lti import LtiError
from passback.settings import Settings
from passback.store import lti as lti_store
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.store.tables import lti_launch_states, tool_keys
from passback.vault import decrypt, load_key
from tests.conftest import ServedApp

TOOL = "https://grades.example.org"
LAUNCH_URL = f"{TOOL}/lti/launch"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/"


@pytest.fixture(autouse=True)
def fresh_jwks_cache() -> Iterator[None]:
    lti.clear_jwks_cache()
    yield
    lti.clear_jwks_cache()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def connection_id(store: Store, settings: Settings) -> int:
    return save_connection(store, load_key(settings), name="canvas", kind="canvas", base_url="https://canvas.example",
                           credentials={"token": "t"}).id


def canvas_platform(store: Store, connection_id: int, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Canvas", "issuer": "https://canvas.instructure.com", "client_id": "10000000000001",
        "auth_login_url": "https://sso.canvaslms.com/api/lti/authorize_redirect",
        "auth_token_url": "https://sso.canvaslms.com/login/oauth2/token",
        "jwks_url": "https://sso.canvaslms.com/api/lti/security/jwks",
        "deployment_ids": ["1:8865aa05b4b79b64a91a86042e43af5ea8ae79eb"], "source_connection_id": connection_id,
    }
    return lti.register_platform(store, **{**values, **changes})


# --- the developer key -------------------------------------------------------------------------------


def test_the_developer_key_json_is_canvas_s_format() -> None:
    config = lti.developer_key_json("https://grades.example.org/", title="Grade Sync")
    assert config["oidc_initiation_url"] == "https://grades.example.org/lti/login"
    assert config["target_link_uri"] == LAUNCH_URL
    assert config["public_jwk_url"] == "https://grades.example.org/lti/jwks"
    assert {"https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
            "https://purl.imsglobal.org/spec/lti-ags/scope/score",
            "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"} <= set(config["scopes"])
    assert config["title"] == "Grade Sync" and config["description"]
    (extension,) = config["extensions"]
    assert extension["platform"] == "canvas.instructure.com" and extension["privacy_level"] == "public"
    assert extension["domain"] == "grades.example.org"
    (placement,) = extension["settings"]["placements"]
    assert placement == {"placement": "course_navigation", "message_type": "LtiResourceLinkRequest",
                         "target_link_uri": LAUNCH_URL, "text": "Grade Sync", "windowTarget": "_blank",
                         "default": "enabled", "visibility": "members"}  # students launch too: their own grades
    assert config["custom_fields"] == {"canvas_course_id": "$Canvas.course.id",
                                       "canvas_user_login_id": "$Canvas.user.loginId",
                                       "canvas_user_id": "$Canvas.user.id"}
    json.dumps(config)  # pasted as JSON
    with pytest.raises(LtiError, match="not an http"):
        lti.developer_key_json("grades.example.org")


# --- passback's own keys -----------------------------------------------------------------------------


def test_the_tool_key_is_made_once_and_kept_encrypted(store: Store, settings: Settings) -> None:
    first = lti.tool_jwks(store, settings)
    (public,) = first["keys"]
    assert public["kty"] == "RSA" and public["alg"] == "RS256" and public["use"] == "sig" and public["kid"]
    assert "d" not in public and "p" not in public  # nothing private is published
    assert len(base64.urlsafe_b64decode(public["n"] + "==")) * 8 == 2048
    assert lti.tool_jwks(store, settings) == first
    with store.engine.connect() as db:
        (row,) = db.execute(sa.select(tool_keys)).all()
    assert row.kid == public["kid"]
    assert '"d"' not in row.private_key and public["n"] not in row.private_key  # encrypted at rest
    assert json.loads(decrypt(row.private_key, load_key(settings))["jwk"])["d"]
    signing = lti.tool_signing_key(store, settings)
    assert signing.kid == public["kid"] and signing.is_private
    token = jwt.encode({"alg": "RS256", "kid": signing.kid}, {"iss": "10000000000001"}, signing)
    assert jwt.decode(token, RSAKey.import_key(public), algorithms=["RS256"]).claims["iss"] == "10000000000001"


def test_two_callers_make_one_key(store: Store, settings: Settings) -> None:
    kids: list[str] = []
    threads = [threading.Thread(target=lambda: kids.append(lti.tool_jwks(store, settings)["keys"][0]["kid"]))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(kids)) == 1 and len(kids) == 4


def test_a_retired_key_is_no_longer_published(store: Store, settings: Settings) -> None:
    old = lti.tool_jwks(store, settings)["keys"][0]["kid"]
    assert lti_store.retire_tool_key(store, old)
    new = lti.tool_jwks(store, settings)["keys"]
    assert [k["kid"] for k in new] != [old] and len(new) == 1


# --- registrations ------------------------------------------------------------------------------------


def test_platforms_are_registered_listed_changed_and_removed(store: Store, connection_id: int) -> None:
    platform = canvas_platform(store, connection_id, deployment_ids=[" 1:abc ", "1:abc", "", "2:def"])
    assert platform["deployment_ids"] == ["1:abc", "2:def"]
    assert platform["source_connection_id"] == connection_id and platform["created_at"].tzinfo is not None
    assert lti.list_platforms(store) == [platform]
    assert lti.get_platform(store, platform["id"]) == platform
    changed = lti.update_platform(store, platform["id"], deployment_ids=["3:ghi"], name="Canvas (district)")
    assert changed["deployment_ids"] == ["3:ghi"] and changed["name"] == "Canvas (district)"
    assert changed["client_id"] == platform["client_id"]
    with pytest.raises(Conflict, match="already registered"):
        canvas_platform(store, connection_id)
    other = canvas_platform(store, connection_id, client_id="10000000000002")
    with pytest.raises(Conflict, match="already registered"):
        lti.update_platform(store, other["id"], client_id=platform["client_id"])
    lti.remove_platform(store, platform["id"])
    assert [p["id"] for p in lti.list_platforms(store)] == [other["id"]]
    with pytest.raises(NotFound, match=f"no LTI platform with id {platform['id']}"):
        lti.get_platform(store, platform["id"])
    with pytest.raises(NotFound):
        lti.remove_platform(store, platform["id"])
    with pytest.raises(NotFound):
        lti.update_platform(store, platform["id"], name="x")


@pytest.mark.parametrize(("change", "message"), [
    ({"issuer": "canvas.instructure.com"}, "issuer 'canvas.instructure.com' is not an http"),
    ({"jwks_url": ""}, "JWKS URL '' is not an http"),
    ({"deployment_ids": []}, "at least one deployment id"),
    ({"client_id": " "}, "client id"),
    ({"name": ""}, "name"),
    ({"source_connection_id": 999}, "no connection with id 999"),
])
def test_a_registration_must_be_usable(store: Store, connection_id: int, change: dict[str, Any], message: str) -> None:
    with pytest.raises(LtiError, match=message):
        canvas_platform(store, connection_id, **change)
    assert lti.list_platforms(store) == []


# --- the login initiation --------------------------------------------------------------------------


def initiation(platform: dict[str, Any], **changes: str) -> dict[str, str]:
    return {"iss": platform["issuer"], "login_hint": "1234", "target_link_uri": LAUNCH_URL,
            "lti_message_hint": "opaque-hint", "client_id": platform["client_id"],
            "lti_deployment_id": platform["deployment_ids"][0], "canvas_region": "unknown", **changes}


def test_the_login_sends_the_browser_to_the_platform(store: Store, settings: Settings, connection_id: int) -> None:
    platform = canvas_platform(store, connection_id,
                               auth_login_url="https://sso.canvaslms.com/api/lti/authorize_redirect?region=us")
    before = datetime.now(UTC)
    url = lti.begin_login(store, settings, initiation(platform), launch_url=LAUNCH_URL)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://sso.canvaslms.com/api/lti/authorize_redirect"
    query = dict(parse_qsl(parts.query))
    assert query.pop("region") == "us"  # the platform's own query is kept
    state, nonce = query.pop("state"), query.pop("nonce")
    assert query == {"scope": "openid", "response_type": "id_token", "response_mode": "form_post", "prompt": "none",
                     "client_id": "10000000000001", "redirect_uri": LAUNCH_URL, "login_hint": "1234",
                     "lti_message_hint": "opaque-hint"}
    assert len(state) >= 40 and len(nonce) >= 40 and state != nonce
    with store.engine.connect() as db:
        row = db.execute(sa.select(lti_launch_states)).one()
    assert (row.state, row.nonce, row.platform_id, row.target_link_uri) == (state, nonce, platform["id"], LAUNCH_URL)
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    assert timedelta(minutes=9) < expires - before <= timedelta(minutes=10, seconds=5)
    assert row.used_at is None
    bare = lti.begin_login(store, settings, initiation(platform, lti_message_hint=""), launch_url=LAUNCH_URL)
    assert "lti_message_hint" not in dict(parse_qsl(urlsplit(bare).query))


def test_expired_states_are_purged_by_the_next_login(store: Store, settings: Settings, connection_id: int) -> None:
    platform = canvas_platform(store, connection_id)
    lti.begin_login(store, settings, initiation(platform), launch_url=LAUNCH_URL)
    with store.transaction() as db:
        db.execute(lti_launch_states.update().values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    lti.begin_login(store, settings, initiation(platform), launch_url=LAUNCH_URL)
    with store.engine.connect() as db:
        assert db.execute(sa.select(sa.func.count()).select_from(lti_launch_states)).scalar() == 1


def test_a_state_is_claimed_once_among_concurrent_launches(store: Store, settings: Settings,
                                                           connection_id: int) -> None:
    platform = canvas_platform(store, connection_id)
    state = dict(parse_qsl(urlsplit(lti.begin_login(store, settings, initiation(platform),
                                                    launch_url=LAUNCH_URL)).query))["state"]
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(lti_store.claim_launch_state(store, state)[0]))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == ["claimed"] + ["used"] * 5


@pytest.mark.anyio
async def test_a_platform_whose_keys_cannot_be_read_is_named(store: Store, settings: Settings,
                                                             connection_id: int) -> None:
    platform = canvas_platform(store, connection_id)
    issuer_key = RSAKey.generate_key(2048, private=True, auto_kid=True)
    token = jwt.encode({"alg": "RS256", "kid": issuer_key.kid}, {"iss": platform["issuer"]}, issuer_key)

    async def launch_with(handler: Any) -> str:
        state = dict(parse_qsl(urlsplit(lti.begin_login(store, settings, initiation(platform),
                                                        launch_url=LAUNCH_URL)).query))["state"]
        lti.clear_jwks_cache()
        with pytest.raises(LtiError) as caught:
            await lti.complete_launch(store, settings, id_token=token, state=state,
                                      transport=httpx.MockTransport(handler))
        return str(caught.value)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert "could not fetch the platform's signing keys from https://sso.canvaslms.com/api/lti/security/jwks" in \
        await launch_with(down)
    assert "answered 503" in await launch_with(lambda request: httpx.Response(503))
    assert "did not answer a JSON Web Key Set" in await launch_with(lambda request: httpx.Response(200, text="<html>"))
    assert "not among platform Canvas's keys" in await launch_with(
        lambda request: httpx.Response(200, json={"keys": [{"kty": "RSA", "kid": "other", "n": "x", "e": "AQAB"}]}))


# --- roles ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("uris", "roles"), [
    ([LIS + "membership#Instructor", LIS + "institution/person#Instructor"], ("Instructor",)),
    ([LIS + "membership/Instructor#TeachingAssistant", LIS + "membership#Instructor"], ("TeachingAssistant",)),
    ([LIS + "institution/person#Administrator", LIS + "system/person#User"], ("Administrator",)),
    ([LIS + "system/person#Administrator"], ("Administrator",)),
    ([LIS + "membership#Administrator", LIS + "membership#Learner"], ("Administrator", "Learner")),
    ([LIS + "membership#Learner", LIS + "institution/person#Student"], ("Learner",)),
    ([LIS + "membership#Mentor", LIS + "institution/person#Instructor"], ()),
    ("Instructor", ()),
    (None, ()),
])
def test_roles_reduce_to_the_four_passback_knows(uris: Any, roles: tuple[str, ...]) -> None:
    assert lti.canonical_roles(uris) == roles


# --- a platform we did not write: lti1p3platform ---------------------------------------------------------

OTHER_ISSUER = "https://lms.example.edu"
OTHER_CLIENT = "tool-client-7"
OTHER_DEPLOYMENT = "deployment-1"


def _pem_pair() -> tuple[str, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode(),
            private.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode())


class OtherPlatform(LTI1P3PlatformConfAbstract):
    """lti1p3platform's platform, registered with passback as its tool."""

    def init_platform_config(self, **kwargs: Any) -> None:
        private, public = _pem_pair()
        self._registration = (Registration().set_iss(OTHER_ISSUER).set_client_id(OTHER_CLIENT)
                              .set_deployment_id(OTHER_DEPLOYMENT).set_launch_url(LAUNCH_URL)
                              .set_oidc_login_url(f"{TOOL}/lti/login").set_tool_key_set_url(f"{TOOL}/lti/jwks")
                              .set_platform_public_key(public).set_platform_private_key(private))

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        assert self._registration is not None
        return self._registration


class OtherLogin(OIDCLoginAbstract):
    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = json.dumps(kwargs)

    def get_redirect(self, url: str) -> str:
        return url


class OtherLaunch(MessageLaunchAbstract):
    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return launch_data


class OtherRequest(PlatformRequest):
    def build_metadata(self, request: Any) -> Any:
        return {"method": "GET", "get_data": request, "form_data": {}, "headers": {}, "content_type": None,
                "path": "/authorize", "json": None}


@pytest.fixture
def other_platform() -> Iterator[tuple[OtherPlatform, ServedApp]]:
    platform = OtherPlatform()

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(platform.get_jwks())

    with ServedApp(Starlette(routes=[Route("/jwks", jwks)])) as served:
        yield platform, served


def other_launch(store: Store, settings: Settings, platform: OtherPlatform) -> dict[str, Any]:
    """lti1p3platform's login initiation, passback's answer, and lti1p3platform's id token for it."""
    login = OtherLogin(None, platform)
    login.set_lti_message_hint(course="algebra-1")
    initiation_url = login.initiate_login("user-17")
    assert initiation_url.startswith(f"{TOOL}/lti/login?")
    params = dict(parse_qsl(urlsplit(initiation_url).query))
    auth_url = lti.begin_login(store, settings, params, launch_url=LAUNCH_URL)
    preflight = dict(parse_qsl(urlsplit(auth_url).query))
    launch = OtherLaunch(OtherRequest(preflight), platform)
    launch.set_user_data("user-17", [LIS + "membership#Instructor"], full_name="Ada Lovelace",
                         email_address="ada@lms.example.edu")
    launch.set_launch_context_claim("ctx-algebra-1", context_title="Algebra I", context_label="ALG-1")
    launch.set_resource_link_claim("rl-1", title="Grade Sync")
    launch.set_custom_parameters_claim({"canvas_user_login_id": "ada"})
    data = launch.lti_launch()
    assert data["launch_url"] == LAUNCH_URL
    return data


@pytest.mark.anyio
async def test_lti1p3platform_launches_are_accepted(store: Store, settings: Settings, connection_id: int,
                                                    other_platform: tuple[OtherPlatform, ServedApp]) -> None:
    platform, served = other_platform
    registered = lti.register_platform(
        store, name="Other LMS", issuer=OTHER_ISSUER, client_id=OTHER_CLIENT,
        auth_login_url="https://lms.example.edu/authorize", auth_token_url="https://lms.example.edu/token",
        jwks_url=f"{served.url}/jwks", deployment_ids=[OTHER_DEPLOYMENT], source_connection_id=connection_id)
    data = other_launch(store, settings, platform)
    launch = await lti.complete_launch(store, settings, id_token=data["id_token"], state=data["state"])
    assert (launch.role, launch.roles) == ("Instructor", ("Instructor",))
    assert launch.platform_id == registered["id"] and launch.issuer == OTHER_ISSUER
    assert (launch.subject, launch.login, launch.name, launch.email) == ("user-17", "ada", "Ada Lovelace",
                                                                           "ada@lms.example.edu")
    assert (launch.course_id, launch.context_title) == ("ctx-algebra-1", "Algebra I")  # no Canvas custom field
    assert launch.deployment_id == OTHER_DEPLOYMENT and launch.lineitems_url is None


@pytest.mark.anyio
async def test_lti1p3platform_launches_changed_on_the_way_are_refused(
        store: Store, settings: Settings, connection_id: int,
        other_platform: tuple[OtherPlatform, ServedApp]) -> None:
    platform, served = other_platform
    lti.register_platform(
        store, name="Other LMS", issuer=OTHER_ISSUER, client_id=OTHER_CLIENT,
        auth_login_url="https://lms.example.edu/authorize", auth_token_url="https://lms.example.edu/token",
        jwks_url=f"{served.url}/jwks", deployment_ids=[OTHER_DEPLOYMENT], source_connection_id=connection_id)

    data = other_launch(store, settings, platform)
    header, payload, signature = data["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["https://purl.imsglobal.org/spec/lti/claim/roles"] = [LIS + "institution/person#Administrator"]
    promoted = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(LtiError, match="signature does not verify with platform Other LMS's key"):
        await lti.complete_launch(store, settings, id_token=f"{header}.{promoted}.{signature}", state=data["state"])

    data = other_launch(store, settings, platform)
    header, payload, signature = data["id_token"].split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(LtiError, match="signature does not verify"):
        await lti.complete_launch(store, settings, id_token=f"{header}.{payload}.{flipped}", state=data["state"])

    data = other_launch(store, settings, platform)  # untouched, the same launch goes in
    assert (await lti.complete_launch(store, settings, id_token=data["id_token"], state=data["state"])).login == "ada"
