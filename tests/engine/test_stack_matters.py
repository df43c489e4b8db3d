"""`CompiledPolicy.stack_matters(op)`, which the hooks ask before they remember an allowed
operation (to let its repeats through before the gate): whenever it says the stack does not
matter, every call stack gets the same decision. A scoped rule for one operation (the
telemetry exporter's, say) must not switch caching off for all the others."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.document import PolicyDocument
from appshield.engine import compile_policy
from appshield.operations import FileOp
from appshield.policy import Policy
from tests.engine._engine_strategies import OPS, documents, stacks

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OTHER_STACKS = (None, [], ["yaml"], ["ctypes.util", "a.b"], ["x.a", "b", "a"])


@given(st.data(), st.sampled_from(sorted(OPS)), st.sampled_from(["enforce", "monitor"]))
@QUICK
def test_when_the_stack_does_not_matter_every_stack_decides_alike(
    data: st.DataObject, category: str, mode: str
) -> None:
    document: PolicyDocument = data.draw(documents(category))
    compiled = compile_policy(document, mode)  # type: ignore[arg-type]
    for _ in range(4):
        op = data.draw(OPS[category])
        stack = data.draw(stacks)
        if data.draw(st.booleans()):
            # As the hooks ask: right after deciding, when the decision may be in the cache.
            compiled.decide(op, stack)
        if compiled.stack_matters(op):
            continue
        first = compiled.decide_uncached(op, stack)
        for other in OTHER_STACKS:
            again = compiled.decide_uncached(op, other)
            # Allowed on one stack, allowed on all (a scoped allow may be the rule that
            # allows, on a stack it holds for); anything else, the very same decision.
            if first.action == "allow":
                assert again.action == "allow" and not again.blocked, (op, other)
            else:
                assert again == first, (op, other)


def test_a_scoped_rule_for_one_folder_leaves_the_files_below_it_cacheable() -> None:
    # implicit:telemetry_exporter lets OpenTelemetry's code list the sys.path folders: the
    # folder itself is decided by the stack, the files below it are not.
    policy = Policy.from_mapping(
        {
            "version": 1,
            "defaults": {
                "process": "allow",
                "file": "allow",
                "network": "allow",
                "import": "allow",
            },
            "rules": [
                {
                    "id": "list-app",
                    "category": "file",
                    "action": "allow",
                    "match": {"path": "/srv/app", "access": "read"},
                    "scope": ["opentelemetry"],
                },
                {
                    "id": "no-secret",
                    "category": "file",
                    "action": "deny",
                    "match": {"path": "/srv/app/secret", "access": "read"},
                    "scope": ["yaml"],
                },
            ],
        }
    )
    compiled = policy.compiled
    # The folder: only allowed more ways by the scoped allow, and allowed without it (the
    # default): remembered. The secret: a scoped deny could refuse it.
    assert not compiled.stack_matters(FileOp("/srv/app", "read"))
    assert compiled.stack_matters(FileOp("/srv/app/secret", "read"))
    assert not compiled.stack_matters(FileOp("/srv/app/data.json", "read"))
    assert not compiled.stack_matters(FileOp("/srv/app", "write"))


ALLOW_ALL = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}
FOLDER = FileOp("/srv/app", "read")


def _compiled(defaults: dict[str, str], *rules: dict[str, object]) -> Any:
    return Policy.from_mapping({"version": 1, "defaults": defaults, "rules": list(rules)}).compiled


def _rule(action: str, **extra: object) -> dict[str, object]:
    return {
        "id": f"{action}-folder",
        "category": "file",
        "action": action,
        "match": {"path": "/srv/app", "access": "read"},
        **extra,
    }


def test_a_scoped_allow_matters_only_where_it_is_what_allows() -> None:
    # As implicit:telemetry_exporter: an allow scoped to the exporter's code. Under a
    # default that allows, the app's own operation is allowed on every stack; under a
    # default that denies, only the exporter's stack allows it, so nothing is remembered.
    scoped_allow = _rule("allow", scope=["opentelemetry"])
    allowing = _compiled(ALLOW_ALL, scoped_allow)
    assert not allowing.stack_matters(FOLDER)
    assert allowing.decide(FOLDER, ["opentelemetry.sdk"]).rule_id == "allow-folder"
    assert allowing.decide(FOLDER, ["app"]).action == "allow"
    denying = _compiled({**ALLOW_ALL, "file": "deny"}, scoped_allow)
    assert denying.stack_matters(FOLDER)
    assert denying.decide(FOLDER, ["app"]).action == "deny"
    # An unscoped allow allows it on every stack: the scoped one adds nothing.
    plain = {**_rule("allow"), "id": "plain-allow"}
    assert not _compiled({**ALLOW_ALL, "file": "deny"}, scoped_allow, plain).stack_matters(FOLDER)


def test_what_the_stack_can_take_away_or_add_still_matters() -> None:
    # An allow with an `unless.scope` can stop allowing; a scoped deny or alert can refuse
    # or report: each makes the stack matter, whatever the default.
    for rule in (
        _rule("allow", unless={"scope": ["yaml"]}),
        _rule("deny", scope=["yaml"]),
        _rule("alert", scope=["yaml"]),
        _rule("deny", unless={"scope": ["yaml"]}),
    ):
        assert _compiled(ALLOW_ALL, rule).stack_matters(FOLDER), rule
