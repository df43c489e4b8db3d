"""YAML text -> `Node` tree, built from parser *events*, never from constructed objects.

Why events: anchors and aliases are refused as they stream past, so an alias bomb is never
expanded; explicit tags (`!!python/object:...`, any `!tag`) are refused without ever being
constructed; duplicate keys are seen (PyYAML silently keeps the last one); and nesting is
capped, because PyYAML's scanner is quadratic in flow depth (100,000 `[` take minutes).

The libyaml parser is used when present (it is ~10x faster on large policies); on any
error the text is parsed again with the pure-Python parser, so messages do not depend on
whether libyaml is installed.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from appshield.policy._nodes import Node

__all__ = ["MAX_DEPTH", "YamlProblem", "parse"]

MAX_DEPTH = 64

_RESOLVER = Resolver()
_CONSTRUCTOR = SafeConstructor()
_STD_TAG = "tag:yaml.org,2002:"
# Plain scalars that YAML 1.1 resolves to something other than text.
_YTYPES = {
    f"{_STD_TAG}bool": "bool",
    f"{_STD_TAG}int": "int",
    f"{_STD_TAG}float": "float",
    f"{_STD_TAG}null": "null",
    f"{_STD_TAG}timestamp": "timestamp",
}

YamlProblem = tuple[str, int, int]  # message, 1-based line, 1-based column


class _Abort(Exception):
    """Stop building: the structure is too deep to parse safely."""


def parse(text: str) -> tuple[Node | None, list[YamlProblem]]:
    """The single document of `text` as a tree, and the problems found while reading it.

    The tree is None when the text holds no document or could not be parsed.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return _build(text, fast)
        except Exception:  # any libyaml failure: retry for a uniform message
            pass
    try:
        return _build(text, yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        return None, [_marked_problem(exc)]
    except yaml.reader.ReaderError as exc:
        line, col = _offset_place(text, exc.position)
        return None, [(f"invalid YAML: {_reader_message(exc)}", line, col)]
    except Exception as exc:  # third-party parser: never let it escape raw
        return None, [(f"invalid YAML: {type(exc).__name__}: {exc}", 1, 1)]


def _marked_problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = exc.problem or exc.context or "cannot parse"
    if exc.context and exc.problem:
        message = f"{message} ({exc.context})"
    return f"invalid YAML: {message}", line, col


def _reader_message(exc: yaml.reader.ReaderError) -> str:
    char = exc.character
    code = ord(char) if isinstance(char, str) else char
    return f"character #x{code:04x} is not allowed"


def _offset_place(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _build(text: str, loader: Any) -> tuple[Node | None, list[YamlProblem]]:
    builder = _Builder()
    parser = loader(text)
    try:
        _pump(parser.get_event, builder)
    except _Abort:
        return None, builder.problems
    finally:
        parser.dispose()
    return builder.root, builder.problems


def _pump(get_event: Any, builder: _Builder) -> None:
    """Feed every event to `builder`. Scalars without anchor or tag, most of any policy,
    take an inlined path: this loop is where a 10,000-rule policy spends its load time."""
    handlers = builder.handlers
    stack = builder.stack
    scalar_event = yaml.ScalarEvent
    typing = builder.typing
    while True:
        event = get_event()
        kind = type(event)
        if kind is scalar_event and stack and event.anchor is None and event.tag is None:
            text = event.value
            mark = event.start_mark
            line = mark.line + 1
            if event.implicit[0]:
                typed = typing.get(text)
                if typed is None:
                    typed = builder.resolve(text)
                node = Node("scalar", typed[1], line, mark.column + 1, typed[0], text)
            else:
                node = Node("scalar", text, line, mark.column + 1, None, text)
            frame = stack[-1]
            kids = frame.kids
            if frame.is_map and not len(kids) & 1:
                if text in frame.keys:
                    builder.add(node)  # the general path reports the duplicate
                    continue
                frame.keys[text] = line
            kids.append(node)
            continue
        handler = handlers.get(kind)
        if handler is not None:
            handler(event)
        elif event is None or kind is yaml.StreamEndEvent:
            return


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_STD_TAG) :] if tag.startswith(_STD_TAG) else tag


# First characters for which YAML 1.1 may resolve a plain scalar to a non-string type; any
# other plain scalar is text without asking the (comparatively slow) resolver.
_MAYBE_TYPED = frozenset(k for k in Resolver.yaml_implicit_resolvers if k)
_ALWAYS_RESOLVE = None in Resolver.yaml_implicit_resolvers
_TYPING_CACHE = 50_000  # distinct plain scalars remembered per parse


class _Frame:
    __slots__ = ("is_map", "keys", "kids", "node")

    def __init__(self, node: Node, is_map: bool) -> None:
        self.node = node
        self.is_map = is_map
        self.kids: list[Any] = []
        self.keys: dict[str, int] = {}  # key text -> line of first occurrence


class _Builder:
    """Builds the tree one event at a time (iteratively: deep input cannot overflow)."""

    def __init__(self) -> None:
        self.problems: list[YamlProblem] = []
        self.root: Node | None = None
        self.stack: list[_Frame] = []
        self.documents = 0
        self.typing: dict[str, tuple[str | None, Any]] = {}
        self.handlers: dict[type, Any] = {
            yaml.ScalarEvent: self._on_scalar,
            yaml.MappingStartEvent: self._on_start,
            yaml.SequenceStartEvent: self._on_start,
            yaml.MappingEndEvent: self._on_end,
            yaml.SequenceEndEvent: self._on_end,
            yaml.AliasEvent: self._on_alias,
            yaml.DocumentStartEvent: self._on_document,
        }

    def _problem(self, message: str, line: int, col: int) -> None:
        self.problems.append((message, line, col))

    def _on_document(self, event: Any) -> None:
        self.documents += 1
        if self.documents == 2:
            mark = event.start_mark
            self._problem(
                "a policy file holds one YAML document, not several", mark.line + 1, mark.column + 1
            )

    def _on_alias(self, event: Any) -> None:
        mark = event.start_mark
        line, col = mark.line + 1, mark.column + 1
        self._problem(f"YAML aliases are not allowed (*{event.anchor})", line, col)
        self.add(Node("bad", None, line, col))

    def _on_start(self, event: Any) -> None:
        mark = event.start_mark
        line, col = mark.line + 1, mark.column + 1
        is_map = type(event) is yaml.MappingStartEvent
        node = Node("map" if is_map else "seq", None, line, col)
        if (event.anchor is not None or event.tag is not None) and not self._props_ok(
            event, line, col
        ):
            node.kind = "bad"
        if len(self.stack) >= MAX_DEPTH:
            self._problem(f"nesting deeper than {MAX_DEPTH} levels", line, col)
            raise _Abort
        self.stack.append(_Frame(node, is_map))

    def _on_end(self, _event: Any) -> None:
        frame = self.stack.pop()
        kids = frame.kids
        if frame.is_map:
            frame.node.set_children(list(zip(kids[::2], kids[1::2], strict=False)))
        else:
            frame.node.set_children(kids)
        self.add(frame.node)

    def _props_ok(self, event: Any, line: int, col: int) -> bool:
        ok = True
        if event.anchor is not None:
            self._problem(f"YAML anchors are not allowed (&{event.anchor})", line, col)
        if event.tag is not None:
            self._problem(f"YAML tags are not allowed ({_show_tag(event.tag)})", line, col)
            ok = False
        return ok

    def _on_scalar(self, event: Any) -> None:
        mark = event.start_mark
        line, col = mark.line + 1, mark.column + 1
        text: str = event.value
        if (event.anchor is not None or event.tag is not None) and not self._props_ok(
            event, line, col
        ):
            self.add(Node("bad", None, line, col, text=text))
            return
        if event.implicit[0]:
            ytype, value = self.typing.get(text) or self.resolve(text)
            self.add(Node("scalar", value, line, col, ytype, text))
            return
        # Quoted and block scalars are text.
        self.add(Node("scalar", text, line, col, text=text))

    def resolve(self, text: str) -> tuple[str | None, Any]:
        """(ytype, value) of a plain scalar; remembered, since keys and values repeat."""
        ytype: str | None = None
        value: Any = text
        if not text or text[0] in _MAYBE_TYPED or _ALWAYS_RESOLVE:
            tag = _RESOLVER.resolve(ScalarNode, text, (True, False))
            ytype = _YTYPES.get(tag)
            if ytype is not None:
                value = _construct(tag, text)
        if len(self.typing) < _TYPING_CACHE:
            self.typing[text] = (ytype, value)
        return ytype, value

    def add(self, node: Node) -> None:
        stack = self.stack
        if not stack:
            if self.root is None:
                self.root = node
            return
        frame = stack[-1]
        kids = frame.kids
        if frame.is_map and len(kids) % 2 == 0 and node.text is not None:
            first = frame.keys.get(node.text)
            if first is not None:
                self._problem(
                    f"duplicate key {node.text!r} (first at line {first})",
                    node.line or 1,
                    node.col or 1,
                )
            else:
                frame.keys[node.text] = node.line or 0
        kids.append(node)


def _construct(tag: str, text: str) -> Any:
    """The value YAML would give a plain scalar; used for messages and for numbers."""
    try:
        # Call the constructor function directly: construct_object() would remember every
        # node it ever saw.
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, text))
    except Exception:  # e.g. a timestamp out of range: show the text
        return text
