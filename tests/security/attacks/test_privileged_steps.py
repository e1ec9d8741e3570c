"""Nothing privileged ever runs with anything a job controls (review C1, C2, H1).

A developer's job plants bait wherever a privileged step on its behalf could look (its /work, a
volume, its /tmp, a runtime's tree) and points a hostile environment at it: IP_LIB_DIR (iproute2
dlopens link_<kind>.so from there), PATH (a shell's lookup of grep, ip, ...), BASH_ENV/ENV (what a
shell sources), PYTHONPATH (sitecustomize), GCONV_PATH, LOCPATH. Every bait, when it runs as uid
0, writes a marker into every directory it can reach; the test fails if any marker appears, in
the job's view or on the host, on any network mode.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client
from tests.integration.conftest import wait_state
from tests.runtime_kit import pack, registry, unique
from tests.security.attacks.identities import owner_of

JOBLET_STATE = Path("/var/lib/joblet")
# Where a root process could leave a marker that the test can see: the job's own root-only
# directories on the host, the host's /run and /tmp (the test's, inside the sandbox), the state
# directory; and, in the job's view, /work and /tmp (the job lists those itself).
MARK_DIRS = ("/run/.joblet", "/work", "/tmp", "/run", "/var/lib/joblet", "/volumes/bait")
PROGRAMS = (
    "ip", "nft", "grep", "sh", "bash", "dash", "unshare", "nsenter", "printf", "cat", "true",
    "mkdir", "rm", "mv", "mount", "umount", "losetup", "mkfs.ext4", "dmesg", "journalctl",
    "python3", "env", "id", "chown", "setfacl",
)  # fmt: skip
LIB_KINDS = ("veth", "bridge_slave", "bridge", "dummy")
PAYLOAD_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void bait(void) {
    static const char *dirs[] = {%(dirs)s};
    char path[512];
    if (geteuid() != 0) return;
    for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%%s/PWNED-%(tag)s-%(via)s", dirs[i]);
        FILE *f = fopen(path, "w");
        if (f) { fprintf(f, "euid=%%d\n", geteuid()); fclose(f); }
    }
}
"""


def _script(tag: str, via: str) -> str:
    dirs = " ".join(MARK_DIRS)
    return (
        "#!/bin/sh\n"
        f'if [ "$(/usr/bin/id -u)" = 0 ]; then for d in {dirs}; do '
        f'echo "uid=0 via {via}" > "$d/PWNED-{tag}-{via}" 2>/dev/null; done; fi\n'
    )


def build_bait(directory: Path, tag: str) -> Path:
    """Shared libraries for IP_LIB_DIR, programs for PATH, files for BASH_ENV, ENV, PYTHONPATH,
    GCONV_PATH and LOCPATH: each leaves a marker when run as root."""
    directory.mkdir(parents=True)
    dirs = ", ".join(f'"{d}"' for d in MARK_DIRS)
    for kind in LIB_KINDS:
        source = directory / f"link_{kind}.c"
        source.write_text(PAYLOAD_C % {"dirs": dirs, "tag": tag, "via": f"lib-{kind}"})
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-o", str(directory / f"link_{kind}.so"), str(source)],
            check=True,
        )
        source.unlink()
        shutil.copy(directory / f"link_{kind}.so", directory / f"gconv-{kind}.so")
    for name in PROGRAMS:
        program = directory / name
        program.write_text(_script(tag, f"path-{name}"))
        program.chmod(0o755)
    for name in ("bashenv.sh", "env.sh"):
        (directory / name).write_text(_script(tag, name))
    python = _script(tag, "python").replace("#!/bin/sh\n", "")
    (directory / "sitecustomize.py").write_text(f"import os\nos.system({python!r})\n")
    (directory / "usercustomize.py").write_text(f"import os\nos.system({python!r})\n")
    (directory / "gconv-modules").write_text(
        "module INTERNAL BAIT// gconv-veth 1\nmodule BAIT// INTERNAL gconv-veth 1\n"
    )
    return directory


def hostile_env(at: str) -> dict[str, str]:
    return {
        "IP_LIB_DIR": at,
        "PATH": f"{at}:/work/bait:/tmp/bait:/volumes/bait/bait:/usr/sbin:/usr/bin:/sbin:/bin",
        "BASH_ENV": f"{at}/bashenv.sh",
        "ENV": f"{at}/env.sh",
        "PYTHONPATH": at,
        "GCONV_PATH": at,
        "LOCPATH": at,
        "TZDIR": at,
    }


# The job copies its bait into /tmp and the volume (for steps that run at its end), then prints
# every marker it can see, and that it ran: run by /bin/sh, since its PATH finds the bait's `sh`
# first (a test whose job ran the bait instead would see nothing and pass).
JOB_SCRIPT = (
    "/bin/cp -a /work/bait /tmp/ && echo bait-in-tmp; "
    "/bin/cp -a /work/bait /volumes/bait/ 2>/dev/null && echo bait-in-volume; "
    "/usr/bin/ls -a /work /tmp /volumes/bait 2>/dev/null | /usr/bin/grep PWNED; echo script-ran"
)


@pytest.fixture(scope="module")
def bait_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tag = uuid.uuid4().hex[:8]
    return build_bait(tmp_path_factory.mktemp("bait") / "bait", tag), tag


@pytest.fixture(scope="module")
def bait_volume(certs: dict[str, str]) -> Iterator[str]:
    """A volume every job of this module mounts at /volumes/bait (root's, shared with the
    developer)."""
    with Client(socket="/run/joblet/joblet.sock") as admin:
        admin.create_volume("bait", size="32M")
        admin.share_volume("bait", with_=owner_of(certs["developer"]))
        yield "bait"
        admin.remove_volume("bait")


@pytest.fixture(scope="module")
def named_network(certs: dict[str, str]) -> Iterator[str]:
    """A network of root's, shared with the developer."""
    name = unique("atk")
    with Client(socket="/run/joblet/joblet.sock") as admin:
        admin.create_network(name, "10.77.0.0/24")
        admin.share_network(name, with_=owner_of(certs["developer"]))
        yield name
        admin.remove_network(name)


def markers_on_host(tag: str) -> list[str]:
    found: list[str] = []
    for top in (Path("/run"), Path("/tmp"), JOBLET_STATE):
        out = subprocess.run(
            ["find", str(top), "-xdev", "-name", f"PWNED-{tag}-*"],
            capture_output=True,
            text=True,
            check=False,
        )
        found += out.stdout.split()
    for volumes in (JOBLET_STATE / "volumes",):
        out = subprocess.run(
            ["find", str(volumes), "-name", f"PWNED-{tag}-*"],
            capture_output=True,
            text=True,
            check=False,
        )
        found += out.stdout.split()
    return sorted(set(found))


@pytest.mark.parametrize("network", ["none", "isolated", "named"])
@pytest.mark.parametrize("at", ["/work/bait", "/tmp/bait", "/volumes/bait/bait"])
def test_no_privileged_step_runs_job_bait(
    developer: Client,
    bait_dir: tuple[Path, str],
    bait_volume: str,
    named_network: str,
    network: str,
    at: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory, tag = bait_dir
    monkeypatch.chdir(directory.parent)
    job = developer.run(
        ["/bin/sh", "-c", JOB_SCRIPT],
        env=hostile_env(at),
        upload_dirs=["bait"],
        volumes=[bait_volume],
        network=named_network if network == "named" else network,
    )
    final = wait_state(developer, job.id, "COMPLETED", "FAILED", timeout=60)
    lines = list(developer.logs(job.id, follow=False))
    seen_by_job = [line for line in lines if "PWNED" in line]
    on_host = markers_on_host(tag)
    for marker in on_host:
        Path(marker).unlink(missing_ok=True)
    assert not seen_by_job and not on_host, (
        f"a privileged process ran the job's bait ({network}, {at}): "
        f"job saw {seen_by_job}, host has {on_host}"
    )
    # The bait was where the attack needs it: otherwise the test saw nothing for want of trying.
    assert [line for line in lines if not line.startswith("PWNED")] == [
        "bait-in-tmp",
        "bait-in-volume",
        "script-ran",
    ], lines
    assert final.state == "COMPLETED", final


def test_no_privileged_step_runs_a_runtimes_tree(
    bait_dir: tuple[Path, str], named_network: str, tmp_path: Path
) -> None:
    """A runtime is data for its jobs: its programs, libraries and environment never reach a
    privileged step (review H1). The runtime puts bait on the PATH and IP_LIB_DIR of its jobs."""
    directory, tag = bait_dir
    name = unique("bait-rt")
    tree = tmp_path / "tree"
    shutil.copytree(directory, tree / "bait")
    (tree / "runtime.yml").write_text(
        f"name: {name}\nversion: '1'\nrelease: 1.0.0\n"
        "mounts:\n  - {source: bait, target: /opt/bait}\n"
        "environment:\n  PATH_PREPEND: /opt/bait\n  IP_LIB_DIR: /opt/bait\n"
        "  PYTHONPATH: /opt/bait\n  BASH_ENV: /opt/bait/bashenv.sh\n"
    )
    archive = tmp_path / f"{name}.tar.gz"
    sha, size = pack(tree, archive)
    index = registry(tmp_path / "registry.json", {name: (archive, sha, size)})
    install = subprocess.run(
        ["rnx", "runtime", "install", name, "--registry", str(index)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    try:
        with Client(socket="/run/joblet/joblet.sock") as admin:
            for network in ("none", "isolated", named_network):
                job = admin.run(
                    ["/bin/sh", "-c", JOB_SCRIPT.replace("/work/bait", "/opt/bait")],
                    runtime=name,
                    network=network,
                )
                final = wait_state(admin, job.id, "COMPLETED", "FAILED", timeout=60)
                lines = list(admin.logs(job.id, follow=False))
                seen = [line for line in lines if "PWNED" in line]
                on_host = markers_on_host(tag)
                for marker in on_host:
                    Path(marker).unlink(missing_ok=True)
                assert not seen and not on_host, (
                    f"a privileged process ran the runtime's bait ({network}): "
                    f"job saw {seen}, host has {on_host}"
                )
                assert "bait-in-tmp" in lines and "script-ran" in lines, lines
                assert final.state == "COMPLETED", final
    finally:
        subprocess.run(["rnx", "runtime", "remove", name], capture_output=True, check=False)
