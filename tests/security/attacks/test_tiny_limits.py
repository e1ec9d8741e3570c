"""One job's limits never stall another user's job start (review H8, api-fuzz finding 1).

A job's IO and CPU limits used to throttle its unit's set-up too: at 12 bytes/s the loop attach of
its /work hung in D state holding /dev/loop-control's lock, and every later job start on the host
queued behind it, for good.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import active_job_units, sh, wait_state
from tests.security.attacks.conftest import another_user_runs_a_job, restart_agent

MIB = 1024 * 1024
# As fast as its limit allows, around the page cache.
WRITE_WORK = "while :; do dd if=/dev/zero of=/work/f bs=1M count=4 oflag=direct 2>/dev/null; done"


def _unwedge() -> None:
    """Should the attack succeed, lift the IO limits of every job unit so that the stuck set-ups
    finish (the review's way out) and the sandbox stays usable for the tests after this one."""
    for unit in active_job_units() | _activating():
        sh(
            "systemctl", "set-property", "--runtime", unit,
            "IOWriteBandwidthMax=", "IOReadBandwidthMax=", "CPUQuota=", check=False,
        )  # fmt: skip


def _activating() -> set[str]:
    out = sh("systemctl", "list-units", "--no-legend", "--plain", "joblet-job-*", check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.mark.parametrize("key", ["io_write_bps", "io_read_bps"])
def test_a_tiny_io_limit_is_refused_naming_the_floor(
    developer: Client, second_developer: str, key: str
) -> None:
    try:
        with ThreadPoolExecutor(1) as pool:
            limits: dict[str, Any] = {key: "12"}
            attack = pool.submit(lambda: developer.run(["true"], **limits))
            another_user_runs_a_job(second_developer)
            with pytest.raises(RnxError) as refused:
                attack.result(timeout=10)
        assert refused.value.code == "invalid"
        assert f"limits.{key}" in refused.value.message
        assert "1048576" in refused.value.message or "1M" in refused.value.message
    finally:
        _unwedge()


def test_the_smallest_limits_of_every_kind_delay_no_one(
    developer: Client, second_developer: str
) -> None:
    """A job at the floor of every limit, writing its /work as fast as it may, while another
    user's jobs start; then the agent restarts and they still do."""
    health = developer.health()
    floors = health.limits.minimums
    jobs = []
    try:
        for _ in range(3):
            jobs.append(
                developer.run(
                    ["sh", "-c", WRITE_WORK],
                    cpu_percent=floors.cpu_percent,
                    memory_bytes=floors.memory_bytes,
                    io_read_bps=floors.io_bps,
                    io_write_bps=floors.io_bps,
                    max_tasks=floors.max_tasks,
                    timeout_sec=60,
                )
            )
        for job in jobs:
            wait_state(developer, job.id, "RUNNING")
        for _ in range(3):
            another_user_runs_a_job(second_developer)
        restart_agent()
        another_user_runs_a_job(second_developer)
    finally:
        for job in jobs:
            subprocess.run(["rnx", "job", "stop", job.id], capture_output=True, check=False)
        _unwedge()
