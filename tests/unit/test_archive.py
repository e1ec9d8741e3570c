"""Safe tar extraction: what is kept, and every refusal (with nothing written through a link)."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from joblet_agent.archive import (
    ExtractLimits,
    extract,
    extract_async,
    link_stays_inside,
    member_path,
)
from joblet_agent.errors import ErrorCode, JobletError

LIMITS = ExtractLimits(max_bytes=1 << 20, max_entries=100)
Build = Callable[[tarfile.TarFile], object]


def _tar(build: Build, mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        build(archive)
    return buffer.getvalue()


def _file(
    archive: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644
) -> tarfile.TarFile:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_700_000_000
    archive.addfile(info, io.BytesIO(data))
    return archive


def _entry(
    archive: tarfile.TarFile, name: str, kind: bytes, link: str = "", mode: int = 0o755
) -> tarfile.TarFile:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    archive.addfile(info)
    return archive


def _refused(tmp_path: Path, data: bytes, match: str, limits: ExtractLimits = LIMITS) -> None:
    with pytest.raises(JobletError) as caught:
        extract(io.BytesIO(data), tmp_path, limits, what="upload")
    assert caught.value.code is ErrorCode.INVALID
    assert match in caught.value.message, caught.value.message
    assert caught.value.message.startswith("upload: ")


def test_files_directories_links_and_modes_are_kept(tmp_path: Path) -> None:
    def build(a: tarfile.TarFile) -> None:
        _entry(a, "pkg", tarfile.DIRTYPE, mode=0o500)  # read-only, yet takes what follows
        _file(a, "pkg/run.sh", b"#!/bin/sh\necho hi\n", 0o755)
        _file(a, "pkg/secret", b"s", 0o700)
        _file(a, "pkg/empty", b"")
        _file(a, "pkg/setuid", b"x", 0o4755)
        _entry(a, "pkg/link", tarfile.SYMTYPE, "run.sh")
        _entry(a, "pkg/abs", tarfile.SYMTYPE, "/usr/bin/python3")
        _entry(a, "pkg/hard", tarfile.LNKTYPE, "pkg/run.sh")
        _file(a, "./deep/er/file.txt", b"nested")  # parents made on the way

    done = extract(io.BytesIO(_tar(build)), tmp_path, LIMITS, what="upload")
    pkg = tmp_path / "pkg"
    assert (pkg / "run.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE(os.stat(pkg / "run.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(pkg / "secret").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(pkg / "setuid").st_mode) == 0o755  # setuid dropped
    assert stat.S_IMODE(os.stat(pkg).st_mode) == 0o500
    assert (pkg / "empty").stat().st_size == 0
    assert os.readlink(pkg / "link") == "run.sh"
    assert os.readlink(pkg / "abs") == "/usr/bin/python3"
    assert os.stat(pkg / "hard").st_ino == os.stat(pkg / "run.sh").st_ino
    assert (tmp_path / "deep/er/file.txt").read_bytes() == b"nested"
    assert os.stat(pkg / "run.sh").st_mtime == 1_700_000_000
    assert (done.files, done.directories, done.links) == (5, 1, 3)
    assert done.bytes == len(b"#!/bin/sh\necho hi\n") + 1 + 1 + len(b"nested")
    os.chmod(pkg, 0o700)  # let pytest clean up


def test_gzip_streams_are_read(tmp_path: Path) -> None:
    data = _tar(lambda a: _file(a, "f", b"zipped"), mode="w:gz")
    extract(io.BytesIO(data), tmp_path, LIMITS, what="runtime archive")
    assert (tmp_path / "f").read_bytes() == b"zipped"


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda a: _file(a, "/etc/passwd", b"x"), "absolute paths are not allowed"),
        (lambda a: _file(a, "../escape", b"x"), "'..' is not allowed"),
        (lambda a: _file(a, "a/../../escape", b"x"), "'..' is not allowed"),
        (lambda a: _entry(a, "dev", tarfile.CHRTYPE), "is a character device"),
        (lambda a: _entry(a, "blk", tarfile.BLKTYPE), "is a block device"),
        (lambda a: _entry(a, "fifo", tarfile.FIFOTYPE), "is a FIFO"),
        (lambda a: (_file(a, "twice", b"1"), _file(a, "twice", b"2")), "in the stream twice"),
        (lambda a: (_file(a, "d", b"1"), _entry(a, "d", tarfile.DIRTYPE)), "in the stream twice"),
        (lambda a: _entry(a, "up", tarfile.SYMTYPE, "../../etc"), "the link points outside"),
        (lambda a: _entry(a, "h", tarfile.LNKTYPE, "/etc/shadow"), "absolute paths"),
        (lambda a: _entry(a, "h", tarfile.LNKTYPE, "later"), "a hard link may only name"),
        (lambda a: (_file(a, "f", b"1"), _file(a, "f/g", b"2")), "is not a directory"),
        (lambda a: _file(a, "big", b"x" * ((1 << 20) + 1)), "exceeds the size limit"),
        (lambda a: [_file(a, f"n{i}") for i in range(101)], "more than 100 entries"),
        (lambda a: _file(a, "./", b""), "an empty name"),
    ],
)
def test_refusals_name_the_member_and_why(tmp_path: Path, build: Build, match: str) -> None:
    _refused(tmp_path, _tar(build), match)


def test_never_writes_through_a_link_the_stream_made(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()

    def build(a: tarfile.TarFile) -> None:
        _entry(a, "ln", tarfile.SYMTYPE, "/")  # absolute: harmless inside a job's root...
        _file(a, "ln/" + str(outside.relative_to("/")) + "/pwned", b"x")  # ...never followed here

    _refused(dest, _tar(build), "is not a directory")
    assert list(outside.iterdir()) == []


def test_absolute_links_can_be_refused(tmp_path: Path) -> None:
    limits = ExtractLimits(max_bytes=10, max_entries=10, absolute_links=False)
    data = _tar(lambda a: _entry(a, "l", tarfile.SYMTYPE, "/etc/passwd"))
    _refused(tmp_path, data, "the link points outside", limits)


def test_truncated_and_garbage_streams_are_refused(tmp_path: Path) -> None:
    whole = _tar(lambda a: _file(a, "f", b"y" * 5000))
    _refused(tmp_path, whole[:1024], "ended in the middle")
    _refused(tmp_path, b"not a tar at all" * 64, "not a valid tar stream")


@pytest.mark.parametrize(
    ("link", "target", "inside"),
    [
        ("a/l", "b", True),
        ("a/l", "../b", True),
        ("a/l", "../../b", False),
        ("l", "./x/../..", False),
        ("l", "/abs", True),
    ],
)
def test_link_lexical_check(link: str, target: str, inside: bool) -> None:
    assert link_stays_inside(member_path(link, "t"), target, absolute_ok=True) is inside


def test_async_feed_extracts_with_progress(tmp_path: Path) -> None:
    data = _tar(lambda a: _file(a, "data.bin", os.urandom(300_000)))
    seen: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 7000):
            yield data[offset : offset + 7000]

    done = asyncio.run(
        extract_async(chunks(), tmp_path, LIMITS, what="upload", on_progress=seen.append)
    )
    assert done.bytes == 300_000
    assert seen[-1] == len(data)


def test_async_feed_refusal_reads_on_and_reports(tmp_path: Path) -> None:
    data = _tar(lambda a: (_file(a, "/abs", b"x"), _file(a, "more", b"z" * 200_000)))
    consumed: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 1000):
            consumed.append(offset)
            yield data[offset : offset + 1000]

    with pytest.raises(JobletError, match="absolute paths"):
        asyncio.run(extract_async(chunks(), tmp_path, LIMITS, what="upload"))
    assert len(consumed) == -(-len(data) // 1000)  # the whole body was read


def test_async_feed_client_gone_stops_the_worker(tmp_path: Path) -> None:
    data = _tar(lambda a: _file(a, "f", b"q" * 100_000))

    async def chunks() -> AsyncIterator[bytes]:
        yield data[:20_000]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(extract_async(chunks(), tmp_path, LIMITS, what="upload"))
