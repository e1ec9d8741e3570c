"""One developer against another's volumes and networks (security-audit M1, M2).

A volume or a network belongs to whoever made it. A developer mounts, joins, lists, inspects and
removes only their own and those shared with them (`rnx volume share NAME --with OWNER [--ro]`,
the same for networks); maintainers and admins manage all. On a network shared without names
(`--ro`) a job keeps its default hostname: nobody shared on it can take the name a service is
known by there."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import wait_state
from tests.security.attacks.conftest import another_user_runs_a_job
from tests.security.attacks.identities import owner_of

pytestmark = pytest.mark.integration


def output(client: Client, argv: list[str], **options: object) -> tuple[str, list[str]]:
    job = client.run(argv, **options)  # type: ignore[arg-type]
    final = wait_state(client, job.id, "COMPLETED", "FAILED", timeout=60)
    return final.state, list(client.logs(job.id, follow=False))


def refused(action: object, *args: object, **kwargs: object) -> RnxError:
    with pytest.raises(RnxError) as info:
        action(*args, **kwargs)  # type: ignore[operator]
    assert info.value.status == 403, (info.value.status, info.value.message)
    return info.value


@pytest.fixture
def maintainers_volume(certs: dict[str, str]) -> Iterator[str]:
    """A volume of the maintainer's, holding a secret."""
    name = f"own-{uuid.uuid4().hex[:6]}"
    with Client(config=certs["maintainer"]) as owner:
        owner.create_volume(name, size="16M")
        try:
            state, _ = output(
                owner, ["sh", "-c", f"echo s3cret > /volumes/{name}/s"], volumes=[name]
            )
            assert state == "COMPLETED"
            yield name
        finally:
            owner.remove_volume(name)


def test_a_developer_cannot_mount_list_inspect_or_remove_anothers_volume(
    certs: dict[str, str], maintainers_volume: str
) -> None:
    name = maintainers_volume
    with Client(config=certs["developer"]) as dev:
        for mount in (name, f"{name}:ro"):
            error = refused(dev.run, ["cat", f"/volumes/{name}/s"], volumes=[mount])
            assert name in error.message and "share" in (error.hint or ""), error
        assert name not in {v.name for v in dev.volumes()}
        refused(dev.volume, name)
        refused(dev.remove_volume, name)
        refused(dev.share_volume, name, with_=owner_of(certs["developer"]))
    with Client(config=certs["maintainer"]) as owner:
        assert owner.volume(name).name == name  # still there, untouched
    another_user_runs_a_job(certs["developer2"])


def test_a_volume_shared_read_only_is_mounted_read_only_until_unshared(
    certs: dict[str, str], maintainers_volume: str
) -> None:
    name, me = maintainers_volume, owner_of(certs["developer"])
    with Client(config=certs["maintainer"]) as owner, Client(config=certs["developer"]) as dev:
        owner.share_volume(name, with_=me, read_only=True)
        listed = {v.name: v for v in dev.volumes()}
        assert listed[name].owner == owner_of(certs["maintainer"])
        assert [(s.owner, s.read_only) for s in listed[name].shares] == [(me, True)]
        assert output(dev, ["cat", f"/volumes/{name}/s"], volumes=[f"{name}:ro"]) == (
            "COMPLETED",
            ["s3cret"],
        )
        error = refused(dev.run, ["true"], volumes=[name])  # read-write: not shared so
        assert "read-only" in error.message
        refused(dev.remove_volume, name)  # a share lends use, not ownership
        with Client(config=certs["developer2"]) as third:  # shared with one, not with all
            refused(third.run, ["true"], volumes=[f"{name}:ro"])
        owner.unshare_volume(name, with_=me)
        refused(dev.run, ["true"], volumes=[f"{name}:ro"])
        assert name not in {v.name for v in dev.volumes()}


def test_developers_own_the_volumes_they_make_and_those_their_jobs_make(
    certs: dict[str, str], client: Client
) -> None:
    made, named = (f"dev-{uuid.uuid4().hex[:6]}" for _ in range(2))
    with Client(config=certs["developer"]) as dev, Client(config=certs["developer2"]) as other:
        try:
            assert dev.create_volume(made, size="16M").owner == owner_of(certs["developer"])
            # A job naming a volume that does not exist makes it, for its owner.
            job = dev.run(["sh", "-c", f"echo mine > /volumes/{named}/f"], volumes=[named])
            assert any(named in w and "created" in w for w in job.warnings), job.warnings
            assert dev.wait(job.id).exit_code == 0
            assert dev.volume(named).owner == owner_of(certs["developer"])
            for name in (made, named):
                refused(other.run, ["true"], volumes=[f"{name}:ro"])
                refused(other.remove_volume, name)
            # Admins and maintainers manage all: the admin sees both.
            assert {made, named} <= {v.name for v in client.volumes()}
        finally:
            for name in (made, named):
                if name in {v.name for v in client.volumes()}:
                    dev.remove_volume(name)


@pytest.fixture
def maintainers_network(certs: dict[str, str]) -> Iterator[str]:
    name = f"own-{uuid.uuid4().hex[:6]}"
    cidr = f"10.{random.randrange(160, 200)}.{random.randrange(0, 256)}.0/24"
    with Client(config=certs["maintainer"]) as owner:
        owner.create_network(name, cidr)
        try:
            yield name
        finally:
            owner.remove_network(name)


def test_a_developer_cannot_join_anothers_network_nor_take_a_name_on_it(
    certs: dict[str, str], maintainers_network: str
) -> None:
    name = maintainers_network
    with Client(config=certs["developer"]) as dev:
        error = refused(dev.run, ["true"], network=name)
        assert name in error.message and "share" in (error.hint or ""), error
        refused(dev.run, ["true"], network=name, name="db")  # squatting the service's name
        assert name not in {n.name for n in dev.networks()}
        refused(dev.network, name)
        refused(dev.remove_network, name)
    another_user_runs_a_job(certs["developer2"])


def test_a_network_shared_without_names_gives_no_hostname_of_ones_choice(
    certs: dict[str, str], maintainers_network: str
) -> None:
    name, me = maintainers_network, owner_of(certs["developer"])
    with Client(config=certs["maintainer"]) as owner, Client(config=certs["developer"]) as dev:
        owner.share_network(name, with_=me, read_only=True)
        assert output(dev, ["cat", "/etc/hostname"], network=name)[0] == "COMPLETED"
        error = refused(dev.run, ["true"], network=name, name="db")
        assert "name" in error.message
        owner.share_network(name, with_=me)  # now with names
        job = dev.run(["sleep", "30"], network=name, name=f"db-{uuid.uuid4().hex[:4]}")
        try:
            running = wait_state(dev, job.id, "RUNNING")
            assert running.endpoint is not None and running.endpoint.hostname == job.spec.name
        finally:
            dev.stop(job.id)
        owner.unshare_network(name, with_=me)
        refused(dev.run, ["true"], network=name)
