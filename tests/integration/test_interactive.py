"""Interactive sessions, driven through a real pseudo-terminal as a person's would be: `rnx job
exec -it` and `rnx job run -it` (prompt, window size at start and on resize, Ctrl-C to the job's
foreground process, Ctrl-D, exit code), stdin piping, and an agent restart mid-session."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Iterator

import pytest

from rnx.client import Client, Job
from tests.integration.conftest import rnx, sh, wait_state

pytestmark = pytest.mark.integration
WAIT_SEC = 20.0  # a bound on a hang, not a speed target


def _size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """rnx on a pseudo-terminal of its own: what it prints is read, keys are typed."""

    def __init__(self, *args: str, rows: int = 30, cols: int = 100) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: rnx, its stdin, stdout and stderr the terminal
            _size(0, rows, cols)  # the size it starts with
            os.execvp("rnx", ["rnx", *args])
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        # The kernel sends SIGWINCH to the terminal's foreground process (rnx).
        _size(self.fd, rows, cols)

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def expect(self, text: str) -> None:
        deadline = time.monotonic() + WAIT_SEC
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; the terminal shows {self.seen[-300:]!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: rnx ended
                    chunk = b""
                assert chunk, f"rnx ended before {text!r}; it showed {self.seen[-300:]!r}"
                self.seen += chunk
        self.seen = self.seen[self.seen.index(text.encode()) + len(text) :]

    def exit_code(self) -> int:
        """Once rnx ended, with everything it printed read."""
        deadline = time.monotonic() + WAIT_SEC
        status: int | None = None
        while True:
            if status is None:
                pid, waited = os.waitpid(self.pid, os.WNOHANG)
                status = waited if pid else None
            ready, _, _ = select.select([self.fd], [], [], 0 if status is not None else 0.1)
            chunk = b""
            if ready:
                with contextlib.suppress(OSError):  # EIO: all of it was read
                    chunk = os.read(self.fd, 4096)
                self.seen += chunk
            if status is not None and not chunk:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, f"rnx did not end; it showed {self.seen[-300:]!r}"


@pytest.fixture
def box(client: Client) -> Iterator[Job]:
    job = client.run(["sleep", "600"], name="tty-box", timeout_sec=300)
    try:
        wait_state(client, job.id, "RUNNING")
        yield job
    finally:
        client.stop(job.id)


def test_exec_it_is_a_terminal_with_its_size_ctrl_c_and_exit_code(box: Job) -> None:
    term = Terminal("job", "exec", "-it", "tty-box", "--", "sh", rows=30, cols=100)
    term.expect("$ ")
    term.type(b"stty size\n")
    term.expect("30 100")
    term.resize(40, 120)
    time.sleep(0.3)  # SIGWINCH reaches rnx, rnx tells the job's terminal
    term.type(b"stty size\n")
    term.expect("40 120")
    term.type(b"tty\n")
    term.expect("/dev/pts/")
    term.type(b"sleep 60\n")
    time.sleep(0.5)
    term.type(b"\x03")  # Ctrl-C: to sleep, the terminal's foreground process, not to rnx
    term.expect("$ ")
    term.type(b"echo status=$?\n")
    term.expect("status=130")
    term.type(b"exit 7\n")
    assert term.exit_code() == 7


def test_run_it_python_repl_ctrl_d_and_the_session_in_the_journal(client: Client) -> None:
    name = f"repl-{uuid.uuid4().hex[:8]}"
    term = Terminal("job", "run", "-it", "--name", name, "--", "python3", "-q")
    term.expect(">>> ")
    term.type(b"print(6 * 7)\n")
    term.expect("42")
    term.expect(">>> ")  # the REPL reads again (a key typed before that may be flushed)
    term.type(b"\x04")  # Ctrl-D: end of input, the REPL ends
    assert term.exit_code() == 0
    job = client.get(name)
    assert (job.state, job.exit_code) == ("COMPLETED", 0)
    assert any("42" in line for line in client.logs(job.id, follow=False))


def test_stdin_is_piped_with_i_and_closed_without(client: Client) -> None:
    piped = rnx("job", "run", "-i", "--", "wc", "-c", stdin="hi\n")
    assert (piped.returncode, piped.stdout.strip()) == (0, "3")
    closed = rnx("job", "run", "--", "wc", "-c", stdin="hi\n")
    assert (closed.returncode, closed.stdout.strip()) == (0, "0")
    big = rnx("job", "run", "-i", "--", "sh", "-c", "wc -c; exit 5", stdin="x" * 1_000_000)
    assert (big.returncode, big.stdout.strip()) == (5, "1000000")


def test_an_agent_restart_loses_the_session_not_the_job(client: Client, box: Job) -> None:
    term = Terminal("job", "exec", "-it", "tty-box", "--", "sh")
    term.expect("$ ")
    # --no-block: a stop that waited for the session (aiohttp's 60 s shutdown grace) would
    # outlast exit_code()'s bound; the agent closes open sessions as it stops.
    sh("systemctl", "restart", "--no-block", "joblet.service")
    code = term.exit_code()
    assert code == 7, term.seen
    assert b"session was lost" in term.seen
    assert client.get(box.id).state == "RUNNING"
    # and the next session works
    assert client.exec(box.id, ["true"]).exit_code == 0


def test_exec_without_a_terminal_passes_ctrl_c_on_as_sigint(box: Job) -> None:
    proc = subprocess.Popen(
        ["rnx", "job", "exec", "tty-box", "--", "sh", "-c", "echo ready; sleep 60"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(2)
    assert proc.wait(WAIT_SEC) == 130
