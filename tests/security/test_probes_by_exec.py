"""The escape probes of test_probes.py, run through exec: every forbidden action is as blocked
for a command exec'd into a job as for the job's own command (they share the job's sandbox,
which joblet-init gives everything it starts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rnx.client import Client, Job
from tests.integration.conftest import sh, wait_state
from tests.security.probing import PROBES_DIR, stop_and_wait, verdict
from tests.security.test_probes import (
    CASES,
    Case,
    OtherJob,
    block_device,
    other_job,
    process_identity,
)

pytestmark = pytest.mark.integration
__all__ = ["other_job"]


@pytest.fixture(scope="module")
def host_job() -> Iterator[Job]:
    """One job the probes are exec'd into, for the whole module."""
    with Client() as client:
        # attempt.py in its /work: longer than one argument may be (32 KiB), so not `-c`.
        job = client.run(
            ["sleep", "900"], name="probe-exec-host", uploads=[str(PROBES_DIR / "attempt.py")]
        )
        try:
            wait_state(client, job.id, "RUNNING")
            yield job
        finally:
            stop_and_wait(client, job.id)


@pytest.mark.parametrize("probe", CASES, ids=str)
def test_probe_through_exec_is_blocked(
    client: Client, other_job: OtherJob, host_job: Job, probe: Case
) -> None:
    client.health()
    targets = {
        "other_id": other_job.id,
        "other_pid": other_job.pid,
        "agent_pid": sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip(),
        "pid1": "1",
        "block_device": block_device(),
    }
    args = [arg.format(**targets) for arg in probe.args]
    pids = {targets["other_pid"], targets["agent_pid"], targets["pid1"]}
    watched = {arg: process_identity(arg) for arg in args if arg in pids}
    command = ["python3", "/work/attempt.py", probe.action, *args]
    result = client.exec(host_job.id, command, timeout=60)
    report = verdict(result.text.splitlines())
    assert report is not None, f"no verdict: exit {result.exit_code}, {result.stderr[-400:]!r}"
    for pid, identity in watched.items():
        assert process_identity(pid) == identity, f"target pid {pid} changed during the probe"
    assert client.get(other_job.id).state == "RUNNING"
    assert client.get(host_job.id).state == "RUNNING"
    if report["outcome"] != "blocked":
        pytest.fail(
            f"{probe} through exec {report['outcome'].upper()}: {report['detail']} "
            f"(errno {report['errno']})",
            pytrace=False,
        )
