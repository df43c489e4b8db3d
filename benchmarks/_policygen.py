"""Realistic generated policies of N rules across all four categories, for benchmarks.

A real policy of thousands of rules is mostly many small, similar, literal-prefixed rules (one
block per tenant, service, tool or plugin) plus a handful of broad ones. `generate(n)` builds
that: a fixed core (the rules the sample operations meet, and a few broad globs that every
operation must be checked against) and then filler rules until there are `n`:

    file     ~50%  deny secrets per home folder/app, write-protect configs, allow data folders
    network  ~20%  exact service hosts, `*.partnerN.com` suffixes, /24 networks, a few ports
    import   ~20%  deny or allow plugin packages, origin globs
    process  ~10%  tool folders and base names, argument vectors

`SAMPLE_OPS` are operations the benchmarks decide: allowed ones (the hot path) and one
denied one per category. `to_yaml(document)` renders a document as a policy file for the
loader-based benchmarks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from appshield.document import Condition, PolicyDocument, RuleSpec
from appshield.operations import FileOp, ImportOp, NetworkOp, Operation, ProcessOp

__all__ = ["SAMPLE_OPS", "generate", "to_yaml"]

DEFAULTS = {"process": "deny", "file": "allow", "network": "deny", "import": "allow"}


def _rule(rule_id: str, category: str, action: str, **fields: tuple[object, ...]) -> RuleSpec:
    return RuleSpec(rule_id, category, action, Condition(fields))  # type: ignore[arg-type]


def _core() -> list[RuleSpec]:
    return [
        _rule("ssh-keys", "file", "deny", path=("/home/*/.ssh/**", "/root/.ssh/**")),
        _rule("etc-write", "file", "deny", path=("/etc/**",), access=("write", "delete")),
        _rule("git-config", "file", "alert", path=("/**/.git/config",), access=("write",)),
        _rule("git", "process", "allow", executable=("git",)),
        _rule("no-netcat", "process", "deny", executable=("nc", "ncat", "/usr/bin/nc*")),
        _rule(
            "api",
            "network",
            "allow",
            host=("api.example.com", "*.svc.example.com"),
            port=((443, 443),),
        ),
        _rule("loopback", "network", "allow", cidr=("127.0.0.0/8", "::1/128")),
        _rule("no-ctypes", "import", "deny", module=("ctypes", "_ctypes")),
        RuleSpec(
            "yaml-no-pickle", "import", "deny", Condition({"module": ("pickle",)}), scope=("yaml",)
        ),
    ]


def _filler(i: int, rnd: random.Random) -> RuleSpec:
    kind = rnd.random()
    if kind < 0.5:
        return _file_rule(i, rnd)
    if kind < 0.7:
        return _network_rule(i, rnd)
    if kind < 0.9:
        return _import_rule(i, rnd)
    return _process_rule(i, rnd)


def _file_rule(i: int, rnd: random.Random) -> RuleSpec:
    shape = rnd.randrange(5)
    if shape == 0:
        return _rule(f"f{i}-secrets", "file", "deny", path=(f"/srv/app{i}/secrets/**",))
    if shape == 1:
        return _rule(f"f{i}-conf", "file", "deny", path=(f"/etc/app{i}/*.conf",), access=("write",))
    if shape == 2:
        return _rule(
            f"f{i}-data", "file", "allow", path=(f"/var/lib/app{i}/**", f"/var/cache/app{i}/**")
        )
    if shape == 3:
        return _rule(f"f{i}-home", "file", "deny", path=(f"/home/user{i}/.aws/credentials",))
    return _rule(
        f"f{i}-logs", "file", "alert", path=(f"/var/log/app{i}/*.log",), access=("delete",)
    )


def _network_rule(i: int, rnd: random.Random) -> RuleSpec:
    shape = rnd.randrange(4)
    if shape == 0:
        return _rule(
            f"n{i}-svc",
            "network",
            "allow",
            host=(f"svc{i}.internal.example.net",),
            port=((443, 443), (8000, 8999)),
        )
    if shape == 1:
        return _rule(f"n{i}-partner", "network", "allow", host=(f"*.partner{i}.com",))
    if shape == 2:
        return _rule(f"n{i}-net", "network", "deny", cidr=(f"10.{(i >> 8) & 255}.{i & 255}.0/24",))
    return _rule(
        f"n{i}-port", "network", "alert", port=((20000 + i % 40000,) * 2,), operation=("bind",)
    )


def _import_rule(i: int, rnd: random.Random) -> RuleSpec:
    shape = rnd.randrange(3)
    if shape == 0:
        return _rule(f"i{i}-plugin", "import", "deny", module=(f"plugin{i}", f"vendor{i}.*"))
    if shape == 1:
        return _rule(f"i{i}-origin", "import", "deny", origin=(f"/opt/plugins/p{i}/**",))
    return _rule(f"i{i}-allow", "import", "allow", module=(f"company.team{i}.**",))


def _process_rule(i: int, rnd: random.Random) -> RuleSpec:
    shape = rnd.randrange(3)
    if shape == 0:
        return _rule(f"p{i}-tool", "process", "allow", executable=(f"/opt/tool{i}/bin/*",))
    if shape == 1:
        return _rule(
            f"p{i}-name",
            "process",
            "allow",
            executable=(f"tool{i}",),
            args=(("--version",), ("run", "**")),
        )
    return _rule(f"p{i}-deny", "process", "deny", executable=(f"evil{i}",))


def generate(n: int, *, seed: int = 0, name: str | None = None) -> PolicyDocument:
    """A policy of exactly `n` rules (at least the core's), deterministic for a seed."""
    rnd = random.Random(seed)
    rules = _core()
    rules += [_filler(i, rnd) for i in range(max(0, n - len(rules)))]
    return PolicyDocument(
        version=1,
        name=name or f"generated-{n}",
        mode="enforce",
        defaults=dict(DEFAULTS),  # type: ignore[arg-type]
        rules=tuple(rules),
    )


# Operations the benchmarks decide: (label, operation). Each allowed one is allowed by every
# generated policy, whatever its size; the denied ones are denied by every one.
SAMPLE_OPS: tuple[tuple[str, Operation], ...] = (
    (
        "file open (allowed)",
        FileOp(
            "/usr/lib/python3.11/json/decoder.py", "read", "/usr/lib/python3.11/json/decoder.py"
        ),
    ),
    ("file write (allowed)", FileOp("/tmp/work/out.txt", "write", "/tmp/work/out.txt")),
    ("file read (denied)", FileOp("/home/alice/.ssh/id_rsa", "read", "/home/alice/.ssh/id_rsa")),
    ("process (allowed)", ProcessOp("/usr/bin/git", ("git", "status"), trusted_location=True)),
    ("process (denied)", ProcessOp("/usr/bin/nc", ("nc", "-l", "80"), trusted_location=True)),
    ("network (allowed)", NetworkOp("connect", "api.example.com", "93.184.216.34", 443)),
    ("network (denied)", NetworkOp("connect", "evil.example.org", "203.0.113.9", 443)),
    ("import (allowed)", ImportOp("json.decoder")),
    ("import (denied)", ImportOp("ctypes.util")),
)


def _yaml_value(value: object) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        items = (f'"{lo}-{hi}"' if lo != hi else str(lo) for lo, hi in value)
        return "[" + ", ".join(items) + "]"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"'


def _yaml_rule(rule: RuleSpec) -> Iterator[str]:
    yield f"  - id: {rule.id}"
    yield f"    category: {rule.category}"
    yield f"    action: {rule.action}"
    yield "    match:"
    for key, value in rule.match.fields.items():
        if key == "args":
            vectors = ", ".join(_yaml_value(v) for v in value)
            yield f"      {key}: [{vectors}]"
        else:
            yield f"      {key}: {_yaml_value(value)}"
    if rule.scope is not None:
        yield f"    scope: {_yaml_value(rule.scope)}"


def to_yaml(document: PolicyDocument) -> str:
    """The document as a version-1 policy file (for benchmarks that go through the loader)."""
    lines = ["version: 1", f"name: {document.name}", "mode: enforce", "defaults:"]
    lines += [f"  {cat}: {action}" for cat, action in document.defaults.items()]
    lines.append("rules:")
    for rule in document.rules:
        lines.extend(_yaml_rule(rule))
    return "\n".join(lines) + "\n"
