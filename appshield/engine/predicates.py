"""Match fields as predicates over an operation: one closure per field of a rule.

A rule's fields combine with AND, so a rule is a tuple of predicates. Each predicate tests
the alternatives of one field (a list matches if any item does).

`broad` is the rule's polarity for the places where the spec lets a rule see more than
one spelling of a target: a deny (or alert) path glob matches `op.path` or `op.resolved`, an
allow must match the resolved path; a deny (or alert) `host`/`cidr` matches the address the
code gave (`op.requested`, such as `0.0.0.0`) or the one it reaches (`op.address`), an allow
must match the one reached; a deny `executable` also matches argv[0]; a deny `module` also
matches an import's `home` and `init` names, an allow must match its name and `home`. An
`unless` takes the opposite polarity of its rule, so that a symlink, an unspecified address,
a forged argv[0] or a renamed module can neither switch a deny off nor keep an allow on.
"""

from __future__ import annotations

from appshield.engine.globs import (
    Matcher,
    any_matcher,
    module_pattern,
    module_subject,
    path_matcher,
    plain_matcher,
)
from appshield.engine.indexes import address_key, network_key
from appshield.normalize import canonical_address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeAlias

__all__ = ["Pred", "host_key", "predicates"]

Pred: TypeAlias = "Callable[[Any], bool]"


def _paths(globs: Sequence[str]) -> Matcher:
    return any_matcher(globs, path_matcher)


def _plains(globs: Sequence[str]) -> Matcher:
    return any_matcher(globs, plain_matcher)


def _member(attr: str, values: tuple[Any, ...]) -> Pred:
    allowed = frozenset(values)
    return lambda op: getattr(op, attr) in allowed


def _executable(globs: tuple[str, ...], broad: bool) -> Pred:
    slash_globs = [g for g in globs if "/" in g]
    base_globs = [g for g in globs if "/" not in g]
    with_slash = _paths(slash_globs) if slash_globs else _never
    base_name = _paths(base_globs) if base_globs else _never

    def pred(op: Any) -> bool:
        exe = op.executable
        if with_slash(exe) or (op.trusted_location and base_name(exe.rpartition("/")[2])):
            return True
        if broad and op.argv:
            argv0 = op.argv[0]
            return with_slash(argv0) or base_name(argv0.rpartition("/")[2])
        return False

    return pred


def _never(_text: str) -> bool:
    return False


def _args(vectors: tuple[tuple[str, ...], ...]) -> Pred:
    compiled = []
    for vector in vectors:
        open_ended = bool(vector) and vector[-1] == "**"
        items = vector[:-1] if open_ended else vector
        compiled.append((tuple(plain_matcher(g) for g in items), open_ended))

    def pred(op: Any) -> bool:
        rest = op.argv[1:]
        for matchers, open_ended in compiled:
            if len(rest) < len(matchers) or (not open_ended and len(rest) != len(matchers)):
                continue
            if all(m(a) for m, a in zip(matchers, rest, strict=False)):
                return True
        return False

    return pred


def _text(attr: str, matcher: Matcher) -> Pred:
    def pred(op: Any) -> bool:
        value = getattr(op, attr)
        return value is not None and matcher(value)

    return pred


def _path(globs: tuple[str, ...], broad: bool) -> Pred:
    match = _paths(globs)
    if broad:
        return lambda op: match(op.path) or (op.resolved is not None and match(op.resolved))
    return lambda op: match(op.real_path)


def host_key(pattern: str) -> str:
    """What a host pattern is filed and matched as: an IP literal's canonical address."""
    return canonical_address(pattern) or pattern


def _host(patterns: tuple[str, ...], broad: bool) -> Pred:
    match = _plains([host_key(p) for p in patterns])

    def pred(op: Any) -> bool:
        if op.host is not None and match(op.host):
            return True
        if op.address is not None and match(op.address):
            return True
        if broad and op.requested is not None and match(op.requested):
            return True
        return any(match(name) for name in op.names)

    return pred


def _cidr(cidrs: tuple[str, ...], broad: bool) -> Pred:
    nets = []
    for cidr in cidrs:
        version, prefixlen, network = network_key(cidr)
        shift = (32 if version == 4 else 128) - prefixlen
        nets.append((version, shift, network >> shift))

    def within(address: str | None) -> bool:
        key = address_key(address) if address is not None else None
        if key is None:
            return False
        version, value = key
        return any(v == version and value >> s == n for v, s, n in nets)

    if broad:
        return lambda op: within(op.address) or within(op.requested)
    return lambda op: within(op.address)


def _port(ranges: tuple[tuple[int, int], ...]) -> Pred:
    if len(ranges) == 1:
        low, high = ranges[0]
        return lambda op: op.port is not None and low <= op.port <= high

    def pred(op: Any) -> bool:
        port = op.port
        return port is not None and any(low <= port <= high for low, high in ranges)

    return pred


def _module(globs: tuple[str, ...], broad: bool) -> Pred:
    match = _paths([module_pattern(g) for g in globs])

    def pred(op: Any) -> bool:
        module = op.module
        if module is None:
            return False
        home, init = op.home, op.init
        if home is None and init is None:  # the usual case: name and file agree
            return match(module_subject(module))
        if broad:  # a deny or alert: any name the module's code has
            return any(
                name is not None and match(module_subject(name)) for name in (module, home, init)
            )
        # An allow (or a deny's exception) holds for the name and for the file's own name:
        # `numpy.zz` must not make `_ctypes`' file an allowed `numpy.*` module.
        return match(module_subject(module)) and (home is None or match(module_subject(home)))

    return pred


_BUILDERS: dict[tuple[str, str], Callable[[tuple[Any, ...], bool, bool], Pred]] = {
    ("process", "executable"): lambda v, _path, broad_exec: _executable(v, broad_exec),
    ("process", "args"): lambda v, _p, _e: _args(v),
    ("process", "shell"): lambda v, _p, _e: _member("shell", v),
    ("process", "unshielded"): lambda v, _p, _e: _member("unshielded", v),
    ("process", "command_line"): lambda v, _p, _e: _text("command_line", _plains(v)),
    ("file", "path"): lambda v, broad_path, _e: _path(v, broad_path),
    ("file", "access"): lambda v, _p, _e: _member("access", v),
    ("network", "host"): lambda v, broad, _e: _host(v, broad),
    ("network", "cidr"): lambda v, broad, _e: _cidr(v, broad),
    ("network", "port"): lambda v, _p, _e: _port(v),
    ("network", "operation"): lambda v, _p, _e: _member("operation", v),
    ("network", "transport"): lambda v, _p, _e: _member("transport", v),
    ("import", "module"): lambda v, broad_path, _e: _module(v, broad_path),
    ("import", "origin"): lambda v, _p, _e: _text("origin", _paths(v)),
    ("import", "library"): lambda v, _p, _e: _text("library", _paths(v)),
}


def _field(
    category: str, name: str, values: tuple[Any, ...], broad_path: bool, broad_exec: bool
) -> Pred:
    builder = _BUILDERS.get((category, name))
    if builder is None:
        raise ValueError(f"unknown match field {name!r} for category {category!r}")
    if not values:
        return lambda op: False  # an empty list of alternatives matches nothing
    return builder(values, broad_path, broad_exec)


def predicates(
    category: str, fields: Any, *, broad_path: bool, broad_exec: bool
) -> tuple[Pred, ...]:
    """The AND of a condition's fields. `fields` maps a field name to its alternatives.

    broad_path: a path glob also matches `op.path` (not only the resolved path); a `host` or
        `cidr` also matches `op.requested` (not only the address reached).
    broad_exec: an `executable` glob also matches argv[0].
    """
    return tuple(
        _field(category, name, tuple(values), broad_path, broad_exec)
        for name, values in fields.items()
    )
