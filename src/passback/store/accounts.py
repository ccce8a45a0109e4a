"""Accounts of the web product: users, their API tokens and the courses each may see.

Persistence only; the rules (password length, hashing, who may see what) are in
:mod:`passback.services.accounts`. Rows come back as dicts; a user's password hash is
returned only by :func:`user_row_by_username`, which only signing in needs, and a
token's hash never leaves this module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from passback.errors import Conflict, NotFound
from passback.store.db import Store
from passback.store.tables import api_tokens, course_access, users

PUBLIC_USER_COLUMNS = (users.c.id, users.c.username, users.c.display_name, users.c.is_admin, users.c.disabled,
                       users.c.lti_issuer, users.c.lti_subject, users.c.created_at,
                       users.c.password_hash.is_not(None).label("has_password"))
TOKEN_COLUMNS = (api_tokens.c.id, api_tokens.c.user_id, api_tokens.c.name, api_tokens.c.created_at,
                 api_tokens.c.last_used_at, api_tokens.c.revoked_at)
ACCESS_COLUMNS = (course_access.c.user_id, course_access.c.source_connection_id, course_access.c.course_id,
                  course_access.c.role, course_access.c.granted_by, course_access.c.at)
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is a hint; one write a minute per token is plenty


class UsernameTaken(Conflict):
    """Another user has the username (usernames are unique)."""


class LtiUserExists(Conflict):
    """A user with this LTI issuer and subject exists already (another launch created it first)."""


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; passback stores UTC only."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _user(row: sa.Row[Any]) -> dict[str, Any]:
    found = dict(row._mapping)
    found["is_admin"], found["disabled"] = bool(found["is_admin"]), bool(found["disabled"])
    found["has_password"] = bool(found["has_password"])
    found["created_at"] = aware(found["created_at"])
    return found


def _stamped(row: sa.Row[Any], *names: str) -> dict[str, Any]:
    found = dict(row._mapping)
    for name in names:
        found[name] = aware(found[name])
    return found


# --- users ----------------------------------------------------------------------------------------


def insert_user(store: Store, *, username: str, display_name: str, password_hash: str | None, is_admin: bool,
                lti_issuer: str | None = None, lti_subject: str | None = None) -> int:
    """A new user's id; :class:`UsernameTaken` or :class:`LtiUserExists` when the unique keys say no."""
    try:
        with store.transaction() as db:
            taken = db.execute(sa.select(users.c.id).where(users.c.username == username)).first()
            if taken is not None:
                raise UsernameTaken(f"A user named {username!r} exists already; choose another username.")
            return int(db.execute(users.insert().values(
                username=username, display_name=display_name, password_hash=password_hash, is_admin=is_admin,
                lti_issuer=lti_issuer, lti_subject=lti_subject, disabled=False, created_at=datetime.now(UTC),
            )).inserted_primary_key[0])
    except sa.exc.IntegrityError as exc:  # PostgreSQL: another process inserted between our look and our insert
        if lti_issuer is not None and user_by_lti(store, lti_issuer, lti_subject or "") is not None:
            raise LtiUserExists(f"A user for {lti_subject!r} of {lti_issuer} exists already.") from exc
        raise UsernameTaken(f"A user named {username!r} exists already; choose another username.") from exc


def user_by_id(store: Store, user_id: int) -> dict[str, Any] | None:
    with store.engine.connect() as db:
        row = db.execute(sa.select(*PUBLIC_USER_COLUMNS).where(users.c.id == user_id)).first()
    return None if row is None else _user(row)


def user_by_username(store: Store, username: str) -> dict[str, Any] | None:
    with store.engine.connect() as db:
        row = db.execute(sa.select(*PUBLIC_USER_COLUMNS).where(users.c.username == username)).first()
    return None if row is None else _user(row)


def user_row_by_username(store: Store, username: str) -> tuple[dict[str, Any], str | None] | None:
    """The user and their password hash: for checking a password, nothing else."""
    with store.engine.connect() as db:
        row = db.execute(sa.select(*PUBLIC_USER_COLUMNS, users.c.password_hash).where(users.c.username == username)).first()
    if row is None:
        return None
    found = _user(row)
    return {k: v for k, v in found.items() if k != "password_hash"}, found["password_hash"]


def user_by_lti(store: Store, issuer: str, subject: str) -> dict[str, Any] | None:
    with store.engine.connect() as db:
        row = db.execute(sa.select(*PUBLIC_USER_COLUMNS).where(users.c.lti_issuer == issuer,
                                                               users.c.lti_subject == subject)).first()
    return None if row is None else _user(row)


def usernames_like(store: Store, prefix: str) -> set[str]:
    """The usernames starting with ``prefix``: for making an LTI username unique."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with store.engine.connect() as db:
        return set(db.execute(sa.select(users.c.username).where(users.c.username.like(escaped + "%", escape="\\")))
                   .scalars())


def list_user_rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as db:
        return [_user(row) for row in db.execute(sa.select(*PUBLIC_USER_COLUMNS).order_by(users.c.username))]


def count_active_admins(store: Store) -> int:
    with store.engine.connect() as db:
        return int(db.execute(sa.select(sa.func.count()).select_from(users).where(
            users.c.is_admin.is_(True), users.c.disabled.is_(False))).scalar_one())


def update_user(store: Store, user_id: int, **values: Any) -> None:
    """Change a user's columns; :class:`~passback.errors.NotFound` when there is no such user."""
    with store.transaction() as db:
        changed = db.execute(users.update().where(users.c.id == user_id).values(**values))
    if changed.rowcount == 0:
        raise NotFound(f"No user with id {user_id}; list them with `passback users list`.")


def replace_password_hash(store: Store, user_id: int, old_hash: str, new_hash: str) -> None:
    """A rehash after signing in, only if nobody changed the password meanwhile."""
    with store.transaction() as db:
        db.execute(users.update().where(users.c.id == user_id, users.c.password_hash == old_hash)
                   .values(password_hash=new_hash))


# --- API tokens -----------------------------------------------------------------------------------


def insert_token(store: Store, *, user_id: int, name: str, token_hash: str) -> int:
    with store.transaction() as db:
        return int(db.execute(api_tokens.insert().values(
            user_id=user_id, name=name, token_hash=token_hash, created_at=datetime.now(UTC))).inserted_primary_key[0])


def token_holder(store: Store, token_hash: str) -> tuple[int, dict[str, Any]] | None:
    """(token id, its user) for a live token: not revoked, its user not disabled; else None."""
    query = (sa.select(api_tokens.c.id.label("token_id"), api_tokens.c.last_used_at.label("token_used_at"),
                       *PUBLIC_USER_COLUMNS)
             .join_from(api_tokens, users, api_tokens.c.user_id == users.c.id)
             .where(api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None),
                    users.c.disabled.is_(False)))
    with store.engine.connect() as db:
        row = db.execute(query).first()
    if row is None:
        return None
    found = dict(row._mapping)
    token_id, used_at = found.pop("token_id"), aware(found.pop("token_used_at"))
    now = datetime.now(UTC)
    if used_at is None or now - used_at >= TOUCH_EVERY:
        with store.transaction() as db:
            db.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=now))
    user = {**found, "is_admin": bool(found["is_admin"]), "disabled": bool(found["disabled"]),
            "has_password": bool(found["has_password"]), "created_at": aware(found["created_at"])}
    return int(token_id), user


def revoke_token_row(store: Store, token_id: int, user_id: int | None = None) -> bool:
    """Revoke a live token (of this user, when given); false when there was none to revoke."""
    query = api_tokens.update().where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
    if user_id is not None:
        query = query.where(api_tokens.c.user_id == user_id)
    with store.transaction() as db:
        return db.execute(query.values(revoked_at=datetime.now(UTC))).rowcount == 1


def list_token_rows(store: Store, user_id: int) -> list[dict[str, Any]]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(*TOKEN_COLUMNS).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id))
        return [_stamped(row, "created_at", "last_used_at", "revoked_at") for row in rows]


# --- course access --------------------------------------------------------------------------------


def _upsert(db: sa.Connection, values: dict[str, Any]) -> None:
    """Insert the grant, or change the role of the one there: one statement, so two at once cannot clash."""
    if db.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(course_access).values(**values)
    db.execute(statement.on_conflict_do_update(
        index_elements=[course_access.c.user_id, course_access.c.source_connection_id, course_access.c.course_id],
        set_={"role": statement.excluded.role, "granted_by": statement.excluded.granted_by,
              "at": statement.excluded.at}))


def upsert_access(store: Store, *, user_id: int, source_connection_id: int, course_id: str, role: str,
                  granted_by: str) -> None:
    """Grant (or re-grant with another role); NotFound when the user or connection is not there."""
    values = {"user_id": user_id, "source_connection_id": source_connection_id, "course_id": course_id, "role": role,
              "granted_by": granted_by[:100], "at": datetime.now(UTC)}
    try:
        with store.transaction() as db:
            _upsert(db, values)
    except sa.exc.IntegrityError as exc:  # a foreign key: the user or the connection is not there
        raise NotFound(f"Cannot grant course {course_id}: there is no user with id {user_id} or no connection "
                       f"with id {source_connection_id}. List them with `passback users list` and "
                       "`passback connections`.") from exc


def delete_access(store: Store, *, user_id: int, source_connection_id: int, course_id: str) -> bool:
    with store.transaction() as db:
        return db.execute(course_access.delete().where(
            course_access.c.user_id == user_id, course_access.c.source_connection_id == source_connection_id,
            course_access.c.course_id == course_id)).rowcount == 1


def access_rows(store: Store, user_id: int) -> list[dict[str, Any]]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(*ACCESS_COLUMNS).where(course_access.c.user_id == user_id).order_by(
            course_access.c.source_connection_id, course_access.c.course_id))
        return [_stamped(row, "at") for row in rows]


def access_role(store: Store, *, user_id: int, source_connection_id: int, course_id: str) -> str | None:
    with store.engine.connect() as db:
        return db.execute(sa.select(course_access.c.role).where(
            course_access.c.user_id == user_id, course_access.c.source_connection_id == source_connection_id,
            course_access.c.course_id == course_id)).scalar_one_or_none()
