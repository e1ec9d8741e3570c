"""An agent restart never touches a running job (review H7): whatever makes the agent start again
(a restart by an admin or an upgrade, kill -9, a crash, the watchdog), a job running across it
keeps its whole world: programs from /usr, /etc/passwd, /work, its volume, its /tmp."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client
from tests.integration.conftest import sh, wait_state
from tests.security.attacks.conftest import another_user_runs_a_job, restart_agent

# After the agent went away and came back, the job execs real programs (not shell builtins) and
# uses every part of its root; each check prints ok-<what> or GONE-<what>.
AFTER = (
    "i=0; while [ ! -e /volumes/keep/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done; "
    "/usr/bin/env true && echo ok-usr || echo GONE-usr; "
    "/usr/bin/grep -q '^root:' /etc/passwd && echo ok-passwd || echo GONE-passwd; "
    "/usr/bin/id -un >/dev/null && echo ok-user || echo GONE-user; "
    'echo x > /work/after && [ "$(/usr/bin/cat /work/after)" = x ] && echo ok-work '
    "|| echo GONE-work; "
    '[ "$(/usr/bin/cat /volumes/keep/before)" = y ] && echo ok-volume || echo GONE-volume; '
    "echo z > /tmp/t && /usr/bin/cat /tmp/t >/dev/null && echo ok-tmp || echo GONE-tmp; "
    "[ -c /dev/null ] && echo ok-dev || echo GONE-dev"
)
VOLUMES = Path("/var/lib/joblet/volumes")
CHECKS = ("usr", "passwd", "user", "work", "volume", "tmp", "dev")


def _kill_9() -> None:
    sh("systemctl", "kill", "--signal=KILL", "--kill-who=main", "joblet.service")
    time.sleep(0.5)  # the next request starts it again through joblet.socket


def _daemon_reload() -> None:
    sh("systemctl", "daemon-reload")


@pytest.fixture
def keep_volume() -> Iterator[str]:
    with Client(socket="/run/joblet/joblet.sock") as admin:
        admin.create_volume("keep", size="32M")
        yield "keep"
        admin.remove_volume("keep")


@pytest.mark.parametrize(
    "go_away", [restart_agent, _kill_9, _daemon_reload], ids=["restart", "kill-9", "daemon-reload"]
)
def test_a_running_job_keeps_its_whole_world(
    client: Client, keep_volume: str, go_away: object, second_developer: str
) -> None:
    marker = uuid.uuid4().hex[:6]
    job = client.run(
        ["sh", "-c", f"echo y > /volumes/keep/before; echo start-{marker}; {AFTER}"],
        volumes=[keep_volume],
        timeout_sec=120,
    )
    wait_state(client, job.id, "RUNNING")
    assert callable(go_away)
    go_away()
    try:
        another_user_runs_a_job(second_developer)
        # The job learns it may go on through its volume, written on the host.
        (VOLUMES / keep_volume / "data" / "go").write_text("")
        final = wait_state(client, job.id, "COMPLETED", "FAILED", timeout=60)
    finally:
        if client.get(job.id).state not in ("COMPLETED", "FAILED"):
            client.stop(job.id)
    lines = list(client.logs(job.id, follow=False))
    assert lines[0] == f"start-{marker}"
    assert lines[1:] == [f"ok-{what}" for what in CHECKS], lines
    assert final.state == "COMPLETED"
