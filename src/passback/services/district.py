"""The district's settings: what an admin sets once for every course, typed and checked.

The environment (``PASSBACK_*``, :class:`~passback.settings.Settings`) gives the
defaults; what an admin saved in the web product (the ``district_settings`` rows) wins
over them. Runs read them through :func:`passback.services.runs.run_options`, so a
changed title limit holds from the next run on, in every process sharing the store.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from passback.connectors.registry import DESTINATION, SOURCE, kind_of
from passback.errors import Invalid
from passback.settings import Settings
from passback.store import district as repo
from passback.store.connections import kind_of_saved
from passback.store.db import Store

log = structlog.get_logger("passback.district")

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
ALLOWED = {
    "title_limit": "a whole number from 1 to 255 (the longest assignment name the destination takes)",
    "block_closed_terms": "true or false",
    "nightly_window_start": "a time of day as HH:MM, 00:00 to 23:59",
    "nightly_window_end": "a time of day as HH:MM, 00:00 to 23:59, other than the window's start",
    "time_zone": "an IANA time zone name such as America/Chicago or America/New_York",
    "routes": "a list of {source, destination} saved connection names, each source once",
}


class DistrictRoute(BaseModel):
    """Where one source connection's courses sync to: the names of two saved connections."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(min_length=1, max_length=100)
    destination: str = Field(min_length=1, max_length=100)


class DistrictSettings(BaseModel):
    """The district's settings as runs and the scheduler obey them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title_limit: int = Field(default=30, ge=1, le=255)
    block_closed_terms: bool = True
    nightly_window_start: str = "01:00"
    nightly_window_end: str = "05:00"
    time_zone: str = "America/Chicago"
    routes: list[DistrictRoute] = Field(default_factory=list)

    @field_validator("nightly_window_start", "nightly_window_end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError(f"{value!r} is not a time as HH:MM")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a time zone") from exc
        return value

    @model_validator(mode="after")
    def _window_and_routes(self) -> DistrictSettings:
        if self.nightly_window_start == self.nightly_window_end:
            raise ValueError("nightly_window_end: the window must not start and end at the same time")
        sources = [route.source for route in self.routes]
        if len(sources) != len(set(sources)):
            raise ValueError("routes: a source connection is listed twice; each source syncs to one destination")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def destination_of(self, source: str) -> str | None:
        """The destination connection a source connection's courses sync to, if the district set one."""
        return next((route.destination for route in self.routes if route.source == source), None)


FIELDS = tuple(DistrictSettings.model_fields)


def defaults(settings: Settings) -> DistrictSettings:
    """The settings when an admin has saved none: the environment's."""
    return DistrictSettings(title_limit=settings.district_title_limit, block_closed_terms=settings.block_closed_terms)


def get_district(store: Store, settings: Settings) -> DistrictSettings:
    """The stored values over the environment's defaults.

    A stored value that no longer passes (a time zone gone from this machine's
    database, say) is left out with a log line, so the runs go on with the default.
    """
    base = defaults(settings).model_dump()
    stored = {key: value for key, value in repo.read_values(store).items() if key in base}
    for key, value in stored.items():
        try:
            DistrictSettings.model_validate({**base, key: value})
        except ValidationError:
            log.warning("district_setting_ignored", key=key)
            continue
        base[key] = value
    try:
        return DistrictSettings.model_validate(base)
    except ValidationError:  # each passed alone and not together (start == end): the defaults, whole
        log.warning("district_settings_ignored", keys=sorted(stored))
        return defaults(settings)


def _refusal(exc: ValidationError) -> Invalid:
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            field = str(error["loc"][0])
        else:  # a check across fields names its field first: "field: what is wrong"
            field, _, message = message.partition(": ")
        problems.append(f"{field}: {message} (allowed: {ALLOWED.get(field, ', '.join(FIELDS))})")
    return Invalid("The district settings were not saved. " + "; ".join(problems) + ".")


def _check_routes(store: Store, routes: list[DistrictRoute]) -> None:
    for route in routes:
        for name, role in ((route.source, SOURCE), (route.destination, DESTINATION)):
            kind = kind_of_saved(store, name)
            if kind is None:
                raise Invalid(f"The district settings were not saved. routes: there is no connection named {name!r} "
                              f"(allowed: {ALLOWED['routes']}; list them with `passback connections`).")
            if role not in kind_of(kind).roles:
                raise Invalid(f"The district settings were not saved. routes: {name!r} is a {kind} connection, which "
                              f"cannot be a {role}.")


def update_district(store: Store, settings: Settings, changes: dict[str, Any], *, actor: str) -> DistrictSettings:
    """Check the changes against the whole settings, then store the keys that changed.

    A bad value raises :class:`~passback.errors.Invalid` naming the field and what is
    allowed; nothing is stored then. A changed window or time zone moves every nightly
    schedule's next run into the new window.
    """
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise Invalid(f"The district settings were not saved: {', '.join(unknown)} is not a district setting; "
                      f"the settings are {', '.join(FIELDS)}.")
    current = get_district(store, settings)
    try:
        wanted = DistrictSettings.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        raise _refusal(exc) from exc
    if "routes" in changes:
        _check_routes(store, wanted.routes)
    new, old, stored = wanted.model_dump(mode="json"), current.model_dump(mode="json"), repo.read_values(store)
    # A value saved as the environment's default is stored all the same: the admin chose it, and a later
    # change of the environment must not move it. A value saved again unchanged keeps who set it first.
    saved = {key: new[key] for key in changes if key not in stored or stored[key] != new[key]}
    if saved:
        repo.write_values(store, saved, actor=actor)
        log.info("district_settings_changed", keys=sorted(saved), actor=actor)
    if any(new[key] != old[key] for key in ("nightly_window_start", "nightly_window_end", "time_zone")):
        from passback.services.schedules import reschedule_nightly  # schedules reads these settings: no cycle at import

        reschedule_nightly(store, wanted)
    return wanted


def changed_by(store: Store) -> list[dict[str, Any]]:
    """Each stored setting with who changed it last and when (for the admin page)."""
    return repo.read_rows(store)


def add_routes(store: Store, settings: Settings, pairs: list[tuple[str, str]], *, actor: str) -> DistrictSettings:
    """Route each source's courses to a destination unless the source already has a route (the sandbox's setup)."""
    current = get_district(store, settings)
    routed = {route.source for route in current.routes}
    wanted = [{"source": source, "destination": destination} for source, destination in pairs if source not in routed]
    if not wanted:
        return current
    return update_district(store, settings, {"routes": [r.model_dump() for r in current.routes] + wanted}, actor=actor)
