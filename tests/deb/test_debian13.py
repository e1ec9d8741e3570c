"""Debian 13 (trixie, systemd 257, Python 3.13): install, socket activation, PrivatePIDs, and an
honest report of the limits this host cannot enforce.

On these machines a container gets cgroup v2 with no controllers (they are bound to the host's v1
hierarchies), so no resource limit can be enforced here; Debian 12's tests prove the limits.
"""

from __future__ import annotations

import pytest

from rnx.client import Client
from tests.deb import checks
from tests.deb.checks import Host

pytestmark = pytest.mark.slow


def test_install_enables_and_starts_the_socket(debian13: Host) -> None:
    checks.check_installed_and_listening(debian13)
    python = debian13.machine.run("python3", "--version").stdout
    assert python.startswith("Python 3.13"), python


def test_job_as_root_over_the_local_socket(debian13: Host) -> None:
    checks.check_job_as_root(debian13)


def test_job_over_tcp_with_a_client_certificate(debian13: Host) -> None:
    checks.check_job_over_mtls(debian13)


def test_job_runs_in_its_own_pid_namespace_under_joblet_init(debian13: Host) -> None:
    """PrivatePIDs=: PID 1 of the job's namespace is joblet-init (issue 17: it reaps, forwards
    signals, serves execs; not dumpable, so its /proc entries tell the job nothing), the command
    a child of it with a small PID of that namespace."""
    m = debian13.machine
    script = "echo pid=$$; echo visible=$(ls /proc | grep -c '^[0-9]')"
    run = m.run("rnx", "job", "run", "--", "sh", "-c", script)
    pid, visible = checks.output_lines(run.stdout)
    assert 1 < int(pid.removeprefix("pid=")) < 10, pid
    # init, sh, its subshell, ls and grep at most: no process of the host or other jobs is seen
    assert int(visible.removeprefix("visible=")) <= 5
    job = checks.start_sleeper(debian13)
    private = m.run("systemctl", "show", "-p", "PrivatePIDs", "--value", job["unit"]).stdout
    assert private.strip() == "yes"
    checks.stop_job(debian13, job)


def test_agent_reports_the_limits_it_cannot_enforce(debian13: Host) -> None:
    m = debian13.machine
    checks.rnx_json(debian13, "job", "list")  # the agent runs
    log = m.run("journalctl", "--no-pager", "-o", "cat", "-u", "joblet.service").stdout
    line = next(x for x in log.splitlines() if "cannot enforce these limits" in x)
    assert "cpu, io, memory, pids" in line and "refused" in line, line
    # /v1/health says the same; asked from outside over mTLS, with this tree's rnx library.
    with Client(config=str(checks.client_config(debian13))) as client:
        health = client.health()
    assert sorted(health.unenforceable_limits) == ["cpu", "io", "memory", "pids"]
    assert health.host.systemd_version >= 257
    # A job asking for one is refused with the reason, and exit code 5.
    refused = m.run("rnx", "job", "run", "--max-memory", "64M", "--", "true", check=False)
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "memory" in refused.stderr


def test_agent_restart_keeps_the_running_job(debian13: Host) -> None:
    job = checks.start_sleeper(debian13)
    checks.check_status_describes(debian13, job)
    checks.check_restart_keeps_job(debian13, job)
    checks.stop_job(debian13, job)


@pytest.mark.parametrize("how", checks.GO_AWAY)
def test_a_running_job_keeps_its_whole_world(debian13: Host, how: str) -> None:
    """Restart, kill -9, daemon-reload, reinstall: the job then runs real programs (issue 14)."""
    checks.check_job_keeps_its_whole_world(debian13, how)


# From here on the container has a network namespace of its own (one reboot).


def test_jobs_reach_each_other_by_name_and_isolated_jobs_reach_none(
    debian13_private_network: Host,
) -> None:
    checks.check_named_and_isolated_networks(debian13_private_network)


def test_no_privileged_step_runs_job_bait(debian13_private_network: Host) -> None:
    checks.check_no_privileged_step_runs_job_bait(debian13_private_network)
