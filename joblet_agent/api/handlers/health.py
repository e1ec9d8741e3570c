"""/v1/health: liveness plus what this host can enforce."""

from __future__ import annotations

from aiohttp import web

from joblet_agent import __version__
from joblet_agent.api.handlers.jobs import SERVICE
from joblet_agent.api.identity import caller_of
from joblet_agent.host import Controller
from joblet_agent.rbac import Action, authorize


async def health(request: web.Request) -> web.Response:
    authorize(caller_of(request), Action.HEALTH)
    host = request.app[SERVICE].host
    missing = sorted(str(c) for c in set(Controller) - host.controllers)
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "host": host.describe(),
            # CPU pinning is always enforced through CPUAffinity, whatever the cgroup controllers.
            "unenforceable_limits": [m for m in missing if m != Controller.CPUSET],
        }
    )


ROUTES = [web.get("/v1/health", health)]
