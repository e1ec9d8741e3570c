"""rnx entry point."""

from __future__ import annotations

from rnx.cli import cli


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
