"""Who may use the web product, and which courses each person may see.

Three ways in, one kind of user:

* a password (argon2id, argon2-cffi's default parameters), for district staff who sign
  in to passback itself; :func:`authenticate` costs the same whether or not the user
  exists, so a sign-in form does not tell which usernames are real;
* an LTI launch from the LMS (:func:`user_for_launch`): the user is keyed by the
  platform's issuer and subject, and never has a password;
* an API token for scripts (:func:`issue_token`): shown once, stored only as its
  SHA-256 (a token is random and long, so a slow hash would buy nothing).

Admins see every course; everyone else sees the courses granted to them, by an admin
(:func:`grant_course`) or by an LTI launch. No password, hash or token is ever logged
or returned after it was created.
"""

from __future__ import annotations

import hashlib
import secrets
from functools import lru_cache
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from passback.errors import Conflict, Invalid, NotFound
from passback.store import accounts as repo
from passback.store.connections import UnknownConnection, connection_refs
from passback.store.db import Store

log = structlog.get_logger("passback.accounts")

MIN_PASSWORD = 12
TOKEN_PREFIX = "pb_"
ROLES = ("Instructor", "TeachingAssistant", "Administrator", "Learner")
STAFF_ROLES = frozenset({"Instructor", "TeachingAssistant", "Administrator"})  # a Learner grant shows no grades
LTI_PREFIX = "lti:"

_hasher = PasswordHasher()


UsernameTaken = repo.UsernameTaken  # a Conflict: the username is another user's


class UnknownUser(NotFound):
    """No user of that name or id."""


class AccountDisabled(Invalid):
    """The user exists and is disabled; an admin can enable them again."""


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash to verify against when the user is unknown, so the answer takes as long as for a real one."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"The password for {username!r} is {len(password)} characters long; it must be at least "
                      f"{MIN_PASSWORD}. A few unrelated words make a long password that is easy to type.")


def _check_username(username: str) -> str:
    name = username.strip()
    if not name or len(name) > 200 or any(ch.isspace() for ch in name):
        raise Invalid(f"The username {username!r} is not usable: give 1 to 200 characters without spaces.")
    if name.startswith(LTI_PREFIX):
        raise Invalid(f"Usernames starting with {LTI_PREFIX!r} are kept for people who arrive by an LTI launch; "
                      "choose another username.")
    return name


# --- users ----------------------------------------------------------------------------------------


def add_user(store: Store, *, username: str, display_name: str | None = None, password: str | None,
             is_admin: bool = False) -> dict[str, Any]:
    """A user who signs in with a password (``None``: none yet, e.g. one who only uses API tokens).

    Raises :class:`~passback.errors.Conflict` for a username taken and
    :class:`~passback.errors.Invalid` for a password under 12 characters.
    """
    name = _check_username(username)
    if password is not None:
        _check_password(password, name)
    password_hash = None if password is None else _hasher.hash(password)
    user_id = repo.insert_user(store, username=name, display_name=(display_name or name).strip()[:300] or name,
                               password_hash=password_hash, is_admin=is_admin)
    log.info("user_added", user_id=user_id, username=name, is_admin=is_admin)
    return _require(store, user_id)


def set_password(store: Store, user_id: int, password: str | None) -> dict[str, Any]:
    """Set (or, with ``None``, clear) a user's password; API tokens they hold stay valid."""
    user = _require(store, user_id)
    if password is not None:
        _check_password(password, user["username"])
    repo.update_user(store, user_id, password_hash=None if password is None else _hasher.hash(password))
    log.info("password_set", user_id=user_id, cleared=password is None)
    return _require(store, user_id)


def authenticate(store: Store, username: str, password: str) -> dict[str, Any] | None:
    """The user whose username and password these are, or None (unknown, wrong, no password, disabled).

    Unknown users are verified against a dummy hash, so the time taken does not tell
    which usernames exist. A hash made with older parameters is replaced on success.
    """
    found = repo.user_row_by_username(store, username.strip())
    user, stored = found if found is not None else (None, None)
    try:
        _hasher.verify(stored or _dummy_hash(), password)
        verified = stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        verified = False
    if user is None or not verified or user["disabled"]:
        log.info("sign_in_refused", known=user is not None, disabled=bool(user and user["disabled"]))
        return None
    if stored is not None and _hasher.check_needs_rehash(stored):
        repo.replace_password_hash(store, user["id"], stored, _hasher.hash(password))
    return user


def get_user(store: Store, user_id: int) -> dict[str, Any] | None:
    """The user (never a hash), or None: a session may outlive its user."""
    return repo.user_by_id(store, user_id)


def get_user_by_username(store: Store, username: str) -> dict[str, Any] | None:
    return repo.user_by_username(store, username.strip())


def require_user(store: Store, username_or_id: str | int) -> dict[str, Any]:
    """The user by username or id, or :class:`UnknownUser` naming how to find them."""
    found = repo.user_by_id(store, username_or_id) if isinstance(username_or_id, int) else \
        repo.user_by_username(store, username_or_id.strip())
    if found is None:
        raise UnknownUser(f"No user {username_or_id!r}. List them with `passback users list`, or add one with "
                          "`passback users add USERNAME`.")
    return found


def _require(store: Store, user_id: int) -> dict[str, Any]:
    return require_user(store, user_id)


def list_users(store: Store) -> list[dict[str, Any]]:
    """Every user by username, without password hashes (``has_password`` says whether one is set)."""
    return repo.list_user_rows(store)


def _keep_an_admin(store: Store, user: dict[str, Any]) -> None:
    """Refuse to take away the last working admin: nobody could then manage the district."""
    if user["is_admin"] and not user["disabled"] and repo.count_active_admins(store) <= 1:
        raise Conflict(f"{user['username']!r} is the only admin who is not disabled; make another user an admin "
                       "first (`passback users add NAME --admin`).")


def set_admin(store: Store, user_id: int, is_admin: bool) -> dict[str, Any]:
    user = _require(store, user_id)
    if not is_admin:
        _keep_an_admin(store, user)
    repo.update_user(store, user_id, is_admin=is_admin)
    log.info("admin_set", user_id=user_id, is_admin=is_admin)
    return _require(store, user_id)


def disable_user(store: Store, user_id: int, disabled: bool = True) -> dict[str, Any]:
    """Disable (or enable again) a user: a disabled user cannot sign in, launch or use a token."""
    user = _require(store, user_id)
    if disabled:
        _keep_an_admin(store, user)
    repo.update_user(store, user_id, disabled=disabled)
    log.info("user_disabled" if disabled else "user_enabled", user_id=user_id)
    return _require(store, user_id)


# --- LTI launches ---------------------------------------------------------------------------------


def _free_username(store: Store, wanted: str) -> str:
    taken = repo.usernames_like(store, wanted)
    if wanted not in taken:
        return wanted
    return next(f"{wanted}-{n}" for n in range(2, len(taken) + 3) if f"{wanted}-{n}" not in taken)


def user_for_launch(store: Store, *, issuer: str, subject: str, name: str | None, login: str | None) -> dict[str, Any]:
    """The user of an LTI launch, found by (issuer, subject) or created without a password.

    The username is ``lti:{login}`` (``-2``, ``-3`` ... when taken); the display name
    follows the LMS's on each launch. A disabled user raises :class:`AccountDisabled`.
    """
    if not issuer or not subject:
        raise Invalid("An LTI launch must carry the platform's issuer (iss) and the user's subject (sub).")
    display = (name or login or subject).strip()[:300] or subject
    for _ in range(5):  # another launch of the same person (or a username clash) may win a race; look again
        user = repo.user_by_lti(store, issuer, subject)
        if user is not None:
            if user["disabled"]:
                raise AccountDisabled(f"The account {user['username']!r} is disabled in passback; ask a district "
                                      "admin to enable it.")
            if user["display_name"] != display:
                repo.update_user(store, user["id"], display_name=display)
                user = {**user, "display_name": display}
            return user
        username = _free_username(store, (LTI_PREFIX + (login or subject).strip())[:190])
        try:
            user_id = repo.insert_user(store, username=username, display_name=display, password_hash=None,
                                       is_admin=False, lti_issuer=issuer, lti_subject=subject)
        except Conflict:
            continue
        log.info("lti_user_added", user_id=user_id, username=username)
        return _require(store, user_id)
    raise Conflict(f"Could not create a user for {subject!r} of {issuer}; launch again.")


# --- course access --------------------------------------------------------------------------------


def source_connection_id(store: Store, name_or_id: str | int) -> int:
    """A source connection's id from its name (or id): the CLI and forms name connections."""
    for ref in connection_refs(store):
        if ref.id == name_or_id or ref.name == name_or_id:
            return ref.id
    raise UnknownConnection(f"No connection {name_or_id!r}. List them with `passback connections`.")


def grant_course(store: Store, *, user_id: int, source_connection_id: int, course_id: str, role: str,
                 granted_by: str) -> dict[str, Any]:
    """Let the user see a course of a source connection in this role (a second grant changes the role)."""
    if role not in ROLES:
        raise Invalid(f"The role {role!r} is not one passback knows; use one of {', '.join(ROLES)}.")
    if not str(course_id).strip():
        raise Invalid("Name the course with its id in the source (e.g. --course 1234).")
    repo.upsert_access(store, user_id=user_id, source_connection_id=source_connection_id, course_id=str(course_id),
                       role=role, granted_by=granted_by)
    log.info("course_granted", user_id=user_id, source_connection_id=source_connection_id, course_id=course_id,
             role=role, granted_by=granted_by)
    return {"user_id": user_id, "source_connection_id": source_connection_id, "course_id": str(course_id),
            "role": role, "granted_by": granted_by}


def revoke_course(store: Store, *, user_id: int, source_connection_id: int, course_id: str) -> bool:
    """Take a course away from a user; false when it was not granted."""
    removed = repo.delete_access(store, user_id=user_id, source_connection_id=source_connection_id,
                                 course_id=str(course_id))
    log.info("course_revoked", user_id=user_id, source_connection_id=source_connection_id, course_id=course_id,
             removed=removed)
    return removed


def courses_of(store: Store, user_id: int) -> list[dict[str, Any]]:
    """The courses granted to the user: source_connection_id, course_id, role, granted_by, at."""
    return repo.access_rows(store, user_id)


def role_in(user: dict[str, Any], source_connection_id: int, course_id: str, store: Store) -> str | None:
    """The user's role in the course: the one granted; for an admin without a grant, "Administrator"."""
    if user.get("disabled"):
        return None
    granted = repo.access_role(store, user_id=user["id"], source_connection_id=source_connection_id,
                               course_id=str(course_id))
    return granted or ("Administrator" if user.get("is_admin") else None)


def can_access(user: dict[str, Any], source_connection_id: int, course_id: str, store: Store) -> bool:
    """May the user see and sync this course? Admins: every course; others: a staff role granted in it."""
    if user.get("disabled"):
        return False
    if user.get("is_admin"):
        return True
    return role_in(user, source_connection_id, course_id, store) in STAFF_ROLES


# --- API tokens -----------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(store: Store, *, user_id: int, name: str) -> str:
    """A new API token for the user: returned this once; passback keeps only its SHA-256."""
    _require(store, user_id)
    label = name.strip()
    if not label or len(label) > 200:
        raise Invalid("Name the token (1 to 200 characters) after what uses it, e.g. --name nightly-export.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = repo.insert_token(store, user_id=user_id, name=label, token_hash=_digest(token))
    log.info("token_issued", user_id=user_id, token_id=token_id, name=label)
    return token


def user_for_token(store: Store, token: str) -> dict[str, Any] | None:
    """The user of a live token (not revoked, user not disabled), or None; notes when it was last used."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    found = repo.token_holder(store, _digest(token))
    return None if found is None else found[1]


def revoke_token(store: Store, token_id: int, *, user_id: int | None = None) -> bool:
    """Revoke a token (only if it is this user's, when ``user_id`` is given); false when nothing was revoked."""
    revoked = repo.revoke_token_row(store, token_id, user_id)
    log.info("token_revoked", token_id=token_id, revoked=revoked)
    return revoked


def list_tokens(store: Store, user_id: int) -> list[dict[str, Any]]:
    """The user's tokens: id, name, created_at, last_used_at, revoked_at (never the token or its hash)."""
    return repo.list_token_rows(store, user_id)
