"""rnx as people use it: attached runs print output and exit with the job's code."""

from __future__ import annotations

import json

from tests.integration.conftest import JOBS_DIR, rnx


def test_run_prints_output_and_exits_zero() -> None:
    result = rnx("job", "run", "--", "echo", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"


def test_run_exits_with_the_jobs_code() -> None:
    assert rnx("job", "run", "--", "sh", "-c", "exit 3").returncode == 3


def test_options_then_command_without_double_dash() -> None:
    result = rnx(
        "job",
        "run",
        "--max-memory=64",
        "--max-cpu",
        "50",
        "python3",
        "-c",
        "import sys; print(sys.argv[1:])",
        "-x",
        "--flag",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['-x', '--flag']\n"
    assert "memory 64.0MiB" in result.stderr and "cpu 50%" in result.stderr


def test_detach_then_status_and_log() -> None:
    started = rnx("job", "run", "-d", "--name", "greeter", "--", "sh", "-c", "echo hello; sleep 1")
    assert started.returncode == 0
    job_id = started.stdout.strip()
    status = rnx("--json", "job", "status", job_id[:6])
    assert json.loads(status.stdout)["spec"]["name"] == "greeter"
    log = rnx("job", "log", "-f", job_id)
    assert log.stdout == "hello\n"
    listing = rnx("job", "list")
    assert job_id[:8] in listing.stdout


def test_bad_flag_values_are_refused_clearly() -> None:
    for args, words in (
        (["--max-memory=lots"], ["--max-memory", "'lots'"]),
        (["--max-cpu=abc"], ["--max-cpu", "'abc'"]),
        (["--max-cpu=50", "--cpus=1"], ["not both"]),
        (["--timeout=soon"], ["--timeout", "'soon'"]),
        (["-e", "NOEQUALS"], ["--env", "KEY=VALUE"]),
    ):
        result = rnx("job", "run", *args, "--", "true")
        assert result.returncode == 2, (args, result.stderr)
        for word in words:
            assert word in result.stderr, (args, result.stderr)


def test_unknown_job_is_exit_3() -> None:
    result = rnx("job", "status", "ffffffff")
    assert result.returncode == 3
    assert "no job" in result.stderr


def test_secret_env_reaches_the_job_but_is_never_shown() -> None:
    # The command compares without spelling the secret, so any "hunter2" in output is a leak.
    started = rnx(
        "job",
        "run",
        "-d",
        "-s",
        "TOKEN=hunter2",
        "--",
        "sh",
        "-c",
        'test "$TOKEN" = "$(printf hunter%s 2)" && echo matched',
    )
    job_id = started.stdout.strip()
    log = rnx("job", "log", "-f", job_id)
    assert log.stdout == "matched\n"
    status = rnx("--json", "job", "status", job_id)
    assert json.loads(status.stdout)["spec"]["secret_env"] == {"TOKEN": "***"}
    listing = rnx("--json", "job", "list", "--limit", "5")
    for output in (started.stdout, started.stderr, status.stdout, listing.stdout):
        assert "hunter2" not in output


def test_secret_values_stay_out_of_unit_properties_and_reach_the_job_verbatim() -> None:
    from tests.integration.conftest import sh

    tricky = 'a "quoted" $HOME `tick` back\\slash\nsecond line'
    started = rnx(
        "job",
        "run",
        "-d",
        "-s",
        f"TRICKY={tricky}",
        "--",
        "sh",
        "-c",
        'printf "%s" "$TRICKY"; sleep 2',
    )
    job_id = started.stdout.strip()
    try:
        shown = sh(
            "systemctl",
            "show",
            "-p",
            "Environment",
            "-p",
            "EnvironmentFiles",
            f"joblet-job-{job_id}.service",
        )
        assert "quoted" not in shown and "TRICKY" not in shown.split("EnvironmentFiles")[0]
        assert not any(p.name == "secret.env" for p in JOBS_DIR.joinpath(job_id).iterdir())
    finally:
        log = rnx("job", "log", "-f", job_id)
    assert log.stdout == tricky + "\n"


def test_ctrl_c_detaches_and_says_how_to_reattach_and_stop() -> None:
    import signal
    import subprocess

    from tests.integration.conftest import sh

    proc = subprocess.Popen(
        ["rnx", "job", "run", "--", "sh", "-c", "echo started; sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    job_id = err.split("Detached; job ")[1].split()[0]
    assert f"rnx job log -f {job_id}" in err and f"rnx job stop {job_id}" in err
    assert sh("systemctl", "is-active", f"joblet-job-{job_id}.service").strip() == "active"
    assert rnx("job", "stop", job_id).returncode == 0


def test_cancel_of_a_running_job_is_a_conflict_that_says_to_stop() -> None:
    started = rnx("job", "run", "-d", "--", "sleep", "30")
    job_id = started.stdout.strip()
    try:
        result = rnx("job", "cancel", job_id)
        assert result.returncode == 4
        assert "only SCHEDULED and QUEUED jobs can be canceled" in result.stderr
        assert f"rnx job stop {job_id[:8]}" in result.stderr
    finally:
        rnx("job", "stop", job_id)


def test_an_attached_run_and_a_following_log_survive_an_agent_restart() -> None:
    """README: `rnx job log -f` and attached runs reconnect with the last event's id and lose or
    repeat nothing. The agent is restarted once both have printed their first line."""
    import subprocess

    from tests.integration.conftest import sh

    script = "for i in $(seq 1 30); do echo $i; sleep 0.1; done; exit 3"
    attached = subprocess.Popen(
        ["rnx", "job", "run", "--", "sh", "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert attached.stdout is not None and attached.stderr is not None
    header = attached.stderr.readline()  # "Job <id> RUNNING: ..."
    assert header.startswith("Job "), header
    job_id = header.split()[1]
    assert attached.stdout.readline() == "1\n"
    follower = subprocess.Popen(
        ["rnx", "job", "log", "-f", job_id], stdout=subprocess.PIPE, text=True
    )
    assert follower.stdout is not None and follower.stdout.readline() == "1\n"
    sh("systemctl", "restart", "joblet.service")
    # Read through the same buffered files that gave the first lines (communicate() would
    # bypass what they had buffered).
    rest, err = attached.stdout.read(), attached.stderr.read()
    followed = follower.stdout.read()
    attached.wait(timeout=120)
    follower.wait(timeout=120)
    expected = "".join(f"{n}\n" for n in range(2, 31))
    assert (attached.returncode, rest) == (3, expected), err
    assert (follower.returncode, followed) == (0, expected)
