"""/v1/volumes: create, list, get, share, unshare, remove.

A volume is its creator's; below maintainer a caller sees and touches only their own and those
shared with them (domain/sharing.py), maintainers and admins all of them.
"""

from __future__ import annotations

from aiohttp import web

from joblet_agent.api.body import json_body
from joblet_agent.api.handlers.job import SERVICE
from joblet_agent.api.identity import caller_of
from joblet_agent.domain.owner import parse_owner, split_owner
from joblet_agent.domain.rbac import Action, Caller, authorize
from joblet_agent.domain.sharing import parse_share
from joblet_agent.services.volume import VolumeService


def _volumes(request: web.Request, action: Action) -> tuple[VolumeService, Caller]:
    caller = caller_of(request)
    authorize(caller, action)
    volumes: VolumeService = request.app[SERVICE].volumes
    return volumes, caller


async def create(request: web.Request) -> web.Response:
    service, caller = _volumes(request, Action.VOLUME_CREATE)
    # The raw request dies here: the service gets the parsed request.
    wanted = service.parse_request(await json_body(request))
    status = await service.create(wanted, caller.principal)
    return web.json_response(status.to_dict(), status=201)


async def list_volumes(request: web.Request) -> web.Response:
    service, caller = _volumes(request, Action.VOLUME_READ)
    return web.json_response({"volumes": [v.to_dict() for v in service.all(caller.principal)]})


async def get(request: web.Request) -> web.Response:
    service, caller = _volumes(request, Action.VOLUME_READ)
    return web.json_response(service.get(request.match_info["name"], caller.principal).to_dict())


async def share(request: web.Request) -> web.Response:
    """PUT /v1/volumes/{name}/shares/{owner} {"read_only": bool}: share it, or change how."""
    service, caller = _volumes(request, Action.VOLUME_SHARE)
    namespace, _ = split_owner(caller.owner)
    wanted = parse_share(request.match_info["owner"], await json_body(request), namespace=namespace)
    status = service.share(request.match_info["name"], wanted, caller.principal)
    return web.json_response(status.to_dict())


async def unshare(request: web.Request) -> web.Response:
    service, caller = _volumes(request, Action.VOLUME_SHARE)
    namespace, _ = split_owner(caller.owner)
    owner = parse_owner("with", request.match_info["owner"], namespace=namespace)
    status = service.unshare(request.match_info["name"], owner, caller.principal)
    return web.json_response(status.to_dict())


async def remove(request: web.Request) -> web.Response:
    service, caller = _volumes(request, Action.VOLUME_REMOVE)
    name = request.match_info["name"]
    await service.remove(name, caller.principal)
    return web.json_response({"deleted": name})


ROUTES = [
    web.post("/v1/volumes", create),
    web.get("/v1/volumes", list_volumes),
    web.get("/v1/volumes/{name}", get),
    web.delete("/v1/volumes/{name}", remove),
    web.put("/v1/volumes/{name}/shares/{owner}", share),
    web.delete("/v1/volumes/{name}/shares/{owner}", unshare),
]
