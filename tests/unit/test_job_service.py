"""The engine against fakes: transitions from signals, rollback, prefixes, reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobRecord, JobSpec, JobState
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import UnitGone
from joblet_agent.services.job.service import JobService
from tests.unit.fakes import FakeJobFiles, FakeJournal, FakeSystemd
from tests.unit.wiring import job_service, submit


@pytest.fixture
def engine(tmp_path: Path) -> tuple[JobService, FakeSystemd, FakeJournal]:
    config = AgentConfig(state_dir=tmp_path / "state")
    journal = FakeJournal()
    service = job_service(config, store=SqliteJobStore(config.database), journal=journal)
    systemd = FakeSystemd(service.on_systemd_event)
    service.attach(systemd)
    return service, systemd, journal


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_job_runs_then_completes(engine: tuple[JobService, FakeSystemd, FakeJournal]) -> None:
    service, systemd, _ = engine

    async def scenario() -> None:
        record = await submit(service, {"command": "true"}, owner="alice")
        assert record.state is JobState.RUNNING
        assert record.started_at is not None
        assert (Path(service.config.jobs_dir) / record.id / "work").is_dir()
        systemd.end(record.unit, result="success", code="exited", status="0")
        final = await service.wait(record.id, within=1)
        assert (final.state, final.exit_code) == (JobState.COMPLETED, 0)

    run(scenario())


def test_failure_exit_code_and_oom(engine: tuple[JobService, FakeSystemd, FakeJournal]) -> None:
    service, systemd, _ = engine

    async def scenario() -> None:
        first = await submit(service, {"command": "true"}, owner="a")
        second = await submit(service, {"command": "true"}, owner="a")
        third = await submit(service, {"command": "true"}, owner="a")
        systemd.end(first.unit, result="exit-code", code="exited", status="3")
        # cgroup v1: systemd says "signal"; the kernel's log says it was an OOM kill.
        systemd.kernel_log = (
            "[   10.5] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
            f"oom_memcg=/joblet.slice/{second.unit},task_memcg=/joblet.slice/{second.unit},"
            "task=python3,pid=10534,uid=2046820353\n"
        )
        systemd.end(second.unit, result="signal", code="killed", status="KILL")
        a = await service.wait(first.id, within=1)
        b = await service.wait(second.id, within=1)
        assert (a.state, a.exit_code) == (JobState.FAILED, 3)
        assert (b.state, b.result, b.signal) == (JobState.FAILED, "oom-kill", "SIGKILL")
        # A SIGKILL the kernel's log says nothing about stays a SIGKILL.
        systemd.end(third.unit, result="signal", code="killed", status="KILL")
        c = await service.wait(third.id, within=1)
        assert (c.state, c.result, c.reason) == (JobState.FAILED, "signal", "killed by SIGKILL")
        assert systemd.ran == [
            f"joblet-kmsg-{second.id}.service",
            f"joblet-kmsg-{third.id}.service",
        ]

    run(scenario())


def test_stop_gives_stopped(engine: tuple[JobService, FakeSystemd, FakeJournal]) -> None:
    service, _, _ = engine

    async def scenario() -> None:
        record = await submit(service, {"command": "sleep", "args": ["100"]}, owner="a")
        stopped = await service.stop(record.id[:6])
        assert stopped.state is JobState.STOPPED
        with pytest.raises(JobletError) as info:
            await service.stop(record.id)
        assert info.value.code == ErrorCode.CONFLICT

    run(scenario())


def test_daemon_reload_does_not_end_running_jobs(
    engine: tuple[JobService, FakeSystemd, FakeJournal],
) -> None:
    """Every `apt install` of a package with units runs daemon-reload while jobs run."""
    service, systemd, _ = engine

    async def scenario() -> None:
        record = await submit(service, {"command": "sleep", "args": ["100"]}, owner="a")
        systemd.reload()
        # A barrier, not a pause: another job's start is answered only after its JobRemoved,
        # which PID 1 sends after the reload's UnitRemoved signals: those were handled first.
        await submit(service, {"command": "true"}, owner="b")
        assert service.resolve(record.id).state is JobState.RUNNING
        systemd.end(record.unit, result="success", code="exited", status="0")
        final = await service.wait(record.id, within=1)
        assert (final.state, final.exit_code) == (JobState.COMPLETED, 0)

    run(scenario())


def test_refused_start_leaves_nothing(engine: tuple[JobService, FakeSystemd, FakeJournal]) -> None:
    service, systemd, _ = engine
    systemd.refuse_next = True

    async def scenario() -> None:
        with pytest.raises(JobletError):
            await submit(service, {"command": "true"}, owner="a")

    run(scenario())
    assert service.list() == []
    assert list(Path(service.config.jobs_dir).iterdir()) == []


def test_unknown_command_is_refused_before_any_unit(
    engine: tuple[JobService, FakeSystemd, FakeJournal],
) -> None:
    service, systemd, _ = engine
    with pytest.raises(JobletError, match="'no-such-program' was not found"):
        run(submit(service, {"command": "no-such-program"}, owner="a"))
    assert systemd.started == []
    assert service.list() == []


def test_prefix_resolution(engine: tuple[JobService, FakeSystemd, FakeJournal]) -> None:
    service, _, _ = engine
    ids = [run(submit(service, {"command": "true"}, owner="a")).id for _ in range(3)]  # type: ignore[attr-defined]
    assert service.resolve(ids[0][:8]).id == ids[0]
    with pytest.raises(JobletError, match="at least 4"):
        service.resolve("ab")
    with pytest.raises(JobletError) as info:
        service.resolve("ffff-not-there")
    assert info.value.code == ErrorCode.NOT_FOUND


def test_ambiguous_prefix_lists_candidates(tmp_path: Path) -> None:
    config = AgentConfig(state_dir=tmp_path)
    store = SqliteJobStore(config.database)
    service = job_service(config, store=store)
    for job_id in ("abcd1111", "abcd2222"):
        store.put(
            JobRecord(
                id=job_id,
                spec=JobSpec("true"),
                state=JobState.COMPLETED,
                owner="a",
                created_at=datetime.now(UTC),
            )
        )
    with pytest.raises(JobletError) as info:
        service.resolve("abcd")
    assert info.value.code == ErrorCode.AMBIGUOUS
    assert "abcd1111" in info.value.message and "abcd2222" in info.value.message


def test_delete_refused_while_running(engine: tuple[JobService, FakeSystemd, FakeJournal]) -> None:
    service, systemd, _ = engine

    async def scenario() -> None:
        record = await submit(service, {"command": "true"}, owner="a")
        with pytest.raises(JobletError) as info:
            await service.delete(record.id)
        assert info.value.code == ErrorCode.CONFLICT
        other = await submit(service, {"command": "true"}, owner="a")
        systemd.end(record.unit, result="success", code="exited", status="0")
        await service.wait(record.id, within=1)
        assert await service.delete_all(owner=None) == (1, 1)
        assert not (Path(service.config.jobs_dir) / record.id).exists()
        assert service.resolve(other.id).state is JobState.RUNNING

    run(scenario())


def test_reconcile_finds_true_end_in_journal(
    engine: tuple[JobService, FakeSystemd, FakeJournal],
) -> None:
    service, systemd, journal = engine

    async def scenario() -> None:
        running = await submit(service, {"command": "true"}, owner="a")
        gone = await submit(service, {"command": "true"}, owner="a")
        lost = await submit(service, {"command": "true"}, owner="a")
        # The agent "dies"; while it is away one job ends with status 7 and its unit is unloaded,
        # and another ends leaving no exit record (only PID 1's journal lines tell).
        systemd.emit = lambda event: None
        systemd.end(gone.unit, result="exit-code", code="exited", status="7")
        systemd.units.pop(lost.unit)
        journal.ends[lost.unit] = {"EXIT_CODE": "killed", "EXIT_STATUS": "TERM"}
        fresh = job_service(service.config, store=service.records.store, journal=journal)
        fresh.attach(systemd)
        systemd.emit = fresh.on_systemd_event  # the new agent process listens from now on
        await fresh.reconcile()
        assert fresh.resolve(running.id).state is JobState.RUNNING
        ended = fresh.resolve(gone.id)
        assert (ended.state, ended.exit_code) == (JobState.FAILED, 7)
        lost_end = fresh.resolve(lost.id)
        assert (lost_end.state, lost_end.signal) == (JobState.FAILED, "SIGTERM")

    run(scenario())


def test_a_job_that_started_and_ended_while_the_agent_restarted_says_when_it_started(
    engine: tuple[JobService, FakeSystemd, FakeJournal],
) -> None:
    """The agent restarts between a job's StartTransientUnit and its start's JobRemoved, and the
    job is quick: the new agent finds it ended, never having seen it RUNNING. It ran all the
    same, and PID 1's journal says when it started (the CI's test_schedules_reboot saw
    COMPLETED, exit 0, and no started_at: test_queue_reboot restarts the agent meanwhile)."""
    service, systemd, journal = engine
    systemd.exits_before_start_is_told = True
    systemd.emit = lambda event: None  # the agent "dies" as it asks PID 1 to start the job

    async def scenario() -> None:
        submitting = asyncio.create_task(submit(service, {"command": "true"}, owner="a"))
        await asyncio.sleep(0.05)  # PID 1 starts it; it ends; the old agent never hears
        [record] = service.list()
        assert record.state is JobState.SCHEDULED
        submitting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await submitting
        started = datetime(2026, 12, 4, 15, 22, 26, 950000, tzinfo=UTC)
        journal.starts[record.unit] = started
        fresh = job_service(service.config, store=service.records.store, journal=journal)
        fresh.attach(systemd)
        systemd.emit = fresh.on_systemd_event
        await fresh.reconcile()
        final = fresh.resolve(record.id)
        assert (final.state, final.exit_code, final.started_at) == (
            JobState.COMPLETED,
            0,
            started,
        )

    run(scenario())


def test_the_end_of_a_job_deleted_meanwhile_is_dropped(
    engine: tuple[JobService, FakeSystemd, FakeJournal],
) -> None:
    """api-fuzz finding 11: the unit's removal was handled after the job's record was deleted;
    finishing raised 'does not exist', and without an exit record it wrote the record back."""
    service, systemd, _ = engine

    async def scenario() -> None:
        with_record = await submit(service, {"command": "true"}, owner="a")
        without = await submit(service, {"command": "true"}, owner="a")
        service.lifecycle.record_wait_sec = 0.1
        systemd.end(with_record.unit, result="success", code="exited", status="0")
        systemd.records.pop(without.unit)
        systemd.units.pop(without.unit)
        systemd.emit(UnitGone(without.unit))
        finishing = set(service.lifecycle._finishing)
        assert len(finishing) == 2
        for record in (with_record, without):  # deleted before the finishing tasks ran
            service.records.store.delete(record.id)
        await service.settle()
        assert [task.exception() for task in finishing] == [None, None]
        assert service.records.store.get(with_record.id) is None
        assert service.records.store.get(without.id) is None

    run(scenario())


class GatedFiles(FakeJobFiles):
    """Makes a job's files only once the test opens the gate: its record is SCHEDULED and PID 1
    has no unit for it yet (the real one runs mkfs.ext4 there)."""

    def __init__(self) -> None:
        self.making = asyncio.Event()
        self.gate = asyncio.Event()

    async def create(self, *args: Any, **kwargs: Any) -> None:
        self.making.set()
        await self.gate.wait()
        await super().create(*args, **kwargs)


def test_a_job_canceled_before_its_unit_exists_never_starts(tmp_path: Path) -> None:
    """Cancel is allowed while a job is SCHEDULED, which begins before PID 1 has its unit (no
    unit to stop then): the start must see the cancel and not ask PID 1 for the unit at all."""
    config = AgentConfig(state_dir=tmp_path / "state")
    files = GatedFiles()
    service = job_service(config, store=SqliteJobStore(config.database), files=files)
    systemd = FakeSystemd(service.on_systemd_event)
    service.attach(systemd)

    async def scenario() -> None:
        submitted = asyncio.create_task(submit(service, {"command": "true"}, owner="a"))
        await files.making.wait()
        (scheduled,) = service.records.live()
        canceled = await service.cancel(scheduled.id)
        assert canceled.state is JobState.CANCELED
        files.gate.set()
        answer = await submitted
        assert (answer.id, answer.state) == (scheduled.id, JobState.CANCELED)
        assert [unit for unit, _ in systemd.started if unit == scheduled.unit] == []
        assert not (Path(config.jobs_dir) / scheduled.id).exists()  # nothing left but the record

    run(scenario())
