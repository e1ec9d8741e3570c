"""The aiohttp application: routes from one module per resource type, errors mapped in one place."""

from __future__ import annotations

from aiohttp import web

from joblet_agent.api.audit import audit_middleware
from joblet_agent.api.connections import track_requests
from joblet_agent.api.errors import errors_middleware
from joblet_agent.api.handlers import exec as exec_handlers
from joblet_agent.api.handlers import (
    health,
    job,
    job_file,
    job_lifetime,
    network,
    runtime,
    schedule,
    upload,
    volume,
)
from joblet_agent.api.identity import ACCESS
from joblet_agent.api.log_stream_slots import LogStreamSlots
from joblet_agent.api.roles import authorize_route
from joblet_agent.domain.config import Access
from joblet_agent.services.exec import ExecService
from joblet_agent.services.job.service import JobService
from joblet_agent.services.job_file import JobFileService
from joblet_agent.services.runtime import RuntimeService
from joblet_agent.services.schedule import ScheduleService

# aiohttp's own cap, for request.read() and friends; the API reads bodies through api/body.py,
# with a bound per endpoint.
MAX_REQUEST_BYTES = 1024 * 1024
_RESOURCES = (
    job,
    upload,
    volume,
    network,
    health,
    runtime,
    schedule,
    exec_handlers,
    job_file,
    job_lifetime,
)


def make_app(
    service: JobService,
    access: Access,
    runtime_service: RuntimeService,
    schedules: ScheduleService,
    *,
    exec_service: ExecService | None = None,
    file_service: JobFileService | None = None,
) -> web.Application:
    # track_requests, outermost, tells the connection's deadlines when a request is being handled;
    # audit_middleware records the response errors_middleware made of an error; authorize_route,
    # innermost, checks the caller's role before any handler runs (api/roles.py).
    app = web.Application(
        middlewares=[track_requests, audit_middleware, errors_middleware, authorize_route],
        client_max_size=MAX_REQUEST_BYTES,
    )
    app[job.SERVICE] = service
    if service.networks is not None:
        app[network.NETWORKS] = service.networks
    app[runtime.SERVICE] = runtime_service
    app[schedule.SERVICE] = schedules
    if exec_service is not None:
        app[exec_handlers.EXEC] = exec_service
    if file_service is not None:
        app[job_file.FILES] = file_service
    app[exec_handlers.OPEN] = set()
    app.on_shutdown.append(exec_handlers.close_sessions)
    app[ACCESS] = access
    app[job.LOG_STREAMS] = LogStreamSlots(service.config.log_streams)
    for module in _RESOURCES:
        app.router.add_routes(module.ROUTES)
    return app
