"""rnx volume create|list|show|share|unshare|remove."""

from __future__ import annotations

import click

from rnx.context import Context, pass_context
from rnx.views import human_bytes, key_values, owner_text, shares_text, table

WITH_HELP = "NAME (of your own kind: a certificate's, or a local user's), cert:NAME or unix:NAME."


@click.group("volume")
def group() -> None:
    """Named storage that outlives jobs: --volume=NAME mounts it at /volumes/NAME.

    A volume is its creator's: others see and mount it only once its owner shares it with
    them (rnx volume share); maintainers and admins manage all of them."""


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
    """Create volume NAME, yours (developer and up; jobs.max_volumes_per_owner each)."""
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
    """List your volumes and those shared with you (maintainers and admins: all), with
    their owner, type, size, use and the jobs using them."""
    volumes = ctx.ask(lambda client: client.volumes())
    if volumes is None:
        return
    rows = [
        [
            v.name,
            owner_text(v.owner),
            v.type + ("" if v.persistent else " (not kept at reboot)"),
            human_bytes(v.size_bytes),
            human_bytes(v.used_bytes),
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            shares_text(v.shares),
            ", ".join(j[:8] for j in v.jobs) or "-",
        ]
        for v in volumes
    ]
    columns = ["NAME", "OWNER", "TYPE", "SIZE", "USED", "CREATED (UTC)", "SHARED WITH", "JOBS"]
    table(columns, rows)


@group.command()
@click.argument("name")
@pass_context
def show(ctx: Context, name: str) -> None:
    """Show volume NAME: its owner, whom it is shared with, its use."""
    v = ctx.ask(lambda client: client.volume(name))
    if v is None:
        return
    key_values(
        [
            ("Name", v.name),
            ("Owner", owner_text(v.owner)),
            ("Shared with", shares_text(v.shares)),
            ("Type", v.type + ("" if v.persistent else " (not kept at reboot)")),
            ("Size", human_bytes(v.size_bytes)),
            ("Used", human_bytes(v.used_bytes)),
            ("Created", f"{v.created_at.isoformat()} by {owner_text(v.created_by)}"),
            ("Jobs", ", ".join(v.jobs) or "-"),
        ]
    )


@group.command()
@click.argument("name")
@click.option("--with", "with_", required=True, metavar="OWNER", help=WITH_HELP)
@click.option("--ro", is_flag=True, help="Only read-only: its jobs mount it as NAME:ro.")
@pass_context
def share(ctx: Context, name: str, with_: str, ro: bool) -> None:
    """Let OWNER see volume NAME and mount it in their jobs (its owner, maintainer or admin).

    Sharing again changes how (with or without --ro)."""
    volume = ctx.ask(lambda client: client.share_volume(name, with_=with_, read_only=ro))
    if volume is not None:
        click.secho(f"Volume {volume.name} shared with {shares_text(volume.shares)}", fg="green")


@group.command()
@click.argument("name")
@click.option("--with", "with_", required=True, metavar="OWNER", help=WITH_HELP)
@pass_context
def unshare(ctx: Context, name: str, with_: str) -> None:
    """Stop sharing volume NAME with OWNER (jobs running keep their mount)."""
    volume = ctx.ask(lambda client: client.unshare_volume(name, with_=with_))
    if volume is not None:
        click.secho(f"Volume {volume.name} shared with {shares_text(volume.shares)}", fg="green")


@group.command()
@click.argument("name")
@pass_context
def remove(ctx: Context, name: str) -> None:
    """Remove volume NAME and its data (refused while a job uses it; its owner, maintainer or
    admin)."""
    result = ctx.ask(lambda client: client.remove_volume(name))
    if result is not None:
        click.secho(f"Volume {result.deleted} removed", fg="green")
