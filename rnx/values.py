"""Parsing of rnx flag values into API fields. Every bad value is refused, naming the flag.

(Joblet silently ignores non-numeric values; rnx never does.)
"""

from __future__ import annotations

import re

import click

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)
_POWER = {"K": 1, "M": 2, "G": 3, "T": 4}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def size(flag: str, text: str, *, bare_unit: str) -> int:
    """'512' (in bare_unit), '512M', '2G', '1.5GB' -> bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise click.BadParameter(
            f"{text!r} is not a size; use a number ({bare_unit} when bare) or a number with "
            "K, M, G or T, like 512M or 2G",
            param_hint=flag,
        )
    number, unit, _ = match.groups()
    unit = unit.upper() or bare_unit
    value = float(number) * 1024 ** _POWER.get(unit, 0)
    if value < 1:
        raise click.BadParameter(f"{text!r} must be more than zero", param_hint=flag)
    return int(value)


def duration(flag: str, text: str) -> float:
    """'30s', '5m', '1h', '90' (seconds) -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(
            f"{text!r} is not a duration; use seconds or a number with ms, s, m, h or d, "
            "like 30s or 5m",
            param_hint=flag,
        )
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


def positive_number(flag: str, text: str, *, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise click.BadParameter(f"{text!r} is not {kind}", param_hint=flag) from None
    if value <= 0:
        raise click.BadParameter(f"{text!r} must be more than zero", param_hint=flag)
    return value


def key_value(flag: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint=flag)
    return key, value


def cpu_percent(max_cpu: str | None, cpus: str | None) -> int | None:
    """--max-cpu is percent of one core (100 = one core); --cpus is cores, as in Docker."""
    if max_cpu is not None and cpus is not None:
        raise click.UsageError("give --max-cpu (percent of one core) or --cpus (cores), not both")
    if max_cpu is not None:
        return int(positive_number("--max-cpu", max_cpu, integer=True))
    if cpus is not None:
        return max(1, round(positive_number("--cpus", cpus, integer=False) * 100))
    return None


PRIORITY_NAMES = {"low": 2, "normal": 5, "high": 8}


def priority(text: str) -> int:
    """low, normal, high (2, 5, 8) or a whole number (the agent checks it is 0-9)."""
    name = text.strip().lower()
    if name in PRIORITY_NAMES:
        return PRIORITY_NAMES[name]
    try:
        return int(name)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a priority; use low, normal, high or 0-9 (higher runs first)",
            param_hint="--priority",
        ) from None


# The agent's domain/when.py tells one time from a calendar expression the same way (and judges
# both): a relative time or a date and time is one time, anything else a calendar expression.
_RELATIVE = re.compile(r"^(in\s+)?-?\s*(\d+(\.\d+)?\s*(ms|s|sec|m|min|h|d)\s*)+$", re.IGNORECASE)
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def recurring(when: str) -> bool:
    """Whether --schedule WHEN is a calendar expression (a schedule: rnx schedule) rather than
    one start time (a job SCHEDULED for it)."""
    text = when.strip()
    return not (_RELATIVE.match(text) or _DATE_TIME.match(text))
