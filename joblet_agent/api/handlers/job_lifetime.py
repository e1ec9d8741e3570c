"""/v1/jobs/{id}/extend, /pause, /resume: a running job's lifetime (services/job/lifetime.py)."""

from __future__ import annotations

from aiohttp import web

from joblet_agent.api.body import json_body
from joblet_agent.api.job_access import job_for, job_service, one_job_json
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.quantities import parse_duration
from joblet_agent.domain.rbac import Action


async def extend(request: web.Request) -> web.Response:
    record = job_for(request, Action.JOB_LIFETIME)
    body = Fields(await json_body(request), "")
    seconds = body.parsed("timeout_sec", parse_duration)
    if seconds is None:
        raise body.error("timeout_sec", None, "how long the job may run from now is required")
    body.reject_unknown()
    updated = await job_service(request).lifetime.extend(record, seconds)
    return web.json_response(one_job_json(request, updated))


async def pause(request: web.Request) -> web.Response:
    record = job_for(request, Action.JOB_LIFETIME)
    updated = await job_service(request).lifetime.pause(record)
    return web.json_response(one_job_json(request, updated))


async def resume(request: web.Request) -> web.Response:
    record = job_for(request, Action.JOB_LIFETIME)
    updated = await job_service(request).lifetime.resume(record)
    return web.json_response(one_job_json(request, updated))


ROUTES = [
    web.post("/v1/jobs/{id}/extend", extend),
    web.post("/v1/jobs/{id}/pause", pause),
    web.post("/v1/jobs/{id}/resume", resume),
]
