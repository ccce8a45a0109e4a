"""Wire the sandbox's Canvas, acting as an LTI 1.3 platform, to a running ``passback serve``.

What an admin does by hand in a real district, done in one step for the sandbox: paste
passback's developer key JSON into Canvas (the emulator answers with a client id and a
deployment id, as Canvas's Developer Keys page does), then register that platform in
passback, and save an AGS gradebook connection to it (passback writing scores into Canvas as
a tool). The launch URLs it returns are the course-navigation links a teacher clicks.
"""

from __future__ import annotations

from typing import Any

import httpx

from passback.services import lti, lti_ags
from passback.settings import Settings
from passback.store.connections import connection_refs
from passback.store.db import Store


AGS_CONNECTION = "sandbox-canvas-ags"  # passback as an LTI tool writing into this Canvas's gradebooks


def connect_lti(store: Store, settings: Settings, *, canvas_url: str, passback_url: str,
                source: str = "sandbox-canvas") -> dict[str, Any]:
    """Register passback in the emulated Canvas and Canvas in passback; returns the key and the launch URLs."""
    found = next((c for c in connection_refs(store) if c.name == source), None)
    if found is None:
        raise ValueError(f"No connection {source!r}: start the sandbox first (passback sandbox up).")
    config = lti.developer_key_json(passback_url.rstrip("/"))
    answer = httpx.post(f"{canvas_url.rstrip('/')}/_emulator/lti/developer_keys", json=config, timeout=10)
    answer.raise_for_status()
    key = answer.json()
    platform = lti.register_platform(
        store, name="Sandbox Canvas", issuer=key["issuer"], client_id=key["client_id"],
        auth_login_url=key["auth_login_url"], auth_token_url=key["auth_token_url"], jwks_url=key["jwks_url"],
        deployment_ids=[key["deployment_id"]], source_connection_id=found.id)
    lti_ags.save_ags_connection(store, settings, platform["id"], name=AGS_CONNECTION, replace=True)  # write back too
    state = httpx.get(f"{canvas_url.rstrip('/')}/_emulator/state", timeout=10).json()
    launches: dict[tuple[str, str], dict[str, Any]] = {}
    for enrollment in state["enrollments"].values():
        if enrollment.get("type") not in ("TeacherEnrollment", "TaEnrollment"):
            continue
        login = state["users"][str(enrollment["user_id"])].get("login_id")
        course_id = str(enrollment["course_id"])
        launches[(course_id, login or "")] = {"login": login, "course_id": course_id, "role": enrollment["type"],
                                              "url": launch_url(canvas_url, course_id, key["client_id"], login)}
    return {"client_id": key["client_id"], "deployment_id": key["deployment_id"], "platform": platform,
            "launches": [launches[k] for k in sorted(launches, key=lambda k: (int(k[0]), k[1]))]}


def launch_url(canvas_url: str, course_id: Any, client_id: str, login: str | None) -> str:
    """The course-navigation link in the emulated Canvas, as the signed-in ``login`` would click it."""
    return f"{canvas_url.rstrip('/')}/courses/{course_id}/external_tools/{client_id}?as_user={login}"
