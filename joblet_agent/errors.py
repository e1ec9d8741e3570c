"""The one error type of the agent.

Every failure that reaches a user carries a stable machine-readable code. The API maps codes to HTTP
statuses in exactly one table (api/errors.py); nothing else decides a status.
"""

from __future__ import annotations

import builtins
import reprlib
from enum import StrEnum
from typing import Any

# How much of an untrusted value an error message quotes (then '...'): enough to recognise it,
# never so much that a request can make its own refusal large (api-fuzz finding 2: a 387-byte
# YAML alias graph once came back as a 25 MB message).
EXCERPT_CHARS = 80  # a whole 64-character name (one over the usual limit) still shows


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
    TOO_MANY = "too-many"  # the caller holds as many of something as one caller may
    BUSY = "busy"  # the agent serves as many of something as it can; try again later
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
    return JobletError(
        ErrorCode.INVALID, f"{field}: {excerpt(value)} is not valid; {allowed}", hint=None
    )


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A value from a request, as an error message quotes it: its repr cut to `limit` characters
    and '...'. Never the whole repr: nested values are walked only a few levels and items deep
    (expanding a YAML alias graph is exponential), long strings and huge integers are never
    rendered whole (str() of a 4,300-digit int raises; slicing keeps it linear)."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _ShortRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 8
        self.maxstring = self.maxother = EXCERPT_CHARS

    def repr_str(self, x: str, level: int) -> str:
        cut = x[: self.maxstring]
        return builtins.repr(cut) + ("..." if len(x) > len(cut) else "")

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 200:  # about 60 digits: converting a huge int is quadratic
            return f"<a {x.bit_length()}-bit integer>"
        return builtins.repr(x)

    def repr_instance(self, x: Any, level: int) -> str:
        if isinstance(x, bytes | bytearray):  # YAML's !!binary
            cut = bytes(x[: self.maxstring])
            return builtins.repr(cut) + ("..." if len(x) > len(cut) else "")
        return super().repr_instance(x, level)


_SHORT = _ShortRepr()
