"""YAML the agent reads from requests (runtime.yml, from /v1/runtimes/validate and from runtime
archives) and from its own joblet.yml: safe_load, minus what lets a few bytes become huge.

- Anchors and aliases are refused. They share one node between many places, so a 330-byte
  document can stand for 9**8 values, which anything that walks the value (an error message's
  repr, a comparison) expands (security audit H6, api-fuzz finding 2). Nothing Joblet reads
  needs them.
- Nesting is capped at MAX_DEPTH: PyYAML composes nodes recursively, so `[[[[...` a thousand
  deep ended in RecursionError (api-fuzz finding 5).
- Anything else the constructors raise for odd scalars (a 5,000-digit int, the date
  2024-13-45) is a YAML error here, not an exception of another kind.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent
from yaml.nodes import Node

MAX_DEPTH = 32  # runtime.yml and joblet.yml are 3 levels deep
MAX_MESSAGE_CHARS = 300  # PyYAML's messages quote the document around the error


class BoundedYamlError(ValueError):
    """The text is not YAML this agent reads; the message says why and where."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and nesting deeper than MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        mark: Any = event.start_mark  # the stubs' Mark types disagree between modules
        if isinstance(event, AliasEvent) or (
            isinstance(event, NodeEvent) and event.anchor is not None
        ):
            raise ComposerError(
                None,
                None,
                "anchors and aliases are not allowed (&name, *name); write the value out",
                mark,
            )
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_DEPTH} levels of lists and mappings",
                    mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """One YAML document -> plain Python values, or BoundedYamlError."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except (yaml.YAMLError, ValueError, OverflowError, TypeError) as exc:
        message = str(exc)
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "..."
        raise BoundedYamlError(message) from None
    finally:
        loader.dispose()
