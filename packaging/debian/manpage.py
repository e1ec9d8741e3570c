#!/usr/bin/python3
"""Write a man page for a click program from its own command tree, so the page says what --help
says (every command, its help and its options) and cannot fall behind the code. The sections that
--help has no place for (FILES, EXAMPLES, SEE ALSO) come from a small roff file beside this one.

usage: manpage.py MODULE:COMMAND PROGRAM SECTION EXTRA.roff >PROGRAM.SECTION
"""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap

import click


def roff(text: str) -> str:
    """Escape text for roff: backslashes, and dots or quotes that would start a request."""
    lines = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def paragraphs(text: str) -> str:
    """click's help text: paragraphs separated by blank lines; indented blocks are examples."""
    out = []
    for block in inspect.cleandoc(text).split("\n\n"):
        if block.startswith(" ") or "\n " in block:
            out.append(".PP\n.nf\n" + roff(textwrap.dedent(block)) + "\n.fi")
        else:
            out.append(".PP\n" + roff(" ".join(block.split())))
    return "\n".join(out)


def options(ctx: click.Context, command: click.Command, *, with_help: bool = True) -> str:
    out = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):
            continue  # arguments are in the synopsis
        if not with_help and param is command.get_help_option(ctx):
            continue  # --help on every command is noise
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out.append(f".TP\n.B {roff(names)}\n{roff(help_text) or '.'}")
    return "\n".join(out)


def commands(ctx: click.Context, command: click.Command, path: str) -> list[str]:
    out = []
    if not isinstance(command, click.Group):
        return out
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        sub_ctx = click.Context(sub, info_name=name, parent=ctx)
        usage = " ".join(sub.collect_usage_pieces(sub_ctx))
        out.append(f'.SS "{roff(path)} {roff(name)} {roff(usage)}"')
        out.append(paragraphs(sub.help or ""))
        out.append(options(sub_ctx, sub, with_help=False))
        out.extend(commands(sub_ctx, sub, f"{path} {name}"))
    return out


def main() -> None:
    target, program, section, extra = sys.argv[1:5]
    module, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module), attr)
    ctx = click.Context(command, info_name=program)
    summary = inspect.cleandoc(command.help or "").splitlines()[0].rstrip(".")
    summary = summary.removeprefix(f"{program}:").strip()
    page = [
        f'.TH {program.upper()} {section} "" "Joblet" "Joblet"',
        ".SH NAME",
        f"{roff(program)} \\- {roff(summary)}",
        ".SH SYNOPSIS",
        f".B {roff(program)}\n{roff(' '.join(command.collect_usage_pieces(ctx)))}",
        ".SH DESCRIPTION",
        paragraphs(command.help or ""),
        ".SH OPTIONS",
        options(ctx, command),
        ".SH COMMANDS",
        *commands(ctx, command, program),
    ]
    with open(extra) as f:
        page.append(f.read().rstrip())
    print("\n".join(p for p in page if p))


if __name__ == "__main__":
    main()
