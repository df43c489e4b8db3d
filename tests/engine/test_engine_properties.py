"""Hypothesis properties of the engine: agreement with the plain reference matcher, rule-order
independence, and monotonicity of adding allow / deny rules.

The default run keeps `max_examples` small; `-m slow` runs the exhaustive versions.
"""

from __future__ import annotations

import marshal
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.document import PolicyDocument
from appshield.engine import compile_policy, index_states
from tests.engine import _engine_reference as reference
from tests.engine._engine_strategies import OPS, categories, documents, path_globs, rules, stacks

QUICK = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CI's bounded sample of the slow runs (APPSHIELD_SLOW_SAMPLE=1, see .ci/run) stays short.
SLOW_EXAMPLES = 100 if os.environ.get("APPSHIELD_SLOW_SAMPLE") else 3000
SLOW = settings(
    max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

modes = st.sampled_from(["enforce", "monitor"])
protected = st.lists(path_globs, max_size=2).map(tuple)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PolicyDocument, str, list[Any], Any, tuple[str, ...]]:
    category = draw(categories)
    document = draw(documents(category))
    ops = draw(st.lists(OPS[category], min_size=1, max_size=5))
    return document, draw(modes), ops, draw(stacks), draw(protected)


def _with_rules(document: PolicyDocument, rules_: tuple) -> PolicyDocument:  # type: ignore[type-arg]
    return document._replace(rules=rules_)


def check_agreement(scenario: tuple) -> None:  # type: ignore[type-arg]
    document, mode, ops, stack, protect = scenario
    compiled = compile_policy(document, mode, protected_paths=protect)
    # The index as the policy cache keeps it (a marshal round trip), restored not rebuilt.
    kept = marshal.loads(marshal.dumps(index_states(document)))
    restored = compile_policy(document, mode, protected_paths=protect, index=kept)
    for op in ops:
        expected = reference.decide(document, mode, op, stack, protect)
        assert compiled.decide(op, stack) == expected, op
        assert restored.decide(op, stack) == expected, op
        assert compiled.decide(op, lambda s=stack: s) == expected, op  # cached / callable path
        # a cached decision must not leak into a decision for another stack
        for other in (None, ["a"], ["yaml", "ctypes.util"]):
            assert compiled.decide(op, other) == reference.decide(
                document, mode, op, other, protect
            ), (op, other)


def check_order(scenario: tuple, permutation: list[int]) -> None:  # type: ignore[type-arg]
    document, mode, ops, stack, protect = scenario
    shuffled = tuple(document.rules[i] for i in permutation if i < len(document.rules))
    shuffled += tuple(r for i, r in enumerate(document.rules) if i not in permutation)
    a = compile_policy(document, mode, protected_paths=protect)
    b = compile_policy(_with_rules(document, shuffled), mode, protected_paths=protect)
    for op in ops:
        da, db = a.decide(op, stack), b.decide(op, stack)
        assert (da.action, da.blocked) == (db.action, db.blocked), op


def check_monotonic(scenario: tuple, extra: Any) -> None:  # type: ignore[type-arg]
    document, mode, ops, stack, protect = scenario
    extra = extra._replace(category=ops[0].category)
    before = compile_policy(document, mode, protected_paths=protect)
    for position in (0, len(document.rules)):
        rules_ = list(document.rules)
        rules_.insert(position, extra)
        after = compile_policy(_with_rules(document, tuple(rules_)), mode, protected_paths=protect)
        for op in ops:
            old, new = before.decide(op, stack), after.decide(op, stack)
            if extra.action == "allow" and old.action == "allow":
                assert new.action == "allow", op
            if extra.action == "deny" and old.action == "deny":
                assert new.action == "deny", op
            if extra.action == "deny" and extra.mode != "monitor" and old.blocked:
                assert new.blocked, op


@st.composite
def extra_rules(draw: st.DrawFn) -> Any:
    action = draw(st.sampled_from(["allow", "deny"]))
    category = draw(categories)
    return draw(rules(category, "extra", action))


@QUICK
@given(scenarios())
def test_engine_agrees_with_reference(scenario: tuple) -> None:  # type: ignore[type-arg]
    check_agreement(scenario)


@QUICK
@given(scenarios(), st.permutations(range(6)))
def test_decision_does_not_depend_on_rule_order(scenario: tuple, perm: list[int]) -> None:  # type: ignore[type-arg]
    check_order(scenario, perm)


@QUICK
@given(scenarios(), st.data())
def test_adding_rules_is_monotonic(scenario: tuple, data: st.DataObject) -> None:  # type: ignore[type-arg]
    category = scenario[2][0].category
    extra = data.draw(rules(category, "extra", data.draw(st.sampled_from(["allow", "deny"]))))
    check_monotonic(scenario, extra)


@pytest.mark.slow
@SLOW
@given(scenarios())
def test_engine_agrees_with_reference_exhaustive(scenario: tuple) -> None:  # type: ignore[type-arg]
    check_agreement(scenario)


@pytest.mark.slow
@SLOW
@given(scenarios(), st.permutations(range(6)))
def test_rule_order_exhaustive(scenario: tuple, perm: list[int]) -> None:  # type: ignore[type-arg]
    check_order(scenario, perm)


@pytest.mark.slow
@SLOW
@given(scenarios(), st.data())
def test_monotonic_exhaustive(scenario: tuple, data: st.DataObject) -> None:  # type: ignore[type-arg]
    category = scenario[2][0].category
    extra = data.draw(rules(category, "extra", data.draw(st.sampled_from(["allow", "deny"]))))
    check_monotonic(scenario, extra)
