"""The .deb install test: build the packages, boot fresh Debian roots, install them with apt.

Runs on the host as root (`make deb-test`), never inside tests/sandbox/sandbox: it boots its own
systemd with systemd-nspawn. The Debian roots come from packaging/debian/debian-root (debootstrap,
cached per machine); the packages' dependencies come from Debian's mirror through apt, their
downloads cached beside the roots. On a failure the container's journal is printed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deb import checks
from tests.deb.checks import REPO, Host
from tests.deb.machine import Machine

PACKAGING = REPO / "packaging/debian"
CACHE = Path(os.environ.get("JOBLET_DEB_CACHE", "/var/cache/joblet-deb-test"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A machine's first test also pays for its boot and install (debootstrap without the cache:
    minutes): a longer bound than pyproject.toml's 300 s."""
    for item in items:
        if Path(item.path).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.timeout(1200))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, the report carries the container's journal."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if call.when == "call" and report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Host):
                name = f"journal of {value.machine.name}"
                report.sections.append((name, value.machine.journal()))


@pytest.fixture(scope="session")
def debs() -> Iterator[Path]:
    """JOBLET_DEBS (make deb-test builds them first), else built now into a temporary directory."""
    given = os.environ.get("JOBLET_DEBS")
    if given:
        yield Path(given).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="joblet-debs-") as out:
        subprocess.run([str(PACKAGING / "build-debs"), out], check=True)
        yield Path(out)


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _install(suite: str, debs: Path, client_dir: Path) -> Iterator[Host]:
    assert os.geteuid() == 0, "the .deb install test boots containers: run it as root"
    found = sorted(debs.glob("joblet_*.deb")) + sorted(debs.glob("rnx_*.deb"))
    assert len(found) == 2, f"expected joblet_*.deb and rnx_*.deb in {debs}, found {found}"
    started = time.monotonic()
    pristine = subprocess.run(
        [str(PACKAGING / "debian-root"), suite], check=True, capture_output=True, text=True
    ).stdout.strip()
    archives = CACHE / f"archives-{suite}"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    port = _free_loopback_port()
    # The packaged socket listens on TCP 50051 of every address; on the shared network of this
    # test it listens on a free loopback port instead, through the drop-in an admin would use.
    dropin = (
        "[Socket]\nListenStream=\nListenStream=/run/joblet/joblet.sock\n"
        f"ListenStream=127.0.0.1:{port}\n"
    )
    name = f"joblet-deb-{suite}"
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir="/var/tmp") as workdir:
        machine = Machine.boot(
            name,
            Path(pristine),
            Path(workdir),
            hostname=f"joblet-{suite}",
            binds=[(archives, "/var/cache/apt/archives")],
            files={"/etc/systemd/system/joblet.socket.d/test-port.conf": dropin},
            # Debian 13 runs cgroup v2 only; Debian 12 gets the host's hybrid layout.
            unified_cgroup=suite != "bookworm",
        )
        try:
            booted = time.monotonic()
            inside = "/root/debs"
            machine.path(inside).mkdir()
            for deb in found:
                shutil.copy2(deb, machine.path(inside))
            machine.run("apt-get", "update", "-q", timeout=600)
            # As the README says: apt resolves the dependencies from Debian.
            output = machine.sh(
                f"cd {inside} && apt-get install -y -q ./joblet_*.deb ./rnx_*.deb 2>&1",
                timeout=900,
            )
            print(
                f"\n{suite}: booted in {booted - started:.0f} s, "
                f"installed in {time.monotonic() - booted:.0f} s"
            )
        except BaseException:
            print(f"--- journal of {name}\n{machine.journal()}")
            machine.shutdown()
            raise
        try:
            yield Host(machine, suite, port, output, inside, client_dir)
        finally:
            machine.shutdown()


@pytest.fixture(scope="module")
def debian12(debs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    yield from _install("bookworm", debs, tmp_path_factory.mktemp("client-debian12"))


@pytest.fixture(scope="module")
def debian13(debs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    yield from _install("trixie", debs, tmp_path_factory.mktemp("client-debian13"))


# The same machines, rebooted once into a network namespace of their own (job networks need
# CAP_NET_ADMIN, which PID 1 has only there): the tests that use these come after every test
# that needs the host's network (apt, the client outside).
@pytest.fixture(scope="module")
def debian12_private_network(debian12: Host) -> Host:
    checks.boot_with_private_network(debian12)
    return debian12


@pytest.fixture(scope="module")
def debian13_private_network(debian13: Host) -> Host:
    checks.boot_with_private_network(debian13)
    return debian13
