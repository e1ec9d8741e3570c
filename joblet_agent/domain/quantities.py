"""Parsing of human quantities: sizes, durations and CPU lists. Pure functions, no I/O.

Each parser raises ValueError with a sentence saying what is allowed; callers add the field path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

# No real size or duration needs more digits; more only cost time (int() of a long string is
# quadratic) or overflow a float to infinity (api-fuzz finding 8).
MAX_DIGITS = 24
MAX_SIZE = 2**63 - 1  # systemd's byte counts are 64-bit; anything above means "no limit" to it
MAX_DURATION_SEC = 100 * 365 * 86400  # systemd's timestamps are 64-bit microseconds
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
        if not 0 <= text <= MAX_SIZE:
            raise ValueError(f"a size is from 0 to {MAX_SIZE} bytes")
        text = str(text)
    match = _SIZE.match(text)
    if not match:
        raise ValueError(SIZE_RULE)
    number, unit, _suffix = match.groups()
    if len(number) > MAX_DIGITS:
        raise ValueError(f"{SIZE_RULE}; at most {MAX_DIGITS} digits")
    unit = unit.upper() or default_unit.upper()
    multiple = 1024 ** _POWERS[unit]
    if "." in number:
        scaled = float(number) * multiple
        if scaled != int(scaled) and unit == "":
            raise ValueError(SIZE_RULE)
        value = int(scaled)
    else:
        value = int(number) * multiple  # exact: a float rounds 2**63 - 1 up to 2**63
    if value > MAX_SIZE:
        raise ValueError(f"a size is at most {MAX_SIZE} bytes (8E)")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
DURATION_RULE = "a duration is a number of seconds or a number with ms, s, m, h or d (e.g. 30s, 5m)"


def parse_duration(text: str | int | float) -> float:
    """'30s', '5m', '1h', '90' (seconds) -> seconds, at most MAX_DURATION_SEC."""
    if isinstance(text, bool):
        raise ValueError(DURATION_RULE)
    if isinstance(text, int | float):
        if isinstance(text, float) and math.isnan(text):
            return _bounded_seconds(text)
        return _bounded_seconds(float(text) if -1e18 < text < 1e18 else math.inf)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(DURATION_RULE)
    number, unit = match.groups()
    if len(number) > MAX_DIGITS:
        raise ValueError(f"{DURATION_RULE}; at most {MAX_DIGITS} digits")
    return _bounded_seconds(float(number) * _SECONDS[unit])


def _bounded_seconds(seconds: float) -> float:
    if math.isnan(seconds):
        raise ValueError(f"{DURATION_RULE}; not a number")
    if not math.isfinite(seconds) or seconds > MAX_DURATION_SEC:
        raise ValueError(f"a duration is at most {MAX_DURATION_SEC} seconds (100 years)")
    return seconds


CPUSET_RULE = "a CPU list is numbers and ranges separated by commas (e.g. 0-1,3)"
_CPU_NUMBER = re.compile(r"^[0-9]{1,10}$")  # Linux numbers CPUs with 32-bit ints


def parse_cpuset(text: str, *, available: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """'0-1,3' -> (0, 1, 3). Rejects empty parts, reversed ranges and junk.

    `available`: the CPUs that exist (a request's list is checked against the host's). A number
    past the highest of them is refused before any set is built, so a range costs the same
    whatever its length ('0-4294967295' once built 4.3 billion ints: audit H6)."""
    highest = max(available, default=-1) if available is not None else None
    cpus: set[int] = set()
    for part in text.split(","):
        bounds = [b.strip() for b in part.strip().split("-")]
        if len(bounds) > 2 or not all(_CPU_NUMBER.match(b) for b in bounds):
            raise ValueError(CPUSET_RULE)
        low, high = int(bounds[0]), int(bounds[-1])
        if low > high:
            raise ValueError(f"{CPUSET_RULE}; the range {part.strip()} is reversed")
        if highest is not None and high > highest:
            # The first CPU of the range that is missing, found among the host's CPUs only.
            known = set(available or ())
            first = next((c for c in range(low, highest + 1) if c not in known), None)
            raise ValueError(
                _no_such_cpu(max(low, highest + 1) if first is None else first, available or ())
            )
        cpus.update(range(low, high + 1))
    if available is not None:
        check_cpus(cpus, available)
    return tuple(sorted(cpus))


def check_cpus(cpus: Iterable[int], available: tuple[int, ...]) -> None:
    """Refuse the first CPU number that is not among `available`."""
    missing = sorted(set(cpus) - set(available))
    if missing:
        raise ValueError(_no_such_cpu(missing[0], available))


def _no_such_cpu(cpu: int, available: tuple[int, ...]) -> str:
    return f"CPU {cpu} does not exist; this host has {format_cpuset(available) or 'none'}"


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
