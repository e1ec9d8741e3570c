"""Volume requests, job volume mounts, and their unit properties."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest

from joblet_agent.adapters.volume_files import default_acl
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.volume import (
    Volume,
    VolumeRequest,
    VolumeType,
    parse_volume_mounts,
    parse_volume_request,
)
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.units.volume import (
    VolumeBinding,
    escape_path,
    job_volume_properties,
    mount_properties,
)

G = 1024**3


def _request(data: object) -> VolumeRequest:
    return parse_volume_request(data, max_bytes=10 * G, memory_bytes=4 * G)


def test_a_request_with_units() -> None:
    request = _request({"name": "pipeline-data", "size": "1G"})
    assert (request.name, request.type, request.size_bytes) == ("pipeline-data", "filesystem", G)
    assert _request({"name": "m", "size": "512MB", "type": "memory"}).size_bytes == 512 * 1024**2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"size": "1G"}, "name"),
        ({"name": "Caps", "size": "1G"}, "name: 'Caps' is not a valid volume name"),
        ({"name": "-lead", "size": "1G"}, "is not a valid volume name"),
        ({"name": "a" * 64, "size": "1G"}, "is not a valid volume name"),
        ({"name": "ok"}, "size: None is not valid; a size is required"),
        ({"name": "ok", "size": "lots"}, "size: 'lots' is not valid"),
        ({"name": "ok", "size": "1M"}, "between 8M and 10240M"),
        ({"name": "ok", "size": "5G", "type": "memory"}, "between 8M and 4096M"),
        ({"name": "ok", "size": "1G", "type": "nfs"}, "type: 'nfs' is not valid; allowed"),
        ({"name": "ok", "size": "1G", "colour": "red"}, "colour"),
    ],
)
def test_bad_requests_name_the_field(data: object, message: str) -> None:
    with pytest.raises(JobletError) as caught:
        _request(data)
    assert caught.value.code is ErrorCode.INVALID
    assert message in caught.value.message


def test_job_volume_mounts() -> None:
    top = Fields({"volumes": [{"name": "a"}, {"name": "b", "read_only": True}]}, "")
    mounts = parse_volume_mounts(top, "volumes")
    assert [(m.name, m.read_only) for m in mounts] == [("a", False), ("b", True)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a", "volumes: 'a' is not valid; a list"),
        ([{"name": "a"}, {"name": "a"}], "volumes[1].name: 'a' is not valid; each volume"),
        ([{"name": "../x"}], "volumes[0].name: '../x' is not a valid volume name"),
        ([{"name": "a", "mode": "ro"}], "mode"),
        ([{"name": f"v{i}"} for i in range(33)], "at most 32"),
    ],
)
def test_bad_job_volume_mounts(value: object, message: str) -> None:
    with pytest.raises(JobletError) as caught:
        parse_volume_mounts(Fields({"volumes": value}, ""), "volumes")
    assert message in caught.value.message


@pytest.mark.parametrize(
    "path",
    [
        "/var/lib/joblet/volumes/pipeline-data/data",
        "/var/lib/joblet/volumes/a.b_c/data",
        "/srv/.hidden/x y/ü",
    ],
)
def test_escape_path_is_systemd_escape(path: str) -> None:
    tool = shutil.which("systemd-escape")
    assert tool, "systemd-escape is installed with systemd (make deps)"
    expected = subprocess.run([tool, "--path", path], capture_output=True, text=True, check=True)
    assert escape_path(PurePosixPath(path)) == expected.stdout.strip()


def _volume(kind: VolumeType) -> Volume:
    return Volume(
        "data", kind, 64 * 1024**2, 3, datetime(2026, 1, 1, tzinfo=UTC), "root", "unix:root"
    )


def test_mount_properties_and_job_properties_type_check() -> None:
    where = PurePosixPath("/var/lib/joblet/volumes/data/data")
    image = PurePosixPath("/var/lib/joblet/volumes/data/volume.img")
    disk = mount_properties(_volume(VolumeType.FILESYSTEM), image=image, where=where, gid=7)
    memory = mount_properties(_volume(VolumeType.MEMORY), image=image, where=where, gid=7)
    assert {p.name: p.value for p in disk}["Options"] == "nosuid,nodev,loop"
    assert {p.name: p.value for p in memory}["Options"] == (
        f"nosuid,nodev,size={64 * 1024**2},mode=0770,uid=0,gid=7"
    )
    bindings = (
        VolumeBinding("a", where, "joblet-v3", read_only=False),
        VolumeBinding("b", where, "joblet-v4", read_only=True),
    )
    props = {p.name: p.value for p in job_volume_properties(bindings)}
    assert props["BindPaths"] == [[str(where), "/volumes/a", False, 0]]
    assert props["BindReadOnlyPaths"] == [[str(where), "/volumes/b", False, 0]]
    assert props["SupplementaryGroups"] == ["joblet-v3", "joblet-v4"]
    assert props["TemporaryFileSystem"][0][0] == "/volumes"
    assert job_volume_properties(()) == []


def test_default_acl_layout() -> None:
    acl = default_acl(0x7A010003)
    assert acl[:4] == b"\x02\x00\x00\x00"
    assert len(acl) == 4 + 5 * 8
    assert (0x7A010003).to_bytes(4, "little") in acl
