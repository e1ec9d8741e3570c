"""rnx options README documents that no other test used: -e, --cpus, --max-runtime,
`job delete-all`, --node and --socket, each by what it does to the job or the agent; the upload
progress bar on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import uuid
from pathlib import Path

from joblet_agent.pki.store import Pki
from tests.integration.conftest import rnx
from tests.integration.test_control_plane import ADDRESS, pki  # noqa: F401 (fixture)


def status(job_id: str, *config: str) -> dict[str, object]:
    result = rnx(*config, "--json", "job", "status", job_id)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_env_cpus_and_max_runtime() -> None:
    result = rnx(
        "job", "run", "-e", "GREETING=hello world", "-e", "EMPTY=", "--cpus=0.5",
        "--", "sh", "-c", 'echo "$GREETING|$EMPTY|${UNSET-unset}"',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world||unset\n"
    assert "cpu 50% (0.5 cores)" in result.stderr  # --cpus is Docker's cores: 0.5 is 50 %
    timed = rnx("job", "run", "--max-runtime=1s", "--", "sleep", "30")
    assert timed.returncode == 124, timed.stderr


def test_delete_all_deletes_the_callers_ended_jobs_and_skips_running_ones(
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = f"da-{uuid.uuid4().hex[:6]}"
    config = str(pki.issue_client(name, "developer", out_dir=tmp_path / "c", address=ADDRESS))
    mine = ("--config", config)
    ended = [rnx(*mine, "job", "run", "-d", "--", "true").stdout.strip() for _ in range(2)]
    running = rnx(*mine, "job", "run", "-d", "--", "sleep", "60").stdout.strip()
    try:
        for job_id in ended:
            assert rnx(*mine, "job", "log", "-f", job_id).returncode == 0  # until it ended
        result = rnx(*mine, "job", "delete-all")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "Deleted 2 job(s); skipped 1 still running\n"
        listed = json.loads(rnx(*mine, "--json", "job", "list").stdout)
        assert [j["id"] for j in listed if j["owner"] == f"cert:{name}"] == [running]
        assert rnx(*mine, "job", "status", ended[0]).returncode == 3
    finally:
        assert rnx(*mine, "job", "stop", running).returncode == 0


def test_node_chooses_among_the_configs_nodes_and_socket_overrides_it(
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = pki.issue_client(
        f"nd-{uuid.uuid4().hex[:6]}", "reader", out_dir=tmp_path / "c", address=ADDRESS
    )
    text = config.read_text()
    assert text.startswith("default:") or "default:" in text, text
    # A second node that no agent serves becomes the default; the first keeps its name.
    nodes = (
        "default: nowhere\nnodes:\n"
        "  nowhere:\n    address: 127.0.0.1:9\n    cert: client.crt\n    key: client.key\n"
        "    ca: ca.crt\n"
        f"  here:\n    address: {ADDRESS}\n    cert: client.crt\n    key: client.key\n"
        "    ca: ca.crt\n"
    )
    config.write_text(nodes)
    assert rnx("--config", str(config), "job", "list").returncode == 7
    assert rnx("--config", str(config), "--node", "here", "job", "list").returncode == 0
    unknown = rnx("--config", str(config), "--node", "elsewhere", "job", "list")
    assert unknown.returncode == 9, unknown.stderr
    local = rnx(
        "--config", str(config), "--socket", "/run/joblet/joblet.sock", "--json", "job", "list"
    )
    assert local.returncode == 0, local.stderr  # the local socket: root, admin


# rich's DownloadColumn: "4.2/9.4 MB"; ANSI sequences are taken out first.
BAR = re.compile(r"[0-9.]+/[0-9.]+ MB")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def rnx_on_a_terminal(*args: str) -> tuple[int, str]:
    """rnx with its stderr on a pseudo-terminal: (exit code, what the terminal was sent)."""
    master, slave = pty.openpty()
    with subprocess.Popen(
        ["rnx", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
    ) as proc:  # fmt: skip
        os.close(slave)
        shown = bytearray()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: rnx, the last holder of the terminal, is gone
                break
            if not chunk:
                break
            shown += chunk
        os.close(master)
        code = proc.wait(timeout=120)
    return code, ANSI.sub("", shown.decode(errors="replace"))


def test_an_upload_over_8_mib_draws_a_bar_on_a_terminal_only(tmp_path: Path) -> None:
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(b"x" * (9 * 1024 * 1024))
    small.write_bytes(b"x" * (1024 * 1024))
    code, shown = rnx_on_a_terminal("job", "run", "--upload", str(big), "--", "true")
    assert code == 0, shown
    assert BAR.search(shown), shown
    code, shown = rnx_on_a_terminal("job", "run", "--upload", str(small), "--", "true")
    assert (code, BAR.search(shown)) == (0, None), shown
    piped = rnx("job", "run", "--upload", str(big), "--", "true")
    assert (piped.returncode, BAR.search(piped.stderr)) == (0, None), piped.stderr
