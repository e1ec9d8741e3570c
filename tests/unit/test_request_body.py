"""The one reader of request bodies and query numbers: each bound is refused with a 400 (or a
413) naming it, before json.loads or int() could fail in any other way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from joblet_agent.api.body import MAX_JSON_BYTES, MAX_JSON_DEPTH, json_body, json_depth, parse_json
from joblet_agent.api.errors import errors_middleware
from joblet_agent.api.query import query_int, query_text, whole_number
from joblet_agent.errors import ErrorCode, JobletError


def refused(raw: bytes, *fragments: str) -> str:
    with pytest.raises(JobletError) as info:
        parse_json(raw)
    assert info.value.code is ErrorCode.INVALID
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    return info.value.message


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[{{{{"}', 1),  # brackets inside strings do not count
        (b'["\\"[[[", [2]]', 2),  # nor after an escaped quote
        (b"[" * 100000, 100000),
    ],
)
def test_depth_is_measured_on_the_bytes(raw: bytes, depth: int) -> None:
    assert json_depth(raw) == depth


def test_deep_nesting_is_refused_before_parsing() -> None:
    refused(b"[" * 100000 + b"]" * 100000, f"nested deeper than {MAX_JSON_DEPTH} levels")
    ok = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(ok) is not None


def test_an_unterminated_string_ends_the_scan() -> None:
    # Escaped quotes and no closing one: a pattern requiring the closing quote was retried from
    # every later quote (quadratic: 16 s for 64 KiB); this one takes the rest as the string.
    assert json_depth(b'"' + b'\\"' * 30_000 + b"[[") == 0


def test_a_body_that_is_not_utf8_names_the_byte() -> None:
    refused(b'{"command": "\xff"}', "request body: not UTF-8", "0xff at offset 13")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"t": NaN}', "NaN is not a number JSON allows"),
        (b'{"t": Infinity}', "Infinity is not a number"),
        (b'{"t": -Infinity}', "-Infinity is not a number"),
        (b'{"t": 1e400}', "1e400 is too large"),
        (b'{"t": ' + b"9" * 400 + b"}", "more than 32 digits"),
        (b'{"t": 0.' + b"1" * 400 + b"}", "more than 32 characters"),
    ],
)
def test_numbers_must_be_finite_and_short(raw: bytes, fragment: str) -> None:
    message = refused(raw, "request body: ", fragment)
    assert len(message) < 200


def test_not_json_is_a_400() -> None:
    refused(b"{", "request body: not JSON")


def test_ordinary_bodies_parse() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert parse_json(b'{"n": 9223372036854775807}') == {"n": 2**63 - 1}


async def _post(data: bytes, *, chunked: bool = False) -> tuple[int, dict[str, Any]]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"got": await json_body(request)})

    app = web.Application(middlewares=[errors_middleware])
    app.router.add_post("/", handler)
    async with TestClient(TestServer(app)) as client:

        async def chunks() -> Any:
            yield data

        response = await client.post("/", data=chunks() if chunked else data)
        return response.status, await response.json()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_bound_is_a_413(chunked: bool) -> None:
    status, answer = asyncio.run(_post(b" " * (MAX_JSON_BYTES + 1), chunked=chunked))
    assert (status, answer["code"]) == (413, "too-large")
    assert f"at most {MAX_JSON_BYTES}" in answer["message"]


def test_a_body_within_the_bound_is_read() -> None:
    assert asyncio.run(_post(b'{"a": 1}', chunked=True)) == (200, {"got": {"a": 1}})


@pytest.mark.parametrize(
    "text", ["²", "٣", "-1", "1001", "", " 5", "0" * 5 + "1", "99999999999999999999"]
)
def test_query_numbers_are_ascii_digits_within_bounds(text: str) -> None:
    with pytest.raises(JobletError, match=r"limit: .* is not valid; a whole number between 1 and"):
        query_int({"limit": text}, "limit", 100, 1, 1000)


def test_query_numbers() -> None:
    assert query_int({}, "limit", 100, 1, 1000) == 100
    assert query_int({"limit": "1000"}, "limit", 100, 1, 1000) == 1000
    assert whole_number("size", "0", 0, 2**63 - 1) == 0


def test_query_text_is_bounded() -> None:
    assert query_text({"owner": "alice"}, "owner", 256) == "alice"
    assert query_text({}, "owner", 256) is None
    with pytest.raises(JobletError, match=r"owner: 'aaa.*\.\.\. is not valid; at most 256"):
        query_text({"owner": "a" * 5000}, "owner", 256)
