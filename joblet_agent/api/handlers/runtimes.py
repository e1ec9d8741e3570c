"""/v1/runtimes: list, describe, install (the archive streamed in the body), remove, test,
and validate a runtime.yml."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from joblet_agent.api.audit import JOB_ID
from joblet_agent.api.identity import caller_of
from joblet_agent.api.keys import app_key
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.rbac import Action, Caller, authorize
from joblet_agent.runtimes.resolve import InstalledRuntime
from joblet_agent.runtimes.spec import NAME
from joblet_agent.services.runtimes import RuntimeService, Source, validate

SERVICE = app_key("runtimes", RuntimeService)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 256 * 1024
MAX_RUNTIME_YML = 256 * 1024
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
            f"name: {name!r} is not valid; 1-63 of a-z, 0-9, '.', '_', '-'",
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
                f"{key}: {value[:80]!r} is not valid; a URL or path of 1-{MAX_URL} printable "
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
    size_text = request.query.get("size", "")
    sha256 = request.query.get("sha256", "")
    if not size_text.isdigit():
        raise JobletError(
            ErrorCode.INVALID, f"size: {size_text!r} is not valid; the archive's size in bytes"
        )
    if not _SHA256.match(sha256):
        raise JobletError(
            ErrorCode.INVALID, f"sha256: {sha256!r} is not valid; 64 hexadecimal digits"
        )
    size = int(size_text)
    if request.content_length is not None and request.content_length != size:
        raise JobletError(
            ErrorCode.INVALID,
            f"size: {size} but the body is {request.content_length} bytes",
        )

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await request.content.read(_CHUNK):
            yield chunk

    runtime = await _service(request).install(
        name, chunks(), size=size, sha256=sha256, caller=caller, source=source
    )
    return web.json_response(_installed(runtime), status=201)


async def remove(request: web.Request) -> web.Response:
    _allowed(request, Action.RUNTIME_REMOVE)
    runtime = _service(request).remove(_name(request))
    return web.json_response({"removed": runtime.name, "release": runtime.spec.release})


async def test(request: web.Request) -> web.Response:
    caller = _allowed(request, Action.JOB_RUN)
    record = await _service(request).test(_name(request), owner=caller.name)
    request[JOB_ID] = record.id
    return web.json_response(record.to_dict(with_secrets=False), status=201)


async def validate_yml(request: web.Request) -> web.Response:
    """Body: {"text": "<runtime.yml>"}; answers the parsed runtime, or the first error (400)."""
    _allowed(request, Action.RUNTIME_READ)
    body = await request.json()
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str):
        raise JobletError(ErrorCode.INVALID, "text: missing; the runtime.yml's text is required")
    if len(text) > MAX_RUNTIME_YML:
        raise JobletError(ErrorCode.TOO_LARGE, f"text: at most {MAX_RUNTIME_YML} bytes")
    return web.json_response({"valid": True, "runtime": validate(text).to_dict()})


ROUTES = [
    web.get("/v1/runtimes", list_runtimes),
    web.post("/v1/runtimes/validate", validate_yml),
    web.get("/v1/runtimes/{name}", get),
    web.put("/v1/runtimes/{name}", install),
    web.delete("/v1/runtimes/{name}", remove),
    web.post("/v1/runtimes/{name}/test", test),
]
