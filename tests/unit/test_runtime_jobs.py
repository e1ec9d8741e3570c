"""Jobs with a runtime, against fakes: resolved before anything starts, checked against the
runtime's requirements, the program found in the runtime's tree, the release recorded; the
runtime manager refuses to remove or replace a runtime a job still uses."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.adapters.runtime_store import RuntimeDirectory
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobState
from joblet_agent.domain.rbac import Caller, Role
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.job.service import JobService
from joblet_agent.services.runtime import RuntimeService, Source
from tests.unit.fakes import FakeSystemd
from tests.unit.wiring import job_service, submit

ADMIN = Caller("root", Role.ADMIN, "unix")


def write_runtime(root: Path, name: str, **fields: Any) -> Path:
    """An installed runtime with its own /usr holding bin/sh and bin/tool."""
    top = root / "tool" / name
    (top / "rootfs/usr/bin").mkdir(parents=True)
    for program in ("sh", "tool"):
        (top / "rootfs/usr/bin" / program).write_text("#!/bin/sh\n")
        (top / "rootfs/usr/bin" / program).chmod(0o755)
    spec = {
        "name": name,
        "language": "tool",
        "version": "1",
        "mounts": [{"source": "rootfs/usr", "target": "/usr"}],
        "environment": {"PATH_PREPEND": "/usr/lib/tool/bin", "TOOL_HOME": "/usr/lib/tool"},
        **fields,
    }
    (top / "runtime.yml").write_text(yaml.safe_dump(spec))
    return top


@pytest.fixture
def world(tmp_path: Path) -> tuple[JobService, FakeSystemd, RuntimeService]:
    config = AgentConfig(state_dir=tmp_path / "state", runtimes_dir=tmp_path / "runtimes")
    runtimes = RuntimeDirectory(config.runtimes_dir, arch="amd64")
    runtimes.prepare()
    service = job_service(config, store=SqliteJobStore(config.database), runtimes=runtimes)
    systemd = FakeSystemd(service.on_systemd_event)
    service.attach(systemd)
    return service, systemd, RuntimeService(runtimes, service)


def props(systemd: FakeSystemd) -> dict[str, Any]:
    _, properties = systemd.started[-1]
    return {p.name: p.value for p in properties}


def test_a_job_runs_the_runtimes_program(world: tuple[JobService, FakeSystemd, Any]) -> None:
    service, systemd, _ = world
    top = write_runtime(service.config.runtimes_dir, "tool-1", relax=["wx-memory"])

    async def scenario() -> None:
        record = await submit(service, {"command": "tool", "runtime": "tool:1"}, owner="a")
        assert record.spec.runtime == "tool-1@1.0.0"
        assert record.spec.relax == ("wx-memory",)
        assert any("relaxes isolation" in w for w in record.warnings)
        started = props(systemd)
        # joblet-init runs it, found in the runtime's tree (init's argv: options, --, program)
        assert started["ExecStart"][0][1][1:3] == ["--", "/usr/bin/tool"]
        assert [str(top / "rootfs/usr"), "/usr", False, 0] in started["BindReadOnlyPaths"]
        assert ["/usr", "/usr", True, 0] not in started["BindReadOnlyPaths"]
        env = started["Environment"]
        assert env[0].startswith("PATH=/usr/lib/tool/bin:/usr/local/sbin")
        assert "TOOL_HOME=/usr/lib/tool" in env
        assert started["MemoryDenyWriteExecute"] is False

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        ({"runtime": "tool-2"}, ErrorCode.NOT_FOUND, "'tool-2' is not installed; installed:"),
        ({"runtime": "tool-1@9"}, ErrorCode.NOT_FOUND, "installed at release 1.0.0, not 9"),
        (
            {"runtime": "tool-1", "limits": {"memory_bytes": "64M"}},
            ErrorCode.INVALID,
            "64M is below what runtime tool-1 needs: min_memory 128M",
        ),
        ({"runtime": "tool-1", "command": "python3"}, ErrorCode.INVALID, "'python3' was not found"),
    ],
)
def test_refusals_start_nothing(
    world: tuple[JobService, FakeSystemd, Any],
    request_: dict[str, Any],
    code: ErrorCode,
    message: str,
) -> None:
    service, systemd, _ = world
    write_runtime(service.config.runtimes_dir, "tool-1", requirements={"min_memory": "128M"})

    async def scenario() -> None:
        with pytest.raises(JobletError) as refused:
            await submit(service, {"command": "tool", **request_}, owner="a")
        assert refused.value.code is code
        assert message in refused.value.message

    asyncio.run(scenario())
    assert systemd.started == []
    assert service.list() == []


def _archive(name: str) -> bytes:
    buffer = io.BytesIO()
    spec = yaml.safe_dump({"name": name, "language": "tool", "version": "1"}).encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as out:
        info = tarfile.TarInfo("runtime.yml")
        info.size = len(spec)
        out.addfile(info, io.BytesIO(spec))
    return buffer.getvalue()


def test_a_runtime_in_use_is_neither_removed_nor_replaced(
    world: tuple[JobService, FakeSystemd, RuntimeService],
) -> None:
    service, systemd, manager = world
    write_runtime(service.config.runtimes_dir, "tool-1")

    async def chunks(data: bytes) -> Any:
        yield data

    async def scenario() -> None:
        record = await submit(service, {"command": "tool", "runtime": "tool-1"}, owner="a")
        with pytest.raises(JobletError, match=r"cannot be removed: 1 job\(s\) still use it"):
            manager.remove("tool-1")
        data = _archive("tool-1")
        with pytest.raises(JobletError, match="cannot be replaced") as refused:
            await manager.install(
                "tool-1",
                chunks(data),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                caller=ADMIN,
            )
        assert refused.value.code is ErrorCode.CONFLICT
        systemd.end(record.unit, result="success", code="exited", status="0")
        assert (await service.wait(record.id, within=1)).state is JobState.COMPLETED
        assert manager.remove("tool-1").name == "tool-1"
        assert manager.installed() == []

    asyncio.run(scenario())


def test_smoke_test_runs_as_a_job(world: tuple[JobService, FakeSystemd, RuntimeService]) -> None:
    service, systemd, manager = world
    write_runtime(service.config.runtimes_dir, "tool-1", smoke_test=["tool", "--version"])
    write_runtime(service.config.runtimes_dir, "tool-2")

    async def scenario() -> None:
        record = await manager.test("tool-1", owner="bob")
        assert (record.owner, record.spec.argv, record.spec.name) == (
            "bob",
            ("tool", "--version"),
            "runtime-test",
        )
        systemd.end(record.unit, result="success", code="exited", status="0")
        with pytest.raises(JobletError, match="tool-2 has no smoke_test"):
            await manager.test("tool-2", owner="bob")

    asyncio.run(scenario())


MAINTAINER = Caller("mia", Role.MAINTAINER, "tls")


def _install(
    manager: RuntimeService, caller: Caller, source: Source, read: list[bytes] | None = None
) -> Any:
    """Install tool-2 with `source`; what the agent read of the body goes into `read`."""
    data = _archive("tool-2")

    async def chunks() -> Any:
        if read is not None:
            read.append(data)
        yield data

    return asyncio.run(
        manager.install(
            "tool-2",
            chunks(),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            caller=caller,
            source=source,
        )
    )


def test_an_install_over_plain_http_is_an_admins(
    world: tuple[JobService, FakeSystemd, RuntimeService],
) -> None:
    _, _, manager = world
    insecure = Source(registry="http://r.example/registry.json", insecure=True)
    read: list[bytes] = []
    with pytest.raises(JobletError) as refused:
        _install(manager, MAINTAINER, insecure, read)
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert "runtime.install-over-plain-http" in refused.value.message
    assert read == []  # refused before a byte of the archive was read
    assert manager.installed() == []
    runtime = _install(manager, ADMIN, insecure)
    assert runtime.provenance is not None and runtime.provenance.insecure
    assert runtime.provenance.registry == "http://r.example/registry.json"


@pytest.mark.parametrize("key", ["registry", "archive"])
def test_a_plain_http_source_needs_the_insecure_flag(
    world: tuple[JobService, FakeSystemd, RuntimeService], key: str
) -> None:
    _, _, manager = world
    with pytest.raises(JobletError) as refused:
        _install(manager, ADMIN, Source(**{key: "http://r.example/x"}))  # type: ignore[arg-type]
    assert refused.value.code is ErrorCode.INVALID
    assert f"{key}: 'http://r.example/x' is plain http://" in refused.value.message
    assert manager.installed() == []


def test_where_a_runtime_came_from_is_recorded_with_it(
    world: tuple[JobService, FakeSystemd, RuntimeService],
) -> None:
    _, _, manager = world
    source = Source(
        registry="https://r.example/registry.json", archive="https://r.example/tool-2.tar.gz"
    )
    installed = _install(manager, MAINTAINER, source)
    data = _archive("tool-2")
    [found] = manager.installed()  # read back from disk
    assert found == installed
    assert found.sha256 == hashlib.sha256(data).hexdigest()
    assert found.provenance is not None
    assert found.provenance.registry == "https://r.example/registry.json"
    assert found.provenance.archive == "https://r.example/tool-2.tar.gz"
    assert (found.provenance.insecure, found.provenance.installed_by) == (False, "cert:mia")
    assert found.provenance.installed_at is not None
