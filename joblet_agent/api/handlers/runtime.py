"""/v1/runtimes: list, describe, install (the archive streamed in the body), remove, test,
and validate a runtime.yml."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from joblet_agent.api.audit import JOB_ID
from joblet_agent.api.body import body_chunks, json_body
from joblet_agent.api.identity import caller_of
from joblet_agent.api.job_access import one_job_json
from joblet_agent.api.keys import app_key
from joblet_agent.api.query import whole_number
from joblet_agent.domain.rbac import Action, Caller, authorize
from joblet_agent.domain.runtime import NAME
from joblet_agent.domain.runtime_binding import InstalledRuntime
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.services.runtime import RuntimeService, Source, validate

SERVICE = app_key("runtimes", RuntimeService)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 256 * 1024
# The runtime.yml's text inside JSON: escaped, it can take a few times its own size.
MAX_VALIDATE_BODY = 1024 * 1024
# runtime.yml is parsed off the event loop, one at a time: 256 KiB of YAML takes 0.3 s even with
# libyaml (3 s without), so a reader's many at once must not stall every other request.
_YAML_PARSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime-yml")
MAX_URL = 2048  # of a registry's or an archive's URL, as recorded with the runtime


def _service(request: web.Request) -> RuntimeService:
    service: RuntimeService = request.app[SERVICE]
    return service


def _allowed(request: web.Request, action: Action) -> Caller:
    caller = caller_of(request)
    authorize(caller, action)
    return caller


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not NAME.match(name):
        raise JobletError(
            ErrorCode.INVALID,
            f"name: {excerpt(name)} is not valid; 1-63 of a-z, 0-9, '.', '_', '-'",
        )
    if name == VALIDATE:  # the route /v1/runtimes/{name} matches it too (api-fuzz D2)
        raise JobletError(
            ErrorCode.INVALID,
            "name: 'validate' is not a runtime's name; POST /v1/runtimes/validate checks a "
            "runtime.yml",
        )
    return name


def summary(runtime: InstalledRuntime) -> dict[str, Any]:
    spec = runtime.spec
    return {
        "name": spec.name,
        "language": spec.language,
        "version": spec.version,
        "release": spec.release,
        "description": spec.description,
        "architectures": list(spec.architectures),
        "relax": list(spec.relax),
        "sha256": runtime.sha256,
    }


async def list_runtimes(request: web.Request) -> web.Response:
    _allowed(request, Action.RUNTIME_READ)
    service = _service(request)
    return web.json_response(
        {
            "architecture": service.runtimes.arch,
            "runtimes": [summary(r) for r in service.installed()],
        }
    )


async def get(request: web.Request) -> web.Response:
    _allowed(request, Action.RUNTIME_READ)
    service = _service(request)
    runtime = service.get(_name(request))
    return web.json_response(
        {
            **_installed(runtime),
            "directory": str(runtime.directory),
            "jobs": [r.id for r in service.users(runtime.name)],
        }
    )


def _installed(runtime: InstalledRuntime) -> dict[str, Any]:
    """The runtime.yml, the archive's sha256 and where the archive came from."""
    source = runtime.provenance.to_dict() if runtime.provenance else None
    return {**runtime.spec.to_dict(), "sha256": runtime.sha256, "source": source}


def _source(request: web.Request) -> Source:
    """?registry=, ?archive=: where the client fetched the archive (recorded with the runtime);
    ?insecure=1: over plain http://, which only an admin may do."""
    insecure = request.query.get("insecure", "0")
    if insecure not in ("0", "1"):
        raise JobletError(ErrorCode.INVALID, f"insecure: {insecure[:8]!r} is not valid; 0 or 1")
    urls: dict[str, str | None] = {}
    for key in ("registry", "archive"):
        value = request.query.get(key)
        if value is not None and (not value or len(value) > MAX_URL or not value.isprintable()):
            raise JobletError(
                ErrorCode.INVALID,
                f"{key}: {excerpt(value)} is not valid; a URL or path of 1-{MAX_URL} printable "
                "characters",
            )
        urls[key] = value
    return Source(registry=urls["registry"], archive=urls["archive"], insecure=insecure == "1")


async def install(request: web.Request) -> web.Response:
    """The archive is the body; ?size= and ?sha256= are what the client checked it against
    (the registry index's sha256); ?registry=, ?archive= and ?insecure= say where it came from."""
    caller = _allowed(request, Action.RUNTIME_INSTALL)
    name = _name(request)
    source = _source(request)
    size = whole_number("size", request.query.get("size", ""), 0, 2**63 - 1)
    sha256 = request.query.get("sha256", "")
    if not _SHA256.match(sha256):
        raise JobletError(
            ErrorCode.INVALID, f"sha256: {excerpt(sha256)} is not valid; 64 hexadecimal digits"
        )
    if request.content_length is not None and request.content_length != size:
        raise JobletError(
            ErrorCode.INVALID,
            f"size: {size} but the body is {request.content_length} bytes",
        )
    chunks = body_chunks(request, "runtime archive", _CHUNK)
    runtime = await _service(request).install(
        name, chunks, size=size, sha256=sha256, caller=caller, source=source
    )
    return web.json_response(_installed(runtime), status=201)


async def remove(request: web.Request) -> web.Response:
    _allowed(request, Action.RUNTIME_REMOVE)
    runtime = _service(request).remove(_name(request))
    return web.json_response({"removed": runtime.name, "release": runtime.spec.release})


async def test(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.JOB_RUN)
    record = await _service(request).test(_name(request), owner=caller.owner)
    request[JOB_ID] = record.id
    return web.json_response(one_job_json(request, record), status=201)


async def validate_yml(request: web.Request) -> web.Response:
    """Body: {"text": "<runtime.yml>"}; answers the parsed runtime, or the first error (400)."""
    _allowed(request, Action.RUNTIME_READ)
    body = await json_body(request, most=MAX_VALIDATE_BODY)
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str):
        raise JobletError(ErrorCode.INVALID, "text: missing; the runtime.yml's text is required")
    spec = await asyncio.get_running_loop().run_in_executor(_YAML_PARSER, validate, text)
    return web.json_response({"valid": True, "runtime": spec.to_dict()})


VALIDATE = "validate"
ROUTES = [
    web.get("/v1/runtimes", list_runtimes),
    web.post(f"/v1/runtimes/{VALIDATE}", validate_yml),
    web.get("/v1/runtimes/{name}", get),
    web.put("/v1/runtimes/{name}", install),
    web.delete("/v1/runtimes/{name}", remove),
    web.post("/v1/runtimes/{name}/test", test),
]
