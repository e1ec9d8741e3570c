"""/v1/volumes: create, list, get, remove."""

from __future__ import annotations

from aiohttp import web

from joblet_agent.api.body import json_body
from joblet_agent.api.handlers.job import SERVICE
from joblet_agent.api.identity import caller_of
from joblet_agent.domain.rbac import Action, authorize
from joblet_agent.services.volume import VolumeService


def _volumes(request: web.Request, action: Action) -> VolumeService:
    caller = caller_of(request)
    authorize(caller, action)
    volumes: VolumeService = request.app[SERVICE].volumes
    return volumes


async def create(request: web.Request) -> web.Response:
    service = _volumes(request, Action.VOLUME_MANAGE)
    # The raw request dies here: the service gets the parsed request.
    wanted = service.parse_request(await json_body(request))
    status = await service.create(wanted, owner=caller_of(request).name)
    return web.json_response(status.to_dict(), status=201)


async def list_volumes(request: web.Request) -> web.Response:
    service = _volumes(request, Action.VOLUME_READ)
    return web.json_response({"volumes": [v.to_dict() for v in service.all()]})


async def get(request: web.Request) -> web.Response:
    service = _volumes(request, Action.VOLUME_READ)
    return web.json_response(service.get(request.match_info["name"]).to_dict())


async def remove(request: web.Request) -> web.Response:
    service = _volumes(request, Action.VOLUME_MANAGE)
    name = request.match_info["name"]
    await service.remove(name)
    return web.json_response({"deleted": name})


ROUTES = [
    web.post("/v1/volumes", create),
    web.get("/v1/volumes", list_volumes),
    web.get("/v1/volumes/{name}", get),
    web.delete("/v1/volumes/{name}", remove),
]
