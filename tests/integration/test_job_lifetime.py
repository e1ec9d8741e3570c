"""A running job's lifetime, by effect against the real systemd in the sandbox: `extend` moves
the deadline PID 1 keeps (later and earlier), the deadline holds with no agent running, an idle
job ends and a touched one does not, and pause freezes a job where the host can (or says why
it cannot)."""

from __future__ import annotations

import time

import pytest

from rnx.client import Client, RnxError
from tests.integration.conftest import rnx, sh, wait_state

pytestmark = pytest.mark.integration


def test_extend_keeps_a_job_running_past_its_timeout_then_ends_it_at_the_new_one(
    client: Client,
) -> None:
    job = client.run(["sleep", "60"], timeout_sec=2)
    wait_state(client, job.id, "RUNNING")
    proc = rnx("job", "extend", job.id, "30s")
    assert proc.returncode == 0, proc.stderr
    time.sleep(3.5)  # past the first timeout
    extended = client.get(job.id)
    assert extended.state == "RUNNING", extended.reason
    assert extended.spec.limits.timeout_sec is not None and extended.spec.limits.timeout_sec > 30
    client.extend(job.id, 1)  # and sooner, too
    final = wait_state(client, job.id, "TIMEOUT", "FAILED", "COMPLETED", "STOPPED", timeout=20)
    assert (final.state, final.exit_code, final.result) == ("TIMEOUT", 124, "timeout")


def test_the_deadline_holds_while_no_agent_runs(client: Client) -> None:
    job = client.run(["sleep", "60"], timeout_sec=2)
    wait_state(client, job.id, "RUNNING")
    sh("systemctl", "stop", "joblet.socket", "joblet.service")
    try:
        deadline = time.monotonic() + 20
        while sh("systemctl", "is-active", job.unit, check=False).strip() == "active":
            assert time.monotonic() < deadline, "the job outlived its deadline"
            time.sleep(0.2)
    finally:
        sh("systemctl", "start", "joblet.socket")
    final = wait_state(client, job.id, "TIMEOUT", "FAILED", "COMPLETED", "STOPPED", timeout=30)
    assert (final.state, final.exit_code) == ("TIMEOUT", 124)


def test_an_idle_job_ends_and_a_touched_one_does_not(client: Client) -> None:
    job = client.run(["sleep", "60"], idle_timeout_sec=2, timeout_sec=60)
    wait_state(client, job.id, "RUNNING")
    start = time.monotonic()
    while time.monotonic() - start < 3.5:  # touched every half second, past its idle time
        assert client.exec(job.id, ["true"]).exit_code == 0
        time.sleep(0.5)
    # an exec in progress for longer than the idle time touches it all along
    assert client.exec(job.id, ["sleep", "3"]).exit_code == 0
    assert client.get(job.id).state == "RUNNING"
    final = wait_state(client, job.id, "TIMEOUT", "FAILED", "COMPLETED", "STOPPED", timeout=20)
    assert final.state == "TIMEOUT" and str(final.reason).startswith("idle"), final.reason
    status = rnx("job", "status", job.id)
    assert "idle timeout 2s" in status.stdout


COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /work/count; sleep 0.1; done"


def _count(unit: str) -> int:
    """The counter, read by root through the job's main process (a frozen job's init answers
    no file request)."""
    pid = sh("systemctl", "show", "-P", "MainPID", unit).strip()
    return int(sh("cat", f"/proc/{pid}/root/work/count").strip() or 0)


def test_pause_freezes_a_job_or_says_why_this_host_cannot(client: Client) -> None:
    job = client.run(["sh", "-c", COUNTER], timeout_sec=60)
    try:
        wait_state(client, job.id, "RUNNING")
        time.sleep(0.5)
        if client.health().host.cgroup_mode != "unified":
            # systemd freezes with the cgroup v2 freezer only: this host must say so, by name.
            with pytest.raises(RnxError) as refused:
                client.pause(job.id)
            assert refused.value.code == "unsupported", refused.value.message
            assert "cgroup v2" in refused.value.message
            proc = rnx("job", "pause", job.id)
            assert proc.returncode == 5 and "freez" in proc.stderr
            assert client.get(job.id).state == "RUNNING"
            return
        paused = client.pause(job.id)
        assert paused.state == "PAUSED"
        frozen = sh("systemctl", "show", "-P", "FreezerState", job.unit).strip()
        assert frozen == "frozen"
        before = _count(job.unit)
        time.sleep(1)
        after = _count(job.unit)
        assert after == before, "the counter advanced while the job was paused"
        assert client.resume(job.id).state == "RUNNING"
        time.sleep(1)
        assert _count(job.unit) > after, "the counter did not continue after resume"
    finally:
        client.stop(job.id)
