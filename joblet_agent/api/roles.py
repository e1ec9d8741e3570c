"""Which actions (domain/rbac.py) each route needs: checked before any handler runs, and the
source of docs/roles.md (`role_table`; tests/unit/test_roles.py holds the two to each other).

Each route's first action is checked by `authorize_route` for every request, before the handler
reads a byte of the body or resolves an id (security-audit L5), so a route missing from this
table is refused to everyone. The others are what the handler may also check, depending on what
the request asks (`ALSO` says when).
"""

from __future__ import annotations

from aiohttp import web

from joblet_agent.api.errors import Handler
from joblet_agent.api.identity import caller_of
from joblet_agent.domain.rbac import (
    ANYONES_JOBS,
    OWN_ONLY,
    REQUIRED,
    SHARED_USE,
    Action,
    Role,
    authorize,
)
from joblet_agent.errors import ErrorCode, JobletError

A = Action
ROUTE_ACTIONS: dict[tuple[str, str], tuple[Action, ...]] = {
    ("GET", "/v1/health"): (A.HEALTH,),
    ("POST", "/v1/jobs"): (
        A.JOB_RUN,
        A.JOB_RELAX,
        A.JOB_HOST_NETWORK,
        A.VOLUME_USE,
        A.VOLUME_CREATE,
        A.NETWORK_JOIN,
        A.NETWORK_CREATE,
    ),
    ("GET", "/v1/jobs"): (A.JOB_READ, A.JOB_INSPECT),
    ("DELETE", "/v1/jobs"): (A.JOB_DELETE_ALL,),
    ("GET", "/v1/jobs/{id}"): (A.JOB_READ, A.JOB_INSPECT),
    ("DELETE", "/v1/jobs/{id}"): (A.JOB_DELETE,),
    ("POST", "/v1/jobs/{id}/stop"): (A.JOB_STOP,),
    ("POST", "/v1/jobs/{id}/cancel"): (A.JOB_CANCEL,),
    ("GET", "/v1/jobs/{id}/logs"): (A.JOB_INSPECT,),
    ("GET", "/v1/jobs/{id}/metrics"): (A.JOB_READ,),
    ("GET", "/v1/jobs/{id}/exec"): (A.JOB_EXEC,),
    ("GET", "/v1/jobs/{id}/attach"): (A.JOB_EXEC,),
    ("GET", "/v1/jobs/{id}/files"): (A.JOB_INSPECT,),
    ("POST", "/v1/jobs/{id}/files"): (A.JOB_WRITE_FILES,),
    ("GET", "/v1/jobs/{id}/files/content"): (A.JOB_INSPECT,),
    ("GET", "/v1/jobs/{id}/files/archive"): (A.JOB_INSPECT,),
    ("POST", "/v1/jobs/{id}/extend"): (A.JOB_LIFETIME,),
    ("POST", "/v1/jobs/{id}/pause"): (A.JOB_LIFETIME,),
    ("POST", "/v1/jobs/{id}/resume"): (A.JOB_LIFETIME,),
    ("POST", "/v1/uploads"): (A.UPLOAD,),
    ("PUT", "/v1/uploads/{id}"): (A.UPLOAD,),
    ("DELETE", "/v1/uploads/{id}"): (A.UPLOAD,),
    ("POST", "/v1/volumes"): (A.VOLUME_CREATE,),
    ("GET", "/v1/volumes"): (A.VOLUME_READ,),
    ("GET", "/v1/volumes/{name}"): (A.VOLUME_READ,),
    ("DELETE", "/v1/volumes/{name}"): (A.VOLUME_REMOVE,),
    ("PUT", "/v1/volumes/{name}/shares/{owner}"): (A.VOLUME_SHARE,),
    ("DELETE", "/v1/volumes/{name}/shares/{owner}"): (A.VOLUME_SHARE,),
    ("POST", "/v1/networks"): (A.NETWORK_CREATE,),
    ("GET", "/v1/networks"): (A.NETWORK_READ,),
    ("GET", "/v1/networks/{name}"): (A.NETWORK_READ,),
    ("DELETE", "/v1/networks/{name}"): (A.NETWORK_REMOVE,),
    ("PUT", "/v1/networks/{name}/shares/{owner}"): (A.NETWORK_SHARE,),
    ("DELETE", "/v1/networks/{name}/shares/{owner}"): (A.NETWORK_SHARE,),
    ("POST", "/v1/schedules"): (
        A.SCHEDULE_CREATE,
        A.JOB_RELAX,
        A.JOB_HOST_NETWORK,
        A.VOLUME_USE,
        A.NETWORK_JOIN,
    ),
    ("GET", "/v1/schedules"): (A.SCHEDULE_READ,),
    ("GET", "/v1/schedules/{schedule}"): (A.SCHEDULE_READ,),
    ("DELETE", "/v1/schedules/{schedule}"): (A.SCHEDULE_MANAGE,),
    ("POST", "/v1/schedules/{schedule}/pause"): (A.SCHEDULE_MANAGE,),
    ("POST", "/v1/schedules/{schedule}/resume"): (A.SCHEDULE_MANAGE,),
    ("GET", "/v1/runtimes"): (A.RUNTIME_READ,),
    ("POST", "/v1/runtimes/validate"): (A.RUNTIME_READ,),
    ("GET", "/v1/runtimes/{name}"): (A.RUNTIME_READ,),
    ("PUT", "/v1/runtimes/{name}"): (A.RUNTIME_INSTALL, A.RUNTIME_INSECURE, A.JOB_RELAX),
    ("DELETE", "/v1/runtimes/{name}"): (A.RUNTIME_REMOVE,),
    ("POST", "/v1/runtimes/{name}/test"): (A.JOB_RUN,),
}
# When a route needs its other actions, for docs/roles.md.
ALSO: dict[Action, str] = {
    A.JOB_RELAX: "`relax` (a runtime that relaxes isolation, on install)",
    A.JOB_HOST_NETWORK: "`network: host`",
    A.JOB_INSPECT: "another owner's arguments and environment values (else `***`)",
    A.VOLUME_USE: "each volume named (read-write needs a share without `--ro`)",
    A.VOLUME_CREATE: "a volume named that does not exist (made for the caller)",
    A.NETWORK_JOIN: "a named network (`name` on it needs a share without `--ro`)",
    A.NETWORK_CREATE: "a network named that does not exist (made for the caller)",
    A.RUNTIME_INSECURE: "`insecure=1` (an http:// registry)",
}


@web.middleware
async def authorize_route(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The caller's role against the route's own action, before anything else is done."""
    resource = request.match_info.route.resource
    if resource is None:  # no such endpoint: aiohttp answers 404 or 405
        return await handler(request)
    method = "GET" if request.method == "HEAD" else request.method
    actions = ROUTE_ACTIONS.get((method, resource.canonical))
    if not actions:
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"{method} {resource.canonical}: no role may call it; it is missing from "
            "api/roles.py ROUTE_ACTIONS",
        )
    authorize(caller_of(request), actions[0])
    return await handler(request)


def scope(action: Action) -> str:
    """On whose things a role below maintainer may do `action`."""
    if action in SHARED_USE:
        return "own+shared"
    return "own" if action in OWN_ONLY else "all"


def cell(action: Action, role: Role) -> str:
    """What `role` may do with `action`: "-" nothing; "yes"; on everyone's things ("all"), its
    own only ("own"), or its own and those shared with it ("own+shared")."""
    if not role.at_least(REQUIRED[action]):
        return "-"
    if action not in OWN_ONLY:
        return "yes"
    return "all" if role.at_least(ANYONES_JOBS) else scope(action)


def role_table() -> str:
    """docs/roles.md's table of routes: one row per route, one column per role."""
    roles = list(Role)
    lines = [
        "| route | " + " | ".join(roles) + " | action | also, when the request asks for it |",
        "|---|" + "---|" * len(roles) + "---|---|",
    ]
    for (method, path), (action, *also) in ROUTE_ACTIONS.items():
        extra = "; ".join(f"{a} ({_least(a)}): {ALSO[a]}" for a in also)
        cells = " | ".join(cell(action, role) for role in roles)
        lines.append(f"| `{method} {path}` | {cells} | {action} | {extra} |")
    return "\n".join(lines) + "\n"


def action_table() -> str:
    """docs/roles.md's table of actions: the least role, and on whose things below maintainer."""
    lines = ["| action | least role | below maintainer, only on |", "|---|---|---|"]
    for action, role in REQUIRED.items():
        below = "-" if role.at_least(ANYONES_JOBS) or action not in OWN_ONLY else scope(action)
        lines.append(f"| {action} | {role} | {below} |")
    return "\n".join(lines) + "\n"


def _least(action: Action) -> str:
    role = REQUIRED[action]
    if action not in OWN_ONLY or role.at_least(ANYONES_JOBS):
        return str(role)
    return f"{role}, {scope(action)}"
