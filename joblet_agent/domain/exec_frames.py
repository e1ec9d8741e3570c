"""The frames between the agent and joblet-init, the main process inside every job
(init/joblet-init.c). Pure: building requests, reading answers.

A frame is its type (one byte), its payload's length (four bytes, big-endian) and the payload.
One connection to a job's channel socket carries one exec, one attach, or a series of file
requests. What init sends is as untrusted as the job's output (the job could have taken init
over): every frame is bounded before it is read (MAX_REPLY), and every field parsed here is
checked, so a hostile answer is an error, never a crash or an unbounded allocation.

    agent -> init                              init -> agent
    x  exec request (key=value fields)         p  started (the exec's pid)
    a  attach to the job's command             o  stdout, terminal output, file data
    i  stdin, or file data                     e  stderr
    d  end of stdin, or of file data           x  exited: "CODE SIGNAL"
    w  window size: rows, columns (2 bytes)    E  refused or failed: CODE NUL message
    k  a signal (1 byte)                       N  a file entry (see FileEntry)
    S  stat   L list   R read                  .  end of a listing
    W  write  M mkdir  Y symlink               K  done ("BYTES" after a write)
       (base NUL path [NUL mode-or-target])
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from joblet_agent.errors import ErrorCode, JobletError

HEADER = struct.Struct(">cI")
# init sends at most 64 KiB of data per frame; an entry or an error is far smaller.
MAX_REPLY = 128 * 1024
# What init accepts from the agent in one frame (joblet-init.c's MAX_REQUEST and MAX_DATA).
MAX_REQUEST = 1024 * 1024
MAX_MESSAGE_CHARS = 400  # of an error init sends, as quoted to the caller


class FrameError(Exception):
    """What init sent is not a frame of this protocol, or not the one expected."""


class ChannelClosed(Exception):
    """The connection to a job's init is gone (or was never made: nothing listens)."""


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_REQUEST:
        raise ValueError(f"a frame of {len(payload)} bytes; at most {MAX_REQUEST}")
    return HEADER.pack(kind, len(payload)) + payload


def _fields(items: Iterable[str]) -> bytes:
    return b"".join(item.encode("utf-8", "surrogateescape") + b"\0" for item in items)


def exec_request(
    argv: Iterable[str],
    env: Mapping[str, str],
    cwd: str,
    *,
    tty: bool,
    stdin: bool,
    rows: int = 0,
    cols: int = 0,
) -> bytes:
    items = [f"cwd={cwd}", f"tty={int(tty)}", f"stdin={int(stdin)}", f"rows={rows}", f"cols={cols}"]
    items += [f"env={key}={value}" for key, value in env.items()]
    items += [f"arg={arg}" for arg in argv]
    return frame(b"x", _fields(items))


def attach_request(rows: int = 0, cols: int = 0) -> bytes:
    return frame(b"a", _fields([f"rows={rows}", f"cols={cols}"]))


def window_size(rows: int, cols: int) -> bytes:
    return frame(b"w", struct.pack(">HH", rows, cols))


def signal_frame(number: int) -> bytes:
    return frame(b"k", bytes([number]))


class FileOp(StrEnum):
    STAT = "S"
    LIST = "L"
    READ = "R"
    WRITE = "W"
    MKDIR = "M"
    SYMLINK = "Y"


def file_request(op: FileOp, base: str, path: str, extra: str | None = None) -> bytes:
    items = [base, path] + ([extra] if extra is not None else [])
    return frame(op.value.encode(), _fields(items))


def parse_header(head: bytes) -> tuple[bytes, int]:
    """A frame's type and length; a length over MAX_REPLY is refused before anything is read."""
    kind, length = HEADER.unpack(head)
    if length > MAX_REPLY:
        raise FrameError(f"a frame of {length} bytes; at most {MAX_REPLY}")
    return kind, length


def parse_exit(payload: bytes) -> tuple[int, int | None]:
    """'CODE SIGNAL' -> (exit code, signal number or None)."""
    parts = payload.split(b" ")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        raise FrameError(f"an exit status {payload[:40]!r}")
    code, sig = int(parts[0]), int(parts[1])
    if code > 255 or sig > 64:
        raise FrameError(f"an exit status {payload[:40]!r}")
    return code, sig or None


def parse_started(payload: bytes) -> int | None:
    if not payload:
        return None
    if not (payload.isdigit() and len(payload) <= 10):
        raise FrameError(f"a process id {payload[:40]!r}")
    return int(payload)


@dataclass(frozen=True, slots=True)
class InitError:
    """What init refused or failed, and why: an errno's name (ENOENT, ELOOP, ...) or one of its
    own (FTYPE: not a regular file; NLINK: a hard link; EBUSY, ENOTTY for attaches)."""

    code: str
    message: str


def parse_error(payload: bytes) -> InitError:
    code, _, message = payload.partition(b"\0")
    # Shown to people: no control characters (a terminal would obey them).
    text = "".join(c if c.isprintable() else "?" for c in message.decode("utf-8", "replace"))
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "..."
    name = code.decode("ascii", "replace")
    if not (name.isalnum() and name.isupper() and len(name) <= 16):
        name = "EIO"
    return InitError(name, text)


# init's refusals, as the API answers them (its message names the path or program and why).
_REFUSALS = {
    "ENOENT": (ErrorCode.NOT_FOUND, None),
    "ENOTDIR": (ErrorCode.NOT_FOUND, None),
    "ELOOP": (ErrorCode.INVALID, "a symlink is never followed, in any part of a path"),
    "EXDEV": (ErrorCode.INVALID, "paths stay inside /work or a volume of the job's"),
    "FTYPE": (ErrorCode.INVALID, "only regular files are read (not FIFOs, devices, sockets)"),
    "NLINK": (ErrorCode.INVALID, "a file with several names (hard links) is never opened"),
    "EISDIR": (ErrorCode.INVALID, None),
    "EINVAL": (ErrorCode.INVALID, None),
    "ENAMETOOLONG": (ErrorCode.INVALID, None),
    "EACCES": (ErrorCode.FORBIDDEN, "the job's user may not"),
    "EPERM": (ErrorCode.FORBIDDEN, "the job's user may not"),
    "EROFS": (ErrorCode.CONFLICT, "read-only here"),
    "EEXIST": (ErrorCode.CONFLICT, None),
    "ENOTEMPTY": (ErrorCode.CONFLICT, None),
    "ENOTTY": (ErrorCode.CONFLICT, "start the job with -i or -t to attach to it"),
    "EBUSY": (ErrorCode.CONFLICT, None),
    "ENOSPC": (ErrorCode.TOO_LARGE, "the job's /work (or the volume) is full"),
    "EAGAIN": (ErrorCode.BUSY, "the job is at its task limit, or serving many requests"),
    "ENOMEM": (ErrorCode.BUSY, "the job is at its memory limit"),
}


def init_refusal(error: InitError, what: str) -> JobletError:
    """A JobletError for what init refused (`what`: the program, path or request)."""
    code, hint = _REFUSALS.get(error.code, (ErrorCode.INTERNAL, None))
    return JobletError(code, f"{what}: {error.message or error.code} ({error.code})", hint=hint)


class EntryKind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    FIFO = "fifo"
    CHAR_DEVICE = "char-device"
    BLOCK_DEVICE = "block-device"
    SOCKET = "socket"
    OTHER = "other"


_KINDS = {
    b"f": EntryKind.FILE,
    b"d": EntryKind.DIRECTORY,
    b"l": EntryKind.SYMLINK,
    b"p": EntryKind.FIFO,
    b"c": EntryKind.CHAR_DEVICE,
    b"b": EntryKind.BLOCK_DEVICE,
    b"s": EntryKind.SOCKET,
}
MAX_NAME_BYTES = 255  # NAME_MAX
MAX_TARGET_BYTES = 4095


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One name in a job's tree, as init saw it (never following a link)."""

    name: str
    kind: EntryKind
    mode: int  # permission bits, setuid/setgid/sticky included
    size: int
    mtime: float  # seconds since the epoch
    links: int
    target: str | None  # a symlink's target, as text; never followed

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": str(self.kind),
            "mode": f"{self.mode:04o}",
            "size": self.size,
            "mtime": self.mtime,
            "links": self.links,
            "target": self.target,
        }


def _number(text: bytes, what: str, *, most: int = 20) -> int:
    if not (text.isdigit() and len(text) <= most):
        raise FrameError(f"a file entry's {what} {text[:40]!r}")
    return int(text)


def parse_entry(payload: bytes, *, any_name: bool = False) -> FileEntry:
    """name NUL kind NUL mode (octal) NUL size NUL mtime (s.ns) NUL links NUL target.
    A name is one component (no '/', not '.' or '..') unless `any_name` (a read's header)."""
    parts = payload.split(b"\0")
    if len(parts) != 7:
        raise FrameError("a file entry of the wrong shape")
    raw_name, kind, mode, size, mtime, links, target = parts
    if not raw_name or len(raw_name) > (4096 if any_name else MAX_NAME_BYTES):
        raise FrameError(f"a file name of {len(raw_name)} bytes")
    if not any_name and (b"/" in raw_name or raw_name in (b".", b"..")):
        raise FrameError(f"a file name {raw_name[:40]!r}")
    if len(target) > MAX_TARGET_BYTES:
        raise FrameError(f"a link target of {len(target)} bytes")
    seconds, dot, nanos = mtime.partition(b".")
    if not dot:
        raise FrameError(f"a file entry's mtime {mtime[:40]!r}")
    entry_kind = _KINDS.get(kind, EntryKind.OTHER)
    return FileEntry(
        name=raw_name.decode("utf-8", "surrogateescape"),
        kind=entry_kind,
        mode=int(mode, 8) & 0o7777 if mode and set(mode) <= set(b"01234567") else 0,
        size=_number(size, "size"),
        mtime=_number(seconds, "mtime") + _number(nanos, "mtime", most=9) / 1e9,
        links=_number(links, "link count"),
        target=target.decode("utf-8", "surrogateescape")
        if entry_kind is EntryKind.SYMLINK
        else None,
    )
