"""`ImportIndex.quiet`, the screen the import hook asks before it builds an operation: whenever
it says quiet, the engine (and the plain reference matcher) decides the default allow, with no
rule named, for every call stack."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.document import Condition, PolicyDocument, RuleSpec
from appshield.engine import compile_policy
from appshield.engine.categories import ImportIndex
from appshield.engine.globs import module_pattern
from appshield.engine.indexes import PathTrie
from appshield.operations import ImportOp
from tests.engine import _engine_reference as reference
from tests.engine._engine_strategies import documents, module_globs, modules, paths, stacks

QUICK = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(
    documents("import"),
    st.sampled_from(["enforce", "monitor"]),
    st.lists(st.tuples(modules, st.one_of(st.none(), paths)), min_size=1, max_size=5),
    stacks,
)
@QUICK
def test_quiet_means_the_silent_default(
    document: PolicyDocument, mode: str, subjects: list[tuple[str, str | None]], stack: object
) -> None:
    compiled = compile_policy(document, mode)  # type: ignore[arg-type]
    index = compiled.index("import")
    for module, origin in subjects:
        if not index.quiet(module, origin):
            continue
        op = ImportOp(module, origin)
        assert index.candidates(op) == []
        for frames in (stack, None, ["yaml", "ctypes.util"]):
            decision = compiled.decide(op, frames)  # type: ignore[arg-type]
            assert decision.action == "allow" and decision.rule_id == "default:import"
            assert decision == reference.decide(document, mode, op, frames, ())  # type: ignore[arg-type]


def _document(default: str, *rules: RuleSpec) -> PolicyDocument:
    defaults = {"process": "allow", "file": "allow", "network": "allow", "import": default}
    return PolicyDocument(1, "t", None, defaults, rules)  # type: ignore[arg-type]


def _rule(
    rule_id: str, action: str, scope: tuple[str, ...] | None = None, **fields: Any
) -> RuleSpec:
    return RuleSpec(rule_id, "import", action, Condition(fields), scope=scope)  # type: ignore[arg-type]


def test_quiet_only_where_no_rule_can_reach() -> None:
    index = compile_policy(
        _document(
            "allow",
            _rule("a", "deny", module=("ctypes", "vendor.*")),
            _rule("b", "deny", scope=("yaml",), module=("pickle",)),
            _rule("c", "alert", origin=("/opt/plugins/**",)),
        ),
        "enforce",
    ).index("import")
    assert index.quiet("json.decoder", "/usr/lib/python3/json/decoder.py")
    assert index.quiet("app", None)
    assert not index.quiet("ctypes.util", "/usr/lib/python3/ctypes/util.py")
    assert not index.quiet("vendor.x", None)
    assert not index.quiet("pickle", "/usr/lib/python3/pickle.py")  # a scoped rule: the stack
    assert not index.quiet("app", "/opt/plugins/app.py")


def test_never_quiet_when_every_import_meets_a_rule_or_the_default_speaks() -> None:
    for document in (
        _document("deny"),
        _document("alert"),
        _document("allow", _rule("any-origin", "alert", origin=("/**",))),
        _document("allow", _rule("any-module", "deny", module=("*",))),
        _document("allow", _rule("no-field", "alert", scope=("yaml",))),
    ):
        index = compile_policy(document, "enforce").index("import")
        assert not index.quiet("app", "/srv/app.py"), document


# `ImportIndex.allows_only`: what install asks of each module loaded before it, before it
# builds an operation (appshield.hooks.imports). Whenever it says yes, `may_object` says no:
# every candidate is an allow and so is the default, whatever the call stack.


@given(
    documents("import"),
    st.sampled_from(["enforce", "monitor"]),
    st.lists(
        st.tuples(
            modules,
            st.one_of(st.none(), paths),
            st.one_of(st.none(), modules),
            st.one_of(st.none(), modules),
        ),
        min_size=1,
        max_size=5,
    ),
    stacks,
)
@QUICK
def test_allows_only_means_nothing_can_object(
    document: PolicyDocument,
    mode: str,
    subjects: list[tuple[str, str | None, str | None, str | None]],
    stack: object,
) -> None:
    index = compile_policy(document, mode).index("import")  # type: ignore[arg-type]
    for module, origin, home, init in subjects:
        if not index.allows_only(module, origin, home, init):
            continue
        op = ImportOp(module, origin, None, home, init)
        assert not index.may_object(op)
        assert document.defaults["import"] == "allow"
        assert all(index.rule_at(p).spec.action == "allow" for p in index.candidates(op))
        decision = reference.decide(document, mode, op, stack, ())  # type: ignore[arg-type]
        assert decision.action == "allow"


def test_allows_only_beside_the_exporters_stdlib_allow() -> None:
    """The case it is for: an allow by origin under the standard library's folder (as
    `implicit:telemetry_exporter` has) leaves those modules not `quiet`; `allows_only` still
    answers for them, and not for a module a deny or alert could name."""
    document = _document(
        "allow",
        _rule("stdlib", "allow", origin=("/usr/lib/python3/**",)),
        _rule("pickle", "alert", module=("pickle", "dill")),
        _rule("no-json", "deny", origin=("/usr/lib/python3/json/**",)),
        _rule("vendored", "deny", origin=("/opt/vendor/**",)),
    )
    index = compile_policy(document, "enforce").index("import")
    fractions = ("fractions", "/srv/lib/fractions.py")
    assert not index.quiet("fractions", "/usr/lib/python3/fractions.py")
    assert index.allows_only(*fractions)
    assert index.allows_only("colorsys", None)
    assert index.allows_only("app", "relative/app.py")
    assert not index.allows_only("pickle", "/srv/lib/pickle.py")  # by its name
    assert not index.allows_only("app", "/srv/lib/app.py", "pickle")  # by the name it has
    assert not index.allows_only("app", "/srv/lib/app.py", None, "dill.x")
    assert not index.allows_only("fractions", "/usr/lib/python3/fractions.py")  # `usr`: json's
    assert not index.allows_only("v", "/opt/vendor/v.py")
    assert not index.allows_only("a/b", None)  # a `/` in a name: left to `may_object`


def test_allows_only_never_where_any_import_may_meet_an_objection() -> None:
    for document in (
        _document("deny"),
        _document("alert"),
        _document("allow", _rule("any-origin", "alert", origin=("/**",))),
        _document("allow", _rule("any-module", "deny", module=("*",))),
        _document("allow", _rule("no-field", "alert", scope=("yaml",))),
        _document("allow", _rule("lib", "deny", library=("*",))),
    ):
        index = compile_policy(document, "enforce").index("import")
        assert not index.allows_only("app", "/srv/app.py"), document
    # More rules than the screen looks at: never sure (the engine's own answer then).
    many = [_rule(f"m{i}", "allow", module=(f"m{i}",)) for i in range(600)]
    index = compile_policy(_document("allow", *many), "enforce").index("import")
    assert not index.allows_only("app", "/srv/app.py")
    assert not index.may_object(ImportOp("app", "/srv/app.py"))


@given(st.lists(st.one_of(modules, module_globs, st.sampled_from(["", "a/b", "x..y", ".a"]))))
@QUICK
def test_a_plain_module_name_is_filed_where_its_pattern_would_be(names: list[str]) -> None:
    # `ImportIndex.add` files a name without glob characters by its segments, not by
    # parsing `module_pattern(name)`: the same trie either way.
    index = ImportIndex("allow", "enforce")
    trie = PathTrie()
    for position, name in enumerate(names):
        index.add(position, _rule(f"r{position}", "deny", module=(name,)))
        trie.add(module_pattern(name), position)
    assert index.modules.export() == trie.export()
