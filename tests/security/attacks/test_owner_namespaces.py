"""A certificate named like a local account (security-audit L7).

Owners from certificates and from local users live apart (`cert:NAME`, `unix:NAME`): a
certificate whose CN is `root` owns none of root's local jobs, uploads, volumes or networks,
whatever its role. `pki client` refuses such names from the start."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from joblet_agent.errors import JobletError
from joblet_agent.pki.store import Pki
from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import wait_state
from tests.security.attacks.identities import forged_bundle

pytestmark = pytest.mark.integration


def test_a_certificate_named_root_owns_none_of_roots_local_jobs(
    pki: Pki, client: Client, tmp_path: Path
) -> None:
    job = client.run(["sh", "-c", "echo roots-own; sleep 60"])
    volume = f"root-{uuid.uuid4().hex[:6]}"
    client.create_volume(volume, size="16M")
    try:
        wait_state(client, job.id, "RUNNING")
        pki.renew_crl()  # a CA key of an older layout moves to where pki.ca_key says
        config = forged_bundle(pki.ca_key, pki.ca_crt, tmp_path / "root", "root", "developer")
        with Client(config=config) as impostor:
            for action in (impostor.stop, impostor.delete):
                with pytest.raises(RnxError) as refused:
                    action(job.id)
                assert refused.value.status == 403, refused.value
            with pytest.raises(RnxError) as refused:
                list(impostor.logs(job.id, follow=False))
            assert refused.value.status == 403, refused.value
            with pytest.raises(RnxError) as refused:
                impostor.run(["true"], volumes=[f"{volume}:ro"])
            assert refused.value.status == 403, refused.value
            assert job.id not in {j.id for j in impostor.list(owner="root")}
            mine = impostor.run(["true"])
            assert mine.owner == "cert:root"
            assert wait_state(impostor, mine.id, "COMPLETED").owner == "cert:root"
        assert client.get(job.id).owner == "unix:root"
        assert client.get(job.id).state == "RUNNING"
    finally:
        client.stop(job.id)
        client.remove_volume(volume)


@pytest.mark.parametrize("name", ["root", "nobody", "admin", "daemon", "joblet-u0"])
def test_pki_refuses_names_reserved_for_local_accounts_and_roles(
    pki: Pki, tmp_path: Path, name: str
) -> None:
    issued = [c.serial for c in pki.list() if c.name == name]
    with pytest.raises(JobletError) as refused:
        pki.issue_client(name, "developer", out_dir=tmp_path / "api")
    assert "reserved" in refused.value.message, refused.value.message
    cli = subprocess.run(
        ["joblet-agent", "pki", "client", "--name", name, "--role", "reader",
         "--out", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 2, (cli.returncode, cli.stderr)
    assert "reserved" in cli.stderr
    assert not (tmp_path / "cli").exists()
    assert [c.serial for c in pki.list() if c.name == name] == issued  # none issued
