"""Networks without root: validation, allocation, the job's files and rules, the host's ruleset,
and the service against fakes (the effects are proven in tests/integration/test_networks.py)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from ipaddress import IPv4Network
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from joblet_agent.adapters.clock import SystemClock
from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.adapters.netlink import host_ruleset
from joblet_agent.adapters.network_files import NetworkDirectories
from joblet_agent.adapters.network_store import SqliteNetworkStore
from joblet_agent.api.handlers import job as jobs_api
from joblet_agent.api.handlers import network as networks_api
from joblet_agent.domain.config import Access, AgentConfig, JobPolicy
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.job import JobState
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.domain.network import (
    Endpoint,
    HostState,
    Network,
    allocate_address,
    hosts_file,
    job_resolv_conf,
    new_network,
    parse_egress,
    parse_network_request,
)
from joblet_agent.domain.rbac import Caller, Role
from joblet_agent.domain.sharing import Principal
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.job.service import JobService
from joblet_agent.services.network import NET_UNIT_PREFIX, NetworkService
from joblet_agent.units.network import (
    NO_NETWORK,
    JobNetwork,
    apply_unit_properties,
    helper_units,
    joining,
    network_properties,
    setup_files,
)
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.sandbox import no_network
from tests.unit.fakes import FakeJobFiles, FakeSystemd
from tests.unit.hosts import HYBRID_HOST
from tests.unit.wiring import api_app, job_service, submit

ADMIN = Principal("unix:root", manages_all=True)

NET = Network("backend", IPv4Network("10.42.0.0/24"))


def refused(call: Any, *args: Any, **kwargs: Any) -> JobletError:
    with pytest.raises(JobletError) as caught:
        call(*args, **kwargs)
    return caught.value


# -- the model ------------------------------------------------------------------------------


def made(body: dict[str, Any], *, existing: list[Network], owner: str) -> Network:
    """A network as the API makes it: the request parsed, then checked against the others."""
    return new_network(parse_network_request(body), existing=existing, owner=owner)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"name": "x", "cidr": "8.8.8.0/24"}, "cidr: '8.8.8.0/24' is not valid; a private range"),
        ({"name": "x", "cidr": "10.0.0.0/8"}, "a prefix length from /16 to /28"),
        ({"name": "x", "cidr": "10.42.0.0/25"}, "overlaps network 'backend' (10.42.0.0/24)"),
        ({"name": "x", "cidr": "10.9.0.1/24"}, "host bits set"),
        ({"name": "isolated", "cidr": "10.9.0.0/24"}, "modes, not network names"),
        ({"name": "Web", "cidr": "10.9.0.0/24"}, "lowercase letters"),
        ({"name": "x", "cidr": "10.9.0.0/24", "nat": True}, "nat"),
        ({"cidr": "10.9.0.0/24"}, "name: missing"),
    ],
)
def test_bad_networks_are_refused_naming_field_and_value(body: dict[str, Any], why: str) -> None:
    error = refused(made, body, existing=[NET], owner="alice")
    assert error.code is ErrorCode.INVALID and why in error.message, error.message


def test_network_names_and_bridges() -> None:
    mq = made(
        {"name": "message-queue", "cidr": "10.43.0.0/24", "internal": True},
        existing=[NET],
        owner="alice",
    )
    assert (mq.internal, mq.nat, mq.created_by) == (True, False, "alice")
    assert mq.bridge.startswith("jb-") and len(mq.bridge) <= 15 and mq.bridge != NET.bridge
    again = {"name": "backend", "cidr": "10.50.0.0/24"}
    error = refused(made, again, existing=[NET], owner="a")
    assert error.code is ErrorCode.CONFLICT
    assert Network.from_dict({**NET.to_dict(), "jobs": []}) == NET


@pytest.mark.parametrize(
    ("text", "host", "port", "addresses"),
    [
        ("10.0.0.5", "10.0.0.5", None, ("10.0.0.5",)),
        ("10.0.0.5:443", "10.0.0.5", 443, ("10.0.0.5",)),
        ("10.1.0.0/16:53", "10.1.0.0/16", 53, ("10.1.0.0/16",)),
        ("PyPI.org:443", "pypi.org", 443, ()),
        ("db", "db", None, ()),
    ],
)
def test_egress_syntax(text: str, host: str, port: int | None, addresses: tuple[str, ...]) -> None:
    rule = parse_egress(Fields({}, ""), "allow_egress[0]", text)
    assert (rule.target, rule.host, rule.port, rule.addresses) == (text, host, port, addresses)


@pytest.mark.parametrize("text", ["a:0", "a:65536", "a:x", "[::1]:80", "::1", "bad host", ":80"])
def test_bad_egress_is_refused(text: str) -> None:
    error = refused(parse_egress, Fields({}, ""), "allow_egress[2]", text)
    assert error.message.startswith(f"allow_egress[2]: {text!r} is not valid")


def test_job_request_network_fields() -> None:
    spec = parse_job_request(
        {"command": "true", "network": "backend", "allow_egress": ["10.0.0.1:80"]},
        JobPolicy(),
        HYBRID_HOST,
    ).spec
    assert spec.network == "backend" and spec.allow_egress[0].port == 80
    assert parse_job_request({"command": "true"}, JobPolicy(), HYBRID_HOST).spec.network == "none"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"network": "Bad!"}, "network: 'Bad!' is not valid; one of none, isolated, host"),
        ({"allow_egress": ["10.0.0.1"]}, "the 'none' network has no egress to narrow"),
        ({"network": "host", "allow_egress": ["10.0.0.1"]}, "the 'host' network"),
    ]
    for body, why in cases:
        error = refused(parse_job_request, {"command": "true", **body}, JobPolicy(), HYBRID_HOST)
        assert why in error.message, error.message


def test_allocation_is_unique_walks_on_and_runs_out() -> None:
    small = Network("small", IPv4Network("10.44.0.0/28"))  # 13 addresses for jobs: .2 - .14
    used: set[str] = set()
    cursor = 0
    for _ in range(13):
        address, cursor = allocate_address(small, used, cursor)
        used.add(address)
    assert sorted(used, key=lambda a: int(a.split(".")[-1]))[0] == "10.44.0.2"
    assert "10.44.0.1" not in used and "10.44.0.15" not in used  # gateway, broadcast
    error = refused(allocate_address, small, used, cursor)
    assert error.code is ErrorCode.CONFLICT and "no free address" in error.message
    used.discard("10.44.0.3")
    used.discard("10.44.0.9")
    assert allocate_address(small, used, 5)[0] == "10.44.0.9"  # the cursor, not the lowest


def test_hosts_and_resolv_conf() -> None:
    text = hosts_file(
        [Endpoint("n", "10.42.0.10", "web", "jv1"), Endpoint("n", "10.42.0.9", "db", "jv2")]
    )
    assert text.splitlines()[2:] == ["10.42.0.9\tdb", "10.42.0.10\tweb"]
    resolv = "nameserver 127.0.0.53\nnameserver 9.9.9.9\nnameserver ::1\nsearch lan\n# x\n"
    assert job_resolv_conf(resolv) == "nameserver 9.9.9.9\nsearch lan\n"


# -- the job's unit -------------------------------------------------------------------------


def attached(**changes: Any) -> JobNetwork:
    endpoint = Endpoint("backend", "10.42.0.7", "db", "jv0b7d3c1e5a4f")
    return JobNetwork(**{"mode": None, "network": NET, "endpoint": endpoint, **changes})


def test_none_is_the_default_profile() -> None:
    assert network_properties(NO_NETWORK) == no_network()
    assert joining(NO_NETWORK, "x") == [] and setup_files(NO_NETWORK) == {}


def test_the_job_joins_helpers_that_run_nothing_of_the_jobs() -> None:
    """The job's unit runs nothing privileged; its network is set up by helper units with the
    host's programs, no root of the job's and no environment of the job's (review C1)."""
    job = {p.name: p.value for p in joining(attached(), "abc")}
    assert job == {
        "Requires": ["joblet-netns-abc.service", "joblet-nethost-abc.service"],
        "After": ["joblet-netns-abc.service", "joblet-nethost-abc.service"],
        "JoinsNamespaceOf": ["joblet-netns-abc.service"],
    }
    paths = JobPaths.for_job(PurePosixPath("/var/lib/joblet/jobs"), "abc")
    units = dict(helper_units(attached(), paths, "joblet.slice"))
    assert list(units) == ["joblet-netns-abc.service", "joblet-nethost-abc.service"]
    for name, props in units.items():
        helper = {p.name: p.value for p in props}
        assert "RootDirectory" not in helper and "BindPaths" not in helper, name
        assert helper["Environment"] == [] and "EnvironmentFiles" not in helper, name
        assert helper["CapabilityBoundingSet"] == 1 << 12, name  # CAP_NET_ADMIN alone
        commands = helper["ExecStart"] + helper.get("ExecStop", [])
        assert all(path.startswith("/usr/") and argv[0] == path for path, argv, _ in commands)
        files = [arg for _, argv, _ in commands for arg in argv if arg.startswith("/var/")]
        assert files and all(f.startswith("/var/lib/joblet/jobs/abc/net/") for f in files)
    netns = {p.name: p.value for p in units["joblet-netns-abc.service"]}
    assert netns["PrivateNetwork"] is True and netns["PrivateIPC"] is True
    # PID 1's network namespace, opened by PID 1: the helper could not open it (iproute2 6.x
    # opens /proc/1/ns/net for `netns 1`, which needs ptrace access to PID 1).
    assert netns["StandardInputFile"] == "/proc/1/ns/net"
    # ...taken by the first command, not in -batch mode (which reopens its file as stdin).
    ip, argv, _ = netns["ExecStart"][0]
    assert argv == [
        *(ip, "link", "add", "eth0", "type", "veth", "peer", "name", "jv0b7d3c1e5a4f"),
        *("netns", "/proc/self/fd/0"),
    ]
    assert "StandardInput" not in netns
    assert {p.name: p.value for p in units["joblet-nethost-abc.service"]}["PrivateNetwork"] is False
    assert helper_units(NO_NETWORK, paths, "joblet.slice") == []


def test_job_side_files() -> None:
    files = setup_files(attached())
    assert files["net-job.batch"].splitlines() == [
        "link set lo up",
        "link set eth0 addrgenmode none",
        "addr add 10.42.0.7/24 dev eth0",
        "link set eth0 up",
        "route add default via 10.42.0.1",
    ]
    assert "master jb-" in files["net-host.batch"] and "isolated on" not in files["net-host.batch"]
    rules = files["net-job.nft"]
    assert "ip saddr != 10.42.0.7 drop" in rules and "meta nfproto ipv6 drop" in rules
    assert "reject" not in rules  # no --allow-egress: nothing narrowed
    internal = setup_files(
        attached(network=Network("q", IPv4Network("10.9.0.0/24"), internal=True))
    )
    assert "route add default" not in internal["net-job.batch"]


def test_egress_rules_in_the_job_namespace() -> None:
    rules = setup_files(attached(egress=(parse_egress(Fields({}, ""), "e", "10.9.0.5:443"),)))[
        "net-job.nft"
    ]
    lines = [line.strip() for line in rules.splitlines()]
    tail = lines[lines.index("ct state established,related accept") :]
    assert tail[:4] == [
        "ct state established,related accept",
        "ip daddr 10.42.0.0/24 accept",
        "ip daddr 10.9.0.5 meta l4proto { tcp, udp } th dport 443 accept",
        "reject with icmpx admin-prohibited",
    ]


def test_host_side_ruleset() -> None:
    internal = Network("q", IPv4Network("10.9.0.0/24"), internal=True)
    isolated = Network("isolated", IPv4Network("10.213.0.0/20"))
    rules = host_ruleset([NET, internal, isolated])
    assert f'iifname "{NET.bridge}" oifname "{NET.bridge}" accept' in rules
    assert 'iifname "jb-isolated" oifname "jb-isolated" reject' in rules
    assert f'iifname "{internal.bridge}" reject' in rules
    assert 'iifname "jb-*" reject with icmpx admin-prohibited' in rules  # input: not the host
    assert (
        'iifname "jb-*" ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, '
        "169.254.0.0/16, 168.63.129.16/32 } reject" in rules
    )  # NAT networks reach no private, shared or link-local address, nor Azure's WireServer
    assert 'iifname "jb-*" ct status dnat reject' in rules  # no port the host publishes
    # No hairpin back in through a NAT in front, at input nor forwarded to a DNAT'd port; only
    # new flows, matched with their protocol (a job cannot end another's open connection).
    hairpin = (
        "ct state new meta l4proto { tcp, udp } ct original ip saddr . meta l4proto . "
        "ct original proto-src . ct original proto-dst @job_flows reject"
    )
    assert rules.count(hairpin) == 2
    assert 'oifname != "jb-*" drop' not in rules  # forwarding was not Joblet's to limit
    # The job does not choose its NAT port (nor so which inbound flows the set refuses).
    assert f'ip saddr 10.42.0.0/24 oifname != "{NET.bridge}" masquerade fully-random' in rules
    assert "10.9.0.0/24 oifname" not in rules  # internal: no NAT
    state = HostState((NET,), frozenset({"jv1"}), Path("/x"))
    assert HostState.from_json(state.to_json()) == state


def test_host_side_ruleset_options() -> None:
    rules = host_ruleset(
        [NET],
        owns_forwarding=True,
        allow_private=[IPv4Network("10.5.0.0/16")],
        nameservers=["10.0.0.2"],
    )
    lines = [line.strip() for line in rules.splitlines()]
    dns = 'iifname "jb-*" ip daddr { 10.0.0.2 } meta l4proto { tcp, udp } th dport 53 accept'
    allowed = 'iifname "jb-*" ip daddr { 10.5.0.0/16 } accept'
    private = next(i for i, line in enumerate(lines) if "100.64.0.0/10" in line)
    assert lines.index(dns) < private and lines.index(allowed) < private  # accepted before
    assert lines[private + 1] == 'meta nfproto ipv4 iifname != "jb-*" oifname != "jb-*" drop'
    state = HostState(
        (NET,), frozenset(), Path("/x"), allow_private=(IPv4Network("10.5.0.0/16"),),
        nameservers=("10.0.0.2",),
    )  # fmt: skip
    assert HostState.from_json(state.to_json()) == state
    forged = state.to_json().replace('"10.0.0.2"', '"10.0.0.2 } accept; flush ruleset; {"')
    with pytest.raises(ValueError):  # the apply unit pastes them into nftables rules
        HostState.from_json(forged)


def test_the_host_side_runs_with_cap_net_admin_only() -> None:
    props = {p.name: p.value for p in apply_unit_properties("/usr/bin/python3", "/s", "j.slice")}
    assert props["CapabilityBoundingSet"] == 1 << 12
    assert props["Type"] == "oneshot" and props["NoNewPrivileges"] is True


# -- the service ----------------------------------------------------------------------------


def networks_root(service: NetworkService) -> Path:
    """Where the networks' directories are: the NetworkDirectories adapter's root."""
    assert isinstance(service.files, NetworkDirectories)
    return service.files.root


@pytest.fixture
def engine(tmp_path: Path) -> tuple[JobService, NetworkService, FakeSystemd]:
    config = AgentConfig(state_dir=tmp_path / "state")
    store = SqliteJobStore(config.database)

    async def resolve(host: str) -> tuple[str, ...]:
        if host == "pypi.org":
            return ("151.101.0.223", "151.101.64.223")
        raise OSError(-2, "Name or service not known")

    networks = NetworkService(
        config,
        SqliteNetworkStore(config.database),
        store,
        files=NetworkDirectories(config.state_dir / "networks", tmp_path / "resolv.conf"),
        clock=SystemClock(),
        resolve=resolve,
        python=sys.executable,
    )
    jobs = job_service(config, store=store, networks=networks)
    systemd = FakeSystemd(jobs.on_systemd_event)
    jobs.attach(systemd)
    networks.attach(systemd)
    return jobs, networks, systemd


def test_jobs_get_unique_addresses_names_and_files(
    engine: tuple[JobService, NetworkService, FakeSystemd],
) -> None:
    jobs, networks, systemd = engine

    async def scenario() -> None:
        await networks.create(
            parse_network_request({"name": "backend", "cidr": "10.42.0.0/24"}), owner="a"
        )
        assert systemd.started[-1][0].startswith(NET_UNIT_PREFIX)
        started = await asyncio.gather(
            *(submit(jobs, {"command": "true", "network": "backend"}, owner="a") for _ in range(20))
        )
        addresses = {r.endpoint.address for r in started if r.endpoint}
        assert len(addresses) == 20
        hosts = (networks_root(networks) / "backend" / "hosts").read_text()
        assert all(f"{r.endpoint.address}\tjob-{r.id[:8]}" in hosts for r in started if r.endpoint)
        files = Path(jobs.config.jobs_dir) / started[0].id / "net"
        assert oct(files.stat().st_mode & 0o777) == "0o700"
        assert oct((files / "net-job.nft").stat().st_mode & 0o777) == "0o600"
        assert sorted(name for name, _ in systemd.aux if name.startswith("joblet-net")) == sorted(
            f"joblet-{kind}-{r.id}.service" for r in started for kind in ("netns", "nethost")
        )
        refusal = await _refusal(networks.remove("backend", ADMIN))
        assert refusal.code is ErrorCode.CONFLICT and "20 live job(s)" in refusal.message
        for record in started:
            systemd.end(record.unit, result="success", code="exited", status="0")
            await jobs.wait(record.id, within=1)
        assert "job-" not in (networks_root(networks) / "backend" / "hosts").read_text()
        await networks.remove("backend", ADMIN)
        assert not (networks_root(networks) / "backend").exists()

    asyncio.run(scenario())


def test_egress_names_are_resolved_and_a_failed_start_frees_the_address(
    engine: tuple[JobService, NetworkService, FakeSystemd],
) -> None:
    jobs, networks, systemd = engine

    async def scenario() -> None:
        record = await submit(
            jobs,
            {"command": "true", "network": "isolated", "allow_egress": ["pypi.org:443"]},
            owner="a",
        )
        assert record.spec.allow_egress[0].addresses == ("151.101.0.223", "151.101.64.223")
        assert record.endpoint is not None and record.endpoint.network == "isolated"
        isolated_hosts = (networks_root(networks) / "isolated" / "hosts").read_text()
        assert record.endpoint.address not in isolated_hosts  # no job learns of another
        bad = {"command": "true", "network": "isolated", "allow_egress": ["nope.invalid"]}
        refusal = await _refusal(submit(jobs, bad, owner="a"))
        assert "does not resolve on the agent's host" in refusal.message
        systemd.refuse_next = True
        await _refusal(submit(jobs, {"command": "true", "network": "isolated", "name": "x"}, "a"))
        assert "\tx\n" not in (networks_root(networks) / "isolated" / "hosts").read_text()
        again = await submit(jobs, {"command": "true", "network": "isolated", "name": "x"}, "a")
        assert again.state is JobState.RUNNING

    asyncio.run(scenario())


async def _refusal(call: Any) -> JobletError:
    with pytest.raises(JobletError) as caught:
        await call
    return caught.value


def test_host_network_and_network_changes_need_their_roles(
    engine: tuple[JobService, NetworkService, FakeSystemd], monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs, _, _ = engine

    async def scenario(socket: str, role: Role) -> list[int]:
        # Whoever runs the tests (root is always admin on the socket) appears as `role`.
        caller = Caller("carol", role, "unix")
        for module in (jobs_api, networks_api):
            monkeypatch.setattr(module, "caller_of", lambda request: caller)
        app = api_app(jobs, Access())
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, socket).start()
        statuses = []
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=socket), base_url="http://joblet"
            ) as http:
                for method, path, body in [
                    ("POST", "/v1/jobs", {"command": "true", "network": "host"}),
                    ("POST", "/v1/networks", {"name": "n", "cidr": "10.50.0.0/24"}),
                    ("DELETE", "/v1/networks/n", None),
                    ("GET", "/v1/networks", None),
                ]:
                    async with http.request(method, path, json=body) as resp:
                        statuses.append(resp.status)
        finally:
            await runner.cleanup()
        return statuses

    with tempfile.TemporaryDirectory(prefix="joblet-") as directory:
        sock = f"{directory}/api.sock"
        assert asyncio.run(scenario(sock, Role.DEVELOPER)) == [403, 403, 403, 200]
        assert asyncio.run(scenario(sock, Role.MAINTAINER)) == [403, 201, 200, 200]
        assert asyncio.run(scenario(sock, Role.ADMIN))[0] == 201


class SlowJobFiles(FakeJobFiles):
    """Like the real adapter, creating a job's files takes a while (mkfs.ext4): others run."""

    async def create(
        self,
        paths: Any,
        user: Any,
        *,
        workdir: str | None,
        work_bytes: int,
        upload: Path | None = None,
    ) -> None:
        await asyncio.sleep(0.01)
        await super().create(paths, user, workdir=workdir, work_bytes=work_bytes, upload=upload)


def test_concurrent_submits_never_share_a_user_or_an_address(
    engine: tuple[JobService, NetworkService, FakeSystemd],
) -> None:
    jobs, networks, _ = engine
    jobs.files = SlowJobFiles()

    async def scenario() -> None:
        await networks.create(
            parse_network_request({"name": "backend", "cidr": "10.42.0.0/24"}), owner="a"
        )
        started = await asyncio.gather(
            *(submit(jobs, {"command": "true", "network": "backend"}, owner="a") for _ in range(10))
        )
        assert len({r.user for r in started}) == 10
        assert len({r.endpoint.address for r in started if r.endpoint}) == 10

    asyncio.run(scenario())


def test_a_network_whose_removal_fails_stays(
    engine: tuple[JobService, NetworkService, FakeSystemd],
) -> None:
    _, networks, systemd = engine

    async def scenario() -> None:
        await networks.create(
            parse_network_request({"name": "backend", "cidr": "10.42.0.0/24"}), owner="a"
        )
        systemd.refuse_next = True
        await _refusal(networks.remove("backend", ADMIN))
        assert [n.name for n in networks.networks()] == ["backend"]
        systemd.refuse_next = True
        await _refusal(
            networks.create(
                parse_network_request({"name": "other", "cidr": "10.43.0.0/24"}), owner="a"
            )
        )
        assert [n.name for n in networks.networks()] == ["backend"]
        assert not (networks_root(networks) / "other").exists()

    asyncio.run(scenario())


def test_forwarding_is_on_only_while_needed_and_never_taken_from_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from joblet_agent.adapters import netlink

    knob, marker = tmp_path / "ip_forward", tmp_path / ".forwarding"
    monkeypatch.setattr(netlink, "IP_FORWARD", knob)
    knob.write_text("0\n")
    netlink._forwarding(True, marker)
    assert knob.read_text() == "1\n" and marker.exists()
    netlink._forwarding(False, marker)
    assert knob.read_text() == "0\n" and not marker.exists()
    knob.write_text("1\n")  # someone else's forwarding: left alone
    netlink._forwarding(True, marker)
    netlink._forwarding(False, marker)
    assert knob.read_text() == "1\n" and not marker.exists()
