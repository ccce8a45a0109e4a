"""Connect passback to the sandbox it started: a connection to each emulator, the route, the sample preferences.

What the demo and ``passback sandbox up`` both do after the emulators are up; the CLI only
prints what was saved. (The sandbox is a test double: the runtime layers never import it.)
"""

from __future__ import annotations

from passback.sandbox.control import EDFI_KEY, EDFI_SECRET, SCHOOLOGY_KEY, SCHOOLOGY_SECRET, Sandbox, SandboxInfo
from passback.sandbox.edfi_district import default_preferences
from passback.sandbox.oneroster_district import CLIENT_ID as ONEROSTER_ID
from passback.sandbox.oneroster_district import CLIENT_SECRET as ONEROSTER_SECRET
from passback.services import connections as connection_service
from passback.services import district as district_service
from passback.services import statereport as state_service
from passback.services.sandbox_state import SANDBOX_DESTINATION, SANDBOX_SOURCE
from passback.settings import Settings
from passback.store import open_store


def save_sandbox_connections(settings: Settings, info: SandboxInfo, sandbox: Sandbox) -> dict[str, str]:
    """A connection to each emulator served, named as the README's commands expect; name -> kind."""
    store = open_store(settings)
    creds = info.creds
    wanted: dict[str, tuple[str, str, dict[str, str]]] = {}
    if "canvas" in info.systems:
        wanted[SANDBOX_SOURCE] = ("canvas", info.url("canvas"), {"token": creds.canvas_token})
    if "powerschool" in info.systems:
        wanted[SANDBOX_DESTINATION] = ("powerschool", info.url("powerschool"), {
            "client_id": creds.powerschool_client_id, "client_secret": creds.powerschool_client_secret})
    if "schoology" in info.systems:
        wanted["sandbox-schoology"] = ("schoology", info.url("schoology"), {
            "consumer_key": SCHOOLOGY_KEY, "consumer_secret": SCHOOLOGY_SECRET})
    if "oneroster" in info.systems:  # OneRoster 1.2's gradebook service; --oneroster-version v1p1 works too
        wanted["sandbox-oneroster"] = ("oneroster", info.url("oneroster"), {
            "client_id": ONEROSTER_ID, "client_secret": ONEROSTER_SECRET, "version": "v1p2"})
    if "edfi" in info.systems:
        wanted["state-edfi"] = ("edfi", info.url("edfi"), {"client_id": EDFI_KEY, "client_secret": EDFI_SECRET})
        wanted["sis-export"] = ("csv", str(sandbox.sample_export), {})
    for name, (kind, url, credentials) in wanted.items():
        connection_service.save(store, settings, name=name, kind=kind, url=url, credentials=credentials, replace=True)
    if "edfi" in info.systems:
        state_service.adopt_preferences(store, "state-edfi", default_preferences())
    if SANDBOX_DESTINATION in wanted:  # the web's course pages need to know where each source's grades go
        sources = [name for name in (SANDBOX_SOURCE, "sandbox-schoology") if name in wanted]
        district_service.add_routes(store, settings, [(name, SANDBOX_DESTINATION) for name in sources], actor="sandbox")
    store.dispose()
    return {name: kind for name, (kind, _, _) in wanted.items()}
