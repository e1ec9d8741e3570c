"""Files of jobs, as the agent answers about them (docs/openapi.yaml: FileListing, FileEntry,
Copied)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rnx.client.fields import Fields, Model


@dataclass(frozen=True, slots=True)
class FileEntry(Model):
    """One name in a job's tree. `type`: file, directory, symlink, fifo, char-device,
    block-device, socket or other; `target`: a symlink's target, as text."""

    name: str
    type: str
    mode: int
    size: int
    mtime: datetime
    links: int
    target: str | None

    @classmethod
    def read(cls, fields: Fields) -> FileEntry:
        mode = fields.text("mode")
        return cls(
            name=fields.text("name"),
            type=fields.text("type"),
            mode=int(mode, 8) if mode and set(mode) <= set("01234567") else 0,
            size=fields.whole("size"),
            mtime=datetime.fromtimestamp(fields.opt_number("mtime") or 0, UTC),
            links=fields.whole("links"),
            target=fields.opt_text("target"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class FileListing(Model):
    """A path of a job's and its entries: a directory's, or the file's own."""

    path: str
    type: str
    entries: tuple[FileEntry, ...]

    @classmethod
    def read(cls, fields: Fields) -> FileListing:
        return cls(
            path=fields.text("path"),
            type=fields.text("type"),
            entries=tuple(FileEntry.read(e) for e in fields.objs("entries")),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class Copied(Model):
    """What a copy into a job wrote."""

    path: str
    files: int
    directories: int
    links: int
    bytes: int

    @classmethod
    def read(cls, fields: Fields) -> Copied:
        return cls(
            path=fields.text("path"),
            files=fields.whole("files"),
            directories=fields.whole("directories"),
            links=fields.whole("links"),
            bytes=fields.whole("bytes"),
            raw=fields.data,
        )
