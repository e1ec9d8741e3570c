"""The upload service's bookkeeping: limits at announce time, ownership, expiry, caps on
what waits, pace of bodies, and a start-up clean-up that never fails a start."""

from __future__ import annotations

import asyncio
import bz2
import io
import logging
import os
import tarfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from joblet_agent.adapters.upload_staging import EXTRACTING_THREADS, StagedUploads
from joblet_agent.api.handlers.upload import parse_count
from joblet_agent.domain.config import AgentConfig, JobPolicy
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.upload import (
    EXTRACTING_PER_OWNER,
    MAX_WAITING,
    MAX_WAITING_PER_OWNER,
    RECEIVING_GRACE,
    UploadService,
)

UNCLAIMED_FOR = timedelta(seconds=JobPolicy().upload_retention_sec)


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


def _service(tmp_path: Path, clock: Clock) -> UploadService:
    config = AgentConfig(state_dir=tmp_path, jobs=JobPolicy(max_upload_bytes=1000))
    service = UploadService(config, clock, StagedUploads(tmp_path / "uploads"))
    service.reset()
    return service


def staging(uploads: UploadService) -> StagedUploads:
    assert isinstance(uploads.staging, StagedUploads)
    return uploads.staging


def staged(uploads: UploadService) -> Path:
    """Where the uploads are extracted: the staging adapter's directory."""
    return staging(uploads).directory


def test_limits_are_checked_when_announced(tmp_path: Path) -> None:
    uploads = _service(tmp_path, Clock())
    with pytest.raises(JobletError) as caught:
        uploads.announce("alice", 1001, 1)
    assert caught.value.code is ErrorCode.TOO_LARGE
    assert "over this agent's upload limit of 1000 bytes" in caught.value.message
    for bad in (-1, "10", True, None):  # refused as the API parses the announcement
        with pytest.raises(JobletError, match="a whole number"):
            parse_count("bytes", bad)


def test_one_callers_waiting_uploads_share_one_limit(tmp_path: Path) -> None:
    uploads = _service(tmp_path, Clock())
    first = uploads.announce("alice", 600, 1)
    with pytest.raises(JobletError) as caught:
        uploads.announce("alice", 500, 1)
    assert "1100 bytes of uploads of yours in waiting; at most 1000" in caught.value.message
    uploads.announce("bob", 900, 1)  # others have their own
    uploads.remove(first.id, "alice")
    uploads.announce("alice", 500, 1)


def test_others_uploads_are_not_found_and_unclaimed_ones_expire(tmp_path: Path) -> None:
    clock = Clock()
    uploads = _service(tmp_path, clock)
    upload = uploads.announce("alice", 10, 1)
    with pytest.raises(JobletError) as caught:
        uploads.take(upload.id, "mallory")
    assert caught.value.code is ErrorCode.NOT_FOUND
    clock.moment += UNCLAIMED_FOR + timedelta(seconds=1)
    uploads.announce("alice", 1000, 1)  # the expired one no longer counts
    with pytest.raises(JobletError, match="does not exist"):
        uploads.take(upload.id, "alice")


def test_an_unclaimed_upload_goes_without_another_announce(tmp_path: Path) -> None:
    """The retention sweep calls expire(): an upload left alone goes in time too."""
    clock = Clock()
    uploads = _service(tmp_path, clock)
    upload = uploads.announce("alice", 10, 1)
    uploads.expire()
    with pytest.raises(JobletError) as kept:
        uploads.take(upload.id, "alice")
    assert kept.value.code is ErrorCode.CONFLICT  # still there, not received yet
    clock.moment += UNCLAIMED_FOR + timedelta(seconds=1)
    uploads.expire()
    with pytest.raises(JobletError) as gone:
        uploads.take(upload.id, "alice")
    assert gone.value.code is ErrorCode.NOT_FOUND


def test_uploads_waiting_are_capped_per_caller_and_in_all(tmp_path: Path) -> None:
    uploads = _service(tmp_path, Clock())
    for _ in range(MAX_WAITING_PER_OWNER):
        uploads.announce("alice", 0, 0)  # free in bytes: counted all the same
    with pytest.raises(JobletError) as caught:
        uploads.announce("alice", 0, 0)
    assert caught.value.code is ErrorCode.TOO_LARGE
    assert caught.value.message == (
        f"uploads: {MAX_WAITING_PER_OWNER} of yours are waiting already; at most "
        f"{MAX_WAITING_PER_OWNER} wait at once"
    )
    for n in range(1, MAX_WAITING // MAX_WAITING_PER_OWNER):
        for _ in range(MAX_WAITING_PER_OWNER):
            uploads.announce(f"user{n}", 0, 0)
    with pytest.raises(JobletError, match=f"at most {MAX_WAITING} wait at once"):
        uploads.announce("bob", 0, 0)


def _deep(top: Path, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("a", dir_fd=fd)
        child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)


def test_reset_removes_deep_leftovers_and_never_fails_a_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    uploads = _service(tmp_path, Clock())
    leftover = staged(uploads) / "old" / "tree"
    leftover.mkdir(parents=True)
    _deep(leftover, 1200)  # what an older agent accepted (review H2)
    uploads.reset()
    assert list(staged(uploads).iterdir()) == []
    (staged(uploads) / "stuck").mkdir()

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(os, "rmdir", refuse)
    with caplog.at_level(logging.WARNING):
        uploads.reset()  # logged, not raised
    assert "could not remove the leftover upload" in caplog.text


def _body(data: bytes) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return chunks()


def test_a_compressed_upload_is_refused_and_nothing_stays(tmp_path: Path) -> None:
    uploads = _service(tmp_path, Clock())
    upload = uploads.announce("alice", 10, 1)
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("f"), io.BytesIO(b""))
    with pytest.raises(JobletError) as caught:
        asyncio.run(uploads.receive(upload.id, "alice", _body(bz2.compress(plain.getvalue()))))
    assert caught.value.message == (
        "upload: the stream is bzip2-compressed; send an uncompressed tar stream "
        "(Content-Type: application/x-tar)"
    )
    assert list(staged(uploads).iterdir()) == []


def test_a_body_that_falls_behind_is_refused(tmp_path: Path) -> None:
    config = AgentConfig(
        state_dir=tmp_path, jobs=JobPolicy(upload_timeout_sec=1, upload_min_bytes_per_sec=1)
    )
    uploads = UploadService(config, Clock(), StagedUploads(tmp_path / "uploads"))
    uploads.reset()
    upload = uploads.announce("alice", 10, 1)

    async def stalled() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    with pytest.raises(JobletError, match="upload: the body was not whole within 1 s"):
        asyncio.run(uploads.receive(upload.id, "alice", stalled()))
    assert list(staged(uploads).iterdir()) == []


def test_an_upload_received_too_long_expires_and_its_request_ends(tmp_path: Path) -> None:
    clock = Clock()
    uploads = _service(tmp_path, clock)
    upload = uploads.announce("alice", 10, 1)

    async def scenario() -> None:
        async def stalled() -> AsyncIterator[bytes]:
            await asyncio.Event().wait()
            yield b""

        receiving = asyncio.ensure_future(uploads.receive(upload.id, "alice", stalled()))
        await asyncio.sleep(0)
        with pytest.raises(JobletError, match="is receiving, not received yet"):
            uploads.take(upload.id, "alice")
        clock.moment += timedelta(seconds=uploads.pace.total_sec) + RECEIVING_GRACE
        clock.moment += timedelta(seconds=1)
        uploads.announce("bob", 0, 0)  # expiry runs at each announce
        with pytest.raises(asyncio.CancelledError):
            await receiving

    asyncio.run(scenario())
    with pytest.raises(JobletError, match="does not exist"):
        uploads.take(upload.id, "alice")
    assert not (staged(uploads) / upload.id).exists()


def test_one_caller_holds_at_most_its_share_of_the_extracting_threads(tmp_path: Path) -> None:
    uploads = _service(tmp_path, Clock())
    started: list[str] = []

    class Counting(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            started.append(fn.args[1].parent.name)  # extract(reader, dest, ...): dest's upload
            return super().submit(fn, *args, **kwargs)

    staging(uploads)._extracting = Counting(max_workers=EXTRACTING_THREADS)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("f"), io.BytesIO(b""))

    async def scenario() -> None:
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield tar.getvalue()[:512]  # a first chunk, then a wait for the rest
            await release.wait()
            yield tar.getvalue()[512:]

        alice = [uploads.announce("alice", 0, 1).id for _ in range(EXTRACTING_PER_OWNER + 1)]
        bob = uploads.announce("bob", 0, 1).id
        receiving = [asyncio.ensure_future(uploads.receive(i, "alice", slow())) for i in alice]
        for _ in range(20):
            await asyncio.sleep(0)
        assert started == alice[:EXTRACTING_PER_OWNER]  # the third waits for alice's share
        await uploads.receive(bob, "bob", _body(tar.getvalue()))  # bob is not behind her
        assert started[-1] == bob
        release.set()
        await asyncio.gather(*receiving)
        assert sorted(started) == sorted([*alice, bob])

    try:
        asyncio.run(scenario())
    finally:
        staging(uploads)._extracting.shutdown()
