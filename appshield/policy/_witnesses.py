"""Witness operations for `appshield.policy.diff`: concrete operations built from the rule
patterns of two policies, so that deciding them under both policies shows where they differ.

Two policies can only decide an operation differently where some pattern of one of them
matches it and the same pattern, or another one, does not. So the witnesses are each
pattern's own instances (every wildcard filled in a few ways: left empty, or filled with a
*fresh* token that no pattern of either policy contains, so it matches a wildcard and never a
literal), their neighbours (the parent folder, a child, a sibling that extends the last
segment, a port one off each end of a range, the address one off each end of a CIDR), and
fresh operations that no rule names (which fall to the defaults). The same witnesses are
built for OLD against NEW as for NEW against OLD: the set is computed from the union of both
policies' patterns, in a fixed order.

Exact cases and limits are in docs/lifecycle.md ("What the diff proves"). Every generator is
bounded (`LIMIT` operations per category, after which `Witnesses.truncated` says so).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from appshield.document import Condition, PolicyDocument, RuleSpec
from appshield.engine.globs import module_pattern, module_subject, path_matcher
from appshield.engine.predicates import predicates
from appshield.operations import (
    CATEGORIES,
    FileAccess,
    FileOp,
    ImportOp,
    NetworkOp,
    Operation,
    ProcessOp,
)

__all__ = ["LIMIT", "Witness", "Witnesses", "witnesses"]

LIMIT = 200_000  # witnesses per category; a policy pair beyond it is reported as truncated
_PER_PATTERN = 24  # instances of one pattern (the product of its wildcards' fillings)
_PAIRS = 1_500  # symlink witnesses (a path whose resolved path differs) per access
_STACKS = 16  # call stacks tried with each operation of a category that has a scoped rule
# (at least one per scope glob: see `stacks`); 16 covers every pattern of four scope lists
_STACK_ROOM = 20_000  # more stacks, up to this many witnesses, where the operations are few
_MAX_STACKS = 256
_CANDIDATES = 4_096  # pairs and triples of scope modules looked at for new stack patterns

Stack = tuple[str, ...]


class Witness(NamedTuple):
    """One operation, and the modules on the call stack when it happens (for `scope`)."""

    op: Operation
    stack: Stack = ()


class Witnesses(NamedTuple):
    items: dict[str, list[Witness]]
    truncated: tuple[str, ...]  # categories whose witnesses hit LIMIT


# --- the patterns of both policies ---------------------------------------------------------


class _Patterns:
    """Every value of every match and unless field of both policies, by category and field,
    de-duplicated and sorted (so the witnesses do not depend on which policy came first)."""

    def __init__(self, documents: Sequence[PolicyDocument]) -> None:
        found: dict[tuple[str, str], set[Any]] = {}
        broad_paths_found: set[str] = set()  # matched against `path` as well as the resolved path
        scopes: set[str] = set()
        scope_lists: set[tuple[str, ...]] = set()
        for document in documents:
            for rule in document.rules:
                for condition, broad in _conditions(rule):
                    for name, values in condition.fields.items():
                        found.setdefault((rule.category, name), set()).update(values)
                        if rule.category == "file" and name == "path" and broad:
                            broad_paths_found.update(values)
                    scopes.update(condition.scope or ())
                    if condition.scope is not None:
                        scope_lists.add(tuple(condition.scope))
                scopes.update(rule.scope or ())
                if rule.scope is not None:
                    scope_lists.add(tuple(rule.scope))
        self._found = found
        self.broad_paths = sorted(broad_paths_found)
        self.scopes = sorted(scopes)
        self.scope_lists = sorted(scope_lists)  # each `scope` as written (holds as a whole)
        # Every condition's fields, by category (to tell which rules could match a witness).
        # Sorted and de-duplicated like the patterns: the generators that walk the conditions
        # (argv tails, ports, combined import fields) then yield the same witnesses in the
        # same order whichever policy is OLD, so both directions report the same examples.
        conditions: dict[str, dict[str, Any]] = {c: {} for c in CATEGORIES}
        for document in documents:
            for rule in document.rules:
                for condition, _broad in _conditions(rule):
                    conditions[rule.category].setdefault(repr(condition.fields), condition.fields)
        self.conditions: dict[str, list[Any]] = {
            c: [found[k] for k in sorted(found)] for c, found in conditions.items()
        }
        self.unshielded_differs = len({d.protections.unshielded_children for d in documents}) > 1
        # Off in both: no implicit deny, so `unshielded` can matter.
        self.unshielded_differs |= not any(d.protections.unshielded_children for d in documents)
        text = repr(sorted((k, sorted(map(repr, v))) for k, v in found.items())) + repr(scopes)
        self.fresh = _fresh_token(text)
        self.fresh_char = _fresh_char(text)

    def get(self, category: str, name: str) -> list[Any]:
        return sorted(self._found.get((category, name), ()), key=repr)


def _conditions(rule: RuleSpec) -> Iterator[tuple[Condition, bool]]:
    """The rule's conditions, each with whether its path globs also see the unresolved path
    (a deny's or alert's match, an allow's unless: see `appshield.engine.predicates`)."""
    allow = rule.action == "allow"
    yield rule.match, not allow
    if rule.unless is not None:
        yield rule.unless, allow


def _fresh_token(text: str) -> str:
    # Readable when it can be: witnesses are shown to people as examples.
    for token in ("other", "zq0", "zq1"):
        if token not in text:
            return token
    for n in itertools.count(2):
        token = f"zq{n}"
        if token not in text:
            return token
    raise AssertionError("unreachable")  # pragma: no cover


def _fresh_char(text: str) -> str:
    for char in "qzjkxw0123456789_~@%":
        if char not in text:
            return char
    return "\u00e9"  # every candidate is used in some pattern: a letter no policy spells


# --- glob instances ------------------------------------------------------------------------


def _fill_run(run: str, fresh: str, char: str) -> list[str]:
    """Instances of one wildcard run (`*`, `?` and `[...]` within a segment, or a whole plain
    glob): each `*` left empty or given the fresh token, each `?` the fresh character, each
    class its first member (a negated class: the fresh character when it is outside)."""
    pieces: list[list[str]] = []
    i, n = 0, len(run)
    while i < n:
        c = run[i]
        i += 1
        if c == "*":
            while i < n and run[i] == "*":
                i += 1
            pieces.append([fresh, ""])
        elif c == "?":
            pieces.append([char])
        elif c == "[":
            j = i + (1 if i < n and run[i] == "!" else 0)
            j += 1 if j < n and run[j] == "]" else 0
            while j < n and run[j] != "]":
                j += 1
            if j >= n:
                pieces.append(["["])
                continue
            pieces.append([_class_member(run[i:j], char)])
            i = j + 1
        else:
            pieces.append([c])
    out: list[str] = []
    for combo in itertools.islice(itertools.product(*pieces), _PER_PATTERN):
        out.append("".join(combo))
    return out


def _class_member(body: str, char: str) -> str:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    members: set[str] = set()
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            low, high = ord(body[k]), ord(body[k + 2])
            members.update(chr(c) for c in range(low, min(high, low + 256) + 1))
            k += 3
        else:
            members.add(body[k])
            k += 1
    if not negate:
        return body[0] if body else char
    for candidate in (char, "q", "z", "0", "_", "\u00e9"):
        if candidate not in members and candidate != "/":
            return candidate
    return "\u00e9"  # pragma: no cover - a class that excludes all of these


def path_instances(glob: str, fresh: str, char: str) -> list[str]:
    """Instances of a path glob: `**` as zero, one and two fresh segments; empty segments
    (a `*` left empty on its own) are dropped."""
    options: list[list[list[str]]] = []
    for seg in glob.split("/"):
        if seg == "**":
            options.append([[], [fresh], [fresh, fresh]])
        else:
            options.append([[s] for s in _fill_run(seg, fresh, char)])
    out: list[str] = []
    for combo in itertools.islice(itertools.product(*options), _PER_PATTERN * 4):
        segments = [s for part in combo for s in part]
        text = "/".join(segments)
        if glob.startswith("/") and not text.startswith("/"):
            text = "/" + text
        if "//" in text or (text.endswith("/") and text != "/"):
            continue
        out.append(text or "/")
    return out[:_PER_PATTERN] or [glob.replace("*", fresh)]


def path_neighbours(path: str, fresh: str) -> list[str]:
    """The parent folder, a child, a sibling that extends the name, a sibling in its place."""
    if not path.startswith("/"):
        return [path + fresh, fresh + path]
    head, _sep, name = path.rpartition("/")
    out = [f"{path}/{fresh}", path + fresh, f"{head}/{fresh}"]
    if head:
        out.append(head)
    if name:
        out.append(f"{head}/{fresh}{name}")
    return out


def _paths(globs: Iterable[str], fresh: str, char: str) -> list[str]:
    found: dict[str, None] = {}
    for glob in globs:
        for instance in path_instances(glob, fresh, char):
            found[instance] = None
            found.update(dict.fromkeys(path_neighbours(instance, fresh)))
    return list(found)


def _bounded(items: Iterable[Witness], limit: int) -> tuple[list[Witness], bool]:
    out = list(itertools.islice(items, limit + 1))
    return out[:limit], len(out) > limit


# --- per category --------------------------------------------------------------------------


def _file(p: _Patterns) -> Iterator[Operation]:
    f, c = p.fresh, p.fresh_char
    paths = _paths(p.get("file", "path"), f, c)
    paths.append(f"/{f}/{f}")
    # Where the path as written and the resolved path differ (a symlink), a deny sees both
    # and an allow only the resolved one: pair the instances of globs that see both with
    # every other path, within a bound.
    broad = _paths(p.broad_paths, f, c) if p.broad_paths else []
    named = set(p.get("file", "access"))
    every: tuple[FileAccess, ...] = ("read", "write", "delete")
    accesses = tuple(a for a in every if a in named) + tuple(a for a in every if a not in named)[:1]
    for access in accesses:
        for path in paths:
            yield FileOp(path, access)
        pairs = ((a, b) for a in [*broad, f"/{f}"] for b in paths if a != b)
        for path, resolved in itertools.islice(pairs, _PAIRS):
            yield FileOp(path, access, resolved)


def _vector_tails(vector: tuple[str, ...], fresh: str, char: str) -> list[tuple[str, ...]]:
    """argv[1:] instances of an `args` vector, one shorter and one longer too."""
    open_ended = bool(vector) and vector[-1] == "**"
    items = vector[:-1] if open_ended else vector
    fills = [_fill_run(g, fresh, char)[:3] for g in items]
    found: dict[tuple[str, ...], None] = {}
    for combo in itertools.islice(itertools.product(*fills), _PER_PATTERN):
        found[tuple(combo)] = None
        longer = (*combo, fresh)  # bound first: a starred index is 3.11 syntax to mypy
        found[longer] = None
        if combo:
            found[tuple(combo[:-1])] = None
    return list(found)


def _tail_finder(p: _Patterns) -> Any:
    """argv tails worth trying with a program: those of the `args` of rules whose
    `executable` could match it (or that have none), the empty one and a fresh one. Like
    `_port_finder`: the arguments of a rule for another program cannot change a decision."""
    f, c = p.fresh, p.fresh_char
    always: dict[tuple[str, ...], None] = {(): None, (f,): None}
    checks: list[tuple[tuple[Any, ...], list[tuple[str, ...]]]] = []
    for fields in p.conditions["process"]:
        vectors = fields.get("args")
        if not vectors:
            continue
        tails = [t for vector in vectors for t in _vector_tails(vector, f, c)]
        if "executable" in fields:
            # Broad: argv[0] counts too, a superset of what any rule sees.
            program = {"executable": fields["executable"]}
            checks.append((predicates("process", program, broad_path=True, broad_exec=True), tails))
        else:
            always.update(dict.fromkeys(tails))

    def tails_for(exe: str, trusted: bool) -> list[tuple[str, ...]]:
        found = dict(always)
        for argv0 in (exe, exe.rpartition("/")[2]):
            probe = ProcessOp(exe, (argv0,), False, None, trusted, False)
            for preds, tails in checks:
                if all(pred(probe) for pred in preds):
                    found.update(dict.fromkeys(tails))
        return list(found)

    return tails_for


def _process(p: _Patterns) -> Iterator[Operation]:
    f, c = p.fresh, p.fresh_char
    # (executable, trusted_location) pairs: globs with `/` are paths; a base name is found
    # on PATH (trusted) or sits in a writable folder (not trusted).
    programs: dict[tuple[str, bool], None] = {}
    executables = p.get("process", "executable")
    for path in _paths([g for g in executables if "/" in g], f, c):
        programs[(path, False)] = None
        programs[(path, True)] = None
    for glob in [g for g in executables if "/" not in g]:
        for name in _fill_run(glob, f, c):
            if name:
                programs[(f"/usr/bin/{name}", True)] = None
                programs[(f"/tmp/{f}/{name}", False)] = None
    programs[(f"/usr/bin/{f}", True)] = None
    tails_for = _tail_finder(p)
    lines: list[tuple[str, ...]] = []
    for glob in p.get("process", "command_line"):
        for text in _fill_run(glob, f, c):
            if text.strip():
                lines.append(tuple(text.split(" ")))
    # A flag no rule names (and, for `unshielded`, that both policies deny through the same
    # implicit protection) cannot tell the policies apart: one value of it is enough.
    flags = [(False, False)]
    if p.get("process", "shell"):
        flags.append((True, False))
    if p.get("process", "unshielded") or p.unshielded_differs:
        flags.append((False, True))
    # argv[0] as the full path differs from the base name only for `command_line`.
    spell_full = bool(lines) or bool(p.get("process", "command_line"))
    for exe, trusted in programs:
        for tail, (shell, unshielded) in itertools.product(tails_for(exe, trusted), flags):
            argv = (exe.rpartition("/")[2], *tail)
            yield ProcessOp(exe, argv, shell, None, trusted, unshielded)
            if spell_full:
                yield ProcessOp(exe, (exe, *tail), shell, None, trusted, unshielded)
    line_flags = dict.fromkeys([(False, False), (True, False), *flags])
    for argv in lines:
        exe = argv[0] if argv[0].startswith("/") else f"/usr/bin/{argv[0] or f}"
        for shell, unshielded in line_flags:
            yield ProcessOp(exe, argv, shell, None, True, unshielded)
            yield ProcessOp(f"/usr/bin/{f}", argv, shell, None, True, unshielded)
    # argv[0] is not the program: a deny on argv[0] still holds, an allow does not.
    for exe, _trusted in programs:
        yield ProcessOp(f"/usr/bin/{f}", (exe,), False, None, True, False)
        yield ProcessOp(exe, (f,), False, None, False, False)
    yield from _combined_process(p)


def _combined_process(p: _Patterns) -> Iterator[Operation]:
    """A process whose program (or argv[0], for a deny) matches an `executable` and whose
    whole command line matches a `command_line`: a rule that names both matches only such a
    process, and so does a pair of conditions that name one each (two rules, or a rule's
    match and its unless). First each condition that names both, from its own values; then
    every `executable` of any condition with every `command_line` of any, in at most 750
    pairs (half `_PAIRS`: each pair makes seven operations, and each is tried on every stack).
    The words of each command line after the program's name become the arguments."""
    f, c = p.fresh, p.fresh_char
    for fields in p.conditions["process"]:
        lines, executables = fields.get("command_line"), fields.get("executable")
        if lines and executables:
            own = _programs(executables, f, c), _texts(lines, f, c)
            yield from _program_lines(*own, f, _PER_PATTERN * 8)
    every_program = _programs(p.get("process", "executable"), f, c)
    every_text = _texts(p.get("process", "command_line"), f, c)
    yield from _program_lines(every_program, every_text, f, _PAIRS // 2)


def _programs(executables: Iterable[str], f: str, c: str) -> list[tuple[str, bool]]:
    programs: list[tuple[str, bool]] = []
    for glob in executables:
        if "/" in glob:
            programs += [(path, t) for path in _paths([glob], f, c)[:3] for t in (True, False)]
        else:
            for name in [n for n in _fill_run(glob, f, c) if n][:3]:
                programs += [(f"/usr/bin/{name}", True), (f"/tmp/{f}/{name}", False)]
    return programs


def _texts(lines: Iterable[str], f: str, c: str) -> list[str]:
    return [t for glob in lines for t in _fill_run(glob, f, c)[:3] if t.strip()]


def _program_lines(
    programs: list[tuple[str, bool]], texts: list[str], f: str, bound: int
) -> Iterator[Operation]:
    for (exe, trusted), text in itertools.islice(itertools.product(programs, texts), bound):
        words = tuple(text.split(" "))
        base = exe.rpartition("/")[2]
        for argv in ((base, *words[1:]), (exe, *words[1:]), words):
            for shell in (False, True):
                yield ProcessOp(exe, argv, shell, None, trusted, False)
        # the program named only in argv[0]: a deny still holds
        yield ProcessOp(f"/usr/bin/{f}", (base, *words[1:]), False, None, True, False)


def _addresses(p: _Patterns) -> list[str]:
    found: dict[str, None] = {}
    for host in p.get("network", "host"):
        try:
            found[str(ipaddress.ip_address(host))] = None
        except ValueError:
            continue
    for cidr in p.get("network", "cidr"):
        net = ipaddress.ip_network(cidr, strict=False)
        # Made by the network's own class: `ip_address(1)` is 0.0.0.1, even for `::1/128`.
        kind = net.network_address.__class__
        top = 2**32 - 1 if net.version == 4 else 2**128 - 1
        first, last = int(net.network_address), int(net.broadcast_address)
        for value in (first, last, first - 1, last + 1, (first + last) // 2):
            if 0 <= value <= top:
                found[str(kind(value))] = None
    found["192.0.2.77"] = None  # TEST-NET-1: a fresh v4 address (if no rule names it)
    found["2001:db8::77"] = None
    return list(found)


def _hosts(p: _Patterns) -> list[str]:
    f, c = p.fresh, p.fresh_char
    found: dict[str, None] = {}
    for glob in p.get("network", "host"):
        try:
            ipaddress.ip_address(glob)
            continue
        except ValueError:
            pass
        for name in _fill_run(glob, f, c):
            found[name] = None
            found[f"{f}.{name}"] = None
            found[name + f] = None
        if glob.startswith("*."):
            found[glob[2:]] = None
    found[f"{f}.example"] = None
    return [h for h in found if h]


def _port_finder(p: _Patterns) -> Any:
    """Ports worth trying with a target: the ends of the port ranges of the rules whose
    `host`/`cidr` could match it (and of rules without either), the ports just outside them,
    no port, and a port no rule names. A port range of a rule that cannot match the target
    cannot change its decision, so the ports of a 300-rule policy are not all tried with
    every host."""
    checks: list[tuple[tuple[Any, ...], tuple[tuple[int, int], ...]]] = []
    every: set[int] = set()
    for fields in p.conditions["network"]:
        ranges = fields.get("port")
        if not ranges:
            continue
        every.update(v for r in ranges for v in r)
        place = {k: v for k, v in fields.items() if k in ("host", "cidr")}
        # Broad: the requested address counts too, a superset of what any rule sees.
        checks.append((predicates("network", place, broad_path=True, broad_exec=False), ranges))
    spare = next(n for n in itertools.count(1) if n not in every)

    def ports(target: dict[str, Any]) -> list[int | None]:
        probe = NetworkOp("connect", **target)
        found: dict[int | None, None] = {None: None, spare: None}
        for preds, ranges in checks:
            if all(pred(probe) for pred in preds):
                for low, high in ranges:
                    for port in (low, high, low - 1, high + 1):
                        if 0 <= port <= 65535:
                            found[port] = None
        return list(found)

    return ports


def _named(p: _Patterns, field: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """The values of an enumerated field that some rule names, and one that none does (all
    values no rule names are decided alike)."""
    named = set(p.get("network", field))
    return tuple(v for v in values if v in named) + tuple(v for v in values if v not in named)[:1]


def _network(p: _Patterns) -> Iterator[Operation]:
    addresses, hosts, ports_for = _addresses(p), _hosts(p), _port_finder(p)
    spare = "192.0.2.77"
    targets: list[dict[str, Any]] = []
    for host in hosts:
        targets.append({"host": host})
        targets.append({"host": host, "address": spare})
        targets.append({"address": spare, "names": (host,)})
    for address in addresses:
        targets.append({"address": address})
        targets.append({"address": spare, "requested": address})
    if p.get("network", "cidr") or len(addresses) > 2:
        # A name and the address it resolved to, where rules name both kinds.
        for host, address in itertools.islice(itertools.product(hosts, addresses), _PAIRS):
            targets.append({"host": host, "address": address})
    operations = _named(p, "operation", ("connect", "send", "bind", "resolve"))
    # Raw sockets always: a rule that does not name `raw` never allows one, while a deny of
    # any shape still matches one (engine/categories.py), so raw ops fall on other rules.
    transports = tuple(dict.fromkeys((*_named(p, "transport", ("tcp", "udp")), "raw")))
    for target in targets:
        for port, operation, transport in itertools.product(
            ports_for(target), operations, transports
        ):
            yield NetworkOp(operation, port=port, transport=transport, **target)  # type: ignore[arg-type]
    for operation in ("connect", "send", "bind", "resolve"):
        yield NetworkOp(operation, transport="unix", path=f"/{p.fresh}.sock")  # type: ignore[arg-type]
        for address in addresses:
            yield NetworkOp(operation, address=address, transport="raw")  # type: ignore[arg-type]


def _modules(globs: Iterable[str], fresh: str, char: str) -> list[str]:
    found: dict[str, None] = {}
    for glob in globs:
        for path in path_instances("/" + glob.replace(".", "/"), fresh, char):
            name = path.strip("/").replace("/", ".")
            if not name:
                continue
            found[name] = None
            found[f"{name}.{fresh}"] = None
            found[name + fresh] = None
            head = name.rpartition(".")[0]
            if head:
                found[head] = None
    return list(found)


def _import(p: _Patterns) -> Iterator[Operation]:
    f, c = p.fresh, p.fresh_char
    modules = [*_modules(p.get("import", "module"), f, c), f]
    origins: list[str | None] = [None, f"/{f}/{f}.py", *_paths(p.get("import", "origin"), f, c)]
    libraries = [f"/{f}/{f}.so", *_paths(p.get("import", "library"), f, c)]
    for module, origin in itertools.product(modules, origins):
        yield ImportOp(module, origin)
    # A file loaded with no module name (a native library by path): a rule on `module`
    # cannot match it, one on `origin` still can.
    for origin in origins[1:]:
        yield ImportOp(None, origin)
    # A module whose file has another name (see ImportOp.home and init).
    for module in modules:
        yield ImportOp(f, None, None, module)
        yield ImportOp(module, None, None, f)
        yield ImportOp(f, None, None, None, module.rpartition(".")[2])
    for library in libraries:
        yield ImportOp(None, None, library)
        yield ImportOp(f, None, library)
    # `module` and `origin` are paired above; `library` with each of them here, since two
    # conditions (two rules, or a rule's match and its unless) can each name one of the
    # pair and a decision then changes only where both hold. At most 3,000 pairs (twice
    # the symlink pairs: the library goes with two fields).
    others: list[tuple[str | None, str | None]] = [(m, None) for m in modules[:-1]]
    others += [(None, o) for o in origins[1:]]
    pairs = itertools.product(libraries, others)
    for library, (name, place) in itertools.islice(pairs, 2 * _PAIRS):
        yield ImportOp(name, place, library)
        if name is None:
            yield ImportOp(f, place, library)
    yield from _combined_imports(p, modules, origins, libraries)


_IMPORT_FIELDS = ("module", "origin", "library")


def _combined_imports(
    p: _Patterns,
    all_modules: list[str],
    all_origins: list[str | None],
    all_libraries: list[str],
) -> Iterator[Operation]:
    """A rule that names two of `module`, `origin` and `library` matches only an operation
    that has both: such operations are built from that rule's own values (the witnesses
    above fill one field at a time). The first of them is also tried with every value of
    the field the rule does not name, since another rule may name it."""
    f, c = p.fresh, p.fresh_char
    for fields in p.conditions["import"]:
        named = [name for name in _IMPORT_FIELDS if fields.get(name)]
        if len(named) < 2:
            continue
        own: dict[str, list[Any]] = {
            "module": _modules(fields.get("module", ()), f, c)[:3],
            "origin": _paths(fields.get("origin", ()), f, c)[:3],
            "library": _paths(fields.get("library", ()), f, c)[:3],
        }
        every: dict[str, list[Any]] = {
            "module": [None, *all_modules],
            "origin": all_origins,
            "library": [None, *all_libraries],
        }
        spare: dict[str, list[Any]] = {"module": [None, f], "origin": [None], "library": [None]}
        first = {name: own[name][:1] or every[name] for name in _IMPORT_FIELDS}
        rest = {name: own[name] or spare[name] for name in _IMPORT_FIELDS}
        for values in (first, rest):
            combos = itertools.product(*(values[name] for name in _IMPORT_FIELDS))
            for module, origin, library in itertools.islice(combos, _PER_PATTERN * 8):
                yield ImportOp(module, origin, library)
                if module is not None:  # the module's file under its own name
                    yield ImportOp(module, origin, library, module.rpartition(".")[2])


_GENERATORS = {"file": _file, "process": _process, "network": _network, "import": _import}


def stacks(p: _Patterns, operations: int = 0) -> list[Stack]:
    """The call stacks to try with a category that has a scoped rule, one per distinct way
    the stack can decide the policies' scopes.

    A decision depends on the stack only through which `scope` (and `unless.scope`) lists
    hold on it, so two stacks under which the same lists hold are decided alike for every
    operation: of the candidates, only the first of each such pattern is kept. Candidates,
    in order: none; each scope glob's instances on their own (every glob's first instance
    before any glob's second, so that a cut never leaves a scope untried); then every pair
    and every triple of instances (a rule's `unless` scope can decide between other rules'
    matches only when modules of two or three scopes are on the stack at once), as far as
    `_CANDIDATES` allows. At most `_STACKS` patterns are kept (or one per glob, when there
    are more globs than that), so with up to four scope lists every pattern fits; where the
    category has few `operations`, as many more as keep the witnesses within `_STACK_ROOM`
    (at most `_MAX_STACKS`)."""
    rounds: list[list[str]] = [[], []]
    for glob in p.scopes:
        found = path_instances("/" + glob.replace(".", "/"), p.fresh, p.fresh_char)[:2]
        for index, path in enumerate(found):
            module = path.strip("/").replace("/", ".")
            if module:
                rounds[index].append(module)
    modules = list(dict.fromkeys([*rounds[0], *rounds[1]]))
    lists = [tuple(path_matcher(module_pattern(g)) for g in scope) for scope in p.scope_lists]
    subjects = {m: module_subject(m) for m in modules}

    def pattern(stack: Stack) -> tuple[bool, ...]:
        return tuple(any(m(subjects[s]) for s in stack for m in scope) for scope in lists)

    singles: list[Stack] = [(m,) for m in modules]
    combos = itertools.chain(itertools.combinations(modules, 2), itertools.combinations(modules, 3))
    candidates = itertools.chain([()], singles, itertools.islice(combos, _CANDIDATES))
    kept: dict[tuple[bool, ...], Stack] = {}
    room = min(_MAX_STACKS, _STACK_ROOM // max(operations, 1))
    cap = max(_STACKS, 1 + len(rounds[0]), room)
    for stack in candidates:
        kept.setdefault(pattern(stack), stack)
        if len(kept) >= cap or len(kept) >= 2 ** len(lists):
            break
    return list(kept.values())


def witnesses(old: PolicyDocument, new: PolicyDocument, *, limit: int = LIMIT) -> Witnesses:
    """The witness operations of each category for comparing `old` with `new`."""
    patterns = _Patterns([old, new])
    scoped = {c: _scoped(old, c) or _scoped(new, c) for c in CATEGORIES}
    items: dict[str, list[Witness]] = {}
    truncated: list[str] = []
    for category in CATEGORIES:
        ops = dict.fromkeys(_GENERATORS[category](patterns))
        contexts = stacks(patterns, len(ops)) if scoped[category] else [()]
        made = (Witness(op, stack) for op in ops for stack in contexts)
        items[category], cut = _bounded(made, limit)
        if cut:
            truncated.append(category)
    return Witnesses(items, tuple(truncated))


def _scoped(document: PolicyDocument, category: str) -> bool:
    return any(
        r.category == category
        and (r.scope is not None or (r.unless is not None and r.unless.scope is not None))
        for r in document.rules
    )
