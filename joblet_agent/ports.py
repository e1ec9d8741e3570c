"""The boundaries the services depend on. Real adapters and test fakes both satisfy these."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.runtime_binding import InstalledRuntime
from joblet_agent.domain.user import JobUser
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property


@dataclass(frozen=True, slots=True)
class UnitGone:
    """PID 1 unloaded the unit (UnitRemoved): with CollectMode=inactive-or-failed, it ended."""

    unit: str


@dataclass(frozen=True, slots=True)
class JobDone:
    """A systemd job (start/stop request) finished: JobRemoved."""

    unit: str
    result: str  # done, failed, canceled, timeout, dependency, skipped


class SystemdManager(Protocol):
    async def start_transient(
        self,
        unit: str,
        properties: Sequence[Property],
        *,
        aux: Sequence[tuple[str, Sequence[Property]]] = (),
    ) -> None: ...
    async def run(self, unit: str, properties: Sequence[Property], *, within: float) -> str:
        """Start a transient unit and return its start job's result ("done", "failed", ...)."""
        ...

    async def set_properties(self, unit: str, properties: Sequence[Property]) -> None: ...
    async def stop(self, unit: str, *, within: float | None = None) -> None:
        """StopUnit; with `within` (seconds), return only once the unit stopped."""
        ...

    async def unit_properties(self, unit: str) -> dict[str, Any] | None: ...
    async def active_state(self, unit: str) -> str | None: ...
    async def list_units(self, pattern: str) -> list[tuple[str, str]]: ...
    async def reset_failed(self, unit: str) -> None: ...


class JobStore(Protocol):
    def put(self, record: JobRecord) -> None: ...
    def get(self, job_id: str) -> JobRecord | None: ...
    def find_prefix(self, prefix: str) -> list[str]: ...
    def list(
        self,
        *,
        states: frozenset[JobState] | None = None,
        owner: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobRecord]: ...
    def delete(self, job_id: str) -> None: ...


class Journal(Protocol):
    async def unit_end(self, unit: str) -> dict[str, str] | None:
        """PID 1's journal fields about how the unit ended (EXIT_CODE, EXIT_STATUS, UNIT_RESULT)."""
        ...

    async def drained(self, unit: str) -> None: ...
    async def last_cursor(self, unit: str) -> str | None: ...

    def entries(
        self, unit: str, *, after_cursor: str | None, follow: bool
    ) -> AsyncGenerator[list[dict[str, Any]], None]: ...


class JobFiles(Protocol):
    async def create(
        self,
        paths: JobPaths,
        user: JobUser,
        *,
        workdir: str | None,
        work_bytes: int,
        upload: Path | None = None,
        flush: bool = False,
    ) -> None:
        """The job's directories and its /work filesystem image, holding the upload's tree
        (moved, not copied) and the working directory, all owned by the job's user. `flush`:
        the image is on disk before this returns (the job's IO limits must not throttle PID 1
        writing it back while it holds the lock of every loop device's set-up)."""
        ...

    def remove(self, paths: JobPaths) -> None: ...

    def read_text(self, path: PurePosixPath) -> str | None:
        """A root-only file a helper unit wrote into a job's directory, or None if there is none."""
        ...

    def take_text(self, path: PurePosixPath) -> str | None:
        """The same, then removed."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class RuntimeCatalog(Protocol):
    """The installed runtimes (adapters/runtime_store.py)."""

    arch: str  # Debian's name for this host's architecture

    def installed(self) -> list[InstalledRuntime]: ...
