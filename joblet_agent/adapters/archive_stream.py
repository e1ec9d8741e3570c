"""The bytes under the extractor's tarfile: what compression a stream may use, how many tar bytes
it may unpack to, and how large a header tarfile may read whole.

tarfile's own `r|*` reads gzip, bz2 and xz transparently, and reads a GNU long-name or a PAX
header of any size (up to 8 GiB) whole into memory before any member check could run: 281
bytes of bz2 claiming 256 MiB grew the agent by 774 MiB (review H5). So tarfile here only ever
reads a plain tar stream (`r|`); gzip, which runtime archives use, is inflated by a counting
reader of ours; and every header is checked (TarInfo.frombuf, which sees each 512-byte header
block before tarfile reads what follows it) before its contents are read.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from typing import Any, Self

from joblet_agent.errors import ErrorCode, JobletError

# A GNU long name or link, or a PAX header (path, linkpath, times, ids): names are at most
# archive.MAX_PATH_BYTES, so a few KiB hold any honest one.
MAX_EXTENDED_HEADER_BYTES = 8 * 1024
# Extended headers in a row before a member (GNU name + link, PAX, a global one): tarfile reads
# each chain recursively, so a long one would end in RecursionError.
MAX_EXTENDED_CHAIN = 4
MAX_GLOBAL_HEADERS = 8  # their keys accumulate for the rest of the stream
_CHUNK = 1024 * 1024
_MAGIC = (  # leading bytes -> the compression they announce
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"LZIP", "lzip"),
    (b"\x1f\x9d", "compress"),
)
SNIFF_BYTES = max(len(magic) for magic, _ in _MAGIC)
_EXTENDED = {
    tarfile.GNUTYPE_LONGNAME: "a GNU long-name header",
    tarfile.GNUTYPE_LONGLINK: "a GNU long-link header",
    tarfile.XHDTYPE: "a PAX extended header",
    tarfile.XGLTYPE: "a PAX global header",
    tarfile.SOLARIS_XHDTYPE: "a Solaris extended header",
}


def compression_of(head: bytes) -> str | None:
    """The compression the stream's first bytes announce; None for anything else (plain tar,
    or garbage tarfile then refuses)."""
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


class TarBytes(io.RawIOBase):
    """The tar bytes of a stream, inflated if it is gzip, counted: more than `cap` is refused
    (TOO_LARGE) as they are produced, so a small compressed stream cannot unpack without end.
    `head` are the stream's first bytes, already read to tell its compression."""

    def __init__(
        self,
        head: bytes,
        source: io.BufferedIOBase,
        *,
        gzip: bool,
        cap: int | None,
        what: str,
    ) -> None:
        self.source = source
        self.input = head
        self.gzip = gzip
        self.inflater: Any = None  # zlib's Decompress (not nameable): the gzip member being read
        self.cap = cap
        self.what = what
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """What tarfile calls (a bufsize at a time): bytes, with no copy of our own."""
        if size < 0:
            size = _CHUNK
        if self.gzip:
            data = self._produce(size)
        elif self.input:
            data, self.input = self.input[:size], self.input[size:]
        else:
            data = self.source.read(size)
        self.count += len(data)
        if self.cap is not None and self.count > self.cap:
            raise JobletError(
                ErrorCode.TOO_LARGE,
                f"{self.what}: unpacks to more than {self.cap} bytes of tar stream",
            )
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _produce(self, size: int) -> bytes:
        while True:
            if not self.input:
                self.input = self.source.read(_CHUNK)
                if not self.input:
                    if self.inflater is not None:
                        raise JobletError(
                            ErrorCode.INVALID, f"{self.what}: the gzip stream ended in the middle"
                        )
                    return b""
            if self.inflater is None:
                # Between gzip members: zeros may pad the stream (gzip(1) and Python skip them).
                self.input = self.input.lstrip(b"\0")
                if not self.input:
                    continue
                self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                data: bytes = self.inflater.decompress(self.input, size)
            except zlib.error as exc:
                raise JobletError(
                    ErrorCode.INVALID, f"{self.what}: not a valid gzip stream ({exc})"
                ) from None
            self.input = self.inflater.unconsumed_tail
            if self.inflater.eof:
                self.input = self.inflater.unused_data
                self.inflater = None
            if data:
                return data


def guarded_tarinfo(what: str) -> type[tarfile.TarInfo]:
    """A TarInfo class for one stream (tarfile.open(tarinfo=...)) that refuses, from the header
    block alone, extended headers over MAX_EXTENDED_HEADER_BYTES, chains of them, too many
    global ones and GNU sparse files, before tarfile reads any of their contents."""
    budget = _HeaderBudget(what)

    class GuardedTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            header = super().frombuf(buf, encoding, errors)
            budget.check(header)
            return header

        # tarfile calls it (on the PAX header, an instance of this class) for a PAX header
        # saying GNU.sparse.major=1: it would read the member's sparse map, numbers without
        # bound, from the data that follows. (The older sparse formats: budget.check.)
        def _proc_gnusparse_10(self, *args: object) -> None:
            raise budget.refusal("is a GNU sparse file (PAX format 1.0); sparse files are refused")

    return GuardedTarInfo


class _HeaderBudget:
    def __init__(self, what: str) -> None:
        self.what = what
        self.chain = 0
        self.globals = 0

    def refusal(self, why: str) -> JobletError:
        return JobletError(ErrorCode.INVALID, f"{self.what}: a member {why}")

    def check(self, header: tarfile.TarInfo) -> None:
        kind = _EXTENDED.get(header.type)
        if kind is None:
            self.chain = 0
            if header.type == tarfile.GNUTYPE_SPARSE:
                raise self.refusal("is a GNU sparse file; sparse files are refused")
            return
        if header.size > MAX_EXTENDED_HEADER_BYTES:
            raise JobletError(
                ErrorCode.INVALID,
                f"{self.what}: {kind} of {header.size} bytes; at most "
                f"{MAX_EXTENDED_HEADER_BYTES} are read",
            )
        self.chain += 1
        if self.chain > MAX_EXTENDED_CHAIN:
            raise JobletError(
                ErrorCode.INVALID,
                f"{self.what}: more than {MAX_EXTENDED_CHAIN} extended headers in a row",
            )
        if header.type == tarfile.XGLTYPE:
            self.globals += 1
            if self.globals > MAX_GLOBAL_HEADERS:
                raise JobletError(
                    ErrorCode.INVALID,
                    f"{self.what}: more than {MAX_GLOBAL_HEADERS} PAX global headers",
                )
