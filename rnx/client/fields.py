"""Reading the agent's JSON answers into typed models: strict on the fields a model has, silent
about the ones it does not (a newer agent may send more; `raw` keeps them).

A field of the wrong type, or a required one missing, is an RnxError("bad-answer") whose
message names the field's path in the answer: `job.spec.limits.cpu_percent: expected an
integer, got 'x'`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from rnx.errors import RnxError

M = TypeVar("M", bound="Model")
_MISSING: Any = object()  # a key the answer does not have (older agents leave some out)
_EXCERPT = 60
_HINT = "rnx and the agent may be of different versions (rnx --version)"


@dataclass(frozen=True, slots=True)
class Model:
    """What every typed answer has: `raw`, the agent's JSON object as received (with fields
    this client does not model yet), and `to_dict()`, a copy of it."""

    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.raw))

    @classmethod
    def from_dict(cls: type[M], data: Any, where: str = "") -> M:
        """The model of one JSON object; `where` names it in error messages."""
        return cls.read(Fields(data, where))

    @classmethod
    def read(cls: type[M], fields: Fields) -> M:
        raise NotImplementedError(cls.__name__)


def bad_answer(where: str, expected: str, value: Any) -> RnxError:
    shown = repr(value)
    if len(shown) > _EXCERPT:
        shown = shown[:_EXCERPT] + "..."
    return RnxError(
        "bad-answer",
        f"the agent's answer: {where}: expected {expected}, got {shown}",
        _HINT,
    )


class Fields:
    """One JSON object of an answer, with its path for messages ("" for the answer itself)."""

    __slots__ = ("data", "where")

    def __init__(self, data: Any, where: str) -> None:
        # (type() first: the ABC check costs half a microsecond, and log lines come by the 10,000)
        if type(data) is not dict and not isinstance(data, Mapping):
            raise bad_answer(where or "the answer", "an object", data)
        self.data: Mapping[str, Any] = data
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, default: Any) -> Any:
        """The value at key; a missing key gives default, or is an error without one."""
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            where = self.where or "the answer"
            raise RnxError("bad-answer", f"the agent's answer: {where}: {key} is missing", _HINT)
        return default

    def _typed(self, key: str, kinds: tuple[type, ...], expected: str, default: Any) -> Any:
        if key not in self.data:
            return self._get(key, default)
        value = self.data[key]
        # bool is an int to Python, never to JSON.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise bad_answer(self.path(key), expected, value)
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        value: str = self._typed(key, (str,), "a string", default)
        return value

    def opt_text(self, key: str, default: Any = _MISSING) -> str | None:
        if self._get(key, default) is None:
            return None
        return self.text(key, default)

    def whole(self, key: str, default: Any = _MISSING) -> int:
        value: int = self._typed(key, (int,), "an integer", default)
        return value

    def opt_whole(self, key: str, default: Any = _MISSING) -> int | None:
        if self._get(key, default) is None:
            return None
        return self.whole(key, default)

    def opt_number(self, key: str, default: Any = _MISSING) -> float | None:
        value = self._get(key, default)
        if value is None:
            return None
        return float(self._typed(key, (int, float), "a number", default))

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value: bool = self._typed(key, (bool,), "true or false", default)
        return value

    def texts(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        items = self._typed(key, (list,), "a list of strings", default)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise bad_answer(f"{self.path(key)}[{index}]", "a string", item)
        return tuple(items)

    def opt_texts(self, key: str, default: Any = _MISSING) -> tuple[str, ...] | None:
        if self._get(key, default) is None:
            return None
        return self.texts(key, default)

    def opt_wholes(self, key: str, default: Any = _MISSING) -> tuple[int, ...] | None:
        items = self._get(key, default)
        if items is None:
            return None
        items = self._typed(key, (list,), "a list of integers or null", default)
        for index, item in enumerate(items):
            if not isinstance(item, int) or isinstance(item, bool):
                raise bad_answer(f"{self.path(key)}[{index}]", "an integer", item)
        return tuple(items)

    def text_map(self, key: str, default: Any = _MISSING) -> Mapping[str, str]:
        data = self._typed(key, (dict,), "an object of strings", default)
        for name, value in data.items():
            if not isinstance(value, str):
                raise bad_answer(f"{self.path(key)}.{name}", "a string", value)
        return dict(data)

    def moment(self, key: str, default: Any = _MISSING) -> datetime:
        """An ISO 8601 timestamp; one without a zone is UTC (the agent writes UTC)."""
        text = self.text(key, default)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise bad_answer(self.path(key), "an ISO 8601 time", text) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def opt_moment(self, key: str, default: Any = _MISSING) -> datetime | None:
        if self._get(key, default) is None:
            return None
        return self.moment(key, default)

    def obj(self, key: str) -> Fields:
        return Fields(self._get(key, _MISSING), self.path(key))

    def opt_obj(self, key: str, default: Any = _MISSING) -> Fields | None:
        value = self._get(key, default)
        return None if value is None else Fields(value, self.path(key))

    def objs(self, key: str, default: Any = _MISSING) -> list[Fields]:
        items = self._typed(key, (list,), "a list of objects", default)
        return [Fields(item, f"{self.path(key)}[{index}]") for index, item in enumerate(items)]
