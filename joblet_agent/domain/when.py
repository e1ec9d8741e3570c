"""When a job runs: `--schedule WHEN`, its forms and its start time. Pure.

WHEN is one of:
- relative: `30s`, `5m`, `1h30m`, `in 10m` (units ms, s, m or min, h, d; at least one);
- absolute: RFC 3339 with its offset (`2026-12-24T18:00:00Z`, `...+01:00`), or
  `2026-12-24 18:00[:00]` in the host's time zone, as systemd reads it (adapters/calendar.py);
- recurring: anything else is taken for a systemd calendar expression (`hourly`, `*:0/15`,
  `Mon..Fri *-*-* 02:00`), which only systemd judges (systemd-analyze calendar, the same parser
  as PID 1's OnCalendar=): there is no calendar parser here.

A one-shot WHEN makes a job SCHEDULED for its time (POST /v1/jobs); a recurring one makes a
schedule (POST /v1/schedules), whose every firing makes a job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from joblet_agent.domain.quantities import MAX_DURATION_SEC

MAX_WHEN_CHARS = 256
# Jobs wait SCHEDULED at most this far ahead (systemd's calendar reaches 2199).
MAX_AHEAD = timedelta(days=10 * 366)
WHEN_RULE = (
    "a relative time (30s, 5m, 1h30m, in 10m), an absolute one (RFC 3339 like "
    "2026-12-24T18:00:00Z, or 2026-12-24 18:00 in the host's time zone), or a systemd "
    "calendar expression for a recurring schedule (hourly, *:0/15, 'Mon..Fri *-*-* 02:00'; "
    "systemd.time(7))"
)

_PART = r"(\d{1,9}(?:\.\d{1,6})?)\s*(ms|s|sec|m|min|h|d)"
_RELATIVE = re.compile(rf"^(?:in\s+)?(-\s*)?((?:{_PART}\s*)+)$", re.IGNORECASE)
_PARTS = re.compile(_PART, re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})$"
)
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2})?$")


class WhenKind(StrEnum):
    RELATIVE = "relative"  # seconds from now
    ABSOLUTE = "absolute"  # an instant (its offset given)
    LOCAL = "local"  # a date and time in the host's time zone: systemd reads it
    CALENDAR = "calendar"  # recurring: a systemd calendar expression


@dataclass(frozen=True, slots=True)
class When:
    """A WHEN as given, classified; `seconds` (relative) or `at` (absolute) when known."""

    kind: WhenKind
    text: str
    seconds: float | None = None
    at: datetime | None = None

    @property
    def one_shot(self) -> bool:
        return self.kind is not WhenKind.CALENDAR


def parse_when(value: object) -> When:
    """Classify a WHEN (ValueError says what is allowed). A calendar expression is not judged
    here: systemd does it (adapters/calendar.py)."""
    if not isinstance(value, str):
        raise ValueError(WHEN_RULE)
    text = value.strip()
    if not text or len(text) > MAX_WHEN_CHARS or not text.isprintable():
        raise ValueError(f"at most {MAX_WHEN_CHARS} printable characters: {WHEN_RULE}")
    relative = _RELATIVE.match(text)
    if relative:
        if relative.group(1):
            raise ValueError(f"a negative duration; a schedule is in the future: {WHEN_RULE}")
        seconds = sum(
            float(number) * _SECONDS[unit.lower()] for number, unit in _PARTS.findall(text)
        )
        if not 0 < seconds <= MAX_DURATION_SEC:
            raise ValueError(f"more than 0 and at most {MAX_DURATION_SEC} seconds ahead")
        return When(WhenKind.RELATIVE, text, seconds=seconds)
    if _RFC3339.match(text):
        try:
            at = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"no such date or time: {WHEN_RULE}") from None
        return When(WhenKind.ABSOLUTE, text, at=at.astimezone(UTC))
    if _LOCAL.match(text):
        try:
            datetime.fromisoformat(text)  # a real date and time; its zone is systemd's to add
        except ValueError:
            raise ValueError(f"no such date or time: {WHEN_RULE}") from None
        return When(WhenKind.LOCAL, text)
    return When(WhenKind.CALENDAR, text)


def start_time(when: When, now: datetime) -> datetime:
    """The instant a one-shot WHEN names (LOCAL ones resolved first: `at` set)."""
    if when.kind is WhenKind.RELATIVE:
        assert when.seconds is not None
        return now + timedelta(seconds=when.seconds)
    assert when.at is not None, f"{when.kind} WHEN without its instant"
    return when.at


def check_ahead(field: str, when: When, at: datetime, now: datetime) -> None:
    """A start time must be in the future, and not absurdly far: ValueError otherwise."""
    if at <= now:
        raise ValueError(
            f"{at.isoformat()} is in the past (now {now.isoformat(timespec='seconds')}); "
            f"{field} is a time to come: {WHEN_RULE}"
        )
    if at - now > MAX_AHEAD:
        raise ValueError(f"more than {MAX_AHEAD.days} days ahead")


def on_calendar(at: datetime) -> str:
    """An instant as a systemd calendar expression (OnCalendar=) that elapses exactly once."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
