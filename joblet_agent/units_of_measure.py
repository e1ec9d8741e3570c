"""Parsing of human quantities: sizes, durations and CPU lists. Pure functions, no I/O.

Each parser raises ValueError with a sentence saying what is allowed; callers add the field path.
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}
SIZE_RULE = "a size is a whole number of bytes or a number with K, M, G or T (e.g. 512M, 2G, 1.5GB)"


def parse_size(text: str | int, *, default_unit: str = "") -> int:
    """'512M', '2G', '1.5GB', '64MiB', 1048576 -> bytes (binary multiples, like systemd).

    default_unit applies to a bare number: rnx's --max-memory=512 means 512 MB, as in Joblet.
    """
    if isinstance(text, bool):
        raise ValueError(SIZE_RULE)
    if isinstance(text, int):
        text = str(text)
    match = _SIZE.match(text)
    if not match:
        raise ValueError(SIZE_RULE)
    number, unit, _suffix = match.groups()
    unit = unit.upper() or default_unit.upper()
    value = float(number) * (1024 ** _POWERS[unit])
    if value != int(value) and unit == "":
        raise ValueError(SIZE_RULE)
    return int(value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
DURATION_RULE = "a duration is a number of seconds or a number with ms, s, m, h or d (e.g. 30s, 5m)"


def parse_duration(text: str | int | float) -> float:
    """'30s', '5m', '1h', '90' (seconds) -> seconds."""
    if isinstance(text, bool):
        raise ValueError(DURATION_RULE)
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(DURATION_RULE)
    number, unit = match.groups()
    return float(number) * _SECONDS[unit]


CPUSET_RULE = "a CPU list is numbers and ranges separated by commas (e.g. 0-1,3)"


def parse_cpuset(text: str) -> tuple[int, ...]:
    """'0-1,3' -> (0, 1, 3). Rejects empty parts, reversed ranges and junk."""
    cpus: set[int] = set()
    for part in text.split(","):
        bounds = part.strip().split("-")
        if len(bounds) > 2 or not all(b.strip().isdigit() for b in bounds):
            raise ValueError(CPUSET_RULE)
        low, high = int(bounds[0]), int(bounds[-1])
        if low > high:
            raise ValueError(f"{CPUSET_RULE}; the range {part.strip()} is reversed")
        cpus.update(range(low, high + 1))
    return tuple(sorted(cpus))


def format_cpuset(cpus: tuple[int, ...]) -> str:
    """(0, 1, 3) -> '0-1,3'."""
    parts: list[str] = []
    start = prev = None
    for cpu in cpus:
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
        start = prev = cpu
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(parts)


def format_size(value: int) -> str:
    """Bytes -> the largest binary unit that keeps it whole-ish: 536870912 -> '512M'."""
    for unit, power in (("T", 4), ("G", 3), ("M", 2), ("K", 1)):
        scaled = value / 1024**power
        if scaled >= 1 and (scaled == int(scaled) or scaled >= 10):
            return f"{scaled:.0f}{unit}" if scaled == int(scaled) else f"{scaled:.1f}{unit}"
    return f"{value}B"
