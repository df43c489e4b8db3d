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


# What install decides of the modules loaded before it: with the policy's own rules deciding,
# only what a deny or alert rule can name (an allow rule naming the same module changes
# nothing); wrapped by a recording, every module is decided, allowed ones too.
SCREENED = """\
version: 1
name: early-imports
defaults: {process: allow, file: allow, network: allow, import: allow}
rules:
  - id: stdlib-allowed
    category: import
    action: allow
    match: {origin: "{stdlib}/**"}
  - id: colorsys-alert
    category: import
    action: alert
    match: {module: colorsys}
  - id: no-json-origin
    category: import
    action: deny
    match: {origin: "{stdlib}/json/**"}
"""


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_early_imports_a_deny_or_alert_names_are_reported_beside_allow_rules(
    tmp_path: Path, cache: str
) -> None:
    policy = policy_file(tmp_path, SCREENED)
    log = tmp_path / "violations.log"
    env = clean_env(APPSHIELD_POLICY=str(policy), APPSHIELD_LOG=str(log))
    if cache == "cold":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        assert run([PY, "-c", "import appshield.auto"], env=env, cwd=tmp_path).returncode == 0
        log.unlink(missing_ok=True)
    code = "import colorsys, json.decoder, fractions\nimport appshield.auto\nprint('ran')"
    done = run([PY, "-c", code], env=env, cwd=tmp_path)
    assert done.returncode == 0 and "ran" in done.stdout, done.stderr
    reported = set(_reported(log))
    assert {"colorsys", "json", "json.decoder"} <= reported, reported
    # every other report is json's (its package imports its other submodules): never
    # `fractions` or another module only an allow rule names
    assert all(m == "colorsys" or m.split(".")[0] == "json" for m in reported), reported


def test_a_recording_still_sees_every_early_import(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, SCREENED)
    recording = tmp_path / "early.jsonl"
    env = clean_env(APPSHIELD_POLICY=str(policy), APPSHIELD_RECORD=str(recording))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = "import fractions\nimport appshield.auto\nprint('ran')"
    done = run([PY, "-c", code], env=env, cwd=tmp_path)
    assert done.returncode == 0 and "ran" in done.stdout, done.stderr
    assert '"fractions"' in recording.read_text()  # allowed by `stdlib-allowed`, recorded
