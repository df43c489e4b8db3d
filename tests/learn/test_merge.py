"""`--merge`: only what is new is added, as text at the end of the `rules:` list."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appshield.learn import learn_policy, merge_policy, not_allowed
from appshield.learn.records import Observation
from appshield.operations import FileOp, NetworkOp, ProcessOp
from appshield.policy import Policy
from tests.learn._strategies import ROOTS, observations

HAND_WRITTEN = """\
# Our service's policy. Reviewed by the security team.
version: 1
name: checkout
defaults:
  process: deny
  file: deny
  network: deny
  import: allow
rules:
    # keep: the config is read at start
    - id: read-config
      category: file
      action: allow
      match: {path: /srv/app/config.json, access: read}
    - id: no-etc-secrets
      category: file
      action: deny
      match: {path: /srv/app/secret.key}

    # trailing comment of the rules list
protections:
  policy_files: true
"""


def _obs(op: object) -> Observation:
    return Observation(op, "api", "app", ("app",), 1, ROOTS)  # type: ignore[arg-type]


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "appshield.yaml"
    path.write_text(HAND_WRITTEN)
    return path


def test_adds_only_new_and_keeps_the_humans_text(policy_file: Path) -> None:
    seen = [
        _obs(FileOp("/srv/app/config.json", "read")),  # already allowed
        _obs(FileOp("/srv/app/data.db", "write")),  # new
        _obs(NetworkOp("connect", host="db.internal", port=5432)),  # new
    ]
    result = merge_policy(str(policy_file), seen)
    assert result.text.startswith(HAND_WRITTEN.split("\n\n    # trailing")[0])
    assert "\n\n    # trailing comment of the rules list\nprotections:" in result.text
    assert "# keep: the config is read at start" in result.text
    assert result.text.count("- id:") == 4
    assert result.text.index("db.internal") < result.text.index("protections:")
    assert "    - id: file-write-srv-app-data-db" in result.text  # the file's own indentation
    merged = Policy.from_yaml(result.text, filename=str(policy_file))
    assert not_allowed(merged, seen) == []


def test_merging_twice_adds_nothing(policy_file: Path) -> None:
    seen = [_obs(ProcessOp("/usr/bin/git", ("git", "status"), trusted_location=True))]
    policy_file.write_text(merge_policy(str(policy_file), seen).text)
    again = merge_policy(str(policy_file), seen)
    assert again.drafts == []
    assert again.text == policy_file.read_text()


def test_a_humans_deny_is_kept(policy_file: Path) -> None:
    result = merge_policy(str(policy_file), [_obs(FileOp("/srv/app/secret.key", "read"))])
    assert result.drafts == []
    assert [rule for _, rule in result.denied_by_rule] == ["no-etc-secrets"]


def test_ids_do_not_clash(policy_file: Path) -> None:
    first = learn_policy([_obs(FileOp("/srv/x", "read"))])
    policy_file.write_text(first.text)
    result = merge_policy(str(policy_file), [_obs(FileOp("/srv/x", "write"))])
    Policy.from_yaml(result.text)  # duplicate ids would be a PolicyError
    assert "file-write-srv-x" in result.text


UNINDENTED = "rules:\n- id: a\n  category: file\n  action: allow\n  match: {}\n"


@pytest.mark.parametrize("rules", ["rules: []\n", "", UNINDENTED])
def test_empty_missing_and_unindented_rules(tmp_path: Path, rules: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\ndefaults: {process: deny, file: deny, network: deny, import: deny}\n" + rules
    )
    seen = [_obs(NetworkOp("connect", host="api.example.com", port=443))]
    result = merge_policy(str(path), seen)
    assert not_allowed(Policy.from_yaml(result.text), seen) == []


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(observations(), min_size=1, max_size=10),
    st.lists(observations(), min_size=1, max_size=10),
)
def test_runs_accumulate(first: list[Observation], second: list[Observation]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.yaml"
        start = learn_policy(first)
        path.write_text(start.text)
        merged = merge_policy(str(path), second)
        assert merged.text.startswith(start.text)
        policy = Policy.from_yaml(merged.text, filename=str(path))
        skipped = start.skipped + merged.skipped
        assert [o for o in not_allowed(policy, first + second) if o not in skipped] == []
