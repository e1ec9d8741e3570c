"""Execs in running jobs, as the agent answers about them (docs/openapi.yaml: ExecStarted,
ExecEnd; the protocol in docs/exec-protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass

from rnx.client.fields import Fields, Model


@dataclass(frozen=True, slots=True)
class ExecEnd(Model):
    """How an exec ended: its exit code (128+N when signal N killed it, 124 when its timeout
    did), that signal, and whether its timeout killed it."""

    exit_code: int
    signal: int | None
    timed_out: bool

    @classmethod
    def read(cls, fields: Fields) -> ExecEnd:
        return cls(
            exit_code=fields.whole("exit_code"),
            signal=fields.opt_whole("signal"),
            timed_out=fields.flag("timed_out", False),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class ExecResult(Model):
    """What Client.exec returns: the exec's id (EXEC_ID= in the journal), its whole output and
    how it ended. `ok` is exit code 0."""

    exec_id: str
    job: str
    stdout: bytes
    stderr: bytes
    exit_code: int
    signal: int | None
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        """stdout as text (UTF-8, undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @classmethod
    def read(cls, fields: Fields) -> ExecResult:
        raise NotImplementedError("made by Client.exec, not read from one answer")
