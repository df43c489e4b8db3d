"""`appshield.policy.diff` against brute force: the engine decides generated operations under
both policies, and the diff must agree with what it finds.

The policies and operations come from the engine's own strategies (tests/engine), so the
globs, CIDRs, unless clauses, scopes and odd operations (symlinks, argv[0] that is not the
program, module home names, unspecified addresses, raw sockets) are the ones the engine is
tested on. `-m slow` runs more examples.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.document import PolicyDocument, RuleSpec
from appshield.engine import CompiledPolicy, compile_policy
from appshield.policy import Policy
from appshield.policy.diff import Change, DiffResult, diff_documents, strictness
from tests.engine._engine_strategies import OPS, categories, documents, rules, stacks

# The default suite's runs are derandomized (a fixed sequence of examples per test): the
# witnesses still have gaps left in principle (docs/lifecycle.md, "Known gaps"), and a
# random draw that lands on one must not fail an unrelated change's CI. The random search
# is the exhaustive runs' job.
QUICK = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
# CI's bounded sample of the slow runs (APPSHIELD_SLOW_SAMPLE=1) draws a fixed sequence
# too, for the same reason: the gaps left in principle (docs/lifecycle.md, "Known gaps") must
# not turn an unrelated change's CI red by chance. Run without it, the search is random.
SLOW = settings(
    max_examples=int(os.environ.get("APPSHIELD_DIFF_EXAMPLES", "600")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("APPSHIELD_SLOW_SAMPLE", "") not in ("", "0"),
)


def _level(compiled: CompiledPolicy, op: Any, stack: Any) -> tuple[int, str]:
    decision = compiled.decide_uncached(op, stack)
    return strictness(decision), decision.rule_id


def _compiled(document: PolicyDocument) -> CompiledPolicy:
    # As the diff compiles them: in enforce mode, without the protection of files neither
    # generated policy has.
    return compile_policy(document, "enforce", cache_size=0)


def _pair_key(change: Change, swap: bool = False) -> tuple[Any, ...]:
    old, new = (change.new_rule, change.old_rule) if swap else (change.old_rule, change.new_rule)
    examples = tuple(w for w in change.examples)
    return (change.category, old, new, change.op_count, examples)


def _with(document: PolicyDocument, rule: RuleSpec) -> PolicyDocument:
    return document._replace(rules=(*document.rules, rule))


@st.composite
def policy_pairs(draw: st.DrawFn) -> tuple[str, PolicyDocument, PolicyDocument]:
    category = draw(categories)
    old = draw(documents(category, max_rules=4))
    # NEW: OLD with some rules dropped and some added, and maybe other defaults, so that the
    # two share most rules as real revisions do.
    kept = [r for r in old.rules if draw(st.booleans())]
    added = [draw(rules(category, f"n{i}")) for i in range(draw(st.integers(0, 2)))]
    defaults = dict(old.defaults)
    if draw(st.booleans()):
        defaults[category] = draw(st.sampled_from(["allow", "deny", "alert"]))
    new = old._replace(rules=(*kept, *added), defaults=defaults)
    return category, old, new


def _check_brute(category: str, old: PolicyDocument, new: PolicyDocument, ops: list[Any]) -> None:
    result = diff_documents(old, new)
    reported = {(c.direction, c.category, c.old_rule, c.new_rule) for c in result.widened}
    reported |= {(c.direction, c.category, c.old_rule, c.new_rule) for c in result.narrowed}
    defaults_changed = old.defaults[category] != new.defaults[category]
    before, after = _compiled(old), _compiled(new)
    for op, stack in ops:
        (a, old_rule), (b, new_rule) = _level(before, op, stack), _level(after, op, stack)
        if a == b:
            continue
        direction = "widened" if b < a else "narrowed"
        if defaults_changed and old_rule == new_rule == f"default:{category}":
            assert any(c.category == "defaults" for c in getattr(result, direction)), op
            continue
        assert (direction, category, old_rule, new_rule) in reported, (op, stack, result)


def _check_witnesses(old: PolicyDocument, new: PolicyDocument, result: DiffResult) -> None:
    before, after = _compiled(old), _compiled(new)
    for changes, stricter in ((result.widened, False), (result.narrowed, True)):
        for change in changes:
            for witness in change.examples:
                a, _ = _level(before, witness.op, witness.stack)
                b, _ = _level(after, witness.op, witness.stack)
                assert (b > a) if stricter else (b < a), (change, witness)


@QUICK
@given(categories.flatmap(lambda c: documents(c, max_rules=4)))
def test_a_policy_against_itself_shows_nothing(document: PolicyDocument) -> None:
    result = diff_documents(document, document)
    assert result.widened == () and result.narrowed == ()


@QUICK
@given(
    categories.flatmap(lambda c: st.tuples(documents(c, max_rules=4), rules(c, "added", "allow")))
)
def test_adding_an_allow_rule_only_widens(pair: tuple[PolicyDocument, RuleSpec]) -> None:
    document, rule = pair
    result = diff_documents(document, _with(document, rule))
    assert result.narrowed == ()
    _check_witnesses(document, _with(document, rule), result)


@QUICK
@given(
    categories.flatmap(lambda c: st.tuples(documents(c, max_rules=4), rules(c, "added", "deny")))
)
def test_adding_a_deny_rule_never_widens(pair: tuple[PolicyDocument, RuleSpec]) -> None:
    document, rule = pair
    # A deny with `mode: monitor` does widen: where it matches, it decides instead of a
    # deny default, and it does not block (see test_a_monitor_deny_over_a_deny_default...).
    rule = rule._replace(mode=None)
    assert diff_documents(document, _with(document, rule)).widened == ()


@QUICK
@given(policy_pairs())
def test_widened_one_way_is_narrowed_the_other(pair: Any) -> None:
    _category, old, new = pair
    forward, backward = diff_documents(old, new), diff_documents(new, old)
    assert sorted(map(_pair_key, forward.widened), key=repr) == sorted(
        (_pair_key(c, swap=True) for c in backward.narrowed), key=repr
    )
    assert sorted(map(_pair_key, forward.narrowed), key=repr) == sorted(
        (_pair_key(c, swap=True) for c in backward.widened), key=repr
    )


@QUICK
@given(policy_pairs())
def test_every_reported_change_has_a_witness_that_shows_it(pair: Any) -> None:
    _category, old, new = pair
    _check_witnesses(old, new, diff_documents(old, new))


@st.composite
def pairs_with_ops(draw: st.DrawFn) -> tuple[str, PolicyDocument, PolicyDocument, list[Any]]:
    category, old, new = draw(policy_pairs())
    ops = draw(st.lists(st.tuples(OPS[category], stacks), min_size=1, max_size=60))
    return category, old, new, ops


@QUICK
@given(pairs_with_ops())
def test_brute_force_finds_no_change_the_diff_missed(case: Any) -> None:
    _check_brute(*case)


# The exhaustive runs. The cases they found are fixed and kept as plain regressions at the end
# of this file. What remains open (docs/lifecycle.md, "Known gaps": four scope modules on one
# stack, an import whose three fields each come from another condition, the caps) the
# strategies reach rarely if at all: after the last fixes both ran clean at 1,500 examples.
@pytest.mark.slow
@SLOW
@given(pairs_with_ops())
def test_brute_force_finds_no_change_the_diff_missed_exhaustive(case: Any) -> None:
    _check_brute(*case)


@pytest.mark.slow
@SLOW
@given(policy_pairs())
def test_widened_one_way_is_narrowed_the_other_exhaustive(pair: Any) -> None:
    test_widened_one_way_is_narrowed_the_other.hypothesis.inner_test(pair)  # type: ignore[attr-defined]


# Cases the exhaustive runs found, kept as plain regressions.
_ALLOW_ALL = {"file": "allow", "network": "allow", "import": "allow", "process": "allow"}


def _document(*rules: dict[str, Any]) -> PolicyDocument:
    mapping = {"version": 1, "name": "gen", "defaults": _ALLOW_ALL, "rules": list(rules)}
    return Policy.from_mapping(mapping).document


@pytest.mark.parametrize("cidr", ["::1/128", "::/126", "0.0.0.0/31", "10.0.0.0/8"])
def test_a_cidr_low_in_its_address_space_is_compared_with_its_own_addresses(cidr: str) -> None:
    # `ipaddress.ip_address(1)` is 0.0.0.1: the witnesses of `::1/128` must be IPv6 ones.
    old = _document({"id": "r0", "category": "network", "action": "allow", "match": {}})
    new = _document(
        {"id": "n0", "category": "network", "action": "deny", "match": {"cidr": [cidr]}}
    )
    result = diff_documents(old, new)
    assert [(c.old_rule, c.new_rule) for c in result.narrowed] == [("r0", "n0")]
    _check_witnesses(old, new, result)


def test_a_file_loaded_with_no_module_name_is_a_witness() -> None:
    # OLD denies the origin; NEW denies every module name: a load with no module name (an
    # origin alone) is allowed by NEW only.
    old = _document(
        {"id": "r0", "category": "import", "action": "allow", "match": {}},
        {"id": "r3", "category": "import", "action": "deny", "match": {"origin": "/a/a"}},
    )
    new = _document(
        {"id": "n0", "category": "import", "action": "allow", "match": {}},
        {"id": "n1", "category": "import", "action": "deny", "match": {"module": "*"}},
    )
    result = diff_documents(old, new)
    assert ("r3", "n0") in [(c.old_rule, c.new_rule) for c in result.widened]
    _check_witnesses(old, new, result)


def test_a_scope_that_decides_only_with_three_scopes_on_the_stack() -> None:
    # OLD denies under `a` unless `b` is on the stack too, and again unless `c` is: with
    # a, b and c all on the stack neither deny holds. NEW denies under `a` whatever else
    # is there. Every stack of at most two of them is decided alike.
    old = _document(
        {
            "id": "r1",
            "category": "import",
            "action": "deny",
            "match": {},
            "scope": ["a"],
            "unless": {"scope": ["b"]},
        },
        {
            "id": "r2",
            "category": "import",
            "action": "deny",
            "match": {},
            "scope": ["a"],
            "unless": {"scope": ["c"]},
        },
    )
    new = _document(
        {"id": "n1", "category": "import", "action": "deny", "match": {}, "scope": ["a"]}
    )
    result = diff_documents(old, new)
    assert [(c.old_rule, c.new_rule) for c in result.narrowed] == [("default:import", "n1")]
    _check_witnesses(old, new, result)
    backward = diff_documents(new, old)
    assert [(c.old_rule, c.new_rule) for c in backward.widened] == [("n1", "default:import")]


def test_fields_that_two_conditions_name_once_each_are_combined() -> None:
    # NEW's deny of module `a.b` holds unless the library is `/x/y`: only an operation with
    # both (the module from one condition, the library from another) tells it from OLD's.
    old = _document(
        {"id": "r1", "category": "import", "action": "deny", "match": {"module": "a.b"}},
    )
    new = _document(
        {
            "id": "n1",
            "category": "import",
            "action": "deny",
            "match": {"module": "a.b"},
            "unless": {"library": "/x/y"},
        },
    )
    result = diff_documents(old, new)
    assert [(c.old_rule, c.new_rule) for c in result.widened] == [("r1", "default:import")]
    _check_witnesses(old, new, result)


def test_fields_that_two_rules_name_once_each_are_combined() -> None:
    # A deny that only reports (d1, on the module) decides, and blocks when another deny
    # that blocks holds too (n2, on the library, NEW only): the change from d1 reporting to
    # d1 blocking shows only on an operation with both the module and the library.
    d1 = {
        "id": "d1",
        "category": "import",
        "action": "deny",
        "mode": "monitor",
        "match": {"module": "a.b"},
    }
    n2 = {"id": "n2", "category": "import", "action": "deny", "match": {"library": "/x/y"}}
    old, new = _document(d1), _document(d1, n2)
    result = diff_documents(old, new)
    assert ("d1", "d1") in [(c.old_rule, c.new_rule) for c in result.narrowed]
    _check_witnesses(old, new, result)


def test_a_program_and_a_command_line_from_two_conditions_are_combined() -> None:
    # NEW's deny of the program holds unless the command line is `a -x...`: only a process
    # of that program with that command line tells it from OLD's.
    old = _document(
        {"id": "r1", "category": "process", "action": "deny", "match": {"executable": "/opt/*/a"}}
    )
    new = _document(
        {
            "id": "n1",
            "category": "process",
            "action": "deny",
            "match": {"executable": "/opt/*/a"},
            "unless": {"command_line": "a -x*"},
        }
    )
    result = diff_documents(old, new)
    assert [(c.old_rule, c.new_rule) for c in result.widened] == [("r1", "default:process")]
    _check_witnesses(old, new, result)
