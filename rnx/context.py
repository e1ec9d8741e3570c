"""What every command shares: where the agent is (--config, --node, --socket), --json, and the
ways to ask it something and show the answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import click

from rnx.views import emit_json

if TYPE_CHECKING:
    from rnx.client import Client

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Context:
    socket_path: str | None
    config: str | None
    node: str | None
    json: bool

    def client(self) -> Client:
        # Looked up at each call, so that tests can stand a fake in for rnx.client.Client.
        from rnx import client

        return client.Client(socket=self.socket_path, config=self.config, node=self.node)

    def ask(self, call: Callable[[Client], T]) -> T | None:
        """One request's answer for people to read; None once printed as JSON (--json)."""
        with self.client() as client:
            answer = call(client)
        if self.json:
            emit_json(answer)
            return None
        return answer

    def say(self, text: str) -> None:
        """A note for people on stderr; nothing with --json."""
        if not self.json:
            click.secho(text, fg="cyan", err=True)


pass_context = click.make_pass_decorator(Context)
