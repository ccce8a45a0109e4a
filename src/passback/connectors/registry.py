"""Every connection kind: its typed settings, the roles it can play, and how to open it.

The one place that knows every kind. It opens connectors from a config value; reading
saved connections from the store is a service (:mod:`passback.services.connections`).
Connector modules are imported only when a connection of their kind is opened.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from passback.connectors.base import Destination, RecordsDestination, Source
from passback.connectors.canvas.config import CanvasConfig
from passback.connectors.config import ConnectionConfig
from passback.connectors.courseware.config import CoursewareConfig
from passback.connectors.csv_export.config import CsvExportConfig
from passback.connectors.edfi.config import EdFiConfig
from passback.connectors.limits import Limiter, LimiterFactory, destination_key
from passback.connectors.lti_ags.config import LtiAgsConfig
from passback.connectors.memory import ProcessMemory
from passback.connectors.oneroster.config import OneRosterConfig
from passback.connectors.oneroster_csv.config import OneRosterCsvConfig
from passback.connectors.powerschool.config import PowerSchoolConfig
from passback.connectors.schoology.config import SchoologyConfig
from passback.errors import Invalid

SOURCE, DESTINATION, RECORDS, POSTED = "source", "destination", "records", "posted grades"


@dataclass(frozen=True)
class HttpOptions:
    concurrency: int = 8
    timeout: float = 30.0
    limits: LimiterFactory | None = None  # caps per destination shared by every worker; None: each client its own
    memory: ProcessMemory | None = None  # tokens and read-mostly listings kept between runs; None: each client its own

    def limiter(self, config: ConnectionConfig, concurrency: int | None = None) -> Limiter | None:
        """The shared limiter for this connection's destination (its kind and URL), or None for the
        client's own semaphore. ``concurrency`` caps this client's own share (default: ``self.concurrency``)."""
        if self.limits is None:
            return None
        return self.limits.limiter(destination_key(config.kind, config.url), concurrency or self.concurrency)


def _canvas_source(config: Any, http: HttpOptions) -> Source:
    from passback.connectors.canvas.client import CanvasClient
    from passback.connectors.canvas.source import CanvasSource

    return CanvasSource(CanvasClient(config.url, config.token, concurrency=http.concurrency, timeout=http.timeout,
                                     limiter=http.limiter(config)))


def _schoology_source(config: Any, http: HttpOptions) -> Source:
    from passback.connectors.schoology.client import SchoologyClient
    from passback.connectors.schoology.source import SchoologySource

    return SchoologySource(SchoologyClient(config.url, config.consumer_key, config.consumer_secret,
                                           concurrency=http.concurrency, timeout=http.timeout,
                                           limiter=http.limiter(config)))


def _courseware_source(config: Any, http: HttpOptions) -> Source:
    from passback.connectors.courseware.client import CoursewareClient
    from passback.connectors.courseware.source import CoursewareSource

    return CoursewareSource(CoursewareClient(config.url, config.token, concurrency=http.concurrency,
                                             timeout=http.timeout, limiter=http.limiter(config)))


def _oneroster_csv_source(config: Any, http: HttpOptions) -> Source:
    from passback.connectors.oneroster_csv.source import OneRosterCsvSource

    return OneRosterCsvSource(config.url)


def _powerschool_client(config: Any, http: HttpOptions) -> Any:
    from passback.connectors.powerschool.client import PowerSchoolClient

    return PowerSchoolClient(config.url, config.client_id, config.client_secret, concurrency=http.concurrency,
                             timeout=http.timeout, limiter=http.limiter(config), memory=http.memory)


def _powerteacher(config: Any, http: HttpOptions) -> Destination:
    from passback.connectors.powerschool.destination import PowerTeacherProDestination

    return PowerTeacherProDestination(_powerschool_client(config, http))


def _powerschool_posted(config: Any, http: HttpOptions) -> Any:
    from passback.connectors.powerschool.posted import PowerSchoolPostedGrades

    return PowerSchoolPostedGrades(_powerschool_client(config, http))


def _csv_posted(config: Any, http: HttpOptions) -> Any:
    from passback.connectors.csv_export.source import CsvPostedGrades

    return CsvPostedGrades(config.url)


def _edfi(config: Any, http: HttpOptions) -> RecordsDestination:
    from passback.connectors.edfi.client import EdFiClient
    from passback.connectors.edfi.destination import EdFiDestination

    return EdFiDestination(EdFiClient(config.url, config.client_id, config.client_secret,
                                      concurrency=http.concurrency, timeout=http.timeout))


def _oneroster_client(config: Any, http: HttpOptions) -> Any:
    from passback.connectors.oneroster.client import OneRosterClient

    return OneRosterClient(config.url, config.client_id, config.client_secret, version=config.version,
                           token_url=config.token_endpoint(), concurrency=http.concurrency, timeout=http.timeout,
                           limiter=http.limiter(config), memory=http.memory)


def _oneroster(config: Any, http: HttpOptions) -> Destination:
    from passback.connectors.oneroster.destination import OneRosterDestination

    return OneRosterDestination(_oneroster_client(config, http))


def _oneroster_source(config: Any, http: HttpOptions) -> Source:
    """A OneRoster server's gradebook read as a source (classes as courses), with the same client and scopes."""
    from passback.connectors.oneroster.source import OneRosterSource

    return OneRosterSource(_oneroster_client(config, http))


async def _probe_canvas(config: Any, http: HttpOptions) -> str:
    from passback.connectors.canvas.client import CanvasClient

    client = CanvasClient(config.url, config.token, concurrency=1, timeout=http.timeout, limiter=http.limiter(config, 1))
    try:
        await client.get("/courses", params={"per_page": 1})
    finally:
        await client.aclose()
    return "the token was accepted"


async def _probe_schoology(config: Any, http: HttpOptions) -> str:
    from passback.connectors.schoology.client import SchoologyClient

    client = SchoologyClient(config.url, config.consumer_key, config.consumer_secret, concurrency=1,
                             timeout=http.timeout, limiter=http.limiter(config, 1))
    try:
        await client.get("/users/me")
    finally:
        await client.aclose()
    return "the consumer key and secret were accepted"


async def _probe_courseware(config: Any, http: HttpOptions) -> str:
    from passback.connectors.courseware.client import CoursewareClient

    client = CoursewareClient(config.url, config.token, concurrency=1, timeout=http.timeout,
                              limiter=http.limiter(config, 1))
    try:
        await client.get("/courses", params={"limit": 1})
    finally:
        await client.aclose()
    return "the API token was accepted"


async def _probe_powerschool(config: Any, http: HttpOptions) -> str:
    client = _powerschool_client(config, http)
    try:
        await client.auth.fetch_token()
    finally:
        await client.aclose()
    return "the plugin's client id and secret were accepted"


async def _probe_edfi(config: Any, http: HttpOptions) -> str:
    from passback.connectors.edfi.client import EdFiClient

    client = EdFiClient(config.url, config.client_id, config.client_secret, concurrency=1, timeout=http.timeout)
    try:
        await client.authenticate()
    finally:
        await client.aclose()
    return "the ODS/API answered and the key and secret were accepted"


async def _probe_oneroster(config: Any, http: HttpOptions) -> str:
    client = _oneroster_client(config, http)
    try:
        await client.get_json(f"{client.rostering}/academicSessions", {"limit": 1})  # the token, then the path
    finally:
        await client.aclose()
    return f"the client id and secret were accepted and OneRoster {config.version} answered"


async def _probe_csv(config: Any, http: HttpOptions) -> str:
    from pathlib import Path

    path = Path(config.url)
    if not path.is_file():
        raise Invalid(f"There is no file at {path}; export the posted grades there, or give the export's path.")
    with path.open("rb") as handle:
        handle.read(1)
    return "the export file can be read"


async def _probe_oneroster_csv(config: Any, http: HttpOptions) -> str:
    """Open the zip and check its manifest (version, files), without reading the rows."""
    import asyncio
    import zipfile
    from pathlib import Path

    from passback.connectors.oneroster_csv.binding import files_to_read, manifest_of
    from passback.errors import SourceError

    path = Path(config.url)
    if not path.is_file():
        raise Invalid(f"There is no file at {path}; export the OneRoster CSV bundle (a .zip) there, or give its path.")

    def check() -> str:
        try:
            with zipfile.ZipFile(path) as bundle:
                manifest = manifest_of(bundle, str(path))
                files = files_to_read(manifest, bundle.namelist(), str(path))
        except zipfile.BadZipFile as exc:
            raise Invalid(f"{path} is not a zip file ({exc}); export the OneRoster CSV bundle as a .zip.") from exc
        except SourceError as exc:  # the file is there, its content is not what passback can read
            raise Invalid(str(exc)) from exc
        return f"a OneRoster {manifest.version} bundle with {', '.join(files)}"

    return await asyncio.to_thread(check)


def _lti_ags_client(config: Any, http: HttpOptions, concurrency: int | None = None) -> Any:
    from passback.connectors.lti_ags.client import AgsClient

    return AgsClient(config.url, config.client_id, config.token_url, config.private_key, config.key_id,
                     audience=config.assertion_audience, concurrency=concurrency or http.concurrency,
                     timeout=http.timeout, limiter=http.limiter(config, concurrency))


def _lti_ags(config: Any, http: HttpOptions) -> Destination:
    from passback.connectors.lti_ags.destination import LtiAgsDestination

    return LtiAgsDestination(_lti_ags_client(config, http))


async def _probe_lti_ags(config: Any, http: HttpOptions) -> str:
    client = _lti_ags_client(config, http, concurrency=1)
    try:
        await client.auth.fetch_token()  # the client id, the signed assertion and the platform's key check
    finally:
        await client.aclose()
    return "the platform accepted passback's signed client assertion"


@dataclass(frozen=True)
class ConnectorKind:
    config: type[ConnectionConfig]
    openers: dict[str, Callable[[Any, HttpOptions], Any]]
    probe: Callable[[Any, HttpOptions], Awaitable[str]]  # one real request: are the URL and credentials right?

    @property
    def name(self) -> str:
        return self.config.kind

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.openers)


KINDS: dict[str, ConnectorKind] = {k.name: k for k in (
    ConnectorKind(CanvasConfig, {SOURCE: _canvas_source}, _probe_canvas),
    ConnectorKind(SchoologyConfig, {SOURCE: _schoology_source}, _probe_schoology),
    ConnectorKind(OneRosterCsvConfig, {SOURCE: _oneroster_csv_source}, _probe_oneroster_csv),
    ConnectorKind(CoursewareConfig, {SOURCE: _courseware_source}, _probe_courseware),
    ConnectorKind(PowerSchoolConfig, {DESTINATION: _powerteacher, POSTED: _powerschool_posted}, _probe_powerschool),
    ConnectorKind(EdFiConfig, {RECORDS: _edfi}, _probe_edfi),
    ConnectorKind(LtiAgsConfig, {DESTINATION: _lti_ags}, _probe_lti_ags),
    ConnectorKind(OneRosterConfig, {SOURCE: _oneroster_source, DESTINATION: _oneroster}, _probe_oneroster),
    ConnectorKind(CsvExportConfig, {POSTED: _csv_posted}, _probe_csv),
)}


def kind_of(name: str) -> ConnectorKind:
    found = KINDS.get(name)
    if found is None:
        raise Invalid(f"Unknown connection kind {name!r}; choose one of: {', '.join(KINDS)}.")
    return found


def kinds_for(role: str) -> list[str]:
    return [name for name, kind in KINDS.items() if role in kind.openers]


def open_connector(role: str, config: ConnectionConfig, http: HttpOptions, connection_name: str) -> Any:
    """The live connector for ``role`` (source, destination, records, posted grades)."""
    opener = kind_of(config.kind).openers.get(role)
    if opener is None:
        raise Invalid(
            f"Connection {connection_name!r} is a {config.kind} connection, which cannot serve as a {role}; "
            f"{role} connections are: {', '.join(kinds_for(role))}."
        )
    return opener(config, http)


CONNECTOR_MODULES = (
    "passback.connectors.canvas.client", "passback.connectors.canvas.source",
    "passback.connectors.courseware.client", "passback.connectors.courseware.source",
    "passback.connectors.csv_export.source",
    "passback.connectors.edfi.client", "passback.connectors.edfi.destination",
    "passback.connectors.lti_ags.client", "passback.connectors.lti_ags.destination",
    "passback.connectors.oneroster.client", "passback.connectors.oneroster.destination",
    "passback.connectors.oneroster.source",
    "passback.connectors.oneroster_csv.binding", "passback.connectors.oneroster_csv.source",
    "passback.connectors.powerschool.client", "passback.connectors.powerschool.destination",
    "passback.connectors.powerschool.posted",
    "passback.connectors.schoology.client", "passback.connectors.schoology.source",
)


def preload() -> None:
    """Import every connector now. The factories import lazily so a command touches only what it
    uses; a worker imports them all before its first task, so no run pays for them on its clock."""
    for name in (*CONNECTOR_MODULES, *LAZY_MODULES):
        importlib.import_module(name)


LAZY_MODULES = ("httpcore", "anyio._core._synchronization", "anyio._backends._asyncio")
"""What httpx and anyio import only when first used (an OAuth token's client, an auth flow's lock):
a third of a second of a worker's first run, were they not imported before it."""
