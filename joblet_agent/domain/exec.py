"""A command run in a running job (`rnx job exec`), and the job's own command attached to
(`rnx job run -i/-t`): the requests, parsed and bounded at the edge, and how they end.

Everything an exec runs runs inside the job, by the job's init (init/joblet-init.c), with the
job's isolation and against the job's limits; the request itself only says what to run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from joblet_agent.domain.fields import Fields
from joblet_agent.domain.jobspec import (
    MAX_ARG_CHARS,
    MAX_ARGS,
    MAX_COMMAND_CHARS,
    MAX_ENV,
    MAX_ENV_NAME_CHARS,
    MAX_ENV_VALUE_CHARS,
    MAX_WORKDIR_CHARS,
    RESERVED_ENV,
)
from joblet_agent.domain.quantities import parse_duration

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_TERMINAL = 10_000  # rows or columns
MAX_EXEC_TIMEOUT_SEC = 7 * 24 * 3600.0
TIMEOUT_EXIT_CODE = 124  # like timeout(1), and like a job's timeout


@dataclass(frozen=True, slots=True)
class TerminalSize:
    rows: int
    cols: int


def parse_terminal(top: Fields) -> TerminalSize:
    rows = top.integer("rows", 0, minimum=0, maximum=MAX_TERMINAL)
    cols = top.integer("cols", 0, minimum=0, maximum=MAX_TERMINAL)
    return TerminalSize(rows or 0, cols or 0)


@dataclass(frozen=True, slots=True)
class ExecSpec:
    """What to run in a job: its argv (looked up on the job's PATH), environment additions, a
    working directory relative to /work, a timeout, and whether it gets a terminal and stdin."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    workdir: str | None
    timeout_sec: float | None
    tty: bool
    stdin: bool
    size: TerminalSize

    @property
    def cwd(self) -> str:
        return f"/work/{self.workdir}" if self.workdir else "/work"


def parse_exec_request(data: object) -> ExecSpec:
    """The first message of an exec: {command, args, env, workdir, timeout_sec, tty, stdin,
    rows, cols}; every refusal names the field, the value and what is allowed."""
    top = Fields(data, "")
    command = top.required_string("command")
    top.check_length("command", command, MAX_COMMAND_CHARS)
    if not command.strip() or "\0" in command:
        raise top.error("command", command, "a non-empty program name or path is required")
    args = top.string_list("args", most=MAX_ARGS, longest=MAX_ARG_CHARS)
    for index, arg in enumerate(args):
        if "\0" in arg:
            raise top.error(f"args[{index}]", arg, "arguments may not contain NUL bytes")
    env = top.string_map(
        "env", most=MAX_ENV, longest_name=MAX_ENV_NAME_CHARS, longest=MAX_ENV_VALUE_CHARS
    )
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise top.error(f"env.{name}", name, "names are letters, digits and '_'")
        if name.startswith("JOB_") or name in RESERVED_ENV:
            raise top.error(
                f"env.{name}", name, "JOB_* and names set by the agent or systemd are reserved"
            )
        if "\0" in value:
            raise top.error(f"env.{name}", value, "values may not contain NUL bytes")
    workdir = top.string("workdir")
    if workdir is not None:
        top.check_length("workdir", workdir, MAX_WORKDIR_CHARS)
        parts = workdir.split("/")
        if workdir.startswith("/") or ".." in parts or "\0" in workdir:
            raise top.error("workdir", workdir, "a relative path inside the job's /work")
        workdir = "/".join(p for p in parts if p not in ("", ".")) or None
    timeout = top.parsed("timeout_sec", parse_duration)
    if timeout is not None:
        top.check_range("timeout_sec", timeout, 0.001, MAX_EXEC_TIMEOUT_SEC)
    tty = top.boolean("tty", False)
    stdin = top.boolean("stdin", tty)
    size = parse_terminal(top)
    top.reject_unknown()
    return ExecSpec(
        argv=(command, *args),
        env=MappingProxyType(dict(env)),
        workdir=workdir,
        timeout_sec=timeout,
        tty=tty,
        stdin=stdin,
        size=size,
    )


@dataclass(frozen=True, slots=True)
class ExecEnd:
    """How an exec ended: its exit code (128+N for signal N, 124 for its timeout), the signal
    that killed it, and whether its timeout did."""

    exit_code: int
    signal: int | None
    timed_out: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"exit_code": self.exit_code, "signal": self.signal, "timed_out": self.timed_out}


class LineSplitter:
    """Output bytes in, whole lines out (for the journal), a line cut at `longest` bytes as
    journald cuts a stream's lines; what is left at the end comes out of `flush`."""

    def __init__(self, longest: int = 48 * 1024) -> None:
        self._pending = b""
        self._longest = longest

    def feed(self, data: bytes) -> list[bytes]:
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        while len(self._pending) >= self._longest:
            lines.append(self._pending[: self._longest])
            self._pending = self._pending[self._longest :]
        return lines

    def flush(self) -> list[bytes]:
        rest, self._pending = self._pending, b""
        return [rest] if rest else []
