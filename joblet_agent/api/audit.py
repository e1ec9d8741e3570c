"""One structured journal entry per mutating request: who, what, which job, and the decision.

journalctl SYSLOG_IDENTIFIER=joblet-agent AUDIT=1 -o verbose
"""

from __future__ import annotations

import logging

from aiohttp import web

from joblet_agent.api.errors import HTTP_STATUS, Handler
from joblet_agent.api.identity import caller_of
from joblet_agent.api.keys import request_key
from joblet_agent.errors import ErrorCode, JobletError

logger = logging.getLogger("joblet_agent.audit")
JOB_ID = request_key("joblet.job_id", str)  # handlers put the id of the job they acted on here
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in _MUTATING:
        return await handler(request)
    decision, status = "failed", 500
    try:
        response = await handler(request)
        decision, status = "allowed", response.status
        return response
    except JobletError as exc:
        refused = exc.code in (ErrorCode.FORBIDDEN, ErrorCode.UNAUTHENTICATED)
        decision = "refused" if refused else "failed"
        status = HTTP_STATUS[exc.code]
        raise
    finally:
        _log(request, decision, status)


def _log(request: web.Request, decision: str, status: int) -> None:
    try:
        caller = caller_of(request)
        who, role = caller.name, str(caller.role)
    except JobletError:
        who, role = "unknown", "none"
    route = request.match_info.route.resource
    action = f"{request.method} {route.canonical if route else request.path}"
    job_id = request.get(JOB_ID) or request.match_info.get("id")
    logger.info(
        "%s by %s (%s): %s%s -> %s",
        action,
        who,
        role,
        decision,
        f" job {job_id}" if job_id else "",
        status,
        extra={
            "AUDIT": 1,
            "AUDIT_CALLER": who,
            "AUDIT_ROLE": role,
            "AUDIT_ACTION": action,
            "AUDIT_DECISION": decision,
            "AUDIT_STATUS": status,
            "JOB_ID": job_id,
        },
    )
