"""The glob matchers and indexes against the plain reference, and the engine's query API."""

from __future__ import annotations

import os
import re
import threading
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.document import Condition, PolicyDocument, Protections, RuleSpec
from appshield.engine import compile_policy, escape, glob_problem
from appshield.engine.globs import (
    has_magic,
    literal_prefix_segments,
    module_pattern,
    module_subject,
    path_matcher,
    plain_matcher,
    translate_path,
)
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp
from tests.engine import _engine_reference as reference
from tests.engine._engine_strategies import (
    OPS,
    documents,
    file_ops,
    host_globs,
    hosts,
    module_globs,
    modules,
    path_globs,
    paths,
)

QUICK = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Whole generated policies are slow to draw: fewer examples in the default run.
QUICK_DOCS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_DOCS = settings(
    max_examples=100 if os.environ.get("APPSHIELD_SLOW_SAMPLE") else 2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}

# Shapes that take the string-operation fast paths, and their neighbours.
SHAPED = st.sampled_from(
    ["/a/**", "/**", "/a/**/b", "/**/b", "/a/*", "/a/*.py", "/a/b/*b", "/a/**/x.py", "/a/b"]
)
SUBJECTS = st.one_of(paths, st.sampled_from(["", "/", "a/b", "/a/", "//a", "/a//b", "b"]))


@QUICK
@given(st.one_of(path_globs, SHAPED), SUBJECTS)
def test_path_matcher_agrees_with_reference(glob: str, path: str) -> None:
    expected = reference.path_glob(glob, path)
    assert path_matcher(glob)(path) is expected
    assert (re.fullmatch(translate_path(glob), path) is not None) is expected


@QUICK
@given(module_globs, modules)
def test_module_matcher_agrees_with_reference(glob: str, module: str) -> None:
    expected = reference.module_glob(glob, module)
    assert path_matcher(module_pattern(glob))(module_subject(module)) is expected


@QUICK
@given(host_globs, st.one_of(hosts, st.text("ab.*?[]!-/ ", max_size=8)))
def test_plain_matcher_agrees_with_fnmatch(glob: str, text: str) -> None:
    assert plain_matcher(glob)(text) is fnmatchcase(text, glob)


@QUICK
@given(st.text("ab/*?[]!-.", max_size=10), st.text("ab/.-", max_size=8))
def test_arbitrary_globs_never_raise_at_match_time(glob: str, text: str) -> None:
    if glob_problem(glob) is None:
        path_matcher(glob)(text)
        plain_matcher(glob)(text)


def test_reversed_range_is_a_glob_problem() -> None:
    assert glob_problem("/a/[z-a]") is not None
    assert glob_problem("/a/[a-z]") is None
    with pytest.raises(ValueError):
        path_matcher("/a/[z-a]")


def test_class_never_matches_a_slash() -> None:
    assert not path_matcher("/a[+-0]b")("/a/b")
    assert not path_matcher("/a[!x]b")("/a/b")


# --- query API -------------------------------------------------------------------------------


def _doc(*rules: RuleSpec, **defaults: str) -> PolicyDocument:
    return PolicyDocument(1, "t", None, {**ALLOW_ALL, **defaults}, rules)  # type: ignore[arg-type]


def test_needs_stack_has_rules_default() -> None:
    doc = _doc(
        RuleSpec("s", "network", "deny", Condition({}), scope=("a",)),
        RuleSpec("u", "import", "deny", Condition({}), unless=Condition({}, scope=("b",))),
        RuleSpec("p", "file", "deny", Condition({"path": ("/x",)})),
        process="deny",
    )
    compiled = compile_policy(doc, "enforce")
    assert [compiled.needs_stack(c) for c in ("process", "file", "network", "import")] == [
        False,
        False,
        True,
        True,
    ]
    assert compiled.has_rules("process")  # implicit:unshielded_children
    assert compiled.has_rules("file") and compiled.has_rules("network")
    # asked before and after each index is built (indexes are built on first use)
    assert [compiled.needs_stack(c) for c in ("process", "file", "network", "import")] == [
        False,
        False,
        True,
        True,
    ]
    assert compiled.default("process") == "deny" and compiled.default("file") == "allow"
    assert compiled.mode == "enforce"


def test_file_needs_resolved_path_cases() -> None:
    deny_write = RuleSpec("w", "file", "deny", Condition({"path": ("/x",), "access": ("write",)}))
    allow_read = RuleSpec("r", "file", "allow", Condition({"path": ("/x",), "access": ("read",)}))
    compiled = compile_policy(_doc(deny_write, allow_read), "enforce")
    assert compiled.file_needs_resolved_path("write")
    assert not compiled.file_needs_resolved_path("read")  # an allow under an allow default
    assert not compiled.file_needs_resolved_path("delete")
    strict = compile_policy(_doc(deny_write, allow_read, file="deny"), "enforce")
    assert strict.file_needs_resolved_path("read")
    protected = compile_policy(_doc(), "enforce", protected_paths=("/p.yaml",))
    assert protected.file_needs_resolved_path("delete")
    assert not protected.file_needs_resolved_path("read")
    unless_only = RuleSpec("u", "file", "deny", Condition({}), unless=Condition({"path": ("/t",)}))
    assert compile_policy(_doc(unless_only), "enforce").file_needs_resolved_path("read")


def check_resolved_exact(doc: PolicyDocument, ops: list[Any], data: Any) -> None:
    protected = data.draw(st.lists(path_globs, max_size=1).map(tuple))
    compiled = compile_policy(doc, "enforce", protected_paths=protected)
    for op in ops:
        if compiled.file_needs_resolved_path(op.access):
            continue
        bare = compiled.decide(FileOp(op.path, op.access))
        other = compiled.decide(op)
        assert (bare.action, bare.blocked) == (other.action, other.blocked)


def test_cache_is_bounded_and_transparent() -> None:
    doc = _doc(RuleSpec("d", "file", "deny", Condition({"path": ("/d/**",)})))
    compiled = compile_policy(doc, "enforce", cache_size=64)
    ops = [FileOp(f"/d/{i}" if i % 3 == 0 else f"/e/{i}", "read") for i in range(500)]
    for op in ops:
        assert compiled.decide(op) == compiled.decide_uncached(op)
        assert compiled.decide(op) is compiled.decide(op)
    assert all(len(c) <= 64 for c in compiled._caches.values() if c is not None)
    uncached = compile_policy(doc, "enforce", cache_size=0)
    assert uncached.decide(ops[0]).blocked and not any(uncached._caches.values())


def test_concurrent_decisions_agree() -> None:
    doc = _doc(
        RuleSpec("d", "file", "deny", Condition({"path": ("/d/**",)})),
        RuleSpec("n", "network", "deny", Condition({"cidr": ("10.0.0.0/8",)})),
        RuleSpec("m", "import", "deny", Condition({"module": ("ctypes",)})),
    )
    compiled = compile_policy(doc, "enforce", cache_size=32)
    ops: list[Any] = [FileOp(f"/{'d' if i % 2 else 'e'}/{i % 50}", "read") for i in range(200)]
    ops += [NetworkOp("connect", None, f"{10 + i % 2}.0.0.{i % 50}", 80) for i in range(200)]
    ops += [ImportOp("ctypes.util" if i % 2 else "json") for i in range(50)]
    expected = [reference.decide(doc, "enforce", op) for op in ops]
    failures: list[str] = []

    def worker() -> None:
        for _ in range(5):
            for op, want in zip(ops, expected, strict=True):
                if compiled.decide(op) != want:
                    failures.append(repr(op))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def check_cache_transparent(data: Any) -> None:
    category = data.draw(st.sampled_from(["file", "network", "import", "process"]))
    compiled = compile_policy(data.draw(documents(category)), "enforce")
    for op in data.draw(st.lists(OPS[category], min_size=1, max_size=4)):
        first = compiled.decide(op)
        assert compiled.decide(op) == first == compiled.decide_uncached(op)


FILE_SCENARIO = (documents("file"), st.lists(file_ops, min_size=1, max_size=5), st.data())


@QUICK_DOCS
@given(*FILE_SCENARIO)
def test_file_needs_resolved_path_is_exact(doc: PolicyDocument, ops: list[Any], data: Any) -> None:
    check_resolved_exact(doc, ops, data)


@pytest.mark.slow
@SLOW_DOCS
@given(*FILE_SCENARIO)
def test_file_needs_resolved_path_exhaustive(
    doc: PolicyDocument, ops: list[Any], data: Any
) -> None:
    check_resolved_exact(doc, ops, data)


@QUICK_DOCS
@given(st.data())
def test_cached_and_uncached_agree(data: Any) -> None:
    check_cache_transparent(data)


@pytest.mark.slow
@SLOW_DOCS
@given(st.data())
def test_cached_and_uncached_agree_exhaustive(data: Any) -> None:
    check_cache_transparent(data)


@pytest.mark.parametrize("name", ["/p/[prod].yaml", "/p/a*b?.yaml", "/p/plain.yaml"])
def test_escape_makes_a_literal_glob(name: str) -> None:
    matcher = path_matcher(escape(name))
    assert matcher(name)
    assert not matcher("/p/p.yaml") and not matcher("/p/aXbY.yaml")


@pytest.mark.parametrize("text", ["", "/p/plain.yaml", "/p/[x]*?.yaml", "a]b", "*"])
def test_escape_is_one_class_per_glob_character(text: str) -> None:
    assert escape(text) == "".join(f"[{c}]" if c in "*?[" else c for c in text)


_GLOB_TEXT = st.text(alphabet="ab/*?[]!.-\\é", max_size=24)


@QUICK
@given(_GLOB_TEXT)
def test_escape_is_the_class_of_each_glob_character(text: str) -> None:
    # (`escape` translates in C at start-up; this is what it was written as before.)
    assert escape(text) == "".join(f"[{c}]" if c in "*?[" else c for c in text)


@QUICK
@given(st.one_of(_GLOB_TEXT, _GLOB_TEXT.map(lambda t: "/" + t)))
def test_literal_prefix_segments_stop_at_the_first_glob_segment(pattern: str) -> None:
    # (a literal pattern is split at once; the segments are what this loop finds)
    expected = []
    for segment in pattern.split("/")[1:]:
        if has_magic(segment):
            break
        expected.append(segment)
    assert literal_prefix_segments(pattern) == expected


def test_non_operation_and_missing_defaults_are_refused() -> None:
    compiled = compile_policy(_doc(), "enforce")
    with pytest.raises(TypeError):
        compiled.decide("/etc/passwd")  # type: ignore[arg-type]
    incomplete = PolicyDocument(1, "t", None, {"file": "allow"}, ())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="defaults"):
        compile_policy(incomplete, "enforce")


WEIRD_GLOBS = st.text("ab*?[]!-^\\", max_size=8)
WEIRD_PATH_GLOBS = st.text("ab*?[]!-/", max_size=8).map(lambda g: "/" + g)


def check_weird_plain(glob: str, text: str) -> None:
    if glob_problem(glob) is None:
        assert plain_matcher(glob)(text) is fnmatchcase(text, glob)


def check_weird_path(glob: str, path: str) -> None:
    if glob_problem(glob) is None:
        assert path_matcher(glob)(path) is reference.path_glob(glob, path)


@QUICK
@given(WEIRD_GLOBS, st.text("ab]![-^\\", max_size=5))
def test_class_edge_cases_agree_with_fnmatch(glob: str, text: str) -> None:
    check_weird_plain(glob, text)


@QUICK
@given(WEIRD_PATH_GLOBS, st.text("ab]!-/", max_size=6).map(lambda s: "/" + s))
def test_path_edge_cases_agree_with_reference(glob: str, path: str) -> None:
    check_weird_path(glob, path)


@pytest.mark.slow
@SLOW_DOCS
@given(WEIRD_GLOBS, st.text("ab]![-^\\", max_size=5), WEIRD_PATH_GLOBS)
def test_glob_edge_cases_exhaustive(glob: str, text: str, path_glob: str) -> None:
    check_weird_plain(glob, text)
    check_weird_path(path_glob, "/" + text.replace("\\", "/"))


_BAD = "/a/[z-a]"


@pytest.mark.parametrize(
    "bad",
    [
        RuleSpec("b", "file", "deny", Condition({"path": (_BAD,)})),
        RuleSpec("b", "file", "deny", Condition({"access": ("read",), "path": ("/x", _BAD)})),
        RuleSpec("b", "process", "deny", Condition({"args": (("x", _BAD),)})),
        RuleSpec("b", "process", "deny", Condition({"command_line": (_BAD,)})),
        RuleSpec("b", "network", "deny", Condition({"host": ("[z-a].example",)})),
        RuleSpec("b", "import", "deny", Condition({"origin": (_BAD,)})),
        RuleSpec("b", "import", "deny", Condition({"library": (_BAD,)})),
        RuleSpec("b", "import", "deny", Condition({"module": ("m[z-a]",)})),
        RuleSpec("b", "file", "deny", Condition({"path": ("/x",)}), scope=("m[z-a]",)),
        RuleSpec("b", "file", "deny", Condition({}, scope=("m[z-a]",))),
        RuleSpec("b", "file", "deny", Condition({}), unless=Condition({"path": (_BAD,)})),
        RuleSpec("b", "file", "deny", Condition({}), unless=Condition({}, scope=("m[z-a]",))),
    ],
)
def test_bad_class_fails_at_compile_not_at_decision(bad: RuleSpec) -> None:
    """Wherever a glob sits in a rule (each glob field, an argument vector, a scope, the
    `unless`), a bad class fails when the shield starts."""
    with pytest.raises(ValueError, match="range"):
        compile_policy(_doc(bad), "enforce")


def test_unhashable_operation_is_decided_without_cache() -> None:
    compiled = compile_policy(
        _doc(RuleSpec("g", "process", "deny", Condition({"executable": ("git",)}))), "enforce"
    )
    op = ProcessOp("/usr/bin/git", ["git", "status"], trusted_location=True)  # type: ignore[arg-type]
    assert compiled.decide(op).rule_id == "g"


def test_folders_above_protected_files_cannot_be_renamed_away() -> None:
    """issue 12: renaming a folder above a policy file (or its cache) moves the file without
    touching it; `implicit:policy_files` denies that delete, and nothing else there."""
    compiled = compile_policy(
        _doc(), "enforce", protected_paths=("/a/b/p.yaml",), protected_folders=("/a/b", "/a")
    )
    for folder in ("/a/b", "/a"):
        decision = compiled.decide(FileOp(folder, "delete"))
        assert decision.blocked and decision.rule_id == "implicit:policy_files"
        assert not compiled.decide(FileOp(folder, "read")).blocked
        assert not compiled.decide(FileOp(folder, "write")).blocked
    assert not compiled.decide(FileOp("/a/b/other", "delete")).blocked
    assert compiled.decide(FileOp("/a/b/p.yaml", "write")).blocked
    off = _doc()._replace(protections=Protections(policy_files=False))
    loose = compile_policy(off, "enforce", protected_paths=("/p",), protected_folders=("/a",))
    assert not loose.decide(FileOp("/a", "delete")).blocked
