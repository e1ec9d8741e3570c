"""Runtimes against the real agent: install from a local registry, jobs inside them, refusals.

The runtime here is made in the test from files (its own copy of python3, a tools directory):
installing it takes a second. The Debian-built runtimes are the slow tier's (test_runtimes_built).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import active_job_units, rnx, wait_state
from tests.integration.test_control_plane import certs, pki  # noqa: F401 (fixtures)
from tests.integration.test_control_plane import rnx as rnx_as
from tests.runtime_kit import evil_archive, pack, registry, tiny_python, unique

RUNTIMES_DIR = Path("/opt/joblet/runtimes")
STAGING = RUNTIMES_DIR / ".staging"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(name, registry index) of a tiny runtime, installed for this module, removed after."""
    top = tmp_path_factory.mktemp("tiny")
    name = unique("tinypy")
    tree = tiny_python(top / "tree", name)
    archive = top / f"{name}.tar.gz"
    sha, size = pack(tree, archive)
    index = registry(top / "registry.json", {name: (archive, sha, size)})
    result = rnx("runtime", "install", name, "--registry", str(index))
    assert result.returncode == 0, result.stderr
    yield name, index
    rnx("runtime", "remove", name)


def run_in(name: str, *command: str, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    result = rnx("job", "run", f"--runtime={name}", *extra, "--", *command)
    return result.returncode, result.stdout, result.stderr


def test_job_runs_the_runtimes_interpreter_not_the_hosts(tiny: tuple[str, Path]) -> None:
    code, out, err = run_in(
        tiny[0],
        "python3",
        "-c",
        "import os, sys; print(sys.executable); print(os.path.realpath(sys.executable)); "
        "print(os.environ['TINY_RUNTIME']); print(os.environ['PATH'])",
    )
    assert code == 0, err
    executable, real, marker, path = out.splitlines()
    assert executable == "/opt/tinypy/bin/python3"
    assert real == "/opt/tinypy/bin/python3"  # its own file, not a link to the host's
    assert marker == "yes"
    assert path.startswith("/opt/tinypy/bin:/usr/local/sbin:")


def test_selective_mount_shows_only_the_listed_entries(tiny: tuple[str, Path]) -> None:
    code, out, err = run_in(
        tiny[0],
        "python3",
        "-c",
        "import os; print(sorted(os.listdir('/opt/tinypy/tools'))); "
        "print(os.path.exists('/opt/tinypy/tools/hidden'));"
        "print(open('/opt/tinypy/tools/visible').read().strip())",
    )
    assert code == 0, err
    assert out.splitlines() == ["['also-visible', 'visible']", "False", "visible"]


def test_runtime_files_are_read_only_to_the_job(tiny: tuple[str, Path]) -> None:
    code, out, _ = run_in(
        tiny[0], "python3", "-c", "open('/opt/tinypy/tools/visible', 'w').write('mine')"
    )
    assert code == 1
    assert "Read-only file system" in out or "Permission denied" in out  # the job's stderr
    assert (RUNTIMES_DIR / "tinypy" / tiny[0] / "tools" / "visible").read_text() == "visible\n"


def test_min_memory_refuses_and_recommended_memory_warns(tiny: tuple[str, Path]) -> None:
    before = active_job_units()
    code, _, err = run_in(tiny[0], "python3", "-c", "pass", extra=("--max-memory=64M",))
    assert code == 2
    assert "64M is below what runtime" in err and "min_memory 256M" in err
    assert active_job_units() == before
    code, _, err = run_in(tiny[0], "python3", "-c", "pass", extra=("--max-memory=512M",))
    assert code == 0, err
    assert "Warning: limits.memory_bytes: 512M is below" in err
    assert "recommended_memory 1G" in err


def test_unknown_runtime_names_installed_ones_and_near_matches(tiny: tuple[str, Path]) -> None:
    typo = tiny[0][:-1] + ("x" if tiny[0][-1] != "x" else "y")
    code, _, err = run_in(typo, "python3", "-c", "pass")
    assert code == 3
    assert f"runtime: '{typo}' is not installed; installed: " in err
    assert tiny[0] in err.split("installed: ", 1)[1]
    assert f"did you mean {tiny[0]}" in err


def test_release_must_match_when_given(tiny: tuple[str, Path]) -> None:
    code, out, err = run_in(f"{tiny[0]}@1.0.0", "python3", "-c", "print('ok')")
    assert (code, out) == (0, "ok\n"), err
    code, _, err = run_in(f"{tiny[0]}@2.0.0", "python3", "-c", "pass")
    assert code == 3
    assert "is installed at release 1.0.0, not 2.0.0" in err


def test_list_info_and_smoke_test(tiny: tuple[str, Path]) -> None:
    listed = json.loads(rnx("--json", "runtime", "list").stdout)
    assert tiny[0] in [r["name"] for r in listed["runtimes"]]
    info = json.loads(rnx("--json", "runtime", "info", tiny[0]).stdout)
    assert info["directory"] == str(RUNTIMES_DIR / "tinypy" / tiny[0])
    assert info["requirements"] == {"min_memory": 256 * 2**20, "recommended_memory": 2**30}
    result = rnx("runtime", "test", tiny[0])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tiny smoke ok\n"
    assert "smoke test passed" in result.stderr


def test_installing_the_same_release_again_is_a_no_op(tiny: tuple[str, Path]) -> None:
    result = rnx("runtime", "install", tiny[0], "--registry", str(tiny[1]))
    assert result.returncode == 0
    assert "already installed" in result.stderr


def test_rnx_registry_names_the_registry_and_a_github_shorthand_is_refused(
    tiny: tuple[str, Path], tmp_path: Path
) -> None:
    """RNX_REGISTRY stands for --registry (the release it names is the one installed); the design
    document's `--registry=myorg/runtimes` (a GitHub repository) is refused naming the forms
    allowed, before the agent is asked."""
    env = {**os.environ, "RNX_REGISTRY": str(tiny[1])}
    installed = subprocess.run(
        ["rnx", "runtime", "install", tiny[0]],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert "already installed" in installed.stderr
    # In tmp_path, where no directory myorg/runtimes makes it a local path.
    refused = subprocess.run(
        ["rnx", "runtime", "install", "python-3.11", "--registry", "myorg/runtimes"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert refused.returncode == 3, refused
    assert "'myorg/runtimes': no registry index there" in refused.stderr
    assert "https:// URL, a file:// URL or a local path" in refused.stderr


def test_remove_is_refused_while_a_job_uses_the_runtime(tmp_path: Path) -> None:
    name = unique("tinypy")
    archive = tmp_path / "a.tar.gz"
    sha, size = pack(tiny_python(tmp_path / "tree", name), archive)
    index = registry(tmp_path / "registry.json", {name: (archive, sha, size)})
    assert rnx("runtime", "install", name, "--registry", str(index)).returncode == 0
    with Client() as client:
        job = client.run(["python3", "-c", "import time; time.sleep(60)"], runtime=name)
        wait_state(client, job.id, "RUNNING")
        result = rnx("runtime", "remove", name)
        assert result.returncode == 4
        assert f"runtime {name} cannot be removed: 1 job(s) still use it" in result.stderr
        replaced = rnx("runtime", "install", name, "--force", "--registry", str(index))
        assert replaced.returncode == 4
        assert "cannot be replaced" in replaced.stderr
        client.stop(job.id)
    result = rnx("runtime", "remove", name)
    assert result.returncode == 0, result.stderr
    assert not (RUNTIMES_DIR / "tinypy" / name).exists()


def _nothing_left(name: str) -> None:
    assert not list(RUNTIMES_DIR.glob(f"*/{name}"))
    assert not [p for p in STAGING.glob("*") if p.name.startswith(name)]


def test_tampered_archive_is_refused_by_rnx_and_by_the_agent(tmp_path: Path) -> None:
    name = unique("tinypy")
    archive = tmp_path / "a.tar.gz"
    sha, size = pack(tiny_python(tmp_path / "tree", name), archive)
    index = registry(tmp_path / "registry.json", {name: (archive, sha, size)})
    # One byte changed after the registry listed it.
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    result = rnx("runtime", "install", name, "--registry", str(index))
    assert result.returncode == 2
    assert "does not match the registry's" in result.stderr and "tampered" in result.stderr
    _nothing_left(name)
    # A client that skips its own check: the agent hashes the stream itself.
    with Client() as client, archive.open("rb") as stream, pytest.raises(RnxError) as refused:
        client.install_runtime(name, stream, size=size, sha256=sha)
    assert refused.value.status == 400
    assert "does not match the expected" in refused.value.message
    _nothing_left(name)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("dotdot", "'..' is not allowed"),
        ("absolute", "absolute paths are not allowed"),
        ("device", "is a character device"),
        ("link-out", "the link points outside"),
        ("absolute-link", "the link points outside"),
    ],
)
def test_hostile_archives_are_refused_and_leave_nothing(
    tmp_path: Path, kind: str, expected: str
) -> None:
    name = unique("evil")
    member = tarfile.TarInfo(
        {"dotdot": "../../escape", "absolute": "/etc/evil"}.get(kind, "rootfs/x")
    )
    if kind in ("dotdot", "absolute"):
        member.size = 1
    elif kind == "device":
        member.type, member.devmajor, member.devminor = tarfile.CHRTYPE, 1, 3
    else:
        member.type = tarfile.SYMTYPE
        member.linkname = "../../../etc/shadow" if kind == "link-out" else "/etc/shadow"
    archive = tmp_path / "evil.tar.gz"
    sha, size = evil_archive(archive, name, member)
    with Client() as client, archive.open("rb") as stream, pytest.raises(RnxError) as refused:
        client.install_runtime(name, stream, size=size, sha256=sha)
    assert refused.value.status == 400
    assert expected in refused.value.message
    _nothing_left(name)
    assert not Path("/escape").exists() and not Path("/etc/evil").exists()


def test_a_mount_leading_out_of_the_runtime_is_refused(tmp_path: Path) -> None:
    name = unique("tinypy")
    tree = tiny_python(tmp_path / "tree", name)
    os.symlink("..", tree / "up")  # lexically inside; the mount below follows it out
    spec = (tree / "runtime.yml").read_text()
    (tree / "runtime.yml").write_text(spec.replace("source: tools", "source: up/tools"))
    archive = tmp_path / "a.tar.gz"
    sha, size = pack(tree, archive)
    with Client() as client, archive.open("rb") as stream, pytest.raises(RnxError) as refused:
        client.install_runtime(name, stream, size=size, sha256=sha)
    assert "the link points outside" in refused.value.message or "leads outside" in (
        refused.value.message
    )
    _nothing_left(name)


def test_install_needs_maintainer_and_relaxing_runtimes_need_admin(
    tmp_path: Path,
    certs: dict[str, str],  # noqa: F811
) -> None:
    name = unique("tinypy")
    archive = tmp_path / "a.tar.gz"
    sha, size = pack(tiny_python(tmp_path / "tree", name, relax=["wx-memory"]), archive)
    index = str(registry(tmp_path / "registry.json", {name: (archive, sha, size)}))
    for role in ("reader", "developer", "maintainer"):
        result = rnx_as(certs[role], "runtime", "install", name, "--registry", index)
        assert result.returncode == 6, (role, result.stderr)
    assert "needs the admin role" in result.stderr  # the maintainer, for the relaxation
    _nothing_left(name)
    result = rnx_as(certs["admin"], "runtime", "install", name, "--registry", index)
    assert result.returncode == 0, result.stderr
    # Jobs of it get the relaxation without asking, and it is recorded on them.
    with Client(config=certs["developer"]) as client:
        job = client.run(["python3", "-c", "pass"], runtime=name)
        assert job.spec.relax == ("wx-memory",)
        assert job.spec.runtime == f"{name}@1.0.0"
        assert any("relaxes isolation" in w for w in job.warnings)
        client.wait(job.id)
    assert rnx_as(certs["developer"], "runtime", "remove", name).returncode == 6
    assert rnx_as(certs["maintainer"], "runtime", "remove", name).returncode == 0


def test_validate_reports_the_first_error_with_its_place(tmp_path: Path) -> None:
    good = tmp_path / "runtime.yml"
    good.write_text("name: demo\nversion: '1'\nmounts:\n  - {source: bin, target: /opt/demo}\n")
    result = rnx("runtime", "validate", str(good))
    assert result.returncode == 0, result.stderr
    result = rnx("runtime", "validate", str(good), "--tree", str(tmp_path))
    assert result.returncode == 2
    assert "mounts[0]" in result.stderr and "is not in" in result.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("name: demo\nversion: '1'\nmounts:\n  - {source: bin/../../etc, target: /x}\n")
    result = rnx("runtime", "validate", str(bad))
    assert result.returncode == 2
    assert "runtime.yml: mounts[0].source: 'bin/../../etc' is not valid; it leaves" in result.stderr
