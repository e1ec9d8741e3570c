"""What the API does with hostile or broken clients: log streams capped per caller and in all,
a stream whose client takes nothing dropped, the audit entry with the status answered, and a
malformed request logged in one line (audit M10; api-fuzz findings 9 and 12)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import logging
import os
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.api import log_stream
from joblet_agent.api.handlers.job import LOG_STREAMS
from joblet_agent.api.log_stream_slots import LogStreamSlots
from joblet_agent.api.malformed import log_malformed_requests_in_one_line
from joblet_agent.domain.config import Access, AgentConfig, LogStreamPolicy
from joblet_agent.domain.rbac import Role
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.job.service import JobService
from tests.unit.fakes import FakeJournal, FakeSystemd
from tests.unit.wiring import api_app, job_service


class StreamingJournal(FakeJournal):
    """A following stream of a job that writes without pause (chatty) or never (quiet)."""

    def __init__(self, *, chatty: bool) -> None:
        super().__init__()
        self.chatty = chatty

    async def entries(
        self, unit: str, *, after_cursor: str | None, follow: bool
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        if not self.chatty:
            await asyncio.Event().wait()
        line = 0
        while True:
            batch = [
                {"__CURSOR": f"c{line + n}", "MESSAGE": "x" * 1000, "__REALTIME_TIMESTAMP": "1"}
                for n in range(64)
            ]
            line += 64
            yield batch
            await asyncio.sleep(0)


def make_service(tmp_path: Path, journal: FakeJournal, streams: LogStreamPolicy) -> JobService:
    config = dataclasses.replace(
        AgentConfig(state_dir=tmp_path / "state", runtimes_dir=tmp_path / "runtimes"),
        log_streams=streams,
    )
    service = job_service(config, store=SqliteJobStore(config.database), journal=journal)
    service.attach(FakeSystemd(service.on_systemd_event))
    return service


@contextlib.asynccontextmanager
async def serving(service: JobService) -> AsyncIterator[tuple[web.Application, str]]:
    """The app on a Unix socket; the caller (this process's user) is an admin by its group."""
    group = grp.getgrgid(os.getgid()).gr_name
    app = api_app(service, Access(local_groups=MappingProxyType({group: Role.ADMIN})))
    runner = web.AppRunner(app)
    await runner.setup()
    with tempfile.TemporaryDirectory(prefix="joblet-") as directory:  # short: sun_path is small
        socket = f"{directory}/api.sock"
        await web.UnixSite(runner, socket).start()
        try:
            yield app, socket
        finally:
            await runner.cleanup()


def session(socket: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=socket, limit=0), base_url="http://joblet"
    )


async def until(condition: Any, what: str) -> None:
    """Wait for a condition the server reaches on its own (not a timing assertion)."""
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


# -- log streams --------------------------------------------------------------------------


def test_a_caller_past_its_share_of_log_streams_gets_a_429(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stream learns that its client went away when it next writes: a heartbeat at the latest.
    monkeypatch.setattr(log_stream, "HEARTBEAT_SEC", 0.05)
    service = make_service(
        tmp_path, StreamingJournal(chatty=False), LogStreamPolicy(max=10, max_per_caller=2)
    )

    async def scenario() -> None:
        async with serving(service) as (app, socket), session(socket) as http:
            async with http.post("/v1/jobs", json={"command": "sleep", "args": ["9"]}) as made:
                job = await made.json()
            path = f"/v1/jobs/{job['id']}/logs"
            held = [await http.get(path, params={"follow": "1"}) for _ in range(2)]
            assert [r.status for r in held] == [200, 200]
            async with http.get(path, params={"follow": "1"}) as refused:
                answer = await refused.json()
            assert refused.status == 429
            assert answer["code"] == "too-many"
            assert "has 2 log streams open, the most one caller may have (2)" in answer["message"]
            assert app[LOG_STREAMS].open == 2
            # A client that goes away gives its slot back (at the stream's next heartbeat).
            held.pop().close()
            await until(lambda: app[LOG_STREAMS].open == 1, "a closed stream kept its slot")
            async with http.get(path, params={"follow": "1"}) as again:
                assert again.status == 200
            held.pop().close()

    asyncio.run(scenario())


def test_a_client_that_takes_nothing_is_dropped_and_frees_its_slot(tmp_path: Path) -> None:
    service = make_service(
        tmp_path,
        StreamingJournal(chatty=True),
        LogStreamPolicy(max=10, max_per_caller=2, write_timeout_sec=1),
    )

    async def scenario() -> None:
        async with serving(service) as (app, socket), session(socket) as http:
            async with http.post("/v1/jobs", json={"command": "sleep", "args": ["9"]}) as made:
                job = await made.json()
            slots: LogStreamSlots = app[LOG_STREAMS]
            # Asks for a chatty job's log and never reads a byte of the answer.
            reader, writer = await asyncio.open_unix_connection(socket)
            writer.write(
                f"GET /v1/jobs/{job['id']}/logs?follow=1 HTTP/1.1\r\nHost: joblet\r\n\r\n".encode()
            )
            await until(lambda: slots.open == 1, "the stream never started")
            await until(lambda: slots.open == 0, "the stream of a client that reads nothing stayed")
            assert await reader.read() is not None  # the agent closed the connection
            writer.close()

    asyncio.run(scenario())


def test_slots_refuse_past_the_caps_and_come_back() -> None:
    slots = LogStreamSlots(LogStreamPolicy(max=3, max_per_caller=2))
    with slots.admit("a"), slots.admit("a"):
        with pytest.raises(JobletError) as mine, slots.admit("a"):
            pass
        assert mine.value.code is ErrorCode.TOO_MANY
        with slots.admit("b"):
            with pytest.raises(JobletError) as everyones, slots.admit("c"):
                pass
            assert everyones.value.code is ErrorCode.BUSY
            assert (slots.open, slots.held_by("a")) == (3, 2)
    assert slots.open == 0
    with slots.admit("a"):
        assert slots.held_by("a") == 1


# -- the audit trail and malformed requests ------------------------------------------------


def test_the_audit_entry_has_the_status_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(tmp_path, FakeJournal(), LogStreamPolicy())
    upload_id = "0123abcd-0000-4000-8000-000000000000"

    async def scenario() -> list[int]:
        async with serving(service) as (_, socket), session(socket) as http:
            statuses = []
            for method, path, data in [
                ("POST", "/v1/volumes", b"{"),
                ("PATCH", "/v1/health", None),
                ("POST", "/v1/volumes", b" " * (2 * 1024 * 1024)),
                ("DELETE", f"/v1/uploads/{upload_id}", None),
            ]:
                async with http.request(method, path, data=data) as response:
                    statuses.append(response.status)
            return statuses

    with caplog.at_level(logging.INFO, logger="joblet_agent.audit"):
        assert asyncio.run(scenario()) == [400, 405, 413, 404]
    entries = [r for r in caplog.records if r.name == "joblet_agent.audit"]
    assert [getattr(r, "AUDIT_STATUS", None) for r in entries] == [400, 405, 413, 404]
    assert [getattr(r, "AUDIT_DECISION", None) for r in entries] == ["failed"] * 4
    assert getattr(entries[-1], "JOB_ID", None) is None
    assert getattr(entries[-1], "UPLOAD_ID", None) == upload_id


def test_a_malformed_request_is_one_warning_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(tmp_path, FakeJournal(), LogStreamPolicy())
    log_malformed_requests_in_one_line()

    async def scenario() -> bytes:
        async with serving(service) as (_, socket):
            reader, writer = await asyncio.open_unix_connection(socket)
            writer.write(b"GET /v1/health HTTP/1.1\r\nHost: joblet\r\nX-Probe: \x00\r\n\r\n")
            answer = await reader.read()
            writer.close()
            return answer

    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        assert b" 400 Bad Request" in asyncio.run(scenario()).split(b"\r\n", 1)[0]
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp logged nothing about the malformed request"
    assert all(r.exc_info is None for r in records)
    lines = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any(line.startswith("malformed HTTP request from") for line in lines), lines
    assert all("\n" not in line for line in lines), lines
