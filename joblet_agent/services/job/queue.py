"""The admission queue: jobs wait QUEUED, in the order domain/admission.py gives them, until
the agent's caps and their owner's leave room; then they start.

The queue is the job store itself (the QUEUED records and their order): it outlives the agent,
a kill -9 and a reboot. A pass over it (admit) is synchronous: between reading the queue and
marking the chosen jobs admitted (SCHEDULED) no other coroutine runs, so no job is chosen twice
and no room is handed out twice. Their starts then run side by side; each counts against the
caps from the moment it was chosen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from joblet_agent.domain.admission import Capacity, next_admissions
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import Clock
from joblet_agent.services.job.records import HOLDING, JobRecords

logger = logging.getLogger(__name__)

PAGE = 64  # queued records read at a time by a pass (most passes need the first few)
Start = Callable[[JobRecord], Coroutine[Any, Any, JobRecord]]


class JobQueue:
    def __init__(
        self, config: AgentConfig, host: HostInfo, records: JobRecords, *, clock: Clock
    ) -> None:
        self.policy = config.admission
        self.capacity = Capacity.of(config.admission, config.jobs.max_running, config.quotas, host)
        self.records = records
        self.clock = clock
        self.start: Start | None = None  # the starter (service.py); refuse=False
        # Schedules whose runs wait for the previous one to end (overlap: queue): set by the
        # schedule service.
        self.serial_schedules: Callable[[], frozenset[str]] = frozenset
        self._starting: set[asyncio.Task[JobRecord]] = set()
        self._soon = False
        records.on_ended.append(lambda _record: self.admit_soon())

    # -- joining ----------------------------------------------------------------------------

    def check_room(self, owner: str) -> None:
        """Refuse a job when the queue holds as many as joblet.yml allows (all, or the owner's):
        every queued job holds a record, maybe an upload's tree, on the agent's disk."""
        queued = frozenset({JobState.QUEUED})
        if self.records.store.count(states=queued) >= self.policy.max_queued:
            raise JobletError(
                ErrorCode.BUSY,
                f"{self.policy.max_queued} jobs are queued, the most this agent keeps waiting "
                "(admission.max_queued)",
                hint="try again when jobs have ended",
            )
        mine = self.records.store.count(states=queued, owner=owner)
        if mine >= self.policy.max_queued_per_owner:
            raise JobletError(
                ErrorCode.TOO_MANY,
                f"{mine} jobs of {owner} are queued, the most one owner may have waiting "
                "(admission.max_queued_per_owner)",
                hint="wait for them to start, or cancel some: rnx job cancel JOB",
            )

    def join(self, record: JobRecord) -> JobRecord:
        """The job joins the queue now (its place: domain/admission.py queue_key)."""
        queued = record.evolve(state=JobState.QUEUED, queued_at=self.clock.now())
        self.records.save(queued)
        return queued

    # -- passes -----------------------------------------------------------------------------

    def admit(self, *, awaited: str | None = None) -> JobRecord | None:
        """Start the queued jobs that fit now, in the queue's order. The job `awaited` (its
        submitter waits for it) is not started here but returned, admitted, for the caller to
        start (a failure is then the submitter's error); None if it must wait."""
        self._soon = False
        holding = [r for r in self.records.list(states=HOLDING) if r.holds_capacity]
        chosen = next_admissions(
            self._queue(),
            holding,
            self.capacity,
            serial_schedules=self.serial_schedules(),
        )
        mine = None
        for record in chosen:
            admitted = record.evolve(state=JobState.SCHEDULED)
            self.records.save(admitted)
            logger.debug("admitted job %s", record.id, extra={"JOB_ID": record.id})
            if record.id == awaited:
                mine = admitted
            else:
                self._start_soon(admitted)
        return mine

    def admit_soon(self) -> None:
        """A pass once the current callback is done (a job ended: its room is free)."""
        if not self._soon:
            self._soon = True
            asyncio.get_running_loop().call_soon(self._admit_now)

    def _admit_now(self) -> None:
        if self._soon:
            self.admit()

    def _queue(self) -> Iterator[JobRecord]:
        """The queue in its order, read a page at a time as far as the pass goes."""
        offset = 0
        while True:
            page = self.records.store.queued(
                step_sec=self.policy.priority_step_sec, limit=PAGE, offset=offset
            )
            yield from page
            if len(page) < PAGE:
                return
            offset += PAGE

    def _start_soon(self, record: JobRecord) -> None:
        assert self.start is not None, "the queue has no starter"
        task = asyncio.get_running_loop().create_task(self.start(record))
        self._starting.add(task)

        def done(task: asyncio.Task[JobRecord]) -> None:
            self._starting.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.error("starting job %s failed: %r", record.id, task.exception())
                self.admit_soon()  # its room is free (a failed start's record ended)

        task.add_done_callback(done)

    # -- reading ----------------------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        """Each queued job's place in the queue, from 1."""
        order = self.records.store.queue_order(step_sec=self.policy.priority_step_sec)
        return {job_id: index for index, job_id in enumerate(order, start=1)}

    async def settle(self) -> None:
        """Wait for the starts under way (the agent stops)."""
        while self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)
