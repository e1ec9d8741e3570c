"""rnx's exit codes that only a real host produces (README "Exit codes"; the others are asserted
where their refusals are tested): 7 agent unreachable, 8 systemd refused, 9 bad rnx config."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.integration.conftest import rnx, sh


def test_7_when_no_agent_listens(tmp_path: Path) -> None:
    result = rnx("--socket", str(tmp_path / "no-agent.sock"), "job", "list")
    assert result.returncode == 7, (result.returncode, result.stderr)
    assert "cannot reach the Joblet agent" in result.stderr


def test_8_when_pid1_cannot_mount_a_volume_a_job_names() -> None:
    """The volume's image loses its ext4 superblock while unmounted: PID 1's mount unit fails
    and the agent says so (502 `systemd`); nothing of the job is left."""
    name = f"exit8-{uuid.uuid4().hex[:6]}"
    assert rnx("volume", "create", name, "--size=16M").returncode == 0
    try:
        unit = sh(
            "systemd-escape", "--path", "--suffix=mount", f"/var/lib/joblet/volumes/{name}/data"
        )
        sh("systemctl", "stop", unit.strip())
        with open(f"/var/lib/joblet/volumes/{name}/volume.img", "r+b") as image:
            image.seek(1024)
            image.write(bytes(4096))  # the superblock and what follows
        result = rnx("job", "run", f"--volume={name}", "--", "true")
        assert result.returncode == 8, (result.returncode, result.stderr)
        assert f"volume {name!r} could not be mounted" in result.stderr
        assert "failed" in result.stderr
    finally:
        assert rnx("volume", "remove", name).returncode == 0


def test_9_when_the_rnx_configuration_is_broken(tmp_path: Path) -> None:
    config = tmp_path / "rnx-config.yml"
    (tmp_path / "ca.crt").write_text("")
    config.write_text("nodes:\n  default:\n    address: localhost:50051\n    ca: ca.crt\n")
    result = rnx("--config", str(config), "job", "list")
    assert result.returncode == 9, (result.returncode, result.stderr)
    assert "missing cert, key (a TLS node needs address, cert, key and ca)" in result.stderr
    config.write_text("nodes: [not, a, mapping]\n")
    assert rnx("--config", str(config), "job", "list").returncode == 9
