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

With libyaml (python3-yaml has it) the text is read twice in C: once as events only, checked
for anchors, aliases and depth before any node exists, then loaded. Pure-Python PyYAML took 3 s
for 256 KiB of ordinary YAML, libyaml a tenth of that. Without libyaml, BoundedLoader applies
the same rules while it composes.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, Event, NodeEvent
from yaml.nodes import Node
from yaml.scanner import ScannerError

MAX_DEPTH = 32  # runtime.yml and joblet.yml are 3 levels deep
MAX_MESSAGE_CHARS = 300  # PyYAML's messages quote the document around the error
_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of lists and mappings"
_SHARED = "anchors and aliases are not allowed (&name, *name); write the value out"
_LIBYAML: Any = getattr(yaml, "CSafeLoader", None)
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


class BoundedYamlError(ValueError):
    """The text is not YAML this agent reads; the message says why and where."""


def load_yaml(text: str) -> Any:
    """One YAML document -> plain Python values, or BoundedYamlError."""
    try:
        if _LIBYAML is None:
            return _single(BoundedLoader(text))
        _check_events(_LIBYAML(text))
        return _single(_LIBYAML(text))  # its C composer meets no alias, at most MAX_DEPTH deep
    except (yaml.YAMLError, ValueError, OverflowError, TypeError) as exc:
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem == _LIBYAML_TOO_DEEP:
            # libyaml's own cap (1,000) can come first: its scanner reads ahead of events.
            exc.context, exc.problem = None, _TOO_DEEP
        message = str(exc)
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "..."
        raise BoundedYamlError(message) from None


def _single(loader: Any) -> Any:
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _check_events(loader: Any) -> None:
    """Anchors, aliases and depth, from the parser's events alone."""
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            _refuse_shared(event)
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark: Any = event.start_mark
                    raise ComposerError(None, None, _TOO_DEEP, mark)
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _refuse_shared(event: Event) -> None:
    if isinstance(event, AliasEvent) or (isinstance(event, NodeEvent) and event.anchor is not None):
        mark: Any = event.start_mark  # the stubs' Mark types disagree between modules
        raise ComposerError(None, None, _SHARED, mark)


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader (pure Python) that refuses anchors, aliases and nesting deeper than
    MAX_DEPTH while it scans and composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # Refused already where the scanner meets the bracket: past it, every '[' is a possible
        # simple key PyYAML re-checks on each token, so 1,000 of them cost 0.2 s of scanning
        # before the composer saw the 33rd.
        if self.flow_level >= MAX_DEPTH:
            raise ScannerError(None, None, _TOO_DEEP, self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        _refuse_shared(event)
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark: Any = event.start_mark
                raise ComposerError(None, None, _TOO_DEEP, mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
