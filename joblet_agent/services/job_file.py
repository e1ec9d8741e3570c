"""Files in and out of jobs (`rnx job cp|ls|cat`): for a running job through its init, inside
its namespace as its user; for an ended one through a helper started in a sandbox like the
job's with its /work read-only (units/job_file.py), until the record is deleted.

The agent opens nothing of a job's: every path is checked at the edge (domain/job_file.py) and
opened by init component by component, never through a link (docs/exec-protocol.md). What
comes in is an upload (checked by the extractor like any upload), copied file by file, each
written beside its target and renamed over it: nothing half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.exec_frames import (
    MAX_REQUEST,
    ChannelClosed,
    EntryKind,
    FileEntry,
    FileOp,
    FrameError,
    file_request,
    frame,
    init_refusal,
    parse_entry,
    parse_error,
)
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.job_file import WORK, JobPath, StagedEntry
from joblet_agent.domain.user import pool
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import ArchiveWriter, ChannelConnection, StagedFiles, SystemdManager
from joblet_agent.services.exec import ExecService, channel_lost
from joblet_agent.services.upload import UploadService
from joblet_agent.units.job_file import files_helper
from joblet_agent.units.paths import JobPaths

logger = logging.getLogger(__name__)

HELPER_START_SEC = 30.0


@dataclass(frozen=True, slots=True)
class Listing:
    path: JobPath
    kind: EntryKind  # of the path itself
    entries: tuple[FileEntry, ...]  # a directory's; a file's own entry

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "type": str(self.kind),
            "entries": [entry.to_dict() for entry in self.entries],
        }


@dataclass(frozen=True, slots=True)
class Copied:
    path: JobPath
    files: int
    directories: int
    links: int
    bytes: int

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "files": self.files,
            "directories": self.directories,
            "links": self.links,
            "bytes": self.bytes,
        }


class Requests:
    """File requests to a job's init (or its ended job's helper) on one connection."""

    def __init__(self, connection: ChannelConnection, record: JobRecord) -> None:
        self.connection = connection
        self.record = record

    async def _ask(self, op: FileOp, path: JobPath, extra: str | None = None) -> None:
        try:
            await self.connection.send(file_request(op, path.base, path.rel, extra))
        except ChannelClosed as exc:
            raise channel_lost(self.record, exc) from None

    async def _answer(self, path: JobPath) -> tuple[bytes, bytes]:
        try:
            kind, payload = await self.connection.receive()
        except ChannelClosed as exc:
            raise channel_lost(self.record, exc) from None
        if kind == b"E":
            raise init_refusal(parse_error(payload), str(path))
        return kind, payload

    async def stat(self, path: JobPath) -> FileEntry:
        await self._ask(FileOp.STAT, path)
        kind, payload = await self._answer(path)
        if kind != b"N":
            raise FrameError(f"a {kind!r} frame for a stat")
        return parse_entry(payload)

    async def listdir(self, path: JobPath, most: int) -> list[FileEntry]:
        await self._ask(FileOp.LIST, path)
        entries: list[FileEntry] = []
        while True:
            kind, payload = await self._answer(path)
            if kind == b".":
                return entries
            if kind != b"N":
                raise FrameError(f"a {kind!r} frame in a listing")
            entries.append(parse_entry(payload))
            if len(entries) > most:
                raise JobletError(
                    ErrorCode.TOO_LARGE, f"{path}: more than {most} entries; list a part of it"
                )

    async def read(self, path: JobPath, most: int) -> tuple[FileEntry, AsyncIterator[bytes]]:
        """The file's entry (as opened), then its bytes; more than the entry said is cut,
        fewer is an error (it changed while copied)."""
        await self._ask(FileOp.READ, path)
        kind, payload = await self._answer(path)
        if kind != b"N":
            raise FrameError(f"a {kind!r} frame where a read begins")
        entry = parse_entry(payload, any_name=True)
        if entry.size > most:
            raise JobletError(
                ErrorCode.TOO_LARGE,
                f"{path}: {entry.size} bytes; at most {most} are copied out at once "
                "(jobs.max_download_size)",
            )

        async def data() -> AsyncIterator[bytes]:
            left = entry.size
            while True:
                kind, payload = await self._answer(path)
                if kind == b"K":
                    break
                if kind != b"o":
                    raise FrameError(f"a {kind!r} frame in a file's data")
                if left > 0:
                    yield payload[:left]
                left -= len(payload)
            if left > 0:
                raise JobletError(
                    ErrorCode.CONFLICT, f"{path} got shorter while it was copied ({left} bytes)"
                )

        return entry, data()

    async def write(self, path: JobPath, mode: int, chunks: AsyncIterator[bytes]) -> int:
        await self._ask(FileOp.WRITE, path, f"{mode & 0o777:o}")
        try:
            async for chunk in chunks:
                for start in range(0, len(chunk), MAX_REQUEST):
                    await self.connection.send(frame(b"i", chunk[start : start + MAX_REQUEST]))
            await self.connection.send(frame(b"d"))
        except ChannelClosed as exc:
            raise channel_lost(self.record, exc) from None
        kind, payload = await self._answer(path)
        if kind != b"K" or not (payload.isdigit() and len(payload) <= 20):
            raise FrameError(f"a {kind!r} frame where a write ends")
        return int(payload)

    async def done(self, op: FileOp, path: JobPath, extra: str) -> None:
        await self._ask(op, path, extra)
        kind, _ = await self._answer(path)
        if kind != b"K":
            raise FrameError(f"a {kind!r} frame where a request ends")


class JobFileService:
    def __init__(
        self,
        config: AgentConfig,
        host: HostInfo,
        execs: ExecService,
        uploads: UploadService,
        *,
        staged: StagedFiles,
        archive: ArchiveWriter,
        root: PurePosixPath,
        init: PurePosixPath,
    ) -> None:
        self.config = config
        self.host = host
        self.execs = execs
        self.uploads = uploads
        self.staged = staged
        self.archive = archive
        self.root = root
        self.init = init
        self.systemd: SystemdManager | None = None
        self._helpers: dict[str, asyncio.Lock] = {}

    def attach(self, systemd: SystemdManager) -> None:
        self.systemd = systemd

    @property
    def most(self) -> int:
        return self.config.jobs.max_download_bytes

    # -- connections ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _requests(self, record: JobRecord, path: JobPath) -> AsyncIterator[Requests]:
        if record.state is JobState.RUNNING:
            connection = await self.execs.connect(record)
        elif record.state.is_terminal:
            if path.base != WORK:
                raise JobletError(
                    ErrorCode.INVALID,
                    f"path: {path} is in a volume; an ended job's /work is kept, not its "
                    "volumes (read those through a running job that names them)",
                )
            if record.files_reclaimed_at is not None:
                at = record.files_reclaimed_at.isoformat()
                raise JobletError(
                    ErrorCode.NOT_FOUND,
                    f"job {record.id}'s files were reclaimed at {at}, jobs.work_retention after "
                    "its end (joblet.yml); its record and logs stay",
                    hint=f"rnx job log {record.id[:8]}",
                )
            connection = await self._ended_job(record)
        else:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"job {record.id} is {record.state}: its files can be read once it runs",
            )
        self.execs.touch(record.id)
        try:
            yield Requests(connection, record)
        finally:
            connection.close()

    async def _ended_job(self, record: JobRecord) -> ChannelConnection:
        """The ended job's files helper, started unless it runs (it ends once idle)."""
        paths = JobPaths.for_job(PurePosixPath(self.config.jobs_dir), record.id)
        lock = self._helpers.setdefault(record.id, asyncio.Lock())
        async with lock:
            with contextlib.suppress(ChannelClosed):
                return await self.execs.channels.connect(paths.files_channel)
            users = {user.name: user for user in pool(self.config.jobs)}
            user = users.get(record.user or "")
            if user is None:
                raise JobletError(ErrorCode.CONFLICT, f"job {record.id} has no files to read")
            assert self.systemd is not None, "attach() a systemd manager first"
            unit, props, aux = files_helper(
                record.id,
                paths,
                self.host,
                user,
                root=self.root,
                init=self.init,
                slice_name=self.config.slice,
            )
            result = await self.systemd.run(unit, props, within=HELPER_START_SEC, aux=aux)
            if result != "done":
                raise JobletError(
                    ErrorCode.CONFLICT,
                    f"the files of job {record.id} cannot be read: its helper's start was "
                    f"{result} (its /work image may be gone)",
                    hint=f"journalctl -u {unit}",
                )
            try:
                return await self.execs.channels.connect(paths.files_channel)
            except ChannelClosed as exc:
                raise channel_lost(record, exc) from None

    # -- the operations ------------------------------------------------------------------

    async def listing(self, record: JobRecord, path: JobPath) -> Listing:
        async with self._requests(record, path) as requests:
            entry = await requests.stat(path) if path.parts else None
            if entry is not None and entry.kind is not EntryKind.DIRECTORY:
                return Listing(path, entry.kind, (entry,))
            entries = await requests.listdir(path, self.config.jobs.max_upload_entries)
        return Listing(path, EntryKind.DIRECTORY, tuple(sorted(entries, key=lambda e: e.name)))

    @contextlib.asynccontextmanager
    async def read(
        self, record: JobRecord, path: JobPath
    ) -> AsyncIterator[tuple[FileEntry, AsyncIterator[bytes]]]:
        async with self._requests(record, path) as requests:
            yield await requests.read(path, self.most)

    @contextlib.asynccontextmanager
    async def archive_of(
        self, record: JobRecord, path: JobPath
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        """A directory as a tar stream: (its files' bytes, the stream). Regular files with one
        name, directories and symlinks (as links) go in; FIFOs, devices, sockets and files with
        several names are left out."""
        async with self._requests(record, path) as requests:
            top = await requests.stat(path) if path.parts else None
            if top is not None and top.kind is not EntryKind.DIRECTORY:
                raise JobletError(
                    ErrorCode.INVALID, f"path: {path} is a {top.kind}, not a directory"
                )
            if top is None:  # the base: the job's /work or a volume
                top = FileEntry(path.name, EntryKind.DIRECTORY, 0o755, 0, 0.0, 1, None)
            members = await self._walk(requests, path)
            total = sum(e.size for _, e in members if e.kind is EntryKind.FILE)
            if total > self.most:
                raise JobletError(
                    ErrorCode.TOO_LARGE,
                    f"{path}: {total} bytes of files; at most {self.most} are copied out at "
                    "once (jobs.max_download_size)",
                )
            yield total, self._tar(requests, path, top, members)

    async def _walk(self, requests: Requests, top: JobPath) -> list[tuple[JobPath, FileEntry]]:
        members: list[tuple[JobPath, FileEntry]] = []
        pending = [top]
        most = self.config.jobs.max_upload_entries
        while pending:
            directory = pending.pop()
            try:
                found = await requests.listdir(directory, most)
            except JobletError as exc:
                if exc.code is not ErrorCode.FORBIDDEN or directory == top:
                    raise
                found = []  # the job's user may not read it (ext4's lost+found): copied empty
            for entry in sorted(found, key=lambda e: e.name):
                path = directory.child(entry.name)
                if entry.kind is EntryKind.DIRECTORY:
                    members.append((path, entry))
                    pending.append(path)
                elif entry.kind is EntryKind.SYMLINK or (
                    entry.kind is EntryKind.FILE and entry.links == 1
                ):
                    members.append((path, entry))
                if len(members) > most:
                    raise JobletError(
                        ErrorCode.TOO_LARGE, f"{top}: more than {most} entries; copy a part of it"
                    )
        return sorted(members, key=lambda member: member[0].parts)

    async def _tar(
        self,
        requests: Requests,
        top: JobPath,
        directory: FileEntry,
        members: list[tuple[JobPath, FileEntry]],
    ) -> AsyncIterator[bytes]:
        prefix = top.name
        yield self.archive.header(prefix, directory)
        for path, entry in members:
            name = "/".join((prefix, *path.parts[len(top.parts) :]))
            if entry.kind is not EntryKind.FILE:
                yield self.archive.header(name, entry)
                continue
            try:
                opened, data = await requests.read(path, self.most)
            except JobletError as exc:  # gone, or replaced by a link, since it was listed
                logger.info("left %s out of an archive: %s", path, exc.message)
                continue
            yield self.archive.header(name, opened)
            async for chunk in data:
                yield chunk
            yield self.archive.padding(opened.size)
        yield self.archive.end()

    async def push(
        self, record: JobRecord, upload_id: str, owner: str, into: JobPath, name: str | None
    ) -> Copied:
        """An upload's tree copied into the directory `into` of a running job; its one
        top-level entry renamed `name` when given."""
        if record.state is not JobState.RUNNING:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"cannot copy into job {record.id}: it is {record.state}; only a RUNNING "
                "job's files can be written",
            )
        tree, _ = self.uploads.take(upload_id, owner)
        try:
            entries = self.staged.entries(tree)
            targets = [entry.parts for entry in entries]
            if name is not None:
                tops = {entry.parts[0] for entry in entries}
                if len(tops) != 1:
                    raise JobletError(
                        ErrorCode.INVALID,
                        f"name: {name!r} renames one file or directory; the upload has {len(tops)}",
                    )
                targets = [(name, *parts[1:]) for parts in targets]
            async with self._requests(record, into) as requests:
                if into.parts:
                    target = await requests.stat(into)
                    if target.kind is not EntryKind.DIRECTORY:
                        raise JobletError(
                            ErrorCode.INVALID, f"path: {into} is a {target.kind}, not a directory"
                        )
                return await self._copy(
                    requests, tree, into, list(zip(entries, targets, strict=True))
                )
        finally:
            self.uploads.discard(upload_id)

    async def _copy(
        self,
        requests: Requests,
        tree: Path,
        into: JobPath,
        entries: list[tuple[StagedEntry, tuple[str, ...]]],
    ) -> Copied:
        files = directories = links = size = 0
        for entry, parts in entries:
            path = JobPath(into.base, (*into.parts, *parts))
            if entry.kind == "directory":
                await requests.done(FileOp.MKDIR, path, f"{entry.mode & 0o777 or 0o755:o}")
                directories += 1
            elif entry.kind == "symlink":
                assert entry.target is not None
                await requests.done(FileOp.SYMLINK, path, entry.target)
                links += 1
            else:
                source = tree.joinpath(*entry.parts)
                size += await requests.write(path, entry.mode, self.staged.chunks(source))
                files += 1
        return Copied(into, files, directories, links, size)
