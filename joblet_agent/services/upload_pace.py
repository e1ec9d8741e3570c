"""Deadlines for a request body that arrives over time (an upload's tar stream).

aiohttp puts no time limit on a body in progress: a client that sends headers and then nothing,
or a byte a minute, would hold its upload, its staging directory and its place in the
extraction pool for ever (review H4). A body must therefore keep to a floor of bytes per
second, counted over the time spent waiting for the client (not for our own disk), after a
grace period, and must be whole within a total time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from joblet_agent.errors import ErrorCode, JobletError

GRACE_SEC = 30.0  # waiting a client may do before the floor applies: a slow start, a busy disk


@dataclass(frozen=True, slots=True)
class BodyPace:
    total_sec: float  # the whole body, wall-clock, from its first awaited byte
    min_bytes_per_sec: int  # the floor, over the time spent waiting for the client
    grace_sec: float = GRACE_SEC


async def paced(chunks: AsyncIterator[bytes], pace: BodyPace, *, what: str) -> AsyncIterator[bytes]:
    """`chunks`, refused (INVALID) as soon as it falls behind `pace`.

    After `received` bytes and `waited` seconds spent waiting for them, the next chunk is
    awaited at most `grace + received / floor - waited` seconds: on average the client sends at
    least the floor, and every byte it sends buys it more time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    received = 0
    waited = 0.0
    source = aiter(chunks)
    while True:
        now = loop.time()
        left_total = start + pace.total_sec - now
        left_floor = pace.grace_sec + received / pace.min_bytes_per_sec - waited
        try:
            chunk = await asyncio.wait_for(anext(source), max(0.0, min(left_total, left_floor)))
        except StopAsyncIteration:
            return
        except TimeoutError:
            if left_total <= left_floor:
                raise JobletError(
                    ErrorCode.INVALID,
                    f"{what}: the body was not whole within {pace.total_sec:g} s "
                    f"({received} bytes arrived)",
                    hint="jobs.upload_timeout in joblet.yml sets the time allowed",
                ) from None
            raise JobletError(
                ErrorCode.INVALID,
                f"{what}: the body arrived slower than {pace.min_bytes_per_sec} bytes/s "
                f"({received} bytes in {waited + (loop.time() - now):.0f} s of waiting)",
                hint="jobs.upload_min_rate in joblet.yml sets the floor",
            ) from None
        waited += loop.time() - now
        received += len(chunk)
        yield chunk
