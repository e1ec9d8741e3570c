"""The default job profile: its score, its world, its user."""

from __future__ import annotations

import re
import time

from rnx.client import Client
from tests.integration.conftest import JOBS_DIR, sh, wait_state


def output_of(client: Client, *argv: str) -> list[str]:
    job = client.run(list(argv))
    final = wait_state(client, job.id, "COMPLETED", "FAILED", timeout=30)
    assert final.state == "COMPLETED", final
    return list(client.logs(job.id, follow=False))


def test_default_profile_scores_safe(client: Client) -> None:
    job = client.run(["sleep", "30"])
    try:
        wait_state(client, job.id, "RUNNING")
        report = sh("systemd-analyze", "security", "--no-pager", job.unit)
    finally:
        client.stop(job.id)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)[1])  # type: ignore[index]
    assert score <= 0.3, report  # docs/security.md: 0.3 SAFE (a job with IP sockets is 0.8)


def test_job_runs_as_its_own_unprivileged_user(client: Client) -> None:
    a = client.run(["sleep", "5"])
    b = client.run(["sleep", "5"])
    try:
        wait_state(client, a.id, "RUNNING")
        wait_state(client, b.id, "RUNNING")
        users = {client.get(j.id).user for j in (a, b)}
        assert len(users) == 2 and all(str(u).startswith("joblet-u") for u in users)
    finally:
        client.stop(a.id)
        client.stop(b.id)
    ids = output_of(client, "id")
    assert re.match(
        r"uid=\d+\(joblet-u\d+\) gid=\d+\(joblet-u\d+\) groups=\d+\(joblet-u\d+\)$", ids[0]
    ), ids
    assert not ids[0].startswith("uid=0")


def test_the_job_sees_only_its_world(client: Client) -> None:
    top = output_of(client, "ls", "/")
    assert set(top) <= {
        "bin",
        "dev",
        "etc",
        "home",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "opt",  # empty: runtimes' mounts under /opt go into a per-job tmpfs there
        "proc",
        "root",
        "run",
        "sbin",
        "sys",
        "tmp",
        "usr",
        "var",
        "volumes",
        "work",
    }
    # /home and /root are inaccessible (ProtectHome), /var and /opt empty: nothing of the host's.
    seen = output_of(
        client,
        "sh",
        "-c",
        "ls -A /home /root /var /opt 2>/dev/null | grep -cv -e ':$' -e '^$'; true",
    )
    assert seen == ["0"]
    # /proc shows the job's own processes only.
    pids = output_of(
        client,
        "python3",
        "-c",
        "import os; print(sorted(p for p in os.listdir('/proc') if p.isdigit()))",
    )
    assert len(eval(pids[0])) == 1  # python itself
    # Only the /etc files programs need, and a /run without the host's sockets.
    assert set(output_of(client, "ls", "/etc")) <= {
        "alternatives",
        "group",
        "hostname",
        "hosts",  # links to the job's network's files (docs/networking.md); dangling here
        "resolv.conf",
        "ld.so.cache",
        "localtime",
        "nsswitch.conf",
        "passwd",
        "ssl",
    }
    # Nothing of the agent's is in the job's root: how a job ended is recorded outside it.
    assert set(output_of(client, "ls", "-A", "/run")) <= {".network", "systemd"}


def test_tmp_is_private_and_capped(client: Client) -> None:
    line = output_of(client, "df", "--output=size", "-B1", "/tmp")[1]
    assert int(line) == 64 * 1024 * 1024


def test_work_belongs_to_the_job_and_nobody_else(client: Client) -> None:
    job = client.run(["sh", "-c", "echo data > /work/out; stat -c '%a %U' /work /work/out"])
    wait_state(client, job.id, "COMPLETED")
    work, out = [line.split() for line in client.logs(job.id, follow=False)]
    # /work is the job's own filesystem, mounted in its namespace alone: its root directory is
    # the job user's (mkfs gives it 0755; no one else can reach it). Files it makes are 0600.
    assert work[1].startswith("joblet-u") and out == ["600", work[1]]
    assert (JOBS_DIR / job.id).stat().st_mode & 0o777 == 0o700
    assert (JOBS_DIR / job.id / "work.img").stat().st_mode & 0o777 == 0o600


def test_environment_is_the_documented_minimum(client: Client) -> None:
    env = dict(line.split("=", 1) for line in output_of(client, "env") if "=" in line)
    assert env.keys() <= {
        "PATH",
        "LANG",
        "HOME",
        "JOB_ID",
        "PWD",
        "SHLVL",
        "_",
        "LOGNAME",
        "USER",
        "SHELL",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "SYSTEMD_EXEC_PID",
    }
    assert env["HOME"] == "/work"


def test_work_is_a_capped_filesystem_that_goes_away_with_the_job(client: Client) -> None:
    job = client.run(
        [
            "sh",
            "-c",
            "df -B1 --output=size /work | tail -1; "
            "dd if=/dev/zero of=/work/fill bs=1M count=64 2>&1; true",
        ],
        work_bytes=32 * 1024 * 1024,
    )
    final = wait_state(client, job.id, "COMPLETED", "FAILED", timeout=30)
    size, *dd = list(client.logs(job.id, follow=False))
    assert 28 * 1024 * 1024 < int(size) <= 32 * 1024 * 1024
    assert any("No space left on device" in line for line in dd), dd
    assert final.state == "COMPLETED"
    # Mounted in the job's namespace only, and its loop device freed once the job ended.
    deadline = time.monotonic() + 10
    image = str(JOBS_DIR / job.id / "work.img")
    assert image not in sh("findmnt", "-rn", "-o", "SOURCE,TARGET")
    while image in sh("losetup", "-a") and time.monotonic() < deadline:
        time.sleep(0.1)  # the kernel detaches an autoclear loop device shortly after unmount
    assert image not in sh("losetup", "-a")


def test_refused_work_size_leaves_nothing(client: Client) -> None:
    from rnx.errors import RnxError

    before = set(JOBS_DIR.iterdir())
    try:
        client.run(["true"], work_bytes=1024)  # below the 16 MiB minimum
        raise AssertionError("a 1 KiB /work was accepted")
    except RnxError as exc:
        assert exc.status == 400 and "work_bytes" in exc.message
    assert set(JOBS_DIR.iterdir()) == before


def test_workdir_exists_inside_work_and_belongs_to_the_job(client: Client) -> None:
    job = client.run(["sh", "-c", "pwd; stat -c %U ."], workdir="out/deep")
    wait_state(client, job.id, "COMPLETED")
    lines = list(client.logs(job.id, follow=False))
    assert lines[0] == "/work/out/deep" and lines[1].startswith("joblet-u")


WX_MAP = (
    "import mmap\n"
    "try:\n"
    "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
    "    print('wx allowed')\n"
    "except OSError as exc:\n"
    "    print('wx refused', exc.errno)\n"
)


def test_wx_memory_is_refused_unless_an_admin_relaxes_it(client: Client) -> None:
    assert output_of(client, "python3", "-c", WX_MAP) == ["wx refused 1"]  # EPERM (seccomp)
    job = client.run(["python3", "-c", WX_MAP], relax=["wx-memory"])  # root: admin
    final = wait_state(client, job.id, "COMPLETED")
    assert final.spec.relax == ("wx-memory",)  # recorded on the job
    assert list(client.logs(job.id, follow=False)) == ["wx allowed"]


def test_unknown_relaxations_are_refused(client: Client) -> None:
    # (Who may relax: test_control_plane.test_only_admins_may_relax_isolation.)
    from rnx.errors import RnxError

    try:
        client.run(["true"], relax=["everything"])
        raise AssertionError("an unknown relaxation was accepted")
    except RnxError as exc:
        assert exc.status == 400
        assert exc.message.startswith("relax[0]: 'everything' is not valid; allowed: wx-memory")
