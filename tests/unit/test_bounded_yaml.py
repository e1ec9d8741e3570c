"""YAML from requests: no anchors or aliases, nesting capped, every failure a YAML error with a
short message (audit H6, api-fuzz findings 2 and 5); and the excerpt errors quote values with."""

from __future__ import annotations

import time
from typing import Any

import pytest

from joblet_agent.bounded_yaml import MAX_DEPTH, BoundedYamlError, load_yaml
from joblet_agent.errors import EXCERPT_CHARS, ErrorCode, JobletError, excerpt
from joblet_agent.runtimes.spec import MAX_RUNTIME_YML, load_runtime_yml


def alias_bomb(depth: int) -> str:
    lines = ["name: x", 'version: "1"', "x-anchors:", "  a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "\n".join([*lines, f"packages: *a{depth}"]) + "\n"


@pytest.mark.parametrize(
    "text",
    [alias_bomb(9), "a: &x 1\nb: 2\n", "a: [*x]\n", "base: &b {k: 1}\nother:\n  <<: *b\n"],
    ids=["bomb", "anchor", "alias-alone", "merge-of-an-alias"],
)
def test_anchors_and_aliases_are_refused(text: str) -> None:
    with pytest.raises(BoundedYamlError, match="anchors and aliases are not allowed"):
        load_yaml(text)


@pytest.mark.parametrize(
    "text",
    [
        "name: " + "[" * 1000 + "]" * 1000,
        "name: " + "{a: " * 1000 + "1" + "}" * 1000,
        "- " * 1000 + "x",
        "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x",
    ],
    ids=["flow-lists", "flow-maps", "block-lists", "block-maps"],
)
def test_nesting_is_capped_without_recursion(text: str) -> None:
    with pytest.raises(BoundedYamlError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_yaml(text)


def test_nesting_up_to_the_cap_is_read() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_yaml(text) is not None


@pytest.mark.parametrize(
    "text",
    ["n: " + "9" * 5000, "d: 2024-13-45", "x: !!python/object:os.system ls", "{? [a]: 1}"],
    ids=["5000-digit-int", "bad-date", "python-tag", "unhashable-key"],
)
def test_what_constructors_raise_is_a_yaml_error(text: str) -> None:
    with pytest.raises(BoundedYamlError) as info:
        load_yaml(text)
    assert len(str(info.value)) < 400


def test_a_runtime_yml_alias_bomb_is_a_short_400_at_once() -> None:
    start = time.monotonic()
    with pytest.raises(JobletError) as info:
        load_runtime_yml(alias_bomb(10))
    assert time.monotonic() - start < 1.0
    assert info.value.code is ErrorCode.INVALID
    assert info.value.message.startswith("runtime.yml: not valid YAML: anchors and aliases")
    assert len(info.value.message) < 500


def test_a_runtime_yml_too_long_is_refused_before_parsing() -> None:
    with pytest.raises(JobletError) as info:
        load_runtime_yml("#" * (MAX_RUNTIME_YML + 1))
    assert info.value.code is ErrorCode.TOO_LARGE


def test_a_deep_runtime_yml_is_a_400() -> None:
    with pytest.raises(JobletError, match="nested deeper than"):
        load_runtime_yml("name: " + "[" * 1000 + "]" * 1000 + '\nversion: "1"\n')


# -- excerpt: what an error message quotes of a value ---------------------------------------


def _shared_graph(depth: int) -> Any:
    """What yaml.safe_load made of the alias bomb: 9**depth leaves, shared."""
    node: Any = ["x"] * 9
    for _ in range(depth):
        node = [node] * 9
    return node


@pytest.mark.parametrize(
    "value",
    [_shared_graph(12), "a" * 10**6, 10**5000, b"b" * 10**6, {"k" * 10**5: ["v" * 10**5] * 9}],
    ids=["alias-graph", "long-string", "huge-int", "long-bytes", "long-keys"],
)
def test_an_excerpt_is_short_whatever_the_value(value: object) -> None:
    start = time.monotonic()
    shown = excerpt(value)
    assert time.monotonic() - start < 0.1
    assert len(shown) <= EXCERPT_CHARS + 3


@pytest.mark.parametrize(
    ("value", "shown"),
    [("lots", "'lots'"), (-1, "-1"), (None, "None"), ([1, "a"], "[1, 'a']"), (True, "True")],
)
def test_a_short_value_is_quoted_whole(value: object, shown: str) -> None:
    assert excerpt(value) == shown


def test_a_long_string_keeps_its_start() -> None:
    assert excerpt("x" * 500) == "'" + "x" * (EXCERPT_CHARS - 1) + "..."
