"""In-memory stand-ins for PID 1 and the journal, behaving like the real ones in the ways that
matter to the engine: JobRemoved once the job's process exec'd, the exit record written by the
unit's ExecStopPost, then UnitRemoved."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any

from joblet_agent.adapters.systemd_dbus import JobDone, UnitGone
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.units.paths import JobPaths, JobUser
from joblet_agent.units.properties import Property


class FakeSystemd:
    def __init__(self, emit: Callable[[JobDone | UnitGone], None]) -> None:
        self.emit = emit
        self.units: dict[str, dict[str, Any]] = {}
        self.exit_records: dict[str, Path] = {}
        self.started: list[tuple[str, list[Property]]] = []
        self.refuse_next = False

    async def start_transient(self, unit: str, properties: Sequence[Property]) -> None:
        if self.refuse_next:
            self.refuse_next = False
            raise JobletError(ErrorCode.SYSTEMD, "systemd refused: Unexpected message contents")
        self.started.append((unit, list(properties)))
        if not any(p.name == "BindPaths" for p in properties):
            # A oneshot helper (the host side of networks): done as soon as it ran.
            asyncio.get_running_loop().call_soon(self.emit, JobDone(unit, "done"))
            return
        # ExecStopPost writes /run/.joblet/exit inside the job's root: the bound meta directory.
        binds = next(p for p in properties if p.name == "BindPaths").value
        meta = next(source for source, target, *_ in binds if target == "/run/.joblet")
        self.exit_records[unit] = Path(meta, "exit")
        self.units[unit] = {
            "ActiveState": "active",
            "ExecMainStartTimestamp": 1_700_000_000_000_000,
        }
        asyncio.get_running_loop().call_soon(self.emit, JobDone(unit, "done"))

    def end(self, unit: str, *, result: str, code: str, status: str, oom_kills: int = 0) -> None:
        """The job's process ended: ExecStopPost writes the record, then PID 1 unloads the unit."""
        self.units.pop(unit, None)
        self.exit_records[unit].write_text(
            f"SERVICE_RESULT={result}\nEXIT_CODE={code}\nEXIT_STATUS={status}\n"
            f"oom_kill {oom_kills}\n"
        )
        self.emit(UnitGone(unit))

    def reload(self) -> None:
        """`systemctl daemon-reload`: PID 1 sends UnitRemoved for units that keep running."""
        for unit in list(self.units):
            self.emit(UnitGone(unit))

    async def stop(self, unit: str) -> None:
        asyncio.get_running_loop().call_soon(
            lambda: self.end(unit, result="success", code="killed", status="TERM")
        )

    async def unit_properties(self, unit: str) -> dict[str, Any] | None:
        return self.units.get(unit)

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
    ) -> None:
        _make_dirs(paths, upload)

    def remove(self, paths: JobPaths) -> None:
        shutil.rmtree(paths.root, ignore_errors=True)


def _make_dirs(paths: JobPaths, upload: Path | None = None) -> None:
    for directory in (paths.root, paths.meta, paths.work):
        Path(directory).mkdir(parents=True)
    if upload is not None:
        Path(paths.work).rmdir()
        upload.rename(Path(paths.work))
