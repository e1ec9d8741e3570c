"""The one reader of request bodies: JSON bodies whole, with every bound checked before parsing,
and streamed bodies (uploads, runtime archives) chunk by chunk.

A JSON body is refused (never a 500) when it is larger than the endpoint allows (413), not UTF-8,
nested deeper than MAX_JSON_DEPTH, or holds a number Python cannot keep finite and exact
(`NaN`, `Infinity`, `1e400`, a 400-digit integer): each a 400 naming the problem. Depth is
measured on the bytes before json.loads runs, so its recursion can never be reached.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import AsyncIterator
from itertools import accumulate, count
from typing import Any

from aiohttp import ClientPayloadError, web

from joblet_agent.errors import ErrorCode, JobletError, excerpt

MAX_JSON_BYTES = 64 * 1024  # a job request, a volume, a network, an upload's announcement
MAX_JSON_DEPTH = 32  # the deepest real body (a job's volumes) is 3 levels
MAX_NUMBER_CHARS = 32  # int64 has 19 digits; a float's exponent keeps it short
_READ_CHUNK = 64 * 1024

# A JSON string, escapes included: what the depth count skips (brackets inside strings). The
# closing quote is optional and the quantifiers possessive, so an unterminated string ends the
# scan instead of being retried from every later quote (that form took 16 s on 64 KiB).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
# Brackets weigh 2 when they open and 0 when they close; everything else is deleted. The
# running sum minus the count so far is then the depth, computed in C (accumulate, map).
_OTHER_BYTES = bytes(b for b in range(256) if b not in b"[]{}")
_WEIGHTS = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")


async def json_body(request: web.Request, *, most: int = MAX_JSON_BYTES) -> Any:
    """The request's body as JSON, at most `most` bytes of it."""
    return parse_json(await _read_whole(request, most))


def parse_json(raw: bytes) -> Any:
    """Bytes -> a JSON value, refusing what json.loads would fail on with anything but a 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobletError(
            ErrorCode.INVALID,
            f"request body: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "send JSON encoded as UTF-8",
        ) from None
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise JobletError(
            ErrorCode.INVALID,
            f"request body: nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects "
            f"({depth})",
        )
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_short_int
        )
    except json.JSONDecodeError as exc:
        raise JobletError(ErrorCode.INVALID, f"request body: not JSON: {exc}") from None
    except _BadNumber as exc:
        raise JobletError(ErrorCode.INVALID, f"request body: {exc}") from None


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (brackets inside strings not counted).
    Linear, in C: no Python loop per byte, no recursion."""
    brackets = _STRING.sub(b"", raw).translate(_WEIGHTS, _OTHER_BYTES)
    return max(map(operator.sub, accumulate(brackets), count(1)), default=0)


class _BadNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not a number JSON allows; give a finite number")


def _finite(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"the number {excerpt(text)} has more than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"the number {text} is too large for a 64-bit float")
    return value


def _short_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"the number {excerpt(text)} has more than {MAX_NUMBER_CHARS} digits")
    return int(text)


async def _read_whole(request: web.Request, most: int) -> bytes:
    too_large = JobletError(
        ErrorCode.TOO_LARGE,
        f"request body: more than {most} bytes; this endpoint takes at most {most}",
    )
    if request.content_length is not None and request.content_length > most:
        raise too_large  # refused before a byte of it is read
    chunks: list[bytes] = []
    size = 0
    async for chunk in body_chunks(request, "request body", _READ_CHUNK):
        size += len(chunk)
        if size > most:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def body_chunks(request: web.Request, what: str, chunk_size: int) -> AsyncIterator[bytes]:
    """The body as it arrives; a client that goes away mid-body is a bad request (answered to
    no one), not an internal error."""
    try:
        while chunk := await request.content.read(chunk_size):
            yield chunk
    except (ConnectionError, ClientPayloadError) as exc:
        raise JobletError(
            ErrorCode.INVALID, f"{what}: the stream broke off before its end ({exc})"
        ) from None
