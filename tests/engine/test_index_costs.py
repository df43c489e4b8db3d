"""What a decision touches, counted rather than timed: base-name globs are indexed, and a
restored index (the policy cache's) makes only the candidates' rules on the first decision."""

from __future__ import annotations

import marshal

import pytest

from appshield.document import Condition, PolicyDocument, RuleSpec
from appshield.engine import compile_policy, index_states
from appshield.operations import FileOp, ProcessOp

DEFAULTS = {"process": "allow", "file": "allow", "network": "allow", "import": "allow"}


def _tools_policy(extra: tuple[RuleSpec, ...] = ()) -> PolicyDocument:
    denies = tuple(
        RuleSpec(f"no-tool{i}", "process", "deny", Condition({"executable": (f"tool{i}*",)}))
        for i in range(250)
    )
    suffixed = RuleSpec("no-dev", "process", "deny", Condition({"executable": ("*-dev",)}))
    return PolicyDocument(1, "t", None, DEFAULTS, (*denies, suffixed, *extra))  # type: ignore[arg-type]


def _spawn(name: str) -> ProcessOp:
    return ProcessOp(f"/usr/bin/{name}", (name,), trusted_location=True)


@pytest.mark.parametrize("restored", [False, True])
def test_base_name_globs_are_not_checked_one_by_one(restored: bool) -> None:
    document = _tools_policy()
    index = marshal.loads(marshal.dumps(index_states(document))) if restored else None
    compiled = compile_policy(document, "enforce", index=index)
    process = compiled.index("process")
    # `true` meets no base-name glob: only the rules filed for every spawn are candidates
    # (the implicit unshielded-children deny).
    assert len(process.candidates(_spawn("true"))) == 1
    # `tool12x` can only be `tool1*` or `tool12*`
    assert len(process.candidates(_spawn("tool12x"))) == 3
    assert compiled.decide(_spawn("tool12x")).rule_id == "no-tool1"
    assert compiled.decide(_spawn("tool249")).rule_id == "no-tool2"  # the first in file order
    assert compiled.decide(_spawn("x-dev")).rule_id == "no-dev"
    assert compiled.decide(_spawn("true")).action == "allow"
    assert compiled.decide(_spawn("tool")).action == "allow"
    assert compiled.decide(_spawn("xtool1")).action == "allow"
    # argv[0] is looked up too (a deny's executable also matches it)
    forged = ProcessOp("/usr/bin/true", ("/tmp/tool3",), trusted_location=True)
    assert compiled.decide(forged).rule_id == "no-tool3"


def test_a_restored_index_makes_only_the_candidates_rules() -> None:
    files = tuple(
        RuleSpec(f"f{i}", "file", "deny", Condition({"path": (f"/srv/app{i}/secrets/**",)}))
        for i in range(5000)
    )
    document = PolicyDocument(1, "t", None, DEFAULTS, files)  # type: ignore[arg-type]
    compiled = compile_policy(
        document,
        "enforce",
        protected_paths=("/etc/appshield.yaml",),
        index=marshal.loads(marshal.dumps(index_states(document))),
    )
    assert compiled.decide(FileOp("/srv/app7/secrets/k", "read")).rule_id == "f7"
    assert compiled.decide(FileOp("/etc/appshield.yaml", "write")).rule_id == (
        "implicit:policy_files"
    )
    made = [r for r in compiled.index("file").rules if r is not None]
    assert len(made) == 2
    assert compiled.has_rules("file")
    assert "file=5001" in repr(compiled)
