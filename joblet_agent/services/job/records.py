"""Job records as the engine keeps them: stored, found by id, id prefix or name, waited on."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable

from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.ports import JobStore

MIN_PREFIX = 4
LIVE = frozenset(state for state in JobState if not state.is_terminal)
# The states in which a job may hold a user of the pool, a network place, a unit: not QUEUED
# (a job gets them when it leaves the queue; one SCHEDULED for later has none yet either).
HOLDING = LIVE - {JobState.QUEUED}
_SHOWN = 10  # candidates an ambiguous reference lists


class JobRecords:
    """The one place jobs' records are read and written; `on_ended` hears every job's end."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.on_ended: list[Callable[[JobRecord], None]] = []
        self._changed: dict[str, asyncio.Event] = {}

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    def current(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise JobletError(ErrorCode.NOT_FOUND, f"job {job_id} does not exist")
        return record

    def list(
        self,
        *,
        states: frozenset[JobState] | None = None,
        owner: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        schedule: str | None = None,
    ) -> builtins.list[JobRecord]:
        return self.store.list(
            states=states, owner=owner, limit=limit, offset=offset, schedule=schedule
        )

    def live(self) -> builtins.list[JobRecord]:
        return self.store.list(states=LIVE)

    def resolve(self, reference: str) -> JobRecord:
        """A job by its full id, its name (`--name`), or a unique prefix of its id (4+
        characters), in that order. Of the jobs with a name, a live one is meant before ended
        ones; several candidates are an error that lists them."""
        key = reference.strip()
        record = self.store.get(key.lower())
        if record:
            return record
        named = [r for r in (self.store.get(i) for i in self.store.find_name(key)) if r]
        live = [r for r in named if r.state in LIVE]
        candidates = live or named
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise JobletError(
                ErrorCode.AMBIGUOUS,
                f"job name {excerpt(key)} is ambiguous; {len(candidates)} "
                f"{'live ' if live else ''}jobs have it: {_listed(candidates)}",
                hint="give the job's id (or a unique prefix of it)",
            )
        prefix = key.lower()
        if len(prefix) < MIN_PREFIX:
            raise JobletError(
                ErrorCode.INVALID,
                f"job: {excerpt(key)} is no job's name, and too short for an id prefix; give "
                f"at least {MIN_PREFIX} characters of an id",
            )
        matches = self.store.find_prefix(prefix)
        if not matches:
            raise JobletError(
                ErrorCode.NOT_FOUND,
                f"no job has the name or an id starting with {excerpt(key)}",
                hint="rnx job list shows the jobs",
            )
        if len(matches) > 1:
            shown = ", ".join(matches[:_SHOWN]) + (", ..." if len(matches) > _SHOWN else "")
            raise JobletError(
                ErrorCode.AMBIGUOUS,
                f"job id {excerpt(prefix)} is ambiguous; it matches: {shown}",
                hint="give more characters of the id",
            )
        return self.current(matches[0])

    def save(self, record: JobRecord) -> None:
        """Store a job's new record; wake whoever waits on it; tell who listens of its end."""
        self.store.put(record)
        if record.state.is_terminal:
            for listener in self.on_ended:
                listener(record)
        event = self._changed.pop(record.id, None)
        if event:
            event.set()

    def delete(self, job_id: str) -> None:
        self.store.delete(job_id)

    async def wait(
        self,
        job_id: str,
        *,
        within: float | None = None,
        until: Callable[[JobRecord], bool] = lambda r: r.state.is_terminal,
    ) -> JobRecord:
        """Returns once `until` holds for the job's record (default: it ended), or TimeoutError
        after `within` seconds."""

        async def waiter() -> JobRecord:
            while True:
                event = self._changed.setdefault(job_id, asyncio.Event())
                record = self.current(job_id)
                if until(record):
                    return record
                await event.wait()

        return await asyncio.wait_for(waiter(), within)


def _listed(records: builtins.list[JobRecord]) -> str:
    shown = [f"{r.id} ({r.state}, {r.created_at:%Y-%m-%d %H:%M})" for r in records[:_SHOWN]]
    return ", ".join(shown) + (", ..." if len(records) > _SHOWN else "")
