"""/v1/uploads: announce an upload, send its tar stream, or drop it. A job names it to use it."""

from __future__ import annotations

import re

from aiohttp import web

from joblet_agent.api.body import body_chunks, json_body
from joblet_agent.api.handlers.job import SERVICE
from joblet_agent.api.identity import caller_of
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.rbac import Action, authorize
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.services.upload import UploadService

_CHUNK = 1024 * 1024
TAR_TYPES = ("application/x-tar", "application/octet-stream")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _uploads(request: web.Request) -> UploadService:
    uploads: UploadService = request.app[SERVICE].uploads
    return uploads


def _owner(request: web.Request) -> str:
    caller = caller_of(request)
    authorize(caller, Action.UPLOAD)
    return caller.owner


async def announce(request: web.Request) -> web.Response:
    owner = _owner(request)
    body = Fields(await json_body(request), "")
    size, entries = (
        parse_count("bytes", body.raw("bytes")),
        parse_count("entries", body.raw("entries")),
    )
    body.reject_unknown()
    upload = _uploads(request).announce(owner, size, entries)
    return web.json_response(upload.to_dict(), status=201)


async def send(request: web.Request) -> web.Response:
    owner = _owner(request)
    if request.content_type not in TAR_TYPES:
        raise JobletError(
            ErrorCode.INVALID,
            f"Content-Type: {excerpt(request.content_type)} is not valid; send a tar stream "
            f"({TAR_TYPES[0]})",
        )
    chunks = body_chunks(request, "upload", _CHUNK)
    upload = await _uploads(request).receive(_upload_id(request), owner, chunks)
    return web.json_response(upload.to_dict())


async def remove(request: web.Request) -> web.Response:
    upload_id = _upload_id(request)
    _uploads(request).remove(upload_id, _owner(request))
    return web.json_response({"deleted": upload_id})


def _upload_id(request: web.Request) -> str:
    upload_id = request.match_info["id"]
    if not _UPLOAD_ID.match(upload_id):
        raise JobletError(
            ErrorCode.NOT_FOUND,
            f"upload: {excerpt(upload_id)} does not exist; uploads have the ids "
            "POST /v1/uploads answers",
        )
    return upload_id


ROUTES = [
    web.post("/v1/uploads", announce),
    web.put("/v1/uploads/{id}", send),
    web.delete("/v1/uploads/{id}", remove),
]


def parse_count(field: str, value: object) -> int:
    """An announcement's count (bytes, entries): a whole number, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise JobletError(
            ErrorCode.INVALID, f"{field}: {excerpt(value)} is not valid; a whole number, 0 or more"
        )
    return value
