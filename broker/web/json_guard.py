"""Strict checks on a JSON request body before FastAPI parses it.

The standard ``json`` module is lenient in ways that hurt a broker: it accepts
``NaN`` and ``Infinity``, keeps the last of two duplicate keys, turns a
thousand-digit number into a Python int no database column can hold, and
recurses until ``RecursionError``. ``check_json_body`` parses with ``json.loads``
and its hooks (never a hand parser), then walks the result once, and raises a
``ValidationError`` with a stable code and a location for the first problem.

Refused, with their codes (the HTTP status lives in ``broker.web.errors``):

- ``json_encoding_invalid``: not UTF-8, or a byte-order mark (RFC 8259 §8.1
  forbids one; refusing it keeps one reading of every body);
- ``malformed_json``: not JSON at all;
- ``json_constant_invalid``: ``NaN``, ``Infinity`` or ``-Infinity``;
- ``json_duplicate_key``: an object names a key twice;
- ``json_too_deep``: arrays and objects nested deeper than the limit;
- ``json_number_out_of_range``: an integer outside the signed 64-bit range, or
  a number too large for a double;
- ``json_string_too_long``: a string (value or key) longer than the limit;
- ``json_string_invalid``: a NUL character or a lone surrogate in a string.

Messages never repeat what was sent; locations name the field path, and a key
appears in a path only when it looks like an ordinary field name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from broker.errors import Location, ValidationError

_SQL_MIN = -(2**63)
_SQL_MAX = 2**63 - 1
# 19 digits hold every 64-bit value; longer strings are refused before int() sees them.
_MAX_INT_DIGITS = 19
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
# NUL and surrogates can reach a decoded string only through these escapes.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SAFE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class JsonLimits:
    """How deep a body may nest and how long any one string in it may be."""

    max_depth: int = 32
    max_string_chars: int = 4096


class _Refused:
    """A number the hooks would not accept; the walk reports it with its location."""

    __slots__ = ("code",)

    def __init__(self, code: str) -> None:
        self.code = code


class _DuplicateKeys(dict[str, Any]):
    """An object whose pairs named one key twice; the walk reports it."""


_NOT_A_NUMBER = _Refused("json_constant_invalid")
_OUT_OF_RANGE = _Refused("json_number_out_of_range")

_MESSAGES = {
    "json_constant_invalid": "NaN and Infinity are not JSON; send a number or null",
    "json_number_out_of_range": (
        "a number is out of range: integers must fit in a signed 64-bit value "
        "and other numbers in a double"
    ),
    "json_duplicate_key": "an object names the same key twice; send each key once",
    "json_string_invalid": (
        "a string holds a NUL character or an unpaired surrogate; remove it and send again"
    ),
}


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    built = dict(pairs)
    return built if len(built) == len(pairs) else _DuplicateKeys(built)


def _constant(_name: str) -> _Refused:
    return _NOT_A_NUMBER


def _integer(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _OUT_OF_RANGE
    value = int(text)
    return value if _SQL_MIN <= value <= _SQL_MAX else _OUT_OF_RANGE


def _float(text: str) -> float | _Refused:
    value = float(text)
    # float() overflows to inf (1e999) rather than failing.
    return value if value not in (float("inf"), float("-inf")) else _OUT_OF_RANGE


def _render(path: list[str | int]) -> str:
    rendered = ""
    for part in path:
        if isinstance(part, int):
            rendered += f"[{part}]"
        else:
            name = part if _SAFE_KEY.match(part) else "?"
            rendered += f".{name}" if rendered else name
    return rendered


def _refuse(code: str, message: str, path: list[str | int]) -> ValidationError:
    field = _render(path)
    return ValidationError(message, code=code, location=Location(field=field or None))


def _line_column(text: bytes, offset: int) -> Location:
    line = text.count(b"\n", 0, offset) + 1
    column = offset - (text.rfind(b"\n", 0, offset) + 1) + 1
    return Location(line=line, column=column)


class _Walk:
    """One pass over the parsed body; raises at the first problem with its path.

    The loops are written out (no call per scalar) because this runs on
    every batch: a 1,000-record batch has some 20,000 values.
    """

    def __init__(self, limits: JsonLimits, *, characters: bool) -> None:
        self.limits = limits
        # Without a \u0000 or surrogate escape in the text, no string can hold either.
        self.characters = characters
        self.path: list[str | int] = []

    def bad_string(self, value: str) -> bool:
        return len(value) > self.limits.max_string_chars or bool(
            self.characters and _BAD_CHARACTER.search(value)
        )

    def string_refusal(self, value: str) -> ValidationError:
        """The refusal for a string ``bad_string`` found wrong."""
        if len(value) > self.limits.max_string_chars:
            limit = self.limits.max_string_chars
            message = f"a string is longer than {limit} characters; shorten it"
            return _refuse("json_string_too_long", message, self.path)
        return _refuse("json_string_invalid", _MESSAGES["json_string_invalid"], self.path)

    def too_deep(self) -> ValidationError:
        depth = self.limits.max_depth
        message = f"arrays and objects are nested deeper than {depth}; flatten them"
        return _refuse("json_too_deep", message, self.path)

    def value(self, value: Any) -> None:
        """Check a whole parsed document."""
        self.path = []
        kind = type(value)
        if kind is str:
            if self.bad_string(value):
                raise self.string_refusal(value)
        elif kind is _Refused:
            raise _refuse(value.code, _MESSAGES[value.code], self.path)
        elif kind is dict or kind is list or kind is _DuplicateKeys:
            self.container(value, 1)

    def container(self, value: dict[str, Any] | list[Any], depth: int) -> None:
        if depth > self.limits.max_depth:
            raise self.too_deep()
        if type(value) is _DuplicateKeys:
            raise _refuse("json_duplicate_key", _MESSAGES["json_duplicate_key"], self.path)
        longest = self.limits.max_string_chars
        characters = self.characters
        path = self.path
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if type(key) is str and (
                len(key) > longest or (characters and _BAD_CHARACTER.search(key))
            ):
                path.append(key)
                raise self.string_refusal(key)
            kind = type(item)
            if kind is str:
                if len(item) > longest or (characters and _BAD_CHARACTER.search(item)):
                    path.append(key)
                    raise self.string_refusal(item)
            elif kind is dict or kind is list or kind is _DuplicateKeys:
                path.append(key)
                self.container(item, depth + 1)
                path.pop()
            elif kind is _Refused:
                path.append(key)
                raise _refuse(item.code, _MESSAGES[item.code], path)


def check_json_body(body: bytes, limits: JsonLimits) -> None:
    """Raise ``ValidationError`` (code and location set) unless ``body`` is strict, bounded JSON.

    An empty body passes: whether one is required is the route's business.
    The caller parses the body again afterwards; this returns nothing so the
    app keeps its own parse and models.
    """
    if not body:
        return
    if body.startswith(_BOM):
        raise ValidationError(
            "the body starts with a byte-order mark; send UTF-8 JSON without one",
            code="json_encoding_invalid",
            location=Location(line=1, column=1),
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            "the body is not valid UTF-8; send JSON encoded as UTF-8",
            code="json_encoding_invalid",
            location=_line_column(body, exc.start),
        ) from None
    try:
        parsed = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_constant=_constant,
            parse_int=_integer,
            parse_float=_float,
        )
    except json.JSONDecodeError as exc:
        raise ValidationError(
            "the request body is not valid JSON; check it with a JSON validator",
            code="malformed_json",
            location=Location(line=exc.lineno, column=exc.colno),
        ) from None
    except RecursionError:
        # The C scanner gives up long before the stack does; this is a nesting problem.
        raise _refuse(
            "json_too_deep",
            f"arrays and objects are nested deeper than {limits.max_depth}; flatten them",
            [],
        ) from None
    characters = "\\u0000" in text or _SURROGATE_ESCAPE.search(text) is not None
    _Walk(limits, characters=characters).value(parsed)
