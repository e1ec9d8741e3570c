"""Typed, path-qualified access to untrusted mappings: request bodies, joblet.yml, runtime.yml.

Every error names where the value was (`joblet.yml: limits.max_memory`), the value (a short
excerpt: errors.excerpt), and what is allowed. Unknown keys are refused, never ignored: a typo
must not silently drop a limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from joblet_agent.errors import EXCERPT_CHARS, ErrorCode, JobletError, excerpt

T = TypeVar("T")
HIDDEN = "***"  # what an error shows of a secret value


class Fields:
    """One mapping at `path`; remembers which keys were read so that leftovers can be refused."""

    def __init__(self, data: object, path: str, *, code: ErrorCode = ErrorCode.INVALID) -> None:
        self.path = path
        self._code = code
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise self._error(path or "request body", data, "expected a mapping of keys to values")
        self._data: Mapping[str, Any] = data
        self._seen: set[str] = set()

    def where(self, key: str) -> str:
        if not self.path or self.path.endswith(":"):
            return f"{self.path} {key}".strip()
        return f"{self.path}.{key}"

    def _error(self, where: str, value: object, allowed: str) -> JobletError:
        return JobletError(self._code, f"{where}: {excerpt(value)} is not valid; {allowed}")

    def error(self, key: str, value: object, allowed: str) -> JobletError:
        return self._error(self.where(key), value, allowed)

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None

    def present(self, key: str) -> bool:
        """Given at all, null included (`key: null` may mean "off" where absent means default)."""
        return key in self._data

    def raw(self, key: str) -> Any:
        self._seen.add(key)
        return self._data.get(key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(key)
        if value is None:
            if required:
                raise JobletError(self._code, f"{self.where(key)}: missing; a string is required")
            return default
        if not isinstance(value, str):
            raise self.error(key, value, "expected a string")
        return value

    def required_string(self, key: str) -> str:
        value = self.string(key, required=True)
        assert value is not None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, value, "expected true or false")
        return value

    def integer(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, value, "expected a whole number")
        return self.check_range(key, value, minimum, maximum)

    def check_range(self, key: str, value: T, minimum: Any, maximum: Any) -> T:
        if minimum is not None and value < minimum:
            raise self.error(key, value, f"the minimum is {minimum}")
        if maximum is not None and value > maximum:
            raise self.error(key, value, f"the maximum is {maximum}")
        return value

    def parsed(self, key: str, parser: Callable[[Any], T], default: T | None = None) -> T | None:
        """Apply a units_of_measure parser; its ValueError text becomes the 'allowed' part."""
        value = self.raw(key)
        if value is None:
            return default
        try:
            return parser(value)
        except (ValueError, TypeError) as exc:
            raise self.error(key, value, str(exc)) from exc

    def string_list(
        self, key: str, *, most: int | None = None, longest: int | None = None
    ) -> list[str]:
        """At most `most` strings of at most `longest` characters each (None: unbounded)."""
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, value, "expected a list of strings")
        self._check_count(key, len(value), most)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{index}]", item, "expected a string")
            self.check_length(f"{key}[{index}]", item, longest)
        return list(value)

    def string_map(
        self,
        key: str,
        *,
        most: int | None = None,
        longest_name: int | None = None,
        longest: int | None = None,
        secret: bool = False,
    ) -> dict[str, str]:
        """Names to strings, bounded like string_list. `secret`: errors never show a value."""
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(key, value, "expected a mapping of names to strings")
        self._check_count(key, len(value), most)
        for name, item in value.items():
            if not isinstance(name, str):
                raise self.error(key, name, "names are strings")
            self.check_length(key, name, longest_name, what="a name")
            where = f"{key}.{name}"
            if not isinstance(item, str):
                raise self.error(where, HIDDEN if secret else item, "expected a string value")
            self.check_length(where, item, longest, secret=secret)
        return dict(value)

    def _check_count(self, key: str, count: int, most: int | None) -> None:
        if most is not None and count > most:
            raise JobletError(
                self._code, f"{self.where(key)}: {count} items; at most {most} are allowed"
            )

    def check_length(
        self,
        key: str,
        text: str,
        longest: int | None,
        *,
        what: str | None = None,
        secret: bool = False,
    ) -> None:
        """Refuse a string longer than `longest` characters, quoting an excerpt (or, for a
        secret, nothing of it)."""
        if longest is None or len(text) <= longest:
            return
        shown = "the value" if secret else excerpt(text)
        raise JobletError(
            self._code,
            f"{self.where(key)}: {what + ' ' if what else ''}{shown} is {len(text)} characters "
            f"long; at most {longest} are allowed",
        )

    def section(self, key: str) -> Fields:
        return Fields(self.raw(key), self.where(key), code=self._code)

    def reject_unknown(self) -> None:
        # Keys of YAML mappings need not be strings (`1: x`), nor short.
        unknown = sorted(str(key) for key in set(self._data) - self._seen)
        if unknown:
            known = ", ".join(sorted(self._seen)) or "none"
            raise JobletError(
                self._code,
                f"{self.where(short_name(unknown[0]))}: unknown key; known keys here: {known}",
            )


def short_name(name: str) -> str:
    """A key from a request as part of a field path: cut like a value's excerpt."""
    return name if len(name) <= EXCERPT_CHARS else name[:EXCERPT_CHARS] + "..."
