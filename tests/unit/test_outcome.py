"""How systemd's view of a unit's end becomes a job's state."""

from __future__ import annotations

from joblet_agent.model import JobState
from joblet_agent.outcome import ExitKind, decide, parse_exit_record


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


def test_exit_record_of_a_v1_oom_kill() -> None:
    text = "SERVICE_RESULT=signal\nEXIT_CODE=killed\nEXIT_STATUS=KILL\noom_kill 1\n"
    record = parse_exit_record(text)
    assert (record.kind, record.status, record.oom_kills) == (ExitKind.KILLED, 9, 1)
    assert record.true_result == "oom-kill"


def test_exit_record_of_a_clean_exit() -> None:
    record = parse_exit_record("SERVICE_RESULT=success\nEXIT_CODE=exited\nEXIT_STATUS=0\n")
    assert (record.true_result, record.kind, record.status) == ("success", ExitKind.EXITED, 0)


def test_exit_record_of_a_unit_that_never_ran() -> None:
    record = parse_exit_record("SERVICE_RESULT=resources\nEXIT_CODE=\nEXIT_STATUS=\n")
    assert (record.result, record.kind, record.status) == ("resources", None, None)
