"""How a unit's end maps to a job's final state. Pure, shared by live signals and reconciliation."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum

from joblet_agent.model import TIMEOUT_EXIT_CODE, JobState


class ExitKind(StrEnum):
    """siginfo's si_code of the main process, as systemd reports it."""

    EXITED = "exited"
    KILLED = "killed"
    DUMPED = "dumped"

    @classmethod
    def from_dbus(cls, code: int) -> ExitKind | None:
        # ExecMainCode carries CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3 (0: never ran).
        return {1: cls.EXITED, 2: cls.KILLED, 3: cls.DUMPED}.get(code)


# Exit statuses systemd itself uses when it could not even exec the job (systemd.exec(5)).
_SETUP_FAILURES = {
    200: "changing directory",
    203: "executing the command",
    204: "setting up memory",
    214: "setting up the security profile",
    216: "setting up the group",
    217: "setting up the user",
    226: "setting up the namespace",
    228: "applying seccomp",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    state: JobState
    exit_code: int | None
    signal: str | None
    reason: str | None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def decide(
    *, stop_requested: bool, result: str | None, kind: ExitKind | None, status: int | None
) -> Outcome:
    """Result is the unit's systemd Result ("success", "exit-code", "signal", "timeout", ...)."""
    exit_code: int | None = None
    sig: str | None = None
    if kind is ExitKind.EXITED and status is not None:
        exit_code = status
    elif kind in (ExitKind.KILLED, ExitKind.DUMPED) and status is not None:
        sig = signal_name(status)
        exit_code = 128 + status  # what a shell would report
    if stop_requested:
        return Outcome(JobState.STOPPED, exit_code, sig, "stopped on request")
    if result == "timeout":
        return Outcome(JobState.TIMEOUT, TIMEOUT_EXIT_CODE, sig, "the job ran past its timeout")
    if result == "oom-kill":
        return Outcome(
            JobState.FAILED, exit_code, sig, "oom-kill: the job went over its memory limit"
        )
    if result == "success" and exit_code in (0, None):
        return Outcome(JobState.COMPLETED, 0, None, None)
    if kind is ExitKind.EXITED and status in _SETUP_FAILURES:
        return Outcome(
            JobState.FAILED,
            exit_code,
            None,
            f"failed to start: systemd failed at {_SETUP_FAILURES[status]} (status {status})",
        )
    if sig is not None:
        return Outcome(JobState.FAILED, exit_code, sig, f"killed by {sig}")
    if exit_code is not None:
        return Outcome(JobState.FAILED, exit_code, None, f"exited with status {exit_code}")
    return Outcome(JobState.FAILED, None, None, f"systemd result: {result or 'unknown'}")


@dataclass(frozen=True, slots=True)
class ExitRecord:
    """What the unit's ExecStopPost wrote (units/translate.py: exit_recorder)."""

    result: str | None
    kind: ExitKind | None
    status: int | None
    oom_kills: int

    @property
    def true_result(self) -> str | None:
        # On cgroup v1 systemd reports an OOM kill as a plain SIGKILL; the kernel's count says.
        if self.oom_kills > 0 and self.result in ("signal", "success", None):
            return "oom-kill"
        return self.result


def parse_exit_record(text: str) -> ExitRecord:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=") if "=" in line else line.partition(" ")
        if sep:
            fields[key.strip()] = value.strip()
    kind = fields.get("EXIT_CODE")
    oom = fields.get("oom_kill", "0")
    return ExitRecord(
        result=fields.get("SERVICE_RESULT") or None,
        kind=ExitKind(kind) if kind in set(ExitKind) else None,
        status=parse_status(fields.get("EXIT_STATUS")),
        oom_kills=int(oom) if oom.isdigit() else 0,
    )


def parse_status(text: str | None) -> int | None:
    """EXIT_STATUS is a number for exits and a signal name without SIG ("TERM") for kills."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals["SIG" + text.removeprefix("SIG")])
    except KeyError:
        return None
