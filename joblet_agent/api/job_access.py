"""Which job a request's path names, and whether the caller may act on it: one place for every
job route (jobs, execs, files, lifetime)."""

from __future__ import annotations

from aiohttp import web

from joblet_agent.api.audit import JOB_ID
from joblet_agent.api.identity import caller_of
from joblet_agent.api.keys import app_key
from joblet_agent.domain.job import JobRecord
from joblet_agent.domain.rbac import Action, authorize
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
