"""A job's lifetime against fakes: deadline units created with it, extend's new generation
before the old one goes, an ended deadline read as TIMEOUT, idle expiry, pause's refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobState
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.job.service import JobService
from tests.unit.fakes import FakeSystemd
from tests.unit.wiring import job_service, submit


@pytest.fixture
def engine(tmp_path: Path) -> tuple[JobService, FakeSystemd]:
    config = AgentConfig(state_dir=tmp_path / "state")
    service = job_service(config, store=SqliteJobStore(config.database))
    systemd = FakeSystemd(service.on_systemd_event)
    service.attach(systemd)
    return service, systemd


def test_a_timeout_is_a_deadline_timer_and_extend_moves_it(
    engine: tuple[JobService, FakeSystemd],
) -> None:
    service, systemd = engine

    async def scenario() -> None:
        record = await submit(service, {"command": "true", "limits": {"timeout_sec": 60}})
        aux = [name for name, _ in systemd.aux]
        gen0 = f"joblet-deadline-{record.id}-0"
        assert [f"{gen0}.timer", f"{gen0}.service"] == [a for a in aux if "deadline" in a]
        job_props = {p.name: p.value for p in systemd.started[-1][1]}
        assert job_props["Wants"] == [f"{gen0}.timer"] and "RuntimeMaxUSec" not in job_props
        systemd.units[f"{gen0}.timer"] = {"ActiveState": "active"}
        extended = await service.lifetime.extend(record, 1800)
        assert systemd.started[-1][0] == f"joblet-deadline-{record.id}-1.timer"
        assert systemd.stopped == [f"{gen0}.timer"]  # after the new one started
        assert extended.spec.limits.timeout_sec is not None
        assert extended.spec.limits.timeout_sec >= 1800
        # the deadline fired: its marker is active when the job's end is read
        systemd.units[f"joblet-deadline-{record.id}-1.service"] = {"ActiveState": "active"}
        systemd.end(record.unit, result="success", code="killed", status="TERM")
        final = await service.wait(record.id, within=2)
        assert (final.state, final.exit_code, final.result) == (JobState.TIMEOUT, 124, "timeout")

    asyncio.run(scenario())


def test_extend_past_the_admins_maximum_is_refused(tmp_path: Path) -> None:
    from joblet_agent.domain.config import JobPolicy

    config = AgentConfig(state_dir=tmp_path / "state", jobs=JobPolicy(max_timeout_sec=600))
    service = job_service(config, store=SqliteJobStore(config.database))
    service.attach(FakeSystemd(service.on_systemd_event))

    async def scenario() -> JobletError:
        record = await submit(service, {"command": "true", "limits": {"timeout_sec": 60}})
        with pytest.raises(JobletError) as refused:
            await service.lifetime.extend(record, 3600)
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.code is ErrorCode.INVALID and "jobs.max_timeout" in refused.message


def test_an_idle_job_gets_its_idle_marker_unless_busy(
    engine: tuple[JobService, FakeSystemd],
) -> None:
    service, systemd = engine
    busy = {"now": True}
    service.lifetime.busy = lambda job_id: busy["now"]

    async def scenario() -> None:
        record = await submit(service, {"command": "true", "limits": {"idle_timeout_sec": 1}})
        service.lifetime._arm(record.id, 0.05)
        await asyncio.sleep(0.15)
        assert not [u for u, _ in systemd.started if "deadline" in u]  # a session kept it
        busy["now"] = False
        await asyncio.sleep(0.15)
        assert systemd.started[-1][0] == f"joblet-deadline-{record.id}-idle.service"
        systemd.units[f"joblet-deadline-{record.id}-idle.service"] = {"ActiveState": "active"}
        systemd.end(record.unit, result="success", code="killed", status="TERM")
        final = await service.wait(record.id, within=2)
        assert final.state is JobState.TIMEOUT and str(final.reason).startswith("idle")

    asyncio.run(scenario())


def test_pause_where_the_host_cannot_freeze_is_unsupported_and_changes_nothing(
    engine: tuple[JobService, FakeSystemd],
) -> None:
    service, systemd = engine
    systemd.can_freeze = False

    async def scenario() -> None:
        record = await submit(service, {"command": "true"})
        with pytest.raises(JobletError) as refused:
            await service.lifetime.pause(record)
        assert refused.value.code is ErrorCode.UNSUPPORTED
        assert service.resolve(record.id).state is JobState.RUNNING
        systemd.can_freeze = True
        assert (await service.lifetime.pause(record)).state is JobState.PAUSED
        assert record.unit in systemd.frozen
        resumed = await service.lifetime.resume(service.resolve(record.id))
        assert resumed.state is JobState.RUNNING and record.unit not in systemd.frozen

    asyncio.run(scenario())
