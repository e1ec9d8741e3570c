"""Following a job's log stream: `rnx job run` (attached), `rnx job log`, `rnx runtime test`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from rnx import exit_codes
from rnx.views import emit_json, without_controls

if TYPE_CHECKING:
    from rnx.client import Client, Job, JobEnd, LogEvent


def attach(client: Client, job_id: str, *, as_json: bool, raw: bool = False) -> int:
    """Stream the job's output until it ends; its exit code (1 without one). Ctrl-C detaches
    (the job keeps running)."""
    final: Job | JobEnd | None = None
    strip = _strips(raw)
    try:
        for event in client.events(job_id, follow=True):
            if event.line is not None:
                print_line(event, as_json=as_json, strip=strip)
            elif event.end is not None:
                final = event.end
                break
        else:
            final = client.get(job_id)
    except KeyboardInterrupt:
        click.secho(
            f"\nDetached; job {job_id} keeps running.\n"
            f"  follow it: rnx job log -f {job_id}\n  stop it:   rnx job stop {job_id}",
            fg="yellow",
            err=True,
        )
        return exit_codes.INTERRUPTED
    assert final is not None
    if as_json:
        emit_json(final)
    elif final.state != "COMPLETED":
        click.secho(
            f"Job {job_id} {final.state}: {final.reason or ''}".rstrip(": "),
            fg="red",
            err=True,
        )
    return final.exit_code if final.exit_code is not None else 1


def follow_log(client: Client, job_id: str, *, follow: bool, as_json: bool, raw: bool) -> int:
    """Print a job's output (with follow, until it ends); 0, or INTERRUPTED on Ctrl-C."""
    strip = _strips(raw)
    try:
        for event in client.events(job_id, follow=follow):
            if event.line is not None:
                print_line(event, as_json=as_json, strip=strip)
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED
    return 0


def _strips(raw: bool) -> bool:
    """Job output loses its control characters on a terminal, unless --raw (rnx.views says
    why); a pipe or a file gets the bytes the job wrote."""
    return not raw and sys.stdout.isatty()


def print_line(event: LogEvent, *, as_json: bool, strip: bool) -> None:
    """One log event: the line itself for people, the whole event for programs."""
    if as_json:
        emit_json({"cursor": event.cursor, **event.to_dict()})
        return
    message = without_controls(event.message) if strip else event.message
    sys.stdout.write(message + "\n")
    sys.stdout.flush()
