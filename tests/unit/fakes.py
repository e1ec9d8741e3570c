"""In-memory stand-ins for PID 1 and the journal, behaving like the real ones in the ways that
matter to the engine: JobRemoved once the job's process exec'd; at its end, UnitRemoved, and its
end recorder (OnSuccess=/OnFailure=) writing PID 1's account of the end, then its JobRemoved."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from joblet_agent.adapters.executables import resolve_command
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.user import JobUser
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import JobDone, UnitGone
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
        self.started.append((unit, list(properties)))
        self.aux += [(name, list(props)) for name, props in aux]
        self.units[unit] = {
            "ActiveState": "active",
            "ExecMainStartTimestamp": 1_700_000_000_000_000,
            "RootDirectory": next(p.value for p in properties if p.name == "RootDirectory"),
        }
        for name, props in aux:
            if name.startswith("joblet-end-"):
                output = next(p.value for p in props if p.name == "StandardOutputFileToTruncate")
                self.records[unit] = Path(output)
        asyncio.get_running_loop().call_soon(self.emit, JobDone(unit, "done"))

    async def run(self, unit: str, properties: Sequence[Property], *, within: float) -> str:
        """A oneshot helper started and awaited (the host side of networks, the kernel's log)."""
        if self.refuse_next:
            self.refuse_next = False
            raise JobletError(ErrorCode.SYSTEMD, "systemd refused: Unexpected message contents")
        self.started.append((unit, list(properties)))
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
        return [(u, p["ActiveState"]) for u, p in self.units.items()]

    async def reset_failed(self, unit: str) -> None:
        if self.units.get(unit, {}).get("ActiveState") == "failed":
            del self.units[unit]


class FakeJournal:
    def __init__(self) -> None:
        self.ends: dict[str, dict[str, str]] = {}

    async def unit_end(self, unit: str) -> dict[str, str] | None:
        return self.ends.get(unit)

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
        _make_dirs(paths, upload)

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
        Path(directory).mkdir(parents=True)
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

    def list(
        self,
        *,
        states: frozenset[JobState] | None = None,
        owner: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        found = [
            r
            for r in self.records.values()
            if (states is None or r.state in states) and (owner is None or r.owner == owner)
        ]
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return found[offset : None if limit is None else offset + limit]

    def delete(self, job_id: str) -> None:
        if self.records.pop(job_id, None) is None:
            raise JobletError(ErrorCode.NOT_FOUND, f"job {job_id} does not exist")
