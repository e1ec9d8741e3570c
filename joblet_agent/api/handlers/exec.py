"""/v1/jobs/{id}/exec and /v1/jobs/{id}/attach: WebSockets (docs/exec-protocol.md).

The first message from the client is a JSON text: the exec request, or the attach's terminal
size. Then binary messages, each one byte of kind and its data: from the client `i` stdin, `d`
end of stdin, `w` window size (rows, columns: 2 bytes each, big-endian), `k` a signal (1 byte);
from the agent `o` stdout (or terminal output) and `e` stderr. The agent's text messages are
JSON: {"exec_id", "job"} once the command runs, {"end": {...}} as it ends, {"error": {...}}
(the API's error body) if it cannot start or is lost. Who may, and which job, is decided before
the upgrade, so those refusals are ordinary HTTP errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from joblet_agent.api.body import MAX_JSON_BYTES, parse_json
from joblet_agent.api.identity import caller_of
from joblet_agent.api.job_access import job_for
from joblet_agent.api.keys import app_key
from joblet_agent.domain.exec import TerminalSize, parse_exec_request, parse_terminal
from joblet_agent.domain.exec_frames import MAX_REQUEST, FrameError
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.rbac import Action
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.exec import ExecService, Session, require_running

logger = logging.getLogger(__name__)
EXEC = app_key("exec", ExecService)
# The sessions open now: a stopping agent closes them (close_sessions), so an agent restart ends
# each at once with "the session was lost" rather than keeping the stop waiting for them.
OPEN = app_key("exec_sockets", set)
FIRST_MESSAGE_SEC = 30.0
MAX_MESSAGE = MAX_REQUEST + 16


def _service(request: web.Request) -> ExecService:
    service: ExecService = request.app[EXEC]
    return service


@contextlib.asynccontextmanager
async def _open(request: web.Request) -> AsyncIterator[web.WebSocketResponse]:
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    sockets: set[web.WebSocketResponse] = request.app[OPEN]
    sockets.add(ws)
    try:
        yield ws
    finally:
        sockets.discard(ws)
        await ws.close()


async def close_sessions(app: web.Application) -> None:
    """on_shutdown: every session's client is told the agent went away (its job runs on)."""
    for ws in list(app[OPEN]):
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the agent is stopping")


async def _first_message(ws: web.WebSocketResponse) -> Any:
    try:
        message = await ws.receive(timeout=FIRST_MESSAGE_SEC)
    except TimeoutError:
        raise JobletError(
            ErrorCode.INVALID, f"no request within {FIRST_MESSAGE_SEC:g} s of the upgrade"
        ) from None
    if message.type is not WSMsgType.TEXT:
        raise JobletError(ErrorCode.INVALID, "the first message must be the request, as JSON text")
    raw = str(message.data).encode()
    if len(raw) > MAX_JSON_BYTES:
        raise JobletError(
            ErrorCode.TOO_LARGE, f"request: more than {MAX_JSON_BYTES} bytes; at most that"
        )
    return parse_json(raw)


async def _relay(ws: web.WebSocketResponse, session: Session) -> None:
    """Client input to the session, its output to the client, until it ends or the client
    goes (then the session is closed, and init hangs its process up)."""

    async def from_client() -> None:
        async for message in ws:
            if message.type is not WSMsgType.BINARY or not message.data:
                continue
            kind, data = message.data[:1], message.data[1:]
            if kind == b"i":
                await session.stdin(data)
            elif kind == b"d":
                await session.close_stdin()
            elif kind == b"w" and len(data) == 4:
                rows, cols = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big")
                await session.resize(TerminalSize(rows, cols))
            elif kind == b"k" and len(data) == 1 and 0 < data[0] < 65:
                await session.signal(data[0])
        session.close()  # the client went away

    reader = asyncio.create_task(from_client())
    try:
        async for stream, data in session.output():
            await ws.send_bytes((b"e" if stream == "stderr" else b"o") + data)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _answer_errors(ws: web.WebSocketResponse, work: Any) -> None:
    try:
        await work
    except JobletError as exc:
        await _send_json(ws, {"error": exc.to_dict()})
    except FrameError as exc:
        logger.warning("a job's init sent what is not a frame: %s", exc)
        await _send_json(
            ws,
            {
                "error": JobletError(
                    ErrorCode.INTERNAL, f"the job's init answered out of protocol ({exc})"
                ).to_dict()
            },
        )


async def _send_json(ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(json.dumps(data))


async def exec_(request: web.Request) -> web.StreamResponse:
    record = job_for(request, Action.JOB_EXEC)
    require_running(record, "exec into")
    service = _service(request)
    caller = caller_of(request)

    async def work(ws: web.WebSocketResponse) -> None:
        spec = parse_exec_request(await _first_message(ws))
        async with service.exec(record, spec, caller.owner) as session:
            await _send_json(ws, {"exec_id": session.id, "job": record.id})
            await _relay(ws, session)
            if session.end is not None:
                await _send_json(ws, {"end": session.end.to_dict()})
            elif not ws.closed:
                raise JobletError(
                    ErrorCode.CONFLICT,
                    f"the exec in job {record.id} was lost before it ended: the job ended, or "
                    "its init went away",
                    hint="rnx job status " + record.id[:8],
                )

    async with _open(request) as ws:
        await _answer_errors(ws, work(ws))
    return ws


async def attach(request: web.Request) -> web.StreamResponse:
    record = job_for(request, Action.JOB_EXEC)
    require_running(record, "attach to")
    service = _service(request)
    caller = caller_of(request)

    async def work(ws: web.WebSocketResponse) -> None:
        first = Fields(await _first_message(ws), "")
        size = parse_terminal(first)
        first.reject_unknown()
        async with service.attach(record, size, caller.owner) as session:
            await _send_json(ws, {"exec_id": session.id, "job": record.id})
            await _relay(ws, session)
            await _send_json(ws, {"end": None})

    async with _open(request) as ws:
        await _answer_errors(ws, work(ws))
    return ws


ROUTES = [
    web.get("/v1/jobs/{id}/exec", exec_),
    web.get("/v1/jobs/{id}/attach", attach),
]
