"""How a unit's end maps to a job's final state. Pure, shared by live signals and reconciliation."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from joblet_agent.domain.job import TIMEOUT_EXIT_CODE, JobState


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


def with_owners_quota(outcome: Outcome, own_limit: int | None, quota: int | None) -> Outcome:
    """An OOM kill may be the owner's memory quota's (all of their jobs together in their slice,
    units/owner.py), not the job's own limit's: the reason says which it can be."""
    if outcome.reason is None or not outcome.reason.startswith("oom-kill") or quota is None:
        return outcome
    if own_limit is None or own_limit >= quota:  # the quota binds first (a default limit too)
        why = "oom-kill: its owner's jobs together went over their memory quota"
    else:
        why = (
            "oom-kill: the job went over its memory limit, or its owner's jobs together over "
            "their memory quota"
        )
    return dataclasses.replace(outcome, reason=f"{why} ({quota} bytes, quotas: memory_max)")


def decide(
    *,
    stop_requested: bool,
    result: str | None,
    kind: ExitKind | None,
    status: int | None,
    ran: bool = True,
) -> Outcome:
    """Result is the unit's systemd Result ("success", "exit-code", "signal", "timeout", ...);
    `ran`: whether its program was ever exec'd."""
    exit_code: int | None = None
    sig: str | None = None
    if kind is ExitKind.EXITED and status is not None:
        exit_code = status
    elif kind in (ExitKind.KILLED, ExitKind.DUMPED) and status is not None:
        sig = signal_name(status)
        exit_code = 128 + status  # what a shell would report
    if stop_requested:
        return Outcome(JobState.STOPPED, exit_code, sig, "stopped on request")
    if result == "timeout" and not ran:
        # A start that never got to exec() (TimeoutStartSec), not the job's own timeout.
        return Outcome(
            JobState.FAILED, None, None, "failed to start: systemd timed out setting it up"
        )
    if result == "timeout":
        return Outcome(JobState.TIMEOUT, TIMEOUT_EXIT_CODE, sig, "the job ran past its timeout")
    if result == "oom-kill":
        # The kernel killed it for its own limit or, as the largest, for all jobs' together
        # (joblet.slice's, all_jobs.memory): PID 1 reports both alike.
        why = "oom-kill: the job went over its memory limit, or all jobs together over theirs"
        return Outcome(JobState.FAILED, exit_code, sig, why)
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
class UnitEnd:
    """How PID 1 says a job's unit ended: its Result and its main process's end. Read from the
    record PID 1's MONITOR_* values were written into (units/end_record.py) or, failing that,
    from PID 1's structured journal lines about the unit. Never from anything the job wrote."""

    result: str | None
    kind: ExitKind | None
    status: int | None

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> UnitEnd:
        """SERVICE_RESULT (or journald's UNIT_RESULT), EXIT_CODE, EXIT_STATUS."""
        kind = fields.get("EXIT_CODE")
        return cls(
            result=fields.get("SERVICE_RESULT") or fields.get("UNIT_RESULT") or None,
            kind=ExitKind(kind) if kind in set(ExitKind) else None,
            status=parse_status(fields.get("EXIT_STATUS")),
        )

    @property
    def known(self) -> bool:
        return self.result is not None or self.kind is not None

    @property
    def ran(self) -> bool:
        """Whether its program was exec'd: a main process that never was has no exit."""
        return self.kind is not None

    @property
    def maybe_oom_kill(self) -> bool:
        """On cgroup v1 systemd reports an OOM kill as a plain SIGKILL (it reads only v2's
        memory.events): then the kernel's own report tells (units/kernel_log.py)."""
        return (
            self.kind is ExitKind.KILLED
            and self.status == signal.SIGKILL
            and self.result in ("signal", None)
        )

    def as_oom_kill(self) -> UnitEnd:
        return dataclasses.replace(self, result="oom-kill")


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
