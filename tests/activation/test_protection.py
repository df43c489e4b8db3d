"""Self-protection: a shielded app cannot rewrite its own policy (`implicit:policy_files`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.activation._helpers import PY, RUN, allow_all_but, clean_env, run


def test_app_cannot_overwrite_or_delete_its_policy(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(
        "version: 1\ndefaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nname: protected\nextends: [base.yaml]\n")
    before = {p: p.read_bytes() for p in (policy, base)}
    log = tmp_path / "violations.jsonl"
    code = f"""
import os
results = []
for attempt in (
    lambda: open({str(policy)!r}, "w").write("version: 1\\n"),
    lambda: open({str(base)!r}, "a").write("rules: []\\n"),
    lambda: os.remove({str(policy)!r}),
    lambda: os.rename({str(base)!r}, {str(base)!r} + ".bak"),
):
    try:
        attempt()
        results.append("done")
    except PermissionError as exc:
        results.append(getattr(exc, "rule_id", "EACCES"))
print("RESULTS", results)
"""
    env = clean_env(APPSHIELD_LOG=str(log))
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code], env=env)
    assert result.returncode == 0, result.stderr
    assert "RESULTS " + str(["implicit:policy_files"] * 4) in result.stdout
    assert {p: p.read_bytes() for p in (policy, base)} == before
    rules = [json.loads(line)["rule"] for line in log.read_text().splitlines()]
    assert rules.count("implicit:policy_files") >= 1


def test_app_cannot_overwrite_appshield_itself(tmp_path: Path) -> None:
    import appshield

    policy = allow_all_but(tmp_path)
    target = Path(appshield.__file__).parent / "auto.py"
    before = target.read_bytes()
    code = f"""
try:
    open({str(target)!r}, "a").close()  # opening for writing is the write; nothing is written
    print("OPENED")
except PermissionError as exc:
    print("DENIED", getattr(exc, "rule_id", None))
"""
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code])
    assert target.read_bytes() == before
    assert "DENIED implicit:policy_files" in result.stdout, result.stderr
