"""Execs against a fake init: the request's bounds, the frames' parsing (what init sends is as
untrusted as the job's output), the service's session, timeout and journal."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.exec import LineSplitter, parse_exec_request
from joblet_agent.domain.exec_frames import (
    MAX_REPLY,
    FrameError,
    parse_entry,
    parse_error,
    parse_exit,
    parse_header,
)
from joblet_agent.domain.job import JobRecord, JobSpec, JobState
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.exec import ExecService
from joblet_agent.units.paths import JobPaths
from tests.unit.fake_init import Call, FakeExecJournal, FakeInit, FakeJobChannels

JOB = JobRecord(
    id="0b7d3c1e-5a4f-4c2b-9e8d-1f2a3b4c5d6e",
    spec=JobSpec(command="sleep"),
    state=JobState.RUNNING,
    owner="a",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "command"),
        ({"command": ""}, "command"),
        ({"command": "x", "workdir": "../etc"}, "workdir"),
        ({"command": "x", "workdir": "/etc"}, "workdir"),
        ({"command": "x", "env": {"LD_PRELOAD": "/x"}}, "env.LD_PRELOAD"),
        ({"command": "x", "env": {"JOB_ID": "y"}}, "env.JOB_ID"),
        ({"command": "x", "timeout_sec": 0}, "timeout_sec"),
        ({"command": "x", "rows": 100_000}, "rows"),
        ({"command": "x", "surprise": 1}, "surprise"),
        ({"command": "x", "args": ["a\0b"]}, "args[0]"),
    ],
)
def test_bad_exec_requests_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(JobletError) as refused:
        parse_exec_request(body)
    assert refused.value.code is ErrorCode.INVALID
    assert refused.value.message.startswith(field), refused.value.message


def test_an_exec_request_parsed() -> None:
    spec = parse_exec_request(
        {"command": "ls", "args": ["-l"], "workdir": "./a//b/", "timeout_sec": "5m", "tty": True}
    )
    assert (spec.argv, spec.cwd, spec.timeout_sec, spec.stdin) == (
        ("ls", "-l"),
        "/work/a/b",
        300.0,
        True,  # a terminal has input unless told otherwise
    )


@pytest.mark.parametrize("payload", [b"", b"1", b"1 2 3", b"-1 0", b"999 0", b"0 99", b"x 0"])
def test_a_hostile_exit_status_is_a_frame_error(payload: bytes) -> None:
    with pytest.raises(FrameError):
        parse_exit(payload)


def test_frames_longer_than_the_bound_are_refused_before_reading() -> None:
    assert parse_header(b"o" + MAX_REPLY.to_bytes(4, "big")) == (b"o", MAX_REPLY)
    with pytest.raises(FrameError):
        parse_header(b"o" + (MAX_REPLY + 1).to_bytes(4, "big"))


def test_entries_and_errors_from_init_are_checked() -> None:
    def fields(*parts: bytes) -> bytes:
        return b"\0".join(parts)

    entry = parse_entry(fields(b"out.csv", b"f", b"644", b"12", b"1700000000.500000000", b"1", b""))
    assert (entry.name, entry.kind, entry.mode, entry.size, entry.mtime) == (
        "out.csv",
        "file",
        0o644,
        12,
        1700000000.5,
    )
    link = parse_entry(fields(b"l", b"l", b"777", b"3", b"1.0", b"1", b"/etc/shadow"))
    assert link.target == "/etc/shadow"  # shown as text, never followed
    for bad in (
        b"a/b\0f\0644\01\01.0\01\0",
        b"..\0d\0755\01\01.0\01\0",
        b"x\0f\0644\0-1\01.0\01\0",
    ):
        with pytest.raises(FrameError):
            parse_entry(bad)
    error = parse_error(b"ENOENT\0no such file\x1b]0;pwned\x07")
    assert error == type(error)("ENOENT", "no such file?]0;pwned?")
    assert parse_error(b"\x1b[31m\0x").code == "EIO"


def test_lines_are_split_and_cut_for_the_journal() -> None:
    lines = LineSplitter(longest=8)
    assert lines.feed(b"one\ntw") == [b"one"]
    assert lines.feed(b"o\n0123456789") == [b"two", b"01234567"]
    assert lines.flush() == [b"89"]


def _service(init: FakeInit | None = None) -> tuple[ExecService, FakeExecJournal]:
    config = AgentConfig()
    channels = FakeJobChannels()
    if init is not None:
        socket = JobPaths.for_job(PurePosixPath(config.jobs_dir), JOB.id).channel
        channels.inits[str(socket)] = init
    journal = FakeExecJournal()
    return ExecService(config, channels, journal), journal


def test_an_exec_streams_its_output_and_ends_with_its_code_and_its_lines_journaled() -> None:
    def program(call: Call) -> tuple[bytes, bytes, int]:
        assert (call.argv, call.env, call.cwd) == (["greet", "x"], {"A": "1"}, "/work/sub")
        return b"hello\nwor", b"oops\n", 3

    service, journal = _service(FakeInit(programs={"greet": program}))
    spec = parse_exec_request(
        {"command": "greet", "args": ["x"], "env": {"A": "1"}, "workdir": "sub"}
    )
    touched: list[str] = []
    service.on_touch.append(touched.append)

    async def scenario() -> list[tuple[str, bytes]]:
        async with service.exec(JOB, spec, "alice") as session:
            assert service.busy(JOB.id)
            got = [item async for item in session.output()]
            assert session.end is not None and session.end.exit_code == 3
        assert not service.busy(JOB.id)
        return got

    assert asyncio.run(scenario()) == [("stdout", b"hello\nwor"), ("stderr", b"oops\n")]
    assert [(line[3], line[4]) for line in journal.lines] == [
        ("stdout", b"hello"),
        ("stderr", b"oops"),
        ("stdout", b"wor"),
    ]
    assert {line[0] for line in journal.lines} == {JOB.unit}
    assert touched == [JOB.id, JOB.id]


def test_an_exec_past_its_timeout_is_killed_and_ends_124() -> None:
    service, _ = _service(FakeInit(programs={"sleep": lambda call: None}))
    spec = parse_exec_request({"command": "sleep", "timeout_sec": 0.05})

    async def scenario() -> tuple[int, int | None, bool]:
        async with service.exec(JOB, spec, "alice") as session:
            async for _ in session.output():
                pass
        assert session.end is not None
        return session.end.exit_code, session.end.signal, session.end.timed_out

    assert asyncio.run(scenario()) == (124, 9, True)


def test_execs_that_cannot_start_are_clear_errors() -> None:
    service, _ = _service(FakeInit())
    spec = parse_exec_request({"command": "missing"})

    async def attempt(record: JobRecord, svc: ExecService = service) -> JobletError:
        with pytest.raises(JobletError) as refused:
            async with svc.exec(record, spec, "alice"):
                pass
        return refused.value

    missing = asyncio.run(attempt(JOB))
    assert missing.code is ErrorCode.NOT_FOUND and missing.message.startswith("missing:")
    ended = asyncio.run(attempt(dataclasses.replace(JOB, state=JobState.COMPLETED)))
    assert ended.code is ErrorCode.CONFLICT and "COMPLETED" in ended.message
    no_channel = asyncio.run(attempt(JOB, _service()[0]))
    assert no_channel.code is ErrorCode.CONFLICT and "no exec channel" in no_channel.message
