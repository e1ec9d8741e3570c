"""/v1/jobs/{id}/files: list, read, archive (out of a job, running or ended) and copy in (an
upload's tree into a running job)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from joblet_agent.api.body import json_body
from joblet_agent.api.identity import caller_of
from joblet_agent.api.job_access import job_for
from joblet_agent.api.keys import app_key
from joblet_agent.api.query import query_text
from joblet_agent.domain.exec_frames import FrameError
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.job import JobRecord
from joblet_agent.domain.job_file import MAX_PATH_BYTES, JobPath, check_name, parse_job_path
from joblet_agent.domain.rbac import Action
from joblet_agent.errors import JobletError
from joblet_agent.services.job_file import JobFileService

logger = logging.getLogger(__name__)
FILES = app_key("job_files", JobFileService)
SIZE_HEADER = "X-Joblet-Size"  # the bytes a read or an archive's files carry (for progress)
MODE_HEADER = "X-Joblet-Mode"


def _service(request: web.Request) -> JobFileService:
    service: JobFileService = request.app[FILES]
    return service


def _path(request: web.Request, record: JobRecord) -> JobPath:
    text = query_text(request.query, "path", MAX_PATH_BYTES) or "/work"
    return parse_job_path(text, record.spec.volumes)


async def listing(request: web.Request) -> web.Response:
    record = job_for(request, Action.JOB_INSPECT)
    found = await _service(request).listing(record, _path(request, record))
    return web.json_response(found.to_dict())


async def _stream(
    request: web.Request, response: web.StreamResponse, data: AsyncIterator[bytes]
) -> None:
    """The body as it comes; a failure once it started aborts the connection, so the client
    sees a broken stream, never a short file that looks whole."""
    await response.prepare(request)
    try:
        async for chunk in data:
            await response.write(chunk)
    except (JobletError, FrameError) as exc:
        logger.warning("a copy out of a job broke off: %s", exc)
        if request.transport is not None:
            request.transport.abort()
        return
    await response.write_eof()


async def content(request: web.Request) -> web.StreamResponse:
    record = job_for(request, Action.JOB_INSPECT)
    async with _service(request).read(record, _path(request, record)) as (entry, data):
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                SIZE_HEADER: str(entry.size),
                MODE_HEADER: f"{entry.mode & 0o777:04o}",
            }
        )
        await _stream(request, response, data)
    return response


async def archive(request: web.Request) -> web.StreamResponse:
    record = job_for(request, Action.JOB_INSPECT)
    async with _service(request).archive_of(record, _path(request, record)) as (total, data):
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-tar", SIZE_HEADER: str(total)}
        )
        await _stream(request, response, data)
    return response


async def copy_in(request: web.Request) -> web.Response:
    record = job_for(request, Action.JOB_WRITE_FILES)
    body = Fields(await json_body(request), "")
    upload = body.required_string("upload")
    into = parse_job_path(body.required_string("path"), record.spec.volumes, write=True)
    name = body.string("name")
    if name is not None:
        check_name(name)
    body.reject_unknown()
    copied = await _service(request).push(record, upload, caller_of(request).owner, into, name)
    return web.json_response(copied.to_dict())


ROUTES = [
    web.get("/v1/jobs/{id}/files", listing),
    web.post("/v1/jobs/{id}/files", copy_in),
    web.get("/v1/jobs/{id}/files/content", content),
    web.get("/v1/jobs/{id}/files/archive", archive),
]
