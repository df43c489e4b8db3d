"""A plain reference matcher: the semantics of docs/architecture.md, written the obvious way.

No indexes, no caches, no regex translation: recursive segment matching with
`fnmatch.fnmatchcase` per segment, `ipaddress` containment, a linear scan over the rules in
file order. The engine must agree with it on every decision.
"""

from __future__ import annotations

import ipaddress
from fnmatch import fnmatchcase
from typing import Any

from appshield.decision import Decision
from appshield.document import Condition, PolicyDocument, RuleSpec
from appshield.normalize import canonical_address

RANK = {"deny": 0, "alert": 1, "allow": 2}


def segments_match(pattern: list[str], subject: list[str]) -> bool:
    """`**` (a whole segment) is zero or more segments; any other segment is an fnmatch glob
    over exactly one segment."""
    if not pattern:
        return not subject
    head = pattern[0]
    if head == "**":
        return any(segments_match(pattern[1:], subject[k:]) for k in range(len(subject) + 1))
    return (
        bool(subject) and fnmatchcase(subject[0], head) and segments_match(pattern[1:], subject[1:])
    )


def path_glob(pattern: str, path: str) -> bool:
    return segments_match(pattern.split("/"), path.split("/"))


def module_glob(pattern: str, module: str) -> bool:
    """Matches the module or any of its parents' prefixes, i.e. the module and submodules."""
    pat, mod = pattern.split("."), module.split(".")
    return any(segments_match(pat, mod[:k]) for k in range(len(mod) + 1))


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    net = ipaddress.ip_network(text, strict=False)
    mapped_space = ipaddress.ip_network("::ffff:0:0/96")
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(mapped_space):  # type: ignore[arg-type]
        v4 = net.network_address.ipv4_mapped  # type: ignore[union-attr]
        return ipaddress.ip_network(f"{v4}/{net.prefixlen - 96}")
    return net


def in_cidr(address: str, cidr: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
        ip = ip.ipv4_mapped  # type: ignore[union-attr]
    net = _net(cidr)
    return ip.version == net.version and ip in net


def _exe(globs: tuple[str, ...], op: Any, broad: bool) -> bool:
    for glob in globs:
        if "/" in glob:
            if path_glob(glob, op.executable):
                return True
            if broad and op.argv and path_glob(glob, op.argv[0]):
                return True
        else:
            if op.trusted_location and fnmatchcase(op.executable.rsplit("/", 1)[-1], glob):
                return True
            if broad and op.argv and fnmatchcase(op.argv[0].rsplit("/", 1)[-1], glob):
                return True
    return False


def _args(vectors: tuple[tuple[str, ...], ...], argv: tuple[str, ...]) -> bool:
    rest = list(argv[1:])
    for vector in vectors:
        items = list(vector)
        if items and items[-1] == "**":
            items = items[:-1]
            if len(rest) < len(items):
                continue
        elif len(rest) != len(items):
            continue
        if all(fnmatchcase(a, g) for a, g in zip(rest, items, strict=False)):
            return True
    return False


def _host(patterns: tuple[str, ...], op: Any, broad: bool) -> bool:
    given = (op.requested,) if broad else ()
    subjects = [s for s in (op.host, op.address, *given, *op.names) if s is not None]
    for pattern in patterns:
        literal = canonical_address(pattern)
        for subject in subjects:
            if literal is not None and subject == literal:
                return True
            if literal is None and fnmatchcase(subject, pattern):
                return True
    return False


def field_holds(
    name: str, values: tuple[Any, ...], op: Any, *, broad_path: bool, broad_exec: bool
) -> bool:
    if name == "executable":
        return _exe(values, op, broad_exec)
    if name == "args":
        return _args(values, op.argv)
    if name in ("shell", "unshielded", "access", "operation", "transport"):
        return getattr(op, name) in values
    if name == "command_line":
        return any(fnmatchcase(op.command_line, g) for g in values)
    if name == "path":
        subjects = [op.path, op.real_path] if broad_path else [op.real_path]
        return any(path_glob(g, s) for g in values for s in subjects)
    if name == "host":
        return _host(values, op, broad_path)
    if name == "cidr":
        # A deny sees the address the code gave as well as the one reached; an allow only
        # the one reached.
        addresses = [op.address, op.requested] if broad_path else [op.address]
        return any(a is not None and in_cidr(a, c) for a in addresses for c in values)
    if name == "port":
        return op.port is not None and any(lo <= op.port <= hi for lo, hi in values)
    if name == "module":
        if op.module is None:
            return False
        # A deny sees every name the module's code has; an allow must hold for the dotted
        # name and for the file's own name (`init` only ever widens a deny).
        names = [op.module, op.home, op.init] if broad_path else [op.module, op.home]
        found = [n for n in names if n is not None]
        if broad_path:
            return any(module_glob(g, n) for g in values for n in found)
        return all(any(module_glob(g, n) for g in values) for n in found)
    if name in ("origin", "library"):
        subject = getattr(op, name)
        return subject is not None and any(path_glob(g, subject) for g in values)
    raise AssertionError(name)


def scope_holds(scope: tuple[str, ...], stack: list[str] | None) -> bool:
    if stack is None:
        return False
    return any(module_glob(g, m) for g in scope for m in stack)


def condition_holds(
    cond: Condition, op: Any, stack: list[str] | None, *, broad_path: bool, broad_exec: bool
) -> bool:
    for name, values in cond.fields.items():
        if not field_holds(name, values, op, broad_path=broad_path, broad_exec=broad_exec):
            return False
    return cond.scope is None or scope_holds(cond.scope, stack)


def rule_matches(rule: RuleSpec, op: Any, stack: list[str] | None) -> bool:
    allow = rule.action == "allow"
    if (
        rule.category == "network"
        and rule.action != "deny"
        and op.transport == "raw"
        and "transport" not in rule.match.fields
    ):
        return False  # only a rule that names `raw` allows or alerts a raw socket
    if not condition_holds(
        rule.match, op, stack, broad_path=not allow, broad_exec=rule.action == "deny"
    ):
        return False
    if rule.scope is not None and not scope_holds(rule.scope, stack):
        return False
    if rule.unless is not None and condition_holds(
        rule.unless, op, stack, broad_path=allow, broad_exec=allow
    ):
        return False
    return True


def implicit_rules(document: PolicyDocument, protected: tuple[str, ...]) -> list[RuleSpec]:
    rules = []
    if document.protections.policy_files and protected:
        rules.append(
            RuleSpec(
                "implicit:policy_files",
                "file",
                "deny",
                Condition({"path": protected, "access": ("write", "delete")}),
            )
        )
    if document.protections.unshielded_children:
        rules.append(
            RuleSpec(
                "implicit:unshielded_children",
                "process",
                "deny",
                Condition({"unshielded": (True,)}),
            )
        )
    return rules


def decide(
    document: PolicyDocument,
    mode: str,
    op: Any,
    stack: list[str] | None = None,
    protected: tuple[str, ...] = (),
) -> Decision:
    rules = [*implicit_rules(document, protected), *document.rules]
    matching = [r for r in rules if r.category == op.category and rule_matches(r, op, stack)]
    enforce = mode == "enforce"
    if not matching:
        default = document.defaults[op.category]
        if op.category == "network" and op.transport == "raw":
            default = "deny"  # raw sockets: denied unless a rule allows them
        return Decision(default, f"default:{op.category}", default == "deny" and enforce, mode)  # type: ignore[arg-type]
    best = min(RANK[r.action] for r in matching)
    winner = next(r for r in matching if RANK[r.action] == best)
    blocked = enforce and any(r.action == "deny" and r.mode != "monitor" for r in matching)
    return Decision(winner.action, winner.id, blocked, mode)  # type: ignore[arg-type]
