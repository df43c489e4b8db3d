"""One test per rule of docs/architecture.md, "Matching semantics" and "Decision"."""

from __future__ import annotations

from typing import Any

import pytest

from appshield.decision import Decision
from appshield.document import Condition, PolicyDocument, Protections, RuleSpec
from appshield.engine import compile_policy
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp

ON = Protections()
ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}


def rule(
    rid: str,
    category: str,
    action: str,
    unless: Condition | None = None,
    scope: tuple[str, ...] | None = None,
    mode: str | None = None,
    **fields: Any,
) -> RuleSpec:
    return RuleSpec(rid, category, action, Condition(fields), unless=unless, scope=scope, mode=mode)  # type: ignore[arg-type]


def policy(
    *rules: RuleSpec,
    mode: str = "enforce",
    protected: tuple[str, ...] = (),
    protections: Protections = ON,
    **defaults: str,
) -> Any:
    document = PolicyDocument(
        1,
        "t",
        None,
        {**ALLOW_ALL, **defaults},
        rules,  # type: ignore[arg-type]
        protections=protections,
    )
    return compile_policy(document, mode, protected_paths=protected)  # type: ignore[arg-type]


def verdict(decision: Decision) -> tuple[str, str, bool]:
    return decision.action, decision.rule_id, decision.blocked


READ_X = FileOp("/data/x", "read")


# --- Decision ----------------------------------------------------------------------------


def test_deny_beats_alert_beats_allow_whatever_the_order() -> None:
    rules = [
        rule("al", "file", "allow", path=("/data/**",)),
        rule("at", "file", "alert", path=("/data/*",)),
        rule("de", "file", "deny", path=("/data/x",)),
    ]
    assert verdict(policy(*rules).decide(READ_X)) == ("deny", "de", True)
    assert verdict(policy(*rules[:2]).decide(READ_X)) == ("alert", "at", False)
    assert verdict(policy(*rules[:1]).decide(READ_X)) == ("allow", "al", False)


def test_first_winning_rule_in_file_order_is_named() -> None:
    compiled = policy(
        rule("a1", "file", "allow", path=("/data/**",)),
        rule("d1", "file", "deny", path=("/data/*",)),
        rule("d2", "file", "deny", path=("/**",)),
    )
    assert verdict(compiled.decide(READ_X)) == ("deny", "d1", True)


@pytest.mark.parametrize("default", ["allow", "deny", "alert"])
def test_default_names_the_category(default: str) -> None:
    decision = policy(file=default).decide(READ_X)
    assert verdict(decision) == (default, "default:file", default == "deny")
    assert decision.mode == "enforce"


def test_per_rule_monitor_reports_without_blocking() -> None:
    decision = policy(rule("d", "file", "deny", mode="monitor", path=("/data/x",))).decide(READ_X)
    assert verdict(decision) == ("deny", "d", False)


def test_later_enforcing_deny_blocks_under_the_first_denys_name() -> None:
    compiled = policy(
        rule("watch", "file", "deny", mode="monitor", path=("/data/**",)),
        rule("stop", "file", "deny", path=("/data/x",)),
    )
    assert verdict(compiled.decide(READ_X)) == ("deny", "watch", True)
    assert verdict(compiled.decide(FileOp("/data/y", "read"))) == ("deny", "watch", False)


def test_rule_mode_enforce_cannot_override_policy_monitor() -> None:
    compiled = policy(
        rule("d", "file", "deny", mode="enforce", path=("/data/x",)), mode="monitor", network="deny"
    )
    assert verdict(compiled.decide(READ_X)) == ("deny", "d", False)
    assert compiled.decide(READ_X).mode == "monitor"
    assert verdict(compiled.decide(NetworkOp("connect", "h", None, 1))) == (
        "deny",
        "default:network",
        False,
    )


def test_an_alert_never_blocks_even_under_a_deny_default() -> None:
    compiled = policy(rule("a", "file", "alert", path=("/data/x",)), file="deny")
    assert verdict(compiled.decide(READ_X)) == ("alert", "a", False)


# --- unless and scope --------------------------------------------------------------------


def test_unless_fields_switch_a_rule_off() -> None:
    compiled = policy(
        rule(
            "d",
            "file",
            "deny",
            path=("/data/**",),
            unless=Condition({"path": ("/data/public/**",)}),
        )
    )
    assert compiled.decide(READ_X).action == "deny"
    assert verdict(compiled.decide(FileOp("/data/public/a", "read"))) == (
        "allow",
        "default:file",
        False,
    )


def test_unless_fields_combine_with_and() -> None:
    unless = Condition({"path": ("/data/x",), "access": ("read",)})
    compiled = policy(rule("d", "file", "deny", path=("/data/**",), unless=unless))
    assert compiled.decide(READ_X).action == "allow"
    assert compiled.decide(FileOp("/data/x", "write")).action == "deny"


def test_unless_scope() -> None:
    compiled = policy(rule("d", "network", "deny", unless=Condition({}, scope=("requests",))))
    op = NetworkOp("connect", "example.com", None, 443)
    assert compiled.decide(op, ["app.main", "requests.sessions"]).action == "allow"
    assert compiled.decide(op, ["app.main"]).action == "deny"
    assert compiled.decide(op, None).action == "deny"  # no stack: a scope never holds


def test_scope_restricts_a_rule_to_code_on_the_stack() -> None:
    compiled = policy(rule("yaml-pickle", "import", "deny", scope=("yaml",), module=("pickle",)))
    op = ImportOp("pickle")
    assert compiled.decide(op, ["yaml.constructor", "app"]).action == "deny"
    assert compiled.decide(op, ["yamlish"]).action == "allow"
    assert compiled.decide(op, ["app"]).action == "allow"
    assert compiled.decide(op).action == "allow"


def test_scope_globs_match_submodules_but_star_needs_a_segment() -> None:
    compiled = policy(rule("v", "import", "deny", scope=("vendor.*",), module=("os",)))
    op = ImportOp("os")
    assert compiled.decide(op, ["vendor.a.b"]).action == "deny"
    assert compiled.decide(op, ["vendor"]).action == "allow"


class CountingStack:
    def __init__(self, modules: list[str]) -> None:
        self.modules = modules
        self.calls = 0

    def __call__(self) -> list[str]:
        self.calls += 1
        return self.modules


def test_stack_fetched_at_most_once_per_decision() -> None:
    compiled = policy(
        rule("s1", "import", "deny", scope=("a",), module=("m",)),
        rule("s2", "import", "alert", scope=("b",), module=("m",)),
        rule("s3", "import", "allow", unless=Condition({}, scope=("c",)), module=("m",)),
    )
    stack = CountingStack(["z"])
    assert compiled.decide(ImportOp("m"), stack).action == "allow"
    assert stack.calls == 1


def test_stack_not_fetched_when_no_candidate_needs_it() -> None:
    compiled = policy(
        rule("s", "import", "deny", scope=("a",), module=("m",)),
        rule("plain", "import", "alert", module=("other",)),
    )
    stack = CountingStack(["a"])
    assert compiled.decide(ImportOp("other"), stack).action == "alert"
    assert compiled.decide(ImportOp("json"), stack).action == "allow"
    assert stack.calls == 0
    assert compiled.decide(ImportOp("m"), stack).action == "deny"
    assert stack.calls == 1


def test_decisions_that_read_the_stack_are_not_cached() -> None:
    compiled = policy(rule("s", "import", "deny", scope=("a",), module=("m",)))
    assert compiled.needs_stack("import") and not compiled.needs_stack("file")
    assert compiled.decide(ImportOp("m"), ["a"]).action == "deny"
    assert compiled.decide(ImportOp("m"), ["b"]).action == "allow"
    assert compiled.decide(ImportOp("m"), ["a"]).action == "deny"
    assert ImportOp("m") not in compiled._caches[ImportOp]
    # a decision that never reached a scope check is a function of the operation: cached
    stack = CountingStack(["a"])
    assert compiled.decide(ImportOp("json"), stack).action == "allow"
    assert ImportOp("json") in compiled._caches[ImportOp]
    assert stack.calls == 0


# --- file paths ----------------------------------------------------------------------------


def test_deny_matches_path_or_resolved() -> None:
    compiled = policy(rule("d", "file", "deny", path=("/etc/shadow",)))
    via_link = FileOp("/tmp/link", "read", "/etc/shadow")
    link_named = FileOp("/etc/shadow", "read", "/srv/other")
    assert compiled.decide(via_link).blocked
    assert compiled.decide(link_named).blocked


def test_alert_matches_path_or_resolved() -> None:
    compiled = policy(rule("a", "file", "alert", path=("/etc/shadow",)))
    assert compiled.decide(FileOp("/tmp/link", "read", "/etc/shadow")).action == "alert"


def test_allow_must_match_resolved_path() -> None:
    compiled = policy(rule("a", "file", "allow", path=("/srv/data/**",)), file="deny")
    assert compiled.decide(FileOp("/srv/data/link", "read", "/etc/shadow")).blocked
    assert not compiled.decide(FileOp("/tmp/link", "read", "/srv/data/f")).blocked
    assert not compiled.decide(FileOp("/srv/data/f", "read")).blocked  # resolved=None: path


def test_unless_of_a_deny_must_match_resolved_path() -> None:
    # A symlink under the exempt folder must not switch the deny off.
    unless = Condition({"path": ("/home/me/public/**",)})
    compiled = policy(rule("d", "file", "deny", path=("/home/me/**",), unless=unless))
    assert compiled.decide(FileOp("/home/me/public/ln", "read", "/home/me/.ssh/id")).blocked
    assert not compiled.decide(FileOp("/home/me/public/f", "read", "/home/me/public/f")).blocked


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("/a/**", "/a", True),
        ("/a/**", "/a/b/c", True),
        ("/a/**", "/ab", False),
        ("/a/**/b", "/a/b", True),
        ("/a/**/b", "/a/x/y/b", True),
        ("/a/**/b", "/a/x/yb", False),
        ("/a/*", "/a/b/c", False),
        ("/a/?", "/a/b", True),
        ("/a/[bc]", "/a/c", True),
        ("/a/[!bc]", "/a/c", False),
        ("/a/*.py", "/a/x.py", True),
        ("/A/b", "/a/b", False),
        ("/**/.git/config", "/.git/config", True),
        ("/**/.git/config", "/r/.git/config", True),
        ("/**", "/", True),
    ],
)
def test_path_globs(glob: str, path: str, matches: bool) -> None:
    compiled = policy(rule("d", "file", "deny", path=(glob,)))
    assert compiled.decide(FileOp(path, "read")).blocked is matches


def test_access_defaults_to_all_three() -> None:
    compiled = policy(
        rule("d", "file", "deny", path=("/x",)),
        rule("w", "file", "deny", path=("/y",), access=("write",)),
    )
    assert all(compiled.decide(FileOp("/x", a)).blocked for a in ("read", "write", "delete"))
    assert [compiled.decide(FileOp("/y", a)).blocked for a in ("read", "write", "delete")] == [
        False,
        True,
        False,
    ]


# --- implicit protections ------------------------------------------------------------------


def test_policy_files_protected_for_write_and_delete() -> None:
    compiled = policy(rule("all", "file", "allow", path=("/**",)), protected=("/p/pol.yaml",))
    assert verdict(compiled.decide(FileOp("/p/pol.yaml", "write"))) == (
        "deny",
        "implicit:policy_files",
        True,
    )
    assert compiled.decide(FileOp("/tmp/ln", "delete", "/p/pol.yaml")).blocked
    assert not compiled.decide(FileOp("/p/pol.yaml", "read")).blocked
    assert compiled.has_rules("file")


def test_policy_files_protection_named_before_written_denies() -> None:
    compiled = policy(rule("d", "file", "deny", path=("/p/**",)), protected=("/p/pol.yaml",))
    assert compiled.decide(FileOp("/p/pol.yaml", "write")).rule_id == "implicit:policy_files"


def test_policy_files_protection_can_be_turned_off() -> None:
    compiled = policy(protected=("/p/pol.yaml",), protections=Protections(policy_files=False))
    assert not compiled.decide(FileOp("/p/pol.yaml", "write")).blocked
    assert not compiled.has_rules("file")


def test_unshielded_children_denied() -> None:
    compiled = policy(rule("py", "process", "allow", executable=("/usr/bin/python3",)))
    op = ProcessOp("/usr/bin/python3", ("python3", "-I"), unshielded=True)
    assert verdict(compiled.decide(op)) == ("deny", "implicit:unshielded_children", True)
    off = policy(protections=Protections(unshielded_children=False))
    assert not off.decide(op).blocked and not off.has_rules("process")


def test_implicit_protection_obeys_policy_monitor() -> None:
    compiled = policy(mode="monitor", protected=("/p/pol.yaml",))
    assert verdict(compiled.decide(FileOp("/p/pol.yaml", "write"))) == (
        "deny",
        "implicit:policy_files",
        False,
    )


# --- process ---------------------------------------------------------------------------------


def test_base_name_only_for_trusted_location() -> None:
    compiled = policy(rule("git", "process", "allow", executable=("git",)), process="deny")
    assert not compiled.decide(ProcessOp("/usr/bin/git", ("git",), trusted_location=True)).blocked
    assert compiled.decide(ProcessOp("/tmp/git", ("git",), trusted_location=False)).blocked


def test_glob_with_slash_matches_resolved_executable() -> None:
    compiled = policy(rule("b", "process", "allow", executable=("/usr/bin/*",)), process="deny")
    assert not compiled.decide(ProcessOp("/usr/bin/ls", ("ls",))).blocked
    assert compiled.decide(ProcessOp("/usr/local/bin/ls", ("/usr/bin/ls",))).blocked


def test_deny_also_matches_argv0() -> None:
    compiled = policy(
        rule("nc", "process", "deny", executable=("nc",)),
        rule("sh", "process", "deny", executable=("/bin/sh",)),
    )
    # argv[0] checked whatever trusted_location says; base name of argv[0] for bare names
    assert compiled.decide(ProcessOp("/usr/bin/busybox", ("/tmp/nc", "-l"))).rule_id == "nc"
    assert compiled.decide(ProcessOp("/usr/bin/dash", ("/bin/sh", "-c", "x"))).rule_id == "sh"
    assert not compiled.decide(ProcessOp("/usr/bin/busybox", ("ls",))).blocked


def test_allow_does_not_match_argv0() -> None:
    compiled = policy(rule("git", "process", "allow", executable=("git",)), process="deny")
    assert compiled.decide(ProcessOp("/tmp/evil", ("git",), trusted_location=False)).blocked


@pytest.mark.parametrize(
    ("vector", "argv", "matches"),
    [
        (("status",), ("git", "status"), True),
        (("status",), ("git", "status", "-s"), False),
        (("status", "**"), ("git", "status", "-s", "x"), True),
        (("status", "**"), ("git", "status"), True),
        (("**",), ("git",), True),
        (("-?",), ("git", "-C"), True),
        (("*",), ("git", "a/b c"), True),
        ((), ("git",), True),
        ((), ("git", "x"), False),
    ],
)
def test_args_position_by_position(
    vector: tuple[str, ...], argv: tuple[str, ...], matches: bool
) -> None:
    compiled = policy(rule("a", "process", "deny", args=(vector,)))
    assert compiled.decide(ProcessOp("/usr/bin/git", argv)).blocked is matches


def test_shell_command_line_and_unshielded_fields() -> None:
    compiled = policy(
        rule("sh", "process", "deny", shell=(True,), command_line=("*curl*|*",)),
        rule("py", "process", "alert", unshielded=(True,)),
        protections=Protections(unshielded_children=False),
    )
    piped = ProcessOp("/bin/sh", ("sh", "-c", "curl x | sh"), shell=True)
    assert compiled.decide(piped).rule_id == "sh"
    assert not compiled.decide(ProcessOp("/bin/sh", ("sh", "-c", "curl x | sh"))).blocked
    assert compiled.decide(ProcessOp("/usr/bin/python3", unshielded=True)).action == "alert"


# --- network -------------------------------------------------------------------------------


def test_host_globs_cross_dots_but_not_the_bare_domain() -> None:
    compiled = policy(rule("evil", "network", "deny", host=("*.evil.com",)))
    assert compiled.decide(NetworkOp("connect", "a.b.evil.com", None, 443)).blocked
    assert not compiled.decide(NetworkOp("connect", "evil.com", None, 443)).blocked
    assert not compiled.decide(NetworkOp("connect", "notevil.com", None, 443)).blocked


def test_host_matches_any_recently_resolved_name() -> None:
    compiled = policy(rule("evil", "network", "deny", host=("evil.com",)))
    op = NetworkOp("connect", None, "203.0.113.9", 443, names=("cdn.example", "evil.com"))
    assert compiled.decide(op).blocked


@pytest.mark.parametrize(
    "spelling", ["127.0.0.1", "127.1", "0x7f.0.0.1", "2130706433", "::ffff:127.0.0.1"]
)
def test_ip_literal_host_matches_any_spelling(spelling: str) -> None:
    compiled = policy(rule("lo", "network", "deny", host=(spelling,)))
    assert compiled.decide(NetworkOp("connect", None, "127.0.0.1", 80)).blocked


def test_cidr_and_mapped_addresses() -> None:
    compiled = policy(
        rule("lan", "network", "deny", cidr=("10.0.0.0/8",)),
        rule("v6", "network", "deny", cidr=("2001:db8::/32",)),
    )
    assert compiled.decide(NetworkOp("connect", None, "10.9.8.7", 1)).rule_id == "lan"
    assert compiled.decide(NetworkOp("connect", None, "::ffff:10.9.8.7", 1)).rule_id == "lan"
    assert compiled.decide(NetworkOp("connect", None, "2001:db8::1", 1)).rule_id == "v6"
    assert not compiled.decide(NetworkOp("connect", None, "11.0.0.1", 1)).blocked
    assert not compiled.decide(NetworkOp("resolve", "x.example")).blocked


def test_ports_inclusive_and_an_op_without_port_never_matches() -> None:
    compiled = policy(rule("p", "network", "deny", port=((8000, 8999),)))
    assert compiled.decide(NetworkOp("connect", "h", None, 8000)).blocked
    assert compiled.decide(NetworkOp("connect", "h", None, 8999)).blocked
    assert not compiled.decide(NetworkOp("connect", "h", None, 9000)).blocked
    assert not compiled.decide(NetworkOp("resolve", "h")).blocked


def test_operation_and_transport() -> None:
    compiled = policy(rule("b", "network", "deny", operation=("bind",), transport=("udp",)))
    assert compiled.decide(NetworkOp("bind", None, "0.0.0.0", 53, "udp")).blocked
    assert not compiled.decide(NetworkOp("bind", None, "0.0.0.0", 53, "tcp")).blocked
    assert not compiled.decide(NetworkOp("connect", None, "0.0.0.0", 53, "udp")).blocked


# --- import --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "module", "matches"),
    [
        ("ctypes", "ctypes", True),
        ("ctypes", "ctypes.util", True),
        ("ctypes", "ctypesx", False),
        ("vendor.*", "vendor", False),
        ("vendor.*", "vendor.a.b", True),
        ("a.**.z", "a.z", True),
        ("a.**.z", "a.b.c.z.q", True),
        ("*", "anything.at.all", True),
    ],
)
def test_module_globs(glob: str, module: str, matches: bool) -> None:
    compiled = policy(rule("m", "import", "deny", module=(glob,)))
    assert compiled.decide(ImportOp(module)).blocked is matches


def test_origin_and_library() -> None:
    compiled = policy(
        rule("o", "import", "deny", origin=("/tmp/**",)),
        rule("l", "import", "deny", library=("/tmp/*.so",)),
    )
    assert compiled.decide(ImportOp("json", origin="/tmp/evil.py")).rule_id == "o"
    assert compiled.decide(ImportOp(None, library="/tmp/x.so")).rule_id == "l"
    assert not compiled.decide(ImportOp("json", origin="/usr/lib/json.py")).blocked


def test_empty_match_covers_the_whole_category() -> None:
    compiled = policy(rule("none", "import", "deny"))
    assert compiled.decide(ImportOp("json")).blocked
    assert compiled.decide(ImportOp(None, library="/x.so")).blocked
    assert not compiled.decide(READ_X).blocked
