"""The symlinks of an extracted tree, resolved through one another once the tree is complete.

Each link is checked on its own as it arrives (archive.link_stays_inside), but that is lexical:
`a/b/c/s -> ../../..` and `t -> a/b/c/s/../../..` each stay inside, while t, followed through
s, leaves the tree three levels up (review L2). A later member can also turn a name an earlier
link passes through into a link, so chains are resolved at the end, against the whole tree:
as the kernel would, except that a name that is not a link counts as a directory (where the
kernel would fail instead: ENOENT, ENOTDIR), which can only refuse more, never less.
"""

from __future__ import annotations

from pathlib import PurePosixPath

MAX_LINK_NESTING = 40  # Linux's MAXSYMLINKS: a lookup through more fails (ELOOP)


class _Node:
    """A name on the path of some link; a link itself when it has a target."""

    __slots__ = ("children", "path", "resolved", "resolving", "target")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None
        self.target: str | None = None
        self.path = PurePosixPath()
        self.resolved: _Outcome | None = None
        self.resolving = False


# Where a walk is, from the tree's top: a node on some link's path, or None for any other name.
_Place = list[_Node | None]


class _Absolute:
    """An absolute target: the job's (or runtime's) own root, never the host's."""


class _Leaves:
    def __init__(self, why: str, *, loop: bool = False) -> None:
        self.why = why
        self.loop = loop


_Outcome = _Place | _Absolute | _Leaves
_ABSOLUTE = _Absolute()


class LinkTree:
    def __init__(self) -> None:
        self.top = _Node()
        self.links: list[_Node] = []

    def add(self, path: PurePosixPath, target: str) -> None:
        node = self.top
        for part in path.parts:
            if node.children is None:
                node.children = {}
            node = node.children.setdefault(part, _Node())
        node.target = target
        node.path = path
        self.links.append(node)

    def first_escape(self) -> tuple[PurePosixPath, str, str] | None:
        """The first link, in the order they came, that leads outside the tree: its path, its
        target and why."""
        for link in self.links:
            outcome = self._resolve(link, 0)
            if isinstance(outcome, _Leaves):
                assert link.target is not None
                return link.path, link.target, outcome.why
        return None

    def _resolve(self, link: _Node, nesting: int) -> _Outcome:
        if link.resolved is not None:
            return link.resolved
        if link.resolving or nesting >= MAX_LINK_NESTING:
            return _Leaves(
                f"is in a loop of links or a chain of more than {MAX_LINK_NESTING}", loop=True
            )
        link.resolving = True
        try:
            assert link.target is not None
            outcome = self._walk(link.path.parent, link.target, nesting)
        finally:
            link.resolving = False
        link.resolved = outcome
        return outcome

    def _walk(self, start: PurePosixPath, target: str, nesting: int) -> _Outcome:
        if target.startswith("/"):
            return _ABSOLUTE
        place = self._place(start)
        through: PurePosixPath | None = None  # the last link followed
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if len(place) == 1:
                    return _Leaves(
                        "leads outside the tree"
                        + (f" through the link {str(through)!r}" if through else "")
                    )
                place.pop()
                continue
            above = place[-1]
            child = above.children.get(part) if above is not None and above.children else None
            if child is None or child.target is None:
                place.append(child)
                continue
            outcome = self._resolve(child, nesting + 1)
            if isinstance(outcome, _Leaves):
                if outcome.loop:
                    return outcome
                return _Leaves(f"leads outside the tree through the link {str(child.path)!r}")
            if isinstance(outcome, _Absolute):
                return outcome
            place = list(outcome)
            through = child.path
        return place

    def _place(self, directory: PurePosixPath) -> _Place:
        """A directory the extractor made: never through a link (it refuses that)."""
        place: _Place = [self.top]
        node: _Node | None = self.top
        for part in directory.parts:
            node = node.children.get(part) if node is not None and node.children else None
            place.append(node)
        return place
