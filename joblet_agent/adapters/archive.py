"""Safe extraction of a tar stream into a fresh directory: job uploads and runtime archives.

The stream comes from a client (an upload) or a registry (a runtime), so it is hostile: a member
may try to leave the directory (absolute names, `..`, writing through a symlink the stream made
earlier, a link leaving through another link), to create device nodes or FIFOs, to take a name
twice, to be larger than announced, to be deeper or longer than anything honest, or to make
more directories than its entries (parents nobody listed). Every member is checked before
anything of it is written, writing never follows a symlink, and every header is bounded before
it is read (archive_stream.py). The caller owns the destination and removes it whole when
extraction fails: nothing half-done.

tarfile's own filters (3.12) are not used: they are not in 3.11, and they repair (strip a leading
/, drop modes) where we want to refuse with a message that names the member.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path, PurePosixPath

from joblet_agent.adapters.archive_stream import (
    SNIFF_BYTES,
    TarBytes,
    compression_of,
    guarded_tarinfo,
)
from joblet_agent.domain.archive import Extracted, ExtractLimits
from joblet_agent.domain.archive_links import LinkTree
from joblet_agent.errors import ErrorCode, JobletError

# A member's name: components below the destination, and bytes. Honest trees are far inside
# both (a Debian /usr is about 15 deep); the kernel's PATH_MAX is 4096.
MAX_MEMBER_DEPTH = 64
MAX_PATH_BYTES = 1024
_COPY_CHUNK = 1024 * 1024
_PERMISSIONS = 0o777  # setuid, setgid and sticky bits are dropped
_EXCERPT = 60  # characters of an untrusted name quoted in a message


def excerpt(text: str) -> str:
    """An untrusted name, quoted; a long one cut, with its length."""
    if len(text) <= _EXCERPT:
        return repr(text)
    return f"{text[:_EXCERPT]!r}... ({len(os.fsencode(text))} bytes)"


def _refuse(what: str, member: str, why: str) -> JobletError:
    return JobletError(ErrorCode.INVALID, f"{what}: {excerpt(member)}: {why}")


def member_path(name: str, what: str) -> PurePosixPath:
    """The member's relative path; refuses absolute names, `..`, empty names, and names deeper
    than MAX_MEMBER_DEPTH or longer than MAX_PATH_BYTES."""
    if name.startswith("/"):
        raise _refuse(what, name, "absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise _refuse(what, name, "an empty name")
    if ".." in parts:
        raise _refuse(what, name, "'..' is not allowed in a path")
    if len(parts) > MAX_MEMBER_DEPTH:
        raise _refuse(what, name, f"{len(parts)} components deep; at most {MAX_MEMBER_DEPTH}")
    size = len(os.fsencode(name))
    if size > MAX_PATH_BYTES:
        raise _refuse(what, name, f"a name of {size} bytes; at most {MAX_PATH_BYTES}")
    return PurePosixPath(*parts)


def link_stays_inside(link: PurePosixPath, target: str, *, absolute_ok: bool) -> bool:
    """Whether a symlink at `link` pointing to `target` resolves (lexically) inside the tree.
    Chains of links are checked once the tree is complete (archive_links.py)."""
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
        self.links = LinkTree()
        self.directory_modes: list[tuple[Path, int, float]] = []
        self.count = Extracted()

    def _room_for_one(self, name: str) -> None:
        """Before anything is made: the entry limit counts every file, link and directory."""
        if self.count.entries >= self.limits.max_entries:
            raise _refuse(
                self.what,
                name,
                f"more than {self.limits.max_entries} entries in all (the directories made "
                "for members' parents count too)",
            )

    def _parent(self, rel: PurePosixPath) -> Path:
        """The member's parent directory, created as needed; never through a symlink."""
        current = self.dest
        for part in rel.parent.parts:
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                self._room_for_one(str(rel))
                os.mkdir(current, 0o700)
                self.count = _more(self.count, directories=1)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise _refuse(self.what, str(rel), f"{part!r} above it is not a directory")
        return current

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = member_path(member.name, self.what)
        if rel in self.seen:
            raise _refuse(self.what, member.name, "the name is in the stream twice")
        self.seen.add(rel)
        if member.sparse is not None:
            raise _refuse(self.what, member.name, "is a sparse file; sparse files are refused")
        parent = self._parent(rel)
        path = parent / rel.name
        mode = member.mode & _PERMISSIONS
        if member.isreg():
            self._room_for_one(member.name)
            self._file(archive, member, rel, path, mode)
        elif member.isdir():
            self._directory(member, path, mode)
        elif member.issym():
            self._room_for_one(member.name)
            self._symlink(member, rel, path)
        elif member.islnk():
            self._room_for_one(member.name)
            target = member_path(member.linkname, self.what)
            if target not in self.files:
                raise _refuse(
                    self.what,
                    member.name,
                    f"a hard link may only name a regular file earlier in the stream, "
                    f"not {excerpt(member.linkname)}",
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
            st = os.lstat(path)
        except FileNotFoundError:
            self._room_for_one(member.name)
            os.mkdir(path, 0o700)
            self.count = _more(self.count, directories=1)
        else:
            # Made earlier as a parent of a member: listed now, not made twice.
            if not stat.S_ISDIR(st.st_mode):
                raise _refuse(self.what, member.name, "the name is in the stream twice")
        # Modes last: a read-only directory must still take the members that follow it.
        self.directory_modes.append((path, mode, float(member.mtime)))

    def _symlink(self, member: tarfile.TarInfo, rel: PurePosixPath, path: Path) -> None:
        target = member.linkname
        if len(os.fsencode(target)) > MAX_PATH_BYTES:
            raise _refuse(
                self.what,
                member.name,
                f"a link target of {len(os.fsencode(target))} bytes; at most {MAX_PATH_BYTES}",
            )
        if not link_stays_inside(rel, target, absolute_ok=self.limits.absolute_links):
            raise _refuse(self.what, member.name, f"the link points outside: {excerpt(target)}")
        os.symlink(target, path)
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
        self.links.add(rel, target)
        self.count = _more(self.count, links=1)

    def finish(self) -> Extracted:
        escape = self.links.first_escape()
        if escape is not None:
            link, target, why = escape
            raise _refuse(self.what, str(link), f"its target {excerpt(target)} {why}")
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


def _tar_bytes(stream: io.BufferedIOBase, limits: ExtractLimits, what: str) -> TarBytes:
    """The stream's tar bytes: plain, or gzip where allowed; any other compression refused."""
    head = b""
    while len(head) < SNIFF_BYTES and (more := stream.read(SNIFF_BYTES - len(head))):
        head += more
    compression = compression_of(head)
    if compression is not None and not (compression == "gzip" and limits.gzip):
        accepted = (
            "a tar stream, plain or gzip"
            if limits.gzip
            else "an uncompressed tar stream (Content-Type: application/x-tar)"
        )
        raise JobletError(
            ErrorCode.INVALID,
            f"{what}: the stream is {compression}-compressed; send {accepted}",
        )
    return TarBytes(
        head, stream, gzip=compression == "gzip", cap=limits.max_stream_bytes, what=what
    )


def extract(
    stream: io.BufferedIOBase, dest: Path, limits: ExtractLimits, *, what: str
) -> Extracted:
    """Extract a tar stream (plain, or gzip if the limits allow) into the existing, empty
    directory `dest`."""
    extractor = _Extractor(dest, limits, what)
    try:
        # r|: tarfile itself never decompresses (it would, unbounded, with r|*).
        with tarfile.open(
            fileobj=_tar_bytes(stream, limits, what),
            mode="r|",
            bufsize=_COPY_CHUNK,
            tarinfo=guarded_tarinfo(what),
        ) as archive:
            while (member := archive.next()) is not None:
                # A stream is read once: tarfile's list of every member seen is only memory.
                archive.members.clear()  # type: ignore[attr-defined]
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
