"""What a user does right after `apt install`, the same on Debian 12 and 13."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deb.machine import Machine

REPO = Path(__file__).resolve().parents[2]
HOST_RNX = REPO / ".venv/bin/rnx"


@dataclass
class Host:
    """A booted Debian machine with joblet and rnx installed from the .debs."""

    machine: Machine
    suite: str
    port: int  # the agent's TCP port, on the host's loopback (the network is shared)
    install_output: str
    debs: str  # the directory inside that holds the .debs
    client_dir: Path  # on the host: a client's certificate, as copied to another machine


def client_config(host: Host) -> Path:
    """Issue a client certificate inside (once) and copy it out, as a user does for a laptop."""
    config = host.client_dir / "rnx-config.yml"
    if not config.exists():
        m = host.machine
        issued = m.run(
            "joblet-agent", "pki", "client", "--name", "ci", "--role", "developer",
            "--out", "/root/ci", "--address", f"127.0.0.1:{host.port}",
        ).stdout.strip()  # fmt: skip
        assert issued == "/root/ci/rnx-config.yml"
        shutil.copytree(m.path("/root/ci"), host.client_dir, dirs_exist_ok=True)
    return config


# What PID 1 writes into a job's output in these containers, before exec, about a host without
# CAP_NET_ADMIN (nspawn drops it when the network is the host's): not the job's output. On
# Debian 13 it also means jobs run without a network namespace of their own here.
_CONTAINER_NOISE = (
    "Failed to configure loopback network device",
    "PrivateNetwork=yes is configured, but",
)


def output_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not any(n in line for n in _CONTAINER_NOISE)]


def rnx_json(host: Host, *args: str) -> Any:
    """rnx --json inside the container, as root over the local socket."""
    return json.loads(host.machine.run("rnx", "--json", *args).stdout)


def unit_state(host: Host, unit: str) -> str:
    return host.machine.run("systemctl", "is-active", unit, check=False).stdout.strip()


def main_pid(host: Host, unit: str) -> int:
    out = host.machine.run("systemctl", "show", "-p", "MainPID", "--value", unit).stdout
    return int(out.strip())


def wait_for(what: str, predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def check_installed_and_listening(host: Host) -> None:
    """postinst made the PKI and enabled and started the socket, and said what to do next."""
    m = host.machine
    assert unit_state(host, "joblet.socket") == "active"
    assert m.run("systemctl", "is-enabled", "joblet.socket").stdout.strip() == "enabled"
    assert "rnx job run -- echo hello" in host.install_output
    assert "joblet-agent pki client" in host.install_output
    for name in ("ca.crt", "ca.key", "server.crt", "server.key", "crl.pem"):
        assert m.path(f"/etc/joblet/pki/{name}").is_file(), name
    assert m.path("/etc/joblet/joblet.yml").is_file()
    conffiles = m.run("dpkg-query", "-W", "-f=${Conffiles}", "joblet").stdout
    assert "/etc/joblet/joblet.yml" in conffiles
    # The agent starts on the first connection (socket activation), not at install.
    assert unit_state(host, "joblet.service") == "inactive"


def check_job_as_root(host: Host) -> str:
    """`sudo rnx job run -- echo hello`; its output is in the unit's journal. Returns the job id."""
    m = host.machine
    run = m.run("rnx", "job", "run", "--", "echo", "hello")
    assert output_lines(run.stdout) == ["hello"], run.stdout
    assert unit_state(host, "joblet.service") == "active"  # activated by that connection
    jobs = rnx_json(host, "job", "list")
    job = next(j for j in jobs if j["spec"]["args"] == ["hello"])
    assert job["state"] == "COMPLETED" and job["exit_code"] == 0, job
    journal = m.run("journalctl", "--no-pager", "-o", "cat", "-u", "joblet-job-*").stdout
    assert "hello" in journal.splitlines()
    unit_journal = m.run("journalctl", "--no-pager", "-o", "cat", "-u", job["unit"]).stdout
    assert "hello" in output_lines(unit_journal)
    return str(job["id"])


def check_job_over_mtls(host: Host) -> None:
    """A client certificate issued inside, used from outside the container (this tree's rnx)."""
    m = host.machine
    config = str(client_config(host))
    run = subprocess.run(
        [str(HOST_RNX), "--config", config, "job", "run", "--", "echo", "over", "mtls"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert output_lines(run.stdout) == ["over mtls"], run.stdout
    listed = subprocess.run(
        [str(HOST_RNX), "--config", config, "--json", "job", "list"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    mine = [j for j in json.loads(listed.stdout) if j["spec"]["args"] == ["over", "mtls"]]
    assert len(mine) == 1 and mine[0]["owner"] == "ci", mine
    journal = m.run("journalctl", "--no-pager", "-o", "cat", "-u", "joblet-job-*").stdout
    assert "over mtls" in journal.splitlines()
    # Without a certificate the TCP API turns the client away.
    text = Path(config).read_text()
    no_cert = host.client_dir / "no-cert.yml"
    no_cert.write_text(
        "\n".join(line for line in text.splitlines() if "cert:" not in line and "key:" not in line)
    )
    refused = subprocess.run(
        [str(HOST_RNX), "--config", str(no_cert), "job", "list"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0


def start_sleeper(host: Host) -> dict[str, Any]:
    job = rnx_json(host, "job", "run", "-d", "--", "sleep", "600")
    wait_for("the job to run", lambda: unit_state(host, job["unit"]) == "active")
    return dict(job)


def check_status_describes(host: Host, job: dict[str, Any]) -> None:
    status = host.machine.run("systemctl", "status", "--no-pager", job["unit"], check=False)
    assert status.returncode == 0, status.stdout
    assert f"Joblet job {job['id']}" in status.stdout
    assert "active (running)" in status.stdout
    assert "sleep 600" in status.stdout  # its process, in its own cgroup
    assert (
        "joblet.slice"
        in host.machine.run("systemctl", "show", "-p", "Slice", "--value", job["unit"]).stdout
    )


def check_restart_keeps_job(host: Host, job: dict[str, Any]) -> None:
    """`systemctl restart joblet.service` with a job running: the job is not the agent's child."""
    m = host.machine
    job_pid = main_pid(host, job["unit"])
    agent_pid = main_pid(host, "joblet.service")
    assert agent_pid > 0
    m.run("systemctl", "restart", "joblet.service")
    assert main_pid(host, "joblet.service") not in (0, agent_pid)
    assert unit_state(host, job["unit"]) == "active"
    assert main_pid(host, job["unit"]) == job_pid
    assert rnx_json(host, "job", "status", job["id"])["state"] == "RUNNING"


def stop_job(host: Host, job: dict[str, Any]) -> None:
    host.machine.run("rnx", "job", "stop", job["id"])
    wait_for(
        "the job to be STOPPED",
        lambda: rnx_json(host, "job", "status", job["id"])["state"] == "STOPPED",
    )
    assert unit_state(host, job["unit"]) != "active"
