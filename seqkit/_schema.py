"""A small schema language for untrusted JSON (checkpoint metadata): every spec has
``check(value, where)`` and raises :class:`SchemaError` naming the field (``where``), what it must
be and what it holds. Specs are duck-typed: any object with that method is one.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import attrs

__all__ = ["Int", "List", "Nullable", "Number", "Object", "SchemaError", "Text", "Type"]


class SchemaError(Exception):
    """A value does not fit its spec; the message names the field."""


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@attrs.frozen
class Int:
    lo: int
    hi: int

    def check(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise SchemaError(
                f"{where} must be an integer in {self.lo}..{self.hi} (got {_describe(value)})"
            )


@attrs.frozen
class Type:
    """A JSON type: ``bool``, ``str`` (at most ``max_len`` characters), ``number``, ``any``."""

    name: str
    max_len: int = 1000

    def check(self, value: Any, where: str) -> None:
        ok = {
            "bool": isinstance(value, bool),
            "str": isinstance(value, str) and len(value) <= self.max_len,
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "any": True,
        }[self.name]
        if not ok:
            what = {
                "str": f"a string of at most {self.max_len} characters",
                "bool": "true or false",
            }
            expected = what.get(self.name, f"a {self.name}")
            raise SchemaError(f"{where} must be {expected} (got {_describe(value)})")


@attrs.frozen
class Nullable:
    inner: Any

    def check(self, value: Any, where: str) -> None:
        if value is not None:
            self.inner.check(value, where)


@attrs.frozen
class List:
    item: Any
    max_len: int = 1 << 24

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, list) or len(value) > self.max_len:
            raise SchemaError(
                f"{where} must be a list of at most {self.max_len} items (got {_describe(value)})"
            )
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]")


@attrs.frozen
class Object:
    """A JSON object: ``fields`` are checked when present (``required`` must be); other keys are
    allowed (``open=True``) or an error."""

    fields: dict = attrs.field(factory=dict)
    required: tuple = ()
    open: bool = True

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise SchemaError(f"{where or 'metadata'} must be an object (got {_describe(value)})")
        prefix = f"{where}." if where else ""
        for key in self.required:
            if key not in value:
                raise SchemaError(f"{prefix}{key} is missing")
        for key, item in value.items():
            spec = self.fields.get(key)
            if spec is not None:
                spec.check(item, f"{prefix}{key}")
            elif not self.open:
                raise SchemaError(
                    f"unknown key {prefix}{key}; allowed: {', '.join(sorted(self.fields))}"
                )


@attrs.frozen
class Number:
    """A finite JSON number in ``[lo, hi]`` (an open end excludes its bound)."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def check(self, value: Any, where: str) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        ok = ok and (value > self.lo if self.lo_open else value >= self.lo)
        ok = ok and (value < self.hi if self.hi_open else value <= self.hi)
        if not ok:
            lo, hi = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            raise SchemaError(
                f"{where} must be a finite number in {lo}{self.lo:g}, {self.hi:g}{hi} "
                f"(got {_describe(value)})"
            )


@attrs.frozen
class Text:
    """A string that matches ``pattern`` entirely, or one of ``choices``; ``expected`` says
    which in messages."""

    expected: str
    pattern: str | None = None
    choices: tuple[str, ...] | None = None

    def check(self, value: Any, where: str) -> None:
        ok = isinstance(value, str) and len(value) <= 10_000
        if ok and self.pattern is not None:
            ok = re.fullmatch(self.pattern, value) is not None
        if ok and self.choices is not None:
            ok = value in self.choices
        if not ok:
            raise SchemaError(f"{where} must be {self.expected} (got {_describe(value)})")
