"""The program of an upload's helper unit (units/upload.py), run here as the test's own user: the
files arrive whole with their modes, times and links; the source is emptied as they go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

from joblet_agent.domain.user import JobUser
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.upload import CHUNK, MOVER, SOURCE, TARGET, mover_properties


def move(source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", MOVER, str(source), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_tree_arrives_whole_and_leaves_nothing_behind(tmp_path: Path) -> None:
    source, target = tmp_path / "upload", tmp_path / "work"
    (source / "pkg" / "deep").mkdir(parents=True)
    target.mkdir()
    big = os.urandom(2 * CHUNK + 12345)  # three chunks, the last one short
    (source / "big.bin").write_bytes(big)
    (source / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    (source / "pkg" / "run.sh").chmod(0o500)
    (source / "pkg" / "deep" / "empty").touch()
    os.utime(source / "pkg" / "deep" / "empty", ns=(1_000_000_000, 2_000_000_000))
    os.link(source / "big.bin", source / "pkg" / "same.bin")
    (source / "pkg" / "link").symlink_to("../big.bin")
    (source / "pkg" / "outside").symlink_to("/etc/hostname")
    (source / "pkg" / "deep").chmod(0o555)  # read-only: its entries must still go
    os.utime(source / "pkg", ns=(3_000_000_000, 4_000_000_000))

    done = move(source, target)

    assert done.returncode == 0, done.stderr
    assert (target / "big.bin").read_bytes() == big
    assert (target / "pkg" / "run.sh").stat().st_mode & 0o777 == 0o500
    assert (target / "pkg" / "deep").stat().st_mode & 0o777 == 0o555
    assert (target / "pkg" / "deep" / "empty").stat().st_mtime_ns == 2_000_000_000
    assert (target / "pkg").stat().st_mtime_ns == 4_000_000_000
    assert os.path.samefile(target / "big.bin", target / "pkg" / "same.bin")
    assert os.readlink(target / "pkg" / "link") == "../big.bin"
    assert os.readlink(target / "pkg" / "outside") == "/etc/hostname"  # moved, never followed
    assert list(source.iterdir()) == []  # the source root stays (a mount point), empty


def test_a_special_file_fails_the_move(tmp_path: Path) -> None:
    source, target = tmp_path / "upload", tmp_path / "work"
    source.mkdir()
    target.mkdir()
    os.mkfifo(source / "fifo")  # the extractor refuses these; the mover does not carry one
    done = move(source, target)
    assert done.returncode != 0 and "not a file, directory or link: fifo" in done.stderr


def test_the_helper_sees_the_two_trees_only_as_the_jobs_user() -> None:
    paths = JobPaths.for_job(
        PurePosixPath("/var/lib/joblet/jobs"), "0b7d3c1e-5a4f-4c2b-9e8d-1f2a3b4c5d6e"
    )
    props = {p.name: p.value for p in mover_properties(paths, JobUser("joblet-u3", 7), "x.slice")}
    assert (props["User"], props["Environment"], props["CapabilityBoundingSet"]) == (
        "joblet-u3",
        [],
        0,
    )
    assert props["BindPaths"] == [[str(paths.work), SOURCE, False, 0]]
    assert props["MountImages"][0][:2] == [str(paths.work_image), TARGET]
    assert "$" not in MOVER  # PID 1 would expand it in ExecStart's argv
