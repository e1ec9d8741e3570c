"""/v1/uploads: announce an upload, send its tar stream, or drop it. A job names it to use it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import ClientPayloadError, web

from joblet_agent.api.handlers.jobs import SERVICE
from joblet_agent.api.identity import caller_of
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.fields import Fields
from joblet_agent.rbac import Action, authorize
from joblet_agent.services.uploads import UploadService

_CHUNK = 1024 * 1024
TAR_TYPES = ("application/x-tar", "application/octet-stream")


def _uploads(request: web.Request) -> UploadService:
    uploads: UploadService = request.app[SERVICE].uploads
    return uploads


def _owner(request: web.Request) -> str:
    caller = caller_of(request)
    authorize(caller, Action.UPLOAD)
    return caller.name


async def announce(request: web.Request) -> web.Response:
    owner = _owner(request)
    body = Fields(await request.json(), "")
    size, entries = body.raw("bytes"), body.raw("entries")
    body.reject_unknown()
    upload = _uploads(request).announce(owner, size, entries)
    return web.json_response(upload.to_dict(), status=201)


async def send(request: web.Request) -> web.Response:
    owner = _owner(request)
    if request.content_type not in TAR_TYPES:
        raise JobletError(
            ErrorCode.INVALID,
            f"Content-Type: {request.content_type!r} is not valid; send a tar stream "
            f"({TAR_TYPES[0]})",
        )
    upload = await _uploads(request).receive(request.match_info["id"], owner, _body(request))
    return web.json_response(upload.to_dict())


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            yield chunk
    except (ConnectionError, ClientPayloadError) as exc:
        # The client went away mid-stream (it may have failed reading its own files): a bad
        # request, answered to no one, rather than an internal error.
        raise JobletError(
            ErrorCode.INVALID, f"upload: the stream broke off before its end ({exc})"
        ) from None


async def remove(request: web.Request) -> web.Response:
    upload_id = request.match_info["id"]
    _uploads(request).remove(upload_id, _owner(request))
    return web.json_response({"deleted": upload_id})


ROUTES = [
    web.post("/v1/uploads", announce),
    web.put("/v1/uploads/{id}", send),
    web.delete("/v1/uploads/{id}", remove),
]
