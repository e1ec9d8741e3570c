"""YAML from requests: no anchors or aliases, nesting capped, every failure a YAML error with a
short message (audit H6, api-fuzz findings 2 and 5); and the excerpt errors quote values with."""

from __future__ import annotations

from typing import Any

import pytest

from joblet_agent.domain import bounded_yaml
from joblet_agent.domain.bounded_yaml import MAX_DEPTH, BoundedYamlError, load_yaml
from joblet_agent.domain.runtime import MAX_RUNTIME_YML, load_runtime_yml
from joblet_agent.errors import EXCERPT_CHARS, ErrorCode, JobletError, excerpt


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each rule holds with libyaml's parser (events checked, then loaded) and without it
    (BoundedLoader)."""
    if request.param == "python":
        monkeypatch.setattr(bounded_yaml, "_LIBYAML", None)
    else:
        assert bounded_yaml._LIBYAML is not None, "PyYAML was built without libyaml"
    return str(request.param)


def test_ordinary_yaml_is_read(parser: str) -> None:
    text = "a: [1, {b: [c, {d: e}]}]\nf: |\n  text\n<<: {z: 1}\n"
    assert load_yaml(text) == {"a": [1, {"b": ["c", {"d": "e"}]}], "f": "text\n", "z": 1}


def alias_bomb(depth: int) -> str:
    lines = ["name: x", 'version: "1"', "x-anchors:", "  a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "\n".join([*lines, f"packages: *a{depth}"]) + "\n"


@pytest.mark.parametrize(
    "text",
    [alias_bomb(9), "a: &x 1\nb: 2\n", "a: [*x]\n", "base: &b {k: 1}\nother:\n  <<: *b\n"],
    ids=["bomb", "anchor", "alias-alone", "merge-of-an-alias"],
)
def test_anchors_and_aliases_are_refused(text: str, parser: str) -> None:
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
def test_nesting_is_capped_without_recursion(text: str, parser: str) -> None:
    with pytest.raises(BoundedYamlError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_yaml(text)


def test_nesting_up_to_the_cap_is_read(parser: str) -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_yaml(text) is not None


@pytest.mark.parametrize(
    "text",
    ["n: " + "9" * 5000, "d: 2024-13-45", "x: !!python/object:os.system ls", "{? [a]: 1}"],
    ids=["5000-digit-int", "bad-date", "python-tag", "unhashable-key"],
)
def test_what_constructors_raise_is_a_yaml_error(text: str, parser: str) -> None:
    with pytest.raises(BoundedYamlError) as info:
        load_yaml(text)
    assert len(str(info.value)) < 400


def test_a_runtime_yml_alias_bomb_is_a_short_400(parser: str) -> None:
    with pytest.raises(JobletError) as info:
        load_runtime_yml(alias_bomb(10))
    assert info.value.code is ErrorCode.INVALID
    assert info.value.message.startswith("runtime.yml: not valid YAML: anchors and aliases")
    assert len(info.value.message) < 500


def test_a_runtime_yml_too_long_is_refused_before_parsing() -> None:
    with pytest.raises(JobletError) as info:
        load_runtime_yml("#" * (MAX_RUNTIME_YML + 1))
    assert info.value.code is ErrorCode.TOO_LARGE


def test_a_deep_runtime_yml_is_a_400(parser: str) -> None:
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
    # The graph's whole repr would be 25 MB (9**7 leaves); the excerpt walks a few of them.
    [_shared_graph(6), "a" * 10**6, 10**5000, b"b" * 10**6, {"k" * 10**5: ["v" * 10**5] * 9}],
    ids=["alias-graph", "long-string", "huge-int", "long-bytes", "long-keys"],
)
def test_an_excerpt_is_short_whatever_the_value(value: object) -> None:
    assert len(excerpt(value)) <= EXCERPT_CHARS + 3


@pytest.mark.parametrize(
    ("value", "shown"),
    [("lots", "'lots'"), (-1, "-1"), (None, "None"), ([1, "a"], "[1, 'a']"), (True, "True")],
)
def test_a_short_value_is_quoted_whole(value: object, shown: str) -> None:
    assert excerpt(value) == shown


def test_a_long_string_keeps_its_start() -> None:
    assert excerpt("x" * 500) == "'" + "x" * (EXCERPT_CHARS - 1) + "..."
