"""The other names of an imported module (`ImportOp.home`, `ImportOp.init`): a deny or alert
`module` glob matches any of them, an allow must hold for the dotted name and the file's own
name; the index and its screen see them; and the scopes the hooks must record."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.document import Condition, PolicyDocument, RuleSpec
from appshield.engine import compile_policy
from appshield.operations import ImportOp
from tests.engine import _engine_reference as reference
from tests.engine._engine_strategies import documents, modules, paths, stacks

QUICK = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SO = "/usr/lib/python3.11/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so"


def _document(default: str, *rules: RuleSpec) -> PolicyDocument:
    defaults = {"process": "allow", "file": "allow", "network": "allow", "import": default}
    return PolicyDocument(1, "t", None, defaults, rules)  # type: ignore[arg-type]


def _rule(
    rule_id: str,
    action: str,
    scope: tuple[str, ...] | None = None,
    unless: Condition | None = None,
    **fields: Any,
) -> RuleSpec:
    return RuleSpec(
        rule_id,
        "import",
        action,  # type: ignore[arg-type]
        Condition(fields),
        unless=unless,
        scope=scope,
    )


def _decide(document: PolicyDocument, op: ImportOp) -> str:
    decision = compile_policy(document, "enforce").decide(op)
    assert decision == reference.decide(document, "enforce", op, None, ())
    return decision.rule_id


DENY_CTYPES = _document("allow", _rule("no-ctypes", "deny", module=("ctypes", "_ctypes")))


def test_a_deny_matches_the_file_home_of_a_renamed_extension() -> None:
    op = ImportOp("zz._ctypes", SO, None, "_ctypes", "_ctypes")
    assert _decide(DENY_CTYPES, op) == "no-ctypes"


def test_a_deny_matches_the_init_name_of_a_copied_extension() -> None:
    op = ImportOp("zz._ctypes", "/tmp/x/_ctypes.so", None, None, "_ctypes")
    assert _decide(DENY_CTYPES, op) == "no-ctypes"


def test_a_deny_matches_the_home_of_a_renamed_source_package() -> None:
    op = ImportOp("zz.ctypes", "/usr/lib/python3.11/ctypes/__init__.py", None, "ctypes")
    assert _decide(DENY_CTYPES, op) == "no-ctypes"


def test_without_other_names_the_dotted_name_alone_decides() -> None:
    assert _decide(DENY_CTYPES, ImportOp("zz._ctypes", SO)) == "default:import"


def test_an_allow_must_hold_for_the_file_home_too() -> None:
    document = _document("deny", _rule("numpy", "allow", module=("numpy",)))
    assert _decide(document, ImportOp("numpy.zz", SO, None, "_ctypes", "zz")) == "default:import"
    # an init name alone (a file outside the start-up folders) does not narrow an allow
    assert _decide(document, ImportOp("numpy.core.x", "/tmp/x.so", None, None, "x")) == "numpy"
    assert _decide(document, ImportOp("numpy.core.x", SO, None, "numpy.core.x")) == "numpy"


def test_an_exception_to_a_deny_must_hold_for_the_file_home_too() -> None:
    document = _document(
        "allow",
        _rule("no-zz", "deny", unless=Condition({"module": ("zz.ok",)}), module=("zz",)),
    )
    assert _decide(document, ImportOp("zz.ok", "/a/zz/ok.py")) == "default:import"
    assert _decide(document, ImportOp("zz.ok", SO, None, "_ctypes", "ok")) == "no-zz"


def test_the_screen_sees_the_other_names() -> None:
    index = compile_policy(DENY_CTYPES, "enforce").index("import")
    assert index.quiet("zz._ctypes", SO)
    assert not index.quiet("zz._ctypes", SO, "_ctypes", None)
    assert not index.quiet("zz._ctypes", "/tmp/x.so", None, "_ctypes")


@given(
    documents("import"),
    st.sampled_from(["enforce", "monitor"]),
    modules,
    st.one_of(st.none(), paths),
    st.one_of(st.none(), modules),
    st.one_of(st.none(), modules),
    stacks,
)
@QUICK
def test_quiet_with_other_names_means_the_silent_default(
    document: PolicyDocument,
    mode: str,
    module: str,
    origin: str | None,
    home: str | None,
    init: str | None,
    stack: object,
) -> None:
    compiled = compile_policy(document, mode)  # type: ignore[arg-type]
    if not compiled.index("import").quiet(module, origin, home, init):
        return
    op = ImportOp(module, origin, None, home, init)
    decision = compiled.decide(op, stack)  # type: ignore[arg-type]
    assert decision.action == "allow" and decision.rule_id == "default:import"


def test_scope_matcher_names_the_scoped_modules_only() -> None:
    document = _document(
        "allow",
        _rule(
            "p",
            "deny",
            unless=Condition({}, scope=("subprocess", "multiprocessing.*")),
            module=("_posixsubprocess",),
        ),
        _rule("y", "deny", scope=("yaml",), module=("pickle",)),
    )
    wanted = compile_policy(document, "enforce").scope_matcher()
    assert wanted is not None
    assert wanted("subprocess") and wanted("yaml") and wanted("yaml.loader")
    assert wanted("multiprocessing.popen_fork")
    assert not wanted("json") and not wanted("subprocessx")
    assert compile_policy(DENY_CTYPES, "enforce").scope_matcher() is None
    # The hooks' screen: every name `wanted` accepts has one of these tops.
    tops = compile_policy(document, "enforce").scope_tops()
    assert tops == frozenset({"subprocess", "multiprocessing", "yaml"})
    assert compile_policy(DENY_CTYPES, "enforce").scope_tops() is None
    magic = _document("allow", _rule("m", "deny", scope=("mod*.x",), module=("pickle",)))
    assert compile_policy(magic, "enforce").scope_tops() is None  # a pattern: no screen
