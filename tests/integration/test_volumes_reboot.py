"""What a reboot keeps: `make integration` runs the first test with the others, reboots the
sandbox (`sandbox down` then `up`: PID 1, its mounts and /run are gone, the disk state stays), then
runs the second. A filesystem volume keeps its data; a memory volume comes back, empty."""

from __future__ import annotations

import contextlib

import pytest

from rnx.client import Client
from rnx.errors import RnxError

DISK, MEMORY = "reboot-disk", "reboot-memory"


def _output(client: Client, script: str, volumes: list[str]) -> list[str]:
    job = client.run(["sh", "-c", script], volumes=volumes)
    lines = list(client.logs(str(job.id)))
    assert client.wait(str(job.id)).exit_code == 0, lines
    return lines


@pytest.mark.integration
def test_before_reboot(client: Client) -> None:
    for name in (DISK, MEMORY):
        with contextlib.suppress(RnxError):  # left by an earlier run that never rebooted
            client.remove_volume(name)
    client.create_volume(DISK, size="16M")
    client.create_volume(MEMORY, size="16M", type="memory")
    _output(
        client,
        f"echo survived > /volumes/{DISK}/state; echo gone > /volumes/{MEMORY}/state",
        [DISK, MEMORY],
    )


@pytest.mark.after_reboot
def test_after_reboot(client: Client) -> None:
    listed = {v.name: v for v in client.volumes()}
    assert {DISK, MEMORY} <= set(listed)
    lines = _output(
        client,
        f"cat /volumes/{DISK}/state; ls -A /volumes/{MEMORY} | wc -l",
        [DISK, MEMORY],
    )
    assert lines == ["survived", "0"]
    client.remove_volume(DISK)
    client.remove_volume(MEMORY)
