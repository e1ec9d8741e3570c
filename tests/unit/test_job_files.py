"""Files in and out of jobs: paths checked at the edge, the service against a fake init over a
directory, rnx's local side (nothing half-written), the cp command's two sides."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner

from joblet_agent.adapters.archive_out import TarMembers
from joblet_agent.domain.config import AgentConfig, JobPolicy
from joblet_agent.domain.exec_frames import EntryKind, FileEntry
from joblet_agent.domain.job import JobRecord, JobSpec, JobState
from joblet_agent.domain.job_file import JobPath, check_name, parse_job_path
from joblet_agent.domain.volume import VolumeMount
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.exec import ExecService
from joblet_agent.services.job_file import JobFileService
from joblet_agent.units.paths import JobPaths
from rnx.cli import cli
from rnx.downloads import extract_directory, save_file
from rnx.errors import RnxError
from tests.unit.fake_init import (
    FakeArchive,
    FakeExecJournal,
    FakeInit,
    FakeJobChannels,
    FakeStagedFiles,
)
from tests.unit.hosts import HYBRID_HOST
from tests.unit.wiring import upload_service

VOLUMES = (VolumeMount("data", read_only=False), VolumeMount("ref", read_only=True))


@pytest.mark.parametrize(
    ("text", "base", "parts"),
    [
        ("/work", "/work", ()),
        ("out/r.csv", "/work", ("out", "r.csv")),
        ("/work//./out/", "/work", ("out",)),
        ("/volumes/data/x", "/volumes/data", ("x",)),
    ],
)
def test_job_paths(text: str, base: str, parts: tuple[str, ...]) -> None:
    assert parse_job_path(text, VOLUMES) == JobPath(base, parts)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("/work/../etc", "'..'"),
        ("../x", "'..'"),
        ("/etc/passwd", "outside the job's /work"),
        ("/volumes/nope/x", "not in a volume of this job's (it has: data, ref)"),
        ("/volumes/ref/x", "read-only"),  # written only
        ("/work/a\0b", "NUL"),
        ("/work/" + "x" * 256, "longer than 255"),
    ],
)
def test_bad_job_paths_say_why(text: str, why: str) -> None:
    with pytest.raises(JobletError) as refused:
        parse_job_path(text, VOLUMES, write=True)
    assert refused.value.code is ErrorCode.INVALID and why in refused.value.message
    for name in ("", ".", "..", "a/b"):
        with pytest.raises(JobletError):
            check_name(name)


def _record(state: JobState = JobState.RUNNING) -> JobRecord:
    return JobRecord(
        id="0b7d3c1e-5a4f-4c2b-9e8d-1f2a3b4c5d6e",
        spec=JobSpec(command="sleep"),
        state=state,
        owner="a",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def _service(tmp_path: Path, **policy: int) -> tuple[JobFileService, Path]:
    config = AgentConfig(state_dir=tmp_path / "state", jobs=JobPolicy(**policy))  # type: ignore[arg-type]
    work = tmp_path / "work"
    work.mkdir()
    channels = FakeJobChannels()
    socket = JobPaths.for_job(PurePosixPath(config.jobs_dir), _record().id).channel
    channels.inits[str(socket)] = FakeInit(work=work)
    execs = ExecService(config, channels, FakeExecJournal())
    service = JobFileService(
        config,
        HYBRID_HOST,
        execs,
        upload_service(config),
        staged=FakeStagedFiles(),
        archive=FakeArchive(),
        root=PurePosixPath("/roots/x"),
        init=PurePosixPath("/init"),
    )
    return service, work


def test_listing_reading_and_archiving_through_init(tmp_path: Path) -> None:
    service, work = _service(tmp_path)
    (work / "d").mkdir()
    (work / "d" / "f").write_bytes(b"12345")
    (work / "d" / "l").symlink_to("/etc/shadow")
    record = _record()

    async def scenario() -> tuple[list[str], bytes, bytes]:
        listing = await service.listing(record, parse_job_path("/work/d", ()))
        async with service.read(record, parse_job_path("d/f", ())) as (entry, data):
            content = b"".join([chunk async for chunk in data])
            assert entry.size == 5
        async with service.archive_of(record, parse_job_path("d", ())) as (total, stream):
            assert total == 5
            archive = b"".join([chunk async for chunk in stream])
        return [e.name for e in listing.entries], content, archive

    names, content, archive = asyncio.run(scenario())
    assert names == ["f", "l"] and content == b"12345"
    assert archive == b"[directory d 0][file d/f 5]12345[symlink d/l 0][end]"


def test_reads_over_the_download_bound_are_refused(tmp_path: Path) -> None:
    service, work = _service(tmp_path, max_download_bytes=4)
    (work / "big").write_bytes(b"12345")

    async def scenario() -> None:
        async with service.read(_record(), parse_job_path("big", ())):
            pass

    with pytest.raises(JobletError) as refused:
        asyncio.run(scenario())
    assert (
        refused.value.code is ErrorCode.TOO_LARGE and "max_download_size" in refused.value.message
    )


def test_an_ended_jobs_volumes_and_a_scheduled_jobs_files_are_refused(tmp_path: Path) -> None:
    service, _ = _service(tmp_path)

    async def attempt(record: JobRecord, path: JobPath) -> JobletError:
        with pytest.raises(JobletError) as refused:
            await service.listing(record, path)
        return refused.value

    ended = dataclasses.replace(_record(JobState.COMPLETED), spec=JobSpec("x", volumes=VOLUMES))
    volume = asyncio.run(attempt(ended, parse_job_path("/volumes/data", VOLUMES)))
    assert volume.code is ErrorCode.INVALID and "volume" in volume.message
    waiting = asyncio.run(attempt(_record(JobState.SCHEDULED), parse_job_path("/work", ())))
    assert waiting.code is ErrorCode.CONFLICT
    # Its files reclaimed after jobs.work_retention (issue 16): said so, not a helper's failure.
    at = datetime(2026, 1, 2, tzinfo=UTC)
    reclaimed = dataclasses.replace(_record(JobState.COMPLETED), files_reclaimed_at=at)
    gone = asyncio.run(attempt(reclaimed, parse_job_path("/work", ())))
    assert gone.code is ErrorCode.NOT_FOUND, gone
    assert "reclaimed at 2026-01-02T00:00:00+00:00" in gone.message


def test_a_broken_download_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(RnxError):
        save_file(iter([b"12"]), target, mode=0o644, size=5)
    assert list(tmp_path.iterdir()) == []
    save_file(iter([b"12", b"345"]), target, mode=0o640, size=5)
    assert target.read_bytes() == b"12345" and oct(target.stat().st_mode & 0o777) == "0o640"


def test_a_directory_extracts_whole_or_not_at_all(tmp_path: Path) -> None:
    members = TarMembers()
    entry = FileEntry("f", EntryKind.FILE, 0o600, 3, 0.0, 1, None)
    top = FileEntry("d", EntryKind.DIRECTORY, 0o750, 0, 0.0, 1, None)
    whole = members.header("d", top) + members.header("d/f", entry) + b"abc"
    whole += members.padding(3) + members.end()
    assert extract_directory(iter([whole]), tmp_path / "ok") == 1
    assert (tmp_path / "ok" / "f").read_bytes() == b"abc"
    with pytest.raises(RnxError):
        extract_directory(iter([whole[:600]]), tmp_path / "broken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]
    hostile = io.BytesIO()
    with tarfile.open(fileobj=hostile, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("d/../../escape"), io.BytesIO(b""))
    with pytest.raises(RnxError):
        extract_directory(iter([hostile.getvalue()]), tmp_path / "hostile")
    assert not (tmp_path.parent / "escape").exists()


def test_cp_needs_exactly_one_job_side() -> None:
    for args in (["a", "b"], ["job:/work/a", "other:/work/b"]):
        result = CliRunner().invoke(cli, ["job", "cp", *args])
        assert result.exit_code == 2 and "JOB:PATH" in result.output
