"""Files in and out of jobs (`rnx job cp|ls|cat`, Client.list_files/read_file/write_file/
copy_in/download): read and written inside the job by its init, as its user; confined to its
/work and volumes; links, FIFOs and hard links never followed or opened; an ended job's files
readable until it is deleted. Shown by effect against the real systemd in the sandbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client, Job, RnxError
from tests.integration.conftest import rnx, wait_state
from tests.integration.test_control_plane import certs, pki

pytestmark = pytest.mark.integration
__all__ = ["certs", "pki"]

# What the job makes: a result, a link out of the tree, a relative link leaving it, a link to
# a directory outside, a FIFO, a file with two names, a link to a file of its own.
SETUP = (
    "mkdir -p /work/out /work/src && echo result > /work/out/r.csv && "
    "ln -s /etc/passwd /work/abs && ln -s ../../etc/passwd /work/out/rel && ln -s /etc /work/etc "
    "&& mkfifo /work/fifo && echo twice > /work/a && ln /work/a /work/b && "
    "echo victim > /work/victim && ln -s /work/victim /work/src/target && touch /work/ready && "
    "exec sleep 600"
)


def _refused(call: object, code: str, *words: str) -> RnxError:
    with pytest.raises(RnxError) as refused:
        call()  # type: ignore[operator]
    assert refused.value.code == code, refused.value.message
    for word in words:
        assert word in refused.value.message + (refused.value.hint or ""), refused.value
    return refused.value


@pytest.fixture
def box(client: Client) -> Iterator[Job]:
    job = client.run(["sh", "-c", SETUP], name="files-box", timeout_sec=300)
    try:
        wait_state(client, job.id, "RUNNING")
        for _ in range(200):
            if client.exec(job.id, ["test", "-e", "/work/ready"]).exit_code == 0:
                break
        yield job
    finally:
        client.stop(job.id)


def test_ls_and_cat_show_the_jobs_files_and_never_follow_a_link(client: Client, box: Job) -> None:
    listing = client.list_files(box.id)
    by_name = {e.name: e for e in listing.entries}
    assert by_name["abs"].type == "symlink" and by_name["abs"].target == "/etc/passwd"
    assert by_name["fifo"].type == "fifo" and by_name["out"].type == "directory"
    assert client.read_file(box.id, "out/r.csv") == b"result\n"
    assert client.list_files(box.id, "/work/out/r.csv").entries[0].size == 7
    proc = rnx("job", "ls", "files-box", "/work/out")
    assert (
        proc.returncode == 0 and "r.csv" in proc.stdout and "rel -> ../../etc/passwd" in proc.stdout
    )
    assert rnx("job", "cat", "files-box", "/work/out/r.csv").stdout == "result\n"


@pytest.mark.parametrize(
    ("path", "code", "why"),
    [
        ("/work/abs", "invalid", "symlink"),  # an absolute link
        ("/work/out/rel", "invalid", "symlink"),  # a relative link leaving the tree
        ("/work/etc/passwd", "invalid", "symlink"),  # through a link to a directory
        ("/work/fifo", "invalid", "regular file"),  # opened without waiting, refused
        ("/work/a", "invalid", "hard link"),  # a file with two names
        ("/work/../etc/passwd", "invalid", ".."),
        ("/etc/passwd", "invalid", "outside the job's /work"),
        ("/volumes/other/x", "invalid", "not in a volume of this job's"),
        ("/work/nothing-here", "not-found", "No such file"),
    ],
)
def test_reads_refuse_what_leaves_the_tree_or_is_not_a_plain_file(
    client: Client, box: Job, path: str, code: str, why: str
) -> None:
    _refused(lambda: client.read_file(box.id, path), code, why)


def test_cp_in_files_and_directories_links_kept_as_links(
    client: Client, box: Job, tmp_path: Path
) -> None:
    tree = tmp_path / "pkg"
    (tree / "sub").mkdir(parents=True)
    (tree / "main.py").write_text("print(1)\n")
    (tree / "sub" / "data.txt").write_text("data\n")
    (tree / "link").symlink_to("main.py")
    (tmp_path / "fix.py").write_text("fixed\n")
    os.chmod(tmp_path / "fix.py", 0o750)
    copied = client.copy_in(box.id, str(tree), "/work/src/")
    assert (copied.files, copied.directories, copied.links) == (2, 2, 1)
    proc = rnx("job", "cp", str(tmp_path / "fix.py"), "files-box:/work/src/")
    assert proc.returncode == 0, proc.stderr
    client.copy_in(box.id, str(tmp_path / "fix.py"), "/work/src/renamed.py")
    found = client.exec(
        box.id, ["sh", "-c", "cd /work/src && stat -c '%n %F %a %U' fix.py renamed.py pkg/link"]
    ).text.splitlines()
    assert found == [
        f"fix.py regular file 750 {box.user}",
        f"renamed.py regular file 750 {box.user}",
        f"pkg/link symbolic link 777 {box.user}",
    ]
    assert client.exec(box.id, ["cat", "/work/src/pkg/sub/data.txt"]).text == "data\n"


def test_a_copy_in_replaces_a_link_and_never_writes_through_one(
    client: Client, box: Job, tmp_path: Path
) -> None:
    client.write_file(box.id, "/work/src/target", b"new\n")
    assert client.read_file(box.id, "/work/src/target") == b"new\n"  # a plain file now
    assert client.read_file(box.id, "/work/victim") == b"victim\n"  # what the link named
    (tmp_path / "x").write_text("x")
    _refused(
        lambda: client.copy_in(box.id, str(tmp_path / "x"), "/work/etc/"), "invalid", "symlink"
    )
    _refused(lambda: client.write_file(box.id, "/work/../x", b"x"), "invalid", "..")
    _refused(lambda: client.write_file(box.id, "/etc/x", b"x"), "invalid", "outside")


def test_cp_out_a_file_and_a_directory(client: Client, box: Job, tmp_path: Path) -> None:
    client.exec(
        box.id,
        [
            "sh",
            "-c",
            "mkdir -p /work/res/d && echo 1 > /work/res/d/one && "
            "ln -s /etc/shadow /work/res/evil && chmod 640 /work/res/d/one",
        ],
    )
    got = client.download(box.id, "/work/out/r.csv", str(tmp_path))
    assert got == tmp_path / "r.csv" and got.read_text() == "result\n"
    proc = rnx("job", "cp", "files-box:/work/res", str(tmp_path / "copy"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "copy" / "d" / "one").read_text() == "1\n"
    assert oct((tmp_path / "copy" / "d" / "one").stat().st_mode & 0o777) == "0o640"
    assert os.readlink(tmp_path / "copy" / "evil") == "/etc/shadow"  # a link, not its target
    # a directory holding a FIFO and a hard link: both left out, nothing blocks
    whole = client.download(box.id, "/work", str(tmp_path / "whole"))
    names = sorted(p.name for p in whole.iterdir())
    assert "fifo" not in names and "a" not in names and "r.csv" in os.listdir(whole / "out")


def test_an_ended_jobs_files_are_read_until_it_is_deleted(client: Client) -> None:
    job = client.run(["sh", "-c", "mkdir /work/out && echo 42 > /work/out/answer"])
    wait_state(client, job.id, "COMPLETED")
    assert client.read_file(job.id, "/work/out/answer") == b"42\n"
    assert [e.name for e in client.list_files(job.id, "/work/out").entries] == ["answer"]
    assert rnx("job", "cat", job.id, "/work/out/answer").stdout == "42\n"
    _refused(lambda: client.write_file(job.id, "/work/x", b"x"), "conflict", "COMPLETED")
    client.delete(job.id)
    _refused(lambda: client.read_file(job.id, "/work/out/answer"), "not-found")


def test_a_jobs_files_are_read_like_its_logs_and_written_by_its_owner(
    certs: dict[str, str], tmp_path: Path
) -> None:
    """Another owner's files are what its output is (issue 16: its logs are the owner's,
    maintainers' and admins'): a reader or another developer may neither read nor write them."""
    (tmp_path / "f").write_text("f")
    with Client(config=certs["developer"]) as owner:
        job = owner.run(["sh", "-c", "echo mine > /work/m; exec sleep 600"], timeout_sec=120)
        try:
            wait_state(owner, job.id, "RUNNING")
            owner.write_file(job.id, "/work/by-owner", b"ok")
            with Client(config=certs["maintainer"]) as maintainer:
                assert maintainer.read_file(job.id, "/work/by-owner") == b"ok"
            with Client(config=certs["reader"]) as reader:
                _refused(lambda: reader.read_file(job.id, "/work/by-owner"), "forbidden")
                _refused(lambda: reader.list_files(job.id), "forbidden")
                _refused(lambda: reader.write_file(job.id, "/work/x", b"x"), "forbidden")
            with Client(config=certs["developer2"]) as other:
                _refused(lambda: other.copy_in(job.id, str(tmp_path / "f"), "/work/"), "forbidden")
        finally:
            owner.stop(job.id)
