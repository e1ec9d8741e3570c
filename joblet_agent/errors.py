"""The one error type of the agent.

Every failure that reaches a user carries a stable machine-readable code. The API maps codes to HTTP
statuses in exactly one table (api/errors.py); nothing else decides a status.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID = "invalid"  # a request, config file or spec field is malformed or out of range
    CONFIG = "config"  # the agent's own configuration is broken
    NOT_FOUND = "not-found"
    AMBIGUOUS = "ambiguous"  # an id prefix matches several jobs
    CONFLICT = "conflict"  # the object is in the wrong state for the request
    UNSUPPORTED = "unsupported"  # the host cannot enforce what was asked
    SYSTEMD = "systemd"  # PID 1 refused or failed a request
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too-large"
    METHOD = "method-not-allowed"
    INTERNAL = "internal"


class JobletError(Exception):
    """An error with a code, a message for people and an optional hint on what to do."""

    def __init__(self, code: ErrorCode, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str | None]:
        return {"code": str(self.code), "message": self.message, "hint": self.hint}


def invalid(field: str, value: object, allowed: str) -> JobletError:
    """The single shape of a bad-value message: the field, the value, and what is allowed."""
    return JobletError(ErrorCode.INVALID, f"{field}: {value!r} is not valid; {allowed}", hint=None)
