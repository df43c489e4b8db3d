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


@given(
    documents("import"),
    st.sampled_from(["enforce", "monitor"]),
    st.lists(
        st.tuples(modules, st.one_of(st.none(), paths), st.one_of(st.none(), modules)),
        min_size=1,
        max_size=5,
    ),
)
@QUICK
def test_objecting_quiet_means_no_rule_can_object(
    document: PolicyDocument, mode: str, subjects: list[tuple[str, str | None, str | None]]
) -> None:
    """The screen of the deny and alert rules alone (the report of the modules loaded before
    install asks it): when it says quiet, `may_object` says no, and an allow is decided."""
    compiled = compile_policy(document, mode)  # type: ignore[arg-type]
    index = compiled.index("import")
    objecting = index.objecting()  # type: ignore[attr-defined]
    assert index.objecting() is objecting  # type: ignore[attr-defined]  # made once
    for module, origin, home in subjects:
        if index.quiet(module, origin, home):
            assert objecting.quiet(module, origin, home)  # it sees fewer rules, never more
        if not objecting.quiet(module, origin, home):
            continue
        op = ImportOp(module, origin, None, home)
        assert not index.may_object(op)
        assert compiled.decide(op, ["yaml"]).action == "allow"


def test_objecting_passes_what_only_allows_name() -> None:
    index = compile_policy(
        _document(
            "allow",
            _rule("stdlib", "allow", origin=("/usr/lib/python3/**",)),
            _rule("otel", "allow", module=("opentelemetry",)),
            _rule("watch", "alert", module=("pickle",)),
            _rule("plugins", "deny", origin=("/opt/plugins/**",)),
        ),
        "enforce",
    ).index("import")
    objecting = index.objecting()  # type: ignore[attr-defined]
    assert not index.quiet("json", "/usr/lib/python3/json/__init__.py")  # an allow names it
    assert objecting.quiet("json", "/usr/lib/python3/json/__init__.py")
    assert objecting.quiet("opentelemetry", None)
    assert not objecting.quiet("pickle", "/usr/lib/python3/pickle.py")
    assert not objecting.quiet("x", None, "pickle")  # the name its file has
    assert not objecting.quiet("p", "/opt/plugins/p.py")
    for default in ("deny", "alert"):
        screen = compile_policy(_document(default), "enforce").index("import")
        assert not screen.objecting().quiet("json", None)  # type: ignore[attr-defined]


def test_objecting_before_the_rules_are_attached_is_the_whole_index() -> None:
    from appshield.engine.categories import ImportIndex

    index = ImportIndex("allow", "enforce")
    index.add(0, _rule("stdlib", "allow", origin=("/usr/lib/python3/**",)))
    index.finish()
    assert index.objecting() is index


@given(
    st.lists(st.tuples(modules, st.one_of(st.none(), paths), st.one_of(st.none(), modules))),
)
@QUICK
def test_names_nothing_means_quiet_for_every_import(
    subjects: list[tuple[str, str | None, str | None]],
) -> None:
    """Only allows (or a screen of the deny and alert rules, when there are none): the
    install walk then passes every module loaded before it without looking at its file."""
    for document in (
        _document("allow"),
        _document("allow", _rule("lib", "deny", library=("/**/libm*",))),
        _document(
            "allow",
            _rule("stdlib", "allow", origin=("/usr/lib/python3/**",)),
            _rule("otel", "allow", module=("opentelemetry", "json")),
        ),
    ):
        index = compile_policy(document, "enforce").index("import")
        screen = index.objecting()  # type: ignore[attr-defined]
        assert screen.names_nothing()
        for module, origin, home in subjects:
            assert screen.quiet(module, origin, home)
    for document in (
        _document("deny"),
        _document("allow", _rule("w", "alert", module=("pickle",))),
        _document("allow", _rule("o", "deny", origin=("/opt/**",))),
        _document("allow", _rule("any", "alert", origin=("/**",))),
    ):
        index = compile_policy(document, "enforce").index("import")
        assert not index.objecting().names_nothing()  # type: ignore[attr-defined]


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
