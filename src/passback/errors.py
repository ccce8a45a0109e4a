"""Every error passback raises on purpose, by kind, so each adapter translates them in one place.

An error's *kind* says what the caller can do about it (the CLI turns it into an exit
code, the REST API into a status): the thing asked for does not exist, the request is
not valid as given, a system could not be reached, or it clashes with what is there.

At the connector boundary the classes say what happened to a write, and the executor
branches on the class, never on a message or a catalogue code (dlt's terminal and
transient exceptions are the model): the target is gone, it already exists, the
destination refused it, or its outcome is unknown. A refusal carries the catalogue code
that picks the message a teacher reads; the code never steers control flow.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"
    CONFLICT = "conflict"


class PassbackError(Exception):
    """The base of every error passback means to show a person; the message names the fix."""

    kind: ErrorKind = ErrorKind.INVALID

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(PassbackError):
    kind = ErrorKind.NOT_FOUND


class Invalid(PassbackError):
    kind = ErrorKind.INVALID


class Unavailable(PassbackError):
    kind = ErrorKind.UNAVAILABLE


class Conflict(PassbackError):
    kind = ErrorKind.CONFLICT


# --- the connector boundary ------------------------------------------------------------


class SourceError(Unavailable):
    """The source could not be read; the message names what and how to fix it."""


class SourceNotFound(SourceError):
    """The source has no such course (or other record) as was asked for."""

    kind = ErrorKind.NOT_FOUND


class DestinationError(PassbackError):
    """Something the destination did not do. ``code`` is a catalogue code (the message key)."""

    default_code = "destination-rejected"

    def __init__(self, code: str | None, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code or self.default_code
        self.detail = detail
        self.status = status


class Refused(DestinationError):
    """The destination answered and refused the request; repeating it changes nothing."""

    kind = ErrorKind.INVALID


class AuthRefused(Refused):
    """The destination refused the connection's credentials."""

    default_code = "destination-auth"


class TargetGone(DestinationError):
    """The object written to is gone from the destination (deleted there by someone)."""

    kind = ErrorKind.NOT_FOUND
    default_code = "destination-assignment-missing"


class AlreadyExists(DestinationError):
    """An object with the same natural key is already in the destination."""

    kind = ErrorKind.CONFLICT
    default_code = "duplicate-destination-assignment"


class OutcomeUnknown(DestinationError):
    """No answer after every retry: the request may or may not have taken effect."""

    kind = ErrorKind.UNAVAILABLE
    default_code = "destination-unreachable"

    def __init__(self, detail: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(code, detail, status)


DestinationUnavailable = OutcomeUnknown
