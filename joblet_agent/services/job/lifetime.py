"""How long a running job lives: `rnx job extend` (its deadline moved), `--idle-timeout` (ended
when nothing touched it), `rnx job pause|resume` (frozen and thawed by PID 1).

The deadline is PID 1's (units/deadline.py): it holds whether or not an agent runs. The idle
clock is the agent's: execs, attaches and file calls touch a job (an exec or attach in
progress keeps touching it); at its end the agent starts the job's idle marker, which PID 1
turns into the job's stop (TIMEOUT, reason "idle"). After an agent restart the idle clock of
each live job starts again from then. Paused time counts on both clocks: a frozen job is still
running to systemd (its timer runs on, and stopping it thaws it first).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import Clock, SystemdManager
from joblet_agent.services.job.records import JobRecords
from joblet_agent.units import deadline

logger = logging.getLogger(__name__)

MAX_EXTEND_SEC = 366 * 24 * 3600.0


class JobLifetime:
    def __init__(self, config: AgentConfig, records: JobRecords, clock: Clock) -> None:
        self.config = config
        self.records = records
        self.clock = clock
        self.systemd: SystemdManager | None = None
        # Whether an exec or attach is in progress in a job (ExecService.busy, set by wiring).
        self.busy: Callable[[str], bool] = lambda job_id: False
        self._idle: dict[str, asyncio.TimerHandle] = {}
        self._ending: set[asyncio.Task[None]] = set()

    @property
    def pid1(self) -> SystemdManager:
        assert self.systemd is not None, "attach() a systemd manager first"
        return self.systemd

    # -- the deadline ---------------------------------------------------------------------

    async def extend(self, record: JobRecord, seconds: float) -> JobRecord:
        """The job may run `seconds` more from now (whatever its timeout was, or none)."""
        if record.state not in (JobState.RUNNING, JobState.PAUSED):
            raise JobletError(
                ErrorCode.CONFLICT,
                f"cannot extend job {record.id}: it is {record.state}; only a RUNNING or "
                "PAUSED job can be",
            )
        if not 1 <= seconds <= MAX_EXTEND_SEC:
            raise JobletError(
                ErrorCode.INVALID,
                f"timeout_sec: {seconds:g} is not valid; from 1 s to {MAX_EXTEND_SEC:g} s",
            )
        started = record.started_at or record.created_at
        total = (self.clock.now() - started).total_seconds() + seconds
        most = self.config.jobs.max_timeout_sec
        if most is not None and total > most:
            raise JobletError(
                ErrorCode.INVALID,
                f"timeout_sec: {seconds:g} more would make job {record.id} run {total:.0f} s; "
                f"jobs.max_timeout is {most:g} s",
            )
        units = await self.pid1.list_units(deadline.pattern(record.id))
        generations = [deadline.generation_of(unit, record.id) for unit, _ in units]
        generation = max((g for g in generations if g is not None), default=-1) + 1
        timer, timer_props = deadline.deadline_units(
            record.id, generation, seconds, self.config.slice
        )[0]
        await self.pid1.start_transient(
            timer,
            timer_props,
            aux=deadline.deadline_units(record.id, generation, seconds, self.config.slice)[1:],
        )
        for unit, _ in units:  # the old deadline goes once the new one holds
            if unit.endswith(".timer"):
                await self.pid1.stop(unit)
        current = self.records.current(record.id)
        limits = dataclasses.replace(current.spec.limits, timeout_sec=round(total, 3))
        updated = current.evolve(spec=dataclasses.replace(current.spec, limits=limits))
        self.records.save(updated)
        logger.info(
            "job %s extended: %g s more (%.0f s in all)",
            record.id,
            seconds,
            total,
            extra={"JOB_ID": record.id},
        )
        return updated

    # -- pause ----------------------------------------------------------------------------

    async def pause(self, record: JobRecord) -> JobRecord:
        if record.state is JobState.PAUSED:
            return record
        if record.state is not JobState.RUNNING:
            raise JobletError(
                ErrorCode.CONFLICT, f"cannot pause job {record.id}: it is {record.state}"
            )
        await self.pid1.freeze(record.unit)
        return self._now(record, JobState.PAUSED)

    async def resume(self, record: JobRecord) -> JobRecord:
        if record.state is JobState.RUNNING:
            return record
        if record.state is not JobState.PAUSED:
            raise JobletError(
                ErrorCode.CONFLICT, f"cannot resume job {record.id}: it is {record.state}"
            )
        await self.pid1.thaw(record.unit)
        return self._now(record, JobState.RUNNING)

    def _now(self, record: JobRecord, state: JobState) -> JobRecord:
        current = self.records.current(record.id)
        if current.state.is_terminal:
            return current
        updated = current.evolve(state=state)
        self.records.save(updated)
        logger.info("job %s %s", record.id, state, extra={"JOB_ID": record.id})
        return updated

    # -- the idle clock -------------------------------------------------------------------

    def watch(self, record: JobRecord) -> None:
        """Start a live job's idle clock, if it has one (at its start, at the agent's)."""
        running = record.state in (JobState.RUNNING, JobState.PAUSED)  # not while it waits
        if record.spec.limits.idle_timeout_sec is not None and running:
            self._arm(record.id, record.spec.limits.idle_timeout_sec)

    def touch(self, job_id: str) -> None:
        if job_id in self._idle:
            record = self.records.get(job_id)
            if record is not None and record.spec.limits.idle_timeout_sec is not None:
                self._arm(job_id, record.spec.limits.idle_timeout_sec)

    def forget(self, record: JobRecord) -> None:
        handle = self._idle.pop(record.id, None)
        if handle is not None:
            handle.cancel()

    def _arm(self, job_id: str, seconds: float) -> None:
        old = self._idle.pop(job_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._idle[job_id] = loop.call_later(seconds, self._expired, job_id, seconds)

    def _expired(self, job_id: str, seconds: float) -> None:
        if self.busy(job_id):  # a session in progress touches it all along
            self._arm(job_id, seconds)
            return
        self._idle.pop(job_id, None)
        task = asyncio.get_running_loop().create_task(self._end_idle(job_id))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_idle(self, job_id: str) -> None:
        record = self.records.get(job_id)
        if record is None or record.state.is_terminal:
            return
        logger.info("job %s is idle: ending it", job_id, extra={"JOB_ID": job_id})
        unit = deadline.deadline_unit(job_id, deadline.IDLE)
        try:
            await self.pid1.start_transient(
                unit, deadline.marker(job_id, deadline.IDLE, self.config.slice)
            )
        except JobletError as exc:
            logger.error("could not end idle job %s: %s", job_id, exc.message)
