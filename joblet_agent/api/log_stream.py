"""A job's journal as Server-Sent Events: history, then live, then an `end` event.

One `journalctl --follow` process reads history and live entries, so nothing is lost or repeated
at the handover. Each event's id is the journal cursor: a client that reconnects with
Last-Event-ID resumes exactly after it. When the job ends, the stream reads up to the job's last
journal entry (after journald drained its output) and closes with the final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

from joblet_agent.domain.job import JobRecord
from joblet_agent.services.job.service import JobService

logger = logging.getLogger(__name__)
HEARTBEAT_SEC = 15.0  # keeps idle streams alive through proxies
HEARTBEAT = b": heartbeat\n\n"


async def sse_frames(
    service: JobService, record: JobRecord, *, after: str | None, follow: bool
) -> AsyncGenerator[bytes, None]:
    journal = service.journal
    unit = record.unit
    if not follow and record.state.is_terminal:
        await journal.drained(unit)  # history of an ended job: all of it
    entries = journal.entries(unit, after_cursor=after, follow=follow)
    ended = asyncio.ensure_future(service.wait(record.id)) if follow else None
    next_batch: asyncio.Future[list[dict[str, Any]]] = asyncio.ensure_future(anext(entries))
    cursor, last_cursor = after, None
    job_over = not follow
    try:
        while not (follow and job_over and last_cursor in (None, cursor)):
            waiting: set[asyncio.Future[Any]] = {next_batch}
            if ended is not None and not job_over:
                waiting.add(ended)
            done, _ = await asyncio.wait(
                waiting, timeout=HEARTBEAT_SEC, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                yield HEARTBEAT
            elif ended in done and not job_over:
                # Let journald store the job's last lines, learn which is last, read up to it.
                job_over = True
                await journal.drained(unit)
                last_cursor = await journal.last_cursor(unit)
                logger.debug("logs of %s: ended; reading up to %s", record.id, last_cursor)
            else:
                try:
                    batch = next_batch.result()
                except StopAsyncIteration:
                    break
                cursor = str(batch[-1]["__CURSOR"])
                yield b"".join(log_event(entry) for entry in batch)
                next_batch = asyncio.ensure_future(anext(entries))
        yield sse("end", json.dumps(end_payload(service.resolve(record.id))))
    finally:
        for task in (next_batch, ended):
            if task is not None and not task.done():
                task.cancel()
        with contextlib.suppress(BaseException):
            await entries.aclose()


def end_payload(record: JobRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "state": str(record.state),
        "exit_code": record.exit_code,
        "signal": record.signal,
        "reason": record.reason,
    }


def log_event(entry: dict[str, Any]) -> bytes:
    payload = {
        "message": message_text(entry),
        "pid": int(entry["_PID"]) if "_PID" in entry else None,
        "priority": int(entry.get("PRIORITY", 6)),
        "timestamp_us": int(entry["__REALTIME_TIMESTAMP"]),
    }
    return sse("log", json.dumps(payload), event_id=str(entry["__CURSOR"]))


def sse(event: str, data: str, *, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def message_text(entry: dict[str, Any]) -> str:
    """MESSAGE is a string, or a list of byte values when it is not valid UTF-8."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):
        return bytes(message).decode("utf-8", errors="replace")
    return str(message) if message is not None else ""
