"""Typed dependencies of the routes: the store, the settings, who is asking, and the course they may act on.

Who is asking: an API token (``Authorization: Bearer pb_...``) for scripts, else the
signed session cookie of a person who signed in or launched from the LMS. A teacher may
act on the courses they launched from or were assigned; an admin on every course.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from passback.errors import PassbackError
from passback.services import accounts
from passback.services.courses import CourseRef, course_ref
from passback.services.live import LiveRuns
from passback.settings import Settings
from passback.store.db import Store


class SignInRequired(PassbackError):
    """No session and no API token: pages send the person to sign in, the API answers 401."""


class Forbidden(PassbackError):
    """Signed in, but not allowed this (another teacher's course, an admin page)."""


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_live(request: Request) -> LiveRuns:
    return request.app.state.live


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
LiveDep = Annotated[LiveRuns, Depends(get_live)]


def optional_user(request: Request, store: StoreDep) -> dict[str, Any] | None:
    user = _user(request, store)
    request.state.user = user
    return user


def _user(request: Request, store: Store) -> dict[str, Any] | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = accounts.user_for_token(store, header[7:].strip())
        if user is None:
            raise SignInRequired("The API token is unknown or revoked; issue a new one with "
                                 "`passback users token USERNAME --name NAME`.")
        return user
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = accounts.get_user(store, int(user_id))
    if user is None or user.get("disabled"):
        request.session.clear()
        return None
    return user


def current_user(user: Annotated[dict[str, Any] | None, Depends(optional_user)]) -> dict[str, Any]:
    if user is None:
        raise SignInRequired("Sign in first, or open Grade Sync from your course in the LMS.")
    return user


UserDep = Annotated[dict[str, Any], Depends(current_user)]


def admin_user(user: UserDep) -> dict[str, Any]:
    if not user.get("is_admin"):
        raise Forbidden("Only a district admin may open this.")
    return user


AdminDep = Annotated[dict[str, Any], Depends(admin_user)]


def course(source: str, course_id: str, user: UserDep, store: StoreDep, settings: SettingsDep) -> CourseRef:
    """The course in the path, if this person may act on it."""
    ref = course_ref(store, settings, source, course_id)
    if not accounts.can_access(user, ref.source.id, ref.course_id, store):
        raise Forbidden(f"You have no access to course {course_id} of {ref.source.name}. Open it from the course "
                        "in the LMS, or ask a district admin to assign it to you.")
    return ref


CourseDep = Annotated[CourseRef, Depends(course)]


def actor_of(user: dict[str, Any]) -> str:
    """Who a run or a setup change is attributed to."""
    return str(user.get("username"))[:100]


def learner_course(request: Request, source: str, course_id: str, user: UserDep, store: StoreDep,
                   settings: SettingsDep) -> tuple[CourseRef, str]:
    """The course in the path and the student this person is in it, from their launch as a learner."""
    learner = request.session.get("learner") or {}
    ref = course_ref(store, settings, source, course_id)
    if learner.get("source") != ref.source.id or learner.get("course") != ref.course_id or not learner.get("student"):
        raise Forbidden("This page shows a student their own grades; open Grade Sync from the course in the LMS "
                        "as a student of it.")
    return ref, str(learner["student"])


LearnerDep = Annotated[tuple[CourseRef, str], Depends(learner_course)]
