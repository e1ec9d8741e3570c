"""/v1/health: liveness plus what this host can enforce."""

from __future__ import annotations

from aiohttp import web

from joblet_agent import __version__
from joblet_agent.api.handlers.job import SERVICE
from joblet_agent.api.identity import caller_of
from joblet_agent.domain.jobspec import MINIMUMS
from joblet_agent.domain.rbac import Action, authorize


async def health(request: web.Request) -> web.Response:
    authorize(caller_of(request), Action.HEALTH)
    host = request.app[SERVICE].host
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "host": host.describe(),
            "unenforceable_limits": host.unenforced,
            "limits": {"minimums": MINIMUMS},
        }
    )


ROUTES = [web.get("/v1/health", health)]
