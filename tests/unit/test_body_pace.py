"""Upload bodies keep to a pace: a total time and a floor of bytes per second of waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.upload_pace import BodyPace, paced


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def _steady(count: int, size: int, pause: float) -> AsyncIterator[bytes]:
    for _ in range(count):
        await asyncio.sleep(pause)
        yield b"x" * size


async def _stalled() -> AsyncIterator[bytes]:
    yield b"x" * 100
    await asyncio.Event().wait()  # headers sent, and then nothing, for ever
    yield b""


def test_a_body_that_keeps_the_pace_arrives_whole() -> None:
    pace = BodyPace(total_sec=60, min_bytes_per_sec=1000, grace_sec=1)
    body = asyncio.run(_collect(paced(_steady(5, 1000, 0.01), pace, what="upload")))
    assert len(body) == 5000


def test_a_stalled_body_is_refused_once_its_bytes_run_out() -> None:
    # 100 bytes at 1000 bytes/s buy 0.1 s of waiting after the 0.05 s of grace.
    pace = BodyPace(total_sec=60, min_bytes_per_sec=1000, grace_sec=0.05)
    with pytest.raises(JobletError) as caught:
        asyncio.run(_collect(paced(_stalled(), pace, what="upload")))
    assert caught.value.code is ErrorCode.INVALID
    assert caught.value.message.startswith(
        "upload: the body arrived slower than 1000 bytes/s (100 bytes in "
    )
    assert caught.value.hint == "jobs.upload_min_rate in joblet.yml sets the floor"


def test_a_body_past_its_total_time_is_refused() -> None:
    pace = BodyPace(total_sec=0.05, min_bytes_per_sec=1, grace_sec=60)
    with pytest.raises(JobletError) as caught:
        asyncio.run(_collect(paced(_steady(1000, 10, 0.01), pace, what="upload")))
    assert caught.value.message.startswith("upload: the body was not whole within 0.05 s")
    assert caught.value.hint == "jobs.upload_timeout in joblet.yml sets the time allowed"
