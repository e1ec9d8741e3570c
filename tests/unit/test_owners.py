"""Owners (domain/owner.py), shares (domain/sharing.py) and what they decide in the services and
the API: whose a volume or a network is, who may see, use, share and remove it, what another
owner's job shows, and how records of older agents are read."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.domain.config import AgentConfig, JobPolicy
from joblet_agent.domain.job import JobRecord, JobSpec, JobState
from joblet_agent.domain.network import Network, NetworkRequest, new_network
from joblet_agent.domain.owner import legacy_owner, parse_owner
from joblet_agent.domain.rbac import Caller, Role
from joblet_agent.domain.sharing import Need, Principal, Share, Shared, parse_share
from joblet_agent.domain.volume import Volume, VolumeMount, VolumeRequest, VolumeType
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.job.service import JobService
from joblet_agent.services.network import NetworkService
from joblet_agent.services.volume import VolumeService
from rnx.cli import cli
from rnx.views import owner_text
from tests.unit.fake_agent import fake_agent, network, volume
from tests.unit.fakes import FakeClock, FakeGroups, FakeJobStore, FakeSystemd, FakeVolumeStorage
from tests.unit.hosts import HYBRID_HOST
from tests.unit.test_networks import engine
from tests.unit.wiring import submit

__all__ = ["engine"]  # the fixture, shared with test_networks.py

ALICE, BOB, CAROL = (Principal(f"cert:{n}") for n in ("alice", "bob", "carol"))
MAINTAINER = Principal("cert:maria", manages_all=True)

# -- owners -----------------------------------------------------------------------------------


def test_callers_own_in_the_namespace_of_how_they_came() -> None:
    assert Caller("root", Role.ADMIN, "unix").owner == "unix:root"
    assert Caller("root", Role.DEVELOPER, "tls").owner == "cert:root"  # not the same owner
    assert Caller("ann", Role.MAINTAINER, "tls").principal == Principal("cert:ann", True)
    assert not Caller("ann", Role.DEVELOPER, "tls").principal.manages_all


@pytest.mark.parametrize(
    ("given", "namespace", "owner"),
    [
        ("bob", "cert", "cert:bob"),
        ("bob", "unix", "unix:bob"),  # a bare name is of the caller's own kind
        ("unix:bob", "cert", "unix:bob"),
        ("cert:bob.smith-2", "unix", "cert:bob.smith-2"),
        ("uid-1234", "unix", "unix:uid-1234"),
    ],
)
def test_an_owner_is_given_bare_or_qualified(given: str, namespace: str, owner: str) -> None:
    assert parse_owner("with", given, namespace=namespace) == owner


@pytest.mark.parametrize("given", ["tls:bob", "cert:", "cert:a b", ":bob", "a:b:c", "", 7])
def test_an_owner_that_is_none_is_refused_naming_the_field(given: object) -> None:
    with pytest.raises(JobletError) as refused:
        parse_owner("with", given, namespace="cert")
    assert refused.value.code is ErrorCode.INVALID
    assert refused.value.message.startswith("with: ")


@pytest.mark.parametrize(
    ("recorded", "owner"),
    [
        ("root", "unix:root"),  # only the local socket could be root
        ("uid-1001", "unix:uid-1001"),
        ("alice", "cert:alice"),
        ("cert:alice", "cert:alice"),
        ("unix:bob", "unix:bob"),
    ],
)
def test_owners_recorded_by_older_agents(recorded: str, owner: str) -> None:
    assert legacy_owner(recorded) == owner


def test_the_job_store_qualifies_the_owners_of_older_records(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = SqliteJobStore(path)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for job_id, owner in (("1" * 36, "root"), ("2" * 36, "alice"), ("3" * 36, "cert:bob")):
        store.put(JobRecord(job_id, JobSpec("true"), JobState.COMPLETED, owner, now))
    store.close()
    with sqlite3.connect(path) as db:  # as an older agent wrote them: bare owners
        db.execute("UPDATE jobs SET owner = 'alice', record = json_set(record, '$.owner', 'alice')"
                   " WHERE owner = 'cert:alice'")  # fmt: skip
    store = SqliteJobStore(path)
    assert [(r.id[0], r.owner) for r in sorted(store.list(), key=lambda r: r.id)] == [
        ("1", "unix:root"),
        ("2", "cert:alice"),
        ("3", "cert:bob"),
    ]
    assert [r.id[0] for r in store.list(owner="cert:alice")] == ["2"]
    store.close()


def test_volumes_and_networks_of_older_agents_belong_to_their_creator() -> None:
    old = {
        "name": "data",
        "type": "filesystem",
        "size_bytes": 1 << 30,
        "slot": 0,
        "created_at": "2026-01-01T00:00:00+00:00",
        "created_by": "maria",
    }
    assert Volume.from_dict(old).owner == "cert:maria"
    assert Volume.from_dict(old).shares == ()
    net = {"name": "backend", "cidr": "10.42.0.0/24", "internal": False}
    assert Network.from_dict(net).owner == "unix:root"  # no creator recorded: the local admin
    assert Network.from_dict({**net, "created_by": "root"}).owner == "unix:root"
    made = new_network(
        NetworkRequest("db", IPv4Network("10.9.0.0/24")), existing=[], owner="cert:m"
    )
    assert (made.owner, made.created_by, made.shares) == ("cert:m", "cert:m", ())


# -- what a share lets one do -----------------------------------------------------------------


def test_what_owners_shares_and_others_may_do() -> None:
    thing = Shared("volume", "data", ALICE.owner, (Share(BOB.owner, read_only=True),))
    for need in Need:
        assert thing.allows(ALICE, need)
        assert thing.allows(MAINTAINER, need)
        assert not thing.allows(CAROL, need)
    assert thing.allows(BOB, Need.SEE) and thing.allows(BOB, Need.USE_LIMITED)
    assert not thing.allows(BOB, Need.USE) and not thing.allows(BOB, Need.MANAGE)
    full = Shared("volume", "data", ALICE.owner, (Share(BOB.owner),))
    assert full.allows(BOB, Need.USE) and not full.allows(BOB, Need.MANAGE)


def test_refusals_say_whose_it_is_and_what_to_ask() -> None:
    thing = Shared("volume", "data", ALICE.owner, (Share(BOB.owner, read_only=True),))
    with pytest.raises(JobletError) as refused:
        thing.require(CAROL, Need.USE, field="volumes[0]")
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert refused.value.message == (
        "volumes[0]: volume 'data' belongs to cert:alice and is not shared with cert:carol"
    )
    assert refused.value.hint == "its owner may share it: rnx volume share data --with cert:carol"
    with pytest.raises(JobletError, match="shared with cert:bob read-only") as refused:
        thing.require(BOB, Need.USE)
    assert refused.value.hint == "mount it read-only: --volume=data:ro"
    net = Shared("network", "backend", ALICE.owner, (Share(BOB.owner, read_only=True),))
    with pytest.raises(JobletError, match=r"^name: network 'backend' is shared with cert:bob "):
        net.require(BOB, Need.USE)
    with pytest.raises(JobletError, match="a share lends its use, not its management"):
        net.require(BOB, Need.MANAGE)


def test_the_isolated_network_is_everyones_to_use_and_no_ones_to_manage() -> None:
    isolated = Network("isolated", IPv4Network("10.213.0.0/20"))
    assert isolated.shared.allows(CAROL, Need.USE)
    assert not isolated.shared.allows(CAROL, Need.MANAGE)


def test_a_share_request_is_parsed_strictly() -> None:
    assert parse_share("bob", {"read_only": True}, namespace="cert") == Share("cert:bob", True)
    assert parse_share("unix:bob", {}, namespace="cert") == Share("unix:bob", False)
    with pytest.raises(JobletError, match="read_only"):
        parse_share("bob", {"read_only": "yes"}, namespace="cert")
    with pytest.raises(JobletError, match="unknown"):
        parse_share("bob", {"ro": True}, namespace="cert")


# -- volumes ----------------------------------------------------------------------------------


def volumes(tmp_path: Path, **policy: Any) -> tuple[VolumeService, FakeVolumeStorage]:
    config = AgentConfig(state_dir=tmp_path, jobs=JobPolicy(**policy))
    files = FakeVolumeStorage(tmp_path / "volumes")
    service = VolumeService(
        config, HYBRID_HOST, FakeJobStore(), FakeClock(), files=files, groups=FakeGroups()
    )
    service.attach(FakeSystemd(lambda _event: None))
    return service, files


def test_a_volume_is_its_makers_and_shares_change_who_sees_and_mounts_it(tmp_path: Path) -> None:
    service, files = volumes(tmp_path)

    async def scenario() -> None:
        made = await service.create(VolumeRequest("data", VolumeType.FILESYSTEM, 16 << 20), ALICE)
        assert (made.volume.owner, made.volume.created_by) == ("cert:alice", "cert:alice")
        assert [v.volume.name for v in service.all(ALICE)] == ["data"]
        assert service.all(BOB) == []
        assert [v.volume.name for v in service.all(MAINTAINER)] == ["data"]
        with pytest.raises(JobletError, match="not shared with cert:bob"):
            service.get("data", BOB)
        with pytest.raises(JobletError, match="not shared with cert:bob"):
            await service.bindings((VolumeMount("data", read_only=True),), BOB)
        with pytest.raises(JobletError, match="not shared with cert:bob"):
            service.share("data", Share(CAROL.owner), BOB)  # not bob's to give
        service.share("data", Share(BOB.owner, read_only=True), ALICE)
        assert files.volumes["data"].shares == (Share("cert:bob", True),)  # kept on disk
        assert [v.volume.name for v in service.all(BOB)] == ["data"]
        bound = await service.bindings((VolumeMount("data", read_only=True),), BOB)
        assert [(b.name, b.read_only) for b in bound] == [("data", True)]
        with pytest.raises(JobletError, match="read-only"):
            service.check_use((VolumeMount("data"),), BOB)
        service.share("data", Share(BOB.owner), ALICE)  # again: now read-write
        assert files.volumes["data"].shares == (Share("cert:bob", False),)
        service.check_use((VolumeMount("data"),), BOB)
        with pytest.raises(JobletError, match="a share lends its use"):
            await service.remove("data", BOB)
        service.unshare("data", BOB.owner, MAINTAINER)
        with pytest.raises(JobletError) as missing:
            service.unshare("data", BOB.owner, ALICE)
        assert missing.value.code is ErrorCode.NOT_FOUND
        with pytest.raises(JobletError, match="owns volume 'data'"):
            service.share("data", Share(ALICE.owner), ALICE)
        await service.remove("data", ALICE)
        assert service.all(MAINTAINER) == []

    asyncio.run(scenario())


def test_one_owner_holds_at_most_so_many_volumes_below_maintainer(tmp_path: Path) -> None:
    service, _ = volumes(tmp_path, max_volumes_per_owner=2)

    async def scenario() -> None:
        for name in ("a", "b"):
            await service.create(VolumeRequest(name, VolumeType.MEMORY, 16 << 20), ALICE)
        with pytest.raises(JobletError) as refused:
            await service.create(VolumeRequest("c", VolumeType.MEMORY, 16 << 20), ALICE)
        assert refused.value.code is ErrorCode.TOO_MANY
        assert "jobs.max_volumes_per_owner" in refused.value.message
        await service.create(VolumeRequest("d", VolumeType.MEMORY, 16 << 20), BOB)
        await service.create(VolumeRequest("e", VolumeType.MEMORY, 16 << 20), MAINTAINER)
        await service.create(VolumeRequest("f", VolumeType.MEMORY, 16 << 20), MAINTAINER)
        await service.create(VolumeRequest("g", VolumeType.MEMORY, 16 << 20), MAINTAINER)

    asyncio.run(scenario())


# -- another owner's job ----------------------------------------------------------------------


def test_another_owners_arguments_and_environment_values_are_not_shown() -> None:
    spec = JobSpec("sh", ("-c", "echo $TOKEN"), env={"TOKEN": "s3cret"}, secret_env={"K": "v"})
    record = JobRecord("1" * 36, spec, JobState.RUNNING, "cert:alice", datetime.now(UTC))
    shown = record.to_dict(inspect=False)
    assert shown["spec"]["args"] == ["***", "***"]
    assert shown["spec"]["env"] == {"TOKEN": "***"}
    assert shown["spec"]["secret_env"] == {"K": "***"}
    assert shown["redacted"] is True
    assert "s3cret" not in json.dumps(shown) and "TOKEN" in json.dumps(shown)
    assert record.to_dict()["spec"]["env"] == {"TOKEN": "s3cret"}
    assert record.to_dict()["redacted"] is False


# -- rnx --------------------------------------------------------------------------------------


def test_rnx_shows_owners_as_people_know_them() -> None:
    assert owner_text("cert:alice") == "alice"
    assert owner_text("unix:root") == "root (local)"  # never looks like a certificate's root
    assert owner_text("alice") == "alice"  # an older agent's


def test_rnx_shares_and_unshares_volumes_and_networks(tmp_path: Path) -> None:
    shared = [{"owner": "cert:bob", "read_only": True}]
    with fake_agent(tmp_path) as agent:
        agent.answer("PUT /v1/volumes/data/shares/bob", volume(shares=shared))
        agent.answer("DELETE /v1/volumes/data/shares/unix:bob", volume(shares=[]))
        agent.answer("PUT /v1/networks/backend/shares/cert:bob", network(shares=shared))
        agent.answer("GET /v1/volumes", {"volumes": [volume(shares=shared)]})
        runner = CliRunner()
        base = ["--socket", agent.socket]
        out = runner.invoke(cli, [*base, "volume", "share", "data", "--with", "bob", "--ro"])
        assert (out.exit_code, out.stdout) == (0, "Volume data shared with bob (ro)\n")
        out = runner.invoke(cli, [*base, "volume", "unshare", "data", "--with", "unix:bob"])
        assert (out.exit_code, out.stdout) == (0, "Volume data shared with -\n")
        out = runner.invoke(cli, [*base, "network", "share", "backend", "--with", "cert:bob"])
        assert (out.exit_code, out.stdout) == (0, "Network backend shared with bob (ro)\n")
        out = runner.invoke(cli, [*base, "volume", "list"])
        assert out.exit_code == 0 and "root (local)" in out.stdout and "bob (ro)" in out.stdout
    assert [(m, p, b) for m, p, b in agent.requests] == [
        ("PUT", "/v1/volumes/data/shares/bob", {"read_only": True}),
        ("DELETE", "/v1/volumes/data/shares/unix:bob", None),
        ("PUT", "/v1/networks/backend/shares/cert:bob", {"read_only": False}),
        ("GET", "/v1/volumes", None),
    ]


# -- networks ---------------------------------------------------------------------------------


def test_jobs_join_only_networks_their_owner_may_and_take_names_only_with_names(
    engine: tuple[JobService, NetworkService, FakeSystemd],
) -> None:
    jobs, networks, _ = engine

    async def refused(body: dict[str, Any], owner: str) -> JobletError:
        with pytest.raises(JobletError) as info:
            await submit(jobs, body, owner)
        assert info.value.code is ErrorCode.FORBIDDEN
        return info.value

    async def scenario() -> None:
        await networks.create(NetworkRequest("backend", IPv4Network("10.42.0.0/24")), "cert:alice")
        plain = {"command": "true", "network": "backend"}
        named = {**plain, "name": "db"}
        await refused(plain, "cert:bob")
        await refused(named, "cert:bob")
        assert networks.networks(BOB) == []
        networks.share("backend", Share("cert:bob", read_only=True), ALICE)
        mine = await submit(jobs, plain, "cert:bob")
        assert mine.endpoint is not None and mine.endpoint.hostname == f"job-{mine.id[:8]}"
        assert "--ro" in (await refused(named, "cert:bob")).message
        networks.share("backend", Share("cert:bob"), ALICE)
        named_job = await submit(jobs, named, "cert:bob")
        assert named_job.endpoint is not None and named_job.endpoint.hostname == "db"
        assert [n.name for n in networks.networks(BOB)] == ["backend"]
        with pytest.raises(JobletError, match="management"):
            await networks.remove("backend", BOB)
        networks.unshare("backend", "cert:bob", ALICE)
        await refused(plain, "cert:bob")
        await submit(jobs, plain, "cert:carol", manages_all=True)  # a maintainer's job
        await submit(jobs, {"command": "true", "network": "isolated"}, "cert:carol")  # everyone's

    asyncio.run(scenario())
