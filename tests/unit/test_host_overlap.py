"""Networks that overlap the host's own addresses or routes are not made (review M8): the host
side finds them (adapters/netlink.py), the service says why, and networks made on the spot are
chosen among the ranges the host does not use."""

from __future__ import annotations

import asyncio
import json
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from joblet_agent.adapters.netlink import REPORT
from joblet_agent.domain.host_routes import HostPrefix, conflicts
from joblet_agent.domain.network import HostState, NetworkRequest
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.job.service import JobService
from joblet_agent.services.network import NET_UNIT_PREFIX, NetworkService
from tests.unit.fakes import FakeSystemd
from tests.unit.test_networks import engine  # noqa: F401 (a fixture)
from tests.unit.wiring import submit

LAN = HostPrefix(IPv4Network("10.0.0.0/24"), "address 10.0.0.5/24 on eth0")
POOL_START = HostPrefix(IPv4Network("10.88.0.0/24"), "route 10.88.0.0/24 dev wg0")


def host_side(systemd: FakeSystemd, host: list[HostPrefix]) -> None:
    """The apply unit as adapters/netlink.py runs it, for what it finds: the report it writes,
    and its failure when a network overlaps the host's."""
    original = systemd.run

    async def run(unit: str, properties: Any, *, within: float, aux: Any = ()) -> str:
        result = await original(unit, properties, within=within, aux=aux)
        if not unit.startswith(NET_UNIT_PREFIX):
            return result
        argv = next(p.value for p in properties if p.name == "ExecStart")[0][1]
        state_file = Path(argv[-1])
        state = HostState.from_json(state_file.read_text())  # noqa: ASYNC240 (a test's files)
        found = conflicts(state.networks, host)
        report = {"conflicts": [c.to_dict() for c in found], "host": [str(p.prefix) for p in host]}
        state_file.with_name(REPORT).write_text(json.dumps(report))
        return result

    systemd.run = run  # type: ignore[method-assign]


Engine = tuple[JobService, NetworkService, FakeSystemd]


def test_a_network_on_the_hosts_lan_is_refused_naming_it(engine: Engine) -> None:  # noqa: F811
    _jobs, networks, systemd = engine
    host_side(systemd, [LAN])
    with pytest.raises(JobletError) as refused:
        asyncio.run(networks.create(NetworkRequest("lan", IPv4Network("10.0.0.0/16")), "alice"))
    assert refused.value.code is ErrorCode.INVALID
    assert refused.value.message == (
        "cidr: '10.0.0.0/16' overlaps the host's address 10.0.0.5/24 on eth0 (network 'lan')"
    )
    assert networks.networks() == []  # nothing half-done


def test_a_network_made_on_the_spot_avoids_the_hosts_ranges(engine: Engine) -> None:  # noqa: F811
    jobs, _networks, systemd = engine
    host_side(systemd, [POOL_START])

    async def scenario() -> None:
        record = await submit(jobs, {"command": "true", "network": "web"}, may_create_networks=True)
        assert record.warnings == (
            "network 'web' did not exist: created (10.88.1.0/24, outbound NAT)",
        )

    asyncio.run(scenario())


def test_a_network_the_host_took_over_refuses_its_jobs_and_blocks_no_other(
    engine: Engine,  # noqa: F811
) -> None:
    """A network made while the range was free, then the host gained a route there (a VPN came
    up): the apply leaves it out; another network is still made, and jobs on the one left out
    are refused saying why."""
    jobs, networks, systemd = engine
    host: list[HostPrefix] = []
    host_side(systemd, host)

    async def scenario() -> None:
        await networks.create(NetworkRequest("old", IPv4Network("10.0.0.0/24")), "a")
        host.append(LAN)
        made = await networks.create(NetworkRequest("new", IPv4Network("10.50.0.0/24")), "a")
        assert made.name == "new"
        with pytest.raises(JobletError) as refused:
            await submit(jobs, {"command": "true", "network": "old"})
        assert refused.value.message == (
            "cidr: '10.0.0.0/24' overlaps the host's address 10.0.0.5/24 on eth0 (network 'old')"
        )

    asyncio.run(scenario())
