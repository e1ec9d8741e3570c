"""Uploads: files a client sends for a job, staged until the job that names them is created.

An upload is announced first (its size and number of entries), so a request over the limits is
refused before a byte of it is sent; then its tar stream is extracted, checked member by member
(archive.py), into a root-only staging directory; then the job that names it takes it over as the
tree of its /work. An upload no job took is removed after a while, and all are at agent start
(they belong to the client's request in flight, which fails with the agent anyway).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from joblet_agent.archive import Extracted, ExtractLimits, extract_async
from joblet_agent.config import AgentConfig
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.ports import Clock

logger = logging.getLogger(__name__)

UNCLAIMED_FOR = timedelta(minutes=15)
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
    def __init__(self, config: AgentConfig, clock: Clock) -> None:
        self.policy = config.jobs
        self.directory = config.state_dir / "uploads"
        self.clock = clock
        self._uploads: dict[str, Upload] = {}

    def reset(self) -> None:
        """At start: no upload survives the agent (its request died with it)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(mode=0o700, parents=True)

    def announce(self, owner: str, size: object, entries: object) -> Upload:
        self._expire()
        size = _count("bytes", size)
        entries = _count("entries", entries)
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
                "unclaimed ones go after 15 minutes",
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

    async def receive(self, upload_id: str, owner: str, stream: AsyncIterator[bytes]) -> Upload:
        upload = self._owned(upload_id, owner)
        if upload.state is not UploadState.ANNOUNCED:
            raise JobletError(
                ErrorCode.CONFLICT, f"upload {upload_id} is {upload.state}; it is sent only once"
            )
        self._uploads[upload_id] = upload = replace(upload, state=UploadState.RECEIVING)
        tree = self.tree(upload_id)
        tree.mkdir(mode=0o700, parents=True)
        limits = ExtractLimits(
            max_bytes=upload.bytes,
            max_entries=upload.entries,
            max_stream_bytes=upload.bytes
            + upload.entries * _STREAM_OVERHEAD_PER_ENTRY
            + _STREAM_OVERHEAD,
        )
        try:
            received = await extract_async(stream, tree, limits, what="upload")
        except BaseException:
            self.discard(upload_id)
            raise
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
        shutil.rmtree(self.directory / upload_id, ignore_errors=True)

    def remove(self, upload_id: str, owner: str) -> None:
        self._owned(upload_id, owner)
        self.discard(upload_id)

    def tree(self, upload_id: str) -> Path:
        return self.directory / upload_id / "tree"

    def _owned(self, upload_id: str, owner: str) -> Upload:
        upload = self._uploads.get(upload_id)
        # Someone else's upload is as unknown as a missing one: ids are not to be probed.
        if upload is None or upload.owner != owner:
            raise JobletError(
                ErrorCode.NOT_FOUND,
                f"upload: {upload_id!r} does not exist (or expired, or is not yours)",
                hint="uploads are kept for 15 minutes until a job takes them",
            )
        return upload

    def _expire(self) -> None:
        cutoff = self.clock.now() - UNCLAIMED_FOR
        for upload in list(self._uploads.values()):
            if upload.created_at < cutoff and upload.state is not UploadState.RECEIVING:
                logger.info("upload %s of %s expired unclaimed", upload.id, upload.owner)
                self.discard(upload.id)


def _count(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise JobletError(
            ErrorCode.INVALID, f"{field}: {excerpt(value)} is not valid; a whole number, 0 or more"
        )
    return value
