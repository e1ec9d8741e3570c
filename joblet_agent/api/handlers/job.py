"""/v1/jobs: create, list, get, stop, delete, delete-all, logs (SSE), metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from aiohttp import web

from joblet_agent.api.audit import JOB_ID
from joblet_agent.api.body import json_body
from joblet_agent.api.handlers.schedule import runs_of
from joblet_agent.api.identity import caller_of
from joblet_agent.api.job_access import JOBS, job_for, job_json, job_service, one_job_json
from joblet_agent.api.keys import app_key
from joblet_agent.api.log_stream import sse_frames
from joblet_agent.api.log_stream_slots import LogStreamSlots
from joblet_agent.api.query import query_int, query_text
from joblet_agent.domain.job import JobState
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.domain.owner import parse_owner, split_owner
from joblet_agent.domain.rbac import Action, Caller, authorize
from joblet_agent.errors import ErrorCode, JobletError, excerpt

logger = logging.getLogger(__name__)
SERVICE = JOBS
LOG_STREAMS = app_key("log_streams", LogStreamSlots)
MAX_OFFSET = 1_000_000_000
MAX_OWNER_CHARS = 256  # a certificate's CN (64 at most, RFC 5280) or a local user's name
MAX_SCHEDULE_CHARS = 64  # a schedule's id, a prefix of it, or its name
# sd_journal_get_cursor(3)'s format: s=<seqnum id>;i=<seqnum>;b=<boot id>;m=<mono>;t=<real>;x=<xor>
JOURNAL_CURSOR = re.compile(
    r"^s=[0-9a-f]{32};i=[0-9a-f]{1,16};b=[0-9a-f]{32};m=[0-9a-f]{1,16};t=[0-9a-f]{1,16};"
    r"x=[0-9a-f]{1,16}$"
)
_METRICS = (
    "CPUUsageNSec",
    "MemoryCurrent",
    "MemoryPeak",
    "TasksCurrent",
    "IOReadBytes",
    "IOWriteBytes",
    "ActiveState",
    "SubState",
)


def _owner_query(request: web.Request, caller: Caller) -> str | None:
    """?owner=NAME (in the caller's own namespace), cert:NAME or unix:NAME."""
    given = query_text(request.query, "owner", MAX_OWNER_CHARS)
    namespace, _ = split_owner(caller.owner)
    return None if given is None else parse_owner("owner", given, namespace=namespace)


def _allowed(request: web.Request, action: Action) -> Caller:
    caller = caller_of(request)
    authorize(caller, action)
    return caller


async def create(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.JOB_RUN)
    service = job_service(request)
    # The raw request dies here: what is authorised and submitted is the parsed spec.
    parsed = parse_job_request(await json_body(request), service.config.jobs, service.host)
    if parsed.spec.relax:
        authorize(caller, Action.JOB_RELAX)  # anything that weakens isolation is the admin's
    if parsed.spec.network == "host":
        authorize(caller, Action.JOB_HOST_NETWORK)
    record = await service.submit(
        parsed,
        owner=caller.owner,
        may_create_volumes=caller.may(Action.VOLUME_CREATE),
        may_create_networks=caller.may(Action.NETWORK_CREATE),
        manages_all=caller.acts_on_anyones_jobs,
    )
    request[JOB_ID] = record.id
    return web.json_response(one_job_json(request, record), status=201)


async def list_jobs(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.JOB_READ)
    query = request.query
    states: frozenset[JobState] | None = None
    if "state" in query:
        try:
            states = frozenset(JobState(s.strip().upper()) for s in query["state"].split(","))
        except ValueError:
            allowed = ", ".join(JobState)
            raise JobletError(
                ErrorCode.INVALID,
                f"state: {excerpt(query['state'])} is not valid; allowed: {allowed}",
            ) from None
    limit = query_int(query, "limit", 100, 1, 1000)
    offset = query_int(query, "offset", 0, 0, MAX_OFFSET)
    service = job_service(request)
    schedule = query_text(query, "schedule", MAX_SCHEDULE_CHARS)
    jobs = service.list(
        states=states,
        owner=_owner_query(request, caller),
        limit=limit,
        offset=offset,
        schedule=runs_of(request, schedule) if schedule else None,
    )
    positions = service.queue_positions() if any(j.state is JobState.QUEUED for j in jobs) else {}
    return web.json_response(
        {"jobs": [job_json(j, caller, positions) for j in jobs], "limit": limit, "offset": offset}
    )


async def get(request: web.Request) -> web.Response:
    return web.json_response(one_job_json(request, job_for(request, Action.JOB_READ)))


async def stop(request: web.Request) -> web.Response:
    record = job_for(request, Action.JOB_STOP)
    return web.json_response(one_job_json(request, await job_service(request).stop(record.id)))


async def cancel(request: web.Request) -> web.Response:
    record = job_for(request, Action.JOB_CANCEL)
    return web.json_response(one_job_json(request, await job_service(request).cancel(record.id)))


async def delete(request: web.Request) -> web.Response:
    record = job_for(request, Action.JOB_DELETE)
    await job_service(request).delete(record.id)
    return web.json_response({"deleted": record.id})


async def delete_all(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.JOB_DELETE_ALL)
    # Developers clear their own jobs; maintainers and admins anyone's (or one owner's).
    owner = _owner_query(request, caller)
    if not caller.acts_on_anyones_jobs:
        if owner not in (None, caller.owner):
            authorize(caller, Action.JOB_DELETE_ALL, owner=owner)  # refuses, saying why
        owner = caller.owner
    deleted, skipped = await job_service(request).delete_all(owner=owner)
    return web.json_response({"deleted": deleted, "skipped_running": skipped})


async def metrics(request: web.Request) -> web.Response:
    service = job_service(request)
    record = job_for(request, Action.JOB_READ)
    props = await service.unit_properties(record) or {}
    values = {k: props[k] for k in _METRICS if k in props}
    # systemd says "unset" with UINT64_MAX.
    values = {k: (None if v == 2**64 - 1 else v) for k, v in values.items()}
    return web.json_response({"id": record.id, "state": str(record.state), "unit": values})


async def logs(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: history, then live if ?follow=1; each event id is the journal cursor.

    Each stream takes one of the caller's slots (log_streams in joblet.yml) until it ends; a
    client that takes no data for write_timeout is dropped, so one that never reads cannot
    keep its slot, its journalctl and the agent's buffers forever."""
    service = job_service(request)
    record = job_for(request, Action.JOB_INSPECT)  # audited, allowed or not (api/audit.py)
    slots: LogStreamSlots = request.app[LOG_STREAMS]
    follow = request.query.get("follow", "0").lower() in ("1", "true", "yes")
    cursor = request.headers.get("Last-Event-ID") or request.query.get("after") or None
    if cursor is not None and not JOURNAL_CURSOR.match(cursor):
        raise JobletError(
            ErrorCode.INVALID,
            f"Last-Event-ID: {excerpt(cursor)} is not a journal cursor; use the id of an event "
            "this stream sent",
        )
    with slots.admit(caller_of(request).owner):
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        frames = sse_frames(service, record, after=cursor, follow=follow)
        # The client went away: nothing to answer. aclosing: its journalctl ends now, not at GC.
        with contextlib.suppress(ConnectionResetError):
            async with contextlib.aclosing(frames):
                async for frame in frames:
                    if not await _sent(request, response, frame, slots.policy.write_timeout_sec):
                        logger.info(
                            "log stream of %s dropped: the client took nothing for %ss",
                            record.id,
                            slots.policy.write_timeout_sec,
                            extra={"JOB_ID": record.id},
                        )
                        break
    return response


async def _sent(
    request: web.Request, response: web.StreamResponse, frame: bytes, within: float
) -> bool:
    """Write one frame; False (the connection aborted) when the client did not make room for
    it `within` seconds."""
    try:
        await asyncio.wait_for(response.write(frame), within)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        return False
    return True


ROUTES = [
    web.post("/v1/jobs", create),
    web.get("/v1/jobs", list_jobs),
    web.delete("/v1/jobs", delete_all),
    web.get("/v1/jobs/{id}", get),
    web.delete("/v1/jobs/{id}", delete),
    web.post("/v1/jobs/{id}/stop", stop),
    web.post("/v1/jobs/{id}/cancel", cancel),
    web.get("/v1/jobs/{id}/logs", logs),
    web.get("/v1/jobs/{id}/metrics", metrics),
]
