"""What a user does right after `apt install`, the same on Debian 12 and 13."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import tls_request
from tests.deb.machine import Machine
from tests.security.attacks.test_privileged_steps import JOB_SCRIPT as BAIT_JOB_SCRIPT
from tests.security.attacks.test_privileged_steps import build_bait, hostile_env

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
    for name in ("ca.crt", "ca/ca.key", "server.crt", "server.key", "crl.pem"):
        assert m.path(f"/etc/joblet/pki/{name}").is_file(), name
    # The CRL (valid 30 days) is renewed weekly by a timer the package enabled and started.
    assert m.run("systemctl", "is-enabled", "joblet-crl-renew.timer").stdout.strip() == "enabled"
    assert unit_state(host, "joblet-crl-renew.timer") == "active"
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
    # The agent's view of the file system has the PKI it serves with, never the CA's key.
    agent = f"/proc/{main_pid(host, 'joblet.service')}/root/etc/joblet/pki"
    assert m.run("test", "-r", f"{agent}/crl.pem", check=False).returncode == 0
    assert m.run("test", "-e", f"{agent}/ca/ca.key", check=False).returncode == 1
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
    assert len(mine) == 1 and mine[0]["owner"] == "cert:ci", mine
    journal = m.run("journalctl", "--no-pager", "-o", "cat", "-u", "joblet-job-*").stdout
    assert "over mtls" in journal.splitlines()
    # Without a certificate the agent turns the client away: its own TLS alert, on the same
    # connection that serves the certificate (review: rnx's config check used to be all it met).
    ca, crt, key = (host.client_dir / n for n in ("ca.crt", "client.crt", "client.key"))
    agent = ("127.0.0.1", host.port)
    served = tls_request.get(*agent, tls_request.context(ca, crt, key), sni="127.0.0.1")
    assert served.status_line == "HTTP/1.1 200 OK", served
    for tls13, alert in tls_request.NO_CERTIFICATE_ALERTS.items():
        refused = tls_request.get(*agent, tls_request.context(ca, tls13=tls13), sni="127.0.0.1")
        assert (refused.status_line, refused.alert) == (None, alert), refused
    # rnx itself refuses such a configuration before connecting: exit 9, naming what is missing.
    text = Path(config).read_text()
    no_cert = host.client_dir / "no-cert.yml"
    no_cert.write_text(
        "\n".join(line for line in text.splitlines() if "cert:" not in line and "key:" not in line)
    )
    bad = subprocess.run(
        [str(HOST_RNX), "--config", str(no_cert), "job", "list"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 9, (bad.returncode, bad.stderr)
    assert "a TLS node needs address, cert, key and ca" in bad.stderr, bad.stderr


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
    # In its owner's slice (root's on the local socket: unix:root), inside joblet.slice.
    show = ("systemctl", "show", "-p", "Slice", "-p", "ControlGroup", "--value", job["unit"])
    slice_, group = host.machine.run(*show).stdout.split()
    assert slice_ == "joblet-owner-unix:root.slice", slice_
    assert group.startswith("/joblet.slice/joblet-owner.slice/joblet-owner-unix:root.slice/"), group


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


# -- a job running across the agent going away (issue 14, review H7) ----------------------------

# After the agent went away and came back, the job execs real programs (not shell builtins) and
# uses every part of its root, as tests/security/attacks/test_restart_keeps_jobs.py does in the
# sandbox; each check prints ok-<what> or GONE-<what>. It goes on once the test writes a file
# into its volume (bounded wait: a lost signal shows as GONE lines, not as a hang).
_WORLD = (
    "i=0; while [ ! -e /volumes/keep/go-{tag} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); "
    "done; "
    "/usr/bin/env true && echo ok-usr || echo GONE-usr; "
    "/usr/bin/grep -q '^root:' /etc/passwd && echo ok-passwd || echo GONE-passwd; "
    "/usr/bin/id -un >/dev/null && echo ok-user || echo GONE-user; "
    'echo x > /work/after && [ "$(/usr/bin/cat /work/after)" = x ] && echo ok-work '
    "|| echo GONE-work; "
    '[ "$(/usr/bin/cat /volumes/keep/before-{tag})" = y ] && echo ok-volume || echo GONE-volume; '
    "echo z > /tmp/t && /usr/bin/cat /tmp/t >/dev/null && echo ok-tmp || echo GONE-tmp; "
    "[ -c /dev/null ] && echo ok-dev || echo GONE-dev"
)
WORLD = ("usr", "passwd", "user", "work", "volume", "tmp", "dev")
KEEP = "keep"  # the volume of these jobs
GO_AWAY = ("restart", "kill-9", "daemon-reload", "reinstall")


def agent_goes_away(host: Host, how: str) -> None:
    """Make the agent go away and come back, as `how` says; returns once it serves again."""
    m = host.machine
    before = main_pid(host, "joblet.service")
    if how == "restart":
        m.run("systemctl", "restart", "joblet.service")
    elif how == "kill-9":
        m.run("systemctl", "kill", "--signal=KILL", "--kill-who=main", "joblet.service")
    elif how == "daemon-reload":  # every `apt install` of a package with units runs one
        m.run("systemctl", "daemon-reload")
    elif how == "reinstall":  # the upgrade path of the maintainer scripts
        m.sh(f"cd {host.debs} && apt-get install -y -q --reinstall ./joblet_*.deb 2>&1")
    else:
        raise ValueError(f"agent_goes_away: how={how!r}, not one of {GO_AWAY}")
    if how != "daemon-reload":  # the agent itself was stopped or killed, and started again
        wait_for(
            "a new agent",
            lambda: (
                main_pid(host, "joblet.service") not in (0, before)
                and unit_state(host, "joblet.service") == "active"
            ),
        )


def check_job_keeps_its_whole_world(host: Host, how: str) -> None:
    """A job running across the agent going away (`how`) then uses /usr, /etc/passwd, its user,
    /work, its volume, /tmp and /dev: every ok line, in order, and the job COMPLETED."""
    m = host.machine
    tag = uuid.uuid4().hex[:8]
    m.run("rnx", "volume", "create", KEEP, "--size", "32M")
    job: dict[str, Any] = {}
    try:
        script = f"echo y > /volumes/{KEEP}/before-{tag}; echo start-{tag}; " + _WORLD.format(
            tag=tag
        )
        job = rnx_json(host, "job", "run", "-d", "--volume", KEEP, "--", "/bin/sh", "-c", script)
        wait_for("the job to run", lambda: unit_state(host, job["unit"]) == "active")
        job_pid = main_pid(host, job["unit"])
        agent_goes_away(host, how)
        assert main_pid(host, job["unit"]) == job_pid
        # Written by root on the host side of the volume (PID 1 mounts it there, in the
        # container's mount namespace, hence from inside): the job may go on.
        m.run("touch", f"/var/lib/joblet/volumes/{KEEP}/data/go-{tag}")
        wait_for(
            "the job to end",
            lambda: rnx_json(host, "job", "status", job["id"])["state"] in ("COMPLETED", "FAILED"),
            timeout=90,
        )
        lines = output_lines(m.run("rnx", "job", "log", job["id"]).stdout)
        assert lines == [f"start-{tag}", *[f"ok-{what}" for what in WORLD]], (how, lines)
        assert rnx_json(host, "job", "status", job["id"])["state"] == "COMPLETED"
    finally:
        if job and unit_state(host, job["unit"]) == "active":
            m.run("rnx", "job", "stop", job["id"], check=False)
        m.run("rnx", "volume", "remove", KEEP, check=False)


# -- job networks: in a network namespace of the container's own ------------------------------


def boot_with_private_network(host: Host) -> None:
    """Reboot the container (same root: what was installed stays) into a network namespace of
    its own, where its PID 1 has CAP_NET_ADMIN, as a host's has: job networks work there. Once;
    the tests that need the host's network (apt, the client outside) run before."""
    m = host.machine
    if m.private_network:
        return
    m.reboot(private_network=True)
    assert os.readlink(f"/proc/{m.pid1}/ns/net") != os.readlink("/proc/self/ns/net")
    assert m.run("ip", "-o", "link", "show").stdout.split()[1] == "lo:"  # loopback only
    assert unit_state(host, "joblet.socket") == "active"  # enabled: back after a reboot


CI_CONFIG = "/root/ci/rnx-config.yml"  # the developer certificate client_config issues


def rnx_as_developer(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    """rnx inside, from /root, as the developer `ci` over mTLS (to the agent's loopback port,
    which is the container's own once it has its own network)."""
    client_config(host)
    return host.machine.run("env", "-C", "/root", "rnx", "--config", CI_CONFIG, *args, check=False)


NETWORK = "backend"
# http.server's handler on port 8080 (in a TCPServer: HTTPServer looks its own name up in the
# DNS first, which no job network answers: 5 s). It ends on SIGTERM (as PID 1 of its PID
# namespace, on Debian 13, a process without a handler would ignore it until the SIGKILL).
_DB = """
import signal, socketserver, sys
from http.server import SimpleHTTPRequestHandler
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
socketserver.TCPServer(("", 8080), SimpleHTTPRequestHandler).serve_forever()
"""
# By name, until the server listens (bounded: a server that never answers shows as a line).
_CLIENT = """
import time, urllib.request
for attempt in range(300):
    try:
        with urllib.request.urlopen("http://db:8080/", timeout=5) as answer:
            print("db answered", answer.status)
            break
    except OSError:
        time.sleep(0.1)
else:
    print("db never answered")
"""
# Its own address (a UDP connect sends nothing: it only picks the route), then the db job.
_ISOLATED = """
import socket
route = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
route.connect(("{db}", 8080))
print("address", route.getsockname()[0])
db = socket.socket()
db.settimeout(2)
try:
    db.connect(("{db}", 8080))
    print("reached db")
except OSError as error:
    print("db unreachable:", type(error).__name__)
"""


def run_to_end(host: Host, *args: str) -> tuple[dict[str, Any], list[str]]:
    """`rnx job run -d ARGS` as root; waits for its end; returns its status and output lines."""
    job = rnx_json(host, "job", "run", "-d", *args)
    wait_for(
        "the job to end",
        lambda: rnx_json(host, "job", "status", job["id"])["state"] not in ("SCHEDULED", "RUNNING"),
        timeout=90,
    )
    lines = output_lines(host.machine.run("rnx", "job", "log", job["id"]).stdout)
    return rnx_json(host, "job", "status", job["id"]), lines


def check_named_and_isolated_networks(host: Host) -> None:
    """Two jobs on a named network reach each other by name; a job on the isolated network has
    an address of its own there and does not reach them."""
    m = host.machine
    m.run("rnx", "network", "create", NETWORK, "--cidr", "10.42.0.0/24")
    db = rnx_json(
        host, "job", "run", "-d", f"--network={NETWORK}", "--name=db", "--", "python3", "-c", _DB
    )
    try:
        wait_for(
            "the db job to start",
            lambda: rnx_json(host, "job", "status", db["id"])["state"] != "SCHEDULED",
        )
        status = rnx_json(host, "job", "status", db["id"])
        assert status["state"] == "RUNNING", status
        address = status["endpoint"]["address"]
        client, lines = run_to_end(host, f"--network={NETWORK}", "--", "python3", "-c", _CLIENT)
        assert lines == ["db answered 200"], (client, lines)
        assert client["state"] == "COMPLETED", client
        isolated, lines = run_to_end(
            host, "--network=isolated", "--", "python3", "-c", _ISOLATED.format(db=address)
        )
        assert isolated["state"] == "COMPLETED", (isolated, lines)
        assert isolated["endpoint"]["network"] == "isolated", isolated
        assert lines[0] == f"address {isolated['endpoint']['address']}", lines
        assert lines[1].startswith("db unreachable"), lines
    finally:
        if unit_state(host, db["unit"]) == "active":
            stop_job(host, db)
        m.run("rnx", "network", "remove", NETWORK)


def markers_inside(host: Host, tag: str) -> list[str]:
    """Every marker of the bait on the container's /run, /tmp, /var/lib/joblet and volumes."""
    m = host.machine
    find = ["find", "/run", "/tmp", "/var/lib/joblet", "-xdev", "-name", f"PWNED-{tag}-*"]
    found = m.run(*find, check=False).stdout.split()
    volumes = ["find", "/var/lib/joblet/volumes", "-name", f"PWNED-{tag}-*"]
    found += m.run(*volumes, check=False).stdout.split()
    return sorted(set(found))


def check_no_privileged_step_runs_job_bait(host: Host) -> None:
    """The attack of review C1/C2 (tests/security/attacks/test_privileged_steps.py, with its
    bait): a developer's job on every network mode points IP_LIB_DIR, PATH and the rest at an
    uploaded directory whose link_veth.so, ip, nft, grep ... write a marker when run as root.
    No marker may appear, in the job's view or anywhere on the container's /run, /tmp and
    /var/lib/joblet, and the job completes."""
    m = host.machine
    tag = uuid.uuid4().hex[:8]
    build_bait(m.path("/root/bait"), tag)  # compiled with the host's gcc
    m.run("rnx", "volume", "create", "bait", "--size", "32M")
    m.run("rnx", "network", "create", "atk", "--cidr", "10.77.0.0/24")
    m.run("rnx", "volume", "share", "bait", "--with", "cert:ci")  # root's, for the developer
    m.run("rnx", "network", "share", "atk", "--with", "cert:ci")
    env = [f"--env={name}={value}" for name, value in hostile_env("/work/bait").items()]
    try:
        for network in ("none", "isolated", "atk"):
            run = rnx_as_developer(
                host, "job", "run", f"--network={network}", *env, "--upload-dir", "bait",
                "--volume", "bait", "--", "/bin/sh", "-c", BAIT_JOB_SCRIPT,
            )  # fmt: skip
            seen = [line for line in run.stdout.splitlines() if "PWNED" in line]
            found = markers_inside(host, tag)
            assert not seen and not found, (
                f"a privileged process ran the job's bait ({network}): "
                f"job saw {seen}, the container has {found}"
            )
            assert run.returncode == 0, (network, run.stdout, run.stderr)
    finally:
        m.run("rnx", "network", "remove", "atk", check=False)
        m.run("rnx", "volume", "remove", "bait", check=False)
        shutil.rmtree(m.path("/root/bait"), ignore_errors=True)
