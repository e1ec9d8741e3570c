"""How systemd's view of a unit's end becomes a job's state."""

from __future__ import annotations

from joblet_agent.domain.job import JobState
from joblet_agent.domain.outcome import ExitKind, UnitEnd, decide
from joblet_agent.units.end_record import parse_record


def test_clean_exit_completes() -> None:
    out = decide(stop_requested=False, result="success", kind=ExitKind.EXITED, status=0)
    assert (out.state, out.exit_code, out.signal) == (JobState.COMPLETED, 0, None)


def test_nonzero_exit_fails_with_code() -> None:
    out = decide(stop_requested=False, result="exit-code", kind=ExitKind.EXITED, status=3)
    assert (out.state, out.exit_code) == (JobState.FAILED, 3)
    assert out.reason == "exited with status 3"


def test_signal_fails_with_name_and_shell_code() -> None:
    out = decide(stop_requested=False, result="signal", kind=ExitKind.KILLED, status=9)
    assert (out.state, out.exit_code, out.signal) == (JobState.FAILED, 137, "SIGKILL")


def test_oom_kill_is_named() -> None:
    out = decide(stop_requested=False, result="oom-kill", kind=ExitKind.KILLED, status=9)
    assert out.state is JobState.FAILED
    assert out.reason is not None and out.reason.startswith("oom-kill")


def test_timeout_is_124_like_timeout_1() -> None:
    out = decide(stop_requested=False, result="timeout", kind=ExitKind.KILLED, status=15)
    assert (out.state, out.exit_code) == (JobState.TIMEOUT, 124)


def test_stop_request_wins() -> None:
    out = decide(stop_requested=True, result="timeout", kind=ExitKind.KILLED, status=15)
    assert out.state is JobState.STOPPED


def test_exec_failure_is_a_start_failure() -> None:
    out = decide(stop_requested=False, result="exit-code", kind=ExitKind.EXITED, status=203)
    assert out.reason is not None and "failed to start" in out.reason


def test_dbus_codes() -> None:
    assert ExitKind.from_dbus(1) is ExitKind.EXITED
    assert ExitKind.from_dbus(2) is ExitKind.KILLED
    assert ExitKind.from_dbus(0) is None


def test_end_recorded_from_pid1s_account() -> None:
    """What the end recorder writes: PID 1's MONITOR_* values (units/end_record.py)."""
    end = parse_record(
        "MONITOR_SERVICE_RESULT=signal\nMONITOR_EXIT_CODE=killed\nMONITOR_EXIT_STATUS=KILL\n"
        "SERVICE_RESULT=forged\n"
    )
    assert (end.result, end.kind, end.status, end.ran) == ("signal", ExitKind.KILLED, 9, True)
    assert end.maybe_oom_kill and end.as_oom_kill().result == "oom-kill"
    clean = parse_record(
        "MONITOR_SERVICE_RESULT=success\nMONITOR_EXIT_CODE=exited\nMONITOR_EXIT_STATUS=0\n"
    )
    assert (clean.result, clean.kind, clean.status) == ("success", ExitKind.EXITED, 0)
    assert not clean.maybe_oom_kill
    never = parse_record("MONITOR_SERVICE_RESULT=resources\nPATH=/usr/bin\n")
    assert (never.result, never.kind, never.status, never.ran) == ("resources", None, None, False)


def test_end_read_from_pid1s_journal_lines() -> None:
    end = UnitEnd.from_fields(
        {"UNIT_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"}
    )
    assert (end.result, end.kind, end.status) == ("signal", ExitKind.KILLED, 9)
    assert not UnitEnd.from_fields({}).known


def test_a_start_that_timed_out_is_a_failed_start_not_a_timeout() -> None:
    """api-fuzz finding 10: Result=timeout of a unit that never exec'd is its start's timeout."""
    end = parse_record("MONITOR_SERVICE_RESULT=timeout\n")
    assert not end.ran
    out = decide(
        stop_requested=False, result=end.result, kind=end.kind, status=end.status, ran=end.ran
    )
    assert out.state is JobState.FAILED and out.reason is not None
    assert out.reason.startswith("failed to start")
    ran = decide(stop_requested=False, result="timeout", kind=ExitKind.KILLED, status=15)
    assert ran.state is JobState.TIMEOUT
