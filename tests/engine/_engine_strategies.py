"""Hypothesis strategies for policies and operations, over small alphabets so matches happen."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from appshield.document import Condition, PolicyDocument, RuleSpec
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp

SEGMENTS = ["a", "b", "ab", "x.py", ".ssh", "c"]
GLOB_SEGMENTS = [*SEGMENTS, "*", "?", "a*", "*.py", "[ab]", "[!a]", "[a-c]", "**", "*b"]
LABELS = ["a", "b", "example", "com", "evil"]
ADDRESSES = ["10.0.0.1", "10.1.2.3", "127.0.0.1", "192.168.1.5", "::1", "fe80::1", "2001:db8::5"]
# What a connect to an unspecified address was written as (`NetworkOp.requested`).
REQUESTED = ["0.0.0.0", "::", "127.0.0.1"]
CIDRS = [
    "10.0.0.0/8",
    "10.0.0.0/24",
    "10.1.2.3/32",
    "127.0.0.0/8",
    "0.0.0.0/0",
    "::/0",
    "::1/128",
    "192.168.0.0/16",
    "::ffff:10.0.0.0/104",
    "2001:db8::/32",
    "0.0.0.0/8",
    "0.0.0.0/32",
]
HOST_LITERALS = ["10.0.0.1", "127.1", "0x7f.0.0.1", "::1", "[::1]", "::ffff:10.1.2.3", "0", "::"]
MOD_SEGMENTS = ["a", "b", "ctypes", "x"]
MOD_GLOB_SEGMENTS = [*MOD_SEGMENTS, "*", "**", "c*", "?"]
ARGS = ["a", "b", "-x", "/usr/bin/a", "*", "a*", "-?"]
STACK_MODULES = ["a", "a.b", "b", "ctypes.util", "x.a", "yaml"]

segments = st.sampled_from(SEGMENTS)
paths = st.lists(segments, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
path_globs = st.lists(st.sampled_from(GLOB_SEGMENTS), min_size=1, max_size=4).map(
    lambda s: "/" + "/".join(s)
)
hosts = st.lists(st.sampled_from(LABELS), min_size=1, max_size=3).map(".".join)
host_globs = st.one_of(
    hosts,
    hosts.map(lambda h: "*." + h),
    hosts.map(lambda h: "*" + h),
    hosts.map(lambda h: h + "*"),
    hosts.map(lambda h: h.replace("a", "?", 1)),
    st.sampled_from(HOST_LITERALS),
    st.just("*"),
)
modules = st.lists(st.sampled_from(MOD_SEGMENTS), min_size=1, max_size=3).map(".".join)
module_globs = st.lists(st.sampled_from(MOD_GLOB_SEGMENTS), min_size=1, max_size=3).map(".".join)
ports = st.integers(0, 6)
port_ranges = st.tuples(ports, ports).map(lambda t: (min(t), max(t)))
executables = st.sampled_from(["/usr/bin/a", "/usr/bin/b", "/tmp/a", "/opt/x/bin/ab"])
exe_globs = st.sampled_from(["a", "b", "a*", "?b", "/usr/bin/*", "/usr/bin/a", "/tmp/**", "/**/ab"])
arg_vectors = st.lists(st.sampled_from([*ARGS, "**"]), max_size=3).map(tuple)
stacks = st.one_of(st.none(), st.lists(st.sampled_from(STACK_MODULES), max_size=3))


def _alts(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(strategy, min_size=1, max_size=2).map(tuple)


FIELDS: dict[str, dict[str, st.SearchStrategy[tuple[Any, ...]]]] = {
    "file": {
        "path": _alts(path_globs),
        "access": _alts(st.sampled_from(["read", "write", "delete"])),
    },
    "network": {
        "host": _alts(host_globs),
        "cidr": _alts(st.sampled_from(CIDRS)),
        "port": _alts(port_ranges),
        "operation": _alts(st.sampled_from(["connect", "bind", "send", "resolve"])),
        "transport": _alts(st.sampled_from(["tcp", "udp", "raw"])),
    },
    "import": {
        "module": _alts(module_globs),
        "origin": _alts(path_globs),
        "library": _alts(path_globs),
    },
    "process": {
        "executable": _alts(exe_globs),
        "args": _alts(arg_vectors),
        "shell": _alts(st.booleans()),
        "unshielded": _alts(st.booleans()),
        "command_line": _alts(st.sampled_from(["*", "a *", "/usr/bin/a*", "* -x*", "b"])),
    },
}


@st.composite
def conditions(draw: st.DrawFn, category: str, *, with_scope: bool = True) -> Condition:
    names = draw(st.lists(st.sampled_from(sorted(FIELDS[category])), max_size=2, unique=True))
    fields = {name: draw(FIELDS[category][name]) for name in names}
    scope = draw(st.one_of(st.none(), _alts(module_globs))) if with_scope else None
    return Condition(fields, scope)


@st.composite
def rules(draw: st.DrawFn, category: str, rule_id: str, action: str | None = None) -> RuleSpec:
    return RuleSpec(
        id=rule_id,
        category=category,
        action=action or draw(st.sampled_from(["allow", "deny", "alert"])),
        match=draw(conditions(category, with_scope=False)),
        unless=draw(st.one_of(st.none(), conditions(category))),
        scope=draw(st.one_of(st.none(), _alts(module_globs))),
        mode=draw(st.sampled_from([None, None, "monitor", "enforce"])),
    )


categories = st.sampled_from(["file", "network", "import", "process"])


@st.composite
def documents(draw: st.DrawFn, category: str, max_rules: int = 6) -> PolicyDocument:
    count = draw(st.integers(0, max_rules))
    rule_list = [draw(rules(category, f"r{i}")) for i in range(count)]
    defaults = {c: draw(st.sampled_from(["allow", "deny", "alert"])) for c in FIELDS}
    return PolicyDocument(1, "gen", None, defaults, tuple(rule_list))  # type: ignore[arg-type]


file_ops = st.builds(
    FileOp, paths, st.sampled_from(["read", "write", "delete"]), st.one_of(st.none(), paths)
)
network_ops = st.builds(
    NetworkOp,
    st.sampled_from(["connect", "bind", "send", "resolve"]),
    st.one_of(st.none(), hosts, st.sampled_from(HOST_LITERALS)),
    st.one_of(st.none(), st.sampled_from(ADDRESSES)),
    st.one_of(st.none(), ports),
    st.sampled_from(["tcp", "udp", "raw"]),
    st.lists(hosts, max_size=2).map(tuple),
    st.none(),
    st.one_of(st.none(), st.sampled_from(REQUESTED)),
)
import_ops = st.builds(
    ImportOp,
    st.one_of(st.none(), modules),
    st.one_of(st.none(), paths),
    st.one_of(st.none(), paths),
    st.one_of(st.none(), modules),
    st.one_of(st.none(), modules),
)
process_ops = st.builds(
    ProcessOp,
    executables,
    st.lists(st.sampled_from(ARGS), min_size=0, max_size=4).map(tuple),
    st.booleans(),
    st.none(),
    st.booleans(),
    st.booleans(),
)
OPS = {"file": file_ops, "network": network_ops, "import": import_ops, "process": process_ops}
