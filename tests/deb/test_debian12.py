"""Debian 12 (bookworm, systemd 252, Python 3.11): install, use, limits, restart, upgrade, purge.

The tests run in this file's order on one machine: each leaves it as a user would.
"""

from __future__ import annotations

import pytest

from tests.deb import checks
from tests.deb.checks import Host, rnx_json, unit_state

pytestmark = pytest.mark.slow


def test_install_enables_and_starts_the_socket(debian12: Host) -> None:
    checks.check_installed_and_listening(debian12)


def test_job_as_root_over_the_local_socket(debian12: Host) -> None:
    checks.check_job_as_root(debian12)


def test_job_over_tcp_with_a_client_certificate(debian12: Host) -> None:
    checks.check_job_over_mtls(debian12)


def test_memory_limit_is_enforced(debian12: Host) -> None:
    """Proven by effect: 200 MB do not fit under --max-memory 64M, and do under 512M."""
    allocate = ["python3", "-c", "b = b'x' * (200 * 1024 * 1024); print('allocated')"]
    m = debian12.machine
    small = m.run("rnx", "job", "run", "--max-memory", "64M", "--", *allocate, check=False)
    assert small.returncode != 0
    assert "allocated" not in small.stdout
    jobs = rnx_json(debian12, "job", "list")
    job = next(j for j in jobs if j["spec"]["limits"].get("memory_bytes") == 64 * 1024**2)
    assert job["state"] == "FAILED", job
    assert "memory" in (job["reason"] or "").lower(), job
    big = m.run("rnx", "job", "run", "--max-memory", "512M", "--", *allocate, check=False)
    assert big.returncode == 0, big.stdout + big.stderr
    assert checks.output_lines(big.stdout) == ["allocated"]


def test_agent_restart_keeps_the_running_job(debian12: Host) -> None:
    job = checks.start_sleeper(debian12)
    checks.check_status_describes(debian12, job)
    checks.check_restart_keeps_job(debian12, job)
    checks.stop_job(debian12, job)


def test_upgrade_restarts_the_agent_and_keeps_the_running_job(debian12: Host) -> None:
    """Reinstalling the package runs the upgrade path of the maintainer scripts."""
    m = debian12.machine
    job = checks.start_sleeper(debian12)
    job_pid = checks.main_pid(debian12, job["unit"])
    agent_pid = checks.main_pid(debian12, "joblet.service")
    ca = m.path("/etc/joblet/pki/ca.crt").read_bytes()
    m.sh(f"cd {debian12.debs} && apt-get install -y -q --reinstall ./joblet_*.deb 2>&1")
    assert checks.main_pid(debian12, "joblet.service") not in (0, agent_pid)  # restarted
    assert unit_state(debian12, "joblet.socket") == "active"
    assert checks.main_pid(debian12, job["unit"]) == job_pid
    assert rnx_json(debian12, "job", "status", job["id"])["state"] == "RUNNING"
    assert m.path("/etc/joblet/pki/ca.crt").read_bytes() == ca  # the PKI is kept
    checks.stop_job(debian12, job)


@pytest.mark.parametrize("how", checks.GO_AWAY)
def test_a_running_job_keeps_its_whole_world(debian12: Host, how: str) -> None:
    """Restart, kill -9, daemon-reload, reinstall: the job then runs real programs (issue 14)."""
    checks.check_job_keeps_its_whole_world(debian12, how)


# From here on the container has a network namespace of its own (one reboot); remove and purge
# need no network.


def test_jobs_reach_each_other_by_name_and_isolated_jobs_reach_none(
    debian12_private_network: Host,
) -> None:
    checks.check_named_and_isolated_networks(debian12_private_network)


def test_no_privileged_step_runs_job_bait(debian12_private_network: Host) -> None:
    checks.check_no_privileged_step_runs_job_bait(debian12_private_network)


def test_remove_keeps_jobs_and_data_then_purge_removes_everything(debian12: Host) -> None:
    m = debian12.machine
    job = checks.start_sleeper(debian12)
    job_pid = checks.main_pid(debian12, job["unit"])
    # A volume, which PID 1 keeps mounted below /var/lib/joblet: data that remove keeps.
    m.run("rnx", "volume", "create", "data", "--size", "32M")

    m.run("apt-get", "remove", "-y", "-q", "joblet")
    assert unit_state(debian12, "joblet.socket") == "inactive"
    assert unit_state(debian12, "joblet.service") == "inactive"
    assert checks.main_pid(debian12, job["unit"]) == job_pid  # the job keeps running
    for kept in ("/etc/joblet/pki/ca.crt", "/etc/joblet/joblet.yml", "/var/lib/joblet/jobs.sqlite"):
        assert m.path(kept).exists(), kept
    assert m.path(f"/var/lib/joblet/jobs/{job['id']}").is_dir()
    assert m.path("/var/lib/joblet/volumes/data/volume.img").is_file()

    purged = m.run("apt-get", "purge", "-y", "-q", "joblet").stdout
    assert "stopping the jobs in joblet.slice" in purged
    assert "joblet: removed /etc/joblet" in purged
    assert "joblet: removed /var/lib/joblet" in purged
    assert unit_state(debian12, job["unit"]) != "active"
    for gone in ("/etc/joblet", "/var/lib/joblet", "/opt/joblet"):
        assert not m.path(gone).exists(), gone
    assert "/var/lib/joblet" not in m.run("findmnt", "-rn", "-o", "TARGET").stdout
    assert not list(m.path("/run/userdb").glob("joblet-u*"))
    # rnx, the client, is another package and stays; with what the agent alone needed removed,
    # its own dependencies are enough, as on a laptop without the agent.
    m.run("apt-get", "autoremove", "-y", "-q")
    assert m.run("python3", "-c", "import aiohttp", check=False).returncode != 0
    assert m.run("rnx", "--version").stdout.strip() == "rnx, version 0.1.0"
    unreachable = m.run("rnx", "job", "list", check=False)
    assert unreachable.returncode == 7, unreachable.stderr  # exit code: agent unreachable
