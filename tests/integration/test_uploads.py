"""Uploads against the real agent: what arrives in /work, bounded memory, and every refusal
leaving nothing behind (no staged upload, no job directory, no unit)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx import uploads
from rnx.client import Client, Job
from rnx.errors import RnxError
from tests.integration.conftest import rnx, sh, unit_property

pytestmark = pytest.mark.integration

STATE = Path("/var/lib/joblet")
STAGED = STATE / "uploads"
JOBS = STATE / "jobs"


def _output(client: Client, job: Job) -> tuple[list[str], Job]:
    job_id = str(job.id)
    lines = list(client.logs(job_id))
    return lines, client.wait(job_id)


@pytest.fixture
def nothing_left() -> Iterator[None]:
    jobs_before = set(os.listdir(JOBS))
    yield
    assert list(STAGED.iterdir()) == [], "a refused upload stayed staged"
    assert set(os.listdir(JOBS)) == jobs_before, "a refused job left its directory"


def test_files_modes_links_and_directories_arrive(client: Client, tmp_path: Path) -> None:
    (tmp_path / "empty").touch()
    private = tmp_path / "private.sh"
    private.write_text("#!/bin/sh\necho private-ran\n")
    private.chmod(0o700)
    package = tmp_path / "my-package"
    (package / "nested" / "deeper").mkdir(parents=True)
    (package / "nested" / "deeper" / "data.txt").write_text("deep data\n")
    (package / "link-to-data").symlink_to("nested/deeper/data.txt")
    (package / "dangling").symlink_to("/nonexistent/elsewhere")
    script = (
        "stat -c '%n %a %s %U' empty private.sh; ./private.sh; cd my-package; "
        "cat link-to-data; readlink link-to-data dangling; stat -c %F link-to-data"
    )
    job = client.run(
        ["sh", "-c", script],
        uploads=[str(tmp_path / "empty"), str(private)],
        upload_dirs=[str(package)],
    )
    lines, end = _output(client, job)
    user = str(end.user)
    assert lines == [
        f"empty 644 0 {user}",
        f"private.sh 700 {len(private.read_text())} {user}",
        "private-ran",
        "deep data",
        "nested/deeper/data.txt",
        "/nonexistent/elsewhere",
        "symbolic link",
    ]
    assert end.exit_code == 0
    client.delete(str(job.id))


def test_design_document_upload_dir_then_cd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As written there: --upload-dir=my-package, then `cd my-package` inside bash -c."""
    package = tmp_path / "my-package"
    package.mkdir()
    (package / "setup.py").write_text("print('installed my-package')\n")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)  # restored after the test
    result = rnx(
        "job",
        "run",
        "--upload-dir=my-package",
        "--upload=data.csv",
        "bash",
        "-c",
        "cd my-package && python3 setup.py && wc -l < ../data.csv",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["installed my-package", "2"]


def test_the_staging_tree_goes_once_the_image_holds_it(client: Client, tmp_path: Path) -> None:
    """The job uses its /work image; root's copy of what it sent is not kept (nor walked again
    when the job is deleted). Its program was found in the upload all the same."""
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho ran-from-work\n")
    script.chmod(0o755)
    job = client.run(["/work/run.sh"], uploads=[str(script)])
    lines, end = _output(client, job)
    assert lines == ["ran-from-work"] and end.exit_code == 0
    job_dir = JOBS / str(job.id)
    assert (job_dir / "work.img").is_file()
    assert not (job_dir / "work").exists()
    client.delete(str(job.id))


def test_large_upload_keeps_agent_memory_bounded(client: Client, tmp_path: Path) -> None:
    size = 200 * 1024 * 1024
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        block = os.urandom(1024 * 1024)
        for _ in range(size // len(block)):
            out.write(block)
    agent = int(unit_property("joblet.service", "MainPID"))
    baseline = _rss(agent)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, _rss(agent))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        job = client.run(["sh", "-c", "stat -c %s big.bin"], uploads=[str(big)])
    finally:
        done.set()
        sampler.join()
    lines, end = _output(client, job)
    assert lines == [str(size)]
    assert (work := end.spec.limits.work_bytes) is not None and work >= size
    growth = peak - baseline
    print(f"agent RSS: {baseline >> 20} MiB before, {peak >> 20} MiB at peak, 200 MiB sent")
    assert growth < 48 * 1024 * 1024, f"the agent grew by {growth >> 20} MiB"
    client.delete(str(job.id))


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# -- refusals --------------------------------------------------------------------------------


def _raw_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def _send(client: Client, body: bytes, *, announce: int = 100, entries: int = 10) -> str:
    """Announce and PUT a hand-made stream, as a hostile client would."""
    upload = client._call("POST", "/v1/uploads", body={"bytes": announce, "entries": entries})
    response = client._wire.send_stream(
        "PUT", f"/v1/uploads/{upload['id']}", [body], content_type="application/x-tar"
    )
    answer = json.loads(response.read())
    if response.status >= 400:
        raise RnxError(answer["code"], answer["message"])
    return str(upload["id"])


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([_member("../escape")], "'..' is not allowed"),
        ([_member("/etc/cron.d/evil")], "absolute paths are not allowed"),
        ([_member("null", kind=tarfile.CHRTYPE)], "is a character device"),
        ([_member("pipe", kind=tarfile.FIFOTYPE)], "is a FIFO"),
        ([_member("same"), _member("same")], "is in the stream twice"),
        ([_member("up", kind=tarfile.SYMTYPE, link="../../../etc/shadow")], "points outside"),
        ([_member("big", b"y" * 101)], "exceeds the size limit"),
    ],
)
def test_hostile_streams_are_refused_and_nothing_stays(
    client: Client,
    nothing_left: None,
    members: list[tuple[tarfile.TarInfo, bytes | None]],
    match: str,
) -> None:
    with pytest.raises(RnxError) as caught:
        _send(client, _raw_tar(*members))
    assert caught.value.code == "invalid"
    assert match in caught.value.message


def test_stream_longer_than_announced_is_cut_off(client: Client, nothing_left: None) -> None:
    body = _raw_tar(_member("f", b"z" * 100)) + b"\0" * (3 * 1024 * 1024)
    agent = sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip()
    try:
        _send(client, body, announce=100, entries=1)
    except RnxError as refused:  # the agent answered before the client finished sending
        assert refused.code in ("invalid", "too-large"), refused
    except OSError:  # it cut the body off first; the same agent must still be serving
        pass
    else:
        raise AssertionError("a stream longer than announced was accepted")
    assert sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip() == agent
    assert client.health().status == "ok"


def test_over_the_limit_is_refused_before_sending(client: Client, nothing_left: None) -> None:
    with pytest.raises(RnxError) as caught:
        client._call("POST", "/v1/uploads", body={"bytes": 1 << 40, "entries": 1})
    assert caught.value.code == "too-large"
    assert "upload limit" in caught.value.message


def test_client_refuses_fifos_and_collisions(tmp_path: Path, nothing_left: None) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / "pipe")
    result = rnx("job", "run", f"--upload-dir={tree}", "true")
    assert result.returncode == 2
    assert "is a FIFO" in result.stderr
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "same.txt").write_text(d)
    result = rnx(
        "job", "run", f"--upload={tmp_path}/a/same.txt", f"--upload={tmp_path}/b/same.txt", "true"
    )
    assert result.returncode == 2
    assert "would be /work/same.txt" in result.stderr


def test_file_changing_while_sent_fails_and_nothing_stays(
    client: Client, tmp_path: Path, nothing_left: None
) -> None:
    moving = tmp_path / "moving.log"
    moving.write_bytes(b"a" * (4 * 1024 * 1024))
    plan = uploads.plan([str(moving)], [])
    with moving.open("ab") as out:
        out.write(b"appended after listing")
    upload = client._call("POST", "/v1/uploads", body={"bytes": plan.bytes, "entries": 1})
    with pytest.raises(RnxError) as caught:
        client._wire.send_stream(
            "PUT",
            f"/v1/uploads/{upload['id']}",
            uploads.stream(plan),
            content_type="application/x-tar",
        )
    assert "changed while being sent" in caught.value.message
    # The agent saw the stream break off (once it got to it: the client does not wait for
    # that), refused it as a bad request and removed what it had received.
    assert "PUT /v1/uploads/{id} by unix:root (admin): failed" in _audit_line(str(upload["id"]))
    assert "-> 400" in _audit_line(str(upload["id"]))
    assert not (STAGED / str(upload["id"])).exists()


def _audit_line(upload_id: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        out = subprocess.run(
            ["journalctl", "-u", "joblet.service", "AUDIT=1", "-o", "cat", "--no-pager"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        lines = [line for line in out.splitlines() if upload_id in line and "PUT" in line]
        if lines:
            return lines[-1]
        assert time.monotonic() < deadline, f"no audit entry for the upload {upload_id}"
        time.sleep(0.05)


def test_upload_larger_than_named_work_size_is_refused(
    client: Client, tmp_path: Path, nothing_left: None
) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(20 * 1024 * 1024))
    with pytest.raises(RnxError) as caught:
        client.run(["true"], uploads=[str(data)], work_bytes="16M")
    assert caught.value.code == "invalid"
    assert "limits.work_bytes" in caught.value.message
    assert "/work needs at least" in caught.value.message


def test_an_unknown_upload_is_not_found(client: Client, nothing_left: None) -> None:
    with pytest.raises(RnxError) as caught:
        client._call(
            "POST",
            "/v1/jobs",
            body={"command": "true", "upload": "00000000-0000-4000-8000-000000000000"},
        )
    assert caught.value.code == "not-found"
    assert "upload" in caught.value.message


def disk_use(*roots: Path) -> int:
    """Bytes the files under `roots` take on disk (allocated blocks: sparse images count what
    is written)."""
    total = 0
    for root in roots:
        for directory, _dirs, files in os.walk(root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(directory, name)).st_blocks * 512
                except OSError:  # removed while we looked
                    continue
    return total


def test_an_upload_takes_its_size_on_disk_once(client: Client, tmp_path: Path) -> None:
    """Staged, then in the job's /work image: never both whole at once (the staged copy goes as
    the image fills). Sampled every few milliseconds from the upload to the job's start."""
    size = 96 * 1024 * 1024
    data = tmp_path / "data.bin"
    with data.open("wb") as out:
        for _ in range(size // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    before = disk_use(STAGED, JOBS)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, disk_use(STAGED, JOBS))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        job = client.run(["wc", "-c", "data.bin"], uploads=[str(data)])
    finally:
        done.set()
        sampler.join()
    lines, final = _output(client, job)
    assert (final.state, lines) == ("COMPLETED", [f"{size} data.bin"]), (final, lines)
    grew = peak - before
    assert grew <= size * 1.25, f"a {size >> 20} MiB upload took {grew >> 20} MiB at its peak"
