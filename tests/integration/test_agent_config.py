"""Keys of /etc/joblet/joblet.yml, each by its effect on the running agent (README's
"Configuration"): written, the agent restarted to read them, the file restored after."""

from __future__ import annotations

import ipaddress
import shutil
import time
from pathlib import Path

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.configured_agent import configured_agent
from tests.integration.conftest import rnx, sh, wait_state
from tests.integration.test_lifecycle import TERM_IGNORER
from tests.runtime_kit import pack, registry, tiny_python, unique


def refused(call: object) -> RnxError:
    with pytest.raises(RnxError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_max_running_queues_one_more_job_until_one_ends(client: Client) -> None:
    """jobs.max_running: 2 (the admission queue's cap when admission.max_running is unset): a
    third job waits QUEUED, first in line, and runs once one of the two ends."""
    with configured_agent("jobs:\n  max_running: 2\n"):
        first, second = client.run(["sleep", "60"]), client.run(["sleep", "60"])
        try:
            third = client.run(["true"])
            assert (third.state, third.queue_position) == ("QUEUED", 1), third
            assert client.get(third.id).state == "QUEUED"
            client.stop(first.id)
            assert wait_state(client, third.id, "COMPLETED").exit_code == 0
        finally:
            for job in (first, second):
                if not client.get(job.id).state.ended:
                    client.stop(job.id)


def test_stop_grace_from_joblet_yml_is_the_grace(client: Client) -> None:
    """jobs.stop_grace: 3s instead of the default 10 s: SIGKILL 3 s after SIGTERM."""
    with configured_agent("jobs:\n  stop_grace: 3s\n"):
        job = client.run(["python3", "-c", TERM_IGNORER])
        try:
            deadline = time.monotonic() + 30
            while "ready" not in list(client.logs(job.id, follow=False)):
                assert time.monotonic() < deadline, "the job never said it was ready"
                time.sleep(0.1)
        finally:
            stopped = client.stop(job.id)
        assert (stopped.state, stopped.signal) == ("STOPPED", "SIGKILL")
        lines = list(client.logs(job.id, follow=True))
        term = next(float(line.split()[1]) for line in lines if line.startswith("TERM "))
        last = [float(line.split()[1]) for line in lines if line.startswith("alive ")][-1]
        assert 2 <= last - term < 8, f"killed {last - term:.1f}s after SIGTERM, grace 3s"


def test_default_and_most_timeout_from_joblet_yml(client: Client) -> None:
    with configured_agent("jobs:\n  default_timeout: 2s\n  max_timeout: 1m\n"):
        job = client.run(["sleep", "60"])
        assert job.spec.limits.timeout_sec == 2
        final = wait_state(client, job.id, *("TIMEOUT", "COMPLETED", "FAILED", "STOPPED"))
        assert (final.state, final.exit_code) == ("TIMEOUT", 124)
        error = refused(lambda: client.run(["true"], timeout_sec="2m"))
        assert error.status == 400
        assert error.message.startswith("limits.timeout_sec:"), error.message
        assert "60" in error.message, error.message


def test_work_and_volume_and_upload_maximums_from_joblet_yml(
    client: Client, tmp_path: Path
) -> None:
    config = "jobs:\n  max_work_size: 32M\n  max_volume_size: 32M\n  max_upload_entries: 2\n"
    with configured_agent(config):
        error = refused(lambda: client.run(["true"], work_bytes="64M"))
        assert (error.status, error.message.split(":")[0]) == (400, "limits.work_bytes"), error
        error = refused(lambda: client.create_volume("too-big-for-config", size="64M"))
        assert error.status == 400 and "size" in error.message, error
        for name in "abc":
            (tmp_path / name).write_text(name)
        files = [str(tmp_path / name) for name in "abc"]
        error = refused(lambda: client.upload(files))
        assert (error.status, error.code) == (413, "too-large"), error
        assert "entries: 3 is over this agent's limit of 2" in error.message


ADDRESS_AND_UID = (
    "import os, socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "s.connect(('192.0.2.1', 9)); print(os.getuid(), s.getsockname()[0])"
)


def test_uid_base_and_isolated_cidr_from_joblet_yml(client: Client) -> None:
    """jobs.uid_base: the job runs as a user of the pool that starts there (not the default's
    0x7A000000); networks.isolated_cidr: an isolated job's address is in it (not 10.213.0.0/20)."""
    base = 0x7B000000
    config = f"jobs:\n  uid_base: {base}\nnetworks:\n  isolated_cidr: 10.214.16.0/24\n"
    with configured_agent(config):
        job = client.run(["python3", "-c", ADDRESS_AND_UID], network="isolated")
        assert wait_state(client, job.id, "COMPLETED").exit_code == 0
        uid, address = next(iter(client.logs(job.id, follow=False))).split()
    assert base <= int(uid) < base + 1024, uid  # the pool: max_running users from its base
    assert ipaddress.IPv4Address(address) in ipaddress.IPv4Network("10.214.16.0/24"), address


OTHER_RUNTIMES = Path("/opt/joblet/other-runtimes")
# In /run: the sandbox's own (its /etc/systemd is the host's), and gone at a reboot anyway.
DROP_IN = Path("/run/systemd/system/joblet.service.d/zz-test-runtimes-dir.conf")


def test_runtimes_dir_from_joblet_yml(tmp_path: Path) -> None:
    """runtimes_dir (with the drop-in docs/runtimes.md asks for): a runtime is installed there,
    not in /opt/joblet/runtimes, and a job runs in it from there."""
    name = unique("tinypy")
    archive = tmp_path / f"{name}.tar.gz"
    sha, size = pack(tiny_python(tmp_path / "tree", name), archive)
    index = registry(tmp_path / "registry.json", {name: (archive, sha, size)})
    DROP_IN.parent.mkdir(parents=True, exist_ok=True)
    DROP_IN.write_text(
        f"[Service]\nExecStartPre=+/bin/mkdir -p {OTHER_RUNTIMES}\n"
        f"ReadWritePaths=-{OTHER_RUNTIMES}\n"
    )
    try:
        sh("systemctl", "daemon-reload")
        with configured_agent(f"runtimes_dir: {OTHER_RUNTIMES}\n"):
            try:
                installed = rnx("runtime", "install", name, "--registry", str(index))
                assert installed.returncode == 0, installed.stderr
                assert [p.name for p in OTHER_RUNTIMES.glob(f"*/{name}")] == [name]
                assert not list(Path("/opt/joblet/runtimes").glob(f"*/{name}"))
                ran = rnx("job", "run", f"--runtime={name}", "--", "python3", "-c", "print('ran')")
                assert (ran.returncode, ran.stdout) == (0, "ran\n"), ran.stderr
            finally:
                rnx("runtime", "remove", name)
                DROP_IN.unlink()
                sh("systemctl", "daemon-reload")
    finally:
        DROP_IN.unlink(missing_ok=True)
        shutil.rmtree(OTHER_RUNTIMES, ignore_errors=True)
