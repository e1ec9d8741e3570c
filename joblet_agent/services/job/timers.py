"""Jobs scheduled for a time: each waits SCHEDULED with a transient timer of PID 1's
(units/schedule.py); its firing puts the job in the queue, which starts it when there is room.

Transient units die with PID 1 (a reboot, the sandbox's PID 1 halted), so the record is what
counts: at the agent's start a job whose time has not come gets its timer again if PID 1 lost
it; one whose time passed while no agent listened (its timer fired unheard, or was lost with
the host down) joins the queue then, once (like Persistent=). The state change from SCHEDULED
to QUEUED is the firing: a job fired twice (its timer's signal and the agent's start at once)
joins once.
"""

from __future__ import annotations

import asyncio
import logging

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.when import on_calendar
from joblet_agent.errors import JobletError
from joblet_agent.ports import Clock, JobDone, SystemdManager, UnitGone
from joblet_agent.services.job.queue import JobQueue
from joblet_agent.services.job.records import JobRecords
from joblet_agent.units import schedule as units

logger = logging.getLogger(__name__)


class JobTimers:
    def __init__(
        self, config: AgentConfig, records: JobRecords, queue: JobQueue, *, clock: Clock
    ) -> None:
        self.config = config
        self.records = records
        self.queue = queue
        self.clock = clock
        self.systemd: SystemdManager | None = None
        self._disarming: set[asyncio.Task[None]] = set()

    @property
    def pid1(self) -> SystemdManager:
        assert self.systemd is not None, "attach() a systemd manager first"
        return self.systemd

    async def arm(self, record: JobRecord) -> None:
        """The job's timer, elapsing once at its start time."""
        assert record.scheduled_for is not None
        what = f"Joblet: start job {record.id} at {record.scheduled_for.isoformat()}"
        await self.pid1.start_transient(
            units.timer_unit(record.id),
            units.timer_properties(on_calendar(record.scheduled_for), what),
            aux=[(units.fire_unit(record.id), units.fire_properties(self.config.slice, what))],
        )
        logger.info(
            "job %s scheduled for %s",
            record.id,
            record.scheduled_for.isoformat(),
            extra={"JOB_ID": record.id},
        )

    def disarm_soon(self, job_id: str) -> None:
        """Its timer goes (fired, or the job canceled): stopped, PID 1 unloads it."""
        task = asyncio.get_running_loop().create_task(self._disarm(job_id))
        self._disarming.add(task)
        task.add_done_callback(self._disarming.discard)

    async def _disarm(self, job_id: str) -> None:
        try:
            await self.pid1.stop(units.timer_unit(job_id))
        except JobletError as exc:
            logger.warning("could not remove the timer of job %s: %s", job_id, exc.message)

    def on_event(self, event: JobDone | UnitGone) -> bool:
        """A timer's service ran (its JobRemoved): the job it names, if one waits, joins the
        queue. False if the firing is no job's (a recurring schedule's)."""
        job_id = units.fired(event.unit)
        if job_id is None:
            return False
        record = self.records.get(job_id)
        if record is None:
            return False
        if isinstance(event, JobDone) and event.result == "done":
            self.fire(record)
        return True

    def fire(self, record: JobRecord, *, late: bool = False) -> None:
        """Its time came: it joins the queue (its place from now), and may start at once."""
        current = self.records.get(record.id)
        if current is None or not current.waiting_for_time:
            return  # fired already, canceled or deleted
        if late:
            assert current.scheduled_for is not None
            current = current.evolve(
                warnings=(
                    *current.warnings,
                    f"its start time {current.scheduled_for.isoformat(timespec='seconds')} "
                    "passed while no agent ran: it started when the agent did",
                )
            )
        self.queue.join(current)
        self.queue.admit()
        self.disarm_soon(record.id)

    async def reconcile(self) -> None:
        """At the agent's start: every job waiting for its time has its timer, or joins the
        queue now if its time passed while no agent listened."""
        waiting = [r for r in self.records.list(states=frozenset({JobState.SCHEDULED}))]
        waiting = [r for r in waiting if r.waiting_for_time]
        if not waiting:
            return
        loaded = dict(await self.pid1.list_units(f"{units.PREFIX}*.timer"))
        now = self.clock.now()
        for record in waiting:
            assert record.scheduled_for is not None
            timer = units.timer_unit(record.id)
            if record.scheduled_for <= now:
                self.fire(record, late=True)
            elif loaded.get(timer) != "active":
                if timer in loaded:
                    await self.pid1.stop(timer)  # an elapsed one that never reached us
                await self.arm(record)
                logger.info("timer of job %s made again", record.id, extra={"JOB_ID": record.id})

    async def settle(self) -> None:
        while self._disarming:
            await asyncio.gather(*self._disarming, return_exceptions=True)
