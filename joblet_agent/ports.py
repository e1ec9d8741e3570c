"""The boundaries the services depend on. Real adapters and test fakes both satisfy these."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from joblet_agent.domain.archive import Extracted, ExtractLimits
from joblet_agent.domain.exec_frames import FileEntry
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.job_file import StagedEntry
from joblet_agent.domain.network import HostState, Network
from joblet_agent.domain.runtime import RuntimeSpec
from joblet_agent.domain.runtime_binding import InstalledRuntime, Provenance
from joblet_agent.domain.schedule import ScheduleRecord
from joblet_agent.domain.user import JobUser
from joblet_agent.domain.volume import Volume
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property
from joblet_agent.units.runtime import RuntimeMounts


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
    async def run(
        self,
        unit: str,
        properties: Sequence[Property],
        *,
        within: float,
        aux: Sequence[tuple[str, Sequence[Property]]] = (),
    ) -> str:
        """Start a transient unit (with `aux` units made in the same call) and return its start
        job's result ("done", "failed", ...)."""
        ...

    async def set_properties(self, unit: str, properties: Sequence[Property]) -> None: ...
    async def stop(self, unit: str, *, within: float | None = None) -> None:
        """StopUnit; with `within` (seconds), return only once the unit stopped."""
        ...

    async def unit_properties(self, unit: str) -> dict[str, Any] | None: ...
    async def active_state(self, unit: str) -> str | None: ...
    async def list_units(self, pattern: str) -> list[tuple[str, str]]: ...
    async def reset_failed(self, unit: str) -> None: ...
    async def timer_properties(self, unit: str) -> dict[str, Any] | None:
        """A timer's properties (LastTriggerUSec, NextElapseUSecRealtime, ActiveState, ...),
        or None if it is not loaded."""
        ...

    async def freeze(self, unit: str) -> None:
        """FreezeUnit: every process of the unit stopped by the cgroup freezer (v2 only)."""
        ...

    async def thaw(self, unit: str) -> None: ...


class JobStore(Protocol):
    def put(self, record: JobRecord) -> None: ...
    def get(self, job_id: str) -> JobRecord | None: ...
    def find_prefix(self, prefix: str) -> list[str]: ...
    def find_name(self, name: str) -> list[str]: ...
    def with_files(self, states: frozenset[JobState]) -> list[JobRecord]:
        """The jobs in `states` whose files were not reclaimed yet."""
        ...

    def list(
        self,
        *,
        states: frozenset[JobState] | None = None,
        owner: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        schedule: str | None = None,
    ) -> list[JobRecord]: ...
    def delete(self, job_id: str) -> None: ...
    def count(self, *, states: frozenset[JobState], owner: str | None = None) -> int: ...
    def queued(self, *, step_sec: float, limit: int, offset: int = 0) -> builtins.list[JobRecord]:
        """QUEUED jobs in the queue's order (domain/admission.py queue_key)."""
        ...

    def queue_order(self, *, step_sec: float) -> builtins.list[str]:
        """The ids of the QUEUED jobs, in the queue's order."""
        ...


class ScheduleStore(Protocol):
    def put(self, record: ScheduleRecord) -> None:
        """Store it; a name another schedule has is a CONFLICT."""
        ...

    def get(self, schedule_id: str) -> ScheduleRecord | None: ...
    def find_name(self, name: str) -> str | None: ...
    def find_prefix(self, prefix: str) -> list[str]: ...
    def list(self, *, owner: str | None = None) -> list[ScheduleRecord]: ...
    def delete(self, schedule_id: str) -> None: ...


class Journal(Protocol):
    async def unit_end(self, unit: str) -> dict[str, str] | None:
        """PID 1's journal fields about how the unit ended (EXIT_CODE, EXIT_STATUS, UNIT_RESULT)."""
        ...

    async def unit_started(self, unit: str) -> datetime | None:
        """When PID 1 logged the unit's start as done ("Started ..."), if it did."""
        ...

    async def drained(self, unit: str) -> None: ...
    async def last_cursor(self, unit: str) -> str | None: ...

    def entries(
        self, unit: str, *, after_cursor: str | None, follow: bool
    ) -> AsyncGenerator[list[dict[str, Any]], None]: ...


class JobFiles(Protocol):
    def stage(self, paths: JobPaths, *, upload: Path | None, secrets: str | None) -> None:
        """At submit, what waits with the job until it starts, in its directory (created
        root-only): its upload's tree (moved, not copied) and its secret environment (a file
        in systemd's EnvironmentFile syntax)."""
        ...

    async def create(
        self,
        paths: JobPaths,
        user: JobUser,
        *,
        workdir: str | None,
        work_bytes: int,
        upload: Path | None = None,
    ) -> None:
        """The job's directories and its /work filesystem image, holding the working directory
        (owned by the job's user). With an upload, its tree (moved, not copied) waits beside an
        empty image for the upload's helper unit to move it in (units/upload.py)."""
        ...

    async def finish(self, paths: JobPaths, *, flush: bool) -> None:
        """What is left of /work's staging tree goes. `flush`: the image is on disk before this
        returns (the job's IO limits must not throttle PID 1 writing it back while it holds the
        lock of every loop device's set-up)."""
        ...

    def remove(self, paths: JobPaths) -> None: ...

    def find_program(
        self, command: str, path_env: str | None, paths: JobPaths, runtime: RuntimeMounts | None
    ) -> str:
        """The absolute path, as the job will see it in its root, of the program to exec (a
        typo is a clear error before any unit exists)."""
        ...

    def write_secrets(self, paths: JobPaths, text: str) -> None:
        """The job's secret environment, root-only, for PID 1 to read at exec time."""
        ...

    def forget_secrets(self, paths: JobPaths) -> None: ...

    def holding_secrets(self, jobs_dir: PurePosixPath) -> list[str]:
        """The ids of the job directories under `jobs_dir` that hold secret values."""
        ...

    def read_text(self, path: PurePosixPath) -> str | None:
        """A root-only file a helper unit wrote into a job's directory, or None if there is none."""
        ...

    def take_text(self, path: PurePosixPath) -> str | None:
        """The same, then removed."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class CalendarAnswer:
    """systemd's reading of a calendar expression: its normalized form, its next elapse."""

    normalized: str
    next_elapse: datetime | None  # None: it never elapses again


class Calendar(Protocol):
    """systemd's own reading of times (adapters/calendar.py): never a parser of Joblet's."""

    async def next_elapse(
        self, expression: str, *, after: datetime | None = None
    ) -> CalendarAnswer:
        """The expression's next elapse after `after` (default: now); a refusal is an
        INVALID JobletError with systemd's reason."""
        ...

    async def timestamp(self, text: str) -> datetime:
        """A date and time in the host's time zone, as systemd reads it."""
        ...


class RuntimeCatalog(Protocol):
    """The installed runtimes (adapters/runtime_store.py)."""

    arch: str  # Debian's name for this host's architecture

    def installed(self) -> list[InstalledRuntime]: ...


class RuntimeStore(RuntimeCatalog, Protocol):
    """Installing and removing runtimes too (adapters/runtime_store.py)."""

    def find(self, name: str) -> InstalledRuntime | None: ...

    async def install(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int,
        sha256: str,
        approve: Callable[[RuntimeSpec], None],
        provenance: Provenance | None = None,
    ) -> InstalledRuntime:
        """`approve` sees the unpacked runtime.yml before anything is moved into place; it
        raises to refuse."""
        ...

    def remove(self, runtime: InstalledRuntime) -> None: ...


class VolumeStorage(Protocol):
    """Volumes' records, images and mounted roots on disk (adapters/volume_files.py)."""

    def load_all(self) -> list[Volume]: ...
    async def create(self, volume: Volume, gid: int) -> None: ...
    def save(self, volume: Volume) -> None:
        """Replace the record of a volume that exists (its shares changed)."""
        ...

    def remove(self, name: str) -> None: ...
    def image(self, name: str) -> Path: ...
    def mount_point(self, name: str) -> Path: ...
    def usage(self, name: str) -> int | None: ...
    def prepare_root(self, name: str, gid: int) -> None:
        """Give a freshly mounted volume's root to its group, with a default ACL."""
        ...


class NetworkFiles(Protocol):
    """Networks' files on the host (adapters/network_files.py)."""

    @property
    def forwarding_marker(self) -> Path:
        """Exists while IP forwarding is on because Joblet turned it on."""
        ...

    def directory(self, network: Network) -> PurePosixPath: ...
    def host_resolv_conf(self) -> str: ...
    def write_network(self, network: Network, resolv_conf: str) -> None: ...
    def write_hosts(self, network: Network, text: str) -> None: ...
    def remove_network(self, name: str) -> None: ...
    def write_job_files(self, paths: JobPaths, files: dict[str, str]) -> None: ...
    def write_state(self, state: HostState) -> Path: ...
    def has_state(self) -> bool: ...
    def read_report(self) -> dict[str, Any] | None:
        """What the host side's last apply found: `conflicts` (networks it did not make, each
        with the host's address or route it overlaps) and `host` (the host's own prefixes)."""
        ...


class GroupRecords(Protocol):
    """Groups PID 1 resolves for jobs (a volume's), as userdb records (adapters/userdb.py)."""

    def publish_group(self, name: str, gid: int) -> None: ...
    def withdraw_group(self, name: str, gid: int) -> None: ...


class UploadStaging(Protocol):
    """Where uploads are extracted until a job takes them (adapters/upload_staging.py)."""

    def reset(self) -> None:
        """At start: no upload survives the agent; never fails the start."""
        ...

    def tree(self, upload_id: str) -> Path: ...

    async def extract(
        self,
        upload_id: str,
        stream: AsyncIterator[bytes],
        limits: ExtractLimits,
        *,
        slot: AbstractAsyncContextManager[None],
    ) -> Extracted:
        """Extract the tar stream into the upload's tree, on an extraction thread taken once
        the first bytes came and within `slot` (its caller's share of the threads)."""
        ...

    def discard(self, upload_id: str) -> None: ...


class NetworkStore(Protocol):
    def add(self, network: Network) -> None: ...
    def save(self, network: Network) -> None:
        """Replace the record of a network that exists (its shares changed)."""
        ...

    def get(self, name: str) -> Network | None: ...
    def list(self) -> list[Network]: ...
    def remove(self, name: str) -> None: ...
    def cursor(self, name: str) -> int: ...
    def set_cursor(self, name: str, cursor: int) -> None: ...


# A host name to its IPv4 addresses (egress rules by name).
Resolver = Callable[[str], Awaitable[tuple[str, ...]]]


class ChannelConnection(Protocol):
    """One connection to a job's init (adapters/job_channel.py): whole frames out, one frame in
    at a time, each bounded before it is read (domain/exec_frames.py)."""

    async def send(self, data: bytes) -> None: ...
    async def receive(self) -> tuple[bytes, bytes]:
        """(type, payload) of init's next frame; ChannelClosed at its end, FrameError for
        anything that is not a frame."""
        ...

    def close(self) -> None: ...


class JobChannels(Protocol):
    """Connections to jobs' inits, through the sockets PID 1 listens on for them."""

    async def connect(self, socket: PurePosixPath) -> ChannelConnection:
        """ChannelClosed when nothing listens there (the job ended, or predates channels)."""
        ...


class ExecJournal(Protocol):
    """Exec output into the journal, under the job's unit (adapters/exec_journal.py)."""

    def line(self, unit: str, job_id: str, exec_id: str, stream: str, text: bytes) -> None: ...


class StagedFiles(Protocol):
    """An upload's staged tree, read to copy it into a running job (adapters/staged_files.py)."""

    def entries(self, tree: Path) -> list[StagedEntry]:
        """Every entry below `tree`, each directory before what it holds; links never followed."""
        ...

    def chunks(self, path: Path) -> AsyncIterator[bytes]: ...


class ArchiveWriter(Protocol):
    """The tar stream of a directory copied out of a job (adapters/archive_out.py)."""

    def header(self, name: str, entry: FileEntry) -> bytes: ...
    def padding(self, size: int) -> bytes: ...
    def end(self) -> bytes: ...
