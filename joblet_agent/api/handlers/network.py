"""/v1/networks: create, list, get, share, unshare, remove.

A named network is its creator's; below maintainer a caller sees and joins only their own and
those shared with them (domain/sharing.py), maintainers and admins all of them.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from aiohttp import web

from joblet_agent.api.body import json_body
from joblet_agent.api.identity import caller_of
from joblet_agent.api.keys import app_key
from joblet_agent.domain.network import Network, parse_network_request
from joblet_agent.domain.owner import parse_owner, split_owner
from joblet_agent.domain.rbac import Action, Caller, authorize
from joblet_agent.domain.sharing import parse_share
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.services.network import NetworkService

NETWORKS = app_key("networks", NetworkService)
MAX_NAME_CHARS = 32  # networks.check_name's rule


def _service(request: web.Request) -> NetworkService:
    service: NetworkService = request.app[NETWORKS]
    return service


def _network_json(service: NetworkService, network: Network) -> dict[str, Any]:
    jobs = [
        {"id": r.id, "name": r.spec.name, **r.endpoint.to_dict()}
        for r in service.attached(network.name)
        if r.endpoint
    ]
    return {**network.to_dict(), "jobs": sorted(jobs, key=lambda j: IPv4Address(j["address"]))}


def _name(request: web.Request) -> str:
    """The network in the path; one longer than any network's name cannot exist."""
    name = request.match_info["name"]
    if len(name) > MAX_NAME_CHARS:
        raise JobletError(ErrorCode.NOT_FOUND, f"network {excerpt(name)} does not exist")
    return name


async def create(request: web.Request) -> web.Response:
    caller = caller_of(request)
    authorize(caller, Action.NETWORK_CREATE)
    # The raw request dies here: the service gets the parsed request.
    wanted = parse_network_request(await json_body(request))
    network = await _service(request).create(wanted, owner=caller.owner)
    return web.json_response(_network_json(_service(request), network), status=201)


def _allowed(request: web.Request, action: Action) -> Caller:
    caller = caller_of(request)
    authorize(caller, action)
    return caller


async def list_networks(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.NETWORK_READ)
    service = _service(request)
    visible = service.networks(caller.principal)
    return web.json_response({"networks": [_network_json(service, n) for n in visible]})


async def get(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.NETWORK_READ)
    service = _service(request)
    return web.json_response(
        _network_json(service, service.visible(_name(request), caller.principal))
    )


async def share(request: web.Request) -> web.Response:
    """PUT /v1/networks/{name}/shares/{owner} {"read_only": bool}: read_only shares let jobs
    join under their default hostname only."""
    caller = _allowed(request, Action.NETWORK_SHARE)
    namespace, _ = split_owner(caller.owner)
    wanted = parse_share(request.match_info["owner"], await json_body(request), namespace=namespace)
    service = _service(request)
    network = service.share(_name(request), wanted, caller.principal)
    return web.json_response(_network_json(service, network))


async def unshare(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.NETWORK_SHARE)
    namespace, _ = split_owner(caller.owner)
    owner = parse_owner("with", request.match_info["owner"], namespace=namespace)
    service = _service(request)
    network = service.unshare(_name(request), owner, caller.principal)
    return web.json_response(_network_json(service, network))


async def remove(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.NETWORK_REMOVE)
    network = await _service(request).remove(_name(request), caller.principal)
    return web.json_response({"removed": network.name})


ROUTES = [
    web.post("/v1/networks", create),
    web.get("/v1/networks", list_networks),
    web.get("/v1/networks/{name}", get),
    web.delete("/v1/networks/{name}", remove),
    web.put("/v1/networks/{name}/shares/{owner}", share),
    web.delete("/v1/networks/{name}/shares/{owner}", unshare),
]
