"""Hostile uploads against the real agent (review findings H2, H4, H5, L2, L10): each attack is
sent as a developer would send it, then another user must still get a job run, during the
attack where it lasts and again after an agent restart.

- H2: a 148-byte stream holding a member 1,200 directories deep once made every agent start die
  with RecursionError; small streams made millions of uncounted parent directories.
- H4: PUT bodies that never arrive held every thread of the loop's default executor, and every
  job submit waited behind them.
- H5: a GNU long-name header claiming hundreds of MiB, compressed to a few KiB, was read whole
  into the agent's memory.
- L2: a link through another link left the tree although each alone stayed inside.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import os
import socket
import ssl
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from rnx.tls import client_context
from tests.integration.conftest import sh, unit_property
from tests.security.attacks.conftest import another_user_runs_a_job, restart_agent

pytestmark = pytest.mark.integration

STATE = Path("/var/lib/joblet")
STAGED = STATE / "uploads"
DEEP = 1200  # past CPython 3.11's recursion limit of 1,000 in shutil.rmtree and os.walk
BOMB_BYTES = 256 * 1024 * 1024  # what the bomb's long-name header claims
MEMORY_GROWTH_ALLOWED = 64 * 1024 * 1024


def _pax_tar(*members: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info in members:
            archive.addfile(info, io.BytesIO(b"\0" * info.size) if info.isreg() else None)
    return buffer.getvalue()


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def _send(client: Client, body: bytes, *, size: int = 0, entries: int = 1) -> str:
    """Announce, then PUT a hand-made stream as a hostile client would; the upload's id."""
    upload = client._call("POST", "/v1/uploads", body={"bytes": size, "entries": entries})
    response = client._wire.send_stream(
        "PUT", f"/v1/uploads/{upload['id']}", [body], content_type="application/x-tar"
    )
    answer = json.loads(response.read())
    if response.status >= 400:
        raise RnxError(answer["code"], answer["message"], None, response.status)
    return str(upload["id"])


def _refusal(client: Client, body: bytes, *, size: int = 0, entries: int = 1) -> RnxError | None:
    try:
        _send(client, body, size=size, entries=entries)
    except RnxError as exc:
        return exc
    return None


@pytest.fixture
def nothing_staged() -> Iterator[None]:
    yield
    assert list(STAGED.iterdir()) == [], "a refused upload stayed staged"


def test_deep_member_is_refused_and_the_agent_restarts(
    developer: Client, second_developer: str, nothing_staged: None
) -> None:
    body = _pax_tar(_file("/".join(["a"] * DEEP + ["f"])))
    print(f"deep upload: {len(bz2.compress(body))} bytes as bz2, {len(body)} as plain tar")
    refused = _refusal(developer, body)
    # Whatever the agent made of it, it must start again and serve.
    restart_agent()
    another_user_runs_a_job(second_developer)
    assert refused is not None, "a member 1,201 components deep was accepted"
    assert refused.code == "invalid"
    assert "1201 components deep; at most 64" in refused.message, refused.message


def test_deep_leftover_from_an_older_agent_does_not_stop_a_start(second_developer: str) -> None:
    """A tree as deep as old agents accepted, left staged: removed at start, never fatal."""
    leftover = STAGED / str(uuid.uuid4()) / "tree"
    leftover.mkdir(parents=True)
    _make_deep(leftover, DEEP)
    try:
        restart_agent()
        another_user_runs_a_job(second_developer)
        assert not leftover.parent.exists(), "the leftover upload is still there"
    finally:
        sh("rm", "-rf", "--one-file-system", str(leftover.parent), check=False)


def _make_deep(top: Path, depth: int) -> None:
    """mkdir -p of `depth` levels without a path longer than one name (fd-relative)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


def test_implicit_parent_directories_count_as_entries(
    developer: Client, second_developer: str, nothing_staged: None
) -> None:
    # 10 announced entries; each member quietly asks for 50 parent directories.
    members = [_file(f"d{i}/" + "x/" * 49 + "f") for i in range(10)]
    refused = _refusal(developer, _pax_tar(*members), entries=10)
    assert refused is not None, "10 members made 500 directories, counted as 10 entries"
    assert refused.code == "invalid"
    assert "more than 10 entries" in refused.message, refused.message
    another_user_runs_a_job(second_developer)


def _long_name_bomb(compress: Callable[[Iterator[bytes]], bytes]) -> bytes:
    """One GNU long-name header claiming BOMB_BYTES, then that many zeros, compressed."""
    header = tarfile.TarInfo("././@LongLink")
    header.type = tarfile.GNUTYPE_LONGNAME
    header.size = BOMB_BYTES

    def plain() -> Iterator[bytes]:
        yield header.tobuf(format=tarfile.GNU_FORMAT)
        block = b"\0" * (1 << 20)
        for _ in range(BOMB_BYTES >> 20):
            yield block
        yield b"\0" * 1024

    return compress(plain())


def _gzip(chunks: Iterator[bytes]) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as packed:
        for chunk in chunks:
            packed.write(chunk)
    return out.getvalue()


def _bzip2(chunks: Iterator[bytes]) -> bytes:
    packer = bz2.BZ2Compressor(9)
    return b"".join(packer.compress(c) for c in chunks) + packer.flush()


def _agent_memory() -> tuple[int, int]:
    """The agent's PID and resident memory now, its peak (VmHWM) reset to that."""
    pid = int(unit_property("joblet.service", "MainPID"))
    assert pid, "the agent is not running"
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    return pid, _status_bytes(pid, "VmRSS")


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@pytest.mark.parametrize("compress", [_gzip, _bzip2], ids=["gzip", "bzip2"])
def test_decompression_bomb_upload_is_refused_in_bounded_memory(
    developer: Client,
    second_developer: str,
    nothing_staged: None,
    compress: Callable[[Iterator[bytes]], bytes],
) -> None:
    body = _long_name_bomb(compress)
    developer.health()  # the agent is up before its memory is measured
    pid, before = _agent_memory()
    refused = _refusal(developer, body)
    growth = _status_bytes(pid, "VmHWM") - before
    print(f"bomb: {len(body)} bytes sent; agent peak grew {growth >> 20} MiB")
    assert growth < MEMORY_GROWTH_ALLOWED, f"the agent grew by {growth >> 20} MiB"
    assert refused is not None
    assert refused.code == "invalid"
    assert "compressed" in refused.message and "application/x-tar" in refused.message
    another_user_runs_a_job(second_developer)


def test_decompression_bomb_runtime_archive_is_refused_in_bounded_memory(
    client: Client, second_developer: str
) -> None:
    """Runtime archives are .tar.gz: read, but a header is capped before it is read."""
    body = _long_name_bomb(_gzip)
    client.health()
    pid, before = _agent_memory()
    with pytest.raises(RnxError) as caught:
        client.install_runtime(
            "bomb-runtime", [body], size=len(body), sha256=hashlib.sha256(body).hexdigest()
        )
    growth = _status_bytes(pid, "VmHWM") - before
    print(f"runtime bomb: {len(body)} bytes sent; agent peak grew {growth >> 20} MiB")
    assert growth < MEMORY_GROWTH_ALLOWED, f"the agent grew by {growth >> 20} MiB"
    assert caught.value.code == "invalid"
    assert "GNU long-name header" in caught.value.message, caught.value.message
    another_user_runs_a_job(second_developer)


def _stalled_put(client: Client, upload_id: str) -> ssl.SSLSocket:
    """A PUT whose headers promise a body that never comes, over mutual TLS."""
    target = client.target
    assert target.address and target.ca and target.cert and target.key
    host, _, port = target.address.rpartition(":")
    context = client_context(target.ca, target.cert, target.key)
    raw = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
    sock = context.wrap_socket(raw, server_hostname=host.strip("[]"))
    sock.sendall(
        f"PUT /v1/uploads/{upload_id} HTTP/1.1\r\nHost: joblet\r\n"
        "Content-Type: application/x-tar\r\nContent-Length: 10240\r\n\r\n".encode()
    )
    return sock


STALLS = 8  # more than the default executor's threads on this 2-CPU host (min(32, cpus + 4))


def _stall_uploads(client: Client) -> list[ssl.SSLSocket]:
    ids = [
        client._call("POST", "/v1/uploads", body={"bytes": 0, "entries": 0})["id"]
        for _ in range(STALLS)
    ]
    return [_stalled_put(client, upload_id) for upload_id in ids]


def test_stalled_upload_bodies_do_not_starve_job_submits(
    developer: Client, second_developer: str
) -> None:
    stalls = _stall_uploads(developer)
    try:
        taken = another_user_runs_a_job(second_developer)
    finally:
        for sock in stalls:
            sock.close()
    restart_agent()
    developer.close()  # its kept-alive connection went with the agent
    stalls = _stall_uploads(developer)
    try:
        again = another_user_runs_a_job(second_developer)
    finally:
        for sock in stalls:
            sock.close()
    print(f"{STALLS} stalled uploads: another user's job in {taken:.2f} s, {again:.2f} s")


def test_link_through_a_link_leaving_the_tree_is_refused(
    developer: Client, second_developer: str, nothing_staged: None
) -> None:
    # Each stays inside on its own: s leads to the top, t climbs three levels below s.
    body = _pax_tar(_link("a/b/c/s", "../../.."), _link("t", "a/b/c/s/../../.."))
    refused = _refusal(developer, body, entries=5)
    assert refused is not None, "t leads outside the tree through s, and was accepted"
    assert refused.code == "invalid"
    assert "'t'" in refused.message and "through the link 'a/b/c/s'" in refused.message
    another_user_runs_a_job(second_developer)


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(socket="/run/joblet/joblet.sock") as c:
        yield c
