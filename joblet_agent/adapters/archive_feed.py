"""Extraction fed from the event loop: a request body's chunks handed to a thread that runs
archive.extract(), with memory bounded to a few chunks in flight.

The thread comes from the caller's own bounded pool, never the loop's default executor, which
job submits, journal reads and volume set-up share; and it is taken only once the first bytes
have arrived. Six PUTs that sent headers and then nothing once held every thread of the default
executor, and every job submit waited behind them (review H4).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import queue
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from joblet_agent.adapters.archive import extract
from joblet_agent.domain.archive import Extracted, ExtractLimits
from joblet_agent.errors import ErrorCode, JobletError

_COPY_CHUNK = 1024 * 1024
_QUEUE_CHUNKS = 8  # chunks in flight between the event loop and the extracting thread


class _Handover:
    """Chunks from the event loop to the extracting thread (None: the end), a few at a time;
    the loop waits for room without polling."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self.room = asyncio.Event()

    def get(self) -> bytes | None:
        """In the extracting thread."""
        chunk = self.chunks.get()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(self.room.set)
        return chunk

    async def put(self, chunk: bytes | None, worker: asyncio.Future[Extracted]) -> None:
        """Dropped once the worker has stopped (its error wins)."""
        while not worker.done():
            try:
                self.chunks.put_nowait(chunk)
                return
            except queue.Full:
                self.room.clear()
                room = asyncio.ensure_future(self.room.wait())
                either: list[asyncio.Future[Any]] = [room, worker]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                room.cancel()

    def drain(self) -> None:
        while True:
            try:
                self.chunks.get_nowait()
            except queue.Empty:
                return


class _ChunkReader(io.RawIOBase):
    """A blocking reader over the chunks handed over by the event loop."""

    def __init__(self, handover: _Handover) -> None:
        self.handover = handover
        self.pending = memoryview(b"")
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending and not self.ended:
            chunk = self.handover.get()
            if chunk is None:
                self.ended = True
            else:
                self.pending = memoryview(chunk)
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


async def extract_async(
    chunks: AsyncIterator[bytes],
    dest: Path,
    limits: ExtractLimits,
    *,
    what: str,
    executor: Executor,
    slot: AbstractAsyncContextManager[object] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Extracted:
    """extract(), fed from the event loop, in a thread of `executor` taken at the first bytes;
    `slot`, if given, is held from then until the thread is done (a caller's share of the pool).

    The stream is read to its end even after a refusal is known, so the client, which sends
    the whole body before it reads the answer, gets the answer instead of a broken pipe.
    """
    loop = asyncio.get_running_loop()
    handover = _Handover(loop)
    worker: asyncio.Future[Extracted] | None = None
    received = 0
    async with contextlib.AsyncExitStack() as held:
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                received += len(chunk)
                if limits.max_stream_bytes is not None and received > limits.max_stream_bytes:
                    # Far more than the members announced: not read on, unlike a refusal.
                    raise JobletError(
                        ErrorCode.TOO_LARGE,
                        f"{what}: the stream is longer than {limits.max_stream_bytes} bytes, "
                        "more than its announced size allows",
                    )
                if on_progress is not None:
                    on_progress(received)
                if worker is None:
                    if slot is not None:
                        await held.enter_async_context(slot)
                    reader = io.BufferedReader(_ChunkReader(handover), buffer_size=_COPY_CHUNK)
                    worker = loop.run_in_executor(
                        executor, functools.partial(extract, reader, dest, limits, what=what)
                    )
                await handover.put(chunk, worker)
        finally:
            if worker is not None:
                # Also when the client went away: the worker sees the end (a truncated stream,
                # refused) and is done before the caller removes the destination.
                await handover.put(None, worker)
                await asyncio.wait([worker])
                handover.drain()
                worker.exception()  # retrieved here; raised below or superseded
    if worker is None:
        raise JobletError(ErrorCode.INVALID, f"{what}: the body is empty; send a tar stream")
    return worker.result()
