"""Readers for the match fields of each category (used by `match` and `unless`).

Each reader turns the YAML value into the tuple the engine expects (see appshield/document.py):
one value or a list of values, normalised; globs checked; variables expanded in path
globs. A reader returns None after reporting a problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from appshield.document import MATCH_FIELDS
from appshield.policy import _values
from appshield.policy._check import Checker
from appshield.policy._nodes import Node
from appshield.policy.variables import VariableError, expand, normalise_path_glob

__all__ = ["FIELD_READERS", "read_condition_fields", "read_scope"]

_Given = TypeVar("_Given")
_Read = TypeVar("_Read")

Variables = Mapping[str, tuple[str, ...]]
Reader = Callable[[Checker, Node, str, Variables], "tuple[Any, ...] | None"]

ACCESS = ("read", "write", "delete")
OPERATIONS = ("connect", "send", "bind", "resolve")
TRANSPORTS = ("tcp", "udp", "unix", "raw")


def _checked(
    ck: Checker, node: Node, what: str, text: _Given | None, check: Callable[[_Given], _Read]
) -> _Read | None:
    """Apply a `ValueError`-raising check to a text value, reporting its message."""
    if text is None:
        return None
    try:
        return check(text)
    except ValueError as exc:
        ck.report(node, f"{what}: {exc}")
        return None


def _flatten(values: list[list[str]] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(dict.fromkeys(v for group in values for v in group))


def _path_globs(ck: Checker, node: Node, what: str, variables: Variables) -> list[str] | None:
    text = ck.text(node, what)

    def expand_and_check(raw: str) -> list[str]:
        try:
            globs = expand(raw, variables)
        except VariableError as exc:
            raise ValueError(str(exc)) from None
        out = []
        for glob in globs:
            _values.check_path_glob(glob)
            out.append(normalise_path_glob(glob))
        return out

    return _checked(ck, node, what, text, expand_and_check)


def read_paths(ck: Checker, node: Node, what: str, variables: Variables) -> tuple[str, ...] | None:
    return _flatten(ck.one_or_many(node, what, lambda n: _path_globs(ck, n, what, variables)))


def read_executable(
    ck: Checker, node: Node, what: str, variables: Variables
) -> tuple[str, ...] | None:
    def one(item: Node) -> list[str] | None:
        text = ck.text(item, what)
        if text is None:
            return None
        if "/" in text or text.startswith(("~", "{")):
            return _path_globs(ck, item, what, variables)
        return _checked(ck, item, what, text, _base_name_glob)

    return _flatten(ck.one_or_many(node, what, one))


def _base_name_glob(text: str) -> list[str]:
    if not text:
        raise ValueError("an executable glob cannot be empty")
    if "{" in text or "}" in text:
        raise ValueError(f"unknown variable in {text!r} (variables make a path: add a '/')")
    _values.check_class_brackets(text)
    return [text]


def _plain_glob(ck: Checker, node: Node, what: str) -> str | None:
    text = ck.text(node, what)

    def check(raw: str) -> str:
        _values.check_class_brackets(raw)
        return raw

    return _checked(ck, node, what, text, check)


def read_command_line(
    ck: Checker, node: Node, what: str, variables: Variables
) -> tuple[str, ...] | None:
    found = ck.one_or_many(node, what, lambda n: _plain_glob(ck, n, what))
    return tuple(dict.fromkeys(found)) if found is not None else None


def _arg_vector(ck: Checker, node: Node, what: str) -> tuple[str, ...] | None:
    items = node.elements()
    globs = [_plain_glob(ck, item, what) for item in items]
    if any(g is None for g in globs):
        return None
    for position, glob in enumerate(globs[:-1]):
        if glob == "**":
            ck.report(items[position], f"{what}: '**' is only allowed as the last item")
            return None
    return tuple(g for g in globs if g is not None)


def read_args(ck: Checker, node: Node, what: str, variables: Variables) -> tuple[Any, ...] | None:
    """One vector (`[status, "**"]`, or a single string) or a list of vectors."""
    if node.kind != "seq":
        glob = _plain_glob(ck, node, what) if node.kind == "scalar" else None
        if glob is None:
            if node.kind != "scalar":
                ck.wrong_type(node, what, "a list of globs or a list of such lists")
            return None
        return ((glob,),)
    items = node.elements()
    nested = [item.kind == "seq" for item in items]
    if items and all(nested):
        vectors = [_arg_vector(ck, item, what) for item in items]
        if any(v is None for v in vectors):
            return None
        return tuple(dict.fromkeys(v for v in vectors if v is not None))
    if any(nested):
        ck.report(node, f"{what}: a list of globs or a list of lists, not a mix of both")
        return None
    vector = _arg_vector(ck, node, what)
    return (vector,) if vector is not None else None


def read_bools(ck: Checker, node: Node, what: str, variables: Variables) -> tuple[bool, ...] | None:
    found = ck.one_or_many(node, what, lambda n: ck.boolean(n, what))
    return tuple(dict.fromkeys(found)) if found is not None else None


def _choices(choices: tuple[str, ...]) -> Reader:
    def read(ck: Checker, node: Node, what: str, variables: Variables) -> tuple[str, ...] | None:
        found = ck.one_or_many(node, what, lambda n: ck.choice(n, what, choices))
        return tuple(dict.fromkeys(found)) if found is not None else None

    return read


def read_hosts(ck: Checker, node: Node, what: str, variables: Variables) -> tuple[str, ...] | None:
    def one(item: Node) -> str | None:
        return _checked(ck, item, what, ck.text(item, what), _values.normalise_host)

    found = ck.one_or_many(node, what, one)
    return tuple(dict.fromkeys(found)) if found is not None else None


def read_cidrs(ck: Checker, node: Node, what: str, variables: Variables) -> tuple[str, ...] | None:
    def one(item: Node) -> str | None:
        return _checked(ck, item, what, ck.text(item, what), _values.parse_cidr)

    found = ck.one_or_many(node, what, one)
    return tuple(dict.fromkeys(found)) if found is not None else None


def _port(ck: Checker, node: Node, what: str) -> tuple[int, int] | None:
    value = node.value
    if node.kind == "scalar" and isinstance(value, int) and not isinstance(value, bool):
        number = ck.integer(node, what)
        return _checked(ck, node, what, number, _values.parse_port)
    if node.kind == "scalar" and isinstance(value, str) and node.ytype is None:
        return _checked(ck, node, what, value, _values.parse_port)
    if node.kind == "scalar" and node.ytype is not None:
        ck.wrong_type(node, what, "a string")  # says "read by YAML as ...; quote it"
    else:
        ck.wrong_type(node, what, 'a port number or a "LOW-HIGH" string')
    return None


def read_ports(
    ck: Checker, node: Node, what: str, variables: Variables
) -> tuple[tuple[int, int], ...] | None:
    found = ck.one_or_many(node, what, lambda n: _port(ck, n, what))
    return tuple(dict.fromkeys(found)) if found is not None else None


def _module(ck: Checker, node: Node, what: str) -> str | None:
    return _checked(ck, node, what, ck.text(node, what), _module_check)


def _module_check(text: str) -> str:
    _values.check_module_glob(text)
    return text


def read_modules(
    ck: Checker, node: Node, what: str, variables: Variables
) -> tuple[str, ...] | None:
    found = ck.one_or_many(node, what, lambda n: _module(ck, n, what))
    return tuple(dict.fromkeys(found)) if found is not None else None


def read_scope(ck: Checker, node: Node, what: str = "scope") -> tuple[str, ...] | None:
    return read_modules(ck, node, what, {})


FIELD_READERS: Mapping[str, Reader] = {
    "executable": read_executable,
    "args": read_args,
    "shell": read_bools,
    "command_line": read_command_line,
    "unshielded": read_bools,
    "path": read_paths,
    "access": _choices(ACCESS),
    "host": read_hosts,
    "cidr": read_cidrs,
    "port": read_ports,
    "operation": _choices(OPERATIONS),
    "transport": _choices(TRANSPORTS),
    "module": read_modules,
    "origin": read_paths,
    "library": read_paths,
}


def read_condition_fields(
    ck: Checker,
    entries: Mapping[str, tuple[Node, Node]],
    category: str,
    variables: Variables,
) -> dict[str, tuple[Any, ...]] | None:
    """The match fields of `entries` (already limited to known keys); None on a problem."""
    fields: dict[str, tuple[Any, ...]] = {}
    ok = True
    for name, (_key, value) in entries.items():
        if name not in MATCH_FIELDS[category]:
            continue  # `scope` in unless: read by the caller
        read = FIELD_READERS[name](ck, value, name, variables)
        if read is None:
            ok = False
        else:
            fields[name] = read
    return fields if ok else None
