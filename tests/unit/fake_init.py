"""joblet-init's side of a job's channel, imitated in Python for the unit tier: execs run
scripted programs; file requests act on a directory standing for the job's /work, never
following a link (the real one is init/joblet-init.c, proven against systemd in
tests/integration/test_exec.py and test_job_files.py)."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from joblet_agent.domain.exec_frames import HEADER, ChannelClosed, FileEntry
from joblet_agent.domain.job_file import StagedEntry


def _frame(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


@dataclass
class Call:
    """An exec as a scripted program sees it."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    tty: bool
    stdin: bool


# What a scripted program does: (stdout, stderr, exit code), or None to run until a signal
# (then it ends killed by it) or, with stdin, to echo stdin until its end (then exit 0).
Program = Callable[[Call], tuple[bytes, bytes, int] | None]


@dataclass
class FakeInit:
    work: Path | None = None
    programs: dict[str, Program] = field(default_factory=dict)
    requests: list[bytes] = field(default_factory=list)  # each request frame's kind


class FakeConnection:
    def __init__(self, init: FakeInit) -> None:
        self.init = init
        self.closed = False
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._buffer = b""
        self._running: Call | None = None
        self._write: tuple[Path, bytearray, int] | None = None

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise ChannelClosed("closed")
        self._buffer += data
        while len(self._buffer) >= 5:
            kind, length = HEADER.unpack(self._buffer[:5])
            if len(self._buffer) < 5 + length:
                return
            payload, self._buffer = self._buffer[5 : 5 + length], self._buffer[5 + length :]
            self._handle(kind, payload)

    async def receive(self) -> tuple[bytes, bytes]:
        item = await self._out.get()
        if item is None:
            raise ChannelClosed("closed")
        return item[:1], item[5:]

    def close(self) -> None:
        self.closed = True
        self._out.put_nowait(None)

    def _reply(self, kind: bytes, payload: bytes = b"") -> None:
        self._out.put_nowait(_frame(kind, payload))

    def _handle(self, kind: bytes, payload: bytes) -> None:
        if kind in (b"x", b"a", b"S", b"L", b"R", b"W", b"M", b"Y"):
            self.init.requests.append(kind)
        fields = payload.split(b"\0")[:-1] if payload else []
        if kind == b"x":
            self._exec([f.decode() for f in fields])
        elif kind == b"k" and self._running is not None:
            self._running = None
            self._reply(b"x", f"{128 + payload[0]} {payload[0]}".encode())
        elif kind == b"i" and self._write is not None:
            self._write[1].extend(payload)
        elif kind == b"i" and self._running is not None:
            self._reply(b"o", payload)
        elif kind == b"d" and self._write is not None:
            self._finish_write()
        elif kind == b"d" and self._running is not None:
            self._running = None
            self._reply(b"x", b"0 0")
        elif kind in (b"S", b"L", b"R", b"W", b"M", b"Y"):
            self._file(kind, [f.decode() for f in fields])

    def _exec(self, fields: list[str]) -> None:
        call = Call([], {}, "/work", tty=False, stdin=False)
        for item in fields:
            key, _, value = item.partition("=")
            if key == "arg":
                call.argv.append(value)
            elif key == "env":
                name, _, text = value.partition("=")
                call.env[name] = text
            elif key == "cwd":
                call.cwd = value
            elif key in ("tty", "stdin"):
                setattr(call, key, value == "1")
        program = self.init.programs.get(call.argv[0])
        if program is None:
            self._reply(b"E", b"ENOENT\0No such file or directory")
            return
        self._reply(b"p", b"4242")
        result = program(call)
        if result is None:
            self._running = call
            return
        out, err, code = result
        if out:
            self._reply(b"o", out)
        if err:
            self._reply(b"e", err)
        self._reply(b"x", f"{code} 0".encode())

    # -- files ------------------------------------------------------------------------------

    def _path(self, base: str, rel: str) -> Path | None:
        """The path, or None after an error reply: a link anywhere in it is ELOOP."""
        assert self.init.work is not None
        if base != "/work":
            self._reply(b"E", b"EXDEV\0Invalid cross-device link")
            return None
        path = self.init.work
        for part in PurePosixPath(rel).parts:
            if path.is_symlink():
                self._reply(b"E", b"ELOOP\0Too many levels of symbolic links")
                return None
            path = path / part
        return path

    def _entry(self, name: str, path: Path) -> bytes:
        st = path.lstat()
        kind = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFIFO: "p"}
        target = os.readlink(path) if path.is_symlink() else ""
        fields = [
            name,
            kind.get(stat.S_IFMT(st.st_mode), "?"),
            f"{stat.S_IMODE(st.st_mode):o}",
            str(st.st_size),
            f"{int(st.st_mtime)}.{st.st_mtime_ns % 1_000_000_000:09d}",
            str(st.st_nlink),
            target,
        ]
        return "\0".join(fields).encode()

    def _file(self, kind: bytes, fields: list[str]) -> None:
        base, rel, *extra = fields
        path = self._path(base, rel)
        if path is None:
            return
        if kind == b"W":
            self._write = (path, bytearray(), int(extra[0], 8) if extra else 0o644)
            return
        if not path.exists() and not path.is_symlink():
            self._reply(b"E", b"ENOENT\0No such file or directory")
        elif kind == b"S":
            self._reply(b"N", self._entry(path.name or ".", path))
        elif kind == b"L":
            if path.is_symlink() or not path.is_dir():
                self._reply(b"E", b"ENOTDIR\0Not a directory")
                return
            for child in sorted(path.iterdir()):
                self._reply(b"N", self._entry(child.name, child))
            self._reply(b".")
        elif kind == b"R":
            if path.is_symlink():
                self._reply(b"E", b"ELOOP\0Too many levels of symbolic links")
            elif not path.is_file():
                self._reply(b"E", b"FTYPE\0not a regular file")
            else:
                self._reply(b"N", self._entry(rel, path))
                self._reply(b"o", path.read_bytes())
                self._reply(b"K")
        elif kind == b"M":
            path.mkdir(exist_ok=True)
            self._reply(b"K")
        elif kind == b"Y":
            path.symlink_to(extra[0])
            self._reply(b"K")

    def _finish_write(self) -> None:
        assert self._write is not None
        path, data, mode = self._write
        self._write = None
        if not path.parent.is_dir():
            self._reply(b"E", b"ENOENT\0No such file or directory")
            return
        path.write_bytes(bytes(data))
        path.chmod(mode)
        self._reply(b"K", str(len(data)).encode())


class FakeJobChannels:
    """Jobs' channels by socket path; a path with no FakeInit is a job without one."""

    def __init__(self) -> None:
        self.inits: dict[str, FakeInit] = {}

    async def connect(self, socket: PurePosixPath) -> FakeConnection:
        init = self.inits.get(str(socket))
        if init is None:
            raise ChannelClosed(f"[Errno 2] No such file or directory: {socket!s}")
        return FakeConnection(init)


class FakeExecJournal:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str, str, bytes]] = []

    def line(self, unit: str, job_id: str, exec_id: str, stream: str, text: bytes) -> None:
        self.lines.append((unit, job_id, exec_id, stream, text))


class FakeStagedFiles:
    """An upload's staged tree in memory: entries and contents given by the test."""

    def __init__(self) -> None:
        self.trees: dict[Path, list[tuple[StagedEntry, bytes]]] = {}

    def entries(self, tree: Path) -> list[StagedEntry]:
        return [entry for entry, _ in self.trees.get(tree, [])]

    async def chunks(self, path: Path) -> AsyncIterator[bytes]:
        for tree, items in self.trees.items():
            for entry, data in items:
                if tree.joinpath(*entry.parts) == path:
                    yield data


class FakeArchive:
    """Headers as readable lines, so a test sees what the tar stream would hold."""

    def header(self, name: str, entry: FileEntry) -> bytes:
        size = entry.size if entry.kind == "file" else 0
        return f"[{entry.kind} {name} {size}]".encode()

    def padding(self, size: int) -> bytes:
        return b""

    def end(self) -> bytes:
        return b"[end]"
