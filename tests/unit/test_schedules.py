"""Jobs scheduled for a time (domain/schedule.py, services/job/timers.py) against fakes: the WHEN
forms, their errors, the timer, its firing, and what the agent's start does with jobs whose
timer PID 1 lost or whose time passed while no agent listened."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.adapters.schedule_store import SqliteScheduleStore
from joblet_agent.domain.capacity import AdmissionPolicy
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobState
from joblet_agent.domain.schedule import ScheduleRecord, ScheduleState, parse_schedule_request
from joblet_agent.domain.sharing import Principal
from joblet_agent.domain.volume import VolumeRequest, VolumeType
from joblet_agent.domain.when import WhenKind, parse_when
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import JobDone
from joblet_agent.services.job.service import JobService
from joblet_agent.services.schedule import ScheduleService
from joblet_agent.units.schedule import timer_unit
from tests.unit.fakes import FakeCalendar, FakeClock, FakeSystemd
from tests.unit.hosts import HYBRID_HOST
from tests.unit.wiring import job_service, submit

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "kind", "seconds"),
    [
        ("30s", WhenKind.RELATIVE, 30),
        ("5m", WhenKind.RELATIVE, 300),
        ("1h30m", WhenKind.RELATIVE, 5400),
        ("in 10m", WhenKind.RELATIVE, 600),
        ("1.5 min", WhenKind.RELATIVE, 90),
        ("2026-12-24T18:00:00Z", WhenKind.ABSOLUTE, None),
        ("2026-12-24T18:00:00+01:00", WhenKind.ABSOLUTE, None),
        ("2026-12-24 18:00", WhenKind.LOCAL, None),
        ("hourly", WhenKind.CALENDAR, None),
        ("*:0/15", WhenKind.CALENDAR, None),
        ("Mon..Fri *-*-* 02:00", WhenKind.CALENDAR, None),
        ("99:99", WhenKind.CALENDAR, None),  # systemd's to refuse (adapters/calendar.py)
        ("yesterday", WhenKind.CALENDAR, None),
    ],
)
def test_when_forms(text: str, kind: WhenKind, seconds: float | None) -> None:
    when = parse_when(text)
    assert (when.kind, when.seconds) == (kind, seconds)


def test_absolute_times_keep_their_offset() -> None:
    when = parse_when("2026-12-24T18:00:00+01:00")
    assert when.at == datetime(2026, 12, 24, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5m", "a negative duration; a schedule is in the future"),
        ("0s", "more than 0 and at most"),
        ("2026-13-40 10:00", "no such date or time"),
        ("2026-02-30T10:00:00Z", "no such date or time"),
        ("x" * 300, "at most 256 printable characters"),
        ("12:00\n13:00", "at most 256 printable characters"),
        (42, "a relative time (30s, 5m, 1h30m, in 10m)"),
    ],
)
def test_bad_when(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_when(value)


def engine(
    tmp_path: Path, clock: FakeClock | None = None, **admission: Any
) -> tuple[JobService, FakeSystemd, FakeCalendar]:
    config = AgentConfig(state_dir=tmp_path / "state", admission=AdmissionPolicy(**admission))
    calendar = FakeCalendar()
    service = job_service(
        config,
        store=SqliteJobStore(config.database),
        clock=clock or FakeClock(NOW),
        calendar=calendar,
    )
    systemd = FakeSystemd(service.on_systemd_event)
    service.attach(systemd)
    return service, systemd, calendar


async def settled(service: JobService) -> None:
    for _ in range(5):
        await asyncio.sleep(0)
    await service.settle()
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_job_scheduled_3s_ahead_waits_for_its_timer_then_runs(tmp_path: Path) -> None:
    service, systemd, _ = engine(tmp_path)

    async def scenario() -> None:
        job = await submit(service, {"command": "true", "schedule": "3s"})
        assert (job.state, job.scheduled_for) == (JobState.SCHEDULED, NOW + timedelta(seconds=3))
        timer = timer_unit(job.id)
        assert systemd.units[timer]["OnCalendar"] == "2026-12-04 12:00:03.000000 UTC"
        assert [u for u, _ in systemd.started] == [timer]  # no unit of the job's yet
        systemd.fire(timer)
        await settled(service)
        current = service.resolve(job.id)
        assert current.state is JobState.RUNNING
        assert [u for u, _ in systemd.started] == [timer, job.unit]
        assert timer in systemd.stopped  # fired: its timer goes
        assert service.resolve(job.id).warnings == ()

    asyncio.run(scenario())


def test_a_local_time_is_read_by_systemd_and_the_past_is_refused(tmp_path: Path) -> None:
    service, _systemd, calendar = engine(tmp_path)
    calendar.local["2026-12-24 18:00"] = datetime(2026, 12, 24, 17, 0, tzinfo=UTC)

    async def scenario() -> None:
        job = await submit(service, {"command": "true", "schedule": "2026-12-24 18:00"})
        assert job.scheduled_for == datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
        with pytest.raises(JobletError) as past:
            await submit(service, {"command": "true", "schedule": "2020-01-01T00:00:00Z"})
        assert past.value.code is ErrorCode.INVALID
        assert past.value.message.startswith(
            "schedule: '2020-01-01T00:00:00Z' is not valid; 2020-01-01T00:00:00+00:00 is in "
            "the past (now 2026-12-04T12:00:00+00:00)"
        )
        with pytest.raises(JobletError) as unreadable:
            await submit(service, {"command": "true", "schedule": "2026-12-25 10:00"})
        assert "systemd: Failed to parse" in unreadable.value.message
        with pytest.raises(JobletError) as recurring:
            await submit(service, {"command": "true", "schedule": "hourly"})
        assert "a calendar expression is a recurring schedule: POST /v1/schedules" in (
            recurring.value.message
        )
        assert [r.id for r in service.list()] == [job.id]  # the refused left nothing

    asyncio.run(scenario())


def test_cancel_of_a_scheduled_job_removes_its_timer(tmp_path: Path) -> None:
    service, systemd, _ = engine(tmp_path)

    async def scenario() -> None:
        job = await submit(service, {"command": "true", "schedule": "1h"})
        canceled = await service.cancel(job.id)
        assert canceled.state is JobState.CANCELED
        await settled(service)
        assert timer_unit(job.id) not in systemd.units
        # A firing that was under way changes nothing.
        service.on_systemd_event(JobDone(f"joblet-sched-{job.id}.service", "done"))
        await settled(service)
        assert service.resolve(job.id).state is JobState.CANCELED
        assert [u for u, _ in systemd.started if u.startswith("joblet-job-")] == []

    asyncio.run(scenario())


def test_a_firing_with_no_room_queues_the_job(tmp_path: Path) -> None:
    service, systemd, _ = engine(tmp_path, max_running=1)

    async def scenario() -> None:
        running = await submit(service, {"command": "true"})
        job = await submit(service, {"command": "true", "schedule": "10s"})
        systemd.fire(timer_unit(job.id))
        await settled(service)
        assert service.resolve(job.id).state is JobState.QUEUED
        systemd.end(running.unit, result="success", code="exited", status="0")
        await settled(service)
        assert service.resolve(job.id).state is JobState.RUNNING

    asyncio.run(scenario())


def test_the_agents_start_remakes_lost_timers_and_runs_missed_jobs_once(tmp_path: Path) -> None:
    """PID 1 lost every transient unit (a reboot): a job whose time is still to come gets its
    timer again; one whose time passed meanwhile runs once, at the agent's start, saying so."""
    service, systemd, _ = engine(tmp_path)
    clock = service.clock
    assert isinstance(clock, FakeClock)

    async def before() -> tuple[str, str]:
        soon = await submit(service, {"command": "true", "schedule": "30s"})
        later = await submit(service, {"command": "true", "schedule": "2h"})
        return soon.id, later.id

    soon, later = asyncio.run(before())
    systemd.lose_transient_units()
    clock.advance(timedelta(minutes=5))  # soon's time passed while the host was down
    again, systemd, _ = engine(tmp_path, clock)

    async def after() -> None:
        await again.reconcile()
        await settled(again)
        missed = again.resolve(soon)
        assert missed.state is JobState.RUNNING
        assert missed.warnings == (
            "its start time 2026-12-04T12:00:30+00:00 passed while no agent ran: it started "
            "when the agent did",
        )
        assert systemd.units[timer_unit(later)]["OnCalendar"] == "2026-12-04 14:00:00.000000 UTC"
        assert again.resolve(later).state is JobState.SCHEDULED
        # Its timer's own firing, had it come too, starts nothing twice.
        again.on_systemd_event(JobDone(f"joblet-sched-{soon}.service", "done"))
        await settled(again)
        assert [u for u, _ in systemd.started].count(missed.unit) == 1
        assert again.resolve(soon) == missed

    asyncio.run(after())


# -- recurring schedules ----------------------------------------------------------------------

EVERY_5S = "*:*:0/5"


def usec(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def schedules(
    tmp_path: Path, clock: FakeClock | None = None, **admission: Any
) -> tuple[ScheduleService, FakeSystemd, FakeCalendar]:
    jobs, systemd, calendar = engine(tmp_path, clock, **admission)
    calendar.elapses[EVERY_5S] = [NOW + timedelta(seconds=5 * n) for n in range(1, 1000)]
    service = ScheduleService(
        SqliteScheduleStore(jobs.config.database), jobs, calendar=calendar, clock=jobs.clock
    )
    service.attach(systemd)
    return service, systemd, calendar


async def create(service: ScheduleService, **body: Any) -> ScheduleRecord:
    request = {"calendar": EVERY_5S, "job": {"command": "true"}, **body}
    jobs = service.jobs
    return await service.create(
        parse_schedule_request(request, jobs.config.jobs, jobs.host), owner="alice"
    )


async def fire(service: ScheduleService, systemd: FakeSystemd, record: Any, at: datetime) -> None:
    systemd.fire(record.timer, usec(at))
    await settled(service.jobs)
    await service.settle()
    await settled(service.jobs)


def test_each_firing_makes_a_run_linked_to_its_schedule(tmp_path: Path) -> None:
    service, systemd, _ = schedules(tmp_path)

    async def scenario() -> None:
        record = await create(service, name="every5")
        assert systemd.units[record.timer]["OnCalendar"] == EVERY_5S
        first = NOW + timedelta(seconds=5)
        await fire(service, systemd, record, first)
        runs = service.runs(record, limit=10)
        assert [(r.state, r.scheduled_for, r.schedule) for r in runs] == [
            (JobState.RUNNING, first, record.id)
        ]
        # The same firing seen again (the agent's start and its signal) makes no second run.
        await fire(service, systemd, record, first)
        assert len(service.runs(record, limit=10)) == 1
        systemd.end(runs[0].unit, result="success", code="exited", status="0")
        await fire(service, systemd, record, first + timedelta(seconds=5))
        assert len(service.runs(record, limit=10)) == 2
        assert service.resolve("every5").runs == 2

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("overlap", "runs", "skipped", "second"),
    [
        ("skip", 1, 1, None),
        ("parallel", 2, 0, JobState.RUNNING),
        ("queue", 2, 0, JobState.QUEUED),  # until the first ends
    ],
)
def test_overlap(
    tmp_path: Path, overlap: str, runs: int, skipped: int, second: JobState | None
) -> None:
    service, systemd, _ = schedules(tmp_path)

    async def scenario() -> None:
        record = await create(service, overlap=overlap)
        await fire(service, systemd, record, NOW + timedelta(seconds=5))
        await fire(service, systemd, record, NOW + timedelta(seconds=10))
        current = service.resolve(record.id)
        assert (current.runs, current.skipped) == (runs, skipped)
        made = sorted(service.runs(record, limit=10), key=lambda r: r.scheduled_for or NOW)
        assert made[0].state is JobState.RUNNING
        if second is not None:
            assert made[1].state is second
        if overlap == "queue":
            systemd.end(made[0].unit, result="success", code="exited", status="0")
            await settled(service.jobs)
            assert service.jobs.resolve(made[1].id).state is JobState.RUNNING

    asyncio.run(scenario())


def test_pause_resume_delete(tmp_path: Path) -> None:
    service, systemd, _ = schedules(tmp_path, max_running=1)
    clock = service.clock
    assert isinstance(clock, FakeClock)

    async def scenario() -> None:
        blocker = await submit(service.jobs, {"command": "true"})
        record = await create(service, overlap="parallel")
        paused = await service.pause(record)
        assert paused.state is ScheduleState.PAUSED and record.timer not in systemd.units
        assert await service.next_elapse(paused) is None
        clock.advance(timedelta(minutes=1))
        resumed = await service.resume(paused)
        assert record.timer in systemd.units and resumed.last_fired_at == clock.now()
        await fire(service, systemd, record, clock.now() + timedelta(seconds=5))
        waiting = service.runs(record)[0]
        assert waiting.state is JobState.QUEUED  # no room: the blocker runs
        canceled = await service.delete(resumed)
        assert canceled == [waiting.id]
        assert record.timer not in systemd.units
        assert service.jobs.resolve(waiting.id).state is JobState.CANCELED
        assert service.jobs.list(schedule=record.id)  # its runs stay, like any job
        with pytest.raises(JobletError) as gone:
            service.resolve(record.id)
        assert gone.value.code is ErrorCode.NOT_FOUND
        assert blocker.state is JobState.RUNNING

    asyncio.run(scenario())


@pytest.mark.parametrize("catch_up", [True, False])
def test_a_firing_missed_while_pid1_lost_the_timer(tmp_path: Path, catch_up: bool) -> None:
    clock = FakeClock(NOW)
    service, systemd, _ = schedules(tmp_path, clock)

    async def before() -> ScheduleRecord:
        return await create(service, catch_up=catch_up)

    record = asyncio.run(before())
    systemd.lose_transient_units()
    clock.advance(timedelta(seconds=17))  # three elapses passed with the host down
    again, systemd, _ = schedules(tmp_path, clock)

    async def after() -> None:
        await again.reconcile()
        await settled(again.jobs)
        runs = again.runs(record, limit=10)
        assert len(runs) == (1 if catch_up else 0)  # one run for the downtime, not three
        if catch_up:
            assert runs[0].scheduled_for == NOW + timedelta(seconds=5)
            assert "passed while no agent ran" in runs[0].warnings[0]
        assert record.timer in systemd.units  # armed again
        await again.reconcile()  # a second start finds nothing missed
        assert len(again.runs(record, limit=10)) == len(runs)

    asyncio.run(after())


def test_a_firing_no_agent_heard_runs_once_at_the_agents_start(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    service, systemd, _ = schedules(tmp_path, clock)

    async def scenario() -> None:
        record = await create(service)
        systemd.units[record.timer]["LastTriggerUSec"] = usec(NOW + timedelta(seconds=5))
        await service.reconcile()
        await settled(service.jobs)
        assert len(service.runs(record, limit=10)) == 1
        await service.reconcile()
        assert len(service.runs(record, limit=10)) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"calendar": "30s"}, "calendar: '30s' is not valid; a systemd calendar expression"),
        (
            {"job": {"command": "true", "name": "x"}},
            "job.name: 'x' is not valid; a schedule's runs",
        ),
        ({"job": {"command": "true", "schedule": "5m"}}, "job.schedule:"),
        ({"job": {"command": "true", "secret_env": {"K": "v"}}}, "job.secret_env: '***'"),
        ({"overlap": "sometimes"}, "overlap: 'sometimes' is not valid; one of skip, queue"),
        ({"name": "Bad_Name"}, "name: 'Bad_Name' is not valid"),
        ({"job": {"command": "true", "priority": 12}}, "job.priority: 12 is not valid; a whole"),
    ],
)
def test_bad_schedule_requests(body: dict[str, Any], message: str) -> None:
    request = {"calendar": EVERY_5S, "job": {"command": "true"}, **body}
    with pytest.raises(JobletError) as error:
        parse_schedule_request(request, AgentConfig().jobs, HYBRID_HOST)
    assert message in error.value.message


def test_systemd_judges_the_calendar(tmp_path: Path) -> None:
    service, _systemd, calendar = schedules(tmp_path)
    calendar.elapses["2020-01-* 00:00"] = []

    async def scenario() -> None:
        with pytest.raises(JobletError) as refused:
            await create(service, calendar="99:99")
        assert refused.value.message == (
            "calendar: '99:99' is not valid; systemd: Failed to parse calendar specification "
            "'99:99': Invalid argument"
        )
        with pytest.raises(JobletError, match="systemd says it never elapses again"):
            await create(service, calendar="2020-01-* 00:00")
        await create(service, name="taken")
        with pytest.raises(JobletError) as taken:
            await create(service, name="taken")
        assert taken.value.code is ErrorCode.CONFLICT
        assert len(service.list()) == 1

    asyncio.run(scenario())


def test_a_job_waiting_for_its_time_takes_no_room(tmp_path: Path) -> None:
    service, _systemd, _ = engine(tmp_path, max_running=1)

    async def scenario() -> None:
        later = await submit(service, {"command": "true", "schedule": "1h"})
        now = await submit(service, {"command": "true"})
        assert (later.state, now.state) == (JobState.SCHEDULED, JobState.RUNNING)

    asyncio.run(scenario())


def test_a_maintainers_schedule_runs_with_the_volumes_it_was_allowed(tmp_path: Path) -> None:
    """A maintainer (who uses everyone's volumes) schedules a job on bob's volume: each run
    mounts it, as the job would have right now; a developer's schedule could not name it."""
    service, systemd, _ = schedules(tmp_path)
    jobs = service.jobs

    async def scenario() -> None:
        bob = Principal("cert:bob")
        await jobs.volumes.create(VolumeRequest("data", VolumeType.MEMORY, 16 << 20), bob)
        body = {"calendar": EVERY_5S, "job": {"command": "true", "volumes": [{"name": "data"}]}}
        parsed = parse_schedule_request(body, jobs.config.jobs, jobs.host)
        with pytest.raises(JobletError, match="belongs to cert:bob and is not shared"):
            await service.create(parsed, owner="cert:alice")
        record = await service.create(parsed, owner="cert:maint", manages_all=True)
        await fire(service, systemd, record, NOW + timedelta(seconds=5))
        [run] = service.runs(record)
        assert run.state is JobState.RUNNING, run
        # The agent restarts: the schedule it reads back still says so.
        stored = service.store.get(record.id)
        assert stored is not None and stored.manages_all

    asyncio.run(scenario())
