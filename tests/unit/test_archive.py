"""Safe tar extraction: what is kept, and every refusal (with nothing written through a link)."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import stat
import tarfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from joblet_agent.adapters.archive import (
    MAX_MEMBER_DEPTH,
    MAX_PATH_BYTES,
    extract,
    link_stays_inside,
    member_path,
)
from joblet_agent.adapters.archive_feed import extract_async
from joblet_agent.adapters.archive_stream import (
    MAX_EXTENDED_CHAIN,
    MAX_EXTENDED_HEADER_BYTES,
    MAX_GLOBAL_HEADERS,
)
from joblet_agent.domain.archive import ExtractLimits
from joblet_agent.errors import ErrorCode, JobletError

LIMITS = ExtractLimits(max_bytes=1 << 20, max_entries=100)
RUNTIME_LIKE = ExtractLimits(max_bytes=1 << 20, max_entries=100, absolute_links=False, gzip=True)
Build = Callable[[tarfile.TarFile], object]
EXTRACTING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-extract")


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
    assert (done.files, done.directories, done.links) == (5, 3, 3)  # deep/ and deep/er/ made
    assert done.bytes == len(b"#!/bin/sh\necho hi\n") + 1 + 1 + len(b"nested")
    os.chmod(pkg, 0o700)  # let pytest clean up


def test_gzip_streams_are_read_where_allowed(tmp_path: Path) -> None:
    data = _tar(lambda a: _file(a, "f", b"zipped"), mode="w:gz")
    extract(io.BytesIO(data), tmp_path, RUNTIME_LIKE, what="runtime archive")
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
        extract_async(
            chunks(),
            tmp_path,
            LIMITS,
            what="upload",
            executor=EXTRACTING,
            on_progress=seen.append,
        )
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
        asyncio.run(extract_async(chunks(), tmp_path, LIMITS, what="upload", executor=EXTRACTING))
    assert len(consumed) == -(-len(data) // 1000)  # the whole body was read


def test_async_feed_client_gone_stops_the_worker(tmp_path: Path) -> None:
    data = _tar(lambda a: _file(a, "f", b"q" * 100_000))

    async def chunks() -> AsyncIterator[bytes]:
        yield data[:20_000]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(extract_async(chunks(), tmp_path, LIMITS, what="upload", executor=EXTRACTING))


# -- bounds on what a stream may ask for (review H2, H5, L2) ---------------------------------


def _names(*names: str) -> bytes:
    """Empty files, in PAX format (names of any length)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in names:
            archive.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    return buffer.getvalue()


def test_depth_is_bounded(tmp_path: Path) -> None:
    deepest = "/".join(["d"] * (MAX_MEMBER_DEPTH - 1) + ["f"])
    (tmp_path / "ok").mkdir()
    extract(io.BytesIO(_names(deepest)), tmp_path / "ok", LIMITS, what="upload")
    too_deep = "/".join(["a"] * 1200 + ["f"])
    with pytest.raises(JobletError) as caught:
        extract(io.BytesIO(_names(too_deep)), tmp_path, LIMITS, what="upload")
    message = caught.value.message
    assert "1201 components deep; at most 64" in message
    assert "'a/a/a/a" in message and "(2401 bytes)" in message  # an excerpt, not the name
    assert len(message) < 200
    assert list(tmp_path.iterdir()) == [tmp_path / "ok"]  # nothing of it was made


def test_path_length_is_bounded(tmp_path: Path) -> None:
    long_name = "/".join(["x" * 200] * 6)  # 6 deep, 1205 bytes
    _refused(tmp_path, _names(long_name), f"a name of 1205 bytes; at most {MAX_PATH_BYTES}")
    target = "t" * (MAX_PATH_BYTES + 1)
    _refused(
        tmp_path,
        _tar(lambda a: _entry(a, "l", tarfile.SYMTYPE, target), mode="w:"),
        f"a link target of {MAX_PATH_BYTES + 1} bytes; at most {MAX_PATH_BYTES}",
    )


def test_every_directory_made_counts_as_an_entry(tmp_path: Path) -> None:
    # 10 members, each asking for 50 parents nobody listed: 510 entries, not 10.
    flood = _names(*(f"d{i}/" + "x/" * 49 + "f" for i in range(10)))
    limits = ExtractLimits(max_bytes=0, max_entries=10)
    _refused(tmp_path, flood, "more than 10 entries in all (the directories made", limits)
    assert sum(1 for _ in tmp_path.rglob("*")) <= 10


def test_a_directory_listed_after_it_was_made_as_a_parent_counts_once(tmp_path: Path) -> None:
    def build(a: tarfile.TarFile) -> None:
        _file(a, "pkg/sub/f", b"1")
        _entry(a, "pkg", tarfile.DIRTYPE, mode=0o750)
        _entry(a, "pkg/sub", tarfile.DIRTYPE)

    limits = ExtractLimits(max_bytes=1, max_entries=3)
    done = extract(io.BytesIO(_tar(build)), tmp_path, limits, what="upload")
    assert (done.files, done.directories, done.entries) == (1, 2, 3)
    assert stat.S_IMODE(os.stat(tmp_path / "pkg").st_mode) == 0o750


@pytest.mark.parametrize(("mode", "kind"), [("w:gz", "gzip"), ("w:bz2", "bzip2"), ("w:xz", "xz")])
def test_uploads_must_be_plain_tar(tmp_path: Path, mode: str, kind: str) -> None:
    data = _tar(lambda a: _file(a, "f", b"x"), mode=mode)
    _refused(
        tmp_path,
        data,
        f"the stream is {kind}-compressed; send an uncompressed tar stream "
        "(Content-Type: application/x-tar)",
    )


@pytest.mark.parametrize(("mode", "kind"), [("w:bz2", "bzip2"), ("w:xz", "xz")])
def test_runtime_archives_are_plain_or_gzip(tmp_path: Path, mode: str, kind: str) -> None:
    data = _tar(lambda a: _file(a, "f", b"x"), mode=mode)
    _refused(
        tmp_path,
        data,
        f"the stream is {kind}-compressed; send a tar stream, plain or gzip",
        RUNTIME_LIKE,
    )


def test_gzip_unpacking_is_counted_against_the_stream_bound(tmp_path: Path) -> None:
    data = _tar(lambda a: _file(a, "zeros", b"\0" * 200_000), mode="w:gz")
    assert len(data) < 2_000  # compresses a hundredfold
    limits = ExtractLimits(
        max_bytes=1 << 30, max_entries=10, absolute_links=False, gzip=True, max_stream_bytes=100_000
    )
    with pytest.raises(JobletError) as caught:
        extract(io.BytesIO(data), tmp_path, limits, what="runtime archive r")
    assert caught.value.code is ErrorCode.TOO_LARGE
    assert caught.value.message == (
        "runtime archive r: unpacks to more than 100000 bytes of tar stream"
    )


def test_concatenated_and_padded_gzip_members_are_read(tmp_path: Path) -> None:
    plain = _tar(lambda a: (_file(a, "one", b"1"), _file(a, "two", b"2")))
    half = len(plain) // 1024 * 512  # at a block boundary inside the archive
    data = gzip.compress(plain[:half]) + b"\0" * 100 + gzip.compress(plain[half:])
    extract(io.BytesIO(data), tmp_path, RUNTIME_LIKE, what="runtime archive")
    assert (tmp_path / "two").read_bytes() == b"2"
    (tmp_path / "cut").mkdir()
    _refused(tmp_path / "cut", gzip.compress(plain)[:-30], "ended in the middle", RUNTIME_LIKE)


class _Endless(io.RawIOBase):
    """`head`, then `filler` for ever; counts what was read."""

    def __init__(self, head: bytes, filler: bytes = b"\0") -> None:
        self.head = head
        self.filler = filler
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = len(buffer)
        chunk = (self.head + self.filler * size)[:size]
        self.head = self.head[size:]
        buffer[:size] = chunk
        self.read_bytes += size
        return size


def _endless(head: bytes, filler: bytes = b"\0") -> tuple[io.BufferedReader, _Endless]:
    source = _Endless(head, filler)
    return io.BufferedReader(source), source


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (tarfile.GNUTYPE_LONGNAME, "a GNU long-name header"),
        (tarfile.GNUTYPE_LONGLINK, "a GNU long-link header"),
        (tarfile.XHDTYPE, "a PAX extended header"),
        (tarfile.XGLTYPE, "a PAX global header"),
    ],
)
def test_extended_headers_are_bounded_before_they_are_read(
    tmp_path: Path, kind: bytes, name: str
) -> None:
    header = tarfile.TarInfo("././@LongLink")
    header.type = kind
    header.size = 16 << 30  # what the bomb of the review claimed
    stream, source = _endless(header.tobuf(format=tarfile.GNU_FORMAT))
    with pytest.raises(JobletError) as caught:
        extract(stream, tmp_path, LIMITS, what="upload")
    assert caught.value.message == (
        f"upload: {name} of {16 << 30} bytes; at most {MAX_EXTENDED_HEADER_BYTES} are read"
    )
    assert source.read_bytes <= 4 << 20  # what the buffers hold, not 16 GiB


def test_extended_header_chains_and_global_headers_are_bounded(tmp_path: Path) -> None:
    def extended(kind: bytes) -> bytes:
        record = b"19 comment=example\n"
        info = tarfile.TarInfo("pax")
        info.type = kind
        info.size = len(record)
        return info.tobuf(format=tarfile.USTAR_FORMAT) + record + b"\0" * (512 - len(record))

    def member(name: str) -> bytes:
        return tarfile.TarInfo(name).tobuf(format=tarfile.USTAR_FORMAT)

    end = b"\0" * 1024
    chain = extended(tarfile.XHDTYPE) * (MAX_EXTENDED_CHAIN + 1) + member("f") + end
    _refused(tmp_path, chain, f"more than {MAX_EXTENDED_CHAIN} extended headers in a row")
    allowed = extended(tarfile.XHDTYPE) * MAX_EXTENDED_CHAIN + member("f") + end
    (tmp_path / "ok").mkdir()
    assert extract(io.BytesIO(allowed), tmp_path / "ok", LIMITS, what="upload").files == 1
    globals_ = b"".join(
        extended(tarfile.XGLTYPE) + member(f"f{i}") for i in range(MAX_GLOBAL_HEADERS + 1)
    )
    (tmp_path / "g").mkdir()
    _refused(tmp_path / "g", globals_ + end, f"more than {MAX_GLOBAL_HEADERS} PAX global headers")


def test_sparse_files_are_refused(tmp_path: Path) -> None:
    old = tarfile.TarInfo("old-sparse")
    old.type = tarfile.GNUTYPE_SPARSE
    _refused(tmp_path, old.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024, "sparse files are")
    # PAX sparse 1.0: the sparse map, numbers without bound, would be read from the data.
    new = tarfile.TarInfo("new-sparse")
    new.size = 512
    new.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    stream, _ = _endless(new.tobuf(format=tarfile.PAX_FORMAT) + b"999999999999\n", b"1\n")
    with pytest.raises(JobletError, match="a GNU sparse file"):
        extract(stream, tmp_path, LIMITS, what="upload")


@pytest.mark.parametrize(
    ("links", "why"),
    [
        (  # the review's L2: each inside on its own
            [("a/b/c/s", "../../.."), ("t", "a/b/c/s/../../..")],
            "'t': its target 'a/b/c/s/../../..' leads outside the tree through the link 'a/b/c/s'",
        ),
        (  # a later link turns a name an earlier one passed through into a way out
            [("t", "x/y/../.."), ("x", ".")],
            "'t': its target 'x/y/../..' leads outside the tree through the link 'x'",
        ),
        ([("a", "b"), ("b", "a")], "'a': its target 'b' is in a loop of links"),
    ],
)
def test_links_are_resolved_through_each_other(
    tmp_path: Path, links: list[tuple[str, str]], why: str
) -> None:
    data = _tar(lambda a: [_entry(a, name, tarfile.SYMTYPE, target) for name, target in links])
    _refused(tmp_path, data, why, RUNTIME_LIKE)


def test_honest_link_chains_are_kept(tmp_path: Path) -> None:
    def build(a: tarfile.TarFile) -> None:
        _entry(a, "lib", tarfile.SYMTYPE, "usr/lib")  # usr-merge
        _file(a, "usr/lib/real.so.1", b"elf")
        _entry(a, "usr/lib/x/libreal.so", tarfile.SYMTYPE, "../../../lib/real.so.1")
        _entry(a, "usr/bin/X11", tarfile.SYMTYPE, ".")
        _entry(a, "usr/bin/up", tarfile.SYMTYPE, "X11/X11/../../lib")

    extract(io.BytesIO(_tar(build)), tmp_path, RUNTIME_LIKE, what="runtime archive")
    assert (tmp_path / "usr/lib/x/libreal.so").read_bytes() == b"elf"


# -- the feed from the event loop (review H4) --------------------------------------------------


def test_a_body_that_never_comes_holds_no_thread(tmp_path: Path) -> None:
    one_thread = ThreadPoolExecutor(max_workers=1)

    async def nothing_yet(arrived: asyncio.Event) -> AsyncIterator[bytes]:
        await arrived.wait()
        yield _tar(lambda a: _file(a, "f", b"late"))

    async def attack() -> str:
        arrived = asyncio.Event()
        stalled = asyncio.ensure_future(
            extract_async(
                nothing_yet(arrived), tmp_path, LIMITS, what="upload", executor=one_thread
            )
        )
        await asyncio.sleep(0)  # the extraction waits for its first bytes
        # The pool's only thread is free for others meanwhile (a guard, not a measured time).
        other = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(one_thread, lambda: "served"), 30
        )
        arrived.set()
        await stalled
        return other

    try:
        assert asyncio.run(attack()) == "served"
    finally:
        one_thread.shutdown()
    assert (tmp_path / "f").read_bytes() == b"late"


def test_an_empty_body_is_refused(tmp_path: Path) -> None:
    async def empty() -> AsyncIterator[bytes]:
        nothing: list[bytes] = []
        for chunk in nothing:
            yield chunk

    with pytest.raises(JobletError, match="upload: the body is empty; send a tar stream"):
        asyncio.run(extract_async(empty(), tmp_path, LIMITS, what="upload", executor=EXTRACTING))


def test_the_feed_waits_for_room_and_a_slow_extractor_gets_everything(tmp_path: Path) -> None:
    payload = os.urandom(5 << 20)
    data = _tar(lambda a: _file(a, "big", payload))
    limits = ExtractLimits(max_bytes=len(payload), max_entries=1)

    async def small_chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 4096):  # far more chunks than the queue holds
            yield data[offset : offset + 4096]

    asyncio.run(extract_async(small_chunks(), tmp_path, limits, what="upload", executor=EXTRACTING))
    assert (tmp_path / "big").read_bytes() == payload
