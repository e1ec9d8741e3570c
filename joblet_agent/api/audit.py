"""One structured journal entry per mutating request, and per read of a job's output: who,
what, which job, and the decision (security-audit M3: a reader's reads of others' logs).

journalctl SYSLOG_IDENTIFIER=joblet-agent AUDIT=1 -o verbose
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from joblet_agent.api.errors import Handler
from joblet_agent.api.identity import caller_of
from joblet_agent.api.keys import request_key
from joblet_agent.errors import JobletError

logger = logging.getLogger("joblet_agent.audit")
JOB_ID = request_key("joblet.job_id", str)  # handlers put the id of the job they acted on here
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Reads audited like writes: a job's output and files are what a tenant's secrets leak into.
AUDITED_READS = frozenset(
    {
        ("GET", "/v1/jobs/{id}/logs"),
        ("GET", "/v1/jobs/{id}/files"),
        ("GET", "/v1/jobs/{id}/files/content"),
        ("GET", "/v1/jobs/{id}/files/archive"),
    }
)
# WebSocket upgrades (GET) that run something in a job: audited like a mutation.
_MUTATING_GETS = frozenset({"/v1/jobs/{id}/exec", "/v1/jobs/{id}/attach"})
_JOB_PATH = re.compile(r"^/v1/jobs/\{id\}")


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: errors_middleware (inside it) has turned every error into the response the
    client gets, so the entry records the status actually answered (400, 405, 413, ...)."""
    route = request.match_info.route.resource
    upgrade = route is not None and route.canonical in _MUTATING_GETS
    if request.method not in _MUTATING and not upgrade and not _audited_read(request):
        return await handler(request)
    decision, status = "failed", 500
    try:
        response = await handler(request)
        decision, status = _decision(response.status), response.status
        return response
    except web.HTTPException as exc:  # what errors_middleware leaves to aiohttp
        decision, status = _decision(exc.status), exc.status
        raise
    except asyncio.CancelledError:
        decision = "abandoned"  # the client went away before it was answered
        raise
    finally:
        _log(request, decision, status)


def _audited_read(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource else ""
    return (request.method, canonical) in AUDITED_READS


def _decision(status: int) -> str:
    if status in (401, 403):
        return "refused"
    return "allowed" if status < 400 else "failed"


def _log(request: web.Request, decision: str, status: int) -> None:
    try:
        caller = caller_of(request)
        who, role = caller.owner, str(caller.role)
    except JobletError:
        who, role = "unknown", "none"
    route = request.match_info.route.resource
    canonical = route.canonical if route else ""
    action = f"{request.method} {canonical or _cut(request.path)}"
    # The id in the path, as given (it may not resolve): a job's on job routes, an upload's on
    # upload routes; a handler that resolved a job names it by its full id.
    given = request.match_info.get("id")
    job_id = request.get(JOB_ID) or (_cut(given) if given and _JOB_PATH.match(canonical) else None)
    upload_id = _cut(given) if given and canonical.startswith("/v1/uploads/") else None
    logger.info(
        "%s by %s (%s): %s%s%s -> %s",
        action,
        who,
        role,
        decision,
        f" job {job_id}" if job_id else "",
        f" upload {upload_id}" if upload_id else "",
        status,
        extra={
            "AUDIT": 1,
            "AUDIT_CALLER": who,
            "AUDIT_ROLE": role,
            "AUDIT_ACTION": action,
            "AUDIT_DECISION": decision,
            "AUDIT_STATUS": status,
            "JOB_ID": job_id,
            "UPLOAD_ID": upload_id,
        },
    )


def _cut(text: str, most: int = 100) -> str:
    """A path or id from the request line (up to 8 KiB) as the journal keeps it."""
    return text if len(text) <= most else text[:most] + "..."
