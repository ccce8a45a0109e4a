"""LTI 1.3 in the store: the platforms passback trusts, the launches it started, its own signing keys.

Three tables, three lifetimes. A platform registration (an LMS's issuer, client id and
endpoints) lives until an admin removes it. A launch state lives ten minutes and is used
once: claiming it is one short transaction, so two browsers posting the same launch
(a replay, a double submit) cannot both get in. Tool keys live until retired; the
private part is stored encrypted (the service encrypts it with the vault key), never
in plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from passback.errors import Conflict
from passback.store.db import Store
from passback.store.tables import connections, lti_launch_states, lti_platforms, tool_keys

TOOL_KEY_LOCK = 7_361_003  # the advisory lock id PostgreSQL takes while the first tool key is made
PLATFORM_FIELDS = ("name", "issuer", "client_id", "auth_login_url", "auth_token_url", "jwks_url", "deployment_ids",
                   "source_connection_id")


def _aware(value: datetime) -> datetime:
    """SQLite gives timestamps back without their zone; every one passback writes is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _platform(row: sa.Row[Any]) -> dict[str, Any]:
    platform = dict(row._mapping)
    platform["deployment_ids"] = list(platform["deployment_ids"] or [])
    platform["created_at"] = _aware(platform["created_at"])
    return platform


class PlatformExists(Conflict):
    """Another registration has the same issuer and client id: a launch could not tell them apart."""


def _clash(issuer: str, client_id: str) -> PlatformExists:
    return PlatformExists(
        f"An LTI platform with issuer {issuer} and client id {client_id} is already registered; "
        "edit that one (add the deployment id there) instead of registering it twice.")


# --- platforms -----------------------------------------------------------------------------------


def connection_exists(store: Store, connection_id: int) -> bool:
    with store.engine.connect() as db:
        return db.execute(sa.select(connections.c.id).where(connections.c.id == connection_id)).first() is not None


def insert_platform(store: Store, values: dict[str, Any]) -> int:
    """Save a new registration; its id. Raises :class:`PlatformExists` on a duplicate issuer and client id."""
    row = {key: values[key] for key in PLATFORM_FIELDS}
    with store.transaction() as db:
        taken = db.execute(sa.select(lti_platforms.c.id).where(
            lti_platforms.c.issuer == row["issuer"], lti_platforms.c.client_id == row["client_id"])).first()
        if taken is not None:
            raise _clash(row["issuer"], row["client_id"])
        result = db.execute(lti_platforms.insert().values(created_at=datetime.now(UTC), **row))
        return int(result.inserted_primary_key[0])


def update_platform(store: Store, platform_id: int, values: dict[str, Any]) -> bool:
    """Change the given fields of a registration; False when there is no such registration."""
    changes = {key: value for key, value in values.items() if key in PLATFORM_FIELDS}
    with store.transaction() as db:
        current = db.execute(sa.select(lti_platforms).where(lti_platforms.c.id == platform_id)).first()
        if current is None:
            return False
        issuer = changes.get("issuer", current.issuer)
        client_id = changes.get("client_id", current.client_id)
        taken = db.execute(sa.select(lti_platforms.c.id).where(
            lti_platforms.c.issuer == issuer, lti_platforms.c.client_id == client_id,
            lti_platforms.c.id != platform_id)).first()
        if taken is not None:
            raise _clash(issuer, client_id)
        if changes:
            db.execute(lti_platforms.update().where(lti_platforms.c.id == platform_id).values(**changes))
    return True


def delete_platform(store: Store, platform_id: int) -> bool:
    """Remove a registration and the launches started for it; False when there is no such registration."""
    with store.transaction() as db:
        db.execute(lti_launch_states.delete().where(lti_launch_states.c.platform_id == platform_id))
        result = db.execute(lti_platforms.delete().where(lti_platforms.c.id == platform_id))
    return bool(result.rowcount)


def get_platform(store: Store, platform_id: int) -> dict[str, Any] | None:
    with store.engine.connect() as db:
        row = db.execute(sa.select(lti_platforms).where(lti_platforms.c.id == platform_id)).first()
    return None if row is None else _platform(row)


def list_platforms(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(lti_platforms).order_by(lti_platforms.c.name, lti_platforms.c.id)).all()
    return [_platform(row) for row in rows]


def find_platforms(store: Store, issuer: str, client_id: str | None = None) -> list[dict[str, Any]]:
    """The registrations of an issuer (with that client id, when given)."""
    query = sa.select(lti_platforms).where(lti_platforms.c.issuer == issuer).order_by(lti_platforms.c.id)
    if client_id is not None:
        query = query.where(lti_platforms.c.client_id == client_id)
    with store.engine.connect() as db:
        return [_platform(row) for row in db.execute(query).all()]


# --- launch states -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchState:
    state: str
    nonce: str
    platform_id: int
    target_link_uri: str
    expires_at: datetime
    used_at: datetime | None


Claim = Literal["claimed", "unknown", "used", "expired"]


def add_launch_state(store: Store, *, state: str, nonce: str, platform_id: int, target_link_uri: str,
                     expires_at: datetime) -> None:
    """Remember a login initiation; expired states are purged in the same transaction (no sweeper needed)."""
    now = datetime.now(UTC)
    with store.transaction() as db:
        db.execute(lti_launch_states.delete().where(lti_launch_states.c.expires_at < now))
        db.execute(lti_launch_states.insert().values(state=state, nonce=nonce, platform_id=platform_id,
                                                     target_link_uri=target_link_uri[:1000], expires_at=expires_at))


def claim_launch_state(store: Store, state: str) -> tuple[Claim, LaunchState | None]:
    """Mark a state used, once: the answer says whether it was claimed now, or why not.

    The check and the mark are one transaction (the writer's lock on SQLite, a row lock on
    PostgreSQL), and the update is conditional besides, so of two requests with the same
    state exactly one is ``claimed``.
    """
    now = datetime.now(UTC)
    with store.transaction() as db:
        row = db.execute(sa.select(lti_launch_states).where(lti_launch_states.c.state == state)
                         .with_for_update()).first()
        if row is None:
            return "unknown", None
        found = LaunchState(row.state, row.nonce, row.platform_id, row.target_link_uri, _aware(row.expires_at),
                            None if row.used_at is None else _aware(row.used_at))
        if found.used_at is not None:
            return "used", found
        if found.expires_at <= now:
            return "expired", found
        result = db.execute(lti_launch_states.update().where(lti_launch_states.c.state == state,
                                                             lti_launch_states.c.used_at.is_(None)).values(used_at=now))
        if not result.rowcount:
            return "used", found
    return "claimed", found


def purge_launch_states(store: Store) -> int:
    """Forget launch states past their expiry; how many."""
    with store.transaction() as db:
        result = db.execute(lti_launch_states.delete().where(lti_launch_states.c.expires_at < datetime.now(UTC)))
    return int(result.rowcount or 0)


# --- tool keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredToolKey:
    kid: str
    private_key: str  # encrypted by the service; the store never sees it in plain text
    created_at: datetime


def _active_keys(db: sa.Connection) -> list[StoredToolKey]:
    rows = db.execute(sa.select(tool_keys).where(tool_keys.c.retired_at.is_(None))
                      .order_by(tool_keys.c.created_at, tool_keys.c.kid)).all()
    return [StoredToolKey(row.kid, row.private_key, _aware(row.created_at)) for row in rows]


def active_tool_keys(store: Store) -> list[StoredToolKey]:
    """The keys not retired, oldest first."""
    with store.engine.connect() as db:
        return _active_keys(db)


def ensure_tool_key(store: Store, make: Callable[[], tuple[str, str]]) -> list[StoredToolKey]:
    """The active keys; when there are none, one made by ``make`` (kid, encrypted private key) is saved first.

    Two processes asking at once make one key between them: SQLite's writer's lock, and an
    advisory lock on PostgreSQL, let the second see the first one's key.
    """
    with store.engine.connect() as db:
        keys = _active_keys(db)
    if keys:
        return keys
    with store.transaction() as db:
        if db.dialect.name == "postgresql":
            db.exec_driver_sql(f"SELECT pg_advisory_xact_lock({TOOL_KEY_LOCK})")
        keys = _active_keys(db)
        if keys:
            return keys
        kid, private_key = make()
        db.execute(tool_keys.insert().values(kid=kid, private_key=private_key, created_at=datetime.now(UTC)))
        return _active_keys(db)


def retire_tool_key(store: Store, kid: str) -> bool:
    """Stop using and publishing a key (rotation); False when there is no such active key."""
    with store.transaction() as db:
        result = db.execute(tool_keys.update().where(tool_keys.c.kid == kid, tool_keys.c.retired_at.is_(None))
                            .values(retired_at=datetime.now(UTC)))
    return bool(result.rowcount)
