"""How rnx shows things: rich tables and coloured states for people, JSON for programs.

Text that comes from the agent (job names and arguments, reasons, descriptions, output) is
never read as rich markup or emoji codes: it goes into a table as a Text, or into markup through
escape(). `args: ["[/bold]"]` once made `rnx job list` fail for everyone (review L1), and
`[green]COMPLETED[/]` could fake a state. Job output printed to a terminal loses its control
characters unless --raw: escape sequences could set the title, move the cursor or write the
clipboard (OSC 52) of whoever reads the log.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from rnx.client.job import Job, Limits, UnitMetrics
    from rnx.client.share import Share

STATE_STYLE = {
    "SCHEDULED": "cyan",
    "QUEUED": "cyan",
    "RUNNING": "bold blue",
    "COMPLETED": "green",
    "FAILED": "bold red",
    "STOPPED": "yellow",
    "TIMEOUT": "magenta",
    "CANCELED": "dim",
}

# C0 (but tab) and DEL, and C1: what a terminal may act on rather than show.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def without_controls(text: str) -> str:
    """text without the control characters a terminal acts on (tab is kept)."""
    return _CONTROLS.sub("", text)


def say(text: str, *, nl: bool = True, err: bool = False) -> None:
    """A line of plain output that may hold others' text (a runtime.yml's description, a job's
    hostname): without the control characters a terminal would act on."""
    click.echo(without_controls(text), nl=nl, err=err)


def to_json(data: Any) -> Any:
    """An answer (a typed model, a list of them, or plain data) as the agent's JSON."""
    from rnx.client.fields import Model

    if isinstance(data, Model):
        return data.to_dict()
    if isinstance(data, list | tuple):
        return [to_json(item) for item in data]
    return data


def emit_json(data: Any) -> None:
    json.dump(to_json(data), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def plain(text: str, style: str = "") -> Text:
    """Untrusted text as rich shows it: literally, without markup, emoji codes or controls."""
    from rich.text import Text

    return Text(without_controls(text), style=style)


def state_text(state: str, position: int | None = None) -> Text:
    """A job's state, with its place in the queue while QUEUED: `QUEUED #3`."""
    shown = state if position is None else f"{state} #{position}"
    return plain(shown, STATE_STYLE.get(state, "white"))


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def table(columns: Sequence[str], rows: Sequence[Sequence[str | Text]]) -> None:
    """Rows of cells: a str is shown as it is (plain), a Text with its style."""
    from rich.table import Table

    cells = [[plain(cell) if isinstance(cell, str) else cell for cell in row] for row in rows]
    # Two spaces right of each column, none left: rich before the fix of Textualize/rich#3871
    # (Debian 12 has 13.3.1) counts the first column's left padding although pad_edge=False drops
    # it, which made that column one cell wider than min_width asks for.
    view = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for index, column in enumerate(columns):
        # One line per row: fixed columns keep their width; the last (free text) is cut with "…".
        if index == len(columns) - 1:
            view.add_column(column, no_wrap=True, overflow="ellipsis", ratio=1)
        else:
            widest = max([len(column), *(row[index].cell_len for row in cells)])
            view.add_column(column, no_wrap=True, min_width=widest)
    for row in cells:
        view.add_row(*row)
    console().print(view)


def key_values(lines: Sequence[tuple[str, str | Text]]) -> None:
    """`Key:` in bold, then the value (a str shown as it is, a Text with its style)."""
    from rich.text import Text

    view = console()
    for key, value in lines:
        shown = plain(value) if isinstance(value, str) else value
        view.print(Text.assemble((f"{key + ':':<16}", "bold"), shown))


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024:
            return f"{amount:.0f}{unit}" if unit == "B" else f"{amount:.1f}{unit}"
        amount /= 1024
    return f"{amount:.1f}TiB"


def describe_limits(limits: Limits) -> str:
    parts = []
    if limits.cpu_percent:
        cores = limits.cpu_percent / 100
        parts.append(f"cpu {limits.cpu_percent}% ({cores:g} core{'s' if cores != 1 else ''})")
    if limits.memory_bytes:
        parts.append(f"memory {human_bytes(limits.memory_bytes)}")
    if limits.io_read_bps:
        parts.append(f"io read {human_bytes(limits.io_read_bps)}/s")
    if limits.io_write_bps:
        parts.append(f"io write {human_bytes(limits.io_write_bps)}/s")
    if limits.cpu_cores:
        parts.append(f"cores {','.join(str(c) for c in limits.cpu_cores)}")
    if limits.work_bytes:
        parts.append(f"/work {human_bytes(limits.work_bytes)}")
    if limits.timeout_sec:
        parts.append(f"timeout {limits.timeout_sec:g}s")
    if limits.idle_timeout_sec:
        parts.append(f"idle timeout {limits.idle_timeout_sec:g}s")
    parts.append(f"tasks {limits.max_tasks}")
    return ", ".join(parts)


def owner_text(owner: str) -> str:
    """An owner as people know it: a certificate's name as it is (`cert:alice` is alice), a
    local user's marked (`unix:root` is "root (local)"), so the two never look alike."""
    kind, colon, name = owner.partition(":")
    if not colon:
        return owner
    return name if kind == "cert" else f"{name} (local)" if kind == "unix" else owner


def shares_text(shares: Sequence[Share]) -> str:
    return ", ".join(owner_text(s.owner) + (" (ro)" if s.read_only else "") for s in shares) or "-"


def job_details(job: Job, unit: UnitMetrics | None) -> list[tuple[str, str | Text]]:
    """`rnx job status`: the job's record, and its unit's accounting while it runs."""
    spec = job.spec
    lines: list[tuple[str, str | Text]] = [
        ("ID", job.id),
        ("Unit", job.unit),
        ("Name", spec.name or "-"),
        ("State", state_text(job.state, job.queue_position)),
        ("Owner", owner_text(job.owner)),
        ("Priority", str(job.priority)),
        ("Command", " ".join(spec.argv) + (" (arguments hidden)" if job.redacted else "")),
        ("Limits", describe_limits(spec.limits)),
    ]
    if spec.volumes:
        mounts = [v.name + (":ro" if v.read_only else "") for v in spec.volumes]
        lines.append(("Volumes", ", ".join(mounts)))
    if spec.upload:
        lines.append(("Upload", spec.upload))
    if spec.runtime:
        lines.append(("Runtime", spec.runtime))
    if job.schedule:
        lines.append(("Schedule", job.schedule))
    lines.append(("Created", job.created_at.isoformat()))
    if job.scheduled_for:
        lines.append(("Scheduled for", job.scheduled_for.isoformat()))
    if job.queued_at:
        lines.append(("Queued", job.queued_at.isoformat()))
    lines += [
        ("Started", job.started_at.isoformat() if job.started_at else "-"),
        ("Ended", job.ended_at.isoformat() if job.ended_at else "-"),
        ("Exit code", "-" if job.exit_code is None else str(job.exit_code)),
    ]
    if job.files_reclaimed_at is not None:
        # Its /work image and files went after the agent's retention time; the record stays.
        lines.append(("Files", f"reclaimed {job.files_reclaimed_at.isoformat()} (/work is gone)"))
    if spec.limits.timeout_sec and job.started_at and not job.state.ended:
        ends = job.started_at.timestamp() + spec.limits.timeout_sec
        lines.append(("Ends by", datetime.fromtimestamp(ends, UTC).isoformat(timespec="seconds")))
    if spec.network != "none":
        endpoint = job.endpoint
        where = f" {endpoint.address} ({endpoint.hostname})" if endpoint else ""
        lines.append(("Network", spec.network + where))
    for rule in spec.allow_egress:
        lines.append(("Egress allowed", f"{rule.target} -> {', '.join(rule.addresses)}"))
    if job.signal:
        lines.append(("Signal", job.signal))
    if job.result:
        lines.append(("systemd result", job.result))
    if job.reason:
        lines.append(("Reason", job.reason))
    for warning in job.warnings:
        lines.append(("Warning", plain(warning, "yellow")))
    if unit is not None:
        cpu = unit.cpu_usage_nsec
        tasks = unit.tasks_current
        lines += [
            ("CPU time", f"{cpu / 1e9:.2f}s" if cpu is not None else "-"),
            ("Memory", human_bytes(unit.memory_current)),
            ("Tasks", "-" if tasks is None else str(tasks)),
        ]
    return lines


_PROGRESS_FROM_BYTES = 8 * 1024 * 1024  # smaller uploads take a moment: no bar for them


@contextlib.contextmanager
def upload_progress(*, quiet: bool, label: str = "upload") -> Iterator[Callable[[int, int], None]]:
    """A progress(sent, total) callback drawing a bar on a terminal's stderr, for uploads (and
    downloads: `label`) big enough to take a while; silent when quiet (--json), for small ones,
    or off a terminal."""
    bar: Any = None
    task: Any = None

    def progress(sent: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            if quiet or total < _PROGRESS_FROM_BYTES or not sys.stderr.isatty():
                return
            from rich.markup import escape
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            bar = Progress(
                # The label names a runtime and release from a registry's index: not markup.
                f"[cyan]{escape(without_controls(label))}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console(stderr=True),
                transient=True,
            )
            bar.start()
            task = bar.add_task("upload", total=total)
        bar.update(task, completed=sent)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.stop()
