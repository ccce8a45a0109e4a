"""OAuth token requests under faults, for every client-credentials connector, over loopback.

One rule for every connector (``passback.connectors.oauth``): a token request answered
429 or 5xx, or cut off, is retried with backoff, honouring Retry-After (seconds or an
HTTP date); only 401 and 400 ``invalid_client`` mean "check the client id and secret";
a token endpoint that stays down is an unavailable server, named by its URL.
The token endpoint's answers are scripted through the emulators' fault control.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from passback.connectors.edfi.client import EdFiClient
from passback.connectors.http import RetryPolicy
from passback.connectors.powerschool.client import PowerSchoolClient
from passback.emulators import edfi as edfi_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.errors import AuthRefused, DestinationUnavailable, Refused
from passback.sandbox.district import generate as generate_district
from passback.sandbox.edfi_district import EdFiShape
from passback.sandbox.edfi_district import generate as generate_edfi
from tests.conftest import SMALL, ServedApp

ATTEMPTS = 4
EDFI_ID, EDFI_SECRET = "sandbox-edfi", "sandbox-edfi-secret"


@dataclass
class TokenCase:
    """One connector against its emulator: how to connect, make a call, and script the token endpoint."""

    system: str
    served: ServedApp
    token_path: str
    data_path: str
    connect_with: Callable[[str | None], tuple[Any, Callable[[], Awaitable[Any]]]]
    clients: list[Any] = field(default_factory=list)

    @property
    def token_url(self) -> str:
        return self.served.url + self.token_path

    def connect(self, secret: str | None = None) -> Callable[[], Awaitable[Any]]:
        """A new client (with ``secret``, else the right one); a call that needs a token."""
        client, call = self.connect_with(secret)
        self.clients.append(client)
        return call

    def script(self, *answers: dict[str, Any], path: str | None = None) -> None:
        self.served.control("faults", {"scripted": [{"path": path or self.token_path, **answer}
                                                    for answer in answers]})

    def scripted(self) -> int:
        return int(self.served.control("faults")["injected"].get("scripted", 0))

    def token_requests(self) -> int:
        """Token requests the emulator's handler answered (scripted answers come before it)."""
        return int(self.served.control("stats")["requests"].get(f"POST {self.token_path}", 0))


def _powerschool(served: ServedApp, client_id: str, secret: str, state: dict[str, Any]) -> TokenCase:
    section = next(iter(state["sections"]))

    def connect_with(wrong: str | None) -> tuple[Any, Callable[[], Awaitable[Any]]]:
        client = PowerSchoolClient(served.url, client_id, wrong or secret,
                                   policy=RetryPolicy(attempts=ATTEMPTS, initial_wait=0.01, max_wait=0.05))
        return client, lambda: client.get_json(f"/ws/v1/section/{section}")

    return TokenCase("powerschool", served, "/oauth/access_token", f"/ws/v1/section/{section}", connect_with)


def _edfi(served: ServedApp) -> TokenCase:
    def connect_with(wrong: str | None) -> tuple[Any, Callable[[], Awaitable[Any]]]:
        client = EdFiClient(served.url, EDFI_ID, wrong or EDFI_SECRET, concurrency=4, attempts=ATTEMPTS)
        return client, lambda: client.get_all("grades")

    return TokenCase("edfi", served, "/oauth/token", "/data/v3/ed-fi/grades", connect_with)


@pytest.fixture(params=["powerschool", "edfi"])
async def case(request: pytest.FixtureRequest) -> AsyncIterator[TokenCase]:
    if request.param == "powerschool":
        _, state, credentials = generate_district(SMALL)
        served = ServedApp(powerschool_emulator.create_app(state, faults=FaultConfig(seed=5)))
        made = _powerschool(served, credentials.powerschool_client_id, credentials.powerschool_client_secret, state)
    else:
        state, _ = generate_edfi(EdFiShape(grades=5, students_per_section=5))
        served = ServedApp(edfi_emulator.create_app(state, faults=FaultConfig(seed=6)))
        made = _edfi(served)
    with served:
        try:
            yield made
        finally:
            for client in made.clients:
                await client.aclose()


def only(system: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", [system], indirect=True)


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await call()
    return result, time.monotonic() - started


@pytest.mark.anyio
async def test_token_answered_503_twice_is_retried_honouring_retry_after_seconds(case: TokenCase) -> None:
    call = case.connect()
    case.script({"status": 503, "headers": {"Retry-After": "1"}, "times": 1}, {"status": 503, "times": 1})
    _, elapsed = await timed(call)
    assert case.scripted() == 2
    assert case.token_requests() == 1  # the third token request got the token
    assert elapsed >= 0.95, f"the client did not wait the Retry-After of 1 s ({elapsed:.2f} s)"


@pytest.mark.anyio
async def test_token_answered_429_with_an_http_date_waits_until_then(case: TokenCase) -> None:
    call = case.connect()
    started = time.time()
    until = email.utils.formatdate(started + 2, usegmt=True)  # whole seconds: 1 to 2 s from now
    case.script({"status": 429, "headers": {"Retry-After": until}, "body": {"message": "Too Many Requests"}})
    await call()
    waited = time.time() - started
    assert case.scripted() == 1 and case.token_requests() == 1
    assert waited >= 0.95, f"the client did not wait until the Retry-After date ({waited:.2f} s)"


@pytest.mark.anyio
@pytest.mark.parametrize("answer", ["wrong secret (401)", "400 invalid_client"])
async def test_refused_credentials_say_check_the_client_id_and_secret(case: TokenCase, answer: str) -> None:
    if answer.startswith("400"):
        call = case.connect()
        case.script({"status": 400, "body": {"error": "invalid_client"}, "times": None})
        status = 400
    else:
        call = case.connect("not-the-secret")
        status = 401
    with pytest.raises(AuthRefused) as refused:
        await call()
    message = str(refused.value)
    assert "check the client id and secret" in message.lower()
    assert case.token_url in message and refused.value.status == status
    assert refused.value.code == "destination-auth"
    assert case.scripted() + case.token_requests() == 1  # a refusal is not retried


@pytest.mark.anyio
async def test_another_refusal_names_the_status_and_error_not_the_credentials(case: TokenCase) -> None:
    call = case.connect()
    case.script({"status": 400, "body": {"error": "invalid_scope"}, "times": None})
    with pytest.raises(Refused) as refused:
        await call()
    assert not isinstance(refused.value, AuthRefused)
    message = str(refused.value)
    assert "400" in message and "invalid_scope" in message and case.token_url in message
    assert "client id and secret" not in message.lower()
    assert case.scripted() == 1


@pytest.mark.anyio
async def test_a_token_endpoint_that_stays_down_is_unavailable_not_refused_credentials(case: TokenCase) -> None:
    call = case.connect()
    case.script({"status": 503, "headers": {"Retry-After": "0"}, "times": None})
    failures = await asyncio.gather(call(), call(), call(), return_exceptions=True)
    for failure in failures:
        assert isinstance(failure, DestinationUnavailable), failure
        message = str(failure)
        assert case.token_url in message and "unavailable" in message
        assert "client id and secret" not in message.lower() and "check the" not in message.lower()
    assert case.scripted() == ATTEMPTS  # one round of attempts, shared by the three calls
    assert case.token_requests() == 0


@pytest.mark.anyio
@only("powerschool")
async def test_a_token_request_cut_off_during_a_write_is_retried_not_taken_for_a_lost_write(case: TokenCase) -> None:
    case.connect()
    client = case.clients[-1]
    case.script({"reset": True, "times": 2})
    response = await client.request("POST", "/ws/xte/section/assignment/", json={"_assignmentsections": []})
    assert response.status_code < 500  # the write was sent once and answered (refused: no sections)
    assert case.scripted() == 2 and case.token_requests() == 3  # the handler ran each time; two answers lost


@pytest.mark.anyio
@only("powerschool")
async def test_a_garbled_retry_after_is_a_plain_retry(case: TokenCase) -> None:
    call = case.connect()
    case.script({"status": 503, "headers": {"Retry-After": "soon, probably"}}, path=case.data_path)
    await call()
    assert case.scripted() == 1


@pytest.mark.anyio
@only("edfi")
async def test_an_edfi_request_throttled_with_an_http_date_waits_until_then(case: TokenCase) -> None:
    call = case.connect()
    await case.clients[-1].authenticate()  # the token is not the request under test
    started = time.time()
    until = email.utils.formatdate(started + 2, usegmt=True)
    case.script({"status": 503, "headers": {"Retry-After": until}}, path=case.data_path)
    await call()
    waited = time.time() - started
    assert case.scripted() == 1
    assert waited >= 0.95, f"the client did not wait until the Retry-After date ({waited:.2f} s)"
