"""Owners' quotas by effect: each owner's jobs run in their own slice whose MemoryMax the kernel
enforces over all of them together. Two owners under the same quota (quotas.default.memory_max:
128M), each job holding 80 MiB (under any limit of its own): one owner's two jobs go over the
quota together and one of them is OOM-killed; the other owner's job, the same, is untouched.
A job asking more than its owner's quota is refused at submit, not queued for ever."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from joblet_agent.pki.store import Pki
from rnx.client import Client, Job
from tests.integration.configured_agent import configured_agent
from tests.integration.conftest import rnx

PKI_DIR = Path("/etc/joblet/pki")
ADDRESS = "localhost:50051"
HOLD = (
    "import time\n"
    "held = b'x' * (80 << 20)  # written, so resident\n"
    "print('holding', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture(scope="module")
def owners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two developers' rnx-config.yml, and the agent with a 128M memory quota per owner."""
    pki = Pki(PKI_DIR)
    if not (PKI_DIR / "ca.crt").exists():
        pki.init()  # the agent reads it at its start, below
    run = uuid.uuid4().hex[:6]
    configs = []
    for name in (f"quota-a-{run}", f"quota-b-{run}"):
        out = tmp_path_factory.mktemp(name) / "cfg"
        configs.append(str(pki.issue_client(name, "developer", out_dir=out, address=ADDRESS)))
    with configured_agent("quotas:\n  default:\n    memory_max: 128M\n"):
        yield configs[0], configs[1]


def holding(client: Client) -> Job:
    return client.run(["python3", "-c", HOLD])


def first_ended(client: Client, jobs: list[Job], timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        for job in jobs:
            current = client.get(job.id)
            if current.state.ended:
                return current
        assert time.monotonic() < deadline, f"none of {[j.id for j in jobs]} ended"
        time.sleep(0.1)


def test_one_owners_jobs_together_are_oom_killed_at_the_quota_the_others_untouched(
    owners: tuple[str, str],
) -> None:
    config_a, config_b = owners
    with Client(config=config_a) as a, Client(config=config_b) as b:
        other = holding(b)
        first, second = holding(a), holding(a)
        try:
            assert other.state == first.state == second.state == "RUNNING"
            assert first.owner == second.owner != other.owner
            # Together 160 MiB in a's slice, over its 128M: the kernel kills one of a's jobs.
            killed = first_ended(a, [first, second])
            assert (killed.state, killed.result) == ("FAILED", "oom-kill"), killed
            assert str(killed.reason).startswith(
                "oom-kill: its owner's jobs together went over their memory quota (134217728"
            )
            survivor = second if killed.id == first.id else first
            # The other owner's job, holding the same, is untouched: running, all of it.
            assert "holding" in list(b.logs(other.id, follow=False))
            assert b.get(other.id).state == "RUNNING"
            assert a.get(survivor.id).state == "RUNNING"
        finally:
            for client, job in ((b, other), (a, first), (a, second)):
                if not client.get(job.id).state.ended:
                    client.stop(job.id)
        assert b.get(other.id).state == "STOPPED"  # stopped by us, never OOM-killed


def test_a_job_asking_more_than_its_owners_quota_is_refused_at_submit(
    owners: tuple[str, str],
) -> None:
    """Not queued for ever: refused at once, naming the value and the quota."""
    config_a, _ = owners
    with Client(config=config_a) as a:
        before = {job.id for job in a.list()}
        result = rnx("--config", config_a, "job", "run", "--max-memory", "256M", "true")
        assert result.returncode == 2, result.stderr
        assert "limits.memory_bytes: 268435456 is not valid; at most 134217728, the quota of" in (
            result.stderr
        ), result.stderr
        assert "the job could never start" in result.stderr
        assert {job.id for job in a.list()} == before  # no record: nothing waits
