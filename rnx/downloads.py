"""Files copied out of a job onto this machine (`rnx job cp JOB:PATH DEST`): a file written to
a new name beside its destination and renamed at the end, a directory extracted from the
agent's tar stream into a new directory renamed into place. Nothing half-written stays: a
broken stream leaves nothing. Members never leave the destination (no absolute names, no
'..'), links are made as links and never written through.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from rnx.errors import RnxError

_CHUNK = 1024 * 1024
_END = 1024  # tar's end: two zero blocks


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.rnx-{uuid.uuid4().hex[:8]}")


def save_file(
    chunks: Iterable[bytes],
    target: Path,
    *,
    mode: int,
    size: int,
    progress: Callable[[int], None] | None = None,
) -> None:
    """`size` bytes, or the copy failed (a broken stream)."""
    temporary = _temporary(target)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    done = False
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written)
        if written != size:
            raise RnxError(
                "session-lost", f"the copy of {target.name} broke off at {written} of {size} bytes"
            )
        temporary.chmod(mode & 0o777)
        os.replace(temporary, target)
        done = True
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


class _Chunks:
    """A file-like reader over chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes], progress: Callable[[int], None] | None) -> None:
        self._chunks = chunks
        self._pending = b""
        self._progress = progress
        self.received = 0
        self.tail = b""  # the stream's last bytes: a whole tar ends with two zero blocks

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self.received += len(chunk)
            self.tail = (self.tail + chunk)[-_END:]
            if self._progress is not None:
                self._progress(self.received)
            self._pending += chunk
        if size < 0:
            size = len(self._pending)
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def extract_directory(
    chunks: Iterator[bytes], target: Path, progress: Callable[[int], None] | None = None
) -> int:
    """The agent's tar of a job's directory (members named below its own name) becomes
    `target`, a new directory; returns the files' count."""
    if target.exists() or target.is_symlink():
        raise RnxError("conflict", f"{target} exists already")
    temporary = _temporary(target)
    temporary.mkdir(mode=0o700)
    files = 0
    top_mode = 0o755
    try:
        reader = _Chunks(chunks, progress)
        stream: IO[bytes] = reader  # type: ignore[assignment]
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                parts = PurePosixPath(member.name).parts[1:]  # below the directory's own name
                if member.name.startswith("/") or ".." in parts:
                    raise RnxError("bad-answer", f"the archive names {member.name!r}")
                path = temporary.joinpath(*parts)
                if not parts:
                    top_mode = member.mode & 0o777
                    continue
                if member.isdir():
                    path.mkdir(mode=0o700)
                    path.chmod(member.mode | 0o700)  # writable by us while we fill it
                elif member.issym():
                    os.symlink(member.linkname, path)
                elif member.isfile():
                    source = archive.extractfile(member)
                    assert source is not None
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(source, out, _CHUNK)
                    path.chmod(member.mode & 0o777)
                    files += 1
        reader.read()  # to its end
        if len(reader.tail) < _END or reader.tail.strip(b"\0"):
            raise tarfile.ReadError("the stream ended before the archive did")
        temporary.chmod(top_mode)
        os.rename(temporary, target)
    except tarfile.TarError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        raise RnxError("session-lost", f"the copy of {target.name} broke off: {exc}") from exc
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return files
