"""Paths inside a job for `rnx job cp|ls|cat`: checked at the edge, confined to the job's /work
and its volumes. Pure.

A path names a base (/work, or /volumes/NAME of a volume the job has) and components below it;
each component is a plain name (no '..', no '/', no NUL, at most 255 bytes), so nothing here
can leave the base by spelling. What the names stand for is checked where they are opened:
inside the job, by its init, one component at a time with O_NOFOLLOW (docs/exec-protocol.md),
so no symlink, hard link, FIFO or device node of the job's is ever followed or opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from joblet_agent.domain.volume import VolumeMount
from joblet_agent.errors import ErrorCode, JobletError, excerpt

WORK = "/work"
VOLUMES = "/volumes/"
MAX_PATH_BYTES = 4096
MAX_DEPTH = 64
MAX_NAME_BYTES = 255


@dataclass(frozen=True, slots=True)
class JobPath:
    base: str  # /work or /volumes/NAME
    parts: tuple[str, ...]  # below the base

    @property
    def rel(self) -> str:
        return "/".join(self.parts)

    def __str__(self) -> str:
        return f"{self.base}/{self.rel}" if self.parts else self.base

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else self.base.rsplit("/", 1)[-1]

    def child(self, name: str) -> JobPath:
        return JobPath(self.base, (*self.parts, name))

    @property
    def parent(self) -> JobPath:
        return JobPath(self.base, self.parts[:-1])


@dataclass(frozen=True, slots=True)
class StagedEntry:
    """One entry of an upload's staged tree (already checked by the extractor), to copy in."""

    parts: tuple[str, ...]
    kind: str  # file, directory or symlink
    mode: int
    size: int
    target: str | None = None


def _refuse(field: str, text: str, why: str) -> JobletError:
    return JobletError(ErrorCode.INVALID, f"{field}: {excerpt(text)} {why}")


def parse_job_path(
    text: str, volumes: tuple[VolumeMount, ...], *, field: str = "path", write: bool = False
) -> JobPath:
    """/work/..., a relative path (below /work), or /volumes/NAME/... of one of the job's
    volumes (a writable one to `write`)."""
    if "\0" in text:
        raise _refuse(field, text, "contains a NUL byte")
    if len(os.fsencode(text)) > MAX_PATH_BYTES:
        raise _refuse(field, text, f"is longer than {MAX_PATH_BYTES} bytes")
    raw = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in raw:
        raise _refuse(field, text, "contains '..'; paths stay inside /work or a volume")
    if not text.startswith("/"):
        base, parts = WORK, raw
    elif raw[:1] == ["work"]:
        base, parts = WORK, raw[1:]
    elif raw[:1] == ["volumes"] and len(raw) >= 2:
        name = raw[1]
        mount = next((v for v in volumes if v.name == name), None)
        if mount is None:
            named = ", ".join(v.name for v in volumes) or "none"
            raise _refuse(field, text, f"is not in a volume of this job's (it has: {named})")
        if write and mount.read_only:
            raise _refuse(field, text, f"is in volume {name!r}, which the job has read-only")
        base, parts = VOLUMES + name, raw[2:]
    else:
        raise _refuse(
            field, text, "is outside the job's /work and volumes; only those can be copied"
        )
    if len(parts) > MAX_DEPTH:
        raise _refuse(field, text, f"is {len(parts)} components deep; at most {MAX_DEPTH}")
    for part in parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise _refuse(field, text, f"has a name longer than {MAX_NAME_BYTES} bytes")
    return JobPath(base, tuple(parts))


def check_name(name: str, field: str = "name") -> str:
    """A single file name (the new name of what is copied in)."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise _refuse(field, name, "is not a file name (no '/', not '.' or '..')")
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        raise _refuse(field, name, f"is longer than {MAX_NAME_BYTES} bytes")
    return name
