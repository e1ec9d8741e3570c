"""In-memory stand-ins for PID 1 and the journal, behaving like the real ones in the ways that
matter to the engine: JobRemoved once the job's process exec'd; at its end, UnitRemoved, and its
end recorder (OnSuccess=/OnFailure=) writing PID 1's account of the end, then its JobRemoved."""

from __future__ import annotations

import asyncio
import builtins
import io
import shutil
import tarfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from joblet_agent.adapters.executables import resolve_command
from joblet_agent.domain.admission import queue_key
from joblet_agent.domain.archive import Extracted, ExtractLimits
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.network import HostState, Network
from joblet_agent.domain.runtime import RuntimeSpec
from joblet_agent.domain.runtime_binding import InstalledRuntime, Provenance
from joblet_agent.domain.schedule import ScheduleRecord
from joblet_agent.domain.user import JobUser
from joblet_agent.domain.volume import Volume
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import CalendarAnswer, JobDone, UnitGone
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property
from joblet_agent.units.runtime import RuntimeMounts


class FakeSystemd:
    def __init__(self, emit: Callable[[JobDone | UnitGone], None]) -> None:
        self.emit = emit
        self.units: dict[str, dict[str, Any]] = {}
        self.started: list[tuple[str, list[Property]]] = []
        self.aux: list[tuple[str, list[Property]]] = []
        self.limits: dict[str, list[Property]] = {}
        self.records: dict[str, Path] = {}  # job unit -> where its end recorder writes
        self.ran: list[str] = []  # units started by run()
        self.stopped: list[str] = []
        self.run_result = "done"
        self.kernel_log = ""  # what a dmesg helper (units/kernel_log.py) prints
        self.refuse_next = False
        self.can_freeze = True
        self.frozen: set[str] = set()
        # The program exits at once, and PID 1 sends the unit's removal (and runs its end
        # recorder) before the JobRemoved of its start job: their order is not guaranteed.
        self.exits_before_start_is_told = False

    async def start_transient(
        self,
        unit: str,
        properties: Sequence[Property],
        *,
        aux: Sequence[tuple[str, Sequence[Property]]] = (),
    ) -> None:
        if self.refuse_next:
            self.refuse_next = False
            raise JobletError(ErrorCode.SYSTEMD, "systemd refused: Unexpected message contents")
        if unit in self.units:
            raise JobletError(ErrorCode.SYSTEMD, f"Unit {unit} already exists.")
        self.started.append((unit, list(properties)))
        self.aux += [(name, list(props)) for name, props in aux]
        self.units[unit] = {
            "ActiveState": "active",
            "ExecMainStartTimestamp": 1_700_000_000_000_000,
            "RootDirectory": next((p.value for p in properties if p.name == "RootDirectory"), ""),
            **{p.name: p.value for p in properties if p.name == "OnCalendar"},
        }
        for name, props in aux:
            if name.startswith("joblet-end-"):
                output = next(p.value for p in props if p.name == "StandardOutputFileToTruncate")
                self.records[unit] = Path(output)
        if self.exits_before_start_is_told:
            self.exits_before_start_is_told = False

            def exit_first() -> None:
                self.end(unit, result="success", code="exited", status="0")
                self.emit(JobDone(unit, "done"))

            asyncio.get_running_loop().call_soon(exit_first)
            return
        asyncio.get_running_loop().call_soon(self.emit, JobDone(unit, "done"))

    async def run(
        self,
        unit: str,
        properties: Sequence[Property],
        *,
        within: float,
        aux: Sequence[tuple[str, Sequence[Property]]] = (),
    ) -> str:
        """A oneshot helper started and awaited (the host side of networks, the kernel's log)."""
        if self.refuse_next:
            self.refuse_next = False
            raise JobletError(ErrorCode.SYSTEMD, "systemd refused: Unexpected message contents")
        self.started.append((unit, list(properties)))
        self.aux += [(name, list(props)) for name, props in aux]
        self.ran.append(unit)
        output = next((p.value for p in properties if p.name == "StandardOutputFileToTruncate"), "")
        if output:
            Path(output).write_text(self.kernel_log)  # noqa: ASYNC240
        return self.run_result

    async def set_properties(self, unit: str, properties: Sequence[Property]) -> None:
        self.limits[unit] = list(properties)

    def end(self, unit: str, *, result: str, code: str, status: str) -> None:
        """The job's process ended: PID 1 unloads the unit (CollectMode=inactive-or-failed) and
        runs its end recorder, which writes what PID 1 handed it (MONITOR_*)."""
        self.units.pop(unit, None)
        self.emit(UnitGone(unit))
        self.records[unit].write_text(
            f"PATH=/usr/bin\nMONITOR_SERVICE_RESULT={result}\nMONITOR_EXIT_CODE={code}\n"
            f"MONITOR_EXIT_STATUS={status}\nMONITOR_UNIT={unit}\n"
        )
        job_id = unit.removeprefix("joblet-job-").removesuffix(".service")
        kind = "success" if result == "success" else "failure"
        self.emit(JobDone(f"joblet-end-{kind}-{job_id}.service", "done"))

    def reload(self) -> None:
        """`systemctl daemon-reload`: PID 1 sends UnitRemoved for units that keep running."""
        for unit in list(self.units):
            self.emit(UnitGone(unit))

    async def stop(self, unit: str, *, within: float | None = None) -> None:
        self.stopped.append(unit)
        if unit.endswith(".timer"):
            self.units.pop(unit, None)
            return
        if unit in self.units:
            asyncio.get_running_loop().call_soon(
                lambda: self.end(unit, result="success", code="killed", status="TERM")
            )

    async def unit_properties(self, unit: str) -> dict[str, Any] | None:
        props = self.units.get(unit)
        return dict(props) if props is not None else None

    async def active_state(self, unit: str) -> str | None:
        props = self.units.get(unit)
        return str(props["ActiveState"]) if props else None

    async def list_units(self, pattern: str) -> list[tuple[str, str]]:
        return [(u, p["ActiveState"]) for u, p in self.units.items() if fnmatch(u, pattern)]

    async def timer_properties(self, unit: str) -> dict[str, Any] | None:
        return await self.unit_properties(unit)

    def fire(self, timer: str, at_usec: int = 1) -> None:
        """A timer elapses: PID 1 runs its service, whose start job ends (JobRemoved)."""
        assert timer in self.units, f"no timer {timer}"
        self.units[timer]["LastTriggerUSec"] = at_usec
        self.emit(JobDone(timer.removesuffix(".timer") + ".service", "done"))

    def lose_transient_units(self) -> None:
        """A reboot (or PID 1's end): every transient unit is gone."""
        self.units.clear()

    async def freeze(self, unit: str) -> None:
        if not self.can_freeze:
            raise JobletError(ErrorCode.UNSUPPORTED, f"{unit} does not support freezing")
        self.frozen.add(unit)

    async def thaw(self, unit: str) -> None:
        self.frozen.discard(unit)

    async def reset_failed(self, unit: str) -> None:
        if self.units.get(unit, {}).get("ActiveState") == "failed":
            del self.units[unit]


class FakeJournal:
    def __init__(self) -> None:
        self.ends: dict[str, dict[str, str]] = {}
        self.starts: dict[str, datetime] = {}

    async def unit_end(self, unit: str) -> dict[str, str] | None:
        return self.ends.get(unit)

    async def unit_started(self, unit: str) -> datetime | None:
        return self.starts.get(unit)

    async def drained(self, unit: str) -> None:
        return None

    async def last_cursor(self, unit: str) -> str | None:
        return None

    async def entries(
        self, unit: str, *, after_cursor: str | None, follow: bool
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        batches: list[list[dict[str, Any]]] = []
        for batch in batches:
            yield batch


class FakeJobFiles:
    """Directories as the real adapter makes them, minus the image and chown (no root here)."""

    def stage(self, paths: JobPaths, *, upload: Path | None, secrets: str | None) -> None:
        Path(paths.root).mkdir(parents=True)
        if upload is not None:
            upload.rename(Path(paths.upload))
        if secrets is not None:
            self.write_secrets(paths, secrets)

    async def create(
        self,
        paths: JobPaths,
        user: JobUser,
        *,
        workdir: str | None,
        work_bytes: int,
        upload: Path | None = None,
    ) -> None:
        _make_dirs(paths, upload)

    async def finish(self, paths: JobPaths, *, flush: bool) -> None:
        """Nothing to move or flush without an image: the tree stays as the job's /work."""

    def remove(self, paths: JobPaths) -> None:
        shutil.rmtree(paths.root, ignore_errors=True)

    def find_program(
        self, command: str, path_env: str | None, paths: JobPaths, runtime: RuntimeMounts | None
    ) -> str:
        return resolve_command(command, path_env, paths, runtime)

    def write_secrets(self, paths: JobPaths, text: str) -> None:
        Path(paths.secrets).write_text(text)

    def forget_secrets(self, paths: JobPaths) -> None:
        Path(paths.secrets).unlink(missing_ok=True)

    def holding_secrets(self, jobs_dir: PurePosixPath) -> list[str]:
        return sorted(p.parent.name for p in Path(jobs_dir).glob("*/secret.env"))

    def read_text(self, path: PurePosixPath) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    def take_text(self, path: PurePosixPath) -> str | None:
        try:
            return self.read_text(path)
        finally:
            Path(path).unlink(missing_ok=True)


def _make_dirs(paths: JobPaths, upload: Path | None = None) -> None:
    for directory in (paths.root, paths.work):
        Path(directory).mkdir(parents=True, exist_ok=directory == paths.root)
    if upload is not None:
        Path(paths.work).rmdir()
        upload.rename(Path(paths.work))


class FakeClock:
    """The Clock port, at a time the test sets (and moves)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.moment = now or datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


class FakeCalendar:
    """The Calendar port: answers set by the test; anything else is systemd's refusal."""

    def __init__(self) -> None:
        self.elapses: dict[str, list[datetime]] = {}  # expression -> its elapses, in order
        self.local: dict[str, datetime] = {}  # local time text -> the instant

    async def next_elapse(
        self, expression: str, *, after: datetime | None = None
    ) -> CalendarAnswer:
        if expression not in self.elapses:
            raise JobletError(
                ErrorCode.INVALID,
                f"Failed to parse calendar specification '{expression}': Invalid argument",
            )
        later = [t for t in self.elapses[expression] if after is None or t > after]
        return CalendarAnswer(expression, later[0] if later else None)

    async def timestamp(self, text: str) -> datetime:
        if text not in self.local:
            raise JobletError(ErrorCode.INVALID, f'Failed to parse "{text}": Invalid argument')
        return self.local[text]


class FakeGroups:
    """The GroupRecords port: the groups published, by name."""

    def __init__(self) -> None:
        self.groups: dict[str, int] = {}

    def publish_group(self, name: str, gid: int) -> None:
        self.groups[name] = gid

    def withdraw_group(self, name: str, gid: int) -> None:
        self.groups.pop(name, None)


class FakeJobStore:
    """The JobStore port in memory (the real one is SQLite: tests/unit/test_job_store.py)."""

    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}

    def put(self, record: JobRecord) -> None:
        self.records[record.id] = record

    def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)

    def find_prefix(self, prefix: str) -> list[str]:
        return sorted(i for i in self.records if i.startswith(prefix))[:11]

    def find_name(self, name: str) -> list[str]:
        named = [r for r in self.records.values() if r.spec.name == name]
        return [r.id for r in sorted(named, key=lambda r: r.created_at, reverse=True)][:11]

    def with_files(self, states: frozenset[JobState]) -> list[JobRecord]:
        return [
            r for r in self.records.values() if r.state in states and r.files_reclaimed_at is None
        ]

    def list(
        self,
        *,
        states: frozenset[JobState] | None = None,
        owner: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        schedule: str | None = None,
    ) -> list[JobRecord]:
        found = [
            r
            for r in self.records.values()
            if (states is None or r.state in states)
            and (owner is None or r.owner == owner)
            and (schedule is None or r.schedule == schedule)
        ]
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return found[offset : None if limit is None else offset + limit]

    def count(self, *, states: frozenset[JobState], owner: str | None = None) -> int:
        return len(self.list(states=states, owner=owner))

    def queued(self, *, step_sec: float, limit: int, offset: int = 0) -> builtins.list[JobRecord]:
        order = self.queue_order(step_sec=step_sec)[offset : offset + limit]
        return [self.records[job_id] for job_id in order]

    def queue_order(self, *, step_sec: float) -> builtins.list[str]:
        """As the SQLite store: by queue_key, then by insertion (dicts keep it)."""
        inserted = {job_id: index for index, job_id in enumerate(self.records)}
        queued = [r for r in self.records.values() if r.state is JobState.QUEUED]
        queued.sort(
            key=lambda r: (
                queue_key(r.queued_at or r.created_at, r.priority, step_sec),
                inserted[r.id],
            )
        )
        return [r.id for r in queued]

    def delete(self, job_id: str) -> None:
        if self.records.pop(job_id, None) is None:
            raise JobletError(ErrorCode.NOT_FOUND, f"job {job_id} does not exist")


class FakeScheduleStore:
    """The ScheduleStore port in memory."""

    def __init__(self) -> None:
        self.records: dict[str, ScheduleRecord] = {}

    def put(self, record: ScheduleRecord) -> None:
        named = self.find_name(record.name) if record.name else None
        if named not in (None, record.id):
            raise JobletError(ErrorCode.CONFLICT, f"a schedule named {record.name!r} exists")
        self.records[record.id] = record

    def get(self, schedule_id: str) -> ScheduleRecord | None:
        return self.records.get(schedule_id)

    def find_name(self, name: str) -> str | None:
        return next((r.id for r in self.records.values() if r.name == name), None)

    def find_prefix(self, prefix: str) -> builtins.list[str]:
        return sorted(i for i in self.records if i.startswith(prefix))[:11]

    def list(self, *, owner: str | None = None) -> builtins.list[ScheduleRecord]:
        found = [r for r in self.records.values() if owner is None or r.owner == owner]
        return sorted(found, key=lambda r: (r.created_at, r.id))

    def delete(self, schedule_id: str) -> None:
        if self.records.pop(schedule_id, None) is None:
            raise JobletError(ErrorCode.NOT_FOUND, f"schedule {schedule_id} does not exist")


class FakeVolumeStorage:
    """The VolumeStorage port in memory: records kept, images and mounts only named."""

    def __init__(self, root: Path = Path("/volumes-of-a-test")) -> None:
        self.root = root
        self.volumes: dict[str, Volume] = {}
        self.prepared: list[tuple[str, int]] = []

    def load_all(self) -> list[Volume]:
        return list(self.volumes.values())

    async def create(self, volume: Volume, gid: int) -> None:
        self.volumes[volume.name] = volume

    def save(self, volume: Volume) -> None:
        assert volume.name in self.volumes
        self.volumes[volume.name] = volume

    def remove(self, name: str) -> None:
        self.volumes.pop(name, None)

    def image(self, name: str) -> Path:
        return self.root / name / "volume.img"

    def mount_point(self, name: str) -> Path:
        return self.root / name / "data"

    def usage(self, name: str) -> int | None:
        return 0 if name in self.volumes else None

    def prepare_root(self, name: str, gid: int) -> None:
        self.prepared.append((name, gid))


class FakeUploadStaging:
    """The UploadStaging port in memory: a tar stream's members counted, not written."""

    def __init__(self, root: Path = Path("/uploads-of-a-test")) -> None:
        self.root = root
        self.received: dict[str, bytes] = {}
        self.discarded: list[str] = []

    def reset(self) -> None:
        self.received.clear()

    def tree(self, upload_id: str) -> Path:
        return self.root / upload_id / "tree"

    async def extract(
        self,
        upload_id: str,
        stream: AsyncIterator[bytes],
        limits: ExtractLimits,
        *,
        slot: AbstractAsyncContextManager[None],
    ) -> Extracted:
        async with slot:
            data = b"".join([chunk async for chunk in stream])
        self.received[upload_id] = data
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            members = archive.getmembers()
        return Extracted(
            files=sum(m.isreg() for m in members),
            directories=sum(m.isdir() for m in members),
            links=sum(m.issym() or m.islnk() for m in members),
            bytes=sum(m.size for m in members if m.isreg()),
        )

    def discard(self, upload_id: str) -> None:
        self.received.pop(upload_id, None)
        self.discarded.append(upload_id)


class FakeNetworkFiles:
    """The NetworkFiles port in memory: each file's text by its path."""

    def __init__(self, root: Path = Path("/networks-of-a-test"), resolv_conf: str = "") -> None:
        self.root = root
        self.resolv_conf = resolv_conf
        self.files: dict[Path, str] = {}
        self.report: dict[str, Any] | None = None

    @property
    def forwarding_marker(self) -> Path:
        return self.root / ".forwarding"

    def directory(self, network: Network) -> PurePosixPath:
        return PurePosixPath(self.root / network.name)

    def host_resolv_conf(self) -> str:
        return self.resolv_conf

    def write_network(self, network: Network, resolv_conf: str) -> None:
        self.files[self.root / network.name / "resolv.conf"] = resolv_conf

    def write_hosts(self, network: Network, text: str) -> None:
        if self.root / network.name / "resolv.conf" in self.files:
            self.files[self.root / network.name / "hosts"] = text

    def remove_network(self, name: str) -> None:
        for path in [p for p in self.files if p.parent == self.root / name]:
            del self.files[path]

    def write_job_files(self, paths: JobPaths, files: dict[str, str]) -> None:
        for name, text in files.items():
            self.files[Path(paths.network) / name] = text

    def write_state(self, state: HostState) -> Path:
        path = self.root / ".host-state.json"
        self.files[path] = state.to_json()
        return path

    def has_state(self) -> bool:
        return self.root / ".host-state.json" in self.files

    def read_report(self) -> dict[str, Any] | None:
        """What a test says the host side found (its `report`); None: nothing yet."""
        return self.report


class FakeNetworkStore:
    """The NetworkStore port in memory."""

    def __init__(self) -> None:
        self.networks: dict[str, Network] = {}
        self.cursors: dict[str, int] = {}

    def add(self, network: Network) -> None:
        if network.name in self.networks:
            raise JobletError(ErrorCode.CONFLICT, f"network {network.name!r} exists")
        self.networks[network.name] = network

    def save(self, network: Network) -> None:
        assert network.name in self.networks
        self.networks[network.name] = network

    def get(self, name: str) -> Network | None:
        return self.networks.get(name)

    def list(self) -> list[Network]:
        return [self.networks[name] for name in sorted(self.networks)]

    def remove(self, name: str) -> None:
        self.networks.pop(name, None)
        self.cursors.pop(name, None)

    def cursor(self, name: str) -> int:
        return self.cursors.get(name, 0)

    def set_cursor(self, name: str, cursor: int) -> None:
        self.cursors[name] = cursor


def fake_resolver(
    answers: dict[str, tuple[str, ...]],
) -> Callable[[str], Awaitable[tuple[str, ...]]]:
    """A Resolver port answering from a table; an unknown name is the resolver's own error."""

    async def resolve(host: str) -> tuple[str, ...]:
        if host not in answers:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return answers[host]

    return resolve


class FakeRuntimeStore:
    """The RuntimeStore port in memory: runtimes given by the test; installs refused."""

    def __init__(self, runtimes: Sequence[InstalledRuntime] = (), arch: str = "amd64") -> None:
        self.arch = arch
        self.runtimes = {r.name: r for r in runtimes}

    def installed(self) -> list[InstalledRuntime]:
        return list(self.runtimes.values())

    def find(self, name: str) -> InstalledRuntime | None:
        return self.runtimes.get(name)

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
        raise JobletError(ErrorCode.UNSUPPORTED, "the fake store installs nothing")

    def remove(self, runtime: InstalledRuntime) -> None:
        self.runtimes.pop(runtime.name, None)


# Every port has its fake (mypy checks here that each fits its Protocol).
if TYPE_CHECKING:
    from joblet_agent import ports
    from tests.unit.fake_init import (
        FakeArchive,
        FakeConnection,
        FakeExecJournal,
        FakeInit,
        FakeJobChannels,
        FakeStagedFiles,
    )

    _checks: tuple[
        ports.SystemdManager,
        ports.JobStore,
        ports.Journal,
        ports.JobFiles,
        ports.Clock,
        ports.RuntimeStore,
        ports.RuntimeCatalog,
        ports.VolumeStorage,
        ports.GroupRecords,
        ports.UploadStaging,
        ports.NetworkFiles,
        ports.NetworkStore,
        ports.Resolver,
        ports.Calendar,
        ports.ScheduleStore,
        ports.JobChannels,
        ports.ChannelConnection,
        ports.ExecJournal,
        ports.StagedFiles,
        ports.ArchiveWriter,
    ] = (
        FakeSystemd(lambda event: None),
        FakeJobStore(),
        FakeJournal(),
        FakeJobFiles(),
        FakeClock(),
        FakeRuntimeStore(),
        FakeRuntimeStore(),
        FakeVolumeStorage(),
        FakeGroups(),
        FakeUploadStaging(),
        FakeNetworkFiles(),
        FakeNetworkStore(),
        fake_resolver({}),
        FakeCalendar(),
        FakeScheduleStore(),
        FakeJobChannels(),
        FakeConnection(FakeInit()),
        FakeExecJournal(),
        FakeStagedFiles(),
        FakeArchive(),
    )
