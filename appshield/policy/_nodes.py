"""A small value tree that both loaders (YAML text and Python mappings) validate.

YAML input becomes `Node`s with a 1-based line and column each; a Python mapping is
wrapped lazily (children are wrapped only when the validator looks at them), so cyclic or
huge structures cost nothing beyond what is inspected. Nodes without a place carry a
dotted path (`rules[2].match.host`) instead, so messages still say where.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Node", "describe_type", "from_python"]

# kind: "map" | "seq" | "scalar" | "bad" (already reported; validators stay silent on it)


class Node:
    __slots__ = ("_kids", "col", "kind", "line", "path", "text", "value", "ytype")

    def __init__(
        self,
        kind: str,
        value: Any,
        line: int | None = None,
        col: int | None = None,
        ytype: str | None = None,
        text: str | None = None,
        path: str = "",
    ) -> None:
        self.kind = kind
        self.value = value
        self.line = line
        self.col = col
        # ytype: what YAML resolved a *plain* scalar to when that is not a string
        # ("bool", "int", "float", "null", "timestamp"); text: the scalar as written.
        self.ytype = ytype
        self.text = text
        self.path = path
        self._kids: list[Any] | None = None

    # YAML-built nodes store their children directly; Python ones are wrapped on demand.
    def items(self) -> list[tuple[Node, Node]]:
        if self._kids is None:
            self._kids = [
                (Node("scalar", k, path=_join(self.path, k)), from_python(v, _join(self.path, k)))
                for k, v in self.value.items()
            ]
        return self._kids

    def elements(self) -> list[Node]:
        if self._kids is None:
            self._kids = [from_python(v, f"{self.path}[{i}]") for i, v in enumerate(self.value)]
        return self._kids

    def set_children(self, kids: list[Any]) -> None:
        self._kids = kids

    @property
    def has_place(self) -> bool:
        return self.line is not None


def _join(path: str, key: object) -> str:
    name = key if isinstance(key, str) else repr(key)
    return f"{path}.{name}" if path else str(name)


def from_python(value: object, path: str = "") -> Node:
    if isinstance(value, Mapping):
        return Node("map", value, path=path)
    if isinstance(value, (list, tuple)):
        return Node("seq", value, path=path)
    return Node("scalar", value, path=path)


def describe_type(node: Node) -> str:
    """How a value reads in a message: 'a mapping', 'a list', 'a boolean', ..."""
    if node.kind == "map":
        return "a mapping"
    if node.kind == "seq":
        return "a list"
    value = node.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"
