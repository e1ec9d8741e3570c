"""What the benchmarks share: percentiles, a throwaway engine, client certificates."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from joblet_agent.adapters.systemd_dbus import SystemdBus
from joblet_agent.daemon import wire
from joblet_agent.domain.capacity import AdmissionPolicy
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobRecord
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.pki.store import Pki
from joblet_agent.ports import JobDone, RuntimeCatalog, UnitGone
from joblet_agent.services.job.lifecycle import UNIT_PREFIXES
from joblet_agent.services.job.service import JobService

PKI_DIR = Path("/etc/joblet/pki")


def pct(values: list[float], q: float) -> float:
    """The q-quantile of seconds, in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


@asynccontextmanager
async def engine(
    also: Callable[[JobDone | UnitGone], None] | None = None,
    runtimes: RuntimeCatalog | None = None,
    admission: AdmissionPolicy | None = None,
) -> AsyncIterator[tuple[JobService, SystemdBus]]:
    """A JobService of its own (own state directory under /var/lib/joblet) on the real bus,
    wired as the agent wires itself; `also` receives the same systemd signals (a reference
    measured next to the engine); `runtimes`, the runtimes its jobs may use (else the host's);
    `admission`, its caps (else joblet.yml's defaults)."""
    state = Path(f"/var/lib/joblet/bench-{uuid.uuid4().hex[:8]}")
    config = AgentConfig(state_dir=state, admission=admission or AdmissionPolicy())
    agent = wire(config)
    service, store = agent.jobs, agent.store
    if runtimes is not None:
        service.runtimes = runtimes

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
        agent.schedule_store.close()
        agent.network_store.close()
        store.close()
        shutil.rmtree(state, ignore_errors=True)


async def submit(service: JobService, body: Mapping[str, object]) -> JobRecord:
    """A job request as the API hands it to the engine: parsed first."""
    return await service.submit(
        parse_job_request(body, service.config.jobs, service.host), owner="bench"
    )


def client_config(role: str = "developer") -> str:
    """An rnx-config.yml for the local TCP API (creates the PKI if the host has none)."""
    pki = Pki(PKI_DIR)
    if not (PKI_DIR / "ca.crt").exists():
        raise SystemExit("no PKI: run `joblet-agent pki init` and restart joblet.service")
    out = Path(f"/tmp/bench-{role}-{uuid.uuid4().hex[:6]}")
    name = f"bench-{uuid.uuid4().hex[:6]}"
    return str(pki.issue_client(name, role, out_dir=out, address="localhost:50051"))
