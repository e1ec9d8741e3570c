"""Uploads: files for a job's /work, announced, then streamed (docs/openapi.yaml: Upload)."""

from __future__ import annotations

from dataclasses import dataclass

from rnx.client.fields import Fields, Model


@dataclass(frozen=True, slots=True)
class Upload(Model):
    id: str  # give it to run(): its tree becomes the job's /work
    state: str  # announced, receiving or ready
    bytes: int  # as announced: the sum of the files' sizes
    entries: int
    files: int | None  # counted once received
    directories: int | None
    links: int | None

    @classmethod
    def read(cls, fields: Fields) -> Upload:
        return cls(
            id=fields.text("id"),
            state=fields.text("state"),
            bytes=fields.whole("bytes"),
            entries=fields.whole("entries"),
            files=fields.opt_whole("files"),
            directories=fields.opt_whole("directories"),
            links=fields.opt_whole("links"),
            raw=fields.data,
        )
