"""When jobs start: the queue's order, the agent's caps and owners' quotas (domain/admission.py,
services/job/queue.py) against fakes, and the queue kept in SQLite across a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.domain.admission import Capacity, check_ever_fits, next_admissions, queue_key
from joblet_agent.domain.capacity import (
    AdmissionPolicy,
    OwnerQuota,
    Quotas,
    check_against_host,
)
from joblet_agent.domain.config import AgentConfig, JobPolicy, parse_config
from joblet_agent.domain.job import JobRecord, JobSpec, JobState, Limits
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.job.service import JobService
from joblet_agent.units.owner import owner_slice
from tests.unit.fakes import FakeClock, FakeSystemd
from tests.unit.hosts import HYBRID_HOST
from tests.unit.wiring import job_service, submit

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
GIB = 1024**3


def queued(
    name: str, *, owner: str = "a", priority: int = 5, at: float = 0, **limits: Any
) -> JobRecord:
    return JobRecord(
        id=name,
        spec=JobSpec(command="true", limits=Limits(**limits)),
        state=JobState.QUEUED,
        owner=owner,
        created_at=T0,
        priority=priority,
        queued_at=T0 + timedelta(seconds=at),
    )


def in_order(records: list[JobRecord], step: float = 60) -> list[JobRecord]:
    return sorted(records, key=lambda r: queue_key(r.queued_at or T0, r.priority, step))


def capacity(running: int = 2, **changes: Any) -> Capacity:
    return dataclasses.replace(
        Capacity(max_running=running, memory_bytes=None, cpu_percent=None, quotas=Quotas()),
        **changes,
    )


# -- the order and the caps (pure) ----------------------------------------------------------


def test_priority_then_first_come_first_served() -> None:
    jobs = [
        queued("a1", at=0),
        queued("b1", at=1),
        queued("hi", priority=8, at=2),
        queued("a2", at=3),
    ]
    chosen = next_admissions(in_order(jobs), [], capacity(running=3))
    assert [r.id for r in chosen] == ["hi", "a1", "b1"]


def test_a_head_start_is_not_a_pass_for_ever() -> None:
    """A job that waited longer than a higher priority's head start goes first: none starves."""
    old = queued("old", priority=0, at=0)
    late = queued("late", priority=9, at=9 * 60 + 1)  # after 9 levels' head start
    chosen = next_admissions(in_order([late, old]), [], capacity(running=1))
    assert [r.id for r in chosen] == ["old"]


def test_the_agents_cap_stops_the_pass_no_small_job_jumps_a_big_one() -> None:
    running = [dataclasses.replace(queued("r", memory_bytes=3 * GIB), state=JobState.RUNNING)]
    big = queued("big", at=0, memory_bytes=2 * GIB)
    small = queued("small", at=1, memory_bytes=GIB // 2)
    chosen = next_admissions([big, small], running, capacity(running=10, memory_bytes=4 * GIB))
    assert chosen == []
    chosen = next_admissions([big, small], [], capacity(running=10, memory_bytes=4 * GIB))
    assert [r.id for r in chosen] == ["big", "small"]


def test_an_owner_at_their_cap_keeps_their_place_and_keeps_nobody_waiting() -> None:
    quotas = Quotas(owners=MappingProxyType({"alice": OwnerQuota(max_running=1)}))
    running = [dataclasses.replace(queued("r", owner="alice"), state=JobState.RUNNING)]
    jobs = [queued("alice2", owner="alice", at=0), queued("bob1", owner="bob", at=1)]
    chosen = next_admissions(jobs, running, capacity(running=5, quotas=quotas))
    assert [r.id for r in chosen] == ["bob1"]
    # Once alice's job ended, hers is first again.
    chosen = next_admissions(jobs, [], capacity(running=5, quotas=quotas))
    assert [r.id for r in chosen] == ["alice2", "bob1"]


def test_cpu_share_counts_quotas_and_pinned_cores() -> None:
    jobs = [queued("q", at=0, cpu_percent=150), queued("pinned", at=1, cpu_cores=(0, 1))]
    chosen = next_admissions(jobs, [], capacity(running=10, cpu_percent=300))
    assert [r.id for r in chosen] == ["q"]  # 150 + 200 > 300


def test_a_job_that_could_never_start_is_refused() -> None:
    quotas = Quotas(default=OwnerQuota(memory_bytes=GIB, cpu_percent=100))
    caps = capacity(quotas=quotas, memory_bytes=4 * GIB)
    check_ever_fits(Limits(memory_bytes=GIB), "alice", caps)
    with pytest.raises(JobletError) as error:
        check_ever_fits(Limits(memory_bytes=2 * GIB), "alice", caps)
    assert error.value.code is ErrorCode.INVALID
    assert "limits.memory_bytes: 2147483648 is not valid; at most 1073741824" in error.value.message
    assert "quota of alice" in error.value.message
    with pytest.raises(JobletError, match=r"limits\.cpu_percent: 200 is not valid; at most 100"):
        check_ever_fits(Limits(cpu_percent=200), "alice", caps)


# -- joblet.yml -----------------------------------------------------------------------------


def test_config_admission_and_quotas() -> None:
    config = parse_config(
        {
            "admission": {"max_running": 4, "memory_share": "80%", "priority_step": "30s"},
            "quotas": {
                "default": {"memory_max": "1G", "max_running": 2},
                "owners": {"cert:alice": {"max_running": 5, "memory_max": None}},
            },
        },
        "joblet.yml",
    )
    assert config.admission == AdmissionPolicy(
        max_running=4, memory_share=0.8, priority_step_sec=30.0
    )
    assert config.quotas.of("bob") == OwnerQuota(memory_bytes=GIB, max_running=2)
    # An owner's entry changes the keys it gives (null: no limit), and keeps the default's.
    assert config.quotas.of("cert:alice") == OwnerQuota(memory_bytes=None, max_running=5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"admission": {"max_running": 2000}},
            "joblet.yml: admission.max_running: 2000 is not valid; the maximum is 1024",
        ),
        (
            {"admission": {"memory_share": "150%"}},
            "admission.memory_share: '150%' is not valid; a share of the host is more than 0%",
        ),
        ({"admission": {"cpu_share": "lots"}}, "admission.cpu_share: 'lots' is not valid"),
        ({"quotas": {"default": {"memory_max": "1M"}}}, "quotas.default.memory_max: 1048576"),
        ({"quotas": {"default": {"cpu_weight": 0}}}, "quotas.default.cpu_weight: 0 is not valid"),
        ({"quotas": {"owners": {"bob": {"memory": "1G"}}}}, "quotas.owners.bob.memory: unknown"),
    ],
)
def test_config_errors_name_the_key_and_what_is_allowed(data: Any, message: str) -> None:
    with pytest.raises(JobletError) as error:
        parse_config(data, "joblet.yml")
    assert error.value.code is ErrorCode.CONFIG
    assert message in error.value.message


def test_quotas_beyond_the_host_are_refused_at_start() -> None:
    too_much = Quotas(
        owners=MappingProxyType({"bob": OwnerQuota(memory_bytes=HYBRID_HOST.memory_bytes + 1)})
    )
    with pytest.raises(
        JobletError,
        match=r"quotas.owners.bob.memory_max: \d+ is not valid; at most this host's memory",
    ):
        check_against_host(AdmissionPolicy(), too_much, HYBRID_HOST)
    cpus = Quotas(default=OwnerQuota(cpu_percent=len(HYBRID_HOST.cpus) * 100 + 1))
    with pytest.raises(JobletError, match=r"quotas\.default\.cpu_quota"):
        check_against_host(AdmissionPolicy(), cpus, HYBRID_HOST)


# -- the engine's queue ---------------------------------------------------------------------


def engine(tmp_path: Path, **admission: Any) -> tuple[JobService, FakeSystemd]:
    config = AgentConfig(
        state_dir=tmp_path / "state",
        jobs=JobPolicy(max_running=8),
        admission=AdmissionPolicy(**admission),
        quotas=Quotas(default=OwnerQuota(memory_bytes=GIB)),
    )
    service = job_service(config, store=SqliteJobStore(config.database), clock=FakeClock())
    systemd = FakeSystemd(service.on_systemd_event)
    service.attach(systemd)
    return service, systemd


async def settled(service: JobService) -> None:
    for _ in range(5):
        await asyncio.sleep(0)
    await service.queue.settle()
    for _ in range(5):
        await asyncio.sleep(0)


def test_capacity_two_five_jobs_run_in_priority_and_fifo_order(tmp_path: Path) -> None:
    service, systemd = engine(tmp_path, max_running=2)
    clock = service.clock
    assert isinstance(clock, FakeClock)

    async def scenario() -> None:
        jobs = []
        for priority in (5, 5, 5, 2, 8):
            jobs.append(await submit(service, {"command": "true", "priority": priority}))
            clock.advance(timedelta(seconds=1))
        assert [j.state for j in jobs] == [JobState.RUNNING] * 2 + [JobState.QUEUED] * 3
        assert service.queue_positions() == {jobs[4].id: 1, jobs[2].id: 2, jobs[3].id: 3}
        started = [unit for unit, _ in systemd.started if unit.startswith("joblet-job-")]
        for job in jobs[:2]:
            systemd.end(job.unit, result="success", code="exited", status="0")
            await service.wait(job.id, within=1)
        await settled(service)
        started = [u for u, _ in systemd.started if u.startswith("joblet-job-")][len(started) :]
        assert started == [jobs[4].unit, jobs[2].unit]
        assert service.queue_positions() == {jobs[3].id: 1}
        canceled = await service.cancel(jobs[3].id)
        assert (canceled.state, canceled.reason) == (JobState.CANCELED, "canceled before it ran")
        assert service.queue_positions() == {}

    asyncio.run(scenario())


def test_the_queue_outlives_the_agent(tmp_path: Path) -> None:
    """A new agent on the same database: the same jobs queued in the same order, none started
    twice; and what waits with a queued job (its upload's place, its secrets) is on disk."""
    service, _systemd = engine(tmp_path, max_running=1)

    async def before() -> list[JobRecord]:
        body = {"command": "true", "secret_env": {"TOKEN": "s3cret"}}
        return [await submit(service, body) for _ in range(3)]

    jobs = asyncio.run(before())
    assert [j.state for j in jobs] == [JobState.RUNNING, JobState.QUEUED, JobState.QUEUED]
    secrets = Path(service.config.jobs_dir) / jobs[1].id / "secret.env"
    assert secrets.read_text() == 'TOKEN="s3cret"\n'
    again, systemd = engine(tmp_path, max_running=1)
    systemd.units[jobs[0].unit] = {"ActiveState": "active", "RootDirectory": "/"}
    systemd.records[jobs[0].unit] = Path(service.config.jobs_dir) / jobs[0].id / "end"

    async def after() -> None:
        await again.reconcile()
        assert again.queue_positions() == {jobs[1].id: 1, jobs[2].id: 2}
        assert [u for u, _ in systemd.started] == []  # the running one is not started again
        systemd.end(jobs[0].unit, result="success", code="exited", status="0")
        await again.wait(jobs[0].id, within=1)
        await settled(again)
        assert [u for u, _ in systemd.started if u.startswith("joblet-job-")] == [jobs[1].unit]
        started = again.resolve(jobs[1].id)
        props = dict((p.name, p.value) for p in systemd.started[-1][1])
        assert props["EnvironmentFiles"] == [[str(secrets), True]]
        assert started.state is JobState.RUNNING
        assert not secrets.exists()  # the job's process has its environment now

    asyncio.run(after())


def test_limits_above_the_owners_quota_are_refused_not_queued_for_ever(tmp_path: Path) -> None:
    service, _ = engine(tmp_path, max_running=1)

    async def scenario() -> None:
        with pytest.raises(JobletError) as error:
            await submit(service, {"command": "true", "limits": {"memory_bytes": "2G"}})
        assert "at most 1073741824, the quota of a (memory_max): the job could never start" in (
            error.value.message
        )
        assert service.list() == []

    asyncio.run(scenario())


def test_a_full_queue_refuses_more(tmp_path: Path) -> None:
    service, _ = engine(tmp_path, max_running=1, max_queued=2, max_queued_per_owner=1)

    async def scenario() -> None:
        await submit(service, {"command": "true"}, owner="a")
        await submit(service, {"command": "true"}, owner="a")
        with pytest.raises(JobletError) as mine:
            await submit(service, {"command": "true"}, owner="a")
        assert mine.value.code is ErrorCode.TOO_MANY
        await submit(service, {"command": "true"}, owner="b")
        with pytest.raises(JobletError) as everyone:
            await submit(service, {"command": "true"}, owner="c")
        assert everyone.value.code is ErrorCode.BUSY

    asyncio.run(scenario())


def test_a_job_from_the_queue_that_fails_to_start_says_why(tmp_path: Path) -> None:
    service, systemd = engine(tmp_path, max_running=1)

    async def scenario() -> None:
        first = await submit(service, {"command": "true"})
        second = await submit(service, {"command": "true"})
        systemd.refuse_next = True
        systemd.end(first.unit, result="success", code="exited", status="0")
        final = await service.wait(second.id, within=1)
        assert final.state is JobState.FAILED
        assert final.reason == "failed to start: systemd refused: Unexpected message contents"
        assert not (Path(service.config.jobs_dir) / second.id).exists()

    asyncio.run(scenario())


def test_jobs_run_in_their_owners_slice_with_the_owners_quota(tmp_path: Path) -> None:
    service, systemd = engine(tmp_path, max_running=4)

    async def scenario() -> None:
        job = await submit(service, {"command": "true"}, owner="bob-smith")
        props = dict((p.name, p.value) for p in systemd.started[-1][1])
        assert props["Slice"] == "joblet-owner-bob\\x2dsmith.slice"
        quota = {p.name: p.value for p in systemd.limits["joblet-owner-bob\\x2dsmith.slice"]}
        assert quota["MemoryMax"] == GIB
        assert quota["TasksMax"] == 2**64 - 1
        assert job.state is JobState.RUNNING

    asyncio.run(scenario())


# -- the database ---------------------------------------------------------------------------


def test_a_database_of_an_agent_before_migrations_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT NOT NULL, "
        "created_at TEXT NOT NULL, record TEXT NOT NULL);"
    )
    old = queued("old-job")
    record = old.to_dict()
    for key in ("priority", "queued_at", "scheduled_for", "schedule"):
        del record[key]
    record["state"] = "COMPLETED"
    db.execute(
        "INSERT INTO jobs VALUES (?, ?, ?, ?, ?)",
        ("old-job", "COMPLETED", "a", T0.isoformat(), json.dumps(record)),
    )
    db.commit()
    db.close()
    store = SqliteJobStore(path)
    loaded = store.get("old-job")
    assert loaded is not None and (loaded.priority, loaded.queued_at) == (5, None)
    store.put(queued("new", priority=9, at=5))
    store.put(queued("newer", priority=9, at=5))
    assert store.queue_order(step_sec=60) == ["new", "newer"]
    store.close()
    versions = sqlite3.connect(path).execute("SELECT owner, version FROM schema_versions")
    assert list(versions) == [("jobs", 2)]
    SqliteJobStore(path).close()  # migrated once: opening again changes nothing


def test_an_oom_kill_at_the_owners_quota_says_so(tmp_path: Path) -> None:
    """cgroup v1: the kernel's log names the owner's slice as the group whose limit was hit,
    and the job's unit as the killed task's group."""
    service, systemd = engine(tmp_path, max_running=4)

    async def scenario() -> None:
        job = await submit(service, {"command": "true"}, owner="alice")
        slice_path = "/joblet.slice/joblet-owner.slice/joblet-owner-alice.slice"
        systemd.kernel_log = (
            "[   10.5] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
            f"oom_memcg={slice_path},task_memcg={slice_path}/{job.unit},"
            "task=python3,pid=10534,uid=4242\n"
        )
        systemd.end(job.unit, result="signal", code="killed", status="KILL")
        final = await service.wait(job.id, within=1)
        assert (final.state, final.result) == (JobState.FAILED, "oom-kill")
        assert final.reason == (
            "oom-kill: its owner's jobs together went over their memory quota "
            f"({GIB} bytes, quotas: memory_max)"
        )

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("owner", "unit"),
    [
        ("alice", "joblet-owner-alice.slice"),
        ("cert:alice", "joblet-owner-cert:alice.slice"),
        ("bob-smith", "joblet-owner-bob\\x2dsmith.slice"),  # no '-': never bob's child slice
        ("a/b", "joblet-owner-a\\x2fb.slice"),
        (".hidden", "joblet-owner-\\x2ehidden.slice"),
        ("x.y", "joblet-owner-x.y.slice"),
        ("zoë", "joblet-owner-zo\\xc3\\xab.slice"),
        ("a b\\c", "joblet-owner-a\\x20b\\x5cc.slice"),
    ],
)
def test_owner_names_are_escaped_into_one_slice_name_component(owner: str, unit: str) -> None:
    assert owner_slice("joblet.slice", owner) == unit
    assert "-" not in unit.removeprefix("joblet-owner-")


def test_an_owner_name_too_long_for_a_unit_name_is_hashed_apart_from_escaped_ones() -> None:
    long = "é" * 100  # 800 bytes escaped
    unit = owner_slice("joblet.slice", long)
    assert len(unit) <= 255 and unit.startswith("joblet-owner-.")
    assert unit != owner_slice("joblet.slice", "é" * 99)
    assert owner_slice("batch.slice", "alice") == "batch-owner-alice.slice"


def test_a_job_without_a_memory_limit_gets_the_smaller_of_the_default_and_its_owners_quota(
    tmp_path: Path,
) -> None:
    """jobs.default_memory (1G) above an owner's quota (256M): the job gets the quota, never a
    refusal for a limit it did not ask for; one that asks for more than the quota is refused."""
    config = AgentConfig(
        state_dir=tmp_path / "state",
        quotas=Quotas(default=OwnerQuota(memory_bytes=256 * 1024**2)),
    )
    service = job_service(config, store=SqliteJobStore(config.database), clock=FakeClock())
    service.attach(FakeSystemd(service.on_systemd_event))

    async def scenario() -> None:
        job = await submit(service, {"command": "true"}, owner="alice")
        assert job.spec.limits.memory_bytes == 256 * 1024**2
        with pytest.raises(JobletError, match="at most 268435456, the quota of alice"):
            await submit(
                service, {"command": "true", "limits": {"memory_bytes": "512M"}}, owner="alice"
            )

    asyncio.run(scenario())


def test_quota_owners_in_joblet_yml_are_certificates_unless_said_otherwise() -> None:
    """Owners are cert:NAME or unix:NAME (issue 16); a bare NAME in quotas.owners is a
    certificate's, so a certificate named `root` never gets local root's quota."""
    quotas = parse_config(
        {
            "quotas": {
                "owners": {"alice": {"max_running": 1}, "unix:root": {"max_running": 2}},
            }
        },
        "joblet.yml",
    ).quotas
    assert quotas.of("cert:alice").max_running == 1
    assert quotas.of("unix:alice").max_running is None
    assert quotas.of("unix:root").max_running == 2
    assert quotas.of("cert:root").max_running is None
    with pytest.raises(JobletError, match=r"quotas.owners.ldap:bob: 'ldap:bob' is not an owner"):
        parse_config({"quotas": {"owners": {"ldap:bob": {"max_running": 1}}}}, "joblet.yml")
    # Errors name the key as joblet.yml wrote it.
    config = parse_config({"quotas": {"owners": {"alice": {"memory_max": "64T"}}}}, "joblet.yml")
    with pytest.raises(JobletError, match=r"joblet.yml: quotas\.owners\.alice\.memory_max: "):
        check_against_host(config.admission, config.quotas, HYBRID_HOST)
