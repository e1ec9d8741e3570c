"""The tar stream of a directory copied out of a job (`rnx job cp JOB:/work/dir ./`): headers
made by tarfile (PAX, for names of any length), the content read from the job by its init."""

from __future__ import annotations

import tarfile

from joblet_agent.domain.exec_frames import EntryKind, FileEntry

_TYPES = {
    EntryKind.FILE: tarfile.REGTYPE,
    EntryKind.DIRECTORY: tarfile.DIRTYPE,
    EntryKind.SYMLINK: tarfile.SYMTYPE,
}


class TarMembers:
    def header(self, name: str, entry: FileEntry) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = _TYPES[entry.kind]
        info.mode = entry.mode & 0o777
        info.size = entry.size if entry.kind is EntryKind.FILE else 0
        info.mtime = int(entry.mtime)
        info.linkname = entry.target or ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def padding(self, size: int) -> bytes:
        return b"\0" * (-size % tarfile.BLOCKSIZE)

    def end(self) -> bytes:
        return b"\0" * (2 * tarfile.BLOCKSIZE)
