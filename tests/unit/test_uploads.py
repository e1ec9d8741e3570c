"""The upload service's bookkeeping: limits at announce time, ownership, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from joblet_agent.config import AgentConfig, JobPolicy
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.uploads import UNCLAIMED_FOR, UploadService


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


def _service(tmp_path: Path, clock: Clock) -> UploadService:
    config = AgentConfig(state_dir=tmp_path, jobs=JobPolicy(max_upload_bytes=1000))
    service = UploadService(config, clock)
    service.reset()
    return service


def test_limits_are_checked_when_announced(tmp_path: Path) -> None:
    uploads = _service(tmp_path, Clock())
    with pytest.raises(JobletError) as caught:
        uploads.announce("alice", 1001, 1)
    assert caught.value.code is ErrorCode.TOO_LARGE
    assert "over this agent's upload limit of 1000 bytes" in caught.value.message
    for bad in (-1, "10", True, None):
        with pytest.raises(JobletError, match="a whole number"):
            uploads.announce("alice", bad, 1)


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
