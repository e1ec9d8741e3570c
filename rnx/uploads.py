"""Files for a job's /work: listed and checked here, then streamed to the agent as a tar stream.

Nothing is read whole into memory: the stream is made member by member, a megabyte at a time, as
the connection takes it. `--upload=FILE` lands at /work/<basename>; `--upload-dir=DIR` keeps the
directory's name (/work/<dirname>/...). Inside a directory, links are sent as links and never
followed; a top-level `--upload` that is a link sends the file it names. A file that changes
between listing and sending fails the upload (the agent then keeps nothing of it).
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from rnx.errors import RnxError

_CHUNK = 1024 * 1024
_BLOCK = 512


class Kind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    LINK = "link"


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # its path under /work
    source: Path
    kind: Kind
    mode: int
    size: int
    mtime_ns: int
    inode: tuple[int, int]  # (st_dev, st_ino): the file sent is the file listed
    target: str = ""  # a link's


@dataclass(frozen=True, slots=True)
class Plan:
    entries: tuple[Entry, ...]

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.entries)


def _refuse(message: str) -> RnxError:
    return RnxError("invalid", message)


def _entry(name: str, source: Path, st: os.stat_result, flag: str) -> Entry:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        kind, size = Kind.FILE, st.st_size
    elif stat.S_ISDIR(mode):
        kind, size = Kind.DIRECTORY, 0
    elif stat.S_ISLNK(mode):
        kind, size = Kind.LINK, 0
    else:
        what = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device file"
        )
        raise _refuse(f"{flag}: {str(source)!r} is {what}; only files, directories and links")
    return Entry(
        name=name,
        source=source,
        kind=kind,
        mode=stat.S_IMODE(mode),
        size=size,
        mtime_ns=st.st_mtime_ns,
        inode=(st.st_dev, st.st_ino),
        target=os.readlink(source) if kind is Kind.LINK else "",
    )


def plan(files: Sequence[str], directories: Sequence[str]) -> Plan:
    """Every entry to send, checked: a missing path, an odd file or a name given twice is an
    error naming the flag and the path, before anything is sent."""
    entries: list[Entry] = []
    tops: dict[str, str] = {}  # /work/<name> -> the flag and path that claimed it

    def claim(name: str, flag: str, path: str) -> None:
        if name in tops:
            raise _refuse(f"{flag}: {path!r} would be /work/{name}, which {tops[name]} is already")
        tops[name] = f"{flag}={path}"

    for path in files:
        source = Path(path)
        try:
            st = source.stat()  # a link given by name: its file
        except OSError as exc:
            raise _refuse(f"--upload: {path!r}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise _refuse(f"--upload: {path!r} is a directory; use --upload-dir for it")
        claim(source.name, "--upload", path)
        entries.append(_entry(source.name, source, st, "--upload"))
    for path in directories:
        root = Path(path)
        try:
            st = root.stat()
        except OSError as exc:
            raise _refuse(f"--upload-dir: {path!r}: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(f"--upload-dir: {path!r} is not a directory; use --upload for a file")
        top = root.resolve().name
        if not top:
            raise _refuse(f"--upload-dir: {path!r}: the root directory cannot be uploaded")
        claim(top, "--upload-dir", path)
        entries.append(_entry(top, root, st, "--upload-dir"))
        entries.extend(_walk(root, top))
    return Plan(tuple(entries))


def _walk(root: Path, top: str) -> Iterator[Entry]:
    def failed(exc: OSError) -> None:
        raise _refuse(f"--upload-dir: {exc.filename!r}: {exc.strerror}")

    for current, dirs, names in os.walk(root, onerror=failed):  # never follows links
        dirs.sort()
        base = Path(current)
        prefix = Path(top) / base.relative_to(root)
        for name in sorted(dirs + names):
            source = base / name
            yield _entry(str(prefix / name), source, source.lstat(), "--upload-dir")


def stream(upload: Plan, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The tar stream of the plan (PAX format, owners left out), about a megabyte at a time."""
    sent = 0
    for entry in upload.entries:
        yield _header(entry)
        if entry.kind is Kind.FILE:
            for chunk in _content(entry):
                sent += len(chunk)
                if progress is not None:
                    progress(sent)
                yield chunk
            if entry.size % _BLOCK:
                yield b"\0" * (_BLOCK - entry.size % _BLOCK)
    yield b"\0" * (2 * _BLOCK)  # the end of the archive


def _header(entry: Entry) -> bytes:
    info = tarfile.TarInfo(entry.name)
    info.mode = entry.mode
    info.mtime = entry.mtime_ns // 1_000_000_000
    info.uname = info.gname = ""  # the client's users mean nothing in the job
    if entry.kind is Kind.FILE:
        info.size = entry.size
    elif entry.kind is Kind.DIRECTORY:
        info.type = tarfile.DIRTYPE
    else:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _content(entry: Entry) -> Iterator[bytes]:
    def changed(how: str) -> RnxError:
        return RnxError("conflict", f"upload: {str(entry.source)!r} {how} while being sent")

    flags = os.O_RDONLY | (0 if entry.name == entry.source.name else os.O_NOFOLLOW)
    try:
        fd = os.open(entry.source, flags)
    except OSError as exc:
        raise _refuse(f"upload: {str(entry.source)!r}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != entry.inode or st.st_mtime_ns != entry.mtime_ns:
            raise changed("was replaced or changed")
        left = entry.size
        while left:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                raise changed("shrank")
            left -= len(chunk)
            yield chunk
        after = os.fstat(fd)
        if src.read(1) or after.st_size != entry.size or after.st_mtime_ns != entry.mtime_ns:
            raise changed("changed")
