"""What an archive (an upload's tar stream, a runtime's archive) may hold, and what was taken of it.
Pure data; adapters/archive.py extracts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    max_bytes: int  # sum of regular files' sizes
    max_entries: int  # files, links and directories made, parents nobody listed included
    absolute_links: bool = True  # a link to /x means the job's (or runtime's) own /x
    max_stream_bytes: int | None = None  # the tar stream, headers and padding included
    gzip: bool = False  # whether the stream may be gzip (runtime archives); never bz2, xz, ...


@dataclass(frozen=True, slots=True)
class Extracted:
    files: int = 0
    directories: int = 0  # those listed and those made as parents
    links: int = 0
    bytes: int = 0

    @property
    def entries(self) -> int:
        return self.files + self.directories + self.links
