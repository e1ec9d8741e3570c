"""Safe extraction of a tar stream into a fresh directory: job uploads and runtime archives.

The stream comes from a client (an upload) or a registry (a runtime), so it is hostile: a member
may try to leave the directory (absolute names, `..`, writing through a symlink the stream made
earlier), to create device nodes or FIFOs, to take a name twice, or to be larger than announced.
Every member is checked before anything of it is written, and writing never follows a symlink.
The caller owns the destination and removes it whole when extraction fails: nothing half-done.

tarfile's own filters (3.12) are not used: they are not in 3.11, and they repair (strip a leading
/, drop modes) where we want to refuse with a message that names the member.
"""

from __future__ import annotations

import asyncio
import io
import os
import queue
import stat
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from joblet_agent.errors import ErrorCode, JobletError

_COPY_CHUNK = 1024 * 1024
_QUEUE_CHUNKS = 8  # chunks in flight between the event loop and the extracting thread
_PERMISSIONS = 0o777  # setuid, setgid and sticky bits are dropped


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    max_bytes: int  # sum of regular files' sizes
    max_entries: int
    absolute_links: bool = True  # a link to /x means the job's (or runtime's) own /x
    max_stream_bytes: int | None = None  # the stream itself, headers and padding included


@dataclass(frozen=True, slots=True)
class Extracted:
    files: int = 0
    directories: int = 0
    links: int = 0
    bytes: int = 0

    @property
    def entries(self) -> int:
        return self.files + self.directories + self.links


def _refuse(what: str, member: str, why: str) -> JobletError:
    return JobletError(ErrorCode.INVALID, f"{what}: {member!r}: {why}")


def member_path(name: str, what: str) -> PurePosixPath:
    """The member's relative path; refuses absolute names, `..` and empty names."""
    if name.startswith("/"):
        raise _refuse(what, name, "absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise _refuse(what, name, "an empty name")
    if ".." in parts:
        raise _refuse(what, name, "'..' is not allowed in a path")
    return PurePosixPath(*parts)


def link_stays_inside(link: PurePosixPath, target: str, *, absolute_ok: bool) -> bool:
    """Whether a symlink at `link` pointing to `target` resolves (lexically) inside the tree."""
    if target.startswith("/"):
        return absolute_ok
    depth = len(link.parts) - 1  # directories above the link, inside the tree
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


class _Extractor:
    def __init__(self, dest: Path, limits: ExtractLimits, what: str) -> None:
        self.dest = dest
        self.limits = limits
        self.what = what
        self.seen: set[PurePosixPath] = set()
        self.files: set[PurePosixPath] = set()  # regular files, the only hardlink targets
        self.directory_modes: list[tuple[Path, int, float]] = []
        self.count = Extracted()

    def _parent(self, rel: PurePosixPath) -> Path:
        """The member's parent directory, created as needed; never through a symlink."""
        current = self.dest
        for part in rel.parent.parts:
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current, 0o700)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise _refuse(self.what, str(rel), f"{part!r} above it is not a directory")
        return current

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = member_path(member.name, self.what)
        if rel in self.seen:
            raise _refuse(self.what, member.name, "the name is in the stream twice")
        if len(self.seen) >= self.limits.max_entries:
            raise _refuse(
                self.what, member.name, f"more than {self.limits.max_entries} entries in all"
            )
        self.seen.add(rel)
        parent = self._parent(rel)
        path = parent / rel.name
        mode = member.mode & _PERMISSIONS
        if member.isreg():
            self._file(archive, member, rel, path, mode)
        elif member.isdir():
            self._directory(member, path, mode)
        elif member.issym():
            if not link_stays_inside(rel, member.linkname, absolute_ok=self.limits.absolute_links):
                raise _refuse(
                    self.what, member.name, f"the link points outside: {member.linkname!r}"
                )
            os.symlink(member.linkname, path)
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
            self.count = _more(self.count, links=1)
        elif member.islnk():
            target = member_path(member.linkname, self.what)
            if target not in self.files:
                raise _refuse(
                    self.what,
                    member.name,
                    f"a hard link may only name a regular file earlier in the stream, "
                    f"not {member.linkname!r}",
                )
            os.link(self.dest / target, path, follow_symlinks=False)
            self.count = _more(self.count, links=1)
        else:
            kind = {
                tarfile.CHRTYPE: "a character device",
                tarfile.BLKTYPE: "a block device",
                tarfile.FIFOTYPE: "a FIFO",
            }.get(member.type, f"of tar type {member.type!r}")
            raise _refuse(
                self.what,
                member.name,
                f"is {kind}; only files, directories and links are allowed",
            )

    def _file(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        rel: PurePosixPath,
        path: Path,
        mode: int,
    ) -> None:
        total = self.count.bytes + member.size
        if total > self.limits.max_bytes:
            raise _refuse(
                self.what,
                member.name,
                f"exceeds the size limit: {total} bytes in all, at most {self.limits.max_bytes}",
            )
        source = archive.extractfile(member)
        assert source is not None
        # O_EXCL | O_NOFOLLOW: never write through anything that is already there.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_COPY_CHUNK):
                out.write(chunk)
            os.fchmod(out.fileno(), mode)  # explicit: the agent's umask is 0077
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
        self.files.add(rel)
        self.count = _more(self.count, files=1, size=member.size)

    def _directory(self, member: tarfile.TarInfo, path: Path, mode: int) -> None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise _refuse(self.what, member.name, "the name is in the stream twice") from None
        # Modes last: a read-only directory must still take the members that follow it.
        self.directory_modes.append((path, mode, float(member.mtime)))
        self.count = _more(self.count, directories=1)

    def finish(self) -> Extracted:
        for path, mode, mtime in reversed(self.directory_modes):
            os.chmod(path, mode, follow_symlinks=False)
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        return self.count


def _more(
    count: Extracted, *, files: int = 0, directories: int = 0, links: int = 0, size: int = 0
) -> Extracted:
    return Extracted(
        files=count.files + files,
        directories=count.directories + directories,
        links=count.links + links,
        bytes=count.bytes + size,
    )


def extract(stream: BinaryIO, dest: Path, limits: ExtractLimits, *, what: str) -> Extracted:
    """Extract a tar stream (plain or gzip) into the existing, empty directory `dest`."""
    extractor = _Extractor(dest, limits, what)
    try:
        with tarfile.open(fileobj=stream, mode="r|*", bufsize=_COPY_CHUNK) as archive:
            for member in archive:
                extractor.add(archive, member)
    except (tarfile.TarError, EOFError) as exc:
        if isinstance(exc, EOFError) or "unexpected end of data" in str(exc):
            raise JobletError(
                ErrorCode.INVALID, f"{what}: the stream ended in the middle"
            ) from None
        raise JobletError(ErrorCode.INVALID, f"{what}: not a valid tar stream: {exc}") from None
    except OSError as exc:
        raise JobletError(ErrorCode.INVALID, f"{what}: could not be written: {exc}") from None
    return extractor.finish()


class _ChunkReader(io.RawIOBase):
    """A blocking reader over chunks handed over by the event loop (None: the end)."""

    def __init__(self, chunks: queue.Queue[bytes | None]) -> None:
        self.chunks = chunks
        self.pending = memoryview(b"")
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending and not self.ended:
            chunk = self.chunks.get()
            if chunk is None:
                self.ended = True
            else:
                self.pending = memoryview(chunk)
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


async def extract_async(
    chunks: AsyncIterator[bytes],
    dest: Path,
    limits: ExtractLimits,
    *,
    what: str,
    on_progress: Callable[[int], None] | None = None,
) -> Extracted:
    """extract(), fed from the event loop: memory stays bounded to a few chunks in flight.

    The stream is read to its end even after a refusal is known, so the client, which sends
    the whole body before it reads the answer, gets the answer instead of a broken pipe.
    """
    handover: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    reader = io.BufferedReader(_ChunkReader(handover), buffer_size=_COPY_CHUNK)
    worker = asyncio.get_running_loop().run_in_executor(
        None, lambda: extract(reader, dest, limits, what=what)
    )
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if limits.max_stream_bytes is not None and received > limits.max_stream_bytes:
                # Far more than the members announced: not read on to its end, unlike a refusal.
                raise JobletError(
                    ErrorCode.TOO_LARGE,
                    f"{what}: the stream is longer than {limits.max_stream_bytes} bytes, "
                    "more than its announced size allows",
                )
            if on_progress is not None:
                on_progress(received)
            await _hand_over(handover, chunk, worker)
    finally:
        # Also when the client went away: the worker sees the end (a truncated stream, refused)
        # and is done before the caller removes the destination.
        await _hand_over(handover, None, worker)
        await asyncio.wait([worker])
        _drain(handover)
        worker.exception()  # retrieved here; raised below or superseded by the client's error
    return worker.result()


async def _hand_over(
    handover: queue.Queue[bytes | None], chunk: bytes | None, worker: asyncio.Future[Extracted]
) -> None:
    """Queue a chunk for the worker; dropped once the worker has stopped (its error wins)."""
    while not worker.done():
        try:
            handover.put_nowait(chunk)
            return
        except queue.Full:
            await asyncio.sleep(0.001)


def _drain(handover: queue.Queue[bytes | None]) -> None:
    while True:
        try:
            handover.get_nowait()
        except queue.Empty:
            return
