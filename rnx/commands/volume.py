"""rnx volume create|list|remove."""

from __future__ import annotations

import click

from rnx.context import Context, pass_context
from rnx.views import human_bytes, table


@click.group("volume")
def group() -> None:
    """Named storage that outlives jobs: --volume=NAME mounts it at /volumes/NAME."""


@group.command()
@click.argument("name")
@click.option("--size", required=True, metavar="SIZE", help="Its size: 512M, 1G, 10GB ...")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["filesystem", "memory"]),
    default="filesystem",
    show_default=True,
    help="filesystem: a disk image, kept across reboots. memory: tmpfs, emptied by a reboot.",
)
@pass_context
def create(ctx: Context, name: str, size: str, kind: str) -> None:
    """Create volume NAME (maintainer or admin)."""
    volume = ctx.ask(lambda client: client.create_volume(name, size=size, type=kind))
    if volume is None:
        return
    note = "" if volume.persistent else " (memory: its contents do not survive a reboot)"
    click.secho(
        f"Volume {volume.name} created: {volume.type}, {human_bytes(volume.size_bytes)}{note}",
        fg="green",
    )


@group.command("list")
@pass_context
def list_(ctx: Context) -> None:
    """List volumes with their type, size, use and the jobs using them."""
    volumes = ctx.ask(lambda client: client.volumes())
    if volumes is None:
        return
    rows = [
        [
            v.name,
            v.type + ("" if v.persistent else " (not kept at reboot)"),
            human_bytes(v.size_bytes),
            human_bytes(v.used_bytes),
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            ", ".join(j[:8] for j in v.jobs) or "-",
        ]
        for v in volumes
    ]
    table(["NAME", "TYPE", "SIZE", "USED", "CREATED (UTC)", "JOBS"], rows)


@group.command()
@click.argument("name")
@pass_context
def remove(ctx: Context, name: str) -> None:
    """Remove volume NAME and its data (refused while a job uses it; maintainer or admin)."""
    result = ctx.ask(lambda client: client.remove_volume(name))
    if result is not None:
        click.secho(f"Volume {result.deleted} removed", fg="green")
