"""/v1/schedules: create, list, get, pause, resume, delete recurring schedules."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from joblet_agent.api.body import json_body
from joblet_agent.api.identity import caller_of
from joblet_agent.api.keys import app_key
from joblet_agent.api.query import query_text
from joblet_agent.domain.rbac import Action, authorize
from joblet_agent.domain.schedule import ScheduleRecord, parse_schedule_request
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.services.schedule import ScheduleService

SERVICE = app_key("schedules", ScheduleService)
MAX_REFERENCE_CHARS = 64  # an id (36), a prefix of one, or a name (63)
MAX_OWNER_CHARS = 256
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _service(request: web.Request) -> ScheduleService:
    service: ScheduleService = request.app[SERVICE]
    return service


async def _json(service: ScheduleService, record: ScheduleRecord) -> dict[str, Any]:
    """The record, its next firing (PID 1's timer), and its latest run."""
    upcoming = await service.next_elapse(record)
    runs = service.runs(record)
    last = {"id": runs[0].id, "state": str(runs[0].state)} if runs else None
    return {
        **record.to_dict(),
        "next_elapse": upcoming.isoformat() if upcoming else None,
        "last_run": last,
    }


def _schedule_for(request: web.Request, action: Action) -> ScheduleRecord:
    """The schedule in the path, if the caller may do `action` to it."""
    given = request.match_info["schedule"]
    if len(given) > MAX_REFERENCE_CHARS:
        raise JobletError(
            ErrorCode.INVALID,
            f"schedule: {excerpt(given)} is not valid; a schedule's id, a prefix of it, or its "
            "name",
        )
    caller = caller_of(request)
    authorize(caller, Action.SCHEDULE_READ)  # nothing is resolved for a caller without a role
    record = _service(request).resolve(given)
    authorize(caller, action, owner=None if action is Action.SCHEDULE_READ else record.owner)
    return record


def runs_of(request: web.Request, reference: str) -> str:
    """GET /v1/jobs?schedule=: the id of the schedule named (by id, prefix or name), or, for a
    schedule deleted since (its runs stay), its full id as given."""
    try:
        return _service(request).resolve(reference).id
    except JobletError as exc:
        if exc.code is ErrorCode.NOT_FOUND and _UUID.match(reference.strip().lower()):
            return reference.strip().lower()
        raise


async def create(request: web.Request) -> web.Response:
    caller = caller_of(request)
    authorize(caller, Action.SCHEDULE_CREATE)
    service = _service(request)
    jobs = service.jobs
    # The raw request dies here: what is authorised and created is the parsed one.
    parsed = parse_schedule_request(await json_body(request), jobs.config.jobs, jobs.host)
    if parsed.job.spec.relax:
        authorize(caller, Action.JOB_RELAX)
    if parsed.job.spec.network == "host":
        authorize(caller, Action.JOB_HOST_NETWORK)
    record = await service.create(
        parsed, owner=caller.owner, manages_all=caller.acts_on_anyones_jobs
    )
    return web.json_response(await _json(service, record), status=201)


async def list_schedules(request: web.Request) -> web.Response:
    authorize(caller_of(request), Action.SCHEDULE_READ)
    service = _service(request)
    owner = query_text(request.query, "owner", MAX_OWNER_CHARS)
    return web.json_response(
        {"schedules": [await _json(service, r) for r in service.list(owner=owner)]}
    )


async def get(request: web.Request) -> web.Response:
    record = _schedule_for(request, Action.SCHEDULE_READ)
    return web.json_response(await _json(_service(request), record))


async def pause(request: web.Request) -> web.Response:
    service = _service(request)
    record = await service.pause(_schedule_for(request, Action.SCHEDULE_MANAGE))
    return web.json_response(await _json(service, record))


async def resume(request: web.Request) -> web.Response:
    service = _service(request)
    record = await service.resume(_schedule_for(request, Action.SCHEDULE_MANAGE))
    return web.json_response(await _json(service, record))


async def delete(request: web.Request) -> web.Response:
    record = _schedule_for(request, Action.SCHEDULE_MANAGE)
    canceled = await _service(request).delete(record)
    return web.json_response({"deleted": record.id, "canceled_runs": canceled})


ROUTES = [
    web.post("/v1/schedules", create),
    web.get("/v1/schedules", list_schedules),
    web.get("/v1/schedules/{schedule}", get),
    web.delete("/v1/schedules/{schedule}", delete),
    web.post("/v1/schedules/{schedule}/pause", pause),
    web.post("/v1/schedules/{schedule}/resume", resume),
]
