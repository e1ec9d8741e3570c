"""Uploads: files a client sends for a job, staged until the job that names them is created.

An upload is announced first (its size and number of entries), so a request over the limits is
refused before a byte of it is sent; then its tar stream is extracted, checked member by member
(archive.py), into a root-only staging directory; then the job that names it takes it over as the
tree of its /work. An upload no job took is removed after a while, and all are at agent start
(they belong to the client's request in flight, which fails with the agent anyway).

Nothing here may be held without bound by a client (review H4, L10): the body must keep to a
pace (body_pace.py), an upload being received expires, extraction runs in a small pool of its
own, taken only once bytes arrive, and the uploads waiting are capped per caller and in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from joblet_agent.domain.archive import Extracted, ExtractLimits
from joblet_agent.domain.config import AgentConfig
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import Clock, UploadStaging
from joblet_agent.services.upload_pace import BodyPace, paced

logger = logging.getLogger(__name__)

# An upload still being received this long after its body's deadline is dropped all the same
# (its request is cancelled): the deadline should have ended it.
RECEIVING_GRACE = timedelta(minutes=1)
MAX_WAITING_PER_OWNER = 16  # uploads announced, being received or ready, of one caller
MAX_WAITING = 256  # of all callers
# Extracting threads one caller may hold at once (the staging adapter has a few in all): more
# wait for one (the request keeps its connection, its body unread), so a caller sending slowly
# holds only its own share.
EXTRACTING_PER_OWNER = 2
# Tar headers and padding on top of the files' bytes: a PAX header and data padding per entry.
_STREAM_OVERHEAD_PER_ENTRY = 4096
_STREAM_OVERHEAD = 1024 * 1024


class UploadState(StrEnum):
    ANNOUNCED = "announced"
    RECEIVING = "receiving"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    owner: str
    bytes: int  # announced: the sum of its files' sizes
    entries: int  # announced: files, directories and links
    created_at: datetime
    state: UploadState = UploadState.ANNOUNCED
    received: Extracted | None = None
    receiving_since: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        received = self.received
        return {
            "id": self.id,
            "state": str(self.state),
            "bytes": self.bytes,
            "entries": self.entries,
            "files": received.files if received else None,
            "directories": received.directories if received else None,
            "links": received.links if received else None,
        }


class UploadService:
    def __init__(self, config: AgentConfig, clock: Clock, staging: UploadStaging) -> None:
        self.policy = config.jobs
        self.staging = staging
        self.clock = clock
        self.pace = BodyPace(
            total_sec=config.jobs.upload_timeout_sec,
            min_bytes_per_sec=config.jobs.upload_min_bytes_per_sec,
        )
        self.unclaimed_for = timedelta(seconds=config.jobs.upload_retention_sec)
        self._uploads: dict[str, Upload] = {}
        self._receivers: dict[str, asyncio.Task[object]] = {}
        self._shares: dict[str, _Share] = {}

    def reset(self) -> None:
        """At start: no upload survives the agent (its request died with it)."""
        self.staging.reset()

    def announce(self, owner: str, size: int, entries: int) -> Upload:
        """`size` and `entries` are counts, 0 or more (parse_announcement)."""
        self.expire()
        self._room_for_one_more(owner)
        if size > self.policy.max_upload_bytes:
            raise JobletError(
                ErrorCode.TOO_LARGE,
                f"bytes: {size} is over this agent's upload limit of "
                f"{self.policy.max_upload_bytes} bytes",
                hint="jobs.max_upload_size in joblet.yml sets it",
            )
        if entries > self.policy.max_upload_entries:
            raise JobletError(
                ErrorCode.TOO_LARGE,
                f"entries: {entries} is over this agent's limit of "
                f"{self.policy.max_upload_entries} files, directories and links",
                hint="jobs.max_upload_entries in joblet.yml sets it",
            )
        # Staged uploads take disk until a job takes them: one caller's, together, may hold
        # what one upload may, so announcing many cannot fill the state directory's disk.
        staged = sum(u.bytes for u in self._uploads.values() if u.owner == owner)
        if staged + size > self.policy.max_upload_bytes:
            raise JobletError(
                ErrorCode.TOO_LARGE,
                f"bytes: {size} more would put {staged + size} bytes of uploads of yours in "
                f"waiting; at most {self.policy.max_upload_bytes} wait at once",
                hint="run the jobs that take them, or drop them (DELETE /v1/uploads/{id}); "
                f"unclaimed ones go after {_minutes(self.unclaimed_for)}",
            )
        upload = Upload(
            id=str(uuid.uuid4()),
            owner=owner,
            bytes=size,
            entries=entries,
            created_at=self.clock.now(),
        )
        self._uploads[upload.id] = upload
        return upload

    def _room_for_one_more(self, owner: str) -> None:
        mine = sum(1 for u in self._uploads.values() if u.owner == owner)
        if mine >= MAX_WAITING_PER_OWNER:
            raise JobletError(
                ErrorCode.TOO_LARGE,
                f"uploads: {mine} of yours are waiting already; at most "
                f"{MAX_WAITING_PER_OWNER} wait at once",
                hint="run the jobs that take them, or drop them (DELETE /v1/uploads/{id}); "
                f"unclaimed ones go after {_minutes(self.unclaimed_for)}",
            )
        if len(self._uploads) >= MAX_WAITING:
            raise JobletError(
                ErrorCode.TOO_LARGE,
                f"uploads: {len(self._uploads)} are waiting on this agent; at most "
                f"{MAX_WAITING} wait at once",
                hint="try again once jobs have taken theirs; unclaimed ones go after "
                + _minutes(self.unclaimed_for),
            )

    async def receive(self, upload_id: str, owner: str, stream: AsyncIterator[bytes]) -> Upload:
        upload = self._owned(upload_id, owner)
        if upload.state is not UploadState.ANNOUNCED:
            raise JobletError(
                ErrorCode.CONFLICT, f"upload {upload_id} is {upload.state}; it is sent only once"
            )
        self._uploads[upload_id] = upload = replace(
            upload, state=UploadState.RECEIVING, receiving_since=self.clock.now()
        )
        task = asyncio.current_task()
        if task is not None:
            self._receivers[upload_id] = task
        limits = ExtractLimits(
            max_bytes=upload.bytes,
            max_entries=upload.entries,
            max_stream_bytes=upload.bytes
            + upload.entries * _STREAM_OVERHEAD_PER_ENTRY
            + _STREAM_OVERHEAD,
        )
        try:
            received = await self.staging.extract(
                upload_id,
                paced(stream, self.pace, what="upload"),
                limits,
                slot=self._share_of(owner),
            )
        except BaseException:
            self.discard(upload_id)
            raise
        finally:
            self._receivers.pop(upload_id, None)
        self._uploads[upload_id] = upload = replace(
            upload, state=UploadState.READY, received=received
        )
        logger.info(
            "upload %s from %s: %d files, %d bytes",
            upload_id,
            owner,
            received.files,
            received.bytes,
        )
        return upload

    @contextlib.asynccontextmanager
    async def _share_of(self, owner: str) -> AsyncIterator[None]:
        """One of the owner's EXTRACTING_PER_OWNER threads, waited for if all are busy."""
        share = self._shares.get(owner)
        if share is None:
            share = self._shares[owner] = _Share(asyncio.Semaphore(EXTRACTING_PER_OWNER))
        share.users += 1
        try:
            async with share.threads:
                yield
        finally:
            share.users -= 1
            if not share.users:
                del self._shares[owner]

    def take(self, upload_id: str, owner: str) -> tuple[Path, Extracted]:
        """Hand a received upload's tree over to a job (the caller moves or removes it)."""
        upload = self._owned(upload_id, owner)
        if upload.state is not UploadState.READY or upload.received is None:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"upload: {upload_id!r} is {upload.state}, not received yet",
                hint="send its files first (PUT /v1/uploads/{id})",
            )
        del self._uploads[upload_id]
        return self.tree(upload_id), upload.received

    def discard(self, upload_id: str) -> None:
        self._uploads.pop(upload_id, None)
        self.staging.discard(upload_id)

    def remove(self, upload_id: str, owner: str) -> None:
        self._owned(upload_id, owner)
        self.discard(upload_id)

    def tree(self, upload_id: str) -> Path:
        return self.staging.tree(upload_id)

    def _owned(self, upload_id: str, owner: str) -> Upload:
        upload = self._uploads.get(upload_id)
        # Someone else's upload is as unknown as a missing one: ids are not to be probed.
        if upload is None or upload.owner != owner:
            raise JobletError(
                ErrorCode.NOT_FOUND,
                f"upload: {upload_id!r} does not exist (or expired, or is not yours)",
                hint=f"uploads are kept for {_minutes(self.unclaimed_for)} until a job takes them",
            )
        return upload

    def expire(self) -> None:
        """Drop uploads no job took within jobs.upload_retention, and those still being
        received past their body's deadline. Called at each announce and by the retention
        sweep (services/job/retention.py), so one left alone goes in time too."""
        now = self.clock.now()
        receiving_for = timedelta(seconds=self.pace.total_sec) + RECEIVING_GRACE
        for upload in list(self._uploads.values()):
            if upload.state is UploadState.RECEIVING:
                assert upload.receiving_since is not None
                if upload.receiving_since + receiving_for < now:
                    logger.warning(
                        "upload %s of %s expired while received", upload.id, upload.owner
                    )
                    self._uploads.pop(upload.id, None)
                    receiver = self._receivers.pop(upload.id, None)
                    if receiver is not None:
                        receiver.cancel()  # its request removes what it had received
                    else:
                        self.discard(upload.id)
            elif upload.created_at + self.unclaimed_for < now:
                logger.info("upload %s of %s expired unclaimed", upload.id, upload.owner)
                self.discard(upload.id)


@dataclass(slots=True)
class _Share:
    threads: asyncio.Semaphore
    users: int = 0  # holding or waiting


def _minutes(span: timedelta) -> str:
    seconds = span.total_seconds()
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"
