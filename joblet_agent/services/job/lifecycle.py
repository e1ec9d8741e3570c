"""What PID 1 tells of jobs once they were started: their start done, their end, and at the
agent's own start, which of them still run.

Jobs are not children of the agent. All the engine knows about a running job comes from PID 1
(signals while it runs; its end recorder's record, its journal lines, the kernel's log), so
stopping or killing the agent never stops a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import UNIT_PREFIX, JobRecord, JobState, job_id_of_unit
from joblet_agent.domain.outcome import Outcome, UnitEnd, decide, with_owners_quota
from joblet_agent.domain.user import pool
from joblet_agent.errors import JobletError
from joblet_agent.ports import Clock, JobDone, JobFiles, Journal, SystemdManager, UnitGone
from joblet_agent.services.job.records import HOLDING, JobRecords
from joblet_agent.units import deadline, end_record, kernel_log
from joblet_agent.units import schedule as schedule_units
from joblet_agent.units.job import running_limits
from joblet_agent.units.network import helper_unit
from joblet_agent.units.paths import JobPaths

logger = logging.getLogger(__name__)

KERNEL_LOG_TIMEOUT_SEC = 30.0
NETWORK_STOP_TIMEOUT_SEC = 30.0
RECORD_WAIT_SEC = 10.0
_RUNNING = ("active", "reloading", "deactivating")
# The units whose signals the engine needs: jobs' own, their end recorders', and the services
# timers fire (services/job/timers.py, services/schedule.py).
UNIT_PREFIXES = (UNIT_PREFIX, end_record.PREFIX, schedule_units.PREFIX)


class JobLifecycle:
    # How long a job whose unit is gone waits for its end recorder before PID 1's journal is
    # asked instead (the recorder runs after the unit's end; tests shorten it).
    record_wait_sec = RECORD_WAIT_SEC

    def __init__(
        self,
        config: AgentConfig,
        host: HostInfo,
        records: JobRecords,
        *,
        files: JobFiles,
        journal: Journal,
        clock: Clock,
    ) -> None:
        self.config = config
        self.host = host
        self.records = records
        self.files = files
        self.journal = journal
        self.clock = clock
        self.systemd: SystemdManager | None = None
        self._pending: dict[str, asyncio.Future[str]] = {}  # unit -> its systemd job's result
        self._finishing: set[asyncio.Task[None]] = set()
        self._finishing_ids: set[str] = set()
        self._recorded: dict[str, asyncio.Event] = {}  # job id -> its end recorder is done

    @property
    def pid1(self) -> SystemdManager:
        assert self.systemd is not None, "attach() a systemd manager first"
        return self.systemd

    def expect(self, unit: str) -> asyncio.Future[str]:
        """Await the result of the next systemd job on `unit`; register before asking for it."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[unit] = future
        return future

    def forget(self, unit: str) -> None:
        self._pending.pop(unit, None)

    # -- signals from PID 1 ---------------------------------------------------------------

    def on_systemd_event(self, event: JobDone | UnitGone) -> None:
        recorded = end_record.job_of(event.unit)
        if recorded is not None:
            # The job's unit ended and PID 1 ran its end recorder (OnSuccess=/OnFailure=).
            if isinstance(event, JobDone):
                self._recorded.setdefault(recorded, asyncio.Event()).set()
                ended = self.records.get(recorded)
                if ended and not ended.state.is_terminal:
                    self._finish_soon(ended)
            return
        job_id = job_id_of_unit(event.unit)
        record = self.records.get(job_id) if job_id else None
        waiter = self._pending.pop(event.unit, None)
        if waiter and not waiter.done():
            waiter.set_result(event.result if isinstance(event, JobDone) else "gone")
        if record is None or record.state.is_terminal:
            return
        if isinstance(event, JobDone):
            # Type=exec: the start job is done once exec() succeeded. Otherwise the unit failed
            # (its recorder follows) or never ran (a dependency, its network, failed).
            if record.state is JobState.SCHEDULED and event.result == "done":
                self.records.save(
                    record.evolve(state=JobState.RUNNING, started_at=self.clock.now())
                )
                # Its process has its environment: also when its start outlasted the starter's
                # wait (START_TIMEOUT_SEC), which then removed nothing.
                self.files.forget_secrets(self._paths(record.id))
            elif event.result != "done":
                self._finish_soon(record, start_result=event.result)
            return
        # Unloaded: it ended (its recorder's signal comes too, or came), or a daemon-reload.
        self._finish_soon(record)

    def _finish_soon(self, record: JobRecord, *, start_result: str | None = None) -> None:
        """Finishing asks PID 1 and maybe the kernel's log: keep the bus reader free meanwhile."""
        if record.id in self._finishing_ids:
            return
        self._finishing_ids.add(record.id)
        task = asyncio.get_running_loop().create_task(self._finish(record, start_result))
        self._finishing.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._finishing.discard(task)
            self._finishing_ids.discard(record.id)
            if not task.cancelled() and task.exception() is not None:
                logger.error("finishing job %s failed: %s", record.id, task.exception())

        task.add_done_callback(done)

    async def settle(self) -> None:
        """Wait for the jobs being finished now (their records written): before the bus goes."""
        while self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)

    async def _finish(
        self, record: JobRecord, start_result: str | None = None, *, wait: bool = True
    ) -> None:
        """The unit ended, or never started: PID 1's account of it says how (the record its end
        recorder wrote, else PID 1's journal lines about the unit), and on cgroup v1 the
        kernel's log whether a SIGKILL was an OOM kill."""
        active = await self.pid1.active_state(record.unit)
        if active in (*_RUNNING, "activating"):
            # `systemctl daemon-reload` (every package install runs one) makes PID 1 send
            # UnitRemoved for units it re-reads: one still running has not ended.
            logger.debug("%s: a signal while it runs (%s)", record.unit, active)
            return
        reached = await self._deadline(record)
        end = await self._recorded_end(record, wait=wait)
        if end is None:
            end = UnitEnd.from_fields(await self.journal.unit_end(record.unit) or {})
        if (
            not self.host.reports_oom_kills
            and end.maybe_oom_kill
            and await self._kernel_reports_oom_kill(record)
        ):
            end = end.as_oom_kill()
        if record.endpoint is not None:
            # Its network helper is stopped once the job is gone (StopWhenUnneeded=), deleting
            # its link; the job has ended when that is done, not before.
            try:
                await self.pid1.stop(helper_unit(record.id), within=NETWORK_STOP_TIMEOUT_SEC)
            except TimeoutError:
                logger.warning("the network helper of job %s is still stopping", record.id)
        self._recorded.pop(record.id, None)
        current = self.records.get(record.id)
        if current is None or current.state.is_terminal:
            return  # deleted or canceled meanwhile
        if start_result is not None and not end.ran:
            # It never ran: its start failed (systemd says why), or a unit it requires did.
            reason = f"failed to start: {start_result}"
            if current.endpoint is not None:
                reason += (
                    f"; its network could not be set up (journalctl -u {helper_unit(record.id)})"
                )
            self.record_outcome(current, Outcome(JobState.FAILED, None, None, reason))
        elif not end.known:
            reason = "the job's unit ended leaving no record of how"
            self.record_outcome(current, Outcome(JobState.FAILED, None, None, reason))
        else:
            outcome = decide(
                stop_requested=current.stop_requested,
                result="timeout" if reached else end.result,
                kind=end.kind,
                status=end.status,
                ran=end.ran,
            )
            if reached == deadline.IDLE and outcome.state is JobState.TIMEOUT:
                idle = current.spec.limits.idle_timeout_sec
                outcome = dataclasses.replace(
                    outcome,
                    reason=f"idle: no exec, attach or file call for {idle:g} s",
                )
            quota = self.config.quotas.of(current.owner).memory_bytes
            outcome = with_owners_quota(outcome, current.spec.limits.memory_bytes, quota)
            started = current.started_at
            if started is None and end.ran:
                # It ran, but no agent saw its start done: the agent restarted in between (or
                # PID 1's JobRemoved came last). PID 1's journal says when.
                started = await self.journal.unit_started(record.unit)
            self.record_outcome(
                current, outcome, result="timeout" if reached else end.result, started_at=started
            )

    async def _deadline(self, record: JobRecord) -> str | None:
        """Whether the job's deadline ended it ("timeout"), or its idle time ("idle"): its
        marker unit is active (units/deadline.py). Its timers and markers go either way."""
        units = await self.pid1.list_units(deadline.pattern(record.id))
        reached = None
        for unit, state in units:
            if unit.endswith(".service") and state == "active":
                reached = deadline.IDLE if deadline.is_idle(unit) else "timeout"
        for unit, _ in units:
            await self.pid1.stop(unit)
        return reached

    async def _recorded_end(self, record: JobRecord, *, wait: bool) -> UnitEnd | None:
        """The end recorder's record: waited for (its run follows the unit's end) when the unit's
        removal came first; None if it never comes (the journal is asked instead)."""
        path = self._paths(record.id).end_record
        text = self.files.read_text(path)
        if text is None and wait:
            done = self._recorded.setdefault(record.id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.record_wait_sec)
            text = self.files.read_text(path)
        if text is None:
            return None
        end = end_record.parse_record(text)
        return end if end.known else None

    async def _kernel_reports_oom_kill(self, record: JobRecord) -> bool:
        """cgroup v1: whether the kernel's log reports the job's SIGKILL as an OOM kill."""
        paths = self._paths(record.id)
        unit = kernel_log.helper_unit(record.id)
        try:
            result = await self.pid1.run(
                unit,
                kernel_log.helper_properties(paths.kernel_log, self.config.slice),
                within=KERNEL_LOG_TIMEOUT_SEC,
            )
        except JobletError as exc:
            logger.warning("could not read the kernel's log for %s: %s", record.id, exc.message)
            return False
        text = self.files.take_text(paths.kernel_log) if result == "done" else None
        uids = {user.name: user.uid for user in pool(self.config.jobs)}
        window = kernel_log.Window.of(
            record.started_at or record.created_at,
            record.ended_at or self.clock.now(),
            boot=time.time() - time.monotonic(),
        )
        return kernel_log.reports_oom_kill(
            text or "", record.unit, uids.get(record.user or ""), window
        )

    async def limit_running(self, record: JobRecord) -> None:
        """Its CPU quota, once its program runs (units/job.py says why)."""
        props = running_limits(record.spec.limits)
        if props:
            await self.pid1.set_properties(record.unit, props)

    def record_outcome(
        self,
        record: JobRecord,
        outcome: Outcome,
        *,
        result: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        current = self.records.get(record.id)
        if current is None or current.state.is_terminal:
            return  # deleted meanwhile (api-fuzz finding 11): never written back
        final = current.evolve(
            started_at=current.started_at or started_at,
            state=outcome.state,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            result=result,
            reason=outcome.reason,
            ended_at=self.clock.now(),
        )
        self.records.save(final)
        self.files.forget_secrets(self._paths(record.id))  # however it ended
        logger.info(
            "job %s %s (exit %s, result %s)",
            record.id,
            outcome.state,
            outcome.exit_code,
            result,
            extra={"JOB_ID": record.id, "UNIT": record.unit},
        )

    # -- the agent's start ----------------------------------------------------------------

    async def reconcile(self) -> None:
        """Re-attach to running units; give jobs that ended while we were away their true end."""
        live = dict(await self.pid1.list_units(f"{UNIT_PREFIX}*.service"))
        self._forget_secrets_of_started()
        known: set[str] = set()
        for record in self.records.list(states=HOLDING):
            if record.waiting_for_time:
                continue  # no unit yet: its timer's (services/job/timers.py)
            known.add(record.unit)
            props = await self.pid1.unit_properties(record.unit)
            active = props.get("ActiveState") if props else None
            if active in _RUNNING or active == "activating":
                current = record
                if record.state is JobState.SCHEDULED and active in _RUNNING:
                    assert props is not None
                    started = _timestamp(props) or self.clock.now()
                    current = record.evolve(state=JobState.RUNNING, started_at=started)
                    self.records.save(current)
                if active in _RUNNING:
                    self.files.forget_secrets(self._paths(record.id))  # its program runs
                    await self.limit_running(current)  # in case the agent died before it did
                logger.info("re-attached to running job %s", record.id)
                continue
            # Ended while no agent watched: its recorder ran then, unless it is still at it.
            recorders = [end_record.recorder_unit(record.id, k) for k in end_record.KINDS]
            pending = [await self.pid1.active_state(unit) for unit in recorders]
            if any(state is not None for state in pending):
                self._finish_soon(record)
                continue
            try:
                await self._finish(record, wait=False)
            except JobletError as exc:
                # One job's end that cannot be read now never stops the agent from starting.
                logger.error("could not read how job %s ended: %s", record.id, exc.message)
        for unit in sorted(set(live) - known):
            logger.warning("unit %s is not a job this agent knows; leaving it alone", unit)

    def _forget_secrets_of_started(self) -> None:
        """Secret values wait on disk only with a job that has not started (QUEUED, SCHEDULED):
        an agent that died between a job's start and their removal left them, or between their
        writing and its record's (review L11)."""
        waiting = (JobState.QUEUED, JobState.SCHEDULED)
        for job_id in self.files.holding_secrets(PurePosixPath(self.config.jobs_dir)):
            record = self.records.get(job_id)
            if record is None or record.state not in waiting:
                self.files.forget_secrets(self._paths(job_id))
                logger.info("removed the secrets left by job %s", job_id)

    async def roots_in_use(self, current: PurePosixPath) -> set[str]:
        """The RootDirectory of every loaded job unit, whoever started it: skeletons to keep."""
        roots = {str(current)}
        for unit, _state in await self.pid1.list_units(f"{UNIT_PREFIX}*.service"):
            props = await self.pid1.unit_properties(unit)
            if props and props.get("RootDirectory"):
                roots.add(str(props["RootDirectory"]))
        return roots

    def _paths(self, job_id: str) -> JobPaths:
        return JobPaths.for_job(PurePosixPath(self.config.jobs_dir), job_id)


def _timestamp(props: Mapping[str, Any]) -> datetime | None:
    usec = props.get("ExecMainStartTimestamp")
    if not usec:
        return None
    return datetime.fromtimestamp(usec / 1_000_000, UTC)
