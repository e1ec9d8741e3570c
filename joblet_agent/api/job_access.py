"""Which job a request's path names, whether the caller may act on it, and the job as the API
shows it: one place for every job route (jobs, execs, files, lifetime), so none can show another
owner's arguments to a role that may not see them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from joblet_agent.api.audit import JOB_ID
from joblet_agent.api.identity import caller_of
from joblet_agent.api.keys import app_key
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.rbac import Action, Caller, authorize, permits
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.services.job.service import JobService

JOBS = app_key("jobs", JobService)
_JOB_ID_CHARS = 36  # a UUID; an id in a path is it or a prefix of it (blanks around allowed)
_MOST_ID_CHARS = 64


def job_service(request: web.Request) -> JobService:
    service: JobService = request.app[JOBS]
    return service


def job_for(request: web.Request, action: Action) -> JobRecord:
    """The job named in the path, if the caller may do `action` to it."""
    given = request.match_info["id"]
    if len(given) > _MOST_ID_CHARS:
        raise JobletError(
            ErrorCode.INVALID,
            f"job id: {excerpt(given)} is not valid; a job's id ({_JOB_ID_CHARS} characters) "
            "or a prefix of it",
        )
    # A caller without a role learns nothing, not even whether a prefix names a job (L5).
    caller = caller_of(request)
    authorize(caller, Action.JOB_READ)
    record = job_service(request).resolve(given)
    authorize(caller, action, owner=None if action is Action.JOB_READ else record.owner)
    request[JOB_ID] = record.id
    return record


def job_json(
    record: JobRecord, caller: Caller, positions: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The job as the API shows it: another owner's arguments and environment values only for
    those who may inspect it; `positions`: the queue's (JobService.queue_positions)."""
    inspect = permits(caller, Action.JOB_INSPECT, owner=record.owner)
    data = record.to_dict(with_secrets=False, inspect=inspect)
    data["queue_position"] = positions.get(record.id) if positions else None
    return data


def one_job_json(request: web.Request, record: JobRecord) -> dict[str, Any]:
    queued = record.state is JobState.QUEUED
    positions = job_service(request).queue_positions() if queued else None
    return job_json(record, caller_of(request), positions)
