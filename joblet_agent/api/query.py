"""Whole numbers in query strings: ASCII digits only, within bounds, checked before int().

str.isdigit() is true for '²' and '٣', which int() refuses or reads as 3; an unbounded offset
overflowed SQLite's 64-bit integers (api-fuzz findings 6 and 7).
"""

from __future__ import annotations

from collections.abc import Mapping

from joblet_agent.errors import ErrorCode, JobletError, excerpt


def query_int(query: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    text = query.get(key)
    if text is None:
        return default
    return whole_number(key, text, low, high)


def whole_number(key: str, text: str, low: int, high: int) -> int:
    """`text` as an int from `low` to `high`, or a 400 naming `key`, an excerpt and the bounds."""
    ascii_digits = text.isascii() and text.isdigit()
    if not ascii_digits or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise JobletError(
            ErrorCode.INVALID,
            f"{key}: {excerpt(text)} is not valid; a whole number between {low} and {high}",
        )
    return int(text)


def query_text(query: Mapping[str, str], key: str, most: int) -> str | None:
    """A text parameter of at most `most` characters (an owner's name, say), or None."""
    text = query.get(key)
    if text is not None and len(text) > most:
        raise JobletError(
            ErrorCode.INVALID,
            f"{key}: {excerpt(text)} is not valid; at most {most} characters",
        )
    return text
