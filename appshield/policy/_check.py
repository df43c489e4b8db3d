"""The validation context: where problems go, and readers for the basic value shapes.

Every reader reports through `Checker.report` and returns None on a problem, so the
caller carries on and the user sees *all* problems in one run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from appshield.errors import PolicyProblem
from appshield.policy._nodes import Node, describe_type

__all__ = ["Checker"]

T = TypeVar("T")

_DECIMAL = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")

_YTYPE_WORDS = {
    "bool": "boolean",
    "int": "integer",
    "float": "number",
    "null": "null",
    "timestamp": "date",
}


class Checker:
    """Collects problems for one file (`file`: its name as shown, None for a mapping)."""

    def __init__(self, file: str | None, sink: list[PolicyProblem]) -> None:
        self.file = file
        self.sink = sink

    def report(self, node: Node | None, message: str) -> None:
        if node is None:  # the document as a whole: its first line
            self.sink.append(PolicyProblem(message, self.file, 1, 1))
        elif node.has_place:
            self.sink.append(PolicyProblem(message, self.file, node.line, node.col))
        else:  # from a Python mapping: the key path says where
            prefix = f"{node.path}: " if node.path else ""
            self.sink.append(PolicyProblem(prefix + message, self.file))

    # -- scalars --------------------------------------------------------------------------

    def _misread(self, node: Node, what: str) -> None:
        """A plain YAML scalar that resolved to a non-string type where text is expected."""
        if node.ytype == "null" and not node.text:
            self.report(node, f"{what}: missing value")
            return
        shown = node.value
        if isinstance(shown, bool):
            shown = str(shown).lower()
        word = _YTYPE_WORDS.get(node.ytype or "", node.ytype)
        value = "" if node.ytype == "null" else f" {shown}"
        self.report(node, f"{what}: {node.text!r} is read by YAML as {word}{value}; quote it")

    def wrong_type(self, node: Node, what: str, expected: str) -> None:
        if node.kind == "bad":
            return
        if node.kind == "scalar" and node.ytype is not None and expected.startswith("a string"):
            self._misread(node, what)
            return
        self.report(node, f"{what} must be {expected}, not {describe_type(node)}")

    def text(self, node: Node, what: str) -> str | None:
        if node.kind == "scalar" and isinstance(node.value, str) and node.ytype is None:
            return node.value
        self.wrong_type(node, what, "a string")
        return None

    def integer(self, node: Node, what: str) -> int | None:
        value = node.value
        if node.kind == "scalar" and isinstance(value, int) and not isinstance(value, bool):
            if node.text is not None and not _DECIMAL.match(node.text):
                # 1:30 (sexagesimal 90), 0x1F, 0o17, 1_000: almost certainly not meant as
                # the number YAML 1.1 makes of them.
                self.report(
                    node, f"{what}: {node.text!r} is read by YAML as integer {value}; quote it"
                )
                return None
            return value
        self.wrong_type(node, what, "an integer")
        return None

    def boolean(self, node: Node, what: str) -> bool | None:
        if node.kind == "scalar" and isinstance(node.value, bool):
            return node.value
        self.wrong_type(node, what, "true or false")
        return None

    def choice(self, node: Node, what: str, choices: Sequence[str]) -> str | None:
        value = self.text(node, what)
        if value is None:
            return None
        if value not in choices:
            self.report(node, f"{what} must be one of {', '.join(choices)}, not {value!r}")
            return None
        return value

    # -- collections ----------------------------------------------------------------------

    def mapping(
        self, node: Node, what: str, allowed: Iterable[str], where: str
    ) -> dict[str, tuple[Node, Node]] | None:
        """The entries of a mapping by key; unknown keys and non-string keys reported."""
        if node.kind != "map":
            self.wrong_type(node, what, "a mapping")
            return None
        known = tuple(allowed)
        out: dict[str, tuple[Node, Node]] = {}
        for key, value in node.items():
            name = self._key(key)
            if name is None:
                continue
            if name not in known:
                self.report(key, f"unknown key {name!r} {where}{_suggest(name, known)}")
                continue
            out.setdefault(name, (key, value))
        return out

    def _key(self, key: Node) -> str | None:
        if key.kind == "bad":
            return None
        if key.kind == "scalar" and key.text is not None:  # YAML: the key as written
            return key.text
        if key.kind == "scalar" and isinstance(key.value, str):
            return key.value
        shown = repr(key.value) if key.kind == "scalar" else describe_type(key)
        self.report(key, f"keys must be strings, not {shown}")
        return None

    def one_or_many(
        self, node: Node, what: str, item: Callable[[Node], T | None]
    ) -> list[T] | None:
        """A single value or a non-empty list of values; None when any item is bad."""
        items = node.elements() if node.kind == "seq" else [node]
        if node.kind == "seq" and not items:
            self.report(node, f"{what} is an empty list (it would match nothing)")
            return None
        out: list[T] = []
        ok = True
        for element in items:
            value = item(element)
            if value is None:
                ok = False
            else:
                out.append(value)
        return out if ok else None


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(known)})"
