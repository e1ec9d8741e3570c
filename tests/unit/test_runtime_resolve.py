"""Runtime references, resolution among the installed ones, requirements, and what a runtime's
mounts put where in the job's filesystem."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from joblet_agent.domain.config import JobPolicy
from joblet_agent.domain.job import BASE_READ_ONLY, JobSpec, Limits
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.domain.runtime import parse_runtime
from joblet_agent.domain.runtime_binding import (
    InstalledRuntime,
    bind_runtime,
    check_requirements,
    resolve,
)
from joblet_agent.domain.runtime_reference import RuntimeRef, parse_reference
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.units.runtime import runtime_mounts
from tests.unit.hosts import HYBRID_HOST

ROOT = PurePosixPath("/opt/joblet/runtimes")


def installed(name: str, **fields: object) -> InstalledRuntime:
    spec = parse_runtime({"name": name, "version": "1", **fields})
    return InstalledRuntime(spec, ROOT / spec.language / name)


INSTALLED = [
    installed("python-3.11"),
    installed("python-3.11-ml", release="1.0.2"),
    installed("python-3.13"),
    installed("java-17", architectures=["amd64"]),
    installed("java-21"),
    installed("node-18"),
]


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("python-3.11-ml", RuntimeRef("python-3.11-ml")),
        ("python-3.11-ml@1.0.2", RuntimeRef("python-3.11-ml", "1.0.2")),
        ("java:17", RuntimeRef("java-17")),
        ("java:17@2.0", RuntimeRef("java-17", "2.0")),
        ("node-18", RuntimeRef("node-18")),
    ],
)
def test_references(text: str, ref: RuntimeRef) -> None:
    assert parse_reference(text) == ref


@pytest.mark.parametrize(
    "text", ["", "Java", "java:", ":17", "a@", "a@b@c", "../x", "a b", "j:1:2"]
)
def test_bad_references(text: str) -> None:
    with pytest.raises(ValueError, match="a runtime name, optionally with @release"):
        parse_reference(text)


def test_the_job_request_takes_the_canonical_reference() -> None:
    spec = parse_job_request(
        {"command": "java", "runtime": "java:17"}, JobPolicy(), HYBRID_HOST
    ).spec
    assert spec.runtime == "java-17"
    with pytest.raises(JobletError, match=r"^runtime: 17 is not valid; a runtime name"):
        parse_job_request({"command": "x", "runtime": 17}, JobPolicy(), HYBRID_HOST)
    with pytest.raises(JobletError, match=r"^runtime: 'py 3' is not valid; a runtime name"):
        parse_job_request({"command": "x", "runtime": "py 3"}, JobPolicy(), HYBRID_HOST)
    assert JobSpec.from_dict(spec.to_dict(with_secrets=True)) == spec


def test_resolve_by_name_alias_and_release() -> None:
    assert resolve(RuntimeRef("java-17"), INSTALLED, "amd64").name == "java-17"
    assert resolve(parse_reference("java:21"), INSTALLED, "amd64").name == "java-21"
    found = resolve(RuntimeRef("python-3.11-ml", "1.0.2"), INSTALLED, "amd64")
    assert found.directory == ROOT / "python" / "python-3.11-ml"


def test_unknown_runtime_lists_the_installed_ones_and_near_matches() -> None:
    with pytest.raises(JobletError) as refused:
        resolve(RuntimeRef("python-3.12"), INSTALLED, "amd64")
    assert refused.value.code is ErrorCode.NOT_FOUND
    assert refused.value.message == (
        "runtime: 'python-3.12' is not installed; installed: java-17, java-21, node-18, "
        "python-3.11, python-3.11-ml, python-3.13"
    )
    assert refused.value.hint == (
        "did you mean python-3.13, python-3.11, python-3.11-ml? rnx runtime list shows what "
        "is installed"
    )
    with pytest.raises(JobletError) as refused:
        resolve(RuntimeRef("ruby-3"), [], "amd64")
    assert "no runtimes are installed" in refused.value.message
    assert refused.value.hint == (
        "rnx runtime install NAME adds one; rnx runtime list shows what is installed"
    )


def test_another_release_or_architecture_is_refused() -> None:
    with pytest.raises(JobletError, match=r"installed at release 1\.0\.2, not 1\.0\.3") as refused:
        resolve(RuntimeRef("python-3.11-ml", "1.0.3"), INSTALLED, "amd64")
    assert refused.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(JobletError, match="built for amd64; this host is arm64") as refused:
        resolve(RuntimeRef("java-17"), INSTALLED, "arm64")
    assert refused.value.code is ErrorCode.UNSUPPORTED


def test_requirements_against_the_jobs_memory_limit() -> None:
    ml = installed("ml", requirements={"min_memory": "512M", "recommended_memory": "2G"})
    with pytest.raises(JobletError) as refused:
        check_requirements(ml, Limits(memory_bytes=256 * 2**20))
    assert refused.value.code is ErrorCode.INVALID
    assert refused.value.message == (
        "limits.memory_bytes: 256M is below what runtime ml needs: min_memory 512M"
    )
    assert refused.value.hint == "run with --max-memory=512M or more"
    assert check_requirements(ml, Limits(memory_bytes=2**30)) == [
        "limits.memory_bytes: 1G is below runtime ml's recommended_memory 2G"
    ]
    assert check_requirements(ml, Limits(memory_bytes=2 * 2**30)) == []
    assert check_requirements(ml, Limits()) == []  # no limit: the host's memory


def test_binding_records_the_release_and_the_runtimes_relaxations() -> None:
    java = installed("java-17", relax=["wx-memory"], release="1.0.0")
    spec, warnings = bind_runtime(JobSpec(command="java", runtime="java-17"), java)
    assert spec.runtime == "java-17@1.0.0"
    assert spec.relax == ("wx-memory",)
    assert warnings == [
        "runtime java-17 relaxes isolation: MemoryDenyWriteExecute=no: allow writable and "
        "executable memory"
    ]
    # Asked for already: nothing to warn about.
    spec, warnings = bind_runtime(JobSpec(command="java", relax=("wx-memory",)), java)
    assert warnings == []


def test_what_the_mounts_put_where() -> None:
    runtime = installed(
        "tools",
        mounts=[
            {"source": "rootfs/usr", "target": "/usr"},
            {"source": "rootfs/etc/ld.so.cache", "target": "/etc/ld.so.cache"},
            {"source": "bin", "target": "/opt/tools/bin", "selective": ["run"]},
            {"source": "data", "target": "/opt/tools/data", "readonly": False},
        ],
    )
    mounts = runtime_mounts(runtime, BASE_READ_ONLY)
    assert mounts.replaces == {"/usr", "/etc/ld.so.cache"}
    assert mounts.empty == ("/opt", "/opt/tools/bin")
    top = ROOT / "tools" / "tools"

    def where(path: str) -> tuple[bool, str | None]:
        covered, host = mounts.host_path_of(path)
        return covered, str(host) if host else None

    assert where("/usr/bin/python3") == (True, f"{top}/rootfs/usr/bin/python3")
    assert where("/bin/sh") == (True, f"{top}/rootfs/usr/bin/sh")  # usr-merged
    assert where("/usr") == (True, f"{top}/rootfs/usr")
    assert where("/opt/tools/bin/run") == (True, f"{top}/bin/run")
    assert where("/opt/tools/bin/hidden") == (True, None)  # not listed: nothing there
    assert where("/opt/other") == (True, None)  # /opt is the job's own empty one
    assert where("/opt/tools/data/x") == (True, f"{top}/data/x")
    assert where("/work/script") == (False, None)
    assert where("/usrlocal") == (False, None)
