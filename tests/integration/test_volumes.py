"""Volumes against the real systemd: sharing between jobs of different users, size limits by
effect (ENOSPC), read-only mounts, removal refused in use, agent restarts. Reboots are covered by
test_volumes_reboot.py, which `make integration` runs after rebooting the sandbox."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client, Job
from rnx.errors import RnxError
from tests.integration.conftest import rnx, wait_state

pytestmark = pytest.mark.integration

VOLUMES = Path("/var/lib/joblet/volumes")


@pytest.fixture
def volume(client: Client) -> Iterator[str]:
    name = f"t-{os.urandom(3).hex()}"
    client.create_volume(name, size="32M")
    yield name
    client.remove_volume(name)
    assert not (VOLUMES / name).exists()


def _run(client: Client, script: str, **kwargs: object) -> tuple[list[str], Job]:
    job = client.run(["sh", "-c", script], **kwargs)  # type: ignore[arg-type]
    lines = list(client.logs(str(job.id)))
    return lines, client.wait(str(job.id))


def test_design_document_three_stage_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The design document's pipeline, with plain python3 for pandas: stage 1 cleans an uploaded
    CSV into the volume, stage 2 computes from it, stage 3 reports; all through rnx as written."""
    monkeypatch.chdir(tmp_path)  # restored after the test
    Path("raw_data.csv").write_text("id,value\n1,10\n2,\n3,30\n")
    assert rnx("volume", "create", "pipeline-data", "--size=64M").returncode == 0
    try:
        stage1 = rnx(
            "job",
            "run",
            "--upload=raw_data.csv",
            "--volume=pipeline-data",
            "python3",
            "-c",
            "import csv\n"
            "rows = [r for r in csv.DictReader(open('raw_data.csv')) if r['value']]\n"
            "w = csv.DictWriter(open('/volumes/pipeline-data/cleaned.csv', 'w'), ['id', 'value'])\n"
            "w.writeheader(); w.writerows(rows)\n"
            "print('Data cleaned and saved')",
        )
        assert stage1.returncode == 0, stage1.stderr
        assert stage1.stdout == "Data cleaned and saved\n"
        stage2 = rnx(
            "job",
            "run",
            "--volume=pipeline-data",
            "--max-memory=2048",
            "python3",
            "-c",
            "import csv, json\n"
            "values = [int(r['value']) for r in csv.DictReader("
            "open('/volumes/pipeline-data/cleaned.csv'))]\n"
            "json.dump({'count': len(values), 'total': sum(values)},"
            " open('/volumes/pipeline-data/results.json', 'w'))\n"
            "print('Analysis complete')",
        )
        assert stage2.returncode == 0, stage2.stderr
        stage3 = rnx(
            "job",
            "run",
            "--volume=pipeline-data",
            "bash",
            "-c",
            "cat /volumes/pipeline-data/results.json",
        )
        assert stage3.returncode == 0, stage3.stderr
        assert stage3.stdout == '{"count": 2, "total": 40}\n'
        listed = rnx("volume", "list")
        assert "pipeline-data" in listed.stdout and "filesystem" in listed.stdout
    finally:
        assert rnx("volume", "remove", "pipeline-data").returncode == 0


def test_jobs_of_different_users_share_a_volume(client: Client, volume: str) -> None:
    writer = client.run(
        [
            "sh",
            "-c",
            f"umask 077; echo first > /volumes/{volume}/note; mkdir /volumes/{volume}/dir; "
            f"echo inner > /volumes/{volume}/dir/file; touch /volumes/{volume}/written; sleep 60",
        ],
        volumes=[volume],
    )
    try:
        marker = VOLUMES / volume / "data" / "written"
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert time.monotonic() < deadline, "the writer did not write"
            time.sleep(0.05)
        lines, reader = _run(
            client,
            f"echo second >> /volumes/{volume}/note && cat /volumes/{volume}/note && "
            f"echo more >> /volumes/{volume}/dir/file && rm /volumes/{volume}/written && echo ok",
            volumes=[volume],
        )
        assert reader.user != client.get(str(writer.id)).user
        assert lines == ["first", "second", "ok"]
        assert reader.exit_code == 0
    finally:
        client.stop(str(writer.id))


def test_writing_past_the_size_is_enospc_and_the_volume_still_works(
    client: Client, volume: str
) -> None:
    lines, end = _run(
        client,
        f"dd if=/dev/zero of=/volumes/{volume}/fill bs=1M count=64 2>&1 | grep -o 'No space left'",
        volumes=[volume],
    )
    assert lines == ["No space left"]
    lines, end = _run(
        client,
        f"rm /volumes/{volume}/fill && echo fine > /volumes/{volume}/after && "
        f"cat /volumes/{volume}/after",
        volumes=[volume],
    )
    assert lines == ["fine"]
    assert end.exit_code == 0


def test_memory_volume_is_capped_too(client: Client) -> None:
    name = f"m-{os.urandom(3).hex()}"
    created = client.create_volume(name, size="16M", type="memory")
    assert created.persistent is False
    try:
        lines, _ = _run(
            client,
            f"{{ head -c 40000000 /dev/zero > /volumes/{name}/big; }} 2>&1 "
            "| grep -o 'No space left' "
            f"|| echo no-error; df -k /volumes/{name} | tail -1 | awk '{{print $2}}'",
            volumes=[name],
        )
        assert lines == ["No space left", "16384"]
    finally:
        client.remove_volume(name)


def test_read_only_mount_refuses_writes(client: Client, volume: str) -> None:
    lines, _ = _run(
        client,
        f"touch /volumes/{volume}/x 2>&1 | grep -o 'Read-only file system'",
        volumes=[f"{volume}:ro"],
    )
    assert lines == ["Read-only file system"]


def test_jobs_without_the_volume_do_not_see_it(client: Client, volume: str) -> None:
    lines, _ = _run(client, "ls -A /volumes | wc -l; ls /var/lib/joblet 2>&1 | head -1")
    assert lines == ["0", "ls: cannot access '/var/lib/joblet': No such file or directory"]


def test_remove_is_refused_while_a_job_uses_it(client: Client) -> None:
    name = f"r-{os.urandom(3).hex()}"
    client.create_volume(name, size="16M")
    job = client.run(["sleep", "60"], volumes=[name])
    try:
        result = rnx("volume", "remove", name)
        assert result.returncode == 4
        assert "in use by 1 live job" in result.stderr and str(job.id) in result.stderr
        listed = {v.name: v for v in client.volumes()}
        assert listed[name].jobs == (job.id,)
    finally:
        client.stop(str(job.id))
    client.remove_volume(name)
    assert name not in {v.name for v in client.volumes()}
    units = subprocess.run(
        ["systemctl", "list-units", "--all", "--plain", "--no-legend", "*.mount"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert name not in units


def test_volume_data_survives_an_agent_restart(client: Client, volume: str) -> None:
    _run(client, f"echo kept > /volumes/{volume}/kept", volumes=[volume])
    subprocess.run(["systemctl", "restart", "joblet.service"], check=True)
    with Client() as fresh:
        assert volume in {v.name for v in fresh.volumes()}
        lines, _ = _run(fresh, f"cat /volumes/{volume}/kept", volumes=[volume])
    assert lines == ["kept"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "Bad_Name", "--size=1G"], "'Bad_Name' is not a valid volume name"),
        (["create", "ok", "--size=1X"], "size: '1X' is not valid"),
        (["create", "ok", "--size=1K"], "between 8M and"),
        (["create", "ok", "--size=1G", "--type=disk"], "'disk' is not one of"),
        (["remove", "never-made"], "there is no volume 'never-made'"),
    ],
)
def test_bad_volume_requests_say_what_is_wrong(args: list[str], message: str) -> None:
    result = rnx("volume", *args)
    assert result.returncode == 2 or result.returncode == 3, result
    assert message in result.stderr
    assert not (VOLUMES / "ok").exists()


def test_a_job_naming_a_bad_volume_is_refused_cleanly(client: Client) -> None:
    """(A missing volume is created for admins, refused for developers: test_control_plane.)"""
    jobs = set(os.listdir("/var/lib/joblet/jobs"))
    volumes = set(os.listdir(VOLUMES))
    with pytest.raises(RnxError) as caught:
        client.run(["true"], volumes=["Nope!"])
    assert caught.value.code == "invalid"
    assert "volumes[0].name: 'Nope!' is not a valid volume name" in caught.value.message
    assert set(os.listdir("/var/lib/joblet/jobs")) == jobs
    assert set(os.listdir(VOLUMES)) == volumes


def test_job_waits_for_nothing_when_volume_is_mounted(client: Client, volume: str) -> None:
    job = client.run(["sh", "-c", f"stat -c %a /volumes/{volume}"], volumes=[volume])
    assert wait_state(client, str(job.id), "COMPLETED").exit_code == 0
    assert list(client.logs(str(job.id), follow=False)) == ["770"]
