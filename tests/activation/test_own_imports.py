"""Modules that appshield loads for itself while it installs (the YAML loader, and tempfile
for a `{tmp}` rule when the policy cache is not used) are not the app's imports: a policy
that denies them reports nothing for them, while a denied module the app imported before
install is still reported (blocked=False: it already ran)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.activation._helpers import PY, RUN, clean_env, policy_file, run

POLICY = """\
version: 1
name: own-imports
defaults: {process: allow, file: allow, network: allow, import: allow}
rules:
  - id: no-tempfile
    category: import
    action: deny
    match: {module: [tempfile, random, yaml, colorsys]}
  - id: no-scratch
    category: file
    action: deny
    match: {path: "{tmp}/appshield-own-imports-*/**"}
"""


def _reported(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [json.loads(line)["target"] for line in log.read_text().splitlines() if line]


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_auto_reports_the_apps_early_imports_not_its_own(tmp_path: Path, cache: str) -> None:
    policy = policy_file(tmp_path, POLICY)
    log = tmp_path / "violations.log"
    env = clean_env(APPSHIELD_POLICY=str(policy), APPSHIELD_LOG=str(log))
    if cache == "cold":
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # no policy cache: a full load at every start
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        assert run([PY, "-c", "import appshield.auto"], env=env, cwd=tmp_path).returncode == 0
        log.unlink(missing_ok=True)
    code = "import colorsys\nimport appshield.auto\nprint('ran')"
    done = run([PY, "-c", code], env=env, cwd=tmp_path)
    assert done.returncode == 0 and "ran" in done.stdout, done.stderr
    assert _reported(log) == ["colorsys"]


def test_run_reports_nothing_for_what_appshield_loaded(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, POLICY)
    log = tmp_path / "violations.log"
    env = clean_env(APPSHIELD_LOG=str(log), PYTHONDONTWRITEBYTECODE="1")
    done = run([*RUN, "--policy", str(policy), "--", PY, "-c", "print('ran')"], env=env)
    assert done.returncode == 0 and "ran" in done.stdout, done.stderr
    assert _reported(log) == []
