"""Recurring schedules: create, list, show, pause, resume, delete; and their firings, each of
which makes a job (a run) that joins the admission queue like any other.

A schedule's timer is PID 1's (`joblet-sched-<id>.timer`, units/schedule.py, the same as a
one-shot job's); the agent hears a firing when the timer's service ends (JobRemoved) and reads
the timer's `LastTriggerUSec`: a firing counts once, when it is later than the schedule's
`last_fired_at`, so the signal and the agent's start seeing the same firing make one run. At the
agent's start: a schedule whose timer PID 1 still has runs once if it fired while no agent
listened; one whose timer PID 1 lost (a reboot) gets it again, after one run now if an elapse
fell between its last firing and now and the schedule catches up (systemd-analyze calendar
--base-time says). Deleting a schedule removes its timer and cancels its runs still waiting
(QUEUED); runs that started, and those that ended, stay jobs like any.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from joblet_agent.domain.admission import check_ever_fits, default_within
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.schedule import (
    Overlap,
    ScheduleRecord,
    ScheduleRequest,
    ScheduleSpec,
    ScheduleState,
)
from joblet_agent.domain.sharing import Principal
from joblet_agent.domain.when import WHEN_RULE
from joblet_agent.errors import ErrorCode, JobletError, excerpt, invalid
from joblet_agent.ports import Calendar, Clock, JobDone, ScheduleStore, SystemdManager, UnitGone
from joblet_agent.services.job.admission import with_runtime
from joblet_agent.services.job.records import LIVE, MIN_PREFIX
from joblet_agent.services.job.service import JobService
from joblet_agent.units import schedule as units

logger = logging.getLogger(__name__)

UNSET_USEC = (0, 2**64 - 1)  # a timer property systemd has no value for
WAITING = frozenset({JobState.QUEUED, JobState.SCHEDULED})


class ScheduleService:
    def __init__(
        self, store: ScheduleStore, jobs: JobService, *, calendar: Calendar, clock: Clock
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.calendar = calendar
        self.clock = clock
        self.systemd: SystemdManager | None = None
        self._serial: set[str] = {r.id for r in store.list() if r.spec.overlap is Overlap.QUEUE}
        self._firing: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        jobs.on_other_firing = self.on_firing
        jobs.queue.serial_schedules = lambda: frozenset(self._serial)

    @property
    def pid1(self) -> SystemdManager:
        assert self.systemd is not None, "attach() a systemd manager first"
        return self.systemd

    def attach(self, systemd: SystemdManager) -> None:
        self.systemd = systemd

    # -- queries --------------------------------------------------------------------------

    def resolve(self, reference: str) -> ScheduleRecord:
        """By id, name, or a unique prefix of its id (4+ characters), in that order."""
        key = reference.strip()
        record = self.store.get(key.lower())
        if record is None:
            named = self.store.find_name(key)
            record = self.store.get(named) if named else None
        if record is not None:
            return record
        matches = self.store.find_prefix(key.lower()) if len(key) >= MIN_PREFIX else []
        if len(matches) == 1:
            found = self.store.get(matches[0])
            if found is not None:
                return found
        if len(matches) > 1:
            raise JobletError(
                ErrorCode.AMBIGUOUS,
                f"schedule id {excerpt(key)} is ambiguous; it matches: {', '.join(matches[:10])}",
                hint="give more characters of the id, or the schedule's name",
            )
        raise JobletError(
            ErrorCode.NOT_FOUND,
            f"no schedule has the name or an id starting with {excerpt(key)}",
            hint="rnx schedule list shows them",
        )

    def list(self, *, owner: str | None = None) -> list[ScheduleRecord]:
        return self.store.list(owner=owner)

    async def next_elapse(self, record: ScheduleRecord) -> datetime | None:
        """When its timer fires next (PID 1's, else systemd's reading of the calendar)."""
        if record.state is ScheduleState.PAUSED:
            return None
        props = await self.pid1.timer_properties(record.timer)
        usec = props.get("NextElapseUSecRealtime") if props else None
        if isinstance(usec, int) and usec not in UNSET_USEC:
            return datetime.fromtimestamp(usec / 1_000_000, UTC)
        return (await self.calendar.next_elapse(record.spec.calendar)).next_elapse

    def runs(self, record: ScheduleRecord, *, limit: int = 1) -> builtins.list[JobRecord]:
        """Its runs, newest first."""
        return self.jobs.list(schedule=record.id, limit=limit)

    # -- commands -------------------------------------------------------------------------

    async def create(
        self, request: ScheduleRequest, owner: str, *, manages_all: bool = False
    ) -> ScheduleRecord:
        """Judged before anything is made: the calendar by systemd, the job's runtime and
        program, its limits against the owner's quota, the volumes and network it names
        against the owner's own and those shared with it (`manages_all`: everyone's, then and
        for each run, which is checked again when it starts)."""
        try:
            answer = await self.calendar.next_elapse(request.calendar)
        except JobletError as exc:
            if exc.code is not ErrorCode.INVALID:
                raise  # systemd-analyze could not answer: not the caller's mistake
            raise invalid("calendar", request.calendar, f"systemd: {exc.message}") from exc
        if answer.next_elapse is None:
            raise invalid(
                "calendar", request.calendar, f"systemd says it never elapses again; {WHEN_RULE}"
            )
        if request.name is not None and self.store.find_name(request.name) is not None:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"name: a schedule named {request.name!r} exists already",
                hint="rnx schedule list shows them; delete it or choose another --name",
            )
        spec, runtime, runtime_warnings = with_runtime(request.job.spec, self.jobs.runtimes)
        if not request.job.memory_given:
            spec = dataclasses.replace(
                spec, limits=default_within(spec.limits, owner, self.jobs.queue.capacity)
            )
        check_ever_fits(spec.limits, owner, self.jobs.queue.capacity)
        by = Principal(owner, manages_all=manages_all)
        self.jobs.volumes.check_use(spec.volumes, by)
        if self.jobs.networks is not None:
            self.jobs.networks.check_join(spec, by)
        self.jobs.starter.find_program(spec, runtime, None)
        record = ScheduleRecord(
            id=str(uuid.uuid4()),
            name=request.name,
            owner=owner,
            spec=ScheduleSpec(
                calendar=request.calendar,
                normalized=answer.normalized,
                job=spec,
                priority=request.job.priority,
                overlap=request.overlap,
                catch_up=request.catch_up,
            ),
            state=ScheduleState.ACTIVE,
            created_at=self.clock.now(),
            warnings=request.job.warnings + runtime_warnings,
            manages_all=manages_all,
        )
        self.store.put(record)
        try:
            await self._arm(record)
        except BaseException:
            self.store.delete(record.id)
            raise
        if record.spec.overlap is Overlap.QUEUE:
            self._serial.add(record.id)
        logger.info(
            "schedule %s (%s) of %s: %s",
            record.id,
            record.name,
            owner,
            record.spec.normalized,
            extra={"SCHEDULE_ID": record.id},
        )
        return record

    async def pause(self, record: ScheduleRecord) -> ScheduleRecord:
        """No firing until resumed; those that would have come meanwhile never run."""
        if record.state is ScheduleState.PAUSED:
            return record
        paused = record.evolve(state=ScheduleState.PAUSED)
        self.store.put(paused)
        await self._disarm(record.id)
        return paused

    async def resume(self, record: ScheduleRecord) -> ScheduleRecord:
        if record.state is ScheduleState.ACTIVE:
            return record
        # Firings the pause skipped are not missed ones: counting starts again now.
        resumed = record.evolve(state=ScheduleState.ACTIVE, last_fired_at=self.clock.now())
        self.store.put(resumed)
        await self._arm(resumed)
        return resumed

    async def delete(self, record: ScheduleRecord) -> builtins.list[str]:
        """Its timer goes, and its runs still waiting are canceled (returned); those that
        started or ended stay, like any job."""
        await self._disarm(record.id)
        self._serial.discard(record.id)
        self.store.delete(record.id)
        canceled = []
        for run in self.jobs.list(schedule=record.id, states=WAITING):
            try:
                await self.jobs.cancel(run.id)
                canceled.append(run.id)
            except JobletError as exc:  # it started meanwhile: a run like any
                logger.info("run %s of schedule %s: %s", run.id, record.id, exc.message)
        logger.info("deleted schedule %s", record.id, extra={"SCHEDULE_ID": record.id})
        return canceled

    # -- firings --------------------------------------------------------------------------

    def on_firing(self, event: JobDone | UnitGone) -> None:
        """A timer's service ended (JobService routes those that are no job's here)."""
        schedule_id = units.fired(event.unit)
        if schedule_id is None or not isinstance(event, JobDone) or event.result != "done":
            return
        self._soon(self.fire(schedule_id))

    async def fire(self, schedule_id: str, *, missed: datetime | None = None) -> None:
        """A firing of the schedule's timer (its LastTriggerUSec), or, with `missed`, an
        elapse no timer fired (PID 1 lost it): a run, unless it was counted already or the
        overlap policy says otherwise."""
        async with self._firing.setdefault(schedule_id, asyncio.Lock()):
            record = self.store.get(schedule_id)
            if record is None or record.state is not ScheduleState.ACTIVE:
                return
            at = missed or await self._last_trigger(record)
            if at is None or (record.last_fired_at is not None and at <= record.last_fired_at):
                return  # counted already (its signal and the agent's start saw the same)
            # A missed elapse is counted up to now: the downtime makes one run, not one each.
            record = record.evolve(last_fired_at=self.clock.now() if missed else at)
            live = self.jobs.list(schedule=record.id, states=LIVE)
            why = _held_back(record.spec.overlap, live)
            if why is None:
                try:
                    self.jobs.intake.run(record, due=at, late=missed is not None)
                except JobletError as exc:
                    why = exc.message  # the queue is full, the owner's share of it...
            if why is not None:
                logger.info("schedule %s skipped a firing: %s", record.id, why)
                record = record.evolve(skipped=record.skipped + 1)
            else:
                record = record.evolve(runs=record.runs + 1)
            self.store.put(record)

    async def _last_trigger(self, record: ScheduleRecord) -> datetime | None:
        props = await self.pid1.timer_properties(record.timer)
        usec = props.get("LastTriggerUSec") if props else None
        if not isinstance(usec, int) or usec in UNSET_USEC:
            return None
        return datetime.fromtimestamp(usec / 1_000_000, UTC)

    # -- the agent's start ----------------------------------------------------------------

    async def reconcile(self) -> None:
        """Every active schedule has its timer; a firing no agent heard runs once."""
        loaded = dict(await self.pid1.list_units(f"{units.PREFIX}*.timer"))
        for record in self.store.list():
            try:
                await self._reconcile(record, loaded.get(record.timer))
            except JobletError as exc:
                # One schedule that cannot be set up never stops the agent from starting.
                logger.error("schedule %s: %s", record.id, exc.message)

    async def _reconcile(self, record: ScheduleRecord, state: str | None) -> None:
        if record.state is ScheduleState.PAUSED:
            if state is not None:
                await self._disarm(record.id)
            return
        if state is not None:
            await self.fire(record.id)  # a firing while no agent listened, if there was one
            return
        # PID 1 lost the timer (a reboot): an elapse since the last firing is a missed one.
        since = record.last_fired_at or record.created_at
        answer = await self.calendar.next_elapse(record.spec.calendar, after=since)
        now = self.clock.now()
        if answer.next_elapse is not None and answer.next_elapse <= now:
            if record.spec.catch_up:
                await self.fire(record.id, missed=answer.next_elapse)
            else:
                self.store.put(record.evolve(last_fired_at=now))
        await self._arm(self.store.get(record.id) or record)
        logger.info("timer of schedule %s made again", record.id)

    async def settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- timers ---------------------------------------------------------------------------

    async def _arm(self, record: ScheduleRecord) -> None:
        what = f"Joblet: schedule {record.name or record.id} ({record.spec.normalized})"
        await self.pid1.start_transient(
            record.timer,
            units.timer_properties(record.spec.calendar, what),
            aux=[
                (
                    units.fire_unit(record.id),
                    units.fire_properties(self.jobs.config.slice, what),
                )
            ],
        )

    async def _disarm(self, schedule_id: str) -> None:
        await self.pid1.stop(units.timer_unit(schedule_id))

    def _soon(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.error("a schedule's firing failed: %r", task.exception())

        task.add_done_callback(done)


def _held_back(overlap: Overlap, live: list[JobRecord]) -> str | None:
    """Why a firing makes no run, given the schedule's runs that have not ended."""
    waiting = [r for r in live if r.state is JobState.QUEUED or r.waiting_for_time]
    if overlap is Overlap.SKIP and live:
        return f"its run {live[0].id} has not ended (overlap: skip)"
    if overlap is Overlap.QUEUE and waiting:
        return f"its run {waiting[0].id} waits already (overlap: queue)"
    return None
