"""`CompiledPolicy.stack_matters(op)`, which the hooks ask before they remember an allowed
operation (to let its repeats through before the gate): whenever it says the stack does not
matter, every call stack gets the same decision. A scoped rule for one operation (the
telemetry exporter's, say) must not switch caching off for all the others."""

from __future__ import annotations

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
            assert compiled.decide_uncached(op, other) == first, (op, other)


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
    assert compiled.stack_matters(FileOp("/srv/app", "read"))
    assert compiled.stack_matters(FileOp("/srv/app/secret", "read"))
    assert not compiled.stack_matters(FileOp("/srv/app/data.json", "read"))
    assert not compiled.stack_matters(FileOp("/srv/app", "write"))
