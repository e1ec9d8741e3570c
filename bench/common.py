"""What the benchmarks share: percentiles, a throwaway engine, client certificates."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath

from joblet_agent.adapters.host_probe import probe_host
from joblet_agent.adapters.job_root import JobDirectories, prepare_skeleton
from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.adapters.journal import JournalctlJournal
from joblet_agent.adapters.systemd_dbus import SystemdBus
from joblet_agent.adapters.userdb import publish_pool
from joblet_agent.domain.config import AgentConfig
from joblet_agent.pki.authority import Pki
from joblet_agent.ports import JobDone, RuntimeCatalog, UnitGone
from joblet_agent.services.job.service import UNIT_PREFIXES, JobService

PKI_DIR = Path("/etc/joblet/pki")


def pct(values: list[float], q: float) -> float:
    """The q-quantile of seconds, in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


@asynccontextmanager
async def engine(
    also: Callable[[JobDone | UnitGone], None] | None = None,
    runtimes: RuntimeCatalog | None = None,
) -> AsyncIterator[tuple[JobService, SystemdBus]]:
    """A JobService of its own (own state directory under /var/lib/joblet) on the real bus;
    `also` receives the same systemd signals (a reference measured next to the engine);
    `runtimes`, the runtimes its jobs may use."""
    state = Path(f"/var/lib/joblet/bench-{uuid.uuid4().hex[:8]}")
    config = AgentConfig(state_dir=state)
    config.jobs_dir.mkdir(parents=True)
    publish_pool(config.jobs)
    root = prepare_skeleton(config)
    store = SqliteJobStore(config.database)
    service = JobService(
        config,
        probe_host(config.jobs_dir),
        store,
        JournalctlJournal(),
        files=JobDirectories(),
        runtimes=runtimes,
        root=PurePosixPath(root),
    )

    def dispatch(event: JobDone | UnitGone) -> None:
        service.on_systemd_event(event)
        if also is not None:
            also(event)

    bus = await SystemdBus.connect(UNIT_PREFIXES, dispatch)
    service.attach(bus)
    try:
        yield service, bus
    finally:
        await service.settle()
        bus.disconnect()
        store.close()
        shutil.rmtree(state, ignore_errors=True)


def client_config(role: str = "developer") -> str:
    """An rnx-config.yml for the local TCP API (creates the PKI if the host has none)."""
    pki = Pki(PKI_DIR)
    if not (PKI_DIR / "ca.crt").exists():
        raise SystemExit("no PKI: run `joblet-agent pki init` and restart joblet.service")
    out = Path(f"/tmp/bench-{role}-{uuid.uuid4().hex[:6]}")
    name = f"bench-{uuid.uuid4().hex[:6]}"
    return str(pki.issue_client(name, role, out_dir=out, address="localhost:50051"))
