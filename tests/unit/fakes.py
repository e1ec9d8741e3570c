"""In-memory stand-ins for PID 1 and the journal, behaving like the real ones in the ways that
matter to the engine (including systemd's stale first PropertiesChanged of a new unit)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from joblet_agent.adapters.systemd_dbus import JobDone, UnitEvent
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.units.properties import Property


class FakeSystemd:
    def __init__(self, emit: Callable[[UnitEvent | JobDone], None]) -> None:
        self.emit = emit
        self.units: dict[str, dict[str, Any]] = {}
        self.started: list[tuple[str, list[Property]]] = []
        self.refuse_next = False

    async def start_transient(self, unit: str, properties: Sequence[Property]) -> None:
        if self.refuse_next:
            self.refuse_next = False
            raise JobletError(ErrorCode.SYSTEMD, "systemd refused: Unexpected message contents")
        self.started.append((unit, list(properties)))
        self.units[unit] = {
            "ActiveState": "active",
            "ExecMainStartTimestamp": 1_700_000_000_000_000,
        }
        loop = asyncio.get_running_loop()
        # Like PID 1: the new unit's first change signal carries stale "inactive"/"success".
        loop.call_soon(self.emit, UnitEvent(unit, {"Result": "success", "ActiveState": "inactive"}))
        loop.call_soon(
            self.emit,
            UnitEvent(
                unit, {"ActiveState": "active", "ExecMainStartTimestamp": 1_700_000_000_000_000}
            ),
        )
        # PID 1 flushes a unit's pending change signal before its job's JobRemoved.
        loop.call_soon(self.emit, JobDone(unit, "done"))

    def end(self, unit: str, *, result: str, code: int, status: int) -> None:
        """The job's main process ended: Service properties first, then ActiveState, then gone."""
        self.units.pop(unit, None)
        self.emit(
            UnitEvent(unit, {"Result": result, "ExecMainCode": code, "ExecMainStatus": status})
        )
        self.emit(UnitEvent(unit, {"ActiveState": "failed" if result != "success" else "inactive"}))
        self.emit(UnitEvent(unit, {}, removed=True))

    async def stop(self, unit: str) -> None:
        asyncio.get_running_loop().call_soon(
            lambda: self.end(unit, result="success", code=2, status=15)
        )

    async def unit_properties(self, unit: str) -> dict[str, Any] | None:
        return self.units.get(unit)

    async def list_units(self, pattern: str) -> list[tuple[str, str]]:
        return [(u, p["ActiveState"]) for u, p in self.units.items()]


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
    ) -> AsyncGenerator[dict[str, Any], None]:
        entries: list[dict[str, Any]] = []
        for entry in entries:
            yield entry
