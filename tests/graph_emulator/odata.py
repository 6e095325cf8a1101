"""Just enough OData `$filter` / `$orderby` for the queries the backends send."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .common import GraphError

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<dt>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?)|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<word>[A-Za-z_@][\w/.@]*))"
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}


def _tokens(text: str) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise GraphError(400, "BadRequest", f"Invalid filter clause near '{text[pos:]}'.")
        kind = m.lastgroup or ""
        result.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return result


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise GraphError(400, "BadRequest", "Invalid filter clause: unexpected end.")
        self.pos += 1
        return token

    def expr(self) -> Any:
        left = self.conj()
        while (t := self.peek()) and t[0] == "word" and t[1].lower() == "or":
            self.take()
            left = ("or", left, self.conj())
        return left

    def conj(self) -> Any:
        left = self.term()
        while (t := self.peek()) and t[0] == "word" and t[1].lower() == "and":
            self.take()
            left = ("and", left, self.term())
        return left

    def term(self) -> Any:
        kind, value = self.take()
        if kind == "lp":
            inner = self.expr()
            if self.take()[0] != "rp":
                raise GraphError(400, "BadRequest", "Invalid filter clause: missing ')'.")
            return inner
        if kind != "word":
            raise GraphError(400, "BadRequest", f"Invalid filter clause near '{value}'.")
        op_kind, op = self.take()
        if op_kind != "word" or op.lower() not in _OPS:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: unknown operator '{op}'.")
        lit_kind, lit = self.take()
        return ("cmp", value, op.lower(), _literal(lit_kind, lit))


def _literal(kind: str, text: str) -> Any:
    if kind == "str":
        return text[1:-1].replace("''", "'")
    if kind == "dt":
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    if kind == "num":
        return float(text)
    if kind == "word" and text.lower() in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text.lower()]
    raise GraphError(400, "BadRequest", f"Invalid filter literal '{text}'.")


def _lookup(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = next((v for k, v in value.items() if k.lower() == part.lower()), None)
    return value


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if isinstance(expected, datetime) and isinstance(actual, str):
        actual = datetime.fromisoformat(actual.replace("Z", "+00:00"))
    if isinstance(expected, str) and isinstance(actual, str):
        actual, expected = actual.lower(), expected.lower()  # Exchange compares case-insensitively
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if actual is None or expected is None:
        return False
    try:
        return {
            "gt": actual > expected,
            "ge": actual >= expected,
            "lt": actual < expected,
            "le": actual <= expected,
        }[op]
    except TypeError:
        return False


def _evaluate(node: Any, obj: dict[str, Any]) -> bool:
    if node[0] == "and":
        return _evaluate(node[1], obj) and _evaluate(node[2], obj)
    if node[0] == "or":
        return _evaluate(node[1], obj) or _evaluate(node[2], obj)
    _, path, op, expected = node
    return _compare(_lookup(obj, path), op, expected)


def compile_filter(text: str | None) -> Any:
    if not text:
        return None
    parser = _Parser(text)
    node = parser.expr()
    if parser.peek() is not None:
        raise GraphError(400, "BadRequest", f"Invalid filter clause near '{parser.peek()}'.")
    return node


def matches(node: Any, obj: dict[str, Any]) -> bool:
    return node is None or _evaluate(node, obj)


def order_by(items: list[dict[str, Any]], spec: str | None) -> list[dict[str, Any]]:
    """`receivedDateTime desc` (several keys, comma-separated)."""
    if not spec:
        return items
    result = list(items)
    for clause in reversed([c.strip() for c in spec.split(",") if c.strip()]):
        field, _, direction = clause.partition(" ")
        result.sort(
            key=lambda o, f=field: (_lookup(o, f) is None, str(_lookup(o, f) or "")),
            reverse=direction.strip().lower() == "desc",
        )
    return result
