"""A session with a command in a job (an exec, an attach) on this terminal: stdin to it, its
output to ours, as `ssh` and `docker exec` do.

With a terminal (-t) the local one is put in raw mode, so every key, Ctrl-C and Ctrl-D included,
goes to the job's terminal and its foreground process (not to rnx); the window size goes at the
start and on every SIGWINCH. Its output is written as it comes, escape sequences and all: a
terminal session is the job's screen (docs/security.md). Without one, Ctrl-C is passed on as
SIGINT to the command's process group, and stdin is sent when asked for (-i), else closed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rnx.client import Client, ExecEnd, Session

_READ = 64 * 1024


def terminal_size() -> tuple[int, int]:
    """The local terminal's rows and columns (its own, not $LINES and $COLUMNS)."""
    for fd in (sys.stdin.fileno(), sys.stdout.fileno()):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
    return 24, 80


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _pump(session: Session, fd: int) -> None:
    """Local stdin to the session until its end (then the command's stdin ends too)."""
    try:
        while chunk := os.read(fd, _READ):
            session.stdin(chunk)
    except OSError:
        pass
    session.close_stdin()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(session: Session, *, tty: bool, stdin: bool) -> ExecEnd | None:
    """Until the session ends: its end (None for an attach)."""
    fd = sys.stdin.fileno()
    raw = tty and os.isatty(fd)
    handlers: dict[int, object] = {}

    def resize(signum: int, frame: FrameType | None) -> None:
        session.resize(*terminal_size())

    def interrupt(signum: int, frame: FrameType | None) -> None:
        session.signal(signal.SIGINT)

    if raw:
        handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, resize)
    elif not tty:
        handlers[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    if stdin:
        threading.Thread(target=_pump, args=(session, fd), daemon=True).start()
    with _raw(fd) if raw else contextlib.nullcontext():
        try:
            for kind, data in session.events():
                if kind == "stdout":
                    _write_all(sys.stdout.fileno(), data)
                elif kind == "stderr":
                    _write_all(sys.stderr.fileno(), data)
                elif kind == "end":
                    return data  # type: ignore[no-any-return]
            return None
        finally:
            for number, previous in handlers.items():
                signal.signal(number, previous)  # type: ignore[arg-type]


def attached_run(client: Client, job_id: str, *, tty: bool, follow: Callable[[], int]) -> int:
    """`rnx job run -t` / `-i`: attach to the job's command. With a terminal, this terminal is
    the job's until its command ends; without, stdin goes to the command while `follow` (the
    log follower) prints its output. The job's exit code either way."""
    rows, cols = terminal_size() if tty else (0, 0)
    session = client.attach(job_id, rows=rows, cols=cols)
    if tty:
        relay(session, tty=True, stdin=True)
        final = client.wait(job_id)
        return final.exit_code if final.exit_code is not None else 1

    def feed() -> None:
        _pump(session, sys.stdin.fileno())
        with contextlib.suppress(Exception):  # the attach's end; the log says how the job did
            for _ in session.events():
                pass

    threading.Thread(target=feed, daemon=True).start()
    return follow()
